//! Locks placed by security: kept by the state store (they survive restarts and reach every
//! node), placed and lifted here with an audit record each; placing one ends the user's
//! live sessions (their guards see it on the change feed).

use std::time::SystemTime;

use portcullis_policy::Lock;
use portcullis_state::StateError;

use super::AccessError;
use crate::alerts::Alert;
use crate::audit::AuditEvent;
use crate::services::Services;
use crate::text::Shown;

/// The user's lock, if one holds at `now`.
pub async fn active(
    services: &Services,
    user: &str,
    now: SystemTime,
) -> Result<Option<Lock>, StateError> {
    services.state.active_lock(user, now).await
}

/// Every lock that holds at `now`, by user name.
pub async fn list(services: &Services, now: SystemTime) -> Result<Vec<Lock>, StateError> {
    services.state.active_locks(now).await
}

/// Locks a user: their live sessions end now and new logins are refused until `until`
/// (or an unlock). Returns how many live sessions are ending: this node's, and with several
/// nodes the others' the shared index lists.
pub async fn lock(
    services: &Services,
    user: &str,
    by: &str,
    reason: &str,
    until: Option<SystemTime>,
) -> Result<usize, AccessError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(AccessError::NoReason);
    }
    if services.directory.user(user).is_none() {
        return Err(AccessError::NoSuchUser(user.to_owned()));
    }
    // Counted before the lock is published: from then on each live session's guard sees it
    // on the change feed and ends its session (on every node).
    let mut ending = services
        .registry
        .of_user(user)
        .iter()
        .filter(|session| !session.control.is_ending())
        .count();
    ending += crate::session::index::count_elsewhere(services, |s| s.user == user).await?;
    services
        .state
        .place_lock(Lock {
            user: user.to_owned(),
            reason: reason.to_owned(),
            by: by.to_owned(),
            since: services.clock.now(),
            until,
        })
        .await?;
    services.audit.record(
        AuditEvent::new("user.locked")
            .with("user", user)
            .with("by", by)
            .with("reason", reason)
            .with(
                "until",
                until.map(|u| humantime::format_rfc3339_seconds(u).to_string()),
            ),
    );
    services.audit.record(
        Alert::UserLocked
            .event(format!(
                "{} was locked by {}: {}",
                Shown(user),
                Shown(by),
                Shown(reason)
            ))
            .with("user", user)
            .with("by", by),
    );
    Ok(ending)
}

/// Lifts a user's lock.
pub async fn unlock(services: &Services, user: &str, by: &str) -> Result<(), AccessError> {
    if !services.state.lift_lock(user).await? {
        return Err(AccessError::NotLocked(user.to_owned()));
    }
    services.audit.record(
        AuditEvent::new("user.unlocked")
            .with("user", user)
            .with("by", by),
    );
    Ok(())
}
