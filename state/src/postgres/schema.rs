//! The PostgreSQL schema, as a list of changes applied in order and counted in
//! `schema_migrations`. Never edit an entry that has shipped: add one.
//!
//! Every node applies what is missing when it starts, in one transaction under an advisory
//! lock, so two nodes starting together apply each change once (the second waits, then
//! finds nothing to do) and a failed change leaves the schema as it was.

use std::time::SystemTime;

use tokio_postgres::Client;

use super::to_ms;
use crate::StateError;

/// The advisory lock held while migrating (any fixed number no other user of the database
/// picks: "portcul" in ASCII).
const MIGRATION_LOCK: i64 = 0x0070_6f72_7463_756c;

pub(super) const MIGRATIONS: &[&str] = &[
    // 1: everything the SQLite store keeps (its nine migrations, in their final shape),
    // with user columns named user_name (USER is a keyword here), plus the node of each
    // session and the change log other nodes read.
    "CREATE TABLE keyring (
         id INTEGER PRIMARY KEY CHECK (id = 1),
         wrapped_data_key BYTEA NOT NULL,
         created_at BIGINT NOT NULL
     );
     CREATE TABLE credentials (
         name TEXT PRIMARY KEY,
         kind TEXT NOT NULL,
         fingerprint TEXT,
         public_key TEXT,
         created_at BIGINT NOT NULL,
         sealed BYTEA NOT NULL
     );
     CREATE TABLE locks (
         user_name TEXT PRIMARY KEY,
         reason TEXT NOT NULL,
         locked_by TEXT NOT NULL,
         since BIGINT NOT NULL,
         until BIGINT
     );
     CREATE TABLE requests (
         id BIGSERIAL PRIMARY KEY,
         user_name TEXT NOT NULL,
         target TEXT NOT NULL,
         role TEXT NOT NULL,
         reason TEXT NOT NULL,
         duration_ms BIGINT NOT NULL,
         created_at BIGINT NOT NULL,
         expires_at BIGINT NOT NULL,
         needed INTEGER NOT NULL,
         state TEXT NOT NULL,
         decided_by TEXT,
         decision_reason TEXT,
         grant_id BIGINT,
         kind TEXT NOT NULL DEFAULT 'access',
         command TEXT,
         rule TEXT,
         session TEXT,
         approvers TEXT NOT NULL DEFAULT ''
     );
     CREATE INDEX requests_pending ON requests(state, id);
     CREATE TABLE approvals (
         seq BIGSERIAL,
         request_id BIGINT NOT NULL REFERENCES requests(id),
         approver TEXT NOT NULL,
         comment TEXT,
         at BIGINT NOT NULL,
         PRIMARY KEY (request_id, approver)
     );
     CREATE TABLE grants (
         id BIGSERIAL PRIMARY KEY,
         user_name TEXT NOT NULL,
         target TEXT NOT NULL,
         role TEXT NOT NULL,
         reason TEXT NOT NULL,
         request_id BIGINT,
         starts_at BIGINT NOT NULL,
         expires_at BIGINT NOT NULL,
         revoked_at BIGINT,
         revoked_by TEXT,
         revoke_reason TEXT,
         break_glass BOOLEAN NOT NULL DEFAULT false,
         acknowledged_at BIGINT,
         acknowledged_by TEXT,
         end_audited BOOLEAN NOT NULL DEFAULT false
     );
     CREATE INDEX grants_by_user ON grants(user_name, target);
     CREATE INDEX grants_live ON grants(end_audited, id);
     CREATE TABLE totp_steps (
         user_name TEXT PRIMARY KEY,
         step BIGINT NOT NULL
     );
     CREATE TABLE anchors (
         name TEXT PRIMARY KEY,
         count BIGINT NOT NULL,
         tag TEXT NOT NULL,
         sealed BOOLEAN NOT NULL DEFAULT false,
         updated_at BIGINT NOT NULL
     );
     CREATE TABLE guesses (
         id BIGSERIAL PRIMARY KEY,
         slot BIGINT NOT NULL,
         key TEXT NOT NULL,
         at BIGINT NOT NULL
     );
     CREATE INDEX guesses_by_key ON guesses(key, at);
     CREATE INDEX guesses_by_time ON guesses(at);
     CREATE INDEX guesses_by_slot ON guesses(slot);
     CREATE TABLE sessions (
         id TEXT PRIMARY KEY,
         node TEXT NOT NULL,
         user_name TEXT NOT NULL,
         target TEXT,
         client TEXT NOT NULL,
         started_at BIGINT NOT NULL,
         ended_at BIGINT,
         end_reason TEXT,
         bytes_from_client BIGINT,
         bytes_to_client BIGINT
     );
     CREATE INDEX sessions_open ON sessions(ended_at, started_at);
     CREATE TABLE changes (
         id BIGSERIAL PRIMARY KEY,
         origin TEXT NOT NULL,
         at BIGINT NOT NULL,
         kind TEXT NOT NULL,
         subject TEXT NOT NULL DEFAULT '',
         number BIGINT,
         other BIGINT,
         state TEXT,
         by_whom TEXT,
         reason TEXT,
         flag BOOLEAN
     );
     CREATE INDEX changes_by_time ON changes(at);",
    // 2: the nodes, each with its latest heartbeat (by the database's clock, so nodes'
    // clocks need not agree), and the bytes of live sessions as of their node's heartbeat.
    "CREATE TABLE nodes (
         name TEXT PRIMARY KEY,
         started_at BIGINT NOT NULL,
         seen_at BIGINT NOT NULL,
         admin TEXT,
         lost_at BIGINT
     );
     CREATE INDEX sessions_by_node ON sessions(node, ended_at);",
    // 3: a copy of every node's audit log, for searches that see the whole cluster.
    "CREATE TABLE audit_lines (
         node TEXT NOT NULL,
         seq BIGINT NOT NULL,
         time TEXT NOT NULL,
         event TEXT NOT NULL,
         user_name TEXT,
         target TEXT,
         session TEXT,
         body TEXT NOT NULL,
         PRIMARY KEY (node, seq)
     );
     CREATE INDEX audit_lines_by_time ON audit_lines(time DESC, node DESC, seq DESC);
     CREATE INDEX audit_lines_by_session ON audit_lines(session);",
    // 4: one-time live-view tickets (issued by one node, used on any), by their hash.
    "CREATE TABLE live_tickets (
         hash TEXT PRIMARY KEY,
         session TEXT NOT NULL,
         holder TEXT NOT NULL,
         scopes TEXT NOT NULL,
         expires_at BIGINT NOT NULL
     );",
    // 5: the grant a live session rests on, from its node's heartbeat (so a revocation on
    // any node can say how many sessions it ends).
    "ALTER TABLE sessions ADD COLUMN grant_id BIGINT;",
];

/// Brings the database to the newest schema; refuses one written by a newer build.
pub(super) async fn apply(
    client: &mut Client,
    location: &str,
    node: &str,
) -> Result<(), StateError> {
    let failed = |source| StateError::Postgres {
        location: location.to_owned(),
        source,
    };
    let transaction = client.transaction().await.map_err(failed)?;
    // Waiting behind another node's migration is expected; waiting forever is not.
    transaction
        .batch_execute("SET LOCAL lock_timeout = '60s'")
        .await
        .map_err(failed)?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(failed)?;
    transaction
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version INTEGER PRIMARY KEY,
                 applied_at BIGINT NOT NULL,
                 applied_by TEXT NOT NULL
             )",
        )
        .await
        .map_err(failed)?;
    let found: i32 = transaction
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .map_err(failed)?
        .get(0);
    let known = MIGRATIONS.len() as i64;
    if i64::from(found) > known {
        return Err(StateError::TooNew {
            location: format!("state database {location}"),
            found: i64::from(found),
            known,
        });
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = index as i32 + 1;
        transaction.batch_execute(migration).await.map_err(failed)?;
        transaction
            .execute(
                "INSERT INTO schema_migrations (version, applied_at, applied_by) VALUES ($1, $2, $3)",
                &[&version, &to_ms(SystemTime::now()), &node],
            )
            .await
            .map_err(failed)?;
    }
    transaction.commit().await.map_err(failed)
}
