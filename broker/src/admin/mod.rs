//! The admin API: HTTPS (rustls, ring), bearer tokens with scopes, JSON.
//!
//! ```text
//! GET    /                               the web console (see [`console`])
//! GET    /healthz                        liveness, no token
//! GET    /api/v1/me                      the token's name and scopes          any
//! GET    /metrics                        Prometheus text                      read
//! GET    /api/v1/sessions                live sessions                        read
//! GET    /api/v1/sessions/{id}           one session                          read
//! POST   /api/v1/sessions/{id}/kill      {"reason"}                           operate
//! GET    /api/v1/sessions/{id}/live      WebSocket: asciicast lines           read
//!        (or ?ticket=T from POST /api/v1/sessions/{id}/live-ticket, for browsers)
//! GET    /api/v1/recordings              ?user=&target=&since=                read
//! GET    /api/v1/recordings/{id}         the .cast (or .rec) file             read
//! GET    /api/v1/recordings/{id}/info    as listed (format: asciicast|bytes)  read
//! GET    /api/v1/recordings/{id}/verify  integrity check                      read
//! GET    /api/v1/recordings/{id}/streams          a .rec's streams: lengths,  read
//!                                                 text previews, verdict
//! GET    /api/v1/recordings/{id}/streams/{name}   stdout|stderr|stdin bytes   read
//!        (refused unless the recording verifies; ?force=true: the part that does)
//! GET    /api/v1/locks                   locked users                         read
//! POST   /api/v1/locks                   {"user","reason","until"?}           operate
//! DELETE /api/v1/locks/{user}                                                 operate
//! GET    /api/v1/audit                   ?since=&event=&user=&session=&limit= read
//!        (event: a name, or a prefix and `*`: `sftp.*`)
//! GET    /api/v1/commands                ?q=REGEX&user=&target=&since=&limit= read
//! GET    /api/v1/transfers               file operations (sftp.*, scp.*)      read
//!        ?q=REGEX (on their paths)&user=&target=&session=&since=&limit=
//! GET    /api/v1/requests                open requests (?all=true)            read
//! POST   /api/v1/requests/{id}/approve   {"comment"?}                         operate
//! POST   /api/v1/requests/{id}/deny      {"reason"}                           operate
//! GET    /api/v1/grants                  active grants (?all=true)            read
//! POST   /api/v1/grants/{id}/revoke      {"reason"}: ends its sessions        operate
//! GET    /api/v1/review                  eligibilities, break-glass to ack    read
//! POST   /api/v1/review/{id}/ack         acknowledge a break-glass grant      operate
//! ```
//!
//! * [`auth`]: tokens and scopes. [`error`]: statuses with plain messages.
//! * [`routes`]: the handlers; [`access`]: those for just-in-time access; [`streams`]:
//!   the exact bytes of recordings without a terminal.
//! * [`tls`]: the certificate (self-signed unless configured).
//! * [`console`]: the embedded web console; [`tickets`]: its WebSocket tickets.
//! * [`peer`]: calls between nodes (watching and recordings on another node), signed as
//!   [`signature`] says.

pub mod access;
pub mod auth;
pub mod checkout;
pub mod console;
pub mod error;
pub mod peer;
pub mod routes;
pub mod signature;
pub mod streams;
pub mod tickets;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{delete, get, post};
use axum_server::tls_rustls::RustlsConfig;

use crate::services::Services;

/// What handlers share.
pub struct AdminState {
    /// The broker.
    pub services: Arc<Services>,
    /// Tokens already verified.
    pub tokens: auth::TokenCache,
    /// WebSocket tickets for the console.
    pub tickets: tickets::Tickets,
    /// Nonces of node-to-node calls already answered (no replays).
    pub peer_nonces: signature::SeenNonces,
}

impl AdminState {
    /// The file of recording `id`, or 404.
    fn recording_path(&self, id: &str) -> Result<std::path::PathBuf, error::ApiError> {
        crate::catalog::path_of(&self.services.recordings.dir, id)
            .ok_or_else(|| error::ApiError::NotFound(format!("no recording {id}")))
    }
}

/// The API's routes.
pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/", get(console::index))
        .route("/console/{*path}", get(console::file))
        .route("/favicon.ico", get(console::favicon))
        .route("/healthz", get(routes::healthz))
        .route("/api/v1/me", get(routes::me))
        .route("/metrics", get(routes::metrics))
        .route("/api/v1/sessions", get(routes::list_sessions))
        .route("/api/v1/sessions/{id}", get(routes::show_session))
        .route("/api/v1/sessions/{id}/kill", post(routes::kill_session))
        .route("/api/v1/sessions/{id}/live", get(routes::live))
        .route(
            "/api/v1/sessions/{id}/live-ticket",
            post(routes::live_ticket),
        )
        .route("/api/v1/recordings", get(routes::list_recordings))
        .route("/api/v1/recordings/{id}", get(routes::get_recording))
        .route(
            "/api/v1/recordings/{id}/verify",
            get(routes::verify_recording),
        )
        .route("/api/v1/recordings/{id}/info", get(routes::recording_info))
        .route("/api/v1/recordings/{id}/streams", get(streams::streams))
        .route(
            "/api/v1/recordings/{id}/streams/{stream}",
            get(streams::download),
        )
        .route(
            "/api/v1/locks",
            get(routes::list_locks).post(routes::lock_user),
        )
        .route("/api/v1/locks/{user}", delete(routes::unlock_user))
        .route("/api/v1/audit", get(routes::audit))
        .route("/api/v1/commands", get(routes::commands))
        .route("/api/v1/transfers", get(routes::transfers))
        .route(
            "/api/v1/requests",
            get(access::list_requests).post(checkout::create_request),
        )
        .route("/api/v1/requests/{id}", get(checkout::show_request))
        .route(
            "/api/v1/requests/{id}/approve",
            post(access::approve_request),
        )
        .route("/api/v1/requests/{id}/deny", post(access::deny_request))
        .route("/api/v1/grants", get(access::list_grants))
        .route("/api/v1/grants/{id}/revoke", post(access::revoke_grant))
        .route(
            "/api/v1/grants/{id}/certificate",
            post(checkout::grant_certificate),
        )
        .route("/api/v1/review", get(access::review))
        .route("/api/v1/review/{id}/ack", post(access::acknowledge))
        .fallback(|| async { error::ApiError::NotFound("no such endpoint".into()) })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            peer::recordings_elsewhere,
        ))
        .layer(axum::middleware::from_fn(request_timeout))
        .with_state(state)
}

/// Requests get 30 seconds (a WebSocket upgrade answers at once and then lives on).
async fn request_timeout(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::time::timeout(Duration::from_secs(30), next.run(request)).await {
        Ok(response) => response,
        Err(_) => (
            axum::http::StatusCode::REQUEST_TIMEOUT,
            "request timed out\n",
        )
            .into_response(),
    }
}

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// TLS setup failed.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The address could not be bound.
    #[error("cannot listen on {address} for the admin API: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// A bound, not yet serving, admin API.
pub struct AdminServer {
    listener: std::net::TcpListener,
    tls: RustlsConfig,
    state: Arc<AdminState>,
    /// The certificate's fingerprint, for clients to pin.
    pub fingerprint: String,
}

impl AdminServer {
    /// Sets up TLS and binds `address`.
    pub fn bind(services: Arc<Services>, address: SocketAddr) -> Result<Self, AdminError> {
        let admin = &services.config.admin;
        let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        if !address.ip().is_unspecified() {
            names.push(address.ip().to_string());
        }
        let tls = tls::load_or_create(
            admin.tls_cert.as_deref(),
            admin.tls_key.as_deref(),
            &services.config.server.data_dir,
            names,
        )?;
        let listener = std::net::TcpListener::bind(address)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|source| AdminError::Bind { address, source })?;
        Ok(Self {
            listener,
            tls: RustlsConfig::from_config(tls.config),
            fingerprint: tls.fingerprint,
            state: Arc::new(AdminState {
                services,
                tokens: auth::TokenCache::default(),
                tickets: tickets::Tickets::default(),
                peer_nonces: signature::SeenNonces::default(),
            }),
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until the broker shuts down, then lets requests in flight finish briefly.
    pub async fn run(self) -> std::io::Result<()> {
        let handle = axum_server::Handle::new();
        let shutdown = self.state.services.shutdown.clone();
        let stopper = handle.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            stopper.graceful_shutdown(Some(Duration::from_secs(5)));
        });
        let app = router(self.state).into_make_service_with_connect_info::<SocketAddr>();
        axum_server::from_tcp_rustls(self.listener, self.tls)?
            .handle(handle)
            .serve(app)
            .await
    }
}
