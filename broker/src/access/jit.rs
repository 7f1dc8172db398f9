//! Just-in-time access as operations: activate, approve, deny, cancel, revoke, acknowledge,
//! hold a command line for review, and the periodic expiry. Each checks its inputs, applies
//! the policy's rules, writes through the state store (which tells every subscriber),
//! audits what happened and ends the sessions it must. The ssh command interface, the
//! in-login activation, the terminal gate and the admin API all come through here.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_policy::{
    ActivationPath, Denied, Eligibility, Grant, Request, RequestKind, RequestState, Reviewer,
};
use portcullis_state::{Change, GrantRecord, NewGrant, StateError, Usage};
use tokio::sync::broadcast::error::RecvError;

use super::AccessError;
use crate::alerts::Alert;
use crate::audit::AuditEvent;
use crate::credentials::throttle::{Method, ThrottleKey};
use crate::credentials::totp;
use crate::metrics::Metrics;
use crate::services::Services;
use crate::text::Shown;

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

/// What a user answered when activating.
#[derive(Debug, Clone, Default)]
pub struct Answers {
    /// The justification.
    pub reason: String,
    /// How long (`None`: the role's default).
    pub duration: Option<Duration>,
    /// A TOTP code, for roles with `require_mfa`.
    pub code: Option<String>,
}

/// The most requests or grants a listing shows.
const LISTED: usize = 1000;

/// What activating `target` would ask of `user` now, or why they cannot.
pub fn eligibility(
    services: &Services,
    user: &str,
    target: &str,
) -> Result<Eligibility, AccessError> {
    let now = services.clock.now();
    match services.policy.check(user, target, None, &[], now) {
        Ok(_) => Err(AccessError::Standing(target.to_owned())),
        Err(Denied::NeedsActivation(eligibility)) => Ok(*eligibility),
        Err(denied) => Err(AccessError::NotEligible {
            target: target.to_owned(),
            denied,
        }),
    }
}

/// `user`'s grants that are active at `now` (for the policy check).
pub async fn active_grants(
    services: &Services,
    user: &str,
    now: SystemTime,
) -> Result<Vec<Grant>, StateError> {
    Ok(services
        .state
        .live_grants()
        .await?
        .into_iter()
        .filter(|g| g.grant.user == user && g.grant.is_active(now))
        .map(|g| g.grant)
        .collect())
}

/// Requests still open.
pub async fn pending(services: &Services) -> Result<Vec<Request>, StateError> {
    services.state.pending_requests().await
}

/// Recent requests, newest first, in any state.
pub async fn recent_requests(services: &Services) -> Result<Vec<Request>, StateError> {
    services.state.recent_requests(LISTED).await
}

/// Grants, newest first: those active at `now`, or all.
pub async fn grants(
    services: &Services,
    active_only: bool,
    now: SystemTime,
) -> Result<Vec<GrantRecord>, StateError> {
    let mut grants = services.state.recent_grants(LISTED).await?;
    if active_only {
        grants.retain(|g| g.grant.is_active(now));
    }
    Ok(grants)
}

/// A grant by id.
pub async fn grant(services: &Services, id: u64) -> Result<GrantRecord, AccessError> {
    services
        .state
        .grant(id)
        .await?
        .ok_or(AccessError::NoSuchGrant(id))
}

/// A request by id.
pub async fn request(services: &Services, id: u64) -> Result<Request, AccessError> {
    services
        .state
        .request(id)
        .await?
        .ok_or(AccessError::NoSuchRequest(id))
}

/// For each (user, role, target) that was ever activated: how often and when last.
pub async fn usage(services: &Services) -> Result<Vec<Usage>, StateError> {
    services.state.usage().await
}

/// Break-glass grants nobody has acknowledged yet.
pub async fn unacknowledged_break_glass(
    services: &Services,
) -> Result<Vec<GrantRecord>, StateError> {
    services.state.unacknowledged_break_glass().await
}

/// `user`'s open access request for `target`, if any.
pub async fn pending_request(
    services: &Services,
    user: &str,
    target: &str,
) -> Result<Option<Request>, StateError> {
    Ok(services
        .state
        .pending_requests()
        .await?
        .into_iter()
        .find(|r| r.user == user && r.target == target && r.kind == RequestKind::Access))
}

/// Waits until request `id` is decided, and says how. The change feed brings the decision
/// from wherever it was made; the request is read again whenever the feed may have missed
/// something (at the start, and after lagging).
pub async fn decided(services: &Services, id: u64) -> Result<RequestState, AccessError> {
    let mut changes = services.state.changes();
    loop {
        let state = request(services, id).await?.state;
        if state != RequestState::Pending {
            return Ok(state);
        }
        loop {
            match changes.recv().await {
                Ok(Change::RequestDecided { id: decided, state }) if decided == id => {
                    return Ok(state);
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => break,
                Err(RecvError::Closed) => return Err(StateError::Stopped.into()),
            }
        }
    }
}

/// Time left until `end`, for people ("59m 12s").
pub fn left(end: SystemTime, now: SystemTime) -> String {
    let left = end.duration_since(now).unwrap_or_default();
    humantime::format_duration(Duration::from_secs(left.as_secs())).to_string()
}

/// The role's conditions on when and from where: a refusal saying which failed, audited; a
/// break-glass role overrides them, alerted.
pub fn refuse_outside_conditions(
    services: &Services,
    user: &str,
    eligibility: &Eligibility,
    now: SystemTime,
    from: IpAddr,
    via: &str,
) -> Result<(), AccessError> {
    let Err(failed) = eligibility.conditions.check(now, from) else {
        return Ok(());
    };
    let target = &eligibility.target;
    let event = |name| {
        AuditEvent::new(name)
            .with("user", user)
            .with("target", target)
            .with("role", &eligibility.role)
            .with("condition", failed.code())
            .with("reason", failed.to_string())
            .with("source", from.to_canonical().to_string())
            .with("via", via)
    };
    if eligibility.break_glass {
        services
            .audit
            .record(event("activation.condition_overridden"));
        services.audit.record(
            Alert::BreakGlassOutsideConditions
                .event(format!(
                    "{} used break-glass to reach {target} outside its conditions: {failed}",
                    Shown(user)
                ))
                .with("user", user)
                .with("target", target.as_str())
                .with("role", &eligibility.role),
        );
        tracing::warn!(
            user,
            target = %target,
            role = %eligibility.role,
            "ALERT: break-glass activation outside its conditions: {failed}"
        );
        return Ok(());
    }
    services.audit.record(event("activation.refused"));
    Err(AccessError::Condition {
        target: target.clone(),
        failed,
    })
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// Activates `target` for `user` with their answers: a grant now (self-activation,
/// break-glass) or a request for approval. `via` says where it came from and `from` the
/// address it came from (for the role's conditions and the audit).
pub async fn activate(
    services: &Services,
    user: &str,
    target: &str,
    answers: &Answers,
    via: &str,
    from: IpAddr,
) -> Result<Activated, AccessError> {
    let now = services.clock.now();
    let eligibility = eligibility(services, user, target)?;
    refuse_outside_conditions(services, user, &eligibility, now, from, via)?;
    if let Some(grant) = active_grants(services, user, now)
        .await?
        .into_iter()
        .find(|g| g.target == target)
    {
        return Err(AccessError::AlreadyActive {
            target: target.to_owned(),
            grant: grant.id,
            left: left(grant.expires_at, now),
        });
    }
    if let Some(request) = pending_request(services, user, target).await? {
        return Err(AccessError::AlreadyRequested {
            target: target.to_owned(),
            request: request.id,
        });
    }
    let duration = eligibility
        .validate(&answers.reason, answers.duration)
        .map_err(AccessError::Invalid)?;
    if eligibility.require_mfa {
        verify_code(services, user, target, answers.code.as_deref()).await?;
    }
    let reason = answers.reason.trim();
    let activated = match eligibility.path() {
        path @ (ActivationPath::Immediate | ActivationPath::BreakGlass) => Activated::Granted(
            services
                .state
                .insert_grant(NewGrant {
                    user: user.to_owned(),
                    target: eligibility.target.clone(),
                    role: eligibility.role.clone(),
                    reason: reason.to_owned(),
                    starts_at: now,
                    duration,
                    request: None,
                    break_glass: path == ActivationPath::BreakGlass,
                })
                .await?,
        ),
        ActivationPath::Approval(needed) => Activated::Requested(
            services
                .state
                .insert_request(Request {
                    id: 0,
                    user: user.to_owned(),
                    target: eligibility.target.clone(),
                    role: eligibility.role.clone(),
                    reason: reason.to_owned(),
                    duration,
                    created_at: now,
                    expires_at: now + services.config.access.request_ttl,
                    needed,
                    approved_by: Vec::new(),
                    state: RequestState::Pending,
                    kind: RequestKind::Access,
                    approvers: eligibility.approvers.clone(),
                })
                .await?,
        ),
    };
    match &activated {
        Activated::Granted(record) => {
            audit_grant(services, record, via);
            if record.break_glass {
                services.audit.record(
                    AuditEvent::new("breakglass.used")
                        .with("grant", record.grant.id)
                        .with("user", user)
                        .with("target", target)
                        .with("role", &record.grant.role)
                        .with("reason", reason),
                );
                Metrics::count(&services.metrics.break_glass_total);
                services.audit.record(
                    Alert::BreakGlass
                        .event(format!(
                            "{} used break-glass access to {target} (grant {}); it awaits review",
                            Shown(user),
                            record.grant.id
                        ))
                        .with("grant", record.grant.id)
                        .with("user", user)
                        .with("target", target)
                        .with("reason", reason),
                );
                tracing::warn!(
                    user,
                    target,
                    grant = record.grant.id,
                    reason = %Shown(reason),
                    "ALERT: break-glass access used; it awaits review (portcullis review)"
                );
            }
        }
        Activated::Requested(request) => {
            services.audit.record(
                AuditEvent::new("request.created")
                    .with("request", request.id)
                    .with("user", user)
                    .with("target", target)
                    .with("role", &request.role)
                    .with("reason", reason)
                    .with("duration_s", duration.as_secs())
                    .with("approvals_needed", request.needed)
                    .with("approvers", &eligibility.approvers)
                    .with("via", via),
            );
            tracing::info!(
                user,
                target,
                request = request.id,
                "access request waiting for approval"
            );
        }
    }
    Ok(activated)
}

/// Holds a command line for one approval by `approvers`; it lapses after `wait`.
#[allow(clippy::too_many_arguments)]
pub async fn hold_command(
    services: &Services,
    session: &str,
    user: &str,
    target: &str,
    role: &str,
    line: &str,
    rule: &str,
    approvers: Vec<String>,
    wait: Duration,
) -> Result<Request, StateError> {
    let now = services.clock.now();
    services
        .state
        .insert_request(Request {
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
        .await
}

fn audit_grant(services: &Services, record: &GrantRecord, via: &str) {
    Metrics::count(&services.metrics.grants_total);
    let grant = &record.grant;
    services.audit.record(
        AuditEvent::new("grant.activated")
            .with("grant", grant.id)
            .with("user", &grant.user)
            .with("target", &grant.target)
            .with("role", &grant.role)
            .with("reason", &record.reason)
            .with("request", record.request)
            .with("break_glass", record.break_glass)
            .with(
                "duration_s",
                grant
                    .expires_at
                    .duration_since(grant.starts_at)
                    .unwrap_or_default()
                    .as_secs(),
            )
            .with("expires_at", rfc3339(grant.expires_at))
            .with("via", via),
    );
}

/// Checks a fresh TOTP code for `user` (each code counts once, like at login). Every wrong
/// or replayed code counts in the same throttle as failed logins (per user, for activation
/// codes), is audited, and reaching the limit raises an alert: six digits are guessable
/// when nothing limits the guesses.
async fn verify_code(
    services: &Services,
    user: &str,
    target: &str,
    code: Option<&str>,
) -> Result<(), AccessError> {
    let code = code
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .ok_or(AccessError::CodeRequired)?;
    let keys = vec![ThrottleKey::User(user.to_owned(), Method::ActivationCode)];
    let reservation = match services
        .throttle
        .reserve(keys.clone(), services.clock.now())
        .await?
    {
        Ok(reservation) => reservation,
        Err(_) => {
            services.audit.record(
                AuditEvent::new("access.code_throttled")
                    .with("user", user)
                    .with("target", target),
            );
            return Err(AccessError::CodeThrottled);
        }
    };
    let now = services
        .clock
        .now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let step = services
        .directory
        .user(user)
        .and_then(|u| u.totp_key.as_ref())
        .and_then(|key| totp::matching_step(key.expose(), code, now));
    let verdict = match step {
        None => Err(AccessError::WrongCode),
        Some(step) => match services.state.accept_totp_step(user, step).await? {
            true => Ok(()),
            false => Err(AccessError::CodeReused),
        },
    };
    match verdict {
        Ok(()) => {
            reservation.succeeded().await;
            Ok(())
        }
        Err(error) => {
            reservation.failed();
            services.audit.record(
                AuditEvent::new("access.code_failure")
                    .with("user", user)
                    .with("target", target)
                    .with(
                        "reason",
                        if matches!(error, AccessError::CodeReused) {
                            "already used"
                        } else {
                            "wrong code"
                        },
                    ),
            );
            // (A store that cannot answer here changes nothing: the code was refused anyway.)
            if let Ok(Some(_)) = services.throttle.blocked(&keys, services.clock.now()).await {
                services.audit.record(
                    AuditEvent::new("access.code_throttled")
                        .with("user", user)
                        .with("target", target)
                        .with("limit_reached", true),
                );
                let message = format!(
                    "{} entered too many wrong activation codes for {target}; activation with a code is throttled",
                    Shown(user)
                );
                services.audit.record(
                    Alert::ActivationCodeFailures
                        .event(message)
                        .with("user", user)
                        .with("target", target),
                );
                tracing::warn!(
                    user = %Shown(user),
                    target,
                    "ALERT: too many wrong activation codes; activation with a code is throttled for this user"
                );
            }
            Err(error)
        }
    }
}

/// The request, if `reviewer` may decide it now.
async fn reviewable(
    services: &Services,
    id: u64,
    reviewer: Reviewer<'_>,
    now: SystemTime,
) -> Result<Request, AccessError> {
    let request = request(services, id).await?;
    services
        .policy
        .may_decide(reviewer, &request, now)
        .map_err(|refused| AccessError::Refused { id, refused })?;
    Ok(request)
}

/// A decision someone else got in first: the request is not pending any more.
fn decided_meanwhile(id: u64) -> AccessError {
    AccessError::Refused {
        id,
        refused: portcullis_policy::ReviewRefused::NotPending,
    }
}

/// Adds `reviewer`'s approval to request `id`; the last one needed starts the grant (and
/// releases a login waiting on it).
pub async fn approve(
    services: &Services,
    id: u64,
    reviewer: Reviewer<'_>,
    comment: Option<&str>,
) -> Result<(Request, Approved), AccessError> {
    let now = services.clock.now();
    let comment = comment.map(str::trim).filter(|c| !c.is_empty());
    let mut request = reviewable(services, id, reviewer, now).await?;
    if !services
        .state
        .add_approval(id, reviewer.name(), comment, now)
        .await?
    {
        return Err(AccessError::Refused {
            id,
            refused: portcullis_policy::ReviewRefused::AlreadyApproved,
        });
    }
    let completes = request.completes_with_one_more();
    request.approved_by.push(reviewer.name().to_owned());
    let approved = if !completes {
        Approved::Pending {
            have: request.approved_by.len() as u32,
            need: request.needed,
        }
    } else if let RequestKind::Command { .. } = request.kind {
        let state = RequestState::Approved { grant: None };
        if !services.state.settle_request(id, state.clone()).await? {
            return Err(decided_meanwhile(id));
        }
        request.state = state;
        Approved::Command
    } else {
        // The duration counts from the approval, not from the request.
        let grant = services
            .state
            .insert_grant(NewGrant {
                user: request.user.clone(),
                target: request.target.clone(),
                role: request.role.clone(),
                reason: request.reason.clone(),
                starts_at: now,
                duration: request.duration,
                request: Some(id),
                break_glass: false,
            })
            .await?;
        let state = RequestState::Approved {
            grant: Some(grant.grant.id),
        };
        if !services.state.settle_request(id, state.clone()).await? {
            // Someone decided first: the grant made here must not stand.
            services
                .state
                .revoke_grant(
                    grant.grant.id,
                    reviewer.name(),
                    "request decided meanwhile",
                    now,
                )
                .await?;
            return Err(decided_meanwhile(id));
        }
        request.state = state;
        Approved::Granted(Box::new(grant))
    };
    let (have, need) = match &approved {
        Approved::Pending { have, need } => (*have, *need),
        Approved::Granted(_) | Approved::Command => (request.needed, request.needed),
    };
    services.audit.record(
        AuditEvent::new("request.approved")
            .with("request", id)
            .with("user", &request.user)
            .with("target", &request.target)
            .with("by", reviewer.name())
            .with("comment", comment)
            .with("approvals", have)
            .with("approvals_needed", need),
    );
    if let Approved::Granted(record) = &approved {
        audit_grant(services, record, "approval");
    }
    Ok((request, approved))
}

/// Denies request `id`; a login waiting on it ends with the reason.
pub async fn deny(
    services: &Services,
    id: u64,
    reviewer: Reviewer<'_>,
    reason: &str,
) -> Result<Request, AccessError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(AccessError::NoReason);
    }
    let mut request = reviewable(services, id, reviewer, services.clock.now()).await?;
    let state = RequestState::Denied {
        by: reviewer.name().to_owned(),
        reason: reason.to_owned(),
    };
    if !services.state.settle_request(id, state.clone()).await? {
        return Err(decided_meanwhile(id));
    }
    request.state = state;
    services.audit.record(
        AuditEvent::new("request.denied")
            .with("request", id)
            .with("user", &request.user)
            .with("target", &request.target)
            .with("by", reviewer.name())
            .with("reason", reason),
    );
    Ok(request)
}

/// The requester withdraws request `id`.
pub async fn cancel(services: &Services, id: u64, user: &str) -> Result<Request, AccessError> {
    let mut request = request(services, id).await?;
    if request.user != user {
        return Err(AccessError::NotYours(id));
    }
    if !services
        .state
        .settle_request(id, RequestState::Cancelled)
        .await?
    {
        return Err(decided_meanwhile(id));
    }
    request.state = RequestState::Cancelled;
    services.audit.record(
        AuditEvent::new("request.cancelled")
            .with("request", id)
            .with("user", user)
            .with("target", &request.target),
    );
    Ok(request)
}

/// Revokes grant `id` and ends every live session resting on it. With `owner`, only that
/// user's grants may be revoked (users revoking their own). Returns the grant and how many
/// sessions were ended.
pub async fn revoke(
    services: &Services,
    id: u64,
    by: &str,
    reason: &str,
    owner: Option<&str>,
) -> Result<(GrantRecord, usize), AccessError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(AccessError::NoReason);
    }
    let now = services.clock.now();
    let mut record = grant(services, id).await?;
    if owner.is_some_and(|owner| record.grant.user != owner) {
        return Err(AccessError::NotYours(id));
    }
    // Counted before the revocation is published: from then on their guards end them.
    let ending = sessions_on(services, id).await?;
    if (!record.grant.is_active(now) && record.grant.starts_at <= now)
        || !services.state.revoke_grant(id, by, reason, now).await?
    {
        return Err(AccessError::Ended(id));
    }
    record.grant.revoked_at = Some(now);
    record.revoked = Some((by.to_owned(), reason.to_owned()));
    services.audit.record(
        AuditEvent::new("grant.revoked")
            .with("grant", id)
            .with("user", &record.grant.user)
            .with("target", &record.grant.target)
            .with("by", by)
            .with("reason", reason),
    );
    Ok((record, ending))
}

/// Security has reviewed break-glass grant `id`.
pub async fn acknowledge(
    services: &Services,
    id: u64,
    by: &str,
) -> Result<GrantRecord, AccessError> {
    let now = services.clock.now();
    let mut record = grant(services, id).await?;
    if !record.break_glass {
        return Err(AccessError::NotBreakGlass(id));
    }
    services.state.acknowledge_grant(id, by, now).await?;
    record.acknowledged = Some((by.to_owned(), now));
    services.audit.record(
        AuditEvent::new("breakglass.acknowledged")
            .with("grant", id)
            .with("user", &record.grant.user)
            .with("target", &record.grant.target)
            .with("by", by),
    );
    Ok(record)
}

/// Closes requests and grants that ran out by `now` and audits them; sessions still resting
/// on an expired grant end when their guards see it closed (each session also watches its
/// own grant's deadline; this catches what a clock jump would otherwise leave). Each is
/// closed once, however many passes (or nodes) find it.
pub async fn expire_due(services: &Services, now: SystemTime) -> Result<(), AccessError> {
    for request in services.state.pending_requests().await? {
        if request.is_open(now)
            || !services
                .state
                .settle_request(request.id, RequestState::Expired)
                .await?
        {
            continue;
        }
        services.audit.record(
            AuditEvent::new("request.expired")
                .with("request", request.id)
                .with("user", &request.user)
                .with("target", &request.target),
        );
    }
    for record in services.state.live_grants().await? {
        let grant = &record.grant;
        if grant.expires_at > now || !services.state.close_expired_grant(grant.id).await? {
            continue;
        }
        services.audit.record(
            AuditEvent::new("grant.expired")
                .with("grant", grant.id)
                .with("user", &grant.user)
                .with("target", &grant.target)
                .with("expired_at", rfc3339(grant.expires_at)),
        );
    }
    Ok(())
}

/// Closes requests and grants as they run out, and audits it; runs until shutdown.
/// (Live sessions end at their grant's instant by their own watch; this keeps the records
/// and the audit log in step, including for what ran out while the bastion was down.)
pub async fn expire_periodically(services: std::sync::Arc<Services>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = services.shutdown.cancelled() => return,
        }
        if let Err(error) = expire_due(&services, services.clock.now()).await {
            tracing::error!(%error, "cannot expire requests and grants");
        }
    }
}

/// How many live sessions rest on grant `id` (once it ends, each one's guard sees that on
/// the change feed and ends its session): this node's, and with several nodes the others'
/// the shared index lists (as of their latest heartbeat).
async fn sessions_on(services: &Services, id: u64) -> Result<usize, AccessError> {
    let here = services.registry.with_all(|sessions| {
        sessions
            .filter(|session| session.grant() == Some(id) && !session.control.is_ending())
            .count()
    });
    let elsewhere =
        crate::session::index::count_elsewhere(services, |s| s.grant == Some(id)).await?;
    Ok(here + elsewhere)
}
