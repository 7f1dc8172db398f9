//! The store contract against the SQLite backend, plus what only SQLite has (its file).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod contract;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use portcullis_state::{SqliteStore, StateError, StateStore};

/// A fresh database in a temp dir, and a way to open it again.
fn fresh() -> (tempfile::TempDir, Box<contract::Open>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let open = move || -> Arc<dyn StateStore> { Arc::new(SqliteStore::open(&path).unwrap()) };
    (dir, Box::new(open))
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let (_dir, open) = fresh();
            contract::$name(&*open).await;
        }
    )*};
}

contract!(
    locks_hold_until_their_time_survive_a_restart_and_are_announced,
    requests_keep_their_approvals_and_are_decided_once,
    grants_end_once_whoever_ends_them,
    the_vault_keeps_one_data_key_and_sealed_rows,
    totp_steps_and_anchors_persist,
    racing_writers_agree,
    guesses_are_limited_per_key_given_back_on_success_and_forgotten_in_time,
    sessions_are_indexed_from_start_to_end_and_outlive_the_process,
);

#[test]
fn the_database_is_private_and_a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    std::fs::write(&path, b"").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    drop(SqliteStore::open(&path).unwrap());
    for suffix in ["", "-wal", "-shm"] {
        let file = dir.path().join(format!("state.db{suffix}"));
        if let Ok(meta) = std::fs::metadata(&file) {
            assert_eq!(meta.permissions().mode() & 0o077, 0, "{}", file.display());
        }
    }
    let db = rusqlite::Connection::open(&path).unwrap();
    db.pragma_update(None, "user_version", 999).unwrap();
    drop(db);
    assert!(matches!(
        SqliteStore::open(&path),
        Err(StateError::TooNew { found: 999, .. })
    ));
}

#[test]
fn a_synchronous_caller_can_wait_for_it_without_a_runtime() {
    let (_dir, open) = fresh();
    let store = open();
    assert!(futures::executor::block_on(store.accept_totp_step("alice", 1)).unwrap());
}

#[test]
fn lock_times_kept_in_seconds_by_an_older_version_are_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(SqliteStore::open(&path).unwrap());
    // Back to version 6, with a lock written the old way (seconds).
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute(
        "INSERT INTO locks (user, reason, locked_by, since, until) VALUES ('alice', 'r', 'secops', 1000, 2000)",
        [],
    )
    .unwrap();
    // (Later migrations' tables go too, as version 6 had none of them.)
    db.execute_batch("DROP TABLE guesses; DROP TABLE sessions;")
        .unwrap();
    db.pragma_update(None, "user_version", 6).unwrap();
    drop(db);
    let store = SqliteStore::open(&path).unwrap();
    let lock = futures::executor::block_on(store.active_lock(
        "alice",
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_500),
    ))
    .unwrap()
    .unwrap();
    assert_eq!(
        lock.until,
        Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(2_000))
    );
}
