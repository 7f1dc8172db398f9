//! Where a session is, as its owner holds it: one value that carries what the session has
//! at that point, so nothing can be had in a phase that does not have it (a channel before
//! login, an upstream before a decision, a new channel while closing).
//!
//! ```text
//! Authenticating ──login──▶ Authorized(route) ──upstream connected──▶ Relaying
//!        │                        │  (refused, menu, activation,          │
//!        │                        │   target connecting)                  │
//!        └────────────────────────┴──────────── ended ───────────────────┴─▶ Closing(reason)
//! ```

use std::sync::Arc;

use russh::server::Handle;

use super::route::Route;
use crate::authorized::Authorized;
use crate::live::EndReason;
use crate::upstream::Upstream;

/// The session's state.
#[derive(Debug)]
pub enum Phase {
    /// Connected; the client has not logged in yet: no channel opens.
    Authenticating,
    /// Logged in, and authorization has decided where the connection goes (a refusal every
    /// channel prints, the bastion's menu, an activation to ask for, or a target whose
    /// upstream is being connected).
    Authorized {
        /// Speaks to the client outside a callback (channels, disconnect).
        handle: Handle,
        route: Route,
    },
    /// Connected upstream: channels are relayed.
    Relaying {
        handle: Handle,
        /// What policy allowed (the guard re-checks it on every change); boxed, it holds
        /// the resolved target.
        authorized: Box<Authorized>,
        upstream: Arc<Upstream>,
    },
    /// Ending: no channel opens; what is left is to finish.
    Closing(Closing),
}

/// A session that is ending, as [`super::finish`] needs it.
#[derive(Debug, Clone)]
pub struct Closing {
    /// Why (the first reason given wins, see [`crate::live::SessionControl::end`]).
    pub reason: EndReason,
    /// The upstream connection, if one was made: closed politely before it is cut.
    pub upstream: Option<Arc<Upstream>>,
}

impl Phase {
    /// The upstream connection the session holds, whichever way it was made: relayed, just
    /// connected for a target, or made by an activation on one of the channels.
    pub fn upstream(&self) -> Option<Arc<Upstream>> {
        match self {
            Phase::Relaying { upstream, .. } => Some(upstream.clone()),
            Phase::Authorized {
                route: Route::Target(target),
                ..
            } => target.connected(),
            Phase::Authorized {
                route: Route::Activation(pending),
                ..
            } => pending
                .activated
                .get()
                .map(|(_, upstream)| upstream.clone()),
            Phase::Closing(closing) => closing.upstream.clone(),
            Phase::Authenticating | Phase::Authorized { .. } => None,
        }
    }

    /// The session ends: what is left of it is why, and the upstream to close.
    pub fn close(&mut self, reason: EndReason) -> Closing {
        let closing = Closing {
            reason,
            upstream: self.upstream(),
        };
        *self = Phase::Closing(closing.clone());
        closing
    }
}
