//! Where an authenticated connection goes: a target (policy allowed it; the upstream
//! connection starts at once, in parallel with the client opening its channel — or, for a
//! target logged in to with a per-login certificate, once the first channel says whether it
//! is a terminal, which the certificate states), an activation (eligible, no grant yet), the
//! bastion's menu, or a refusal that every channel will print.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use portcullis_policy::{Denied, Eligibility};
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

use super::SessionShared;
use crate::alerts::{self, Alert};
use crate::authorized::Authorized;
use crate::services::Services;
use crate::session::login::{Destination, Login};
use crate::upstream::{self, Upstream, UpstreamError};

/// A connection whose target needs an activation.
#[derive(Debug)]
pub struct PendingActivation {
    /// What the role asks.
    pub eligibility: Eligibility,
    /// Once granted: the authorization and upstream that later channels use.
    pub activated: OnceLock<(Authorized, Arc<Upstream>)>,
    /// A dialog is running on one of the connection's channels.
    busy: AtomicBool,
}

impl PendingActivation {
    /// Waiting for an activation of `eligibility`.
    pub fn new(eligibility: Eligibility) -> Self {
        Self {
            eligibility,
            activated: OnceLock::new(),
            busy: AtomicBool::new(false),
        }
    }

    /// Claims the dialog for one channel; false if another channel has it.
    pub fn claim(&self) -> bool {
        !self.busy.swap(true, Ordering::AcqRel)
    }

    /// The dialog is over (it failed or was left): another channel may start one.
    pub fn release(&self) {
        self.busy.store(false, Ordering::Release);
    }
}

/// The connection's route after authentication.
#[derive(Debug)]
pub enum Route {
    /// Every channel prints this message and exits 1.
    Refused {
        /// Shown after `portcullis: `.
        message: String,
    },
    /// The bastion's own command interface.
    Menu {
        /// The user.
        user: String,
    },
    /// A target, authorized (boxed: it holds the resolved target).
    Target(Box<TargetRoute>),
    /// A target the user is eligible for, without an active grant: a channel with a
    /// terminal asks for the activation, others are told the command that requests it.
    Activation(Arc<PendingActivation>),
}

/// A target the user is authorized to reach, and its upstream connection.
#[derive(Debug)]
pub struct TargetRoute {
    /// The policy decision and its target (kept for the session's lifetime).
    pub authorized: Authorized,
    upstream: UpstreamSlot,
}

enum UpstreamSlot {
    /// A certificate target: the login waits for the first channel's start (see
    /// [`TargetRoute::connect_for`]).
    Deferred {
        services: Arc<Services>,
        session: Arc<SessionShared>,
    },
    Connecting(AbortOnDropHandle<Result<Arc<Upstream>, String>>),
    Ready(Arc<Upstream>),
    Failed(String),
}

impl std::fmt::Debug for UpstreamSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UpstreamSlot::Deferred { .. } => "Deferred",
            UpstreamSlot::Connecting(_) => "Connecting",
            UpstreamSlot::Ready(_) => "Ready",
            UpstreamSlot::Failed(_) => "Failed",
        })
    }
}

impl TargetRoute {
    /// Whether the upstream login waits for a channel to start (a certificate target: its
    /// certificate allows a terminal only if the session is one).
    pub fn waits_for_start(&self) -> bool {
        matches!(self.upstream, UpstreamSlot::Deferred { .. })
    }

    /// Starts the deferred login, for a terminal session or not; nothing if it started.
    pub fn connect_for(&mut self, terminal: bool) {
        if let UpstreamSlot::Deferred { services, session } = &self.upstream {
            self.upstream = UpstreamSlot::Connecting(start_connecting(
                services.clone(),
                session.clone(),
                self.authorized.clone(),
                terminal,
            ));
        }
    }

    /// The upstream connection, if it is made already.
    pub fn connected(&self) -> Option<Arc<Upstream>> {
        match &self.upstream {
            UpstreamSlot::Ready(upstream) => Some(upstream.clone()),
            UpstreamSlot::Deferred { .. }
            | UpstreamSlot::Connecting(_)
            | UpstreamSlot::Failed(_) => None,
        }
    }

    /// Why the upstream could not be reached (the message for the user), if it could not.
    pub fn failure(&self) -> Option<&str> {
        match &self.upstream {
            UpstreamSlot::Failed(message) => Some(message),
            UpstreamSlot::Deferred { .. }
            | UpstreamSlot::Connecting(_)
            | UpstreamSlot::Ready(_) => None,
        }
    }

    /// The upstream connection, waiting for it if it is still being made. The error is the
    /// message for the user.
    pub async fn upstream(&mut self) -> Result<Arc<Upstream>, String> {
        if let UpstreamSlot::Connecting(task) = &mut self.upstream {
            let result = match task.await {
                Ok(result) => result,
                Err(e) => Err(format!("internal error while connecting: {e}")),
            };
            self.upstream = match result {
                Ok(upstream) => UpstreamSlot::Ready(upstream),
                Err(message) => UpstreamSlot::Failed(message),
            };
        }
        match &self.upstream {
            UpstreamSlot::Ready(upstream) => Ok(upstream.clone()),
            UpstreamSlot::Failed(message) => Err(message.clone()),
            UpstreamSlot::Connecting(_) => Err("internal error: upstream still connecting".into()),
            UpstreamSlot::Deferred { .. } => {
                Err("internal error: the upstream login has not started".into())
            }
        }
    }
}

/// The state store failed: nothing can be decided, so nothing is allowed.
fn unavailable(session: &SessionShared, error: portcullis_state::StateError) -> Route {
    tracing::error!(parent: &session.span, %error, "cannot read the state store; refusing");
    Route::Refused {
        message: "the bastion cannot check your access right now (its state store failed); try again shortly".into(),
    }
}

/// Decides the route for `login` and audits the decision.
pub async fn decide(
    services: &Arc<Services>,
    session: &Arc<SessionShared>,
    login: &Login,
) -> Route {
    let now = services.clock.now();
    let may_log_in = match super::authorize::login(services, &login.user, now).await {
        Ok(verdict) => verdict,
        Err(error) => return unavailable(session, error),
    };
    if let Err(denied) = may_log_in {
        services.audit.record(
            session
                .audit("access.denied")
                .with("reason", denied.to_string()),
        );
        return Route::Refused {
            message: denied.to_string(),
        };
    }
    let target = match &login.destination {
        Destination::Menu => {
            return Route::Menu {
                user: login.user.clone(),
            };
        }
        Destination::Malformed(message) => {
            services.audit.record(
                session
                    .audit("access.denied")
                    .with("reason", "malformed login"),
            );
            return Route::Refused {
                message: message.clone(),
            };
        }
        Destination::Target(target) => target,
    };
    let verdict = match super::authorize::target(services, &login.user, target, now).await {
        Ok(verdict) => verdict,
        Err(error) => return unavailable(session, error),
    };
    let authorization = match verdict {
        Ok(authorization) => authorization,
        Err(Denied::NeedsActivation(eligibility)) => {
            services.audit.record(
                session
                    .audit("access.needs_activation")
                    .with("role", &eligibility.role),
            );
            tracing::info!(parent: &session.span, target, role = %eligibility.role, "access needs an activation");
            return Route::Activation(Arc::new(PendingActivation::new(*eligibility)));
        }
        Err(denied) => {
            services.audit.record(
                session
                    .audit("access.denied")
                    .with("reason", denied.to_string()),
            );
            tracing::info!(parent: &session.span, target, reason = %denied, "access denied");
            return Route::Refused {
                message: format!("no access to {target}: {denied}"),
            };
        }
    };
    match authorize(services, session, authorization) {
        Ok(route) => Route::Target(Box::new(route)),
        Err(message) => Route::Refused { message },
    }
}

/// Starts a session on an authorization: audits it, arms the idle and grant watches, and
/// starts connecting upstream. The error is the user's message.
pub fn authorize(
    services: &Arc<Services>,
    session: &Arc<SessionShared>,
    authorized: Authorized,
) -> Result<TargetRoute, String> {
    let authorization = authorized.decision();
    let entry = authorized.target();
    services.audit.record(
        session
            .audit("access.granted")
            .with("role", authorization.role())
            .with("login", &entry.login)
            .with("grant", authorization.grant()),
    );
    // The session's record of what it holds: set once (a connection reaches one target).
    let _ = session.authorized.set(authorized.clone());
    if let Some(idle) = authorization.idle_timeout() {
        session.touch_input();
        session.tasks.spawn(
            super::deadlines::watch_idle(session.clone(), idle).instrument(session.span.clone()),
        );
    }
    if let (Some(grant), Some(expires_at)) = (authorization.grant(), authorization.expires_at()) {
        session.tasks.spawn(
            super::deadlines::watch_grant(
                session.clone(),
                grant,
                expires_at,
                services.config.access.warnings(),
            )
            .instrument(session.span.clone()),
        );
    }

    let upstream =
        match entry.auth {
            crate::directory::UpstreamAuth::Certificate => UpstreamSlot::Deferred {
                services: services.clone(),
                session: session.clone(),
            },
            crate::directory::UpstreamAuth::Vaulted(_) => UpstreamSlot::Connecting(
                start_connecting(services.clone(), session.clone(), authorized.clone(), false),
            ),
        };
    Ok(TargetRoute {
        authorized,
        upstream,
    })
}

/// Connects and logs in to the authorized target in the background.
fn start_connecting(
    services: Arc<Services>,
    session: Arc<SessionShared>,
    authorized: Authorized,
    terminal: bool,
) -> AbortOnDropHandle<Result<Arc<Upstream>, String>> {
    AbortOnDropHandle::new(tokio::spawn(async move {
        let entry = authorized.target();
        let decision = authorized.decision();
        let login = upstream::LoginFor {
            user: decision.user().to_owned(),
            session: session.id.clone(),
            grant: decision.grant(),
            terminal,
        };
        let config = upstream::client_config(entry, services.config.server.keepalive_interval);
        let result = upstream::connect(
            &authorized,
            &services.vault,
            config,
            services.config.server.upstream_connect_timeout,
            session.sever.clone(),
            end_when_lost(&session, &entry.name),
            &login,
        )
        .await;
        report(&services, &session, &entry.name, result)
    }))
}

/// Ends the session, saying why, when its target's connection is lost under it.
fn end_when_lost(session: &Arc<SessionShared>, target: &str) -> upstream::OnLost {
    // Weak: the connection's task must not keep a finished session alive.
    let session = Arc::downgrade(session);
    let target = target.to_owned();
    Box::new(move |why| {
        if let Some(session) = session.upgrade() {
            tracing::warn!(parent: &session.span, target = %target, %why, "the target's connection was lost");
            session
                .control
                .end(crate::live::EndReason::UpstreamLost { target, why });
        }
    })
}

/// Audits the outcome of connecting and turns an error into the user's message.
fn report(
    services: &Services,
    session: &SessionShared,
    target: &str,
    result: Result<Upstream, UpstreamError>,
) -> Result<Arc<Upstream>, String> {
    match result {
        Ok(upstream) => {
            let upstream = Arc::new(upstream);
            services.audit.record(
                session
                    .audit("upstream.connected")
                    .with("address", upstream.address()),
            );
            Ok(upstream)
        }
        Err(error) => {
            crate::metrics::Metrics::count(&services.metrics.upstream_failures_total);
            let mut event = session
                .audit(if matches!(error, UpstreamError::HostKeyMismatch { .. }) {
                    "upstream.host_key_mismatch"
                } else {
                    "upstream.failed"
                })
                .with("error", error.code())
                .with("message", error.to_string());
            if let UpstreamError::HostKeyMismatch {
                expected,
                presented,
                ..
            } = &error
            {
                event = event
                    .with("expected", expected)
                    .with("presented", presented);
                services.audit.record(event.clone());
                event = Alert::HostKeyMismatch
                    .on(
                        session.audit(alerts::EVENT),
                        format!(
                            "{target} showed a host key other than the pinned one (someone in the middle, or a rebuilt server): {presented} instead of {expected}; the session was refused"
                        ),
                    )
                    .with("expected", expected)
                    .with("presented", presented);
            }
            services.audit.record(event);
            tracing::warn!(parent: &session.span, target, %error, "upstream unavailable");
            Err(format!("cannot reach {target}: {error}"))
        }
    }
}
