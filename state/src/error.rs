//! What can go wrong with the state store. Logged with its detail; API answers and users get
//! a plain sentence instead ("the state store is unavailable").

use std::path::PathBuf;

/// A state store failure.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A statement failed.
    #[error("state database {}: {}", path.display(), sqlite_words(source))]
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
        "{location} has schema version {found}, newer than this portcullis understands ({known}); upgrade portcullis"
    )]
    TooNew {
        /// The database, in words ("state database /var/lib/…/state.db").
        location: String,
        /// Its version.
        found: i64,
        /// The newest this build knows.
        known: i64,
    },
    /// A PostgreSQL statement failed.
    #[error("{location}: {source}")]
    Postgres {
        /// The database (its URL without a password).
        location: String,
        /// What the server or the client library said.
        source: tokio_postgres::Error,
    },
    /// The database cannot be reached (refused, timed out, down).
    #[error("{location} cannot be reached: {detail}")]
    Unreachable {
        /// The database.
        location: String,
        /// Why.
        detail: String,
    },
    /// The database answered and refused us: wrong password, no such database or role, a
    /// TLS certificate that does not check out.
    #[error("{location} refused the connection: {detail}")]
    Rejected {
        /// The database.
        location: String,
        /// Why.
        detail: String,
    },
    /// The settings cannot work (a URL with a password in it, an unknown sslmode, …).
    #[error("{0}")]
    Settings(String),
    /// The store's worker is gone (the process is shutting down, or it panicked).
    #[error("the state store has stopped")]
    Stopped,
}

impl StateError {
    /// Another process holds the database's write lock (past the busy timeout): nothing
    /// was written, and the same request may succeed later.
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            Self::Sqlite {
                source: rusqlite::Error::SqliteFailure(failure, _),
                ..
            } if matches!(
                failure.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            )
        )
    }

    /// The database could not be reached: the caller may try again later (sysexits'
    /// EX_UNAVAILABLE at start).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unreachable { .. } | Self::Stopped)
    }

    /// Something an operator must change: settings, credentials, or the binary (sysexits'
    /// EX_USAGE at start, like any configuration problem).
    pub fn needs_operator(&self) -> bool {
        matches!(
            self,
            Self::Rejected { .. } | Self::Settings(_) | Self::TooNew { .. }
        )
    }
}

/// What SQLite said, in words an operator can act on where SQLite's own are terse.
fn sqlite_words(error: &rusqlite::Error) -> String {
    let rusqlite::Error::SqliteFailure(failure, _) = error else {
        return error.to_string();
    };
    match failure.code {
        rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt => format!(
            "is damaged or not a portcullis state database ({error}); restore it from a backup, or move it aside to start with an empty one"
        ),
        rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked => {
            format!("is locked by another process ({error}); nothing was written")
        }
        rusqlite::ErrorCode::ReadOnly => {
            format!("cannot be written ({error}): is its file or file system read-only?")
        }
        rusqlite::ErrorCode::DiskFull => format!("cannot be written: the disk is full ({error})"),
        _ => error.to_string(),
    }
}
