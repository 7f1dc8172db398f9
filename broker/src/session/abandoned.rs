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

/// Seals every recording of `session` that a crashed run left unsealed.
pub async fn seal_recordings(services: &Services, session: &str) {
    let dir = services.recordings.dir.clone();
    let prefix = format!("{session}-");
    let found = tokio::task::spawn_blocking(move || unsealed_recordings(&dir, &prefix)).await;
    let paths = match found {
        Ok(Ok(paths)) => paths,
        Ok(Err(error)) => {
            tracing::error!(%session, %error, "cannot look for the recordings of a session left open");
            return;
        }
        Err(error) => {
            tracing::error!(%session, %error, "looking for a session's recordings failed");
            return;
        }
    };
    for path in paths {
        seal_one(services, session, path).await;
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
        }
        Err(error) => {
            tracing::error!(%recording, %session, %error, "cannot seal a recording left open by a crash");
        }
    }
}

/// The recordings in `dir` whose ids start with `prefix` and that have no seal.
fn unsealed_recordings(dir: &Path, prefix: &str) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let is_recording = path
            .extension()
            .is_some_and(|e| e == "cast" || e == portcullis_recorder::framed::EXTENSION);
        if is_recording
            && name.is_some_and(|n| n.starts_with(prefix))
            && recover::is_unsealed(&path)?
        {
            found.push(path);
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
