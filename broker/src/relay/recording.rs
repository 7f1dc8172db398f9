//! The recording of one channel: created when its shell or command starts, before anything
//! runs, so nothing happens unrecorded. A channel with a terminal is recorded as asciicast
//! (it plays back); one without (exec, sftp, scp, rsync, git) as exact bytes per stream.

use std::collections::BTreeMap;
use std::time::UNIX_EPOCH;

use portcullis_config::OnRecordingFailure;
use portcullis_recorder::framed::FramedHeader;
use portcullis_recorder::{Header, RecordingHandle, RecordingOptions, SessionFacts, TimeSource};

use super::{PtyRequest, Start};
use crate::alerts::{self, Alert};
use crate::live::SessionShared;
use crate::services::Services;
use crate::text::Shown;

/// Creates the channel's recording. `Ok(None)`: it could not be created but policy lets the
/// session continue unrecorded. `Err`: it could not, and the channel must not start.
pub(super) async fn start_recording(
    services: &Services,
    session: &SessionShared,
    start: &Start,
    pty: Option<&PtyRequest>,
) -> Result<Option<RecordingHandle>, String> {
    let id = session.next_recording_id();
    let user = session.user().unwrap_or_default().to_owned();
    let target = session.target().unwrap_or_default().to_owned();
    let login = session.upstream_login().unwrap_or_default().to_owned();
    let command = match start {
        Start::Exec(command) => Some(command.clone()),
        _ => None,
    };
    let title = match &command {
        Some(command) => format!("{user} → {login}@{target}: {command}"),
        None => format!("{user} → {login}@{target}"),
    };
    let timestamp = services
        .clock
        .now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let facts = SessionFacts {
        recording: id.clone(),
        session: session.id.clone(),
        user,
        target,
        login,
        kind: start.kind().to_owned(),
        command,
        client: session.client.to_string(),
    };
    let settings = &services.recordings;
    let options = RecordingOptions {
        time: {
            let clock = services.clock.clone();
            TimeSource::new(move || clock.instant())
        },
        ..RecordingOptions::default()
    };
    let started = match pty {
        // A terminal: asciicast, which plays back.
        Some(pty) => {
            let header = Header {
                version: 2,
                width: pty.cols.max(1),
                height: pty.rows.max(1),
                timestamp,
                title: Some(title),
                env: BTreeMap::from([("TERM".to_owned(), pty.term.clone())]),
                portcullis: Some(facts),
            };
            portcullis_recorder::start(&settings.dir, &id, &header, &settings.key, options)
        }
        // No terminal: the exact bytes of each stream (see portcullis_recorder::framed).
        None => portcullis_recorder::start_framed(
            &settings.dir,
            &id,
            &FramedHeader::new(timestamp, facts),
            &settings.key,
            options,
        ),
    };
    match started {
        Ok(recording) => {
            // From now on, this recording's files missing or unsealed is a finding.
            let opened = crate::anchors::Anchor {
                count: 0,
                tag: String::new(),
                sealed: false,
            };
            if let Err(error) = services
                .state
                .set_anchor(&crate::anchors::recording(&id), opened)
                .await
            {
                tracing::error!(parent: &session.span, %error, "cannot anchor a recording");
            }
            Ok(Some(recording))
        }
        Err(error) => {
            let continuing = settings.on_failure == OnRecordingFailure::Continue;
            services.audit.record(
                session
                    .audit("recording.failed")
                    .with("recording", &id)
                    .with("error", error.to_string())
                    .with("continuing_unrecorded", continuing),
            );
            raise_failed(services, session, &id, &error.to_string(), continuing);
            tracing::error!(parent: &session.span, %error, continuing, "cannot start a recording");
            crate::metrics::Metrics::count(&services.metrics.recording_errors_total);
            if continuing {
                Ok(None)
            } else {
                Err(format!(
                    "the session cannot be recorded ({error}); sessions may not run unrecorded"
                ))
            }
        }
    }
}

/// The `alert` event for a recording that failed: the session ends (fail closed) or, where
/// configured, goes on unrecorded — either way someone must know.
pub(super) fn raise_failed(
    services: &Services,
    session: &SessionShared,
    recording: &str,
    error: &str,
    continuing: bool,
) {
    let outcome = if continuing {
        "the session goes on UNRECORDED (on_failure = \"continue\")"
    } else {
        "the session was ended"
    };
    let message = format!(
        "recording {recording} of {} on {} failed ({}); {outcome}",
        Shown(session.user().unwrap_or("-")),
        Shown(session.target().unwrap_or("-")),
        Shown(error)
    );
    services.audit.record(
        Alert::RecordingFailed
            .on(session.audit(alerts::EVENT), message)
            .with("recording", recording)
            .with("continuing_unrecorded", continuing),
    );
}
