//! What ends a session by itself: its user going idle, its grant running out (with
//! warnings before). Each runs beside the session and stops when it ends.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::live::{EndReason, SessionShared};

/// Ends the session once the user has typed nothing for `idle`; the deadline moves with
/// every keystroke. Runs beside the session and stops when it ends.
pub async fn watch_idle(session: Arc<SessionShared>, idle: Duration) {
    loop {
        // An absolute instant: a clock that moves while this runs cannot push it later.
        let deadline = session.idle_deadline(idle);
        if session.clock.now() >= deadline {
            tracing::info!(idle = %humantime::format_duration(idle), "session idle");
            session.control.end(EndReason::Idle(idle));
            return;
        }
        tokio::select! {
            () = session.clock.sleep_until(deadline) => {}
            () = session.control.ended() => return,
        }
    }
}

/// Warns the user's terminals `warn_before` ahead of their grant's end, and ends the
/// session at the exact instant it expires. Runs beside the session and stops with it.
pub async fn watch_grant(
    session: Arc<SessionShared>,
    grant: u64,
    expires_at: SystemTime,
    warn_before: Vec<Duration>,
) {
    let now = session.clock.now();
    let mut warnings: Vec<Duration> = warn_before
        .into_iter()
        .filter(|ahead| expires_at.checked_sub(*ahead).is_some_and(|at| at > now))
        .collect();
    warnings.sort_unstable_by(|a, b| b.cmp(a));
    for ahead in warnings {
        tokio::select! {
            () = session.clock.sleep_until(expires_at - ahead) => {
                let text = format!(
                    "your access ends in {} (grant #{grant}, at {}); save your work",
                    humantime::format_duration(ahead),
                    humantime::format_rfc3339_seconds(expires_at)
                );
                tracing::info!(grant, ahead = %humantime::format_duration(ahead), "grant expiry warning");
                session.notify(&text);
            }
            () = session.control.ended() => return,
        }
    }
    tokio::select! {
        () = session.clock.sleep_until(expires_at) => {
            tracing::info!(grant, "grant expired; ending the session");
            session.control.end(EndReason::GrantExpired { grant });
        }
        () = session.control.ended() => {}
    }
}
