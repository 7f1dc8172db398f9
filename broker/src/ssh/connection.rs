//! The per-connection task: runs the SSH session (the russh loop with its thin handler, and
//! the session's [`Owner`]), waits for it to end or be ended, and always finishes it
//! (channels drained, recordings sealed, upstream closed, audit written).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::FrontHandler;
use crate::ids::new_session_id;
use crate::live::{EndReason, SessionShared};
use crate::net::admission::PreAuthSlot;
use crate::net::severable::Severable;
use crate::services::Services;
use crate::session::events::EVENT_QUEUE;
use crate::session::owner::Owner;

/// How long channels get to tell the client why and seal their recordings.
const CHANNEL_DRAIN: Duration = Duration::from_secs(5);
/// How long the client gets to receive the disconnect message.
const DISCONNECT_GRACE: Duration = Duration::from_secs(2);

/// Serves one accepted TCP connection to the end; `slot` is its pre-login slot.
pub async fn run(
    services: Arc<Services>,
    ssh_config: Arc<russh::server::Config>,
    stream: TcpStream,
    client: std::net::SocketAddr,
    slot: PreAuthSlot,
) {
    let session = Arc::new(SessionShared::new(
        new_session_id(),
        client,
        &services.shutdown,
        slot,
        services.clock.clone(),
    ));
    let span = session.span.clone();
    async move {
        let _ = stream.set_nodelay(true);
        if let Ok(local) = stream.local_addr() {
            let _ = session.local.set(local);
        }
        tracing::debug!("connection accepted");
        let stream = Severable::new(stream, session.sever.clone());
        // The handler turns callbacks into events; the owner, a task of its own, acts on
        // them (and on the change feed) until the handler is gone or the session ends.
        let (events, queue) = mpsc::channel(EVENT_QUEUE);
        let handler = FrontHandler::new(services.clone(), session.clone(), events);
        tokio::spawn(
            Owner::new(services.clone(), session.clone())
                .run(queue)
                .instrument(session.span.clone()),
        );
        // russh reads the client's version line before it returns: a connection that sends
        // nothing gives its pre-login slot back after `banner_timeout`.
        let started = tokio::time::timeout(
            services.config.server.banner_timeout,
            russh::server::run_stream(ssh_config, stream, handler),
        )
        .await;
        match started {
            Ok(Ok(running)) => supervise(&services, &session, running).await,
            // A port scanner, or garbage instead of an SSH banner: nothing to finish.
            Ok(Err(error)) => tracing::debug!(%error, "SSH handshake failed"),
            Err(_) => tracing::debug!("no SSH version line in time"),
        }
        finish(&services, &session).await;
    }
    .instrument(span)
    .await;
}

async fn supervise(
    services: &Services,
    session: &SessionShared,
    running: russh::server::RunningSession<FrontHandler>,
) {
    let handle = running.handle();
    tokio::pin!(running);
    let login_deadline = tokio::time::sleep(services.config.server.login_grace_time);
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

/// Always runs last: waits for the channels, closes the upstream and writes `session.end`.
async fn finish(services: &Services, session: &SessionShared) {
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
    let reason = session.control.reason().unwrap_or(EndReason::ClientClosed);
    let duration = session.elapsed();
    let from_client = session
        .bytes_from_client
        .load(std::sync::atomic::Ordering::Relaxed);
    let to_client = session
        .bytes_to_client
        .load(std::sync::atomic::Ordering::Relaxed);
    crate::session::index::closed(services, session, &reason, from_client, to_client).await;
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
}
