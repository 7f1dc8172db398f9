//! What security can do to a live session: kill it. Used by the admin API; audited with
//! who did it. Locks and just-in-time access are [`crate::access`]'s.

use crate::live::EndReason;
use crate::metrics::Metrics;
use crate::services::Services;

/// Why an operation could not be done.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// No live session has that id.
    #[error("no live session {0}")]
    NoSuchSession(String),
    /// The reason was left empty.
    #[error("a reason is required")]
    NoReason,
}

/// Ends a live session: the user is told who ended it and why, its recordings get an end
/// marker and are sealed, both connections close. Returns the full session id.
pub fn kill(services: &Services, id: &str, by: &str, reason: &str) -> Result<String, OpsError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(OpsError::NoReason);
    }
    let session = services
        .registry
        .find(id)
        .ok_or_else(|| OpsError::NoSuchSession(id.to_owned()))?;
    services.audit.record(
        session
            .audit("session.killed")
            .with("by", by)
            .with("reason", reason),
    );
    Metrics::count(&services.metrics.sessions_killed_total);
    session.control.end(EndReason::Killed {
        by: by.to_owned(),
        reason: reason.to_owned(),
    });
    Ok(session.id.clone())
}
