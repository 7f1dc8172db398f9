//! The session index: one row per session, written when it starts and when it ends.

use std::future::Future;

use rusqlite::{OptionalExtension, Row, params};

use super::{SqliteStore, from_ms, to_ms};
use crate::{SessionEnd, SessionRecord, StateError};

const COLUMNS: &str = "id, user, target, client, started_at, ended_at, end_reason, \
                       bytes_from_client, bytes_to_client";

fn from_row(row: &Row<'_>) -> rusqlite::Result<SessionRecord> {
    let ended_at: Option<i64> = row.get(5)?;
    let bytes = |column| -> rusqlite::Result<u64> {
        Ok(u64::try_from(row.get::<_, Option<i64>>(column)?.unwrap_or_default()).unwrap_or(0))
    };
    let ended = match ended_at {
        Some(at) => Some(SessionEnd {
            at: from_ms(at),
            reason: row.get::<_, Option<String>>(6)?.unwrap_or_default(),
            bytes_from_client: bytes(7)?,
            bytes_to_client: bytes(8)?,
        }),
        None => None,
    };
    Ok(SessionRecord {
        id: row.get(0)?,
        user: row.get(1)?,
        target: row.get(2)?,
        client: row.get(3)?,
        started_at: from_ms(row.get(4)?),
        ended,
        node: None,
        progress: None,
        grant: None,
    })
}

fn stored(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

impl SqliteStore {
    pub(super) fn open_session_(
        &self,
        session: SessionRecord,
    ) -> impl Future<Output = Result<(), StateError>> + Send + 'static {
        self.call(move |db| {
            db.execute(
                "INSERT INTO sessions (id, user, target, client, started_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    session.id,
                    session.user,
                    session.target,
                    session.client,
                    to_ms(session.started_at)
                ],
            )
            .map(|_| ())
        })
    }

    pub(super) fn close_session_(
        &self,
        id: &str,
        end: SessionEnd,
    ) -> impl Future<Output = Result<bool, StateError>> + Send + 'static {
        let id = id.to_owned();
        self.call(move |db| {
            db.execute(
                "UPDATE sessions SET ended_at = ?2, end_reason = ?3, bytes_from_client = ?4,
                     bytes_to_client = ?5
                 WHERE id = ?1 AND ended_at IS NULL",
                params![
                    id,
                    to_ms(end.at),
                    end.reason,
                    stored(end.bytes_from_client),
                    stored(end.bytes_to_client)
                ],
            )
            .map(|changed| changed == 1)
        })
    }

    pub(super) fn open_sessions_(
        &self,
    ) -> impl Future<Output = Result<Vec<SessionRecord>, StateError>> + Send + 'static {
        self.call(|db| {
            let mut statement = db.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM sessions WHERE ended_at IS NULL ORDER BY started_at, id"
            ))?;
            statement
                .query_map([], from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
    }

    pub(super) fn session_(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<SessionRecord>, StateError>> + Send + 'static {
        let id = id.to_owned();
        self.call(move |db| {
            db.query_row(
                &format!("SELECT {COLUMNS} FROM sessions WHERE id = ?1"),
                [id],
                from_row,
            )
            .optional()
        })
    }
}
