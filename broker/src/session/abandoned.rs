//! The recordings of a session a crashed run left open: found by the session's id (every
//! recording id starts with it), sealed with an end marker saying the bastion crashed, their
//! unvouched-for tails set aside (see [`portcullis_recorder::recover`]), their anchors
//! closed and each outcome audited. A recording that no longer verifies is left as it is
//! and raised as an alert: sealing it would vouch for the change.

use std::path::{Path, PathBuf};

use portcullis_recorder::recover::{self, Recovered};

use crate::audit::AuditEvent;
use crate::services::Services;

/// What the end marker of a recording sealed after a crash says.
pub const CRASH_END: &str =
    "bastion crashed: sealed at its next start; the recording ends where it was last flushed";

/// Seals every recording of `sessions` that a crashed run left unsealed (one look through
/// the recordings directory for all of them).
pub async fn seal_recordings(services: &Services, sessions: &[String]) {
    if sessions.is_empty() {
        return;
    }
    let dir = services.recordings.dir.clone();
    let prefixes: Vec<String> = sessions.iter().map(|id| format!("{id}-")).collect();
    let found = tokio::task::spawn_blocking(move || unsealed_recordings(&dir, &prefixes)).await;
    let paths = match found {
        Ok(Ok(paths)) => paths,
        Ok(Err(error)) => {
            tracing::error!(%error, "cannot look for the recordings of sessions left open");
            return;
        }
        Err(error) => {
            tracing::error!(%error, "looking for the recordings of sessions left open failed");
            return;
        }
    };
    for (session, path) in paths {
        seal_one(services, &session, path).await;
    }
}

async fn seal_one(services: &Services, session: &str, path: PathBuf) {
    let recording = recording_id(&path);
    let key = services.recordings.key.clone();
    let sealing = path.clone();
    let outcome =
        tokio::task::spawn_blocking(move || recover::seal_abandoned(&sealing, &key, CRASH_END))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|result| result);
    match outcome {
        Ok(Recovered::AlreadySealed) => {}
        Ok(Recovered::Sealed {
            lines,
            set_aside,
            seal,
        }) => {
            let anchor = crate::anchors::Anchor {
                count: lines as u64,
                tag: seal.clone(),
                sealed: true,
            };
            if let Err(error) = services
                .state
                .set_anchor(&crate::anchors::recording(&recording), anchor)
                .await
            {
                tracing::error!(%recording, %error, "cannot anchor a recording sealed after a crash");
            }
            tracing::warn!(%recording, %session, lines, set_aside, "a recording left open by a crash was sealed");
            services.audit.record(
                AuditEvent::new("recording.sealed_after_crash")
                    .with("recording", &recording)
                    .with("session", session)
                    .with("lines", lines)
                    .with("unverified_lines_set_aside", set_aside)
                    .with(
                        "set_aside_in",
                        (set_aside > 0)
                            .then(|| recover::unverified_path(&path).display().to_string()),
                    )
                    .with("recording_seal", seal),
            );
        }
        Ok(Recovered::Tampered(verdict)) => {
            tracing::error!(%recording, %session, %verdict, "ALERT: a recording left open by a crash does not verify; it is left as found");
            services.audit.record(
                AuditEvent::new("recording.tampered")
                    .with("recording", &recording)
                    .with("session", session)
                    .with("verdict", verdict.to_string())
                    .with("found", "at the start after a crash, before sealing"),
            );
            services.audit.record(
                crate::alerts::tampered(
                    "recording",
                    format!(
                        "recording {recording}, left open by a crash, does not verify: {verdict}"
                    ),
                )
                .with("recording", &recording)
                .with("session", session),
            );
        }
        Err(error) => {
            tracing::error!(%recording, %session, %error, "cannot seal a recording left open by a crash");
        }
    }
}

/// The recordings in `dir` whose ids start with one of `prefixes` (`<session>-`) and that
/// have no seal, each with its session.
fn unsealed_recordings(dir: &Path, prefixes: &[String]) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let is_recording = path
            .extension()
            .is_some_and(|e| e == "cast" || e == portcullis_recorder::framed::EXTENSION);
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let Some(prefix) = name
            .filter(|_| is_recording)
            .and_then(|name| prefixes.iter().find(|p| name.starts_with(p.as_str())))
        else {
            continue;
        };
        if recover::is_unsealed(&path)? {
            found.push((prefix.trim_end_matches('-').to_owned(), path));
        }
    }
    found.sort();
    Ok(found)
}

fn recording_id(path: &Path) -> String {
    path.file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default()
}
