//! The session index, shared: one row per session with the node that runs it.

use std::future::Future;

use tokio_postgres::Row;

use super::{PostgresStore, from_ms, to_ms};
use crate::{SessionEnd, SessionRecord, StateError};

pub(super) fn from_row(row: &Row) -> SessionRecord {
    let bytes =
        |column| u64::try_from(row.get::<_, Option<i64>>(column).unwrap_or_default()).unwrap_or(0);
    let progress = match (
        row.get::<_, Option<i64>>("ended_at"),
        row.get::<_, Option<i64>>("bytes_from_client"),
    ) {
        (None, Some(_)) => Some((bytes("bytes_from_client"), bytes("bytes_to_client"))),
        _ => None,
    };
    let ended = row.get::<_, Option<i64>>("ended_at").map(|at| SessionEnd {
        at: from_ms(at),
        reason: row
            .get::<_, Option<String>>("end_reason")
            .unwrap_or_default(),
        bytes_from_client: bytes("bytes_from_client"),
        bytes_to_client: bytes("bytes_to_client"),
    });
    SessionRecord {
        id: row.get("id"),
        user: row.get("user_name"),
        target: row.get("target"),
        client: row.get("client"),
        started_at: from_ms(row.get("started_at")),
        ended,
        node: Some(row.get("node")),
        progress,
        grant: row.get::<_, Option<i64>>("grant_id").map(super::id_of),
    }
}

pub(super) fn stored(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

impl PostgresStore {
    pub(super) fn open_session_(
        &self,
        session: SessionRecord,
    ) -> impl Future<Output = Result<(), StateError>> + Send + 'static {
        let node = self.node.clone();
        self.call(move |db| async move {
            db.execute(
                "INSERT INTO sessions (id, node, user_name, target, client, started_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &session.id,
                    &node,
                    &session.user,
                    &session.target,
                    &session.client,
                    &to_ms(session.started_at),
                ],
            )
            .await
            .map(|_| ())
        })
    }

    pub(super) fn close_session_(
        &self,
        id: &str,
        end: SessionEnd,
    ) -> impl Future<Output = Result<bool, StateError>> + Send + 'static {
        let id = id.to_owned();
        self.call(move |db| async move {
            Ok(db
                .execute(
                    "UPDATE sessions SET ended_at = $2, end_reason = $3, bytes_from_client = $4,
                         bytes_to_client = $5
                     WHERE id = $1 AND ended_at IS NULL",
                    &[
                        &id,
                        &to_ms(end.at),
                        &end.reason,
                        &stored(end.bytes_from_client),
                        &stored(end.bytes_to_client),
                    ],
                )
                .await?
                == 1)
        })
    }

    pub(super) fn open_sessions_(
        &self,
    ) -> impl Future<Output = Result<Vec<SessionRecord>, StateError>> + Send + 'static {
        self.call(|db| async move {
            Ok(db
                .query(
                    "SELECT * FROM sessions WHERE ended_at IS NULL ORDER BY started_at, id",
                    &[],
                )
                .await?
                .iter()
                .map(from_row)
                .collect())
        })
    }

    pub(super) fn session_(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<SessionRecord>, StateError>> + Send + 'static {
        let id = id.to_owned();
        self.call(move |db| async move {
            Ok(db
                .query_opt("SELECT * FROM sessions WHERE id = $1", &[&id])
                .await?
                .as_ref()
                .map(from_row))
        })
    }
}
