//! The bastion as a running service. [`serve`] binds the front door and the admin API, runs
//! them with the expiry pass until told to stop, then drains sessions; the command line
//! tells it to stop on a signal, an in-process test when it is done. [`Server::bind`] binds
//! the configured address (or [`Server::on`] takes one already bound: tests use port 0);
//! [`Server::run`] accepts, admits each connection to a pre-login slot and hands it to
//! [`crate::ssh::connection::run`].

use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;
use tokio_util::sync::CancellationToken;

use russh::keys::ssh_key::HashAlg;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::AdminServer;

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
        let ssh_config = Arc::new(crate::ssh::config::server_config(
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
                    services.sessions.spawn(crate::ssh::connection::run(
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

/// Where a serving bastion listens.
#[derive(Debug, Clone)]
pub struct Listening {
    /// The SSH front door.
    pub ssh: SocketAddr,
    /// The admin API and its certificate's fingerprint, when `[admin]` is on.
    pub admin: Option<(SocketAddr, String)>,
}

/// How far shutdown has gone: told once, sessions drain within the grace period; told
/// twice, the bastion exits without waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stop {
    /// Serving.
    Running,
    /// Drain: stop accepting, end sessions, wait up to `shutdown_grace`.
    Drain,
    /// Stop waiting for sessions.
    Now,
}

/// Binds, calls `ready` once everything listens, serves until `stop` says drain, then
/// drains. The stable `portcullis: listening on …` lines go to stderr (scripts and tests
/// wait for them).
pub async fn serve(
    services: Arc<Services>,
    ready: impl FnOnce(&Listening),
    mut stop: watch::Receiver<Stop>,
) -> Result<(), String> {
    // Before anything is accepted: what a previous run left open is its, not ours.
    crate::session::index::end_left_open(&services).await;
    let forwarders = crate::forward::prepare(&services.config, &services.metrics.forwarders)?;
    let server = Server::bind(services.clone())
        .await
        .map_err(|e| e.to_string())?;
    let admin = match services.config.admin.listen {
        Some(listen) => {
            Some(AdminServer::bind(services.clone(), listen).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    let listening = Listening {
        ssh: server.local_addr().map_err(|e| e.to_string())?,
        admin: match &admin {
            Some(admin) => Some((
                admin.local_addr().map_err(|e| e.to_string())?,
                admin.fingerprint.clone(),
            )),
            None => None,
        },
    };
    if let Some((address, fingerprint)) = &listening.admin {
        let _ = services
            .admin_listening
            .set((*address, fingerprint.clone()));
        eprintln!("portcullis: admin API on https://{address} (certificate {fingerprint})");
    }
    eprintln!(
        "portcullis: listening on {} (host key {})",
        listening.ssh,
        services
            .host_key()
            .public_key()
            .fingerprint(HashAlg::Sha256)
    );
    ready(&listening);
    let accepting = tokio::spawn(server.run());
    let janitor = tokio::spawn(crate::access::jit::expire_periodically(services.clone()));
    let heartbeat = tokio::spawn(crate::cluster::keep_alive(services.clone()));
    let shipper = tokio::spawn(crate::audit_ship::ship(services.clone()));
    let cli_events = tokio::spawn(crate::cli_events::run(services.clone()));
    let rotations = tokio::spawn(crate::rotation::schedule::run(services.clone()));
    // Forwarders outlive the sessions, so the events of their ends are delivered too.
    let forwarding_done = CancellationToken::new();
    let forwarding = tokio::spawn(crate::forward::run(
        services.clone(),
        forwarders,
        forwarding_done.clone(),
    ));
    let api = admin.map(|admin| {
        tokio::spawn(async move {
            if let Err(error) = admin.run().await {
                tracing::error!(%error, "the admin API stopped");
            }
        })
    });

    // A sender gone counts as "drain": nobody is left to say otherwise.
    let _ = stop.wait_for(|stop| *stop >= Stop::Drain).await;
    let grace = services.config.server.shutdown_grace;
    tracing::info!(grace = %humantime::format_duration(grace), "shutting down");
    // Told to stop at once or not, accepting ends and sessions are told to end now.
    services.shutdown.cancel();
    let drained = tokio::select! {
        drained = services.drain(grace) => drained,
        _ = stop.wait_for(|stop| *stop >= Stop::Now) => false,
    };
    let _ = accepting.await;
    let _ = janitor.await;
    let _ = heartbeat.await;
    let _ = cli_events.await;
    let _ = rotations.await;
    let _ = shipper.await;
    if let Some(api) = api {
        let _ = api.await;
    }
    forwarding_done.cancel();
    let _ = forwarding.await;
    if drained {
        tracing::info!("all sessions finished; bye");
    } else {
        tracing::warn!("exiting with sessions still open");
    }
    Ok(())
}
