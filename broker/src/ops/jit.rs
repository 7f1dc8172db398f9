//! Just-in-time access as operations: activate, approve, deny, cancel, revoke, acknowledge,
//! and the periodic expiry. Each checks its inputs, changes the records through
//! [`crate::jit::Jit`], audits what happened and ends the sessions it must. The ssh command
//! interface, the in-login activation and the admin API all come through here.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use portcullis_policy::{ActivationError, Denied, Eligibility, Request, RequestKind};

use crate::audit::AuditEvent;
use crate::front::throttle::{Method, ThrottleKey};
use crate::front::totp;
use crate::jit::{Activated, Approved, GrantRecord, JitError, Reviewer};
use crate::metrics::Metrics;
use crate::server::Broker;
use crate::session::EndReason;
use crate::store::StoreError;
use crate::text::Shown;

/// Why a just-in-time operation was refused. The text is for the person who asked.
#[derive(Debug, thiserror::Error)]
pub enum JitOpError {
    /// Standing access already covers it.
    #[error("{0} is open to you already (standing access); no activation is needed")]
    Standing(String),
    /// No eligible role covers it (or it does not exist).
    #[error("you cannot activate {target}: {denied}")]
    NotEligible {
        /// The target.
        target: String,
        /// Why.
        denied: Denied,
    },
    /// A grant for it is active already.
    #[error("you already have grant #{grant} for {target}, {left} left")]
    AlreadyActive {
        /// The target.
        target: String,
        /// The grant.
        grant: u64,
        /// Time left, for people.
        left: String,
    },
    /// A request for it is waiting already.
    #[error("your request #{request} for {target} is already waiting for approval")]
    AlreadyRequested {
        /// The target.
        target: String,
        /// The request.
        request: u64,
    },
    /// The answers do not satisfy the role.
    #[error("{0}")]
    Invalid(ActivationError),
    /// The role wants a fresh TOTP code and none was given.
    #[error("a verification code from your authenticator is required")]
    CodeRequired,
    /// The code is wrong.
    #[error("wrong verification code")]
    WrongCode,
    /// The code was used before.
    #[error("that verification code was already used; wait for the next one")]
    CodeReused,
    /// Too many wrong codes lately.
    #[error(
        "too many wrong verification codes; activation with a code is refused for a while (security has been alerted)"
    )]
    CodeThrottled,
    /// A reason is required for this action.
    #[error("a reason is required")]
    NoReason,
    /// The records refused it.
    #[error(transparent)]
    Jit(#[from] JitError),
    /// The state database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
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

/// What activating `target` would ask of `user` now, or why they cannot.
pub fn eligibility(broker: &Broker, user: &str, target: &str) -> Result<Eligibility, JitOpError> {
    let now = SystemTime::now();
    match broker.policy.check(user, target, None, &[], now) {
        Ok(_) => Err(JitOpError::Standing(target.to_owned())),
        Err(Denied::NeedsActivation(eligibility)) => Ok(*eligibility),
        Err(denied) => Err(JitOpError::NotEligible {
            target: target.to_owned(),
            denied,
        }),
    }
}

/// `user`'s open access request for `target`, if any.
pub fn pending_request(broker: &Broker, user: &str, target: &str) -> Option<Request> {
    broker
        .jit
        .pending()
        .into_iter()
        .find(|r| r.user == user && r.target == target && r.kind == RequestKind::Access)
}

/// Time left until `end`, for people ("59m 12s").
pub fn left(end: SystemTime, now: SystemTime) -> String {
    let left = end.duration_since(now).unwrap_or_default();
    humantime::format_duration(Duration::from_secs(left.as_secs())).to_string()
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// Activates `target` for `user` with their answers: a grant now (self-activation,
/// break-glass) or a request for approval. `via` says where it came from (for the audit).
pub fn activate(
    broker: &Broker,
    user: &str,
    target: &str,
    answers: &Answers,
    via: &str,
) -> Result<Activated, JitOpError> {
    let now = SystemTime::now();
    let eligibility = eligibility(broker, user, target)?;
    if let Some(grant) = broker
        .jit
        .active_grants(user, now)
        .into_iter()
        .find(|g| g.target == target)
    {
        return Err(JitOpError::AlreadyActive {
            target: target.to_owned(),
            grant: grant.id,
            left: left(grant.expires_at, now),
        });
    }
    if let Some(request) = pending_request(broker, user, target) {
        return Err(JitOpError::AlreadyRequested {
            target: target.to_owned(),
            request: request.id,
        });
    }
    let duration = eligibility
        .validate(&answers.reason, answers.duration)
        .map_err(JitOpError::Invalid)?;
    if eligibility.require_mfa {
        verify_code(broker, user, target, answers.code.as_deref())?;
    }
    let reason = answers.reason.trim();
    let activated = broker
        .jit
        .activate(&eligibility, user, reason, duration, now)?;
    match &activated {
        Activated::Granted(record) => {
            audit_grant(broker, record, via);
            if record.break_glass {
                broker.audit.record(
                    AuditEvent::new("breakglass.used")
                        .with("grant", record.grant.id)
                        .with("user", user)
                        .with("target", target)
                        .with("role", &record.grant.role)
                        .with("reason", reason),
                );
                Metrics::count(&broker.metrics.break_glass_total);
                tracing::warn!(
                    user,
                    target,
                    grant = record.grant.id,
                    reason,
                    "ALERT: break-glass access used; it awaits review (portcullis review)"
                );
            }
        }
        Activated::Requested(request) => {
            broker.audit.record(
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

fn audit_grant(broker: &Broker, record: &GrantRecord, via: &str) {
    Metrics::count(&broker.metrics.grants_total);
    let grant = &record.grant;
    broker.audit.record(
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
fn verify_code(
    broker: &Broker,
    user: &str,
    target: &str,
    code: Option<&str>,
) -> Result<(), JitOpError> {
    let code = code
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .ok_or(JitOpError::CodeRequired)?;
    let keys = vec![ThrottleKey::User(user.to_owned(), Method::ActivationCode)];
    let reservation = match broker.throttle.reserve(keys.clone(), Instant::now()) {
        Ok(reservation) => reservation,
        Err(_) => {
            broker.audit.record(
                AuditEvent::new("access.code_throttled")
                    .with("user", user)
                    .with("target", target),
            );
            return Err(JitOpError::CodeThrottled);
        }
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let verdict = match broker
        .directory
        .user(user)
        .and_then(|u| u.totp_key.as_ref())
    {
        None => Err(JitOpError::WrongCode),
        Some(key) => match totp::matching_step(key.expose(), code, now) {
            None => Err(JitOpError::WrongCode),
            Some(step) => match broker.totp_replay.accept(user, step)? {
                true => Ok(()),
                false => Err(JitOpError::CodeReused),
            },
        },
    };
    match verdict {
        Ok(()) => {
            reservation.succeeded();
            Ok(())
        }
        Err(error) => {
            reservation.failed();
            broker.audit.record(
                AuditEvent::new("access.code_failure")
                    .with("user", user)
                    .with("target", target)
                    .with(
                        "reason",
                        if matches!(error, JitOpError::CodeReused) {
                            "already used"
                        } else {
                            "wrong code"
                        },
                    ),
            );
            if broker.throttle.blocked(&keys, Instant::now()).is_some() {
                broker.audit.record(
                    AuditEvent::new("access.code_throttled")
                        .with("user", user)
                        .with("target", target)
                        .with("limit_reached", true),
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

/// Adds `reviewer`'s approval to request `id`; the last one needed starts the grant (and
/// releases a login waiting on it).
pub fn approve(
    broker: &Broker,
    id: u64,
    reviewer: Reviewer<'_>,
    comment: Option<&str>,
) -> Result<(Request, Approved), JitOpError> {
    let comment = comment.map(str::trim).filter(|c| !c.is_empty());
    let (request, approved) =
        broker
            .jit
            .approve(id, reviewer, comment, &broker.policy, SystemTime::now())?;
    let (have, need) = match &approved {
        Approved::Pending { have, need } => (*have, *need),
        Approved::Granted(_) | Approved::Command => (request.needed, request.needed),
    };
    broker.audit.record(
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
        audit_grant(broker, record, "approval");
    }
    Ok((request, approved))
}

/// Denies request `id`; a login waiting on it ends with the reason.
pub fn deny(
    broker: &Broker,
    id: u64,
    reviewer: Reviewer<'_>,
    reason: &str,
) -> Result<Request, JitOpError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(JitOpError::NoReason);
    }
    let request = broker
        .jit
        .deny(id, reviewer, reason, &broker.policy, SystemTime::now())?;
    broker.audit.record(
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
pub fn cancel(broker: &Broker, id: u64, user: &str) -> Result<Request, JitOpError> {
    let request = broker.jit.cancel(id, user)?;
    broker.audit.record(
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
pub fn revoke(
    broker: &Broker,
    id: u64,
    by: &str,
    reason: &str,
    owner: Option<&str>,
) -> Result<(GrantRecord, usize), JitOpError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(JitOpError::NoReason);
    }
    if let Some(owner) = owner
        && broker.jit.grant(id)?.grant.user != owner
    {
        return Err(JitError::NotYours(id).into());
    }
    let record = broker.jit.revoke(id, by, reason, SystemTime::now())?;
    broker.audit.record(
        AuditEvent::new("grant.revoked")
            .with("grant", id)
            .with("user", &record.grant.user)
            .with("target", &record.grant.target)
            .with("by", by)
            .with("reason", reason),
    );
    let ended = end_sessions_of(
        broker,
        id,
        EndReason::GrantRevoked {
            grant: id,
            by: by.to_owned(),
            reason: reason.to_owned(),
        },
    );
    Ok((record, ended))
}

/// Security has reviewed break-glass grant `id`.
pub fn acknowledge(broker: &Broker, id: u64, by: &str) -> Result<GrantRecord, JitOpError> {
    let record = broker.jit.acknowledge(id, by, SystemTime::now())?;
    broker.audit.record(
        AuditEvent::new("breakglass.acknowledged")
            .with("grant", id)
            .with("user", &record.grant.user)
            .with("target", &record.grant.target)
            .with("by", by),
    );
    Ok(record)
}

/// Closes requests and grants that ran out by `now`, audits them, and ends sessions still
/// resting on an expired grant (each session also watches its own grant; this catches
/// what a clock jump or a restart would otherwise leave).
pub fn expire_due(broker: &Broker, now: SystemTime) -> Result<(), JitOpError> {
    let (requests, grants) = broker.jit.expire_due(now)?;
    for request in requests {
        broker.audit.record(
            AuditEvent::new("request.expired")
                .with("request", request.id)
                .with("user", &request.user)
                .with("target", &request.target),
        );
    }
    for record in grants {
        let grant = &record.grant;
        broker.audit.record(
            AuditEvent::new("grant.expired")
                .with("grant", grant.id)
                .with("user", &grant.user)
                .with("target", &grant.target)
                .with("expired_at", rfc3339(grant.expires_at)),
        );
        end_sessions_of(
            broker,
            grant.id,
            EndReason::GrantExpired { grant: grant.id },
        );
    }
    Ok(())
}

/// Ends the live sessions resting on grant `id`; returns how many.
fn end_sessions_of(broker: &Broker, id: u64, reason: EndReason) -> usize {
    let mut ended = 0;
    for session in broker.registry.list() {
        if session.grant.get() == Some(&id) && !session.control.is_ending() {
            session.control.end(reason.clone());
            ended += 1;
        }
    }
    ended
}
