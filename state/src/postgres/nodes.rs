//! Nodes and their heartbeats. Times here are the database's (`clock_timestamp()`), so a
//! node whose clock is off is neither taken for dead nor kept alive by it.

use std::future::Future;
use std::time::Duration;

use tokio_postgres::Row;

use super::{PostgresStore, from_ms, sessions};
use crate::{LostNode, NodeBeat, NodeRecord, StateError};

/// The database's clock in milliseconds, as SQL.
const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

fn node_from_row(row: &Row) -> NodeRecord {
    NodeRecord {
        name: row.get("name"),
        started_at: from_ms(row.get("started_at")),
        seen_at: from_ms(row.get("seen_at")),
        admin: row.get("admin"),
        lost_at: row.get::<_, Option<i64>>("lost_at").map(from_ms),
    }
}

impl PostgresStore {
    pub(super) fn heartbeat_(
        &self,
        beat: NodeBeat,
    ) -> impl Future<Output = Result<(), StateError>> + Send + 'static {
        let node = self.node.clone();
        let first = !self.beaten.swap(true, std::sync::atomic::Ordering::Relaxed);
        self.call(move |mut db| async move {
            let transaction = db.transaction().await?;
            // A node's first beat after it starts says when it started.
            let started = if first { NOW_MS } else { "nodes.started_at" };
            transaction
                .execute(
                    &format!(
                        "INSERT INTO nodes (name, started_at, seen_at, admin) VALUES ($1, {NOW_MS}, {NOW_MS}, $2)
                         ON CONFLICT (name) DO UPDATE SET started_at = {started}, seen_at = {NOW_MS},
                             admin = excluded.admin, lost_at = NULL"
                    ),
                    &[&node, &beat.admin],
                )
                .await?;
            let ids: Vec<&str> = beat.sessions.iter().map(|s| s.id.as_str()).collect();
            let from: Vec<i64> = beat
                .sessions
                .iter()
                .map(|s| sessions::stored(s.bytes_from_client))
                .collect();
            let to: Vec<i64> = beat
                .sessions
                .iter()
                .map(|s| sessions::stored(s.bytes_to_client))
                .collect();
            let grants: Vec<Option<i64>> = beat
                .sessions
                .iter()
                .map(|s| s.grant.map(super::sql_id))
                .collect();
            if !ids.is_empty() {
                transaction
                    .execute(
                        "UPDATE sessions SET bytes_from_client = progress.from_client,
                             bytes_to_client = progress.to_client, grant_id = progress.grant_id
                         FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[])
                             AS progress(id, from_client, to_client, grant_id)
                         WHERE sessions.id = progress.id AND sessions.node = $5
                             AND sessions.ended_at IS NULL",
                        &[&ids, &from, &to, &grants, &node],
                    )
                    .await?;
            }
            transaction.commit().await
        })
    }

    pub(super) fn claim_lost_nodes_(
        &self,
        lease: Duration,
    ) -> impl Future<Output = Result<Vec<LostNode>, StateError>> + Send + 'static {
        let node = self.node.clone();
        let lease = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        self.call(move |mut db| async move {
            let transaction = db.transaction().await?;
            // SKIP LOCKED: a node another survivor is claiming right now is theirs.
            let lost = transaction
                .query(
                    &format!(
                        "SELECT name, seen_at FROM nodes
                         WHERE lost_at IS NULL AND name <> $1 AND seen_at < {NOW_MS} - $2
                         ORDER BY name FOR UPDATE SKIP LOCKED"
                    ),
                    &[&node, &lease],
                )
                .await?;
            let mut claimed = Vec::new();
            for row in lost {
                let name: String = row.get(0);
                transaction
                    .execute(
                        &format!("UPDATE nodes SET lost_at = {NOW_MS} WHERE name = $1"),
                        &[&name],
                    )
                    .await?;
                let ended = transaction
                    .query(
                        &format!(
                            "UPDATE sessions SET ended_at = {NOW_MS}, end_reason = 'node_lost'
                             WHERE node = $1 AND ended_at IS NULL RETURNING *"
                        ),
                        &[&name],
                    )
                    .await?;
                let mut sessions: Vec<_> = ended.iter().map(sessions::from_row).collect();
                sessions.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
                claimed.push(LostNode {
                    node: name,
                    seen_at: from_ms(row.get(1)),
                    sessions,
                });
            }
            transaction.commit().await?;
            Ok(claimed)
        })
    }

    pub(super) fn nodes_(
        &self,
    ) -> impl Future<Output = Result<Vec<NodeRecord>, StateError>> + Send + 'static {
        self.call(|db| async move {
            Ok(db
                .query("SELECT * FROM nodes ORDER BY name", &[])
                .await?
                .iter()
                .map(node_from_row)
                .collect())
        })
    }
}
