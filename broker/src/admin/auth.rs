//! Who is calling the API: a bearer token, checked against the configured argon2 hashes.
//!
//! Argon2 is slow on purpose, so a token that checked out is remembered by its SHA-256 for
//! the life of the process; a wrong one costs a full check every time and counts against
//! the caller's address (its own key in the SSH logins' throttle). A remembered token is
//! never throttled: failures from elsewhere, or even from the same address, cannot lock
//! security out of the API.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use portcullis_config::Scope;

use super::AdminState;
use super::error::ApiError;
use crate::credentials::throttle::ThrottleKey;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's name (audit records carry it).
    pub name: String,
    scopes: Vec<Scope>,
    /// The node that made the call for this operator, for a node-to-node call.
    via: Option<String>,
    /// For a `request` token: the service user it acts as.
    pub user: Option<String>,
    /// The address the call came from (activation conditions are checked against it).
    pub source: Option<std::net::IpAddr>,
}

impl Caller {
    /// A caller with these scopes.
    pub fn new(name: &str, scopes: Vec<Scope>) -> Self {
        Self {
            name: name.to_owned(),
            scopes,
            via: None,
            user: None,
            source: None,
        }
    }

    /// The node that made this call for its operator, if another node did.
    pub fn via(&self) -> Option<&str> {
        self.via.as_deref()
    }

    /// The operator another node makes a call for (see [`super::peer`]); named with that
    /// node in what this node audits.
    pub fn for_peer(name: &str, scopes: Vec<Scope>, node: &str) -> Self {
        Self {
            name: format!("{name} (via node {node})"),
            scopes,
            via: Some(node.to_owned()),
            user: None,
            source: None,
        }
    }

    /// The token's scopes.
    pub fn scopes(&self) -> &[Scope] {
        &self.scopes
    }

    /// Refuses (403) unless the token has `scope` (or `admin`).
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(scope))
        }
    }
}

/// Tokens already verified, by the SHA-256 of their value.
#[derive(Debug, Default)]
pub struct TokenCache {
    known: Mutex<HashMap<[u8; 32], Caller>>,
}

impl TokenCache {
    fn get(&self, digest: &[u8; 32]) -> Option<Caller> {
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(digest)
            .cloned()
    }

    fn insert(&self, digest: [u8; 32], caller: Caller) {
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(digest, caller);
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

impl FromRequestParts<Arc<AdminState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AdminState>,
    ) -> Result<Self, Self::Rejection> {
        let source = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip())
            .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
        if let Some(signed) = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix(super::signature::SCHEME))
        {
            // Another node, for one of its operators.
            let key = state
                .services
                .peer_key
                .as_ref()
                .ok_or(ApiError::Unauthenticated)?;
            let path = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or_default();
            return super::signature::verify(
                key,
                signed.trim(),
                parts.method.as_str(),
                path,
                state.services.clock.now(),
                &state.peer_nonces,
            )
            .map(|verified| Caller::for_peer(&verified.name, verified.scopes, &verified.node))
            .map_err(|why| {
                tracing::warn!(%source, why, "refused a node-to-node call");
                ApiError::Unauthenticated
            });
        }
        let Some(token) = bearer(parts).filter(|t| !t.is_empty()) else {
            return Err(ApiError::Unauthenticated);
        };
        let mut digest = [0u8; 32];
        digest.copy_from_slice(
            ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref(),
        );
        // A token already proven good passes whoever else failed from this address: the
        // throttle is there to slow guessing, not to shut security out.
        if let Some(caller) = state.tokens.get(&digest) {
            return Ok(Caller {
                source: Some(source),
                ..caller
            });
        }
        let throttle = &state.services.throttle;
        let reservation = throttle
            .reserve(
                vec![ThrottleKey::ApiSource(source)],
                state.services.clock.now(),
            )
            .await
            // A store that cannot count the attempt refuses it (503 when it is busy or down).
            .map_err(ApiError::from)?
            .map_err(|_| ApiError::Throttled)?;
        type Candidate = (String, String, Vec<Scope>, Option<String>);
        let candidates: Vec<Candidate> = state
            .services
            .config
            .admin
            .tokens
            .iter()
            .filter_map(|t| {
                Some((
                    t.name.clone(),
                    t.hash.as_ref()?.expose().clone(),
                    t.scopes.clone(),
                    t.user.clone(),
                ))
            })
            .collect();
        let token = token.to_owned();
        let found = tokio::task::spawn_blocking(move || {
            candidates
                .into_iter()
                .find(|(_, hash, _, _)| crate::credentials::password::verify(hash, &token))
        })
        .await
        .ok()
        .flatten();
        match found {
            Some((name, _, scopes, user)) => {
                reservation.succeeded().await;
                let caller = Caller {
                    user,
                    ..Caller::new(&name, scopes)
                };
                state.tokens.insert(digest, caller.clone());
                Ok(Caller {
                    source: Some(source),
                    ..caller
                })
            }
            None => {
                reservation.failed();
                state.services.audit.record(
                    crate::audit::AuditEvent::new("api.auth_failure")
                        .with("source", source.to_string()),
                );
                Err(ApiError::Unauthenticated)
            }
        }
    }
}
