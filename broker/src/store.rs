//! The state database (SQLite, `data/state.db`): opened once, schema kept current with
//! `PRAGMA user_version`.
//!
//! Access is through one connection behind a mutex. Every statement is a short indexed
//! read or write, so callers hold the lock for microseconds and never across an `.await`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::Connection;

/// A time as the database keeps it: milliseconds since the epoch.
pub fn to_unix_ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// The time of a stored millisecond count.
pub fn from_unix_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

/// A time as the database keeps it where seconds are enough (locks).
pub fn to_unix_seconds(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// The time of a stored second count.
pub fn from_unix_seconds(seconds: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds.max(0) as u64)
}

/// Why the state database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Opening or querying failed.
    #[error("state database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The database file could not be created private to its owner.
    #[error("state database {path}: cannot make it private to its owner: {source}")]
    Private {
        /// The database file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The database was written by a newer portcullis.
    #[error(
        "state database {path} has schema version {found}, newer than this portcullis understands ({known}); upgrade portcullis"
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its version.
        found: i64,
        /// The newest this build knows.
        known: i64,
    },
}

/// Creates the database file readable by its owner only (SQLite gives its -wal and -shm
/// files the database's mode), and takes group and other access away from files an older
/// version left open.
fn make_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = PathBuf::from(name);
        match std::fs::metadata(&file) {
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Schema changes, applied in order; `user_version` counts how many have run.
const MIGRATIONS: &[&str] = &[
    // 1: the vault.
    "CREATE TABLE keyring (
         id INTEGER PRIMARY KEY CHECK (id = 1),
         wrapped_data_key BLOB NOT NULL,
         created_at INTEGER NOT NULL
     );
     CREATE TABLE credentials (
         name TEXT PRIMARY KEY,
         kind TEXT NOT NULL,
         fingerprint TEXT,
         public_key TEXT,
         created_at INTEGER NOT NULL,
         sealed BLOB NOT NULL
     );",
    // 2: locks placed by security; they outlive restarts.
    "CREATE TABLE locks (
         user TEXT PRIMARY KEY,
         reason TEXT NOT NULL,
         locked_by TEXT NOT NULL,
         since INTEGER NOT NULL,
         until INTEGER
     );",
    // 3: just-in-time access. Times are Unix milliseconds (grants can be seconds long).
    "CREATE TABLE requests (
         id INTEGER PRIMARY KEY AUTOINCREMENT,
         user TEXT NOT NULL,
         target TEXT NOT NULL,
         role TEXT NOT NULL,
         reason TEXT NOT NULL,
         duration_ms INTEGER NOT NULL,
         created_at INTEGER NOT NULL,
         expires_at INTEGER NOT NULL,
         needed INTEGER NOT NULL,
         state TEXT NOT NULL,
         decided_by TEXT,
         decision_reason TEXT,
         grant_id INTEGER
     );
     CREATE TABLE approvals (
         request_id INTEGER NOT NULL REFERENCES requests(id),
         approver TEXT NOT NULL,
         comment TEXT,
         at INTEGER NOT NULL,
         PRIMARY KEY (request_id, approver)
     );
     CREATE TABLE grants (
         id INTEGER PRIMARY KEY AUTOINCREMENT,
         user TEXT NOT NULL,
         target TEXT NOT NULL,
         role TEXT NOT NULL,
         reason TEXT NOT NULL,
         request_id INTEGER,
         starts_at INTEGER NOT NULL,
         expires_at INTEGER NOT NULL,
         revoked_at INTEGER,
         revoked_by TEXT,
         revoke_reason TEXT,
         break_glass INTEGER NOT NULL DEFAULT 0,
         acknowledged_at INTEGER,
         acknowledged_by TEXT,
         end_audited INTEGER NOT NULL DEFAULT 0
     );
     CREATE INDEX grants_by_user ON grants(user, target);",
    // 4: command lines held for review are requests too; each request keeps its approvers.
    "ALTER TABLE requests ADD COLUMN kind TEXT NOT NULL DEFAULT 'access';
     ALTER TABLE requests ADD COLUMN command TEXT;
     ALTER TABLE requests ADD COLUMN rule TEXT;
     ALTER TABLE requests ADD COLUMN session TEXT;
     ALTER TABLE requests ADD COLUMN approvers TEXT NOT NULL DEFAULT '';",
    // 5: the last TOTP step accepted per user, so a code is never accepted twice, restarts
    // included.
    "CREATE TABLE totp_steps (
         user TEXT PRIMARY KEY,
         step INTEGER NOT NULL
     );",
    // 6: anchors of evidence kept outside the files they protect: the audit log's last line
    // (count and tag) and each recording's seal, so truncating or swapping files shows.
    "CREATE TABLE anchors (
         name TEXT PRIMARY KEY,
         count INTEGER NOT NULL,
         tag TEXT NOT NULL,
         sealed INTEGER NOT NULL DEFAULT 0,
         updated_at INTEGER NOT NULL
     );",
];

/// The open state database.
pub struct Store {
    path: PathBuf,
    connection: Mutex<Connection>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating if needed) and migrates the database.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let error = |source| StoreError::Sqlite {
            path: path.to_owned(),
            source,
        };
        make_private(path).map_err(|source| StoreError::Private {
            path: path.to_owned(),
            source,
        })?;
        let connection = Connection::open(path).map_err(error)?;
        connection
            .busy_timeout(Duration::from_secs(5))
            .map_err(error)?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(error)?;
        // With WAL, NORMAL survives a crash of the process and costs no fsync per commit
        // (the audit anchor moves with every line).
        connection
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(error)?;
        connection
            .pragma_update(None, "foreign_keys", "ON")
            .map_err(error)?;
        let version: i64 = connection
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(error)?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::TooNew {
                path: path.to_owned(),
                found: version,
                known,
            });
        }
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let next = index as i64 + 1;
            connection
                .execute_batch(&format!(
                    "BEGIN; {migration} PRAGMA user_version = {next}; COMMIT;"
                ))
                .map_err(error)?;
        }
        Ok(Self {
            path: path.to_owned(),
            connection: Mutex::new(connection),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with the connection.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        // A panic while holding the lock cannot leave SQLite inconsistent (statements are
        // atomic), so a poisoned lock is still safe to use.
        let connection = self
            .connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&connection).map_err(|source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        })
    }
}
