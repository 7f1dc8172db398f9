//! The shared copy of every node's audit log: written by each node's shipper, read by
//! searches on any node. Filters that are columns run here; the rest (command and file
//! patterns) run in the broker over the pages read.

use std::future::Future;

use tokio_postgres::types::ToSql;

use super::{PostgresStore, id_of, sql_id};
use crate::{AuditLine, AuditPage, SharedAuditLine, StateError};

impl PostgresStore {
    pub(super) fn audit_lines_held_(
        &self,
    ) -> impl Future<Output = Result<u64, StateError>> + Send + 'static {
        let node = self.node.clone();
        self.call(move |db| async move {
            Ok(id_of(
                db.query_one(
                    "SELECT COALESCE(MAX(seq), 0) FROM audit_lines WHERE node = $1",
                    &[&node],
                )
                .await?
                .get(0),
            ))
        })
    }

    pub(super) fn hold_audit_lines_(
        &self,
        lines: Vec<AuditLine>,
    ) -> impl Future<Output = Result<(), StateError>> + Send + 'static {
        let node = self.node.clone();
        self.call(move |mut db| async move {
            let transaction = db.transaction().await?;
            let statement = transaction
                .prepare_cached(
                    "INSERT INTO audit_lines (node, seq, time, event, user_name, target, session, body)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
                )
                .await?;
            for line in &lines {
                transaction
                    .execute(
                        &statement,
                        &[
                            &node,
                            &sql_id(line.seq),
                            &line.time,
                            &line.event,
                            &line.user,
                            &line.target,
                            &line.session,
                            &line.body,
                        ],
                    )
                    .await?;
            }
            transaction.commit().await
        })
    }

    pub(super) fn audit_page_(
        &self,
        page: AuditPage,
    ) -> impl Future<Output = Result<Vec<SharedAuditLine>, StateError>> + Send + 'static {
        self.call(move |db| async move {
            let mut conditions: Vec<String> = Vec::new();
            let mut values: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
            let mut add = |sql: &str, value: Box<dyn ToSql + Sync + Send>| {
                values.push(value);
                conditions.push(sql.replace('?', &format!("${}", values.len())));
            };
            if let Some(since) = page.since {
                add("time >= ?", Box::new(since));
            }
            if let Some(event) = page.event {
                if page.event_prefix {
                    add("starts_with(event, ?)", Box::new(event));
                } else {
                    add("event = ?", Box::new(event));
                }
            }
            if let Some(user) = page.user {
                add("user_name = ?", Box::new(user));
            }
            if let Some(target) = page.target {
                add("target = ?", Box::new(target));
            }
            if let Some(session) = page.session {
                add("session = ?", Box::new(session));
            }
            if let Some((time, node, seq)) = page.before {
                values.push(Box::new(time));
                values.push(Box::new(node));
                values.push(Box::new(sql_id(seq)));
                let n = values.len();
                conditions.push(format!(
                    "(time, node, seq) < (${}, ${}, ${})",
                    n - 2,
                    n - 1,
                    n
                ));
            }
            let limit = i64::try_from(page.limit.max(1)).unwrap_or(i64::MAX);
            values.push(Box::new(limit));
            let sql = format!(
                "SELECT node, seq, time, body FROM audit_lines WHERE {} \
                 ORDER BY time DESC, node DESC, seq DESC LIMIT ${}",
                if conditions.is_empty() {
                    "true".to_owned()
                } else {
                    conditions.join(" AND ")
                },
                values.len()
            );
            let parameters: Vec<&(dyn ToSql + Sync)> = values
                .iter()
                .map(|v| v.as_ref() as &(dyn ToSql + Sync))
                .collect();
            Ok(db
                .query(&sql, &parameters)
                .await?
                .iter()
                .map(|row| SharedAuditLine {
                    node: row.get(0),
                    seq: id_of(row.get(1)),
                    time: row.get(2),
                    body: row.get(3),
                })
                .collect())
        })
    }
}
