//! The API of automation (non-human identities): a token with scope `request` acts as its
//! service user (`[[admin.tokens]] user = …`) and
//! * asks for access: `POST /api/v1/requests {"target", "reason", "duration"}` — approved
//!   like anyone's (or at once where the role says `approvals = 0`);
//! * follows its request: `GET /api/v1/requests/{id}`;
//! * once granted, checks out a login certificate: `POST /api/v1/grants/{id}/certificate
//!   {"public_key"}` (see `access::checkout`).

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use portcullis_config::Scope;
use russh::keys::ssh_key::PublicKey;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AdminState;
use super::access::{grant_json, request_json};
use super::auth::Caller;
use super::error::ApiError;
use super::routes::bad_json;
use crate::access::checkout;
use crate::access::jit::{self as jit_ops, Activated, Answers};

type ApiResult<T> = Result<T, ApiError>;

/// The service user a `request` token acts as.
fn service_of(caller: &Caller) -> ApiResult<&str> {
    caller.require(Scope::Request)?;
    caller.user.as_deref().ok_or_else(|| {
        ApiError::Conflict(
            "this token acts for no service user (give it user = … and scope \"request\")".into(),
        )
    })
}

fn number(text: &str) -> ApiResult<u64> {
    text.parse()
        .map_err(|_| ApiError::BadRequest(format!("{text:?} is not a request or grant number")))
}

/// Body of an access request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestBody {
    target: String,
    #[serde(default)]
    reason: String,
    /// `15m`, `1h`…; the role's default when absent.
    #[serde(default)]
    duration: Option<String>,
}

/// `POST /api/v1/requests`: the token's service asks for access to a target.
pub async fn create_request(
    caller: Caller,
    State(state): State<Arc<AdminState>>,
    body: Result<Json<RequestBody>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let user = service_of(&caller)?.to_owned();
    let Json(body) = body.map_err(bad_json)?;
    let duration = match &body.duration {
        Some(text) => Some(humantime::parse_duration(text).map_err(|_| {
            ApiError::BadRequest(format!("{text:?} is not a duration (say 15m, 1h, 2h30m)"))
        })?),
        None => None,
    };
    let answers = Answers {
        reason: body.reason,
        duration,
        code: None,
    };
    let from = caller
        .source
        .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    let services = &state.services;
    let activated = jit_ops::activate(services, &user, &body.target, &answers, "api", from).await?;
    let now = services.clock.now();
    let answer = match activated {
        Activated::Granted(record) => json!({ "request": null, "grant": grant_json(&record, now) }),
        Activated::Requested(request) => {
            json!({ "request": request_json(&request), "grant": null })
        }
    };
    Ok((StatusCode::CREATED, Json(answer)))
}

/// `GET /api/v1/requests/{id}`: a request, for `read` tokens any, for a service its own.
pub async fn show_request(
    caller: Caller,
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = number(&id)?;
    let request = jit_ops::request(&state.services, id).await?;
    if caller.require(Scope::Read).is_err() {
        let user = service_of(&caller)?;
        if request.user != user {
            return Err(ApiError::NotFound(format!("no request #{id} of {user}")));
        }
    }
    Ok(Json(json!({ "request": request_json(&request) })))
}

/// Body of a check-out.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateBody {
    /// The OpenSSH public key to certify (`ssh-ed25519 AAAA… comment`).
    public_key: String,
}

/// `POST /api/v1/grants/{id}/certificate`: a client certificate for logging in through the
/// bastion as the grant's service, until the grant ends.
pub async fn grant_certificate(
    caller: Caller,
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
    body: Result<Json<CertificateBody>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let user = service_of(&caller)?.to_owned();
    let id = number(&id)?;
    let Json(body) = body.map_err(bad_json)?;
    let public_key = PublicKey::from_openssh(body.public_key.trim()).map_err(|e| {
        ApiError::BadRequest(format!(
            "public_key is not an OpenSSH public key ({e}); send the .pub file's line"
        ))
    })?;
    let services = &state.services;
    let record = jit_ops::grant(services, id).await?;
    if record.grant.user != user {
        return Err(ApiError::NotFound(format!("no grant #{id} of {user}")));
    }
    let now = services.clock.now();
    if !record.grant.is_active(now) {
        return Err(ApiError::Conflict(format!(
            "grant #{id} is not active (it was revoked or has ended); request access again"
        )));
    }
    let ca = services
        .vault
        .user_ca()
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let certificate = checkout::issue(&ca, &public_key, &record, now)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let text = certificate
        .to_openssh()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let login = format!("{user}+{}", record.grant.target);
    services.audit.record(
        crate::audit::AuditEvent::new("checkout.certificate")
            .with("user", &user)
            .with("grant", id)
            .with("target", &record.grant.target)
            .with("token", &caller.name)
            .with(
                "key",
                public_key
                    .fingerprint(russh::keys::ssh_key::HashAlg::Sha256)
                    .to_string(),
            )
            .with("serial", certificate.serial())
            .with(
                "valid_until",
                super::routes::rfc3339(record.grant.expires_at),
            ),
    );
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "certificate": text,
            "grant": grant_json(&record, now),
            "login": login,
            "connect": connect_line(services, &login),
        })),
    ))
}

/// How to reach the bastion as `login`: `[server] connect_command`, or ssh to where it
/// listens.
fn connect_line(services: &crate::services::Services, login: &str) -> String {
    let listening = services
        .listening
        .get()
        .copied()
        .unwrap_or(services.config.server.listen);
    crate::bastion::menu::Origin {
        host: listening.ip().to_string(),
        port: listening.port(),
        command: services.config.server.connect_command.clone(),
        client: listening.ip(),
    }
    .ssh(login)
}
