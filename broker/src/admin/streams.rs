//! The streams of a recording without a terminal (see [`portcullis_recorder::framed`]):
//! how long each is, with a preview when it is text, and each one's exact bytes — only from
//! a recording that verifies (integrity file, anchor and audit log), unless `force=true`
//! asks for the part that does.

use std::io::{self, Write};
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use portcullis_config::Scope;
use portcullis_recorder::Verdict;
use portcullis_recorder::extract::{ExtractError, extract, survey};
use portcullis_recorder::framed::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::AdminState;
use super::auth::Caller;
use super::error::ApiError;
use crate::services::RECORDING_KEY_LABEL;

/// How much of each stream the summary shows.
const PREVIEW_BYTES: usize = 4096;
/// Bytes per piece of a streamed download.
const PIECE: usize = 64 * 1024;

/// `?force=true`.
#[derive(Debug, Deserialize)]
pub struct ForceQuery {
    #[serde(default)]
    force: bool,
}

/// The recording's verdict, as `recordings verify` gives it.
async fn verdict(state: &AdminState, path: std::path::PathBuf) -> Result<Verdict, ApiError> {
    let key = state.services.vault.derived_key(RECORDING_KEY_LABEL);
    let store = state.services.state.clone();
    let audit_log = state.services.audit.path().to_owned();
    tokio::task::spawn_blocking(move || {
        crate::evidence::verify_recording(&path, &key, store.as_ref(), &audit_log)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| ApiError::Internal(e.to_string()))
}

fn extract_error(error: ExtractError) -> ApiError {
    match error {
        ExtractError::NotFramed(_) | ExtractError::NotIntact(_) => {
            ApiError::Conflict(error.to_string())
        }
        other => ApiError::Internal(other.to_string()),
    }
}

/// `GET /api/v1/recordings/{id}/streams`: the verdict, and each stream's length and preview
/// (of the part that verifies).
pub async fn streams(
    caller: Caller,
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::Read)?;
    let path = state.recording_path(&id)?;
    not_a_terminal(&id, &path)?;
    let verdict = verdict(&state, path.clone()).await?;
    let mut answer = crate::catalog::Entry::of(path.clone()).to_json();
    let key = state.services.vault.derived_key(RECORDING_KEY_LABEL);
    let survey = tokio::task::spawn_blocking(move || survey(&path, &key, PREVIEW_BYTES))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(extract_error)?;
    let streams: Vec<Value> = survey
        .streams
        .iter()
        .map(|s| {
            // Text is what decodes as UTF-8 (a cut character at the preview's end aside).
            let text = match std::str::from_utf8(&s.head) {
                Ok(text) => Some(text.to_owned()),
                Err(e) if e.error_len().is_none() => {
                    Some(String::from_utf8_lossy(&s.head[..e.valid_up_to()]).into_owned())
                }
                Err(_) => None,
            }
            .filter(|t| !t.contains('\0'));
            json!({
                "name": s.stream.name(),
                "bytes": s.bytes,
                "text": text.is_some(),
                "preview": text,
            })
        })
        .collect();
    for (key, value) in [
        ("status", json!(status(&verdict))),
        ("detail", json!(verdict.to_string())),
        ("length_s", json!(survey.length.as_secs_f64())),
        ("streams", json!(streams)),
        (
            "markers",
            json!(
                survey
                    .markers
                    .iter()
                    .map(|(at, text)| json!({ "at_s": at.as_secs_f64(), "text": text }))
                    .collect::<Vec<_>>()
            ),
        ),
        ("more_markers", json!(survey.more_markers)),
    ] {
        answer[key] = value;
    }
    Ok(Json(answer))
}

/// A terminal's recording (asciicast) has no separate streams: it plays.
fn not_a_terminal(id: &str, path: &std::path::Path) -> Result<(), ApiError> {
    if portcullis_recorder::verify::is_framed(path) {
        return Ok(());
    }
    Err(ApiError::Conflict(format!(
        "recording {id} is a terminal's (asciicast): it has no separate streams; play it"
    )))
}

/// `intact`, `unfinalized` or `tampered`.
pub(super) fn status(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::Intact { .. } => "intact",
        Verdict::Unfinalized { .. } => "unfinalized",
        Verdict::Tampered { .. } => "tampered",
    }
}

/// `GET /api/v1/recordings/{id}/streams/{stream}`: the stream's exact bytes, streamed.
pub async fn download(
    caller: Caller,
    State(state): State<Arc<AdminState>>,
    Path((id, name)): Path<(String, String)>,
    Query(query): Query<ForceQuery>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Read)?;
    let stream = Stream::from_name(&name).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no stream {name:?}: a recording has stdout, stderr and stdin"
        ))
    })?;
    let path = state.recording_path(&id)?;
    let verdict = verdict(&state, path.clone()).await?;
    if !verdict.is_intact() && !query.force {
        return Err(ApiError::Conflict(format!(
            "recording {id} does not verify ({verdict}); force=true gives the part that does"
        )));
    }
    not_a_terminal(&id, &path)?;
    let key = state.services.vault.derived_key(RECORDING_KEY_LABEL);
    let (tx, mut rx) = mpsc::channel::<io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut out = Pieces {
            tx: tx.clone(),
            buffer: Vec::with_capacity(PIECE),
        };
        // Bytes may have gone out already: a failure now can only cut the response short.
        if let Err(error) = extract(&path, &key, stream, true, &mut out) {
            let _ = tx.blocking_send(Err(io::Error::other(error.to_string())));
        }
    });
    let body = Body::from_stream(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let filename = format!("{id}.{}", stream.name());
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// Hands what is written to the response body in pieces (the channel is bounded: a slow
/// client slows the reading, memory stays flat).
struct Pieces {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buffer: Vec<u8>,
}

impl Write for Pieces {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= PIECE {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let piece = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(PIECE),
        ));
        self.tx
            .blocking_send(Ok(piece))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}
