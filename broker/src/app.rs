//! The bastion as a running service: the front door bound to its listener, accepting until
//! shutdown. [`Server::bind`] binds the configured address (or [`Server::on`] takes one
//! already bound: tests use port 0); [`Server::run`] accepts, admits each connection to a
//! pre-login slot and hands it to [`crate::front::connection::run`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::audit::AuditEvent;
use crate::metrics::Metrics;
use crate::net::admission::Crowded;
use crate::services::{Services, StartError};

/// A bound front door.
pub struct Server {
    services: Arc<Services>,
    listener: TcpListener,
    ssh_config: Arc<russh::server::Config>,
}

impl Server {
    /// Binds the configured listen address.
    pub async fn bind(services: Arc<Services>) -> Result<Self, StartError> {
        let address = services.config.server.listen;
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| StartError::Bind { address, source })?;
        Ok(Self::on(services, listener))
    }

    /// Serves on a listener bound already (tests bind port 0).
    pub fn on(services: Arc<Services>, listener: TcpListener) -> Self {
        if let Ok(bound) = listener.local_addr() {
            let _ = services.listening.set(bound);
        }
        let ssh_config = Arc::new(crate::front::config::server_config(
            &services.config,
            services.host_key().clone(),
        ));
        Self {
            services,
            listener,
            ssh_config,
        }
    }

    /// The address actually bound (port 0 becomes a real port).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections until shutdown. Beyond `max_connections` a new connection is
    /// closed at once rather than queued.
    pub async fn run(self) {
        let services = self.services;
        if let Ok(address) = self.listener.local_addr() {
            services
                .audit
                .record(AuditEvent::new("server.start").with("listen", address.to_string()));
        }
        loop {
            let accepted = tokio::select! {
                () = services.shutdown.cancelled() => break,
                accepted = self.listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, client)) => {
                    let slot = match services.admission.admit(client.ip()) {
                        Ok(slot) => slot,
                        Err(crowded) => {
                            refused_connection(&services, client, crowded);
                            continue;
                        }
                    };
                    services.sessions.spawn(crate::front::connection::run(
                        services.clone(),
                        self.ssh_config.clone(),
                        stream,
                        client,
                        slot,
                    ));
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        services
            .audit
            .record(AuditEvent::new("server.stop").with("reason", "shutdown"));
    }
}

/// A connection closed at accept because its pre-login budget was spent: counted, and
/// logged at most once a minute (a flood must not become a flood of log lines).
fn refused_connection(services: &Services, client: SocketAddr, crowded: Crowded) {
    Metrics::count(&services.metrics.connections_refused_total);
    let now = std::time::Instant::now();
    let mut last = services
        .refusal_logged
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if last.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(60)) {
        *last = Some(now);
        let why = match crowded {
            Crowded::Source => {
                "this address holds its share of pre-login slots (max_unauthenticated_per_source)"
            }
            Crowded::Everywhere => "every pre-login slot is taken (max_unauthenticated)",
        };
        tracing::warn!(%client, why, "connection closed at accept (more are counted in portcullis_connections_refused_total)");
    }
}
