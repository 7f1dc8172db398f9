//! API errors: a status and a plain sentence. Internal details go to the log, never to the
//! caller.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use portcullis_config::Scope;

use portcullis_state::StateError;

use crate::access::AccessError;
use crate::ops::OpsError;

/// What went wrong with a request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No token, or a wrong one.
    #[error("missing or invalid token")]
    Unauthenticated,
    /// The token lacks the scope.
    #[error("this token lacks the {0:?} scope")]
    Forbidden(Scope),
    /// Too many wrong tokens from this address.
    #[error("too many failed attempts; try again later")]
    Throttled,
    /// No such thing.
    #[error("{0}")]
    NotFound(String),
    /// The request itself is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// It conflicts with the current state (already decided, not allowed for this caller).
    #[error("{0}")]
    Conflict(String),
    /// The state database cannot take the change now (locked by another process, or
    /// unreachable); nothing was changed, and trying again later may work. The detail is
    /// logged.
    #[error("{message}")]
    Unavailable {
        /// For the caller.
        message: &'static str,
        /// For the log.
        detail: String,
    },
    /// Something broke on our side; the detail is logged.
    #[error("internal error")]
    Internal(String),
}

impl From<OpsError> for ApiError {
    fn from(error: OpsError) -> Self {
        match error {
            OpsError::NoSuchSession(_) => ApiError::NotFound(error.to_string()),
            OpsError::NoReason => ApiError::BadRequest(error.to_string()),
            OpsError::State(error) => error.into(),
        }
    }
}

impl From<AccessError> for ApiError {
    fn from(error: AccessError) -> Self {
        match error {
            AccessError::NoSuchRequest(_)
            | AccessError::NoSuchGrant(_)
            | AccessError::NoSuchUser(_)
            | AccessError::NotLocked(_) => ApiError::NotFound(error.to_string()),
            AccessError::State(e) => e.into(),
            AccessError::NoReason | AccessError::Invalid(_) => {
                ApiError::BadRequest(error.to_string())
            }
            _ => ApiError::Conflict(error.to_string()),
        }
    }
}

impl From<StateError> for ApiError {
    fn from(error: StateError) -> Self {
        let message = if error.is_busy() {
            "the state database is locked by another process; nothing was changed, try again later"
        } else if error.is_unavailable() {
            "the state database cannot be reached; nothing was changed, try again later"
        } else {
            return ApiError::Internal(error.to_string());
        };
        ApiError::Unavailable {
            message,
            detail: error.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Throttled => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable { detail, .. } => {
                tracing::error!(%detail, "admin API request failed: the state store cannot take it now");
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "admin API request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let message = match &self {
            ApiError::Forbidden(scope) => {
                format!("this token lacks the {} scope", scope.as_str())
            }
            other => other.to_string(),
        };
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}
