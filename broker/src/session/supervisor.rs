//! The per-connection task: runs the SSH session, waits for it to end or be ended, and
//! always finishes it (channels drained, recordings sealed, upstream closed, audit written).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::net::TcpStream;
use tracing::Instrument;

use super::severable::Severable;
use super::{EndReason, SessionShared};
use crate::front::FrontHandler;
use crate::front::admission::PreAuthSlot;
use crate::ids::new_session_id;
use crate::server::Broker;

/// How long channels get to tell the client why and seal their recordings.
const CHANNEL_DRAIN: Duration = Duration::from_secs(5);
/// How long the client gets to receive the disconnect message.
const DISCONNECT_GRACE: Duration = Duration::from_secs(2);

/// Serves one accepted TCP connection to the end; `slot` is its pre-login slot.
pub async fn run(
    broker: Arc<Broker>,
    stream: TcpStream,
    client: std::net::SocketAddr,
    slot: PreAuthSlot,
) {
    let session = Arc::new(SessionShared::new(
        new_session_id(),
        client,
        &broker.shutdown,
        slot,
    ));
    let span = session.span.clone();
    async move {
        let _ = stream.set_nodelay(true);
        if let Ok(local) = stream.local_addr() {
            let _ = session.local.set(local);
        }
        tracing::debug!("connection accepted");
        let stream = Severable::new(stream, session.sever.clone());
        let handler = FrontHandler::new(broker.clone(), session.clone());
        // russh reads the client's version line before it returns: a connection that sends
        // nothing gives its pre-login slot back after `banner_timeout`.
        let started = tokio::time::timeout(
            broker.config.server.banner_timeout,
            russh::server::run_stream(broker.ssh_config(), stream, handler),
        )
        .await;
        match started {
            Ok(Ok(running)) => supervise(&broker, &session, running).await,
            // A port scanner, or garbage instead of an SSH banner: nothing to finish.
            Ok(Err(error)) => tracing::debug!(%error, "SSH handshake failed"),
            Err(_) => tracing::debug!("no SSH version line in time"),
        }
        finish(&broker, &session).await;
    }
    .instrument(span)
    .await;
}

async fn supervise(
    broker: &Broker,
    session: &SessionShared,
    running: russh::server::RunningSession<FrontHandler>,
) {
    let handle = running.handle();
    tokio::pin!(running);
    let login_deadline = tokio::time::sleep(broker.config.server.login_grace_time);
    tokio::pin!(login_deadline);
    let mut awaiting_login = true;
    loop {
        tokio::select! {
            result = &mut running => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                session.control.end(EndReason::ClientClosed);
                return;
            }
            () = session.control.ended() => {
                let reason = session.control.reason().unwrap_or(EndReason::Shutdown);
                tracing::info!(%reason, "ending the session");
                // Channels print the reason to the client and seal their recordings first.
                session.tasks.close();
                let _ = tokio::time::timeout(CHANNEL_DRAIN, session.tasks.wait()).await;
                let _ = handle
                    .disconnect(russh::Disconnect::ByApplication, format!("portcullis: {reason}"), "en".into())
                    .await;
                if tokio::time::timeout(DISCONNECT_GRACE, &mut running).await.is_err() {
                    // The client (or russh, mid-handshake) did not let go: cut the stream.
                    session.sever.cancel();
                    let _ = tokio::time::timeout(DISCONNECT_GRACE, &mut running).await;
                }
                return;
            }
            () = &mut login_deadline, if awaiting_login => {
                awaiting_login = false;
                if session.identity.get().is_none() {
                    tracing::info!("client did not authenticate in time");
                    session.control.end(EndReason::LoginTimeout);
                }
            }
        }
    }
}

/// Ends the session once the user has typed nothing for `idle`; the deadline moves with
/// every keystroke. Runs beside the session and stops when it ends.
pub async fn watch_idle(session: Arc<SessionShared>, idle: Duration) {
    loop {
        let deadline = tokio::time::Instant::from_std(session.last_input() + idle);
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => {
                if session.last_input().elapsed() >= idle {
                    tracing::info!(idle = %humantime::format_duration(idle), "session idle");
                    session.control.end(EndReason::Idle(idle));
                    return;
                }
            }
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
    // One reading of both clocks, so every deadline is on the monotonic one.
    let (now, start) = (SystemTime::now(), tokio::time::Instant::now());
    let deadline = start + expires_at.duration_since(now).unwrap_or_default();
    let mut warnings: Vec<Duration> = warn_before
        .into_iter()
        .filter(|ahead| expires_at.checked_sub(*ahead).is_some_and(|at| at > now))
        .collect();
    warnings.sort_unstable_by(|a, b| b.cmp(a));
    for ahead in warnings {
        tokio::select! {
            () = tokio::time::sleep_until(deadline - ahead) => {
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
        () = tokio::time::sleep_until(deadline) => {
            tracing::info!(grant, "grant expired; ending the session");
            session.control.end(EndReason::GrantExpired { grant });
        }
        () = session.control.ended() => {}
    }
}

/// Always runs last: waits for the channels, closes the upstream and writes `session.end`.
async fn finish(broker: &Broker, session: &SessionShared) {
    session.tasks.close();
    if tokio::time::timeout(CHANNEL_DRAIN, session.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("channel tasks did not finish in time");
    }
    if let Some(upstream) = session.upstream.get() {
        let _ = tokio::time::timeout(DISCONNECT_GRACE, upstream.disconnect("session ended")).await;
    }
    // Whatever is still open now is closed, on both sides.
    session.sever.cancel();
    session.release_slot();
    if session.identity.get().is_none() {
        return;
    }
    broker.registry.unregister(&session.id, |session| {
        let metrics = &broker.metrics;
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
    let reason = session.control.reason().unwrap_or(EndReason::ClientClosed);
    let duration = session.started.elapsed();
    let from_client = session
        .bytes_from_client
        .load(std::sync::atomic::Ordering::Relaxed);
    let to_client = session
        .bytes_to_client
        .load(std::sync::atomic::Ordering::Relaxed);
    broker.audit.record(
        session
            .audit("session.end")
            .with("reason", reason.code())
            .with("detail", reason.to_string())
            .with("bytes_from_client", from_client)
            .with("bytes_to_client", to_client)
            .with("duration_ms", duration.as_millis() as u64),
    );
    tracing::info!(
        reason = reason.code(),
        from_client,
        to_client,
        duration_ms = duration.as_millis() as u64,
        "session ended"
    );
}
