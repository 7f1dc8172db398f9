//! What can go wrong with the state store. Logged with its detail; API answers and users get
//! a plain sentence instead ("the state store is unavailable").

use std::path::PathBuf;

/// A state store failure.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A statement failed.
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
    /// The store's worker is gone (the process is shutting down, or it panicked).
    #[error("the state store has stopped")]
    Stopped,
}
