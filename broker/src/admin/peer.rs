//! Node-to-node calls. A node asked for something another node holds — a live session to
//! watch, a recording on that node's disk — asks that node's admin API itself and passes
//! the answer on.
//!
//! Authentication: a secret every node shares (`[cluster] secret_file`) signs each call
//! with HMAC-SHA256 over the method, the path with its query, the calling node, the time, a
//! random nonce and the operator the call is made for (with their scopes). The answering node
//! checks the signature, that the time is within a minute of its own and that it has not seen
//! the nonce (a recorded call cannot be replayed), then acts for that operator.
//! Chosen over mutual TLS with a cluster CA because every node already serves its admin API
//! over TLS with a certificate the others learn (and pin) from the shared store's heartbeat
//! rows: what is left to prove is only "this call comes from a node of ours", which one
//! shared secret does without a CA to run and rotate. There is no unauthenticated internal
//! port: peers call the same API, and a call without a valid signature is refused.
//!
//! A call made for a peer is never passed on again (no loops between nodes).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use portcullis_config::Scope;
use ring::hmac;

use super::AdminState;
use super::auth::Caller;
use super::error::ApiError;
use crate::cli::api::ApiClient;
use crate::services::Services;

/// The Authorization scheme of node-to-node calls.
pub const SCHEME: &str = "Portcullis-Peer";

/// How far a call's time may be from the answering node's clock.
const SKEW: Duration = Duration::from_secs(60);

/// Reads the shared secret: at least 32 characters (surrounding whitespace ignored).
pub fn load_key(path: &Path) -> Result<hmac::Key, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let secret = text.trim();
    if secret.len() < 32 {
        return Err(format!(
            "holds {} characters; a cluster secret needs at least 32 (e.g. `openssl rand -hex 32`)",
            secret.len()
        ));
    }
    Ok(hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()))
}

fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Read => "read",
        Scope::Operate => "operate",
        Scope::Admin => "admin",
    }
}

fn scope_of(name: &str) -> Option<Scope> {
    match name {
        "read" => Some(Scope::Read),
        "operate" => Some(Scope::Operate),
        "admin" => Some(Scope::Admin),
        _ => None,
    }
}

/// Scopes as text: `read+operate`.
pub fn scopes_text(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| scope_name(*s))
        .collect::<Vec<_>>()
        .join("+")
}

/// Scopes from [`scopes_text`]'s form.
pub fn scopes_of(text: &str) -> Result<Vec<Scope>, String> {
    text.split('+')
        .filter(|s| !s.is_empty())
        .map(|s| scope_of(s).ok_or_else(|| format!("unknown scope {s:?}")))
        .collect()
}

/// What is signed.
fn message(
    method: &str,
    path: &str,
    node: &str,
    time: u64,
    nonce: &str,
    caller: &str,
    scopes: &str,
) -> String {
    format!("portcullis-peer\n{method}\n{path}\n{node}\n{time}\n{nonce}\n{caller}\n{scopes}")
}

/// The most nonces remembered: a flood of valid calls beyond it is refused rather than
/// remembered without bound (or forgotten too early, which would allow replays).
const MAX_NONCES: usize = 100_000;

/// Nonces of calls accepted within the skew window (twice it: before and after).
#[derive(Debug, Default)]
pub struct SeenNonces {
    seen: std::sync::Mutex<std::collections::HashMap<String, SystemTime>>,
}

impl SeenNonces {
    /// Whether `nonce` is new at `now` (and remembers it).
    fn first_use(&self, nonce: &str, now: SystemTime) -> Result<(), String> {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.contains_key(nonce) {
            return Err("a call already made (replayed)".into());
        }
        if seen.len() >= MAX_NONCES {
            seen.retain(|_, at| now.duration_since(*at).unwrap_or_default() <= SKEW * 2);
            if seen.len() >= MAX_NONCES {
                return Err("too many node-to-node calls at once".into());
            }
        }
        seen.insert(nonce.to_owned(), now);
        Ok(())
    }
}

/// Signs calls made by this node for one operator.
#[derive(Clone)]
pub struct Signer {
    key: hmac::Key,
    node: String,
    caller: String,
    scopes: String,
}

impl Signer {
    /// For `caller`, by `node`.
    pub fn new(key: hmac::Key, node: &str, caller: &Caller) -> Self {
        Self {
            key,
            node: node.to_owned(),
            caller: hex::encode(caller.name.as_bytes()),
            scopes: scopes_text(caller.scopes()),
        }
    }

    /// The Authorization header of `method path` now.
    pub fn header(&self, method: &str, path: &str, now: SystemTime) -> String {
        let time = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let mut nonce = [0u8; 16];
        // Without randomness the call goes out with a nonce the peer refuses as replayed.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce);
        let nonce = hex::encode(nonce);
        let tag = hmac::sign(
            &self.key,
            message(
                method,
                path,
                &self.node,
                time,
                &nonce,
                &self.caller,
                &self.scopes,
            )
            .as_bytes(),
        );
        format!(
            "{SCHEME} node={},time={time},nonce={nonce},caller={},scopes={},mac={}",
            self.node,
            self.caller,
            self.scopes,
            hex::encode(tag.as_ref())
        )
    }
}

/// Checks a node-to-node call's Authorization `value` (after the scheme) for `method path`:
/// the operator it is made for, named with the node that asked.
pub fn verify(
    key: &hmac::Key,
    value: &str,
    method: &str,
    path: &str,
    now: SystemTime,
    seen: &SeenNonces,
) -> Result<Caller, String> {
    let field = |name: &str| {
        value
            .split(',')
            .find_map(|pair| pair.trim().strip_prefix(name)?.strip_prefix('='))
            .ok_or_else(|| format!("no {name}"))
    };
    let node = field("node")?;
    let time: u64 = field("time")?.parse().map_err(|_| "bad time".to_owned())?;
    let nonce = field("nonce")?;
    let caller = field("caller")?;
    let scopes = field("scopes")?;
    let mac = hex::decode(field("mac")?).map_err(|_| "bad mac".to_owned())?;
    hmac::verify(
        key,
        message(method, path, node, time, nonce, caller, scopes).as_bytes(),
        &mac,
    )
    .map_err(|_| "the signature does not check out".to_owned())?;
    let then = UNIX_EPOCH + Duration::from_secs(time);
    let apart = now
        .duration_since(then)
        .or_else(|_| then.duration_since(now))
        .unwrap_or_default();
    if apart > SKEW {
        return Err(format!(
            "signed {}s away from this node's clock",
            apart.as_secs()
        ));
    }
    seen.first_use(nonce, now)?;
    let name = String::from_utf8(hex::decode(caller).map_err(|_| "bad caller".to_owned())?)
        .map_err(|_| "bad caller".to_owned())?;
    let scopes = scopes_of(scopes)?;
    Ok(Caller::for_peer(&name, scopes, node))
}

/// A node of the cluster that can be called: its name, admin address and certificate.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Its name.
    pub node: String,
    /// `host:port`.
    pub address: String,
    /// Its admin certificate's fingerprint.
    pub fingerprint: String,
}

/// The other nodes that are up and have an admin API.
pub async fn peers(services: &Services) -> Result<Vec<Peer>, ApiError> {
    let here = crate::state_backend::node_name(&services.config);
    Ok(services
        .state
        .nodes()
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .into_iter()
        .filter(|n| n.name != here && n.lost_at.is_none())
        .filter_map(|n| {
            let (address, fingerprint) = n.admin.as_deref()?.split_once(' ')?;
            Some(Peer {
                node: n.name.clone(),
                address: address.to_owned(),
                fingerprint: fingerprint.to_owned(),
            })
        })
        .collect())
}

/// The node (not this one) that ran session `id`, if it is up.
pub async fn owner_of(services: &Services, session: &str) -> Result<Option<Peer>, ApiError> {
    let Some(record) = services
        .state
        .session(session)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
    else {
        return Ok(None);
    };
    let Some(node) = record.node else {
        return Ok(None);
    };
    Ok(peers(services).await?.into_iter().find(|p| p.node == node))
}

/// A client that calls `peer` for `caller`.
pub fn client(services: &Services, peer: &Peer, caller: &Caller) -> Result<ApiClient, ApiError> {
    let key = services.peer_key.clone().ok_or_else(|| {
        ApiError::NotFound(format!(
            "this is on node {}, and node-to-node calls need [cluster] secret_file on every node",
            peer.node
        ))
    })?;
    let signer = Signer::new(
        key,
        crate::state_backend::node_name(&services.config),
        caller,
    );
    ApiClient::for_peer(&peer.address, &peer.fingerprint, signer).map_err(ApiError::Internal)
}

/// GETs `path` from `peer` for `caller`: its JSON answer.
pub async fn get_json(
    services: &Services,
    peer: &Peer,
    caller: &Caller,
    path: &str,
) -> Result<serde_json::Value, ApiError> {
    client(services, peer, caller)?
        .json(Method::GET, path, None)
        .await
        .map_err(|e| ApiError::Internal(format!("node {}: {e}", peer.node)))
}

/// GETs `path` from `peer` for `caller` and passes the answer on as it came.
pub async fn forward(
    services: &Services,
    peer: &Peer,
    caller: &Caller,
    path: &str,
) -> Result<Response, ApiError> {
    let client = client(services, peer, caller)?;
    let (status, content_type, body) = client
        .request_raw(Method::GET, path)
        .await
        .map_err(|e| ApiError::Internal(format!("node {} did not answer: {e}", peer.node)))?;
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    if let Some(kind) = content_type.and_then(|k| HeaderValue::from_str(&k).ok()) {
        response.headers_mut().insert(header::CONTENT_TYPE, kind);
    }
    Ok(response)
}

/// Whether a request comes from another node.
pub fn is_peer_call(request: &axum::http::request::Parts) -> bool {
    request
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(SCHEME))
}

/// Recordings live on the disk of the node that wrote them: a `GET
/// /api/v1/recordings/{id}…` this node answers "not found" is asked of the node that ran the
/// recording's session, if that is another node and it is up.
pub async fn recordings_elsewhere(
    State(state): State<Arc<AdminState>>,
    request: Request,
    next: Next,
) -> Response {
    let recording = request
        .uri()
        .path()
        .strip_prefix("/api/v1/recordings/")
        .and_then(|rest| rest.split('/').next())
        .filter(|id| !id.is_empty())
        .map(str::to_owned);
    let (mut parts, body) = request.into_parts();
    let Some(recording) = recording.filter(|_| {
        parts.method == Method::GET
            && state.services.state.node().is_some()
            && !is_peer_call(&parts)
    }) else {
        return next.run(Request::from_parts(parts, body)).await;
    };
    let caller = Caller::from_request_parts(&mut parts, &state).await;
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let response = next.run(Request::from_parts(parts, body)).await;
    if response.status() != StatusCode::NOT_FOUND {
        return response;
    }
    let Ok(caller) = caller else { return response };
    // Recording ids are the session's id, a dash and a number.
    let Some((session, _)) = recording.rsplit_once('-') else {
        return response;
    };
    match owner_of(&state.services, session).await {
        Ok(Some(peer)) => forward(&state.services, &peer, &caller, &path)
            .await
            .unwrap_or_else(IntoResponse::into_response),
        Ok(None) => response,
        Err(error) => error.into_response(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_signed_call_checks_out_once_for_what_was_signed_and_nothing_else() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"0123456789abcdef0123456789abcdef");
        let caller = Caller::new("secops", vec![Scope::Read]);
        let signer = Signer::new(key.clone(), "b", &caller);
        let now = SystemTime::now();
        let header = signer.header("GET", "/api/v1/recordings/x-1", now);
        let value = header.strip_prefix(SCHEME).unwrap().trim();
        let seen = SeenNonces::default();
        let check = |key: &hmac::Key, value: &str, method: &str, path: &str, now| {
            verify(key, value, method, path, now, &seen)
        };
        // Another path, another method, another key, tampered scopes, too old: refused
        // (before the genuine call, so its nonce is still unused).
        assert!(check(&key, value, "GET", "/api/v1/recordings/x-2", now).is_err());
        assert!(check(&key, value, "POST", "/api/v1/recordings/x-1", now).is_err());
        let other = hmac::Key::new(hmac::HMAC_SHA256, b"another-secret-another-secret-xx");
        assert!(check(&other, value, "GET", "/api/v1/recordings/x-1", now).is_err());
        let widened = value.replace("scopes=read", "scopes=read+operate");
        assert!(check(&key, &widened, "GET", "/api/v1/recordings/x-1", now).is_err());
        let later = now + Duration::from_secs(120);
        let error = check(&key, value, "GET", "/api/v1/recordings/x-1", later).unwrap_err();
        assert!(error.contains("away from this node's clock"), "{error}");
        assert!(check(&key, "node=b", "GET", "/", now).is_err());
        let verified = check(&key, value, "GET", "/api/v1/recordings/x-1", now).unwrap();
        assert_eq!(verified.name, "secops (via node b)");
        assert_eq!(verified.scopes(), [Scope::Read]);
        // The same call again is a replay; a new call (a new nonce) is not.
        let error = check(&key, value, "GET", "/api/v1/recordings/x-1", now).unwrap_err();
        assert!(error.contains("replayed"), "{error}");
        let again = signer.header("GET", "/api/v1/recordings/x-1", now);
        let again = again.strip_prefix(SCHEME).unwrap().trim();
        assert!(check(&key, again, "GET", "/api/v1/recordings/x-1", now).is_ok());
    }

    #[test]
    fn a_short_secret_is_refused_with_how_to_make_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "short\n").unwrap();
        let error = load_key(&path).err().unwrap();
        assert!(error.contains("openssl rand -hex 32"), "{error}");
        std::fs::write(&path, format!("{}\n", "x".repeat(64))).unwrap();
        assert!(load_key(&path).is_ok());
    }
}
