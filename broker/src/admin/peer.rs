//! Node-to-node calls. A node asked for something another node holds — a live session to
//! watch, a recording on that node's disk — asks that node's admin API itself and passes
//! the answer on.
//!
//! Authentication: a secret every node shares (`[cluster] secret_file`) signs each call
//! ([`super::signature`]); the answering node checks it, then acts for the operator the call
//! is made for.
//! Chosen over mutual TLS with a cluster CA because every node already serves its admin API
//! over TLS with a certificate the others learn (and pin) from the shared store's heartbeat
//! rows: what is left to prove is only "this call comes from a node of ours", which one
//! shared secret does without a CA to run and rotate. There is no unauthenticated internal
//! port: peers call the same API, and a call without a valid signature is refused.
//!
//! A call made for a peer is never passed on again (no loops between nodes).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AdminState;
use super::auth::Caller;
use super::error::ApiError;
use super::signature::{SCHEME, Signer};
use crate::api_client::ApiClient;
use crate::services::Services;

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
    match record.node {
        Some(node) => peer_named(services, &node).await,
        None => Ok(None),
    }
}

/// The other node called `node`, if it is up and has an admin API.
pub async fn peer_named(services: &Services, node: &str) -> Result<Option<Peer>, ApiError> {
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
        &caller.name,
        caller.scopes(),
    );
    ApiClient::for_peer(&peer.address, &peer.fingerprint, signer.boxed())
        .map_err(ApiError::Internal)
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
