//! The end of a session, from its owner's [`Closing`] state: channels drained (their
//! recordings sealed), the upstream closed, both streams cut, the connection's slot given
//! back, the session index and the metrics updated, and `session.end` audited with the
//! reason and the side that ended it. It always runs: the owner calls it last, and if the
//! owner's task failed, the connection task calls it with what the session shows.

use std::time::Duration;

use super::phase::Closing;
use crate::live::SessionShared;
use crate::services::Services;

/// How long channels get to tell the client why and seal their recordings.
pub const CHANNEL_DRAIN: Duration = Duration::from_secs(5);
/// How long the upstream gets to take a polite goodbye.
const DISCONNECT_GRACE: Duration = Duration::from_secs(2);

/// Always runs last: waits for the channels, closes the upstream and writes `session.end`.
pub async fn finish(services: &Services, session: &SessionShared, closing: Closing) {
    let Closing { reason, upstream } = closing;
    session.tasks.close();
    if tokio::time::timeout(CHANNEL_DRAIN, session.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("channel tasks did not finish in time");
    }
    if let Some(upstream) = upstream {
        let _ = tokio::time::timeout(DISCONNECT_GRACE, upstream.disconnect("session ended")).await;
    }
    // Whatever is still open now is closed, on both sides.
    session.sever.cancel();
    session.release_slot();
    if session.identity.get().is_none() {
        return;
    }
    services.registry.unregister(&session.id, |session| {
        let metrics = &services.metrics;
        metrics.finished_bytes_from_clients.fetch_add(
            session
                .bytes_from_client
                .load(std::sync::atomic::Ordering::Relaxed),
            std::sync::atomic::Ordering::Relaxed,
        );
        metrics.finished_bytes_to_clients.fetch_add(
            session
                .bytes_to_client
                .load(std::sync::atomic::Ordering::Relaxed),
            std::sync::atomic::Ordering::Relaxed,
        );
    });
    let duration = session.elapsed();
    let from_client = session
        .bytes_from_client
        .load(std::sync::atomic::Ordering::Relaxed);
    let to_client = session
        .bytes_to_client
        .load(std::sync::atomic::Ordering::Relaxed);
    super::index::closed(services, session, &reason, from_client, to_client).await;
    services.audit.record(
        session
            .audit("session.end")
            .with("reason", reason.code())
            .with("side", reason.side().code())
            .with("detail", reason.to_string())
            .with("bytes_from_client", from_client)
            .with("bytes_to_client", to_client)
            .with("duration_ms", duration.as_millis() as u64),
    );
    tracing::info!(
        reason = reason.code(),
        side = reason.side().code(),
        from_client,
        to_client,
        duration_ms = duration.as_millis() as u64,
        "session ended"
    );
    ask_for_rotation(services, session).await;
}

/// `rotate_after`: a session on a break-glass grant, or a service's session on its checked-out
/// grant, has ended, so the credential it used is rotated (whoever used it may have seen more
/// than they should).
async fn ask_for_rotation(services: &Services, session: &SessionShared) {
    let Some(authorized) = session.authorized.get() else {
        return;
    };
    let target = authorized.target();
    let crate::directory::UpstreamAuth::Vaulted(credential) = &target.auth else {
        return;
    };
    let Some(grant) = authorized.decision().grant() else {
        return;
    };
    let service = services
        .directory
        .user(authorized.decision().user())
        .is_some_and(|u| u.service);
    if target.rotation.after_checkout && service {
        services.rotations.request(credential, "checkout");
        return;
    }
    if !target.rotation.after_break_glass {
        return;
    }
    match services.state.grant(grant).await {
        Ok(Some(record)) if record.break_glass => {
            services.rotations.request(credential, "break-glass");
        }
        Ok(_) => {}
        Err(error) => {
            tracing::error!(%error, grant, "ALERT: cannot tell whether grant {grant} was break-glass; {credential} is not rotated after it");
        }
    }
}
