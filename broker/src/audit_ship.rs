//! Copies this node's audit log into the store the nodes share, so a search on any node
//! sees every node's events. The file stays the evidence (hash-chained, anchored); the copy
//! is for searching. The shipper follows the file itself — a line is copied after it is
//! written, never instead — and starts again from what the store holds after an outage or
//! a restart, so nothing is skipped and nothing is copied twice.
//!
//! With the SQLite backend there is one node and one file: nothing to copy.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use portcullis_state::AuditLine;

use crate::audit_tail::{offset_after, read_lines};
use crate::services::Services;

/// How often the file is looked at.
const EVERY: Duration = Duration::from_millis(250);

/// Lines copied per store write.
const BATCH: usize = 500;

/// Follows the audit log until shutdown (then copies what is left, if it can).
pub async fn ship(services: Arc<Services>) {
    if services.state.node().is_none() {
        return;
    }
    let path = services.audit.path().to_owned();
    let mut position: Option<Position> = None;
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            () = services.shutdown.cancelled() => true,
        };
        match ship_new_lines(&services, &path, &mut position).await {
            Ok(()) => {
                if failing {
                    tracing::info!("the audit log is copied to the shared store again");
                    failing = false;
                }
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(%error, "cannot copy the audit log to the shared store yet; retrying");
                    failing = true;
                }
            }
        }
        if stopping {
            return;
        }
    }
}

/// Where the copy has got to: lines held by the store, and the byte offset after them.
#[derive(Debug, Clone, Copy)]
struct Position {
    lines: u64,
    offset: u64,
}

async fn ship_new_lines(
    services: &Services,
    path: &Path,
    position: &mut Option<Position>,
) -> Result<(), String> {
    let at = match *position {
        Some(at) => at,
        None => {
            let lines = services
                .state
                .audit_lines_held()
                .await
                .map_err(|e| e.to_string())?;
            let offset = blocking(path, move |path| offset_after(path, lines)).await?;
            *position = Some(Position { lines, offset });
            Position { lines, offset }
        }
    };
    let mut at = at;
    loop {
        let offset = at.offset;
        let (lines, next) = blocking(path, move |path| read_lines(path, offset, BATCH)).await?;
        if lines.is_empty() {
            return Ok(());
        }
        let count = lines.len();
        let shipped: Vec<AuditLine> = lines
            .into_iter()
            .enumerate()
            .map(|(i, body)| audit_line(at.lines + i as u64 + 1, body))
            .collect();
        services
            .state
            .hold_audit_lines(shipped)
            .await
            .map_err(|e| e.to_string())?;
        at = Position {
            lines: at.lines + count as u64,
            offset: next,
        };
        *position = Some(at);
        if count < BATCH {
            return Ok(());
        }
    }
}

/// A line as the store keeps it: the fields searches filter on, and the line.
fn audit_line(seq: u64, body: String) -> AuditLine {
    let value: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let text = |key: &str| value[key].as_str().map(str::to_owned);
    AuditLine {
        seq,
        time: text("time").unwrap_or_default(),
        event: text("event").unwrap_or_default(),
        user: text("user"),
        target: text("target"),
        session: text("session"),
        body,
    }
}

async fn blocking<T: Send + 'static>(
    path: &Path,
    work: impl FnOnce(&Path) -> io::Result<T> + Send + 'static,
) -> Result<T, String> {
    let owned: PathBuf = path.to_owned();
    tokio::task::spawn_blocking(move || work(&owned))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_kept_with_the_fields_searches_filter_on() {
        let line = audit_line(
            3,
            r#"{"time":"t","event":"command","user":"alice","mac":"x"}"#.into(),
        );
        assert_eq!(line.event, "command");
        assert_eq!(line.user.as_deref(), Some("alice"));
        assert_eq!(line.session, None);
    }
}
