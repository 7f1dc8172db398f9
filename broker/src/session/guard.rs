//! The session's guard: re-runs the policy check ([`super::authorize`]) whenever the change
//! feed says something that matters to this session changed — its user locked, the grant it
//! rests on revoked or expired, on this node or another — and ends the session when the
//! answer is no; and ends it when an operator's kill for it comes on the feed. It runs beside the owner, not inside it, so a session whose owner is busy
//! (waiting for a stalled upstream to take input) is still ended on time.
//!
//! What the session holds is read from [`SessionShared`]: once a target is authorized its
//! role is set (then the target is checked), before that only the login is (the menu, an
//! activation dialog).

use std::sync::Arc;

use portcullis_policy::Denied;
use portcullis_state::Change;
use tokio::sync::broadcast::{self, error::RecvError};

use super::authorize;
use crate::live::{EndReason, SessionShared};
use crate::metrics::Metrics;
use crate::services::Services;

/// Watches the change feed (`changes`, subscribed before the session was routed) for
/// `session` until it ends.
pub async fn run(
    services: Arc<Services>,
    session: Arc<SessionShared>,
    mut changes: broadcast::Receiver<Change>,
) {
    loop {
        let change = tokio::select! {
            change = changes.recv() => change,
            () = session.control.ended() => return,
        };
        let reason = match change {
            Ok(Change::GrantEnded { id, .. }) if session.grant() == Some(id) => {
                // The session rests on this grant (its deadlines are the grant's): it ends,
                // whatever other grant the user may hold.
                Some(grant_ended(&services, id).await)
            }
            Ok(Change::LockPlaced { user }) if session.user() == Some(user.as_str()) => {
                recheck(&services, &session).await
            }
            Ok(Change::KillRequested {
                session: id,
                by,
                reason,
            }) if id == session.id => Some(EndReason::Killed { by, reason }),
            Ok(_) => None,
            // Something may have been missed: check anyway.
            Err(RecvError::Lagged(_)) => recheck(&services, &session).await,
            Err(RecvError::Closed) => {
                changes = services.state.changes();
                None
            }
        };
        if let Some(reason) = reason {
            tracing::info!(parent: &session.span, %reason, "access re-checked: no longer allowed");
            if matches!(reason, EndReason::Locked { .. }) {
                Metrics::count(&services.metrics.sessions_killed_total);
            }
            session.control.end(reason);
            return;
        }
    }
}

/// Runs the policy check again for what the session holds: why it must end, if it must.
/// A state store that cannot answer ends it (nothing is allowed that cannot be checked).
async fn recheck(services: &Services, session: &SessionShared) -> Option<EndReason> {
    let user = session.user()?;
    let now = services.clock.now();
    let denied = match (session.role(), session.target()) {
        (Some(_), Some(target)) => authorize::target(services, user, target, now)
            .await
            .map(|verdict| verdict.err()),
        _ => authorize::login(services, user, now)
            .await
            .map(|verdict| verdict.err()),
    };
    match denied {
        Ok(None) => None,
        Ok(Some(Denied::Locked { by, reason })) => Some(EndReason::Locked { by, reason }),
        Ok(Some(denied)) => Some(match session.grant() {
            Some(grant) => grant_ended(services, grant).await,
            None => EndReason::AccessWithdrawn(denied.to_string()),
        }),
        Err(error) => {
            tracing::error!(parent: &session.span, %error, "cannot re-check the session's access; ending it");
            Some(EndReason::StateFailed(
                "its state store failed while re-checking it".into(),
            ))
        }
    }
}

/// Why a session resting on `grant` ends now that the grant has: revoked (by whom, why) or
/// expired.
async fn grant_ended(services: &Services, grant: u64) -> EndReason {
    let record = services.state.grant(grant).await.ok().flatten();
    match record.and_then(|record| record.revoked) {
        Some((by, reason)) => EndReason::GrantRevoked { grant, by, reason },
        None => EndReason::GrantExpired { grant },
    }
}
