//! What security can do to a live session: kill it. Used by the admin API; audited with
//! who did it. The kill goes out on the state store's change feed, and the session's guard
//! (on whichever node runs it) ends it. Locks and just-in-time access are
//! [`crate::access`]'s.

use portcullis_state::StateError;

use crate::audit::AuditEvent;
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
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// Ends a live session: the user is told who ended it and why, its recordings get an end
/// marker and are sealed, both connections close. `id` may be a unique prefix of at least
/// four characters. Returns the full session id.
pub async fn kill(
    services: &Services,
    id: &str,
    by: &str,
    reason: &str,
) -> Result<String, OpsError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(OpsError::NoReason);
    }
    let (session, event) = match services.registry.find(id) {
        Some(session) => (session.id.clone(), session.audit("session.killed")),
        // Not on this node: the index knows every live session.
        None => {
            let open = services.state.open_sessions().await?;
            let record = crate::ids::by_id_or_prefix(&open, id, |s| &s.id)
                .ok_or_else(|| OpsError::NoSuchSession(id.to_owned()))?;
            let event = AuditEvent::new("session.killed")
                .with("session", &record.id)
                .with("user", &record.user)
                .with("source", &record.client)
                .with("target", record.target.as_deref());
            (record.id.clone(), event)
        }
    };
    services
        .audit
        .record(event.with("by", by).with("reason", reason));
    Metrics::count(&services.metrics.sessions_killed_total);
    services.state.request_kill(&session, by, reason).await?;
    Ok(session)
}
