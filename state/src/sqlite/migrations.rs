//! The schema, as a list of changes applied in order; `PRAGMA user_version` counts how many
//! have run. Never edit an entry that has shipped: add one.

use std::path::Path;

use rusqlite::Connection;

use crate::StateError;

pub(super) const MIGRATIONS: &[&str] = &[
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
    // 7: one time representation, Unix milliseconds: locks and the vault kept seconds.
    "UPDATE locks SET since = since * 1000, until = until * 1000;
     UPDATE keyring SET created_at = created_at * 1000;
     UPDATE credentials SET created_at = created_at * 1000;",
    // 8: failed guesses (logins, activation codes, API tokens), per throttle key, so every
    // node counts the same failures and a restart forgets none. A row is a failure, or a
    // slot reserved for a verification in progress (`slot` groups a reservation's rows).
    "CREATE TABLE guesses (
         id INTEGER PRIMARY KEY AUTOINCREMENT,
         slot INTEGER NOT NULL,
         key TEXT NOT NULL,
         at INTEGER NOT NULL
     );
     CREATE INDEX guesses_by_key ON guesses(key, at);
     CREATE INDEX guesses_by_time ON guesses(at);
     CREATE INDEX guesses_by_slot ON guesses(slot);",
    // 9: the session index: every session, live or ended, so what ran is known beyond the
    // process that ran it (and sessions a crash left open are found at the next start).
    "CREATE TABLE sessions (
         id TEXT PRIMARY KEY,
         user TEXT NOT NULL,
         target TEXT,
         client TEXT NOT NULL,
         started_at INTEGER NOT NULL,
         ended_at INTEGER,
         end_reason TEXT,
         bytes_from_client INTEGER,
         bytes_to_client INTEGER
     );
     CREATE INDEX sessions_open ON sessions(ended_at, started_at);",
];

/// Brings `connection` to the newest schema; refuses a database written by a newer build.
pub(super) fn apply(connection: &mut Connection, path: &Path) -> Result<(), StateError> {
    let sqlite = |source| StateError::Sqlite {
        path: path.to_owned(),
        source,
    };
    let version: i64 = connection
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(sqlite)?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StateError::TooNew {
            location: format!("state database {}", path.display()),
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
            .map_err(sqlite)?;
    }
    Ok(())
}
