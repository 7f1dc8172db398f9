//! Locks, just-in-time requests (with their approvals) and grants.

use std::future::Future;
use std::time::{Duration, SystemTime};

use portcullis_policy::{Grant, Lock, Request, RequestState};
use rusqlite::{OptionalExtension, Row, params};

use super::{SqliteStore, from_ms, to_ms};
use crate::rows::{id_of, sql_id};
use crate::{Change, GrantRecord, NewGrant, StateError, Usage, rows};

fn lock_from_row(row: &Row<'_>) -> rusqlite::Result<Lock> {
    Ok(Lock {
        user: row.get(0)?,
        reason: row.get(1)?,
        by: row.get(2)?,
        since: from_ms(row.get(3)?),
        until: row.get::<_, Option<i64>>(4)?.map(from_ms),
    })
}

fn grant_from_row(row: &Row<'_>) -> rusqlite::Result<GrantRecord> {
    let revoked_at: Option<i64> = row.get("revoked_at")?;
    let revoked_by: Option<String> = row.get("revoked_by")?;
    let revoke_reason: Option<String> = row.get("revoke_reason")?;
    let acknowledged_at: Option<i64> = row.get("acknowledged_at")?;
    let acknowledged_by: Option<String> = row.get("acknowledged_by")?;
    Ok(GrantRecord {
        grant: Grant {
            id: id_of(row.get("id")?),
            user: row.get("user")?,
            target: row.get("target")?,
            role: row.get("role")?,
            starts_at: from_ms(row.get("starts_at")?),
            expires_at: from_ms(row.get("expires_at")?),
            revoked_at: revoked_at.map(from_ms),
        },
        reason: row.get("reason")?,
        request: row.get::<_, Option<i64>>("request_id")?.map(id_of),
        break_glass: row.get::<_, i64>("break_glass")? != 0,
        revoked: revoked_by.map(|by| (by, revoke_reason.unwrap_or_default())),
        acknowledged: acknowledged_by.zip(acknowledged_at.map(from_ms)),
    })
}

fn request_from_row(row: &Row<'_>, approved_by: Vec<String>) -> rusqlite::Result<Request> {
    let state: String = row.get("state")?;
    let decided_by: Option<String> = row.get("decided_by")?;
    let decision_reason: Option<String> = row.get("decision_reason")?;
    let grant: Option<i64> = row.get("grant_id")?;
    let kind: String = row.get("kind")?;
    let approvers: String = row.get("approvers")?;
    Ok(Request {
        id: id_of(row.get("id")?),
        user: row.get("user")?,
        target: row.get("target")?,
        role: row.get("role")?,
        reason: row.get("reason")?,
        duration: Duration::from_millis(id_of(row.get("duration_ms")?)),
        created_at: from_ms(row.get("created_at")?),
        expires_at: from_ms(row.get("expires_at")?),
        needed: u32::try_from(row.get::<_, i64>("needed")?).unwrap_or_default(),
        approved_by,
        state: rows::request_state(&state, grant.map(id_of), decided_by, decision_reason)
            .unwrap_or(RequestState::Pending),
        kind: rows::request_kind(
            &kind,
            row.get("command")?,
            row.get("rule")?,
            row.get("session")?,
        ),
        approvers: rows::approvers(&approvers),
    })
}

/// Requests matching `condition` (SQL after WHERE, with `?1` the optional limit), each with
/// its approvers in the order they approved.
fn query_requests(
    db: &rusqlite::Connection,
    condition: &str,
    limit: Option<usize>,
) -> rusqlite::Result<Vec<Request>> {
    let mut statement = db.prepare_cached(&format!("SELECT * FROM requests WHERE {condition}"))?;
    let mut approvals =
        db.prepare_cached("SELECT approver FROM approvals WHERE request_id = ?1 ORDER BY at")?;
    let mut rows = match limit {
        Some(limit) => statement.query([i64::try_from(limit).unwrap_or(i64::MAX)])?,
        None => statement.query([])?,
    };
    let mut requests = Vec::new();
    while let Some(row) = rows.next()? {
        let id: i64 = row.get("id")?;
        let approved_by = approvals
            .query_map([id], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        requests.push(request_from_row(row, approved_by)?);
    }
    Ok(requests)
}

impl SqliteStore {
    pub(super) fn place_lock_(
        &self,
        lock: Lock,
    ) -> impl Future<Output = Result<(), StateError>> + Send + 'static {
        let user = lock.user.clone();
        self.call_and_publish(
            move |db| {
                db.execute(
                    "INSERT OR REPLACE INTO locks (user, reason, locked_by, since, until)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        lock.user,
                        lock.reason,
                        lock.by,
                        to_ms(lock.since),
                        lock.until.map(to_ms)
                    ],
                )
                .map(|_| ())
            },
            move |()| Some(Change::LockPlaced { user }),
        )
    }

    pub(super) fn lift_lock_(
        &self,
        user: &str,
    ) -> impl Future<Output = Result<bool, StateError>> + Send + 'static {
        let user = user.to_owned();
        let lifted = user.clone();
        let removed = self.call_and_publish(
            move |db| db.execute("DELETE FROM locks WHERE user = ?1", [user]),
            move |removed| (*removed > 0).then_some(Change::LockLifted { user: lifted }),
        );
        async move { removed.await.map(|removed| removed > 0) }
    }

    pub(super) fn active_lock_(
        &self,
        user: &str,
        now: SystemTime,
    ) -> impl Future<Output = Result<Option<Lock>, StateError>> + Send + 'static {
        let user = user.to_owned();
        self.call(move |db| {
            db.prepare_cached(
                "SELECT user, reason, locked_by, since, until FROM locks
                 WHERE user = ?1 AND (until IS NULL OR until > ?2)",
            )?
            .query_row(params![user, to_ms(now)], lock_from_row)
            .optional()
        })
    }

    pub(super) fn active_locks_(
        &self,
        now: SystemTime,
    ) -> impl Future<Output = Result<Vec<Lock>, StateError>> + Send + 'static {
        self.call(move |db| {
            db.prepare_cached(
                "SELECT user, reason, locked_by, since, until FROM locks
                 WHERE until IS NULL OR until > ?1 ORDER BY user",
            )?
            .query_map([to_ms(now)], lock_from_row)?
            .collect()
        })
    }

    pub(super) fn insert_request_(
        &self,
        mut request: Request,
    ) -> impl Future<Output = Result<Request, StateError>> + Send + 'static {
        self.call_and_publish(
            move |db| {
                let (kind, command, rule, session) = rows::kind_columns(&request.kind);
                db.execute(
                    "INSERT INTO requests (user, target, role, reason, duration_ms, created_at, expires_at, needed, state,
                                           kind, command, rule, session, approvers)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', ?9, ?10, ?11, ?12, ?13)",
                    params![
                        request.user,
                        request.target,
                        request.role,
                        request.reason,
                        i64::try_from(request.duration.as_millis()).unwrap_or(i64::MAX),
                        to_ms(request.created_at),
                        to_ms(request.expires_at),
                        i64::from(request.needed),
                        kind,
                        command,
                        rule,
                        session,
                        request.approvers.join(",")
                    ],
                )?;
                request.id = id_of(db.last_insert_rowid());
                request.state = RequestState::Pending;
                request.approved_by.clear();
                Ok(request)
            },
            |request| Some(Change::RequestCreated { id: request.id }),
        )
    }

    pub(super) fn request_(
        &self,
        id: u64,
    ) -> impl Future<Output = Result<Option<Request>, StateError>> + Send + 'static {
        self.call(move |db| {
            Ok(query_requests(db, &format!("id = {}", sql_id(id)), None)?
                .into_iter()
                .next())
        })
    }

    pub(super) fn requests_where(
        &self,
        condition: &'static str,
        limit: Option<usize>,
    ) -> impl Future<Output = Result<Vec<Request>, StateError>> + Send + 'static {
        self.call(move |db| query_requests(db, condition, limit))
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
        self.call(move |db| {
            db.execute(
                "INSERT OR IGNORE INTO approvals (request_id, approver, comment, at) VALUES (?1, ?2, ?3, ?4)",
                params![sql_id(id), approver, comment, to_ms(at)],
            )
            .map(|added| added == 1)
        })
    }

    pub(super) fn settle_request_(
        &self,
        id: u64,
        state: RequestState,
    ) -> impl Future<Output = Result<bool, StateError>> + Send + 'static {
        let published = state.clone();
        self.call_and_publish(
            move |db| {
                let (decided_by, reason, grant) = rows::decision_columns(&state);
                let grant = grant.map(sql_id);
                db.execute(
                    "UPDATE requests SET state = ?2, decided_by = ?3, decision_reason = ?4, grant_id = ?5
                     WHERE id = ?1 AND state = 'pending'",
                    params![sql_id(id), rows::state_name(&state), decided_by, reason, grant],
                )
                .map(|changed| changed == 1)
            },
            move |settled| {
                settled.then_some(Change::RequestDecided {
                    id,
                    state: published,
                })
            },
        )
    }

    pub(super) fn insert_grant_(
        &self,
        new: NewGrant,
    ) -> impl Future<Output = Result<GrantRecord, StateError>> + Send + 'static {
        self.call_and_publish(
            move |db| {
                let expires_at = new.starts_at + new.duration;
                db.execute(
                    "INSERT INTO grants (user, target, role, reason, request_id, starts_at, expires_at, break_glass)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        new.user,
                        new.target,
                        new.role,
                        new.reason,
                        new.request.map(sql_id),
                        to_ms(new.starts_at),
                        to_ms(expires_at),
                        i64::from(new.break_glass)
                    ],
                )?;
                Ok(GrantRecord {
                    grant: Grant {
                        id: id_of(db.last_insert_rowid()),
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
                })
            },
            |record| {
                Some(Change::GrantActivated {
                    id: record.grant.id,
                    user: record.grant.user.clone(),
                })
            },
        )
    }

    pub(super) fn grant_(
        &self,
        id: u64,
    ) -> impl Future<Output = Result<Option<GrantRecord>, StateError>> + Send + 'static {
        self.call(move |db| {
            db.prepare_cached("SELECT * FROM grants WHERE id = ?1")?
                .query_row([sql_id(id)], grant_from_row)
                .optional()
        })
    }

    pub(super) fn grants_where(
        &self,
        condition: &'static str,
        limit: Option<usize>,
    ) -> impl Future<Output = Result<Vec<GrantRecord>, StateError>> + Send + 'static {
        self.call(move |db| {
            let mut statement =
                db.prepare_cached(&format!("SELECT * FROM grants WHERE {condition}"))?;
            let rows = match limit {
                Some(limit) => statement
                    .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], grant_from_row)?,
                None => statement.query_map([], grant_from_row)?,
            };
            rows.collect()
        })
    }

    /// Ends a live grant (`end_audited` goes to 1) with `changes`, once: false if it had
    /// ended already; publishes who it belonged to.
    fn end_grant(
        &self,
        id: u64,
        sql: &'static str,
        values: Vec<Box<dyn rusqlite::ToSql + Send>>,
        revoked: bool,
    ) -> impl Future<Output = Result<bool, StateError>> + Send + 'static {
        let ended = self.call_and_publish(
            move |db| {
                let user: Option<String> = db
                    .prepare_cached("SELECT user FROM grants WHERE id = ?1 AND end_audited = 0")?
                    .query_row([sql_id(id)], |row| row.get(0))
                    .optional()?;
                let Some(user) = user else {
                    return Ok(None);
                };
                let mut all: Vec<&dyn rusqlite::ToSql> = vec![];
                let id = sql_id(id);
                all.push(&id);
                for value in &values {
                    all.push(value.as_ref());
                }
                let changed = db.execute(sql, all.as_slice())?;
                Ok((changed == 1).then_some(user))
            },
            move |user| {
                user.clone()
                    .map(|user| Change::GrantEnded { id, user, revoked })
            },
        );
        async move { ended.await.map(|user| user.is_some()) }
    }

    pub(super) fn revoke_grant_(
        &self,
        id: u64,
        by: &str,
        reason: &str,
        at: SystemTime,
    ) -> impl Future<Output = Result<bool, StateError>> + Send + 'static {
        self.end_grant(
            id,
            "UPDATE grants SET revoked_at = ?2, revoked_by = ?3, revoke_reason = ?4, end_audited = 1
             WHERE id = ?1 AND end_audited = 0",
            vec![
                Box::new(to_ms(at)),
                Box::new(by.to_owned()),
                Box::new(reason.to_owned()),
            ],
            true,
        )
    }

    pub(super) fn close_expired_grant_(
        &self,
        id: u64,
    ) -> impl Future<Output = Result<bool, StateError>> + Send + 'static {
        self.end_grant(
            id,
            "UPDATE grants SET end_audited = 1 WHERE id = ?1 AND end_audited = 0",
            Vec::new(),
            false,
        )
    }

    pub(super) fn acknowledge_grant_(
        &self,
        id: u64,
        by: &str,
        at: SystemTime,
    ) -> impl Future<Output = Result<bool, StateError>> + Send + 'static {
        let by = by.to_owned();
        self.call(move |db| {
            db.execute(
                "UPDATE grants SET acknowledged_at = ?2, acknowledged_by = ?3 WHERE id = ?1",
                params![sql_id(id), to_ms(at), by],
            )
            .map(|changed| changed == 1)
        })
    }

    pub(super) fn usage_(
        &self,
    ) -> impl Future<Output = Result<Vec<Usage>, StateError>> + Send + 'static {
        self.call(|db| {
            db.prepare_cached(
                "SELECT user, role, target, COUNT(*), MAX(starts_at) FROM grants
                 GROUP BY user, role, target ORDER BY user, role, target",
            )?
            .query_map([], |row| {
                Ok(Usage {
                    user: row.get(0)?,
                    role: row.get(1)?,
                    target: row.get(2)?,
                    activations: id_of(row.get(3)?),
                    last: from_ms(row.get(4)?),
                })
            })?
            .collect()
        })
    }
}
