//! The change log: how a write on one node reaches every other.
//!
//! A write that others must hear of appends a row to `changes` in its own transaction and
//! sends `NOTIFY portcullis_changes`. Every store follows the log on a connection of its own:
//! woken by the notification, or every `resync_every` without one (a notification lost with
//! a dropped connection is repaired by the next read), it reads the rows after the last it
//! saw and announces the other stores' changes on its feed.
//!
//! Rows are appended under one advisory lock held to commit, so they become visible in id
//! order and "after the last id seen" never skips a row that commits late.
//!
//! What a feed promises is every change, once, on every node — not one order across nodes:
//! a store announces its own changes at once (even while its follower is reconnecting) and
//! the others' in log order as it reads them, so another node's earlier change may reach it
//! after its own later one. Subscribers re-read the state they are told changed.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, broadcast};
use tokio_postgres::{AsyncMessage, Client, GenericClient, NoTls, Row};

use super::{Tls, connect_error, id_of, sql_id, to_ms};
use crate::{Change, rows};

/// How long the follower waits before connecting again after losing its connection.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

/// The channel notifications go on.
const CHANNEL: &str = "portcullis_changes";

/// Serialises appends to the log ("changes" in ASCII).
const APPEND_LOCK: i64 = 0x0063_6861_6e67_6573;

/// How long rows are kept: a node away for longer has been failing closed anyway, and
/// re-reads what it holds when it is back.
const KEPT_FOR: Duration = Duration::from_secs(3600);

/// A change as a row: (kind, subject, number, other, state, by_whom, reason, flag).
type Encoded = (
    &'static str,
    String,
    Option<i64>,
    Option<i64>,
    Option<&'static str>,
    Option<String>,
    Option<String>,
    Option<bool>,
);

fn encode(change: &Change) -> Encoded {
    match change.clone() {
        Change::LockPlaced { user } => ("lock_placed", user, None, None, None, None, None, None),
        Change::LockLifted { user } => ("lock_lifted", user, None, None, None, None, None, None),
        Change::RequestCreated { id } => (
            "request_created",
            String::new(),
            Some(sql_id(id)),
            None,
            None,
            None,
            None,
            None,
        ),
        Change::RequestDecided { id, state } => {
            let (by, reason, grant) = rows::decision_columns(&state);
            (
                "request_decided",
                String::new(),
                Some(sql_id(id)),
                grant.map(sql_id),
                Some(rows::state_name(&state)),
                by,
                reason,
                None,
            )
        }
        Change::GrantActivated { id, user } => (
            "grant_activated",
            user,
            Some(sql_id(id)),
            None,
            None,
            None,
            None,
            None,
        ),
        Change::GrantEnded { id, user, revoked } => (
            "grant_ended",
            user,
            Some(sql_id(id)),
            None,
            None,
            None,
            None,
            Some(revoked),
        ),
        Change::KillRequested {
            session,
            by,
            reason,
        } => (
            "kill_requested",
            session,
            None,
            None,
            None,
            Some(by),
            Some(reason),
            None,
        ),
    }
}

/// A logged row as a change; `None` for a kind this build does not know (written by a newer
/// node during a rolling upgrade: it can only be ignored).
fn decode(row: &Row) -> Option<Change> {
    let kind: String = row.get("kind");
    let subject: String = row.get("subject");
    let number = row.get::<_, Option<i64>>("number").map(id_of);
    let text = |column| row.get::<_, Option<String>>(column).unwrap_or_default();
    Some(match kind.as_str() {
        "lock_placed" => Change::LockPlaced { user: subject },
        "lock_lifted" => Change::LockLifted { user: subject },
        "request_created" => Change::RequestCreated { id: number? },
        "request_decided" => Change::RequestDecided {
            id: number?,
            state: rows::request_state(
                &text("state"),
                row.get::<_, Option<i64>>("other").map(id_of),
                row.get("by_whom"),
                row.get("reason"),
            )?,
        },
        "grant_activated" => Change::GrantActivated {
            id: number?,
            user: subject,
        },
        "grant_ended" => Change::GrantEnded {
            id: number?,
            user: subject,
            revoked: row.get::<_, Option<bool>>("flag").unwrap_or(true),
        },
        "kill_requested" => Change::KillRequested {
            session: subject,
            by: text("by_whom"),
            reason: text("reason"),
        },
        _ => return None,
    })
}

/// Appends `change` to the log inside the caller's transaction, and notifies at commit.
pub(super) async fn record(
    transaction: &impl GenericClient,
    origin: &str,
    change: &Change,
) -> Result<(), tokio_postgres::Error> {
    let (kind, subject, number, other, state, by_whom, reason, flag) = encode(change);
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&APPEND_LOCK])
        .await?;
    transaction
        .execute(
            "INSERT INTO changes (origin, at, kind, subject, number, other, state, by_whom, reason, flag)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[
                &origin,
                &to_ms(SystemTime::now()),
                &kind,
                &subject,
                &number,
                &other,
                &state,
                &by_whom,
                &reason,
                &flag,
            ],
        )
        .await?;
    transaction
        .execute("SELECT pg_notify($1, '')", &[&CHANNEL])
        .await
        .map(|_| ())
}

/// The newest change's id (a new follower starts after it).
pub(super) async fn newest(db: &impl GenericClient) -> Result<i64, tokio_postgres::Error> {
    Ok(db
        .query_one("SELECT COALESCE(MAX(id), 0) FROM changes", &[])
        .await?
        .get(0))
}

/// What the follower needs.
pub(super) struct Follower {
    /// Up while the follower's connection is (read by [`crate::StateStore::reachable`]).
    pub connected: Arc<std::sync::atomic::AtomicBool>,
    pub config: tokio_postgres::Config,
    pub tls: Tls,
    pub origin: Arc<str>,
    pub feed: broadcast::Sender<Change>,
    /// The last change seen.
    pub cursor: i64,
    pub resync_every: Duration,
    pub location: String,
}

/// Follows the log for as long as the store's runtime runs, reconnecting when the
/// connection is lost and catching up on what was written meanwhile.
pub(super) async fn follow(mut follower: Follower) {
    let mut failing = false;
    loop {
        let wake = Arc::new(Notify::new());
        match listen(&follower, wake.clone()).await {
            Ok(client) => {
                follower.connected.store(true, Ordering::Relaxed);
                if failing {
                    tracing::info!(database = %follower.location, "following other nodes' changes again");
                    failing = false;
                }
                follow_on(&mut follower, &client, &wake).await;
                follower.connected.store(false, Ordering::Relaxed);
                tracing::warn!(database = %follower.location, "lost the connection following other nodes' changes; reconnecting");
            }
            Err(error) => {
                follower.connected.store(false, Ordering::Relaxed);
                if !failing {
                    tracing::warn!(
                        database = %follower.location,
                        %error,
                        "cannot follow other nodes' changes; retrying"
                    );
                    failing = true;
                }
            }
        }
        tokio::time::sleep(RECONNECT_PAUSE).await;
    }
}

/// Reads and announces until the connection fails.
async fn follow_on(follower: &mut Follower, client: &Client, wake: &Notify) {
    let mut resync = tokio::time::interval(follower.resync_every);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reads: u64 = 0;
    loop {
        // Read first: whatever was written while this connection was not listening yet.
        let rows = match client
            .query(
                "SELECT * FROM changes WHERE id > $1 ORDER BY id LIMIT 1000",
                &[&follower.cursor],
            )
            .await
        {
            Ok(rows) => rows,
            Err(_) => return,
        };
        let full = rows.len() == 1000;
        for row in rows {
            follower.cursor = row.get("id");
            let origin: String = row.get("origin");
            if origin == *follower.origin {
                continue;
            }
            match decode(&row) {
                Some(change) => {
                    let _ = follower.feed.send(change);
                }
                None => tracing::warn!(
                    kind = row.get::<_, String>("kind"),
                    "a change of a kind this portcullis does not know was ignored"
                ),
            }
        }
        reads += 1;
        if reads.is_multiple_of(64) {
            let old = to_ms(SystemTime::now() - KEPT_FOR);
            if client
                .execute("DELETE FROM changes WHERE at < $1", &[&old])
                .await
                .is_err()
            {
                return;
            }
        }
        if full {
            continue;
        }
        if client.is_closed() {
            return;
        }
        tokio::select! {
            () = wake.notified() => {}
            _ = resync.tick() => {}
        }
    }
}

/// Opens the follower's own connection and listens; notifications wake `wake`, and so does
/// the connection's end.
async fn listen(follower: &Follower, wake: Arc<Notify>) -> Result<Client, crate::StateError> {
    let failed = |error: tokio_postgres::Error| connect_error(&follower.location, &error);
    let client = match &follower.tls {
        Tls::Plain => {
            let (client, connection) = follower.config.connect(NoTls).await.map_err(failed)?;
            tokio::spawn(drive(connection, wake));
            client
        }
        Tls::Rustls(connector) => {
            let (client, connection) = follower
                .config
                .connect(connector.clone())
                .await
                .map_err(failed)?;
            tokio::spawn(drive(connection, wake));
            client
        }
    };
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .await
        .map_err(failed)?;
    Ok(client)
}

/// Runs the connection, turning notifications into wake-ups.
async fn drive<S, T>(mut connection: tokio_postgres::Connection<S, T>, wake: Arc<Notify>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            Some(Ok(AsyncMessage::Notification(_))) => wake.notify_one(),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
    wake.notify_one();
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_policy::RequestState;

    #[test]
    fn every_change_has_a_kind_of_its_own() {
        let changes = [
            Change::LockPlaced { user: "a".into() },
            Change::LockLifted { user: "a".into() },
            Change::RequestCreated { id: 1 },
            Change::RequestDecided {
                id: 1,
                state: RequestState::Denied {
                    by: "s".into(),
                    reason: "r".into(),
                },
            },
            Change::GrantActivated {
                id: 2,
                user: "a".into(),
            },
            Change::GrantEnded {
                id: 2,
                user: "a".into(),
                revoked: false,
            },
            Change::KillRequested {
                session: "s1".into(),
                by: "o".into(),
                reason: "r".into(),
            },
        ];
        let mut kinds: Vec<_> = changes.iter().map(|c| encode(c).0).collect();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), changes.len());
    }
}
