//! The per-connection task: runs the SSH session (the russh loop with its thin handler, and
//! the session's [`Owner`]), waits for it to end or be ended, says goodbye to the client,
//! and then lets the owner finish the session (see [`crate::session::finish`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::FrontHandler;
use crate::ids::new_session_id;
use crate::live::{EndReason, SessionShared};
use crate::net::admission::PreAuthSlot;
use crate::net::severable::Severable;
use crate::services::Services;
use crate::session::events::EVENT_QUEUE;
use crate::session::finish::CHANNEL_DRAIN;
use crate::session::owner::Owner;
use crate::session::phase::Closing;

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
        let connection_over = CancellationToken::new();
        let owner = tokio::spawn(
            Owner::new(services.clone(), session.clone())
                .run(queue, connection_over.clone())
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
        // The client side is over: the owner finishes the session (and always does — if
        // its task failed, the end is still written, from what the session shows).
        session.control.end(EndReason::ClientClosed);
        connection_over.cancel();
        if let Err(error) = owner.await {
            tracing::error!(%error, "the session's owner failed");
            let reason = session.control.reason().unwrap_or(EndReason::ClientClosed);
            crate::session::finish::finish(
                &services,
                &session,
                Closing {
                    reason,
                    upstream: None,
                },
            )
            .await;
        }
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
