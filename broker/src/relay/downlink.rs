//! Upstream → client: forwards output, stderr, exit status and replies; records output;
//! when the channel ends, tells the client why if the bastion ended it, seals the recording
//! and audits the end.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures::FutureExt;
use portcullis_config::OnRecordingFailure;
use portcullis_recorder::{OutputBatch, RecordingHandle};
use russh::{ChannelId, ChannelMsg, ChannelReadHalf, ChannelWriteHalf, server};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::flow::Flow;
use super::gate::screen::Screen;
use super::{Downlink, Insertions, Replies, Start, lock};
use crate::bastion::notice;
use crate::live::{EndReason, Notice, SessionShared, Side};
use crate::services::Services;

/// How long the closing message may wait for the client's window.
const FAREWELL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// How a channel ended, for the client, the recording and the audit log.
#[derive(Debug)]
enum ChannelEnd {
    /// The upstream closed it (the normal end).
    Upstream,
    /// The session is ending for a reason of the bastion's.
    Session(EndReason),
}

pub(super) struct DownlinkTask {
    pub(super) id: ChannelId,
    pub(super) upstream: ChannelReadHalf,
    pub(super) client: ChannelWriteHalf<server::Msg>,
    pub(super) client_handle: server::Handle,
    pub(super) control: mpsc::Receiver<Downlink>,
    pub(super) replies: Replies,
    pub(super) closed: CancellationToken,
    pub(super) flow: Arc<Flow>,
    pub(super) session: Arc<SessionShared>,
    pub(super) services: Arc<Services>,
    /// The bastion's messages for the user (grant warnings).
    pub(super) notices: broadcast::Receiver<Notice>,
}

/// What the upstream said about how its process ended.
#[derive(Debug, Clone)]
enum Exit {
    Status(u32),
    Signal(String),
}

/// What the channel has learned so far, from the handler and the upstream.
#[derive(Default)]
struct ChannelState {
    recording: Option<RecordingHandle>,
    /// Output shown to the client but not yet handed to the recorder: handed over in one
    /// piece when the upstream goes quiet (or it grows large), one writer wake-up per batch
    /// instead of per packet.
    batch: OutputBatch,
    pty: bool,
    started: Option<Start>,
    exit: Option<Exit>,
    control_closed: bool,
    /// The command gate's view of the terminal, fed with the output.
    screen: Option<Arc<Screen>>,
    /// Words from the bastion to show (the gate's), before the output that follows them.
    said: Vec<String>,
    /// The file-transfer audit (sftp, legacy scp).
    watch: Option<Box<dyn super::Watch>>,
    /// The bastion's own answers for the client (sftp refusals), written between the
    /// server's packets.
    insertions: Option<Arc<Insertions>>,
}

impl ChannelState {
    fn apply(&mut self, message: Downlink) {
        match message {
            Downlink::Record { recording } => self.recording = Some(recording),
            Downlink::Pty => self.pty = true,
            Downlink::Started(start) => self.started = Some(start),
            Downlink::Screen(screen) => self.screen = Some(screen),
            Downlink::Say(text) => self.said.push(text),
            Downlink::Watch(watch) => self.watch = Some(watch),
            Downlink::Insertions(insertions) => self.insertions = Some(insertions),
        }
    }

    /// The answers to write now, if any wait: in the output just seen, after its last
    /// whole packet (`seen` bytes long; 0 when nothing was), so never inside a packet.
    /// `Some(at)`: where in those bytes they go.
    fn insertions_due(&self, seen: usize) -> Option<(usize, Vec<Bytes>)> {
        let insertions = self.insertions.as_ref()?;
        let partial = self.watch.as_ref().map_or(0, |watch| watch.partial());
        if partial > seen {
            // The server is inside a packet that began before these bytes.
            return None;
        }
        let answers = insertions.take();
        (!answers.is_empty()).then_some((seen - partial, answers))
    }
}

/// Forwards the upstream's messages to the client until the channel ends, then seals the
/// recording and audits the channel's end.
pub(super) async fn downlink(mut task: DownlinkTask) {
    let mut state = ChannelState::default();
    let end = task.relay(&mut state).await;
    task.finish(state, end).await;
}

impl DownlinkTask {
    /// The relay loop; returns how the channel ended.
    async fn relay(&mut self, state: &mut ChannelState) -> ChannelEnd {
        let mut notices_shown = 0;
        let mut fresh_checked = false;
        loop {
            // Control messages first: they must take effect before the data behind them.
            while !state.control_closed {
                match self.control.try_recv() {
                    Ok(message) => state.apply(message),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => state.control_closed = true,
                }
            }
            if self.session.control.is_ending() {
                return ChannelEnd::Session(self.ending_reason(EndReason::Shutdown));
            }
            // A notice sent just before this channel subscribed is shown too, once, when
            // the channel starts (its terminal is known by then).
            if !fresh_checked && state.started.is_some() {
                fresh_checked = true;
                if let Some(notice) = self.session.fresh_notice()
                    && notice.seq > notices_shown
                {
                    notices_shown = notice.seq;
                    self.show_notice(&notice.text, state).await;
                }
            }
            for text in std::mem::take(&mut state.said) {
                self.show_notice(&text, state).await;
            }
            while let Ok(notice) = self.notices.try_recv() {
                if notice.seq > notices_shown {
                    notices_shown = notice.seq;
                    self.show_notice(&notice.text, state).await;
                }
            }
            if let Some(active) = &state.recording
                && active.has_failed()
            {
                self.recording_failed(active.id(), &active.failed().await);
                if self.services.recordings.on_failure == OnRecordingFailure::Continue {
                    state.recording = None;
                }
                continue;
            }
            // Under load the next message is already there: take it without parking.
            let message = match self.upstream.wait().now_or_never() {
                Some(message) => message,
                None => {
                    if let Some(active) = &state.recording {
                        let _ = active.flush_output(&mut state.batch).await;
                    }
                    tokio::select! {
                        biased;
                        () = self.session.control.ended() => continue,
                        _ = failed(state.recording.as_ref()), if state.recording.is_some() => continue,
                        notice = self.notices.recv() => {
                            if let Ok(notice) = notice
                                && notice.seq > notices_shown
                            {
                                notices_shown = notice.seq;
                                self.show_notice(&notice.text, state).await;
                            }
                            continue;
                        }
                        () = queued(state.insertions.as_ref()) => {
                            if let Some((_, answers)) = state.insertions_due(0)
                                && !self.send_all(answers, state).await
                            {
                                return ChannelEnd::Session(
                                    self.ending_reason(EndReason::ClientClosed),
                                );
                            }
                            continue;
                        }
                        control = self.control.recv(), if !state.control_closed => {
                            match control {
                                Some(message) => state.apply(message),
                                None => state.control_closed = true,
                            }
                            continue;
                        }
                        message = self.upstream.wait() => message,
                    }
                }
            };
            if let Some(end) = self.handle(message, state).await {
                return end;
            }
        }
    }

    /// One message from the upstream; `Some` when it ends the channel.
    async fn handle(
        &mut self,
        message: Option<ChannelMsg>,
        state: &mut ChannelState,
    ) -> Option<ChannelEnd> {
        match message {
            Some(ChannelMsg::Data { data }) => {
                if !self.forward(None, data, state).await {
                    return Some(ChannelEnd::Session(
                        self.ending_reason(EndReason::ClientClosed),
                    ));
                }
            }
            Some(ChannelMsg::ExtendedData { data, ext }) => {
                if !self.forward(Some(ext), data, state).await {
                    return Some(ChannelEnd::Session(
                        self.ending_reason(EndReason::ClientClosed),
                    ));
                }
            }
            Some(ChannelMsg::Eof) => {
                let _ = self.client.eof().await;
            }
            Some(ChannelMsg::ExitStatus { exit_status }) => {
                state.exit = Some(Exit::Status(exit_status));
                let _ = self.client.exit_status(exit_status).await;
            }
            Some(ChannelMsg::ExitSignal {
                signal_name,
                core_dumped,
                error_message,
                lang_tag,
            }) => {
                state.exit = Some(Exit::Signal(format!("{signal_name:?}")));
                let _ = self
                    .client_handle
                    .exit_signal_request(self.id, signal_name, core_dumped, error_message, lang_tag)
                    .await;
            }
            Some(ChannelMsg::Success) => self.reply(true),
            Some(ChannelMsg::Failure) => self.reply(false),
            Some(ChannelMsg::Close) => return Some(ChannelEnd::Upstream),
            // The connection is gone without closing the channel: the session has been told
            // why (see `upstream::lost`), before the channel could see it.
            None => {
                return Some(ChannelEnd::Session(self.ending_reason(
                    EndReason::UpstreamLost {
                        target: self.session.target().unwrap_or("the target").to_owned(),
                        why: "closed the connection".to_owned(),
                    },
                )));
            }
            Some(_) => {}
        }
        None
    }

    fn ending_reason(&self, otherwise: EndReason) -> EndReason {
        self.session.control.reason().unwrap_or(otherwise)
    }

    /// After the loop: release the uplink, say goodbye if the bastion ended the channel,
    /// seal the recording and audit the end. Every wait here is bounded.
    async fn finish(self, mut state: ChannelState, end: ChannelEnd) {
        if let Some(watch) = state.watch.as_mut() {
            watch.finish();
        }
        note_transfers(&mut state).await;
        if let Some(active) = &state.recording {
            let _ = active.flush_output(&mut state.batch).await;
        }
        // Release the uplink first: it may hold the client's session loop (see `closed`).
        self.closed.cancel();
        // Stop reading the upstream channel: dropping it lets the upstream connection's loop
        // discard the rest instead of waiting for room in a queue nobody drains.
        drop(self.upstream);
        let farewell = async {
            if let ChannelEnd::Session(reason) = &end
                && reason.is_imposed()
            {
                let text = notice::message(&reason.to_string(), state.pty);
                record(&mut state, text.ext, text.bytes.clone()).await;
                if let Some(active) = &state.recording {
                    let _ = active.flush_output(&mut state.batch).await;
                }
                let _ = match text.ext {
                    Some(ext) => self.client.extended_data_bytes(ext, text.bytes).await,
                    None => self.client.data_bytes(text.bytes).await,
                };
                let _ = self.client.eof().await;
            }
            let _ = self.client.close().await;
        };
        // A client that reads nothing has no window for the farewell: do not wait forever.
        if tokio::time::timeout(FAREWELL_TIMEOUT, farewell)
            .await
            .is_err()
        {
            tracing::debug!("the client did not take the closing message");
        }
        while let Some(reply) = lock(&self.replies).pop_front() {
            let _ = reply.send(false);
        }

        let label = match (&end, &state.exit) {
            (ChannelEnd::Session(reason), _) if reason.side() == Side::Upstream => {
                format!("connection lost: {reason}")
            }
            (ChannelEnd::Session(reason), _) if reason.is_imposed() => {
                format!("ended by the bastion: {reason}")
            }
            (_, Some(Exit::Status(status))) => format!("exit status {status}"),
            (_, Some(Exit::Signal(signal))) => format!("killed by signal {signal}"),
            (ChannelEnd::Session(reason), None) => reason.to_string(),
            (ChannelEnd::Upstream, None) => "channel closed".to_owned(),
        };
        let summary = match &state.recording {
            Some(active) => active.finish(&label).await.ok(),
            None => None,
        };
        if let Some(summary) = &summary {
            let sealed = crate::anchors::Anchor {
                count: summary.lines,
                tag: summary.seal.clone(),
                sealed: true,
            };
            if let Err(error) = self
                .services
                .state
                .set_anchor(&crate::anchors::recording(&summary.id), sealed)
                .await
            {
                tracing::error!(%error, "cannot anchor a recording's seal");
            }
        }
        let exit_status = match state.exit {
            Some(Exit::Status(status)) => Some(status),
            _ => None,
        };
        self.session
            .open_channels
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.services.audit.record(
            self.session
                .audit("channel.end")
                .with("channel", self.id.to_string())
                .with("kind", state.started.as_ref().map(Start::kind))
                .with("end", label)
                .with("exit_status", exit_status)
                .with("recording", summary.as_ref().map(|s| s.id.clone()))
                .with("recording_seal", summary.as_ref().map(|s| s.seal.clone())),
        );
    }
}

/// Records what the client is sent, on the stream it is sent on: output in batches, the
/// rarer standard error as it comes (after the output batched before it).
async fn record(state: &mut ChannelState, ext: Option<u32>, data: Bytes) {
    let Some(active) = &state.recording else {
        return;
    };
    if ext.is_none() {
        let _ = active.buffer_output(&mut state.batch, data).await;
    } else {
        let _ = active.flush_output(&mut state.batch).await;
        let _ = active.error_output(data).await;
    }
}

/// Writes what the file-transfer watch found into the recording, after the output before it.
async fn note_transfers(state: &mut ChannelState) {
    if let Some(watch) = state.watch.as_mut() {
        super::write_notes(
            watch.as_mut(),
            state.recording.as_ref(),
            Some(&mut state.batch),
        )
        .await;
    }
}

/// Resolves when answers of the bastion's are queued for the client.
async fn queued(insertions: Option<&Arc<Insertions>>) {
    match insertions {
        Some(insertions) => insertions.queued().await,
        None => std::future::pending().await,
    }
}

/// Resolves when `recording` has failed.
async fn failed(recording: Option<&RecordingHandle>) -> Arc<str> {
    match recording {
        Some(recording) => recording.failed().await,
        None => std::future::pending().await,
    }
}

impl DownlinkTask {
    /// Records and sends upstream output to the client, with any answers of the
    /// bastion's that are due (see [`ChannelState::insertions_due`]). False when the client
    /// is gone or the session is ending.
    async fn forward(&self, ext: Option<u32>, data: Bytes, state: &mut ChannelState) -> bool {
        if let Some(screen) = &state.screen {
            screen.feed(&data);
        }
        if ext.is_none() {
            if let Some(watch) = state.watch.as_mut() {
                watch.see(&data);
            }
            note_transfers(state).await;
            if let Some((at, answers)) = state.insertions_due(data.len()) {
                let tail = data.slice(at..);
                return self.send(None, data.slice(..at), state).await
                    && self.send_all(answers, state).await
                    && self.send(None, tail, state).await;
            }
        }
        self.send(ext, data, state).await
    }

    /// Sends the bastion's answers, in order, as output.
    async fn send_all(&self, answers: Vec<Bytes>, state: &mut ChannelState) -> bool {
        for answer in answers {
            if !self.send(None, answer, state).await {
                return false;
            }
        }
        true
    }

    /// Records and sends bytes to the client.
    async fn send(&self, ext: Option<u32>, data: Bytes, state: &mut ChannelState) -> bool {
        if data.is_empty() {
            return true;
        }
        // Waits when the recorder is behind, so output never outruns its recording by more
        // than a batch and the writer's queue.
        record(state, ext, data.clone()).await;
        self.session
            .bytes_to_client
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        self.session.touch_output();
        let write = async {
            match ext {
                Some(ext) => self.client.extended_data_bytes(ext, data).await,
                None => self.client.data_bytes(data).await,
            }
        };
        // While this write waits for the client's window, the client's data must keep
        // flowing in (see `flow`).
        self.flow.set_downlink_writing(true);
        let written = tokio::select! {
            result = write => result.is_ok(),
            () = self.session.control.ended() => false,
        };
        self.flow.set_downlink_writing(false);
        written
    }

    /// Shows a bastion message between the upstream's output, and records it there too.
    async fn show_notice(&self, text: &str, state: &mut ChannelState) {
        let text = notice::message(text, state.pty);
        if let (Some(screen), None) = (&state.screen, text.ext) {
            screen.feed_own(&text.bytes);
        }
        record(state, text.ext, text.bytes.clone()).await;
        let write = async {
            match text.ext {
                Some(ext) => self.client.extended_data_bytes(ext, text.bytes).await,
                None => self.client.data_bytes(text.bytes).await,
            }
        };
        tokio::select! {
            _ = write => {}
            () = self.session.control.ended() => {}
        }
    }

    fn reply(&self, granted: bool) {
        if let Some(reply) = lock(&self.replies).pop_front() {
            let _ = reply.send(granted);
        }
    }

    fn recording_failed(&self, recording: &str, failure: &str) {
        let continuing = self.services.recordings.on_failure == OnRecordingFailure::Continue;
        self.services.audit.record(
            self.session
                .audit("recording.failed")
                .with("channel", self.id.to_string())
                .with("recording", recording)
                .with("error", failure)
                .with("continuing_unrecorded", continuing),
        );
        super::recording::raise_failed(
            &self.services,
            &self.session,
            recording,
            failure,
            continuing,
        );
        tracing::error!(parent: &self.session.span, error = failure, continuing, "recording failed");
        crate::metrics::Metrics::count(&self.services.metrics.recording_errors_total);
        if !continuing {
            self.session
                .control
                .end(EndReason::RecordingFailed(failure.to_owned()));
        }
    }
}
