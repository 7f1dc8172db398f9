//! The API's just-in-time access handlers: requests (list, approve, deny), grants (list,
//! revoke) and the review of eligibilities and break-glass use. Reading needs `read`;
//! deciding needs `operate`, and the token's name is what the audit log records.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use portcullis_config::{Access, Scope};
use portcullis_policy::{Request, RequestKind, RequestState};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AdminState;
use super::auth::Caller;
use super::error::ApiError;
use super::routes::{ReasonBody, bad_json, rfc3339};
use portcullis_policy::Reviewer;
use portcullis_state::GrantRecord;

use crate::access::jit::{self as jit_ops, Approved};

type ApiResult<T> = Result<T, ApiError>;

fn number(text: &str) -> ApiResult<u64> {
    text.parse()
        .map_err(|_| ApiError::BadRequest(format!("{text:?} is not a request or grant number")))
}

/// A request as the API shows it.
pub fn request_json(request: &Request) -> Value {
    let (state, decided_by, decision_reason, grant) = match &request.state {
        RequestState::Pending => ("pending", None, None, None),
        RequestState::Approved { grant } => ("approved", None, None, *grant),
        RequestState::Denied { by, reason } => {
            ("denied", Some(by.clone()), Some(reason.clone()), None)
        }
        RequestState::Expired => ("expired", None, None, None),
        RequestState::Cancelled => ("cancelled", None, None, None),
    };
    json!({
        "id": request.id,
        "user": request.user,
        "target": request.target,
        "role": request.role,
        "reason": request.reason,
        "duration_s": request.duration.as_secs(),
        "created_at": rfc3339(request.created_at),
        "expires_at": rfc3339(request.expires_at),
        "approvals_needed": request.needed,
        "approved_by": request.approved_by,
        "state": state,
        "decided_by": decided_by,
        "decision_reason": decision_reason,
        "grant": grant,
        "kind": match &request.kind {
            RequestKind::Access => "access",
            RequestKind::Command { .. } => "command",
        },
        "command": match &request.kind {
            RequestKind::Command { line, rule, session } => {
                Some(json!({ "line": line, "rule": rule, "session": session }))
            }
            RequestKind::Access => None,
        },
        "approvers": request.approvers,
    })
}

/// A grant as the API shows it.
pub fn grant_json(record: &GrantRecord, now: SystemTime) -> Value {
    let grant = &record.grant;
    json!({
        "id": grant.id,
        "user": grant.user,
        "target": grant.target,
        "role": grant.role,
        "reason": record.reason,
        "request": record.request,
        "break_glass": record.break_glass,
        "starts_at": rfc3339(grant.starts_at),
        "expires_at": rfc3339(grant.expires_at),
        "active": grant.is_active(now),
        "left_s": if grant.is_active(now) {
            grant.expires_at.duration_since(now).map(|d| d.as_secs()).unwrap_or(0)
        } else {
            0
        },
        "revoked_at": grant.revoked_at.map(rfc3339),
        "revoked_by": record.revoked.as_ref().map(|(by, _)| by.clone()),
        "revoke_reason": record.revoked.as_ref().map(|(_, reason)| reason.clone()),
        "acknowledged_by": record.acknowledged.as_ref().map(|(by, _)| by.clone()),
        "acknowledged_at": record.acknowledged.as_ref().map(|(_, at)| rfc3339(*at)),
    })
}

/// `?all=true` lists past entries too.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    all: bool,
}

/// `GET /api/v1/requests[?all=true]`: open requests, or recent ones in any state.
pub async fn list_requests(
    caller: Caller,
    State(state): State<Arc<AdminState>>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    caller.require(Scope::Read)?;
    let requests = if query.all {
        jit_ops::recent_requests(&state.services).await?
    } else {
        jit_ops::pending(&state.services).await?
    };
    let requests: Vec<Value> = requests.iter().map(request_json).collect();
    Ok(Json(json!({ "requests": requests })))
}

/// Body of an approval.
#[derive(Debug, Default, Deserialize)]
pub struct ApproveBody {
    #[serde(default)]
    comment: Option<String>,
}

/// `POST /api/v1/requests/{id}/approve`
pub async fn approve_request(
    caller: Caller,
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
    body: Result<Json<ApproveBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    caller.require(Scope::Operate)?;
    let id = number(&id)?;
    let Json(body) = body.map_err(bad_json)?;
    let (request, approved) = jit_ops::approve(
        &state.services,
        id,
        Reviewer::Token(&caller.name),
        body.comment.as_deref(),
    )
    .await?;
    let grant = match approved {
        Approved::Granted(record) => Some(grant_json(&record, state.services.clock.now())),
        Approved::Pending { .. } | Approved::Command => None,
    };
    Ok(Json(
        json!({ "request": request_json(&request), "grant": grant }),
    ))
}

/// `POST /api/v1/requests/{id}/deny`
pub async fn deny_request(
    caller: Caller,
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
    body: Result<Json<ReasonBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    caller.require(Scope::Operate)?;
    let id = number(&id)?;
    let Json(body) = body.map_err(bad_json)?;
    let request = jit_ops::deny(
        &state.services,
        id,
        Reviewer::Token(&caller.name),
        &body.reason,
    )
    .await?;
    Ok(Json(json!({ "request": request_json(&request) })))
}

/// `GET /api/v1/grants[?all=true]`: active grants, or recent ones.
pub async fn list_grants(
    caller: Caller,
    State(state): State<Arc<AdminState>>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    caller.require(Scope::Read)?;
    let now = state.services.clock.now();
    let grants = jit_ops::grants(&state.services, !query.all, now).await?;
    let grants: Vec<Value> = grants.iter().map(|g| grant_json(g, now)).collect();
    Ok(Json(json!({ "grants": grants })))
}

/// `POST /api/v1/grants/{id}/revoke`: ends the grant and its live sessions.
pub async fn revoke_grant(
    caller: Caller,
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
    body: Result<Json<ReasonBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    caller.require(Scope::Operate)?;
    let id = number(&id)?;
    let Json(body) = body.map_err(bad_json)?;
    let (record, ended) =
        jit_ops::revoke(&state.services, id, &caller.name, &body.reason, None).await?;
    Ok(Json(json!({
        "grant": grant_json(&record, state.services.clock.now()),
        "sessions_ended": ended,
    })))
}

/// How one member has used one eligible role.
#[derive(Debug, Default)]
struct Use {
    activations: u64,
    last: Option<SystemTime>,
    targets: Vec<String>,
}

/// `GET /api/v1/review`: every eligibility (role member) with its activation count and
/// last use, and break-glass grants nobody has acknowledged.
pub async fn review(
    caller: Caller,
    State(state): State<Arc<AdminState>>,
) -> ApiResult<Json<Value>> {
    caller.require(Scope::Read)?;
    let services = &state.services;
    let mut usage: BTreeMap<(String, String), Use> = BTreeMap::new();
    for used in jit_ops::usage(services).await? {
        let entry = usage
            .entry((used.role.clone(), used.user.clone()))
            .or_default();
        entry.activations += used.activations;
        entry.last = entry.last.max(Some(used.last));
        entry.targets.push(used.target.clone());
    }
    let mut eligibilities = Vec::new();
    for role in services
        .config
        .roles
        .iter()
        .filter(|r| r.access == Access::Eligible)
    {
        for member in &role.members {
            let used = usage
                .remove(&(role.name.clone(), member.clone()))
                .unwrap_or_default();
            eligibilities.push(json!({
                "user": member,
                "role": role.name,
                "targets": role.targets,
                "activations": used.activations,
                "last_activation": used.last.map(rfc3339),
                "targets_used": used.targets,
                "approvals": role.approvals,
                "break_glass": role.break_glass,
            }));
        }
    }
    let now = services.clock.now();
    let unacknowledged: Vec<Value> = jit_ops::unacknowledged_break_glass(services)
        .await?
        .iter()
        .map(|g| grant_json(g, now))
        .collect();
    Ok(Json(json!({
        "eligibilities": eligibilities,
        "break_glass_unacknowledged": unacknowledged,
    })))
}

/// `POST /api/v1/review/{grant}/ack`: security has looked at a break-glass activation.
pub async fn acknowledge(
    caller: Caller,
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Scope::Operate)?;
    let id = number(&id)?;
    let record = jit_ops::acknowledge(&state.services, id, &caller.name).await?;
    Ok(Json(
        json!({ "grant": grant_json(&record, state.services.clock.now()) }),
    ))
}
