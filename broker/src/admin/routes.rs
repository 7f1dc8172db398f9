//! The API's handlers. Each checks the caller's scope first; mutations are audited (in
//! [`crate::ops`]) with the token's name.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use portcullis_config::Scope;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AdminState;
use super::auth::Caller;
use super::error::ApiError;
use crate::audit_query::AuditFilter;
use crate::catalog;
use crate::live::SessionShared;
use crate::ops;
use crate::services::RECORDING_KEY_LABEL;
use crate::watch::Follower;

type ApiResult<T> = Result<T, ApiError>;

/// A time as the API shows it.
pub(super) fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// An optional `since=` time from a query.
fn since(text: Option<&str>) -> ApiResult<Option<SystemTime>> {
    text.map(|t| parse_time("since", t)).transpose()
}

/// A live session by id or unique prefix.
fn live_session(state: &AdminState, id: &str) -> ApiResult<Arc<SessionShared>> {
    state
        .services
        .registry
        .find(id)
        .ok_or_else(|| ApiError::NotFound(format!("no live session {id}")))
}

/// Events of the audit log that pass `filter`, read off the runtime's threads; with
/// several nodes, every node's, from the shared store.
async fn search_audit(state: &AdminState, filter: AuditFilter) -> ApiResult<Vec<Value>> {
    if state.services.state.node().is_some() {
        return crate::audit_query::query_shared(state.services.state.as_ref(), &filter)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()));
    }
    let path = state.services.audit.path().to_owned();
    tokio::task::spawn_blocking(move || crate::audit_query::query(&path, &filter))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// How many audit events a search returns: 1000 unless asked, never more than 10 000.
fn audit_limit(asked: Option<usize>) -> usize {
    asked.unwrap_or(1000).min(10_000)
}

fn parse_time(field: &str, text: &str) -> ApiResult<SystemTime> {
    humantime::parse_rfc3339_weak(text).map_err(|_| {
        ApiError::BadRequest(format!(
            "{field} must be an RFC 3339 time like 2026-11-22T06:00:00Z"
        ))
    })
}

/// A live session as the API shows it, on `node` (this one).
pub fn session_json(session: &SessionShared, node: &str) -> Value {
    let identity = session.identity.get();
    let last_activity = session.started_at
        + Duration::from_millis(
            session
                .last_input_ms
                .load(Ordering::Relaxed)
                .max(session.last_output_ms.load(Ordering::Relaxed)),
        );
    let recordings: Vec<String> = session
        .recordings
        .lock()
        .map(|r| r.iter().map(|(h, _)| h.id().to_owned()).collect())
        .unwrap_or_default();
    json!({
        "id": session.id,
        "user": identity.map(|i| i.user.clone()),
        "target": identity.and_then(|i| i.target.clone()),
        "login": session.upstream_login(),
        "method": identity.map(|i| i.method.clone()),
        "client": session.client.to_string(),
        "started_at": rfc3339(session.started_at),
        "duration_s": session.elapsed().as_secs(),
        "last_activity": rfc3339(last_activity),
        "bytes_from_client": session.bytes_from_client.load(Ordering::Relaxed),
        "bytes_to_client": session.bytes_to_client.load(Ordering::Relaxed),
        "channels": session.open_channels.load(Ordering::Relaxed),
        "recordings": recordings,
        "node": node,
    })
}

/// `GET /healthz`
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /metrics`
pub async fn metrics(caller: Caller, State(state): State<Arc<AdminState>>) -> ApiResult<Response> {
    caller.require(Scope::Read)?;
    let text = state
        .services
        .metrics
        .render(&state.services.registry, state.services.audit.line_count());
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

/// `GET /api/v1/sessions`
pub async fn list_sessions(
    caller: Caller,
    State(state): State<Arc<AdminState>>,
) -> ApiResult<Json<Value>> {
    caller.require(Scope::Read)?;
    let services = &state.services;
    let here = crate::state_backend::node_name(&services.config);
    let local = services.registry.list();
    let mut sessions: Vec<Value> = local.iter().map(|s| session_json(s, here)).collect();
    // With several nodes: each other node's own list (the fullest facts), or, for a node
    // that does not answer, what the shared index knows of its sessions. (A node asked by
    // another answers with its own sessions only.)
    if services.state.node().is_some() && caller.via().is_none() {
        let mut answered = vec![here.to_owned()];
        for peer in super::peer::peers(services).await? {
            match super::peer::get_json(services, &peer, &caller, "/api/v1/sessions").await {
                Ok(listed) => {
                    sessions.extend(listed["sessions"].as_array().into_iter().flatten().cloned());
                    answered.push(peer.node.clone());
                }
                Err(error) => {
                    tracing::warn!(node = %peer.node, %error, "cannot list another node's sessions; showing the index's");
                }
            }
        }
        let open = services
            .state
            .open_sessions()
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let now = services.clock.now();
        for record in open {
            let listed = record
                .node
                .as_ref()
                .is_some_and(|node| answered.contains(node));
            if listed || local.iter().any(|s| s.id == record.id) {
                continue;
            }
            sessions.push(remote_session_json(&record, now));
        }
    }
    Ok(Json(json!({ "sessions": sessions })))
}

/// A live session on another node, as the shared index knows it (bytes as of that node's
/// latest heartbeat).
fn remote_session_json(
    record: &portcullis_state::SessionRecord,
    now: std::time::SystemTime,
) -> Value {
    let (from, to) = record.progress.unwrap_or_default();
    json!({
        "id": record.id,
        "node": record.node,
        "user": record.user,
        "target": record.target,
        "client": record.client,
        "started_at": rfc3339(record.started_at),
        "duration_s": now.duration_since(record.started_at).unwrap_or_default().as_secs(),
        "bytes_from_client": from,
        "bytes_to_client": to,
    })
}

/// `GET /api/v1/sessions/{id}`
pub async fn show_session(
    caller: Caller,
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Scope::Read)?;
    let here = crate::state_backend::node_name(&state.services.config);
    let error = match live_session(&state, &id) {
        Ok(session) => return Ok(Json(session_json(&session, here))),
        Err(error) => error,
    };
    // Live on another node: that node knows it best (login, method, bytes, channels).
    if let Some((peer, full_id)) = remote_owner(&state, &caller, &id).await? {
        let path = format!("/api/v1/sessions/{full_id}");
        match super::peer::get_json(&state.services, &peer, &caller, &path).await {
            Ok(mut json) => {
                json["node"] = json!(peer.node);
                return Ok(Json(json));
            }
            Err(error) => {
                tracing::warn!(node = %peer.node, %error, "cannot ask another node about its session");
            }
        }
    }
    // Not live here: the index knows sessions that ended (and, with several nodes, those
    // running elsewhere), so a page watching a session that just ended learns how.
    let record = state
        .services
        .state
        .session(&id)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .ok_or(error)?;
    Ok(Json(json!({
        "id": record.id,
        "node": record.node,
        "user": record.user,
        "target": record.target,
        "client": record.client,
        "started_at": rfc3339(record.started_at),
        "ended": record.ended.map(|end| json!({
            "at": rfc3339(end.at),
            "reason": end.reason,
            "bytes_from_client": end.bytes_from_client,
            "bytes_to_client": end.bytes_to_client,
        })),
    })))
}

/// Body of a kill, a denial or a revocation.
#[derive(Debug, Deserialize)]
pub struct ReasonBody {
    pub(super) reason: String,
}

/// `POST /api/v1/sessions/{id}/kill`
pub async fn kill_session(
    caller: Caller,
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
    body: Result<Json<ReasonBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    caller.require(Scope::Operate)?;
    let Json(request) = body.map_err(bad_json)?;
    let killed = ops::kill(&state.services, &id, &caller.name, &request.reason).await?;
    Ok(Json(json!({ "killed": killed })))
}

/// A request body that is not the JSON expected.
pub(super) fn bad_json(rejection: JsonRejection) -> ApiError {
    ApiError::BadRequest(format!("bad request body: {}", rejection.body_text()))
}

/// `GET /api/v1/me`: who the token is, for the console to show only what it may do.
pub async fn me(caller: Caller) -> Json<Value> {
    let scopes: Vec<&str> = caller.scopes().iter().map(|s| s.as_str()).collect();
    Json(json!({ "name": caller.name, "scopes": scopes }))
}

/// `POST /api/v1/sessions/{id}/live-ticket`: a one-time ticket for the live WebSocket.
pub async fn live_ticket(
    caller: Caller,
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Scope::Read)?;
    if let Err(error) = live_session(&state, &id) {
        // Live on another node: the WebSocket will be passed on to it.
        remote_owner(&state, &caller, &id).await?.ok_or(error)?;
    }
    let ticket = state
        .tickets
        .issue_for(&state.services, caller, &id)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .ok_or_else(|| ApiError::Internal("no randomness for a ticket".into()))?;
    Ok(Json(json!({
        "ticket": ticket,
        "expires_in": super::tickets::TICKET_LIFETIME.as_secs(),
    })))
}

/// Query of the live WebSocket: a ticket instead of a bearer token.
#[derive(Debug, Deserialize)]
pub struct LiveQuery {
    ticket: Option<String>,
}

/// `GET /api/v1/sessions/{id}/live`: the session's terminal as asciicast v2 lines, one per
/// text message (the `v2.asciicast` subprotocol when the client offers it, as
/// asciinema-player does).
pub async fn live(
    caller: Result<Caller, ApiError>,
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
    Query(query): Query<LiveQuery>,
    upgrade: WebSocketUpgrade,
) -> ApiResult<Response> {
    let caller = match query.ticket {
        Some(ticket) => state
            .tickets
            .redeem_for(&state.services, &ticket, &id)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .ok_or(ApiError::Unauthenticated)?,
        None => caller?,
    };
    caller.require(Scope::Read)?;
    let session = match live_session(&state, &id) {
        Ok(session) => session,
        Err(error) => {
            let (peer, full_id) = remote_owner(&state, &caller, &id).await?.ok_or(error)?;
            let client = super::peer::client(&state.services, &peer, &caller)?;
            let remote = client
                .websocket(&format!("/api/v1/sessions/{full_id}/live"))
                .await
                .map_err(|e| ApiError::NotFound(format!("node {}: {e}", peer.node)))?;
            return Ok(upgrade
                .protocols(["v2.asciicast"])
                .on_upgrade(move |socket| relay_remote(socket, remote)));
        }
    };
    let follower = Follower::start(&session)
        .await
        .map_err(|e| ApiError::NotFound(e.to_string()))?;
    state
        .services
        .audit
        .record(session.audit("session.watched").with("by", &caller.name));
    Ok(upgrade
        .protocols(["v2.asciicast"])
        .on_upgrade(move |socket| stream(socket, follower)))
}

/// The node running live session `id` (or a unique prefix of it), when it is another one
/// (and this call is not itself one node asking another), with the session's full id.
async fn remote_owner(
    state: &AdminState,
    caller: &Caller,
    id: &str,
) -> ApiResult<Option<(super::peer::Peer, String)>> {
    if state.services.state.node().is_none() || caller.via().is_some() {
        return Ok(None);
    }
    let open = state
        .services
        .state
        .open_sessions()
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let Some(record) = crate::ids::by_id_or_prefix(&open, id, |s| &s.id) else {
        return Ok(None);
    };
    let Some(node) = record.node.as_deref() else {
        return Ok(None);
    };
    Ok(super::peer::peer_named(&state.services, node)
        .await?
        .map(|peer| (peer, record.id.clone())))
}

/// Passes another node's live stream on to the watcher, line by line.
async fn relay_remote(
    mut socket: WebSocket,
    mut remote: tokio_tungstenite::WebSocketStream<
        tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    >,
) {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message as Remote;
    loop {
        tokio::select! {
            line = remote.next() => match line {
                Some(Ok(Remote::Text(text))) => {
                    if socket.send(Message::Text(text.as_str().into())).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Remote::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = remote.close(None).await;
    let _ = socket.send(Message::Close(None)).await;
}

async fn stream(mut socket: WebSocket, mut follower: Follower) {
    loop {
        tokio::select! {
            line = follower.next_line() => match line {
                Some(line) => {
                    if socket.send(Message::Text(line.to_string().into())).await.is_err() {
                        return;
                    }
                }
                None => break,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}

/// Query of `GET /api/v1/recordings`.
#[derive(Debug, Deserialize)]
pub struct RecordingQuery {
    user: Option<String>,
    target: Option<String>,
    since: Option<String>,
}

/// `GET /api/v1/recordings`
pub async fn list_recordings(
    caller: Caller,
    State(state): State<Arc<AdminState>>,
    Query(query): Query<RecordingQuery>,
    axum::extract::RawQuery(raw_query): axum::extract::RawQuery,
) -> ApiResult<Json<Value>> {
    caller.require(Scope::Read)?;
    let filter = catalog::Filter {
        user: query.user,
        target: query.target,
        since: since(query.since.as_deref())?,
    };
    let entries = catalog::list(&state.services.recordings.dir, &filter)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let here = crate::state_backend::node_name(&state.services.config);
    let mut recordings: Vec<Value> = entries
        .iter()
        .map(|entry| {
            let mut json = entry.to_json();
            json["node"] = json!(here);
            json
        })
        .collect();
    let mut unreachable = Vec::new();
    // With several nodes, each keeps the recordings it wrote: ask the others (unless this
    // call is itself one node asking another).
    if state.services.state.node().is_some() && caller.via().is_none() {
        let path = match raw_query {
            Some(query) => format!("/api/v1/recordings?{query}"),
            None => "/api/v1/recordings".to_owned(),
        };
        for peer in super::peer::peers(&state.services).await? {
            match super::peer::get_json(&state.services, &peer, &caller, &path).await {
                Ok(listed) => {
                    recordings.extend(
                        listed["recordings"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .cloned(),
                    );
                }
                Err(error) => {
                    tracing::warn!(node = %peer.node, %error, "cannot list another node's recordings");
                    unreachable.push(peer.node.clone());
                }
            }
        }
        recordings.sort_by(|a, b| {
            a["started_at"]
                .as_str()
                .cmp(&b["started_at"].as_str())
                .then(a["id"].as_str().cmp(&b["id"].as_str()))
        });
    }
    Ok(Json(
        json!({ "recordings": recordings, "unreachable_nodes": unreachable }),
    ))
}

/// The file of recording `id`, whichever its format.
/// `GET /api/v1/recordings/{id}`: the recording file (.cast, or .rec for a channel without
/// a terminal).
pub async fn get_recording(
    caller: Caller,
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    caller.require(Scope::Read)?;
    let path = state.recording_path(&id)?;
    let body = tokio::fs::read(&path)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let kind = if portcullis_recorder::verify::is_framed(&path) {
        "application/octet-stream"
    } else {
        "application/x-asciicast"
    };
    Ok(([(header::CONTENT_TYPE, kind)], body).into_response())
}

/// `GET /api/v1/recordings/{id}/info`: what the list shows of it (its format first of all:
/// a terminal's plays, the others' streams download).
pub async fn recording_info(
    caller: Caller,
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Scope::Read)?;
    let path = state.recording_path(&id)?;
    Ok(Json(catalog::Entry::of(path).to_json()))
}

/// `GET /api/v1/recordings/{id}/verify`
pub async fn verify_recording(
    caller: Caller,
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Scope::Read)?;
    let path = state.recording_path(&id)?;
    let key = state.services.vault.derived_key(RECORDING_KEY_LABEL);
    let store = state.services.state.clone();
    let audit_log = state.services.audit.path().to_owned();
    let verdict = tokio::task::spawn_blocking(move || {
        crate::evidence::verify_recording(&path, &key, store.as_ref(), &audit_log)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    if let portcullis_recorder::Verdict::Tampered { .. } = verdict {
        state.services.audit.record(
            crate::alerts::tampered(
                "recording",
                format!("recording {id} does not verify: {verdict}"),
            )
            .with("recording", &id)
            .with("by", &caller.name),
        );
    }
    Ok(Json(json!({
        "id": id,
        "status": super::streams::status(&verdict),
        "detail": verdict.to_string(),
    })))
}

/// Body of a lock.
#[derive(Debug, Deserialize)]
pub struct LockRequest {
    user: String,
    reason: String,
    /// When it lifts, RFC 3339.
    until: Option<String>,
    /// Or for how long (`2h`), counted on the bastion's clock: a client whose clock is off
    /// still locks for what it asked.
    #[serde(rename = "for")]
    lasting: Option<String>,
}

fn lock_json(lock: &portcullis_policy::Lock) -> Value {
    json!({
        "user": lock.user,
        "reason": lock.reason,
        "by": lock.by,
        "since": rfc3339(lock.since),
        "until": lock.until.map(rfc3339),
    })
}

/// `POST /api/v1/locks`
pub async fn lock_user(
    caller: Caller,
    State(state): State<Arc<AdminState>>,
    body: Result<Json<LockRequest>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    caller.require(Scope::Operate)?;
    let Json(request) = body.map_err(bad_json)?;
    let now = state.services.clock.now();
    let until = match (request.until.as_deref(), request.lasting.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest("give until or for, not both".into()));
        }
        (Some(until), None) => Some(parse_time("until", until)?),
        (None, Some(lasting)) => {
            let lasting = humantime::parse_duration(lasting).map_err(|error| {
                ApiError::BadRequest(format!("for: {error} (a duration such as 30m or 2h)"))
            })?;
            Some(now + lasting)
        }
        (None, None) => None,
    };
    if until.is_some_and(|u| u <= now) {
        return Err(ApiError::BadRequest("until is in the past".into()));
    }
    let ended = crate::access::locks::lock(
        &state.services,
        &request.user,
        &caller.name,
        &request.reason,
        until,
    )
    .await?;
    Ok(Json(
        json!({ "locked": request.user, "until": until.map(rfc3339), "sessions_ended": ended }),
    ))
}

/// `GET /api/v1/locks`
pub async fn list_locks(
    caller: Caller,
    State(state): State<Arc<AdminState>>,
) -> ApiResult<Json<Value>> {
    caller.require(Scope::Read)?;
    let locks: Vec<Value> = crate::access::locks::list(&state.services, state.services.clock.now())
        .await?
        .iter()
        .map(lock_json)
        .collect();
    Ok(Json(json!({ "locks": locks })))
}

/// `DELETE /api/v1/locks/{user}`
pub async fn unlock_user(
    caller: Caller,
    State(state): State<Arc<AdminState>>,
    Path(user): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Scope::Operate)?;
    crate::access::locks::unlock(&state.services, &user, &caller.name).await?;
    Ok(Json(json!({ "unlocked": user })))
}

/// Query of `GET /api/v1/audit`.
#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    since: Option<String>,
    event: Option<String>,
    user: Option<String>,
    session: Option<String>,
    limit: Option<usize>,
}

/// Query of a file-transfer search.
#[derive(Debug, Deserialize)]
pub struct TransferQuery {
    q: Option<String>,
    user: Option<String>,
    target: Option<String>,
    session: Option<String>,
    since: Option<String>,
    limit: Option<usize>,
}

/// Query of a command search.
#[derive(Debug, Deserialize)]
pub struct CommandQuery {
    q: Option<String>,
    user: Option<String>,
    target: Option<String>,
    since: Option<String>,
    limit: Option<usize>,
}

/// The `q` parameter of a search: a regular expression (none: everything).
fn query_pattern(q: Option<&str>) -> ApiResult<regex::Regex> {
    regex::Regex::new(q.unwrap_or(""))
        .map_err(|e| ApiError::BadRequest(format!("q is not a valid regular expression: {e}")))
}

/// `GET /api/v1/commands?q=REGEX&user=&target=&since=&limit=`: command lines from the audit
/// log (run, blocked, confirmed, held), oldest first.
pub async fn commands(
    caller: Caller,
    State(state): State<Arc<AdminState>>,
    Query(query): Query<CommandQuery>,
) -> ApiResult<Json<Value>> {
    caller.require(Scope::Read)?;
    let pattern = query_pattern(query.q.as_deref())?;
    let filter = AuditFilter {
        since: since(query.since.as_deref())?,
        event: Some("command".to_owned()),
        user: query.user,
        target: query.target,
        command: Some(pattern),
        limit: audit_limit(query.limit),
        ..AuditFilter::default()
    };
    let events = search_audit(&state, filter).await?;
    Ok(Json(json!({ "commands": events })))
}

/// `GET /api/v1/transfers?q=REGEX&user=&target=&session=&since=&limit=`: file-transfer events
/// (`sftp.*`, `scp.*`) naming a path the pattern finds, oldest first.
pub async fn transfers(
    caller: Caller,
    State(state): State<Arc<AdminState>>,
    Query(query): Query<TransferQuery>,
) -> ApiResult<Json<Value>> {
    caller.require(Scope::Read)?;
    let pattern = query_pattern(query.q.as_deref())?;
    let filter = AuditFilter {
        since: since(query.since.as_deref())?,
        user: query.user,
        target: query.target,
        session: query.session,
        files: Some(pattern),
        limit: audit_limit(query.limit),
        ..AuditFilter::default()
    };
    let events = search_audit(&state, filter).await?;
    Ok(Json(json!({ "transfers": events })))
}

/// `GET /api/v1/audit`
pub async fn audit(
    caller: Caller,
    State(state): State<Arc<AdminState>>,
    Query(query): Query<AuditQuery>,
) -> ApiResult<Json<Value>> {
    caller.require(Scope::Read)?;
    let filter = AuditFilter {
        since: since(query.since.as_deref())?,
        event: query.event,
        user: query.user,
        session: query.session,
        limit: audit_limit(query.limit),
        ..AuditFilter::default()
    };
    let events = search_audit(&state, filter).await?;
    Ok(Json(json!({ "events": events })))
}
