//! Just-in-time access, stored: requests, approvals and grants in the state database, with
//! the open ones cached for the login path, and a watch per open request so a waiting
//! login learns of its approval the moment it happens.
//!
//! The rules (who may approve, what a valid activation is, when things end) are
//! `portcullis_policy`'s; this module keeps the records and tells waiters. Auditing and
//! ending sessions is [`crate::ops`]'s.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use portcullis_policy::{
    ActivationPath, Eligibility, Grant, Policy, Request, RequestKind, RequestState, ReviewRefused,
};
use rusqlite::{OptionalExtension, Row, params};
use tokio::sync::watch;

use crate::store::{Store, StoreError, from_unix_ms, to_unix_ms};

/// A grant with what the rules do not need but people do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRecord {
    /// The grant.
    pub grant: Grant,
    /// The justification it was activated with.
    pub reason: String,
    /// The request it came from, if approved.
    pub request: Option<u64>,
    /// Activated as break-glass.
    pub break_glass: bool,
    /// Who revoked it, and why.
    pub revoked: Option<(String, String)>,
    /// Who acknowledged a break-glass grant, and when.
    pub acknowledged: Option<(String, SystemTime)>,
}

/// What an activation became.
#[derive(Debug, Clone)]
pub enum Activated {
    /// Access starts now.
    Granted(GrantRecord),
    /// A request waits for approvals.
    Requested(Request),
}

/// What an approval did.
#[derive(Debug, Clone)]
pub enum Approved {
    /// More approvals are needed.
    Pending {
        /// Approvals so far.
        have: u32,
        /// Approvals needed.
        need: u32,
    },
    /// The request became a grant.
    Granted(Box<GrantRecord>),
    /// The held command line may run.
    Command,
}

/// Why a request or grant operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum JitError {
    /// No such request.
    #[error("no request #{0}")]
    NoSuchRequest(u64),
    /// No such grant.
    #[error("no grant #{0}")]
    NoSuchGrant(u64),
    /// The reviewer may not review it.
    #[error("you may not review request #{id}: {refused}")]
    Refused {
        /// The request.
        id: u64,
        /// Why not.
        refused: ReviewRefused,
    },
    /// Someone else's.
    #[error("#{0} is not yours")]
    NotYours(u64),
    /// Already over.
    #[error("grant #{0} has already ended")]
    Ended(u64),
    /// Only break-glass grants are acknowledged.
    #[error("grant #{0} was not a break-glass activation")]
    NotBreakGlass(u64),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who is reviewing: a user over ssh (role rules apply) or an API token (its scope is the
/// permission; it still may not approve a request of the same name).
#[derive(Debug, Clone, Copy)]
pub enum Reviewer<'a> {
    /// A bastion user.
    User(&'a str),
    /// An admin API token, by name.
    Token(&'a str),
}

impl Reviewer<'_> {
    /// The name recorded.
    pub fn name(&self) -> &str {
        match self {
            Reviewer::User(name) | Reviewer::Token(name) => name,
        }
    }
}

/// A grant about to be recorded.
struct NewGrant<'a> {
    user: &'a str,
    target: &'a str,
    role: &'a str,
    reason: &'a str,
    starts_at: SystemTime,
    duration: Duration,
    request: Option<u64>,
    break_glass: bool,
}

/// Requests and grants.
pub struct Jit {
    store: Arc<Store>,
    request_ttl: Duration,
    /// Grants that have not ended, by id.
    grants: Mutex<HashMap<u64, GrantRecord>>,
    /// Open requests, by id, each with the watch its waiters hold.
    requests: Mutex<HashMap<u64, (Request, watch::Sender<RequestState>)>>,
}

impl std::fmt::Debug for Jit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jit").finish_non_exhaustive()
    }
}

fn grant_from_row(row: &Row<'_>) -> rusqlite::Result<GrantRecord> {
    let revoked_at: Option<i64> = row.get("revoked_at")?;
    let revoked_by: Option<String> = row.get("revoked_by")?;
    let revoke_reason: Option<String> = row.get("revoke_reason")?;
    let acknowledged_at: Option<i64> = row.get("acknowledged_at")?;
    let acknowledged_by: Option<String> = row.get("acknowledged_by")?;
    Ok(GrantRecord {
        grant: Grant {
            id: row.get::<_, i64>("id")? as u64,
            user: row.get("user")?,
            target: row.get("target")?,
            role: row.get("role")?,
            starts_at: from_unix_ms(row.get("starts_at")?),
            expires_at: from_unix_ms(row.get("expires_at")?),
            revoked_at: revoked_at.map(from_unix_ms),
        },
        reason: row.get("reason")?,
        request: row.get::<_, Option<i64>>("request_id")?.map(|id| id as u64),
        break_glass: row.get::<_, i64>("break_glass")? != 0,
        revoked: revoked_by.map(|by| (by, revoke_reason.unwrap_or_default())),
        acknowledged: acknowledged_by.zip(acknowledged_at.map(from_unix_ms)),
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
        id: row.get::<_, i64>("id")? as u64,
        user: row.get("user")?,
        target: row.get("target")?,
        role: row.get("role")?,
        reason: row.get("reason")?,
        duration: Duration::from_millis(row.get::<_, i64>("duration_ms")?.max(0) as u64),
        created_at: from_unix_ms(row.get("created_at")?),
        expires_at: from_unix_ms(row.get("expires_at")?),
        needed: row.get::<_, i64>("needed")?.max(0) as u32,
        approved_by,
        state: match state.as_str() {
            "approved" => RequestState::Approved {
                grant: grant.map(|g| g as u64),
            },
            "denied" => RequestState::Denied {
                by: decided_by.unwrap_or_default(),
                reason: decision_reason.unwrap_or_default(),
            },
            "expired" => RequestState::Expired,
            "cancelled" => RequestState::Cancelled,
            _ => RequestState::Pending,
        },
        kind: match kind.as_str() {
            "command" => RequestKind::Command {
                line: row.get::<_, Option<String>>("command")?.unwrap_or_default(),
                rule: row.get::<_, Option<String>>("rule")?.unwrap_or_default(),
                session: row.get::<_, Option<String>>("session")?.unwrap_or_default(),
            },
            _ => RequestKind::Access,
        },
        approvers: approvers
            .split(',')
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

fn state_name(state: &RequestState) -> &'static str {
    match state {
        RequestState::Pending => "pending",
        RequestState::Approved { .. } => "approved",
        RequestState::Denied { .. } => "denied",
        RequestState::Expired => "expired",
        RequestState::Cancelled => "cancelled",
    }
}

impl Jit {
    /// Loads open requests and live grants. Whatever ended while the broker was down is
    /// left for [`Jit::expire_due`] to close (and audit) on the first pass.
    pub fn load(store: Arc<Store>, request_ttl: Duration) -> Result<Self, StoreError> {
        let grants = store.with(|db| {
            let mut statement = db.prepare("SELECT * FROM grants WHERE end_audited = 0")?;
            let rows = statement.query_map([], grant_from_row)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        let jit = Self {
            store,
            request_ttl,
            grants: Mutex::new(grants.into_iter().map(|g| (g.grant.id, g)).collect()),
            requests: Mutex::new(HashMap::new()),
        };
        for request in jit.query_requests("state = 'pending'", &[])? {
            let (tx, _) = watch::channel(RequestState::Pending);
            jit.open_requests().insert(request.id, (request, tx));
        }
        Ok(jit)
    }

    fn open_requests(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<u64, (Request, watch::Sender<RequestState>)>> {
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn live_grants(&self) -> std::sync::MutexGuard<'_, HashMap<u64, GrantRecord>> {
        self.grants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn query_requests(
        &self,
        condition: &str,
        values: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<Request>, StoreError> {
        self.store.with(|db| {
            let mut statement = db.prepare(&format!(
                "SELECT * FROM requests WHERE {condition} ORDER BY id"
            ))?;
            let mut approvals =
                db.prepare("SELECT approver FROM approvals WHERE request_id = ?1 ORDER BY at")?;
            let mut rows = statement.query(values)?;
            let mut requests = Vec::new();
            while let Some(row) = rows.next()? {
                let id: i64 = row.get("id")?;
                let approved_by = approvals
                    .query_map([id], |r| r.get::<_, String>(0))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                requests.push(request_from_row(row, approved_by)?);
            }
            Ok(requests)
        })
    }

    /// `user`'s grants that are active at `now` (for the policy check).
    pub fn active_grants(&self, user: &str, now: SystemTime) -> Vec<Grant> {
        self.live_grants()
            .values()
            .filter(|g| g.grant.user == user && g.grant.is_active(now))
            .map(|g| g.grant.clone())
            .collect()
    }

    /// A grant by id.
    pub fn grant(&self, id: u64) -> Result<GrantRecord, JitError> {
        if let Some(grant) = self.live_grants().get(&id) {
            return Ok(grant.clone());
        }
        self.store
            .with(|db| {
                db.query_row(
                    "SELECT * FROM grants WHERE id = ?1",
                    [id as i64],
                    grant_from_row,
                )
                .optional()
            })?
            .ok_or(JitError::NoSuchGrant(id))
    }

    /// A request by id.
    pub fn request(&self, id: u64) -> Result<Request, JitError> {
        if let Some((request, _)) = self.open_requests().get(&id) {
            return Ok(request.clone());
        }
        self.query_requests("id = ?1", &[&(id as i64)])?
            .into_iter()
            .next()
            .ok_or(JitError::NoSuchRequest(id))
    }

    /// Grants, newest first: those active at `now`, or all.
    pub fn grants(
        &self,
        active_only: bool,
        now: SystemTime,
    ) -> Result<Vec<GrantRecord>, StoreError> {
        let mut grants = self.store.with(|db| {
            let mut statement = db.prepare("SELECT * FROM grants ORDER BY id DESC LIMIT 1000")?;
            let rows = statement.query_map([], grant_from_row)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        if active_only {
            grants.retain(|g| g.grant.is_active(now));
        }
        Ok(grants)
    }

    /// Requests still open.
    pub fn pending(&self) -> Vec<Request> {
        let mut requests: Vec<Request> = self
            .open_requests()
            .values()
            .map(|(request, _)| request.clone())
            .collect();
        requests.sort_by_key(|r| r.id);
        requests
    }

    /// Recent requests, newest first, in any state.
    pub fn recent_requests(&self) -> Result<Vec<Request>, StoreError> {
        let mut requests = self.query_requests("1 = 1", &[])?;
        requests.reverse();
        requests.truncate(1000);
        Ok(requests)
    }

    /// Follows a request's state (for a login waiting on it).
    pub fn watch(&self, id: u64) -> Option<watch::Receiver<RequestState>> {
        self.open_requests().get(&id).map(|(_, tx)| tx.subscribe())
    }

    fn insert_grant(&self, new: NewGrant<'_>) -> Result<GrantRecord, StoreError> {
        let NewGrant {
            user,
            target,
            role,
            reason,
            starts_at,
            duration,
            request,
            break_glass,
        } = new;
        let expires_at = starts_at + duration;
        let id = self.store.with(|db| {
            db.execute(
                "INSERT INTO grants (user, target, role, reason, request_id, starts_at, expires_at, break_glass)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    user,
                    target,
                    role,
                    reason,
                    request.map(|r| r as i64),
                    to_unix_ms(starts_at),
                    to_unix_ms(expires_at),
                    break_glass as i64
                ],
            )?;
            Ok(db.last_insert_rowid() as u64)
        })?;
        let record = GrantRecord {
            grant: Grant {
                id,
                user: user.to_owned(),
                target: target.to_owned(),
                role: role.to_owned(),
                starts_at,
                expires_at,
                revoked_at: None,
            },
            reason: reason.to_owned(),
            request,
            break_glass,
            revoked: None,
            acknowledged: None,
        };
        self.live_grants().insert(id, record.clone());
        Ok(record)
    }

    /// Records a new pending request (its `id` is assigned here) and opens a watch on it.
    fn insert_request(&self, mut request: Request) -> Result<Request, StoreError> {
        let (kind, command, rule, session) = match &request.kind {
            RequestKind::Access => ("access", None, None, None),
            RequestKind::Command {
                line,
                rule,
                session,
            } => ("command", Some(line), Some(rule), Some(session)),
        };
        request.id = self.store.with(|db| {
            db.execute(
                "INSERT INTO requests (user, target, role, reason, duration_ms, created_at, expires_at, needed, state,
                                       kind, command, rule, session, approvers)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', ?9, ?10, ?11, ?12, ?13)",
                params![
                    request.user,
                    request.target,
                    request.role,
                    request.reason,
                    request.duration.as_millis() as i64,
                    to_unix_ms(request.created_at),
                    to_unix_ms(request.expires_at),
                    request.needed as i64,
                    kind,
                    command,
                    rule,
                    session,
                    request.approvers.join(",")
                ],
            )?;
            Ok(db.last_insert_rowid() as u64)
        })?;
        let (tx, _) = watch::channel(RequestState::Pending);
        self.open_requests()
            .insert(request.id, (request.clone(), tx));
        Ok(request)
    }

    /// Holds a command line for one approval by `approvers`; it lapses after `wait`.
    #[allow(clippy::too_many_arguments)]
    pub fn request_command(
        &self,
        session: &str,
        user: &str,
        target: &str,
        role: &str,
        line: &str,
        rule: &str,
        approvers: Vec<String>,
        wait: Duration,
        now: SystemTime,
    ) -> Result<Request, StoreError> {
        self.insert_request(Request {
            id: 0,
            user: user.to_owned(),
            target: target.to_owned(),
            role: role.to_owned(),
            reason: String::new(),
            duration: Duration::ZERO,
            created_at: now,
            expires_at: now + wait,
            needed: 1,
            approved_by: Vec::new(),
            state: RequestState::Pending,
            kind: RequestKind::Command {
                line: line.to_owned(),
                rule: rule.to_owned(),
                session: session.to_owned(),
            },
            approvers,
        })
    }

    /// Records a validated activation: a grant now (self-activation, break-glass) or a
    /// request for approval.
    pub fn activate(
        &self,
        eligibility: &Eligibility,
        user: &str,
        reason: &str,
        duration: Duration,
        now: SystemTime,
    ) -> Result<Activated, StoreError> {
        match eligibility.path() {
            path @ (ActivationPath::Immediate | ActivationPath::BreakGlass) => {
                Ok(Activated::Granted(self.insert_grant(NewGrant {
                    user,
                    target: &eligibility.target,
                    role: &eligibility.role,
                    reason,
                    starts_at: now,
                    duration,
                    request: None,
                    break_glass: path == ActivationPath::BreakGlass,
                })?))
            }
            ActivationPath::Approval(needed) => {
                let request = self.insert_request(Request {
                    id: 0,
                    user: user.to_owned(),
                    target: eligibility.target.clone(),
                    role: eligibility.role.clone(),
                    reason: reason.to_owned(),
                    duration,
                    created_at: now,
                    expires_at: now + self.request_ttl,
                    needed,
                    approved_by: Vec::new(),
                    state: RequestState::Pending,
                    kind: RequestKind::Access,
                    approvers: eligibility.approvers.clone(),
                })?;
                Ok(Activated::Requested(request))
            }
        }
    }

    fn checked_open(
        &self,
        id: u64,
        reviewer: Reviewer<'_>,
        policy: &Policy,
        now: SystemTime,
    ) -> Result<Request, JitError> {
        let request = self.request(id)?;
        let verdict = match reviewer {
            Reviewer::User(name) => policy.may_review(name, &request, now),
            Reviewer::Token(name) if name == request.user => Err(ReviewRefused::OwnRequest),
            Reviewer::Token(_) if request.state != RequestState::Pending => {
                Err(ReviewRefused::NotPending)
            }
            Reviewer::Token(_) if !request.is_open(now) => Err(ReviewRefused::Expired),
            Reviewer::Token(name) if request.approved_by.iter().any(|a| a == name) => {
                Err(ReviewRefused::AlreadyApproved)
            }
            Reviewer::Token(_) => Ok(()),
        };
        verdict.map_err(|refused| JitError::Refused { id, refused })?;
        Ok(request)
    }

    fn settle(&self, id: u64, state: RequestState) -> Result<Request, JitError> {
        let (decided_by, reason, grant) = match &state {
            RequestState::Denied { by, reason } => (Some(by.clone()), Some(reason.clone()), None),
            RequestState::Approved { grant } => (None, None, grant.map(|g| g as i64)),
            _ => (None, None, None),
        };
        self.store.with(|db| {
            db.execute(
                "UPDATE requests SET state = ?2, decided_by = ?3, decision_reason = ?4, grant_id = ?5 WHERE id = ?1",
                params![id as i64, state_name(&state), decided_by, reason, grant],
            )
        })?;
        let removed = self.open_requests().remove(&id);
        let mut request = match removed {
            Some((request, tx)) => {
                let _ = tx.send(state.clone());
                request
            }
            None => self
                .query_requests("id = ?1", &[&(id as i64)])?
                .into_iter()
                .next()
                .ok_or(JitError::NoSuchRequest(id))?,
        };
        request.state = state;
        Ok(request)
    }

    /// Adds an approval; the last one needed turns the request into a grant that starts now.
    pub fn approve(
        &self,
        id: u64,
        reviewer: Reviewer<'_>,
        comment: Option<&str>,
        policy: &Policy,
        now: SystemTime,
    ) -> Result<(Request, Approved), JitError> {
        let request = self.checked_open(id, reviewer, policy, now)?;
        self.store.with(|db| {
            db.execute(
                "INSERT INTO approvals (request_id, approver, comment, at) VALUES (?1, ?2, ?3, ?4)",
                params![id as i64, reviewer.name(), comment, to_unix_ms(now)],
            )
        })?;
        if !request.completes_with_one_more() {
            let mut request = request;
            request.approved_by.push(reviewer.name().to_owned());
            if let Some((open, _)) = self.open_requests().get_mut(&id) {
                open.approved_by = request.approved_by.clone();
            }
            let have = request.approved_by.len() as u32;
            let need = request.needed;
            return Ok((request, Approved::Pending { have, need }));
        }
        if let RequestKind::Command { .. } = request.kind {
            let mut settled = self.settle(id, RequestState::Approved { grant: None })?;
            settled.approved_by.push(reviewer.name().to_owned());
            return Ok((settled, Approved::Command));
        }
        // The duration counts from the approval, not from the request.
        let grant = self.insert_grant(NewGrant {
            user: &request.user,
            target: &request.target,
            role: &request.role,
            reason: &request.reason,
            starts_at: now,
            duration: request.duration,
            request: Some(id),
            break_glass: false,
        })?;
        let mut settled = self.settle(
            id,
            RequestState::Approved {
                grant: Some(grant.grant.id),
            },
        )?;
        settled.approved_by.push(reviewer.name().to_owned());
        Ok((settled, Approved::Granted(Box::new(grant))))
    }

    /// Denies a request.
    pub fn deny(
        &self,
        id: u64,
        reviewer: Reviewer<'_>,
        reason: &str,
        policy: &Policy,
        now: SystemTime,
    ) -> Result<Request, JitError> {
        self.checked_open(id, reviewer, policy, now)?;
        self.settle(
            id,
            RequestState::Denied {
                by: reviewer.name().to_owned(),
                reason: reason.to_owned(),
            },
        )
    }

    /// The requester withdraws their request.
    pub fn cancel(&self, id: u64, user: &str) -> Result<Request, JitError> {
        let request = self.request(id)?;
        if request.user != user {
            return Err(JitError::NotYours(id));
        }
        if request.state != RequestState::Pending {
            return Err(JitError::Refused {
                id,
                refused: ReviewRefused::NotPending,
            });
        }
        self.settle(id, RequestState::Cancelled)
    }

    /// Revokes a grant now.
    pub fn revoke(
        &self,
        id: u64,
        by: &str,
        reason: &str,
        now: SystemTime,
    ) -> Result<GrantRecord, JitError> {
        let mut record = self.grant(id)?;
        if !record.grant.is_active(now) && record.grant.starts_at <= now {
            return Err(JitError::Ended(id));
        }
        self.store.with(|db| {
            db.execute(
                "UPDATE grants SET revoked_at = ?2, revoked_by = ?3, revoke_reason = ?4, end_audited = 1 WHERE id = ?1",
                params![id as i64, to_unix_ms(now), by, reason],
            )
        })?;
        self.live_grants().remove(&id);
        record.grant.revoked_at = Some(now);
        record.revoked = Some((by.to_owned(), reason.to_owned()));
        Ok(record)
    }

    /// Security has looked at a break-glass activation.
    pub fn acknowledge(&self, id: u64, by: &str, now: SystemTime) -> Result<GrantRecord, JitError> {
        let mut record = self.grant(id)?;
        if !record.break_glass {
            return Err(JitError::NotBreakGlass(id));
        }
        self.store.with(|db| {
            db.execute(
                "UPDATE grants SET acknowledged_at = ?2, acknowledged_by = ?3 WHERE id = ?1",
                params![id as i64, to_unix_ms(now), by],
            )
        })?;
        if let Some(live) = self.live_grants().get_mut(&id) {
            live.acknowledged = Some((by.to_owned(), now));
        }
        record.acknowledged = Some((by.to_owned(), now));
        Ok(record)
    }

    /// Closes what has run out by `now`: requests past their time, grants past their end.
    /// Returns them, for auditing.
    pub fn expire_due(
        &self,
        now: SystemTime,
    ) -> Result<(Vec<Request>, Vec<GrantRecord>), JitError> {
        let lapsed: Vec<u64> = self
            .open_requests()
            .values()
            .filter(|(request, _)| !request.is_open(now))
            .map(|(request, _)| request.id)
            .collect();
        let mut requests = Vec::new();
        for id in lapsed {
            requests.push(self.settle(id, RequestState::Expired)?);
        }
        let ended: Vec<GrantRecord> = self
            .live_grants()
            .values()
            .filter(|g| g.grant.expires_at <= now)
            .cloned()
            .collect();
        for grant in &ended {
            self.store.with(|db| {
                db.execute(
                    "UPDATE grants SET end_audited = 1 WHERE id = ?1",
                    [grant.grant.id as i64],
                )
            })?;
            self.live_grants().remove(&grant.grant.id);
        }
        Ok((requests, ended))
    }

    /// For each (user, role, target) that was ever activated: how often and when last.
    pub fn usage(&self) -> Result<Vec<Usage>, StoreError> {
        self.store.with(|db| {
            let mut statement = db.prepare(
                "SELECT user, role, target, COUNT(*), MAX(starts_at) FROM grants GROUP BY user, role, target ORDER BY user, role, target",
            )?;
            let rows = statement.query_map([], |row| {
                Ok(Usage {
                    user: row.get(0)?,
                    role: row.get(1)?,
                    target: row.get(2)?,
                    activations: row.get::<_, i64>(3)? as u64,
                    last: from_unix_ms(row.get(4)?),
                })
            })?;
            rows.collect()
        })
    }

    /// Break-glass grants nobody has acknowledged yet.
    pub fn unacknowledged_break_glass(&self) -> Result<Vec<GrantRecord>, StoreError> {
        self.store.with(|db| {
            let mut statement = db.prepare(
                "SELECT * FROM grants WHERE break_glass = 1 AND acknowledged_at IS NULL ORDER BY id",
            )?;
            let rows = statement.query_map([], grant_from_row)?;
            rows.collect()
        })
    }
}

/// How an eligibility has been used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// The user.
    pub user: String,
    /// The role.
    pub role: String,
    /// The target.
    pub target: String,
    /// Activations so far.
    pub activations: u64,
    /// The latest.
    pub last: SystemTime,
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGQ4gk0b4t0GmT4FzW2b1d0pU3n3h9ZcA3bOjw0u7c3s";

    fn policy(approvals: u32) -> Policy {
        let text = format!(
            r#"
[[users]]
name = "alice"
public_keys = ["{KEY}"]
[[users]]
name = "bob"
public_keys = ["{KEY}"]
[[users]]
name = "carol"
public_keys = ["{KEY}"]

[[targets]]
name = "db01"
address = "10.0.0.5:22"
login = "postgres"
credential = "db01"
host_key = "{KEY}"

[[roles]]
name = "db-admins"
members = ["alice", "bob"]
targets = ["db*"]
access = "eligible"
max_duration = "4h"
default_duration = "1h"
approvals = {approvals}
approvers = ["secops"]

[[roles]]
name = "secops"
members = ["bob", "carol"]
targets = []
access = "standing"
"#
        );
        Policy::new(&portcullis_config::from_toml_str(&text).unwrap()).unwrap()
    }

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + seconds)
    }

    fn open(dir: &tempfile::TempDir) -> Jit {
        let store = Arc::new(Store::open(&dir.path().join("state.db")).unwrap());
        Jit::load(store, Duration::from_secs(3600)).unwrap()
    }

    #[test]
    fn self_activation_grants_at_once_survives_a_restart_and_expires_once() {
        let dir = tempfile::tempdir().unwrap();
        let policy = policy(0);
        let eligibility = policy.eligibility("alice", "db01").unwrap();
        let jit = open(&dir);
        let Activated::Granted(record) = jit
            .activate(
                &eligibility,
                "alice",
                "INC-1",
                Duration::from_secs(60),
                at(0),
            )
            .unwrap()
        else {
            panic!("approvals = 0 grants at once")
        };
        assert_eq!(record.grant.expires_at, at(60));
        assert_eq!(jit.active_grants("alice", at(30)).len(), 1);
        assert!(jit.active_grants("bob", at(30)).is_empty());
        drop(jit);

        let jit = open(&dir);
        assert_eq!(
            jit.active_grants("alice", at(59)).len(),
            1,
            "kept across a restart"
        );
        assert!(
            jit.active_grants("alice", at(60)).is_empty(),
            "ends at the instant"
        );
        let (_, expired) = jit.expire_due(at(59)).unwrap();
        assert!(expired.is_empty());
        let (_, expired) = jit.expire_due(at(61)).unwrap();
        assert_eq!(expired.len(), 1);
        let (_, expired) = jit.expire_due(at(62)).unwrap();
        assert!(expired.is_empty(), "expired (and audited) once");
        drop(jit);
        let (_, expired) = open(&dir).expire_due(at(63)).unwrap();
        assert!(expired.is_empty(), "and not again after a restart");
    }

    #[test]
    fn approvals_count_distinct_approvers_never_the_requester_and_time_starts_at_approval() {
        let dir = tempfile::tempdir().unwrap();
        let policy = policy(2);
        let eligibility = policy.eligibility("alice", "db01").unwrap();
        let jit = open(&dir);
        let Activated::Requested(request) = jit
            .activate(
                &eligibility,
                "alice",
                "INC-1",
                Duration::from_secs(600),
                at(0),
            )
            .unwrap()
        else {
            panic!("approvals = 2 makes a request")
        };
        let watch = jit.watch(request.id).unwrap();
        assert!(matches!(
            jit.approve(request.id, Reviewer::User("alice"), None, &policy, at(1)),
            Err(JitError::Refused {
                refused: ReviewRefused::OwnRequest,
                ..
            })
        ));
        assert!(matches!(
            jit.approve(request.id, Reviewer::Token("alice"), None, &policy, at(1)),
            Err(JitError::Refused {
                refused: ReviewRefused::OwnRequest,
                ..
            })
        ));
        let (_, first) = jit
            .approve(
                request.id,
                Reviewer::User("bob"),
                Some("ok"),
                &policy,
                at(10),
            )
            .unwrap();
        assert!(matches!(first, Approved::Pending { have: 1, need: 2 }));
        assert!(matches!(
            jit.approve(request.id, Reviewer::User("bob"), None, &policy, at(11)),
            Err(JitError::Refused {
                refused: ReviewRefused::AlreadyApproved,
                ..
            })
        ));
        drop(jit);

        // The pending request and its first approval survive a restart.
        let jit = open(&dir);
        assert_eq!(jit.pending()[0].approved_by, vec!["bob".to_owned()]);
        let mut watch_after = jit.watch(request.id).unwrap();
        let (settled, second) = jit
            .approve(request.id, Reviewer::User("carol"), None, &policy, at(100))
            .unwrap();
        let Approved::Granted(grant) = second else {
            panic!("the second approval completes it")
        };
        assert_eq!(grant.grant.starts_at, at(100));
        assert_eq!(grant.grant.expires_at, at(700), "counted from the approval");
        assert_eq!(
            settled.state,
            RequestState::Approved {
                grant: Some(grant.grant.id)
            }
        );
        assert!(jit.pending().is_empty());
        assert_eq!(
            *watch_after.borrow_and_update(),
            RequestState::Approved {
                grant: Some(grant.grant.id)
            }
        );
        // The watch from before the restart belongs to a closed channel.
        assert!(watch.has_changed().is_err());
    }

    #[test]
    fn denial_withdrawal_and_lapse_close_requests() {
        let dir = tempfile::tempdir().unwrap();
        let policy = policy(1);
        let eligibility = policy.eligibility("alice", "db01").unwrap();
        let jit = open(&dir);
        let request = |jit: &Jit, now| match jit
            .activate(&eligibility, "alice", "INC-1", Duration::from_secs(60), now)
            .unwrap()
        {
            Activated::Requested(request) => request.id,
            Activated::Granted(_) => panic!("approval needed"),
        };
        let denied = request(&jit, at(0));
        assert!(matches!(
            jit.deny(denied, Reviewer::User("carol"), "not now", &policy, at(1)),
            Ok(Request {
                state: RequestState::Denied { .. },
                ..
            })
        ));
        assert!(matches!(
            jit.approve(denied, Reviewer::User("bob"), None, &policy, at(2)),
            Err(JitError::Refused {
                refused: ReviewRefused::NotPending,
                ..
            })
        ));

        let withdrawn = request(&jit, at(0));
        assert!(matches!(
            jit.cancel(withdrawn, "bob"),
            Err(JitError::NotYours(_))
        ));
        assert_eq!(
            jit.cancel(withdrawn, "alice").unwrap().state,
            RequestState::Cancelled
        );

        let lapsing = request(&jit, at(0));
        let (lapsed, _) = jit.expire_due(at(3599)).unwrap();
        assert!(lapsed.is_empty());
        let (lapsed, _) = jit.expire_due(at(3600)).unwrap();
        assert_eq!(
            lapsed.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![lapsing]
        );
        assert!(matches!(
            jit.approve(lapsing, Reviewer::User("bob"), None, &policy, at(3601)),
            Err(JitError::Refused {
                refused: ReviewRefused::NotPending,
                ..
            })
        ));
        assert_eq!(jit.recent_requests().unwrap().len(), 3);
    }

    #[test]
    fn revoked_grants_end_and_break_glass_waits_for_acknowledgement() {
        let dir = tempfile::tempdir().unwrap();
        let policy = policy(0);
        let mut eligibility = policy.eligibility("alice", "db01").unwrap();
        let jit = open(&dir);
        let Activated::Granted(plain) = jit
            .activate(&eligibility, "alice", "", Duration::from_secs(600), at(0))
            .unwrap()
        else {
            panic!("granted")
        };
        let revoked = jit.revoke(plain.grant.id, "secops", "done", at(5)).unwrap();
        assert_eq!(revoked.revoked, Some(("secops".into(), "done".into())));
        assert!(jit.active_grants("alice", at(6)).is_empty());
        assert!(matches!(
            jit.revoke(plain.grant.id, "x", "y", at(7)),
            Err(JitError::Ended(_))
        ));
        assert!(matches!(
            jit.acknowledge(plain.grant.id, "secops", at(8)),
            Err(JitError::NotBreakGlass(_))
        ));

        eligibility.break_glass = true;
        eligibility.approvals = 1;
        let Activated::Granted(glass) = jit
            .activate(
                &eligibility,
                "alice",
                "outage",
                Duration::from_secs(600),
                at(10),
            )
            .unwrap()
        else {
            panic!("break-glass grants at once")
        };
        assert!(glass.break_glass);
        assert_eq!(jit.unacknowledged_break_glass().unwrap().len(), 1);
        jit.acknowledge(glass.grant.id, "secops", at(20)).unwrap();
        assert!(jit.unacknowledged_break_glass().unwrap().is_empty());
        let usage = jit.usage().unwrap();
        assert_eq!(usage.len(), 1);
        assert_eq!(usage[0].activations, 2);
        assert_eq!(usage[0].last, at(10));
    }
}
