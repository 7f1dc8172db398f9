//! What security can do to live sessions and users: kill a session, lock and unlock a user.
//! Used by the admin API; every action is audited with who did it. Just-in-time access
//! operations are in [`jit`].

pub mod jit;

use std::time::SystemTime;

use portcullis_policy::Lock;

use crate::audit::AuditEvent;
use crate::metrics::Metrics;
use crate::server::Broker;
use crate::session::EndReason;
use crate::store::StoreError;

/// Why an operation could not be done.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// No live session has that id.
    #[error("no live session {0}")]
    NoSuchSession(String),
    /// No configured user has that name.
    #[error("no user named {0:?}")]
    NoSuchUser(String),
    /// No lock for that user.
    #[error("{0} is not locked")]
    NotLocked(String),
    /// The reason was left empty.
    #[error("a reason is required")]
    NoReason,
    /// The state database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Ends a live session: the user is told who ended it and why, its recordings get an end
/// marker and are sealed, both connections close. Returns the full session id.
pub fn kill(broker: &Broker, id: &str, by: &str, reason: &str) -> Result<String, OpsError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(OpsError::NoReason);
    }
    let session = broker
        .registry
        .find(id)
        .ok_or_else(|| OpsError::NoSuchSession(id.to_owned()))?;
    broker.audit.record(
        session
            .audit("session.killed")
            .with("by", by)
            .with("reason", reason),
    );
    Metrics::count(&broker.metrics.sessions_killed_total);
    session.control.end(EndReason::Killed {
        by: by.to_owned(),
        reason: reason.to_owned(),
    });
    Ok(session.id.clone())
}

/// Locks a user: their live sessions end now and new logins are refused until `until`
/// (or an unlock). Returns how many live sessions were ended.
pub fn lock(
    broker: &Broker,
    user: &str,
    by: &str,
    reason: &str,
    until: Option<SystemTime>,
) -> Result<usize, OpsError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(OpsError::NoReason);
    }
    if broker.directory.user(user).is_none() {
        return Err(OpsError::NoSuchUser(user.to_owned()));
    }
    broker.locks.lock(Lock {
        user: user.to_owned(),
        reason: reason.to_owned(),
        by: by.to_owned(),
        since: SystemTime::now(),
        until,
    })?;
    broker.audit.record(
        AuditEvent::new("user.locked")
            .with("user", user)
            .with("by", by)
            .with("reason", reason)
            .with(
                "until",
                until.map(|u| humantime::format_rfc3339_seconds(u).to_string()),
            ),
    );
    let sessions = broker.registry.of_user(user);
    for session in &sessions {
        Metrics::count(&broker.metrics.sessions_killed_total);
        session.control.end(EndReason::Locked {
            by: by.to_owned(),
            reason: reason.to_owned(),
        });
    }
    Ok(sessions.len())
}

/// Lifts a user's lock.
pub fn unlock(broker: &Broker, user: &str, by: &str) -> Result<(), OpsError> {
    if !broker.locks.unlock(user)? {
        return Err(OpsError::NotLocked(user.to_owned()));
    }
    broker.audit.record(
        AuditEvent::new("user.unlocked")
            .with("user", user)
            .with("by", by),
    );
    Ok(())
}
