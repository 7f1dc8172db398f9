//! Locks, just-in-time requests (with their approvals) and grants. Decisions that must be
//! taken once — settling a request, ending a grant — are single conditional statements, so
//! of two nodes racing, one wins and the other is told it lost.

use std::future::Future;
use std::time::{Duration, SystemTime};

use portcullis_policy::{Grant, Lock, Request, RequestState};
use tokio_postgres::{GenericClient, Row};

use super::{PostgresStore, changes, from_ms, id_of, sql_id, to_ms};
use crate::{Change, GrantRecord, NewGrant, StateError, Usage, rows};

fn lock_from_row(row: &Row) -> Lock {
    Lock {
        user: row.get("user_name"),
        reason: row.get("reason"),
        by: row.get("locked_by"),
        since: from_ms(row.get("since")),
        until: row.get::<_, Option<i64>>("until").map(from_ms),
    }
}

fn grant_from_row(row: &Row) -> GrantRecord {
    let revoked_by: Option<String> = row.get("revoked_by");
    let revoke_reason: Option<String> = row.get("revoke_reason");
    let acknowledged_at: Option<i64> = row.get("acknowledged_at");
    let acknowledged_by: Option<String> = row.get("acknowledged_by");
    GrantRecord {
        grant: Grant {
            id: id_of(row.get("id")),
            user: row.get("user_name"),
            target: row.get("target"),
            role: row.get("role"),
            starts_at: from_ms(row.get("starts_at")),
            expires_at: from_ms(row.get("expires_at")),
            revoked_at: row.get::<_, Option<i64>>("revoked_at").map(from_ms),
        },
        reason: row.get("reason"),
        request: row.get::<_, Option<i64>>("request_id").map(id_of),
        break_glass: row.get("break_glass"),
        revoked: revoked_by.map(|by| (by, revoke_reason.unwrap_or_default())),
        acknowledged: acknowledged_by.zip(acknowledged_at.map(from_ms)),
    }
}

fn request_from_row(row: &Row, approved_by: Vec<String>) -> Request {
    let state: String = row.get("state");
    let kind: String = row.get("kind");
    let approvers: String = row.get("approvers");
    Request {
        id: id_of(row.get("id")),
        user: row.get("user_name"),
        target: row.get("target"),
        role: row.get("role"),
        reason: row.get("reason"),
        duration: Duration::from_millis(id_of(row.get("duration_ms"))),
        created_at: from_ms(row.get("created_at")),
        expires_at: from_ms(row.get("expires_at")),
        needed: u32::try_from(row.get::<_, i32>("needed")).unwrap_or_default(),
        approved_by,
        state: rows::request_state(
            &state,
            row.get::<_, Option<i64>>("grant_id").map(id_of),
            row.get("decided_by"),
            row.get("decision_reason"),
        )
        .unwrap_or(RequestState::Pending),
        kind: rows::request_kind(
            &kind,
            row.get("command"),
            row.get("rule"),
            row.get("session"),
        ),
        approvers: rows::approvers(&approvers),
    }
}

/// Requests matching `condition` (SQL after WHERE, with `$1` the optional limit), each with
/// its approvers in the order they approved.
async fn query_requests(
    db: &impl GenericClient,
    condition: &str,
    id: Option<i64>,
    limit: Option<usize>,
) -> Result<Vec<Request>, tokio_postgres::Error> {
    let sql = format!("SELECT * FROM requests WHERE {condition}");
    let rows = match (id, limit) {
        (Some(id), _) => db.query(&sql, &[&id]).await?,
        (None, Some(limit)) => {
            db.query(&sql, &[&i64::try_from(limit).unwrap_or(i64::MAX)])
                .await?
        }
        (None, None) => db.query(&sql, &[]).await?,
    };
    let ids: Vec<i64> = rows.iter().map(|row| row.get("id")).collect();
    let approvals = db
        .query(
            "SELECT request_id, approver FROM approvals WHERE request_id = ANY($1)
             ORDER BY at, seq",
            &[&ids],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let id: i64 = row.get("id");
            let approved_by = approvals
                .iter()
                .filter(|a| a.get::<_, i64>(0) == id)
                .map(|a| a.get::<_, String>(1))
                .collect();
            request_from_row(row, approved_by)
        })
        .collect())
}

impl PostgresStore {
    pub(super) fn place_lock_(
        &self,
        lock: Lock,
    ) -> impl Future<Output = Result<(), StateError>> + Send + 'static {
        self.call_and_publish(move |mut db, origin| async move {
            let transaction = db.transaction().await?;
            transaction
                .execute(
                    "INSERT INTO locks (user_name, reason, locked_by, since, until)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (user_name) DO UPDATE SET reason = excluded.reason,
                         locked_by = excluded.locked_by, since = excluded.since,
                         until = excluded.until",
                    &[
                        &lock.user,
                        &lock.reason,
                        &lock.by,
                        &to_ms(lock.since),
                        &lock.until.map(to_ms),
                    ],
                )
                .await?;
            let change = Change::LockPlaced { user: lock.user };
            changes::record(&*transaction, &origin, &change).await?;
            transaction.commit().await?;
            Ok(((), Some(change)))
        })
    }

    pub(super) fn lift_lock_(
        &self,
        user: &str,
    ) -> impl Future<Output = Result<bool, StateError>> + Send + 'static {
        let user = user.to_owned();
        self.call_and_publish(move |mut db, origin| async move {
            let transaction = db.transaction().await?;
            let removed = transaction
                .execute("DELETE FROM locks WHERE user_name = $1", &[&user])
                .await?
                > 0;
            let change = removed.then_some(Change::LockLifted { user });
            if let Some(change) = &change {
                changes::record(&*transaction, &origin, change).await?;
            }
            transaction.commit().await?;
            Ok((removed, change))
        })
    }

    pub(super) fn active_lock_(
        &self,
        user: &str,
        now: SystemTime,
    ) -> impl Future<Output = Result<Option<Lock>, StateError>> + Send + 'static {
        let user = user.to_owned();
        self.call(move |db| async move {
            let statement = db
                .prepare_cached(
                    "SELECT * FROM locks WHERE user_name = $1 AND (until IS NULL OR until > $2)",
                )
                .await?;
            Ok(db
                .query_opt(&statement, &[&user, &to_ms(now)])
                .await?
                .as_ref()
                .map(lock_from_row))
        })
    }

    pub(super) fn active_locks_(
        &self,
        now: SystemTime,
    ) -> impl Future<Output = Result<Vec<Lock>, StateError>> + Send + 'static {
        self.call(move |db| async move {
            Ok(db
                .query(
                    "SELECT * FROM locks WHERE until IS NULL OR until > $1 ORDER BY user_name",
                    &[&to_ms(now)],
                )
                .await?
                .iter()
                .map(lock_from_row)
                .collect())
        })
    }

    pub(super) fn insert_request_(
        &self,
        mut request: Request,
    ) -> impl Future<Output = Result<Request, StateError>> + Send + 'static {
        self.call_and_publish(move |mut db, origin| async move {
            let (kind, command, rule, session) = rows::kind_columns(&request.kind);
            let transaction = db.transaction().await?;
            let row = transaction
                .query_one(
                    "INSERT INTO requests (user_name, target, role, reason, duration_ms, created_at,
                         expires_at, needed, state, kind, command, rule, session, approvers)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, $10, $11, $12, $13)
                     RETURNING id",
                    &[
                        &request.user,
                        &request.target,
                        &request.role,
                        &request.reason,
                        &i64::try_from(request.duration.as_millis()).unwrap_or(i64::MAX),
                        &to_ms(request.created_at),
                        &to_ms(request.expires_at),
                        &i32::try_from(request.needed).unwrap_or(i32::MAX),
                        &kind,
                        &command,
                        &rule,
                        &session,
                        &request.approvers.join(","),
                    ],
                )
                .await?;
            request.id = id_of(row.get(0));
            request.state = RequestState::Pending;
            request.approved_by.clear();
            let change = Change::RequestCreated { id: request.id };
            changes::record(&*transaction, &origin, &change).await?;
            transaction.commit().await?;
            Ok((request, Some(change)))
        })
    }

    pub(super) fn request_(
        &self,
        id: u64,
    ) -> impl Future<Output = Result<Option<Request>, StateError>> + Send + 'static {
        self.call(move |db| async move {
            Ok(query_requests(&**db, "id = $1", Some(sql_id(id)), None)
                .await?
                .into_iter()
                .next())
        })
    }

    pub(super) fn requests_where(
        &self,
        condition: &'static str,
        limit: Option<usize>,
    ) -> impl Future<Output = Result<Vec<Request>, StateError>> + Send + 'static {
        self.call(move |db| async move { query_requests(&**db, condition, None, limit).await })
    }

    pub(super) fn add_approval_(
        &self,
        id: u64,
        approver: &str,
        comment: Option<&str>,
        at: SystemTime,
    ) -> impl Future<Output = Result<bool, StateError>> + Send + 'static {
        let approver = approver.to_owned();
        let comment = comment.map(str::to_owned);
        self.call(move |db| async move {
            Ok(db
                .execute(
                    "INSERT INTO approvals (request_id, approver, comment, at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT DO NOTHING",
                    &[&sql_id(id), &approver, &comment, &to_ms(at)],
                )
                .await?
                == 1)
        })
    }

    pub(super) fn settle_request_(
        &self,
        id: u64,
        state: RequestState,
    ) -> impl Future<Output = Result<bool, StateError>> + Send + 'static {
        self.call_and_publish(move |mut db, origin| async move {
            let (decided_by, reason, grant) = rows::decision_columns(&state);
            let grant = grant.map(sql_id);
            let transaction = db.transaction().await?;
            let settled = transaction
                .execute(
                    "UPDATE requests SET state = $2, decided_by = $3, decision_reason = $4, grant_id = $5
                     WHERE id = $1 AND state = 'pending'",
                    &[&sql_id(id), &rows::state_name(&state), &decided_by, &reason, &grant],
                )
                .await?
                == 1;
            let change = settled.then_some(Change::RequestDecided { id, state });
            if let Some(change) = &change {
                changes::record(&*transaction, &origin, change).await?;
            }
            transaction.commit().await?;
            Ok((settled, change))
        })
    }

    pub(super) fn insert_grant_(
        &self,
        new: NewGrant,
    ) -> impl Future<Output = Result<GrantRecord, StateError>> + Send + 'static {
        self.call_and_publish(move |mut db, origin| async move {
            let expires_at = new.starts_at + new.duration;
            let transaction = db.transaction().await?;
            let row = transaction
                .query_one(
                    "INSERT INTO grants (user_name, target, role, reason, request_id, starts_at,
                         expires_at, break_glass)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                    &[
                        &new.user,
                        &new.target,
                        &new.role,
                        &new.reason,
                        &new.request.map(sql_id),
                        &to_ms(new.starts_at),
                        &to_ms(expires_at),
                        &new.break_glass,
                    ],
                )
                .await?;
            let record = GrantRecord {
                grant: Grant {
                    id: id_of(row.get(0)),
                    user: new.user,
                    target: new.target,
                    role: new.role,
                    starts_at: new.starts_at,
                    expires_at,
                    revoked_at: None,
                },
                reason: new.reason,
                request: new.request,
                break_glass: new.break_glass,
                revoked: None,
                acknowledged: None,
            };
            let change = Change::GrantActivated {
                id: record.grant.id,
                user: record.grant.user.clone(),
            };
            changes::record(&*transaction, &origin, &change).await?;
            transaction.commit().await?;
            Ok((record, Some(change)))
        })
    }

    pub(super) fn grant_(
        &self,
        id: u64,
    ) -> impl Future<Output = Result<Option<GrantRecord>, StateError>> + Send + 'static {
        self.call(move |db| async move {
            Ok(db
                .query_opt("SELECT * FROM grants WHERE id = $1", &[&sql_id(id)])
                .await?
                .as_ref()
                .map(grant_from_row))
        })
    }

    pub(super) fn grants_where(
        &self,
        condition: &'static str,
        limit: Option<usize>,
    ) -> impl Future<Output = Result<Vec<GrantRecord>, StateError>> + Send + 'static {
        self.call(move |db| async move {
            let sql = format!("SELECT * FROM grants WHERE {condition}");
            let rows = match limit {
                Some(limit) => {
                    db.query(&sql, &[&i64::try_from(limit).unwrap_or(i64::MAX)])
                        .await?
                }
                None => db.query(&sql, &[]).await?,
            };
            Ok(rows.iter().map(grant_from_row).collect())
        })
    }

    /// Ends a live grant once, with `revoke` (at, by, reason) if it is revoked: false if it
    /// had ended already; announces whose it was.
    fn end_grant(
        &self,
        id: u64,
        revoke: Option<(SystemTime, String, String)>,
    ) -> impl Future<Output = Result<bool, StateError>> + Send + 'static {
        self.call_and_publish(move |mut db, origin| async move {
            let transaction = db.transaction().await?;
            let revoked = revoke.is_some();
            let (at, by, reason) = match revoke {
                Some((at, by, reason)) => (Some(to_ms(at)), Some(by), Some(reason)),
                None => (None, None, None),
            };
            let ended = transaction
                .query_opt(
                    "UPDATE grants SET end_audited = true,
                         revoked_at = COALESCE($2, revoked_at),
                         revoked_by = COALESCE($3, revoked_by),
                         revoke_reason = COALESCE($4, revoke_reason)
                     WHERE id = $1 AND NOT end_audited RETURNING user_name",
                    &[&sql_id(id), &at, &by, &reason],
                )
                .await?;
            let change = ended.map(|row| Change::GrantEnded {
                id,
                user: row.get(0),
                revoked,
            });
            if let Some(change) = &change {
                changes::record(&*transaction, &origin, change).await?;
            }
            transaction.commit().await?;
            Ok((change.is_some(), change))
        })
    }

    pub(super) fn revoke_grant_(
        &self,
        id: u64,
        by: &str,
        reason: &str,
        at: SystemTime,
    ) -> impl Future<Output = Result<bool, StateError>> + Send + 'static {
        self.end_grant(id, Some((at, by.to_owned(), reason.to_owned())))
    }

    pub(super) fn close_expired_grant_(
        &self,
        id: u64,
    ) -> impl Future<Output = Result<bool, StateError>> + Send + 'static {
        self.end_grant(id, None)
    }

    pub(super) fn acknowledge_grant_(
        &self,
        id: u64,
        by: &str,
        at: SystemTime,
    ) -> impl Future<Output = Result<bool, StateError>> + Send + 'static {
        let by = by.to_owned();
        self.call(move |db| async move {
            Ok(db
                .execute(
                    "UPDATE grants SET acknowledged_at = $2, acknowledged_by = $3 WHERE id = $1",
                    &[&sql_id(id), &to_ms(at), &by],
                )
                .await?
                == 1)
        })
    }

    pub(super) fn usage_(
        &self,
    ) -> impl Future<Output = Result<Vec<Usage>, StateError>> + Send + 'static {
        self.call(|db| async move {
            Ok(db
                .query(
                    "SELECT user_name, role, target, COUNT(*), MAX(starts_at) FROM grants
                     GROUP BY user_name, role, target ORDER BY user_name, role, target",
                    &[],
                )
                .await?
                .iter()
                .map(|row| Usage {
                    user: row.get(0),
                    role: row.get(1),
                    target: row.get(2),
                    activations: id_of(row.get(3)),
                    last: from_ms(row.get(4)),
                })
                .collect())
        })
    }
}
