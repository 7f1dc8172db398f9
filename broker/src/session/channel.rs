//! The relay of one session channel between the client and the upstream.
//!
//! ```text
//! FrontHandler callbacks ──Uplink (bounded)──▶ uplink task ──▶ upstream channel
//!    (data, eof, requests…)                        └─ "i" events to the recording
//! client channel ◀── downlink task ◀── upstream channel (data, stderr, exit, replies)
//!                       └─ "o" events to the recording; seals it when the channel ends
//! ```
//!
//! The two directions are separate tasks so that neither waits on the other: a task
//! blocked writing to a slow client never stops keystrokes reaching the upstream.
//! Every queue is bounded; a slow reader on either side slows its sender instead of
//! growing memory.
//!
//! Requests that want a reply (pty-req, shell, exec, subsystem) are answered with the
//! upstream's own answer: the uplink queues a reply slot before sending, the downlink fills
//! slots in order as the upstream answers (SSH answers requests in order).

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use portcullis_config::OnRecordingFailure;
use portcullis_recorder::{Header, RecordingHandle, RecordingOptions, SessionFacts};
use russh::{ChannelId, ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Pty, Sig, client, server};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::notice;
use super::{EndReason, SessionShared};
use crate::server::Broker;

/// How long the upstream has to answer a channel request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Client messages queued for the upstream before the client is made to wait.
const UPLINK_QUEUE: usize = 64;

/// What a channel was started as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// An interactive shell.
    Shell,
    /// A command (`ssh host 'cmd'`, scp, rsync).
    Exec(String),
    /// A subsystem (sftp).
    Subsystem(String),
}

impl Start {
    fn kind(&self) -> &'static str {
        match self {
            Start::Shell => "shell",
            Start::Exec(_) => "exec",
            Start::Subsystem(_) => "subsystem",
        }
    }
}

/// The terminal a client asked for.
#[derive(Debug, Clone)]
struct PtyRequest {
    term: String,
    cols: u32,
    rows: u32,
}

enum Uplink {
    Data(Bytes),
    Eof,
    Close,
    WindowChange {
        cols: u32,
        rows: u32,
        pix_width: u32,
        pix_height: u32,
    },
    Signal(Sig),
    Env {
        name: String,
        value: String,
    },
    Request {
        request: Request,
        reply: oneshot::Sender<bool>,
    },
    Record(RecordingHandle),
}

enum Request {
    Pty {
        term: String,
        cols: u32,
        rows: u32,
        pix_width: u32,
        pix_height: u32,
        modes: Vec<(Pty, u32)>,
    },
    Shell,
    Exec(Vec<u8>),
    Subsystem(String),
}

enum Downlink {
    Record { recording: RecordingHandle },
    Pty,
    Started(Start),
}

type Replies = Arc<Mutex<VecDeque<oneshot::Sender<bool>>>>;

/// The handler's side of a relayed channel.
pub struct ChannelRelay {
    id: ChannelId,
    uplink: mpsc::Sender<Uplink>,
    downlink: mpsc::Sender<Downlink>,
    pty: Option<PtyRequest>,
    started: bool,
}

/// What happened to a start request (shell, exec, subsystem).
#[derive(Debug)]
pub enum StartOutcome {
    /// Relayed; the bool is the upstream's answer.
    Relayed(bool),
    /// Refused by the bastion (a recording could not be started): show the message.
    Refused(String),
}

/// Wires a client channel to a freshly opened upstream channel and starts both tasks.
pub fn open_relay(
    broker: Arc<Broker>,
    session: Arc<SessionShared>,
    client: russh::Channel<server::Msg>,
    client_handle: server::Handle,
    upstream: russh::Channel<client::Msg>,
) -> ChannelRelay {
    let id = client.id();
    // The client's data reaches us through the handler callbacks; its read half would only
    // fill up if kept, so it is dropped.
    let (_, client_write) = client.split();
    let (upstream_read, upstream_write) = upstream.split();
    let replies: Replies = Arc::default();
    let (uplink_tx, uplink_rx) = mpsc::channel(UPLINK_QUEUE);
    let (downlink_tx, downlink_rx) = mpsc::channel(8);

    let tasks = session.tasks.clone();
    let span = session.span.clone();
    tasks.spawn(
        uplink(
            upstream_write,
            uplink_rx,
            replies.clone(),
            session.clone(),
            broker.config.recording.input,
            broker.recordings.on_failure,
        )
        .instrument(span.clone()),
    );
    tasks.spawn(
        downlink(DownlinkTask {
            id,
            upstream: upstream_read,
            client: client_write,
            client_handle,
            control: downlink_rx,
            replies,
            session,
            broker,
        })
        .instrument(span),
    );
    ChannelRelay {
        id,
        uplink: uplink_tx,
        downlink: downlink_tx,
        pty: None,
        started: false,
    }
}

impl ChannelRelay {
    async fn request(&self, request: Request) -> bool {
        let (reply, answer) = oneshot::channel();
        if self
            .uplink
            .send(Uplink::Request { request, reply })
            .await
            .is_err()
        {
            return false;
        }
        matches!(
            tokio::time::timeout(REQUEST_TIMEOUT, answer).await,
            Ok(Ok(true))
        )
    }

    /// Relays a pty-req and remembers the terminal for the recording's header.
    pub async fn pty(
        &mut self,
        term: &str,
        cols: u32,
        rows: u32,
        pix_width: u32,
        pix_height: u32,
        modes: &[(Pty, u32)],
    ) -> bool {
        let granted = self
            .request(Request::Pty {
                term: term.to_owned(),
                cols,
                rows,
                pix_width,
                pix_height,
                modes: modes.to_vec(),
            })
            .await;
        if granted {
            self.pty = Some(PtyRequest {
                term: term.to_owned(),
                cols,
                rows,
            });
            let _ = self.downlink.send(Downlink::Pty).await;
        }
        granted
    }

    /// Relays an environment variable. OpenSSH sends these without wanting a reply, so
    /// none is waited for.
    pub async fn env(&self, name: &str, value: &str) {
        let _ = self
            .uplink
            .send(Uplink::Env {
                name: name.to_owned(),
                value: value.to_owned(),
            })
            .await;
    }

    /// Starts a shell, command or subsystem: the recording first (nothing runs unrecorded),
    /// then the request upstream.
    pub async fn start(
        &mut self,
        broker: &Broker,
        session: &SessionShared,
        start: Start,
    ) -> StartOutcome {
        if self.started {
            // RFC 4254 allows one of these per channel.
            return StartOutcome::Relayed(false);
        }
        self.started = true;
        let recording = match &start {
            // sftp is a binary file-transfer protocol, not a terminal: it is audited (start,
            // end, bytes) but not recorded as asciicast.
            Start::Subsystem(_) => None,
            Start::Shell | Start::Exec(_) => {
                match start_recording(broker, session, &start, self.pty.as_ref()) {
                    Ok(recording) => recording,
                    Err(message) => return StartOutcome::Refused(message),
                }
            }
        };
        if let Some(recording) = &recording {
            let _ = recording.marker(start_marker(session, &start)).await;
            let _ = self
                .downlink
                .send(Downlink::Record {
                    recording: recording.clone(),
                })
                .await;
            let _ = self.uplink.send(Uplink::Record(recording.clone())).await;
        }
        broker.audit.record(
            session
                .audit("channel.start")
                .with("channel", self.id.to_string())
                .with("kind", start.kind())
                .with(
                    "command",
                    match &start {
                        Start::Exec(command) => Some(command.as_str()),
                        _ => None,
                    },
                )
                .with(
                    "subsystem",
                    match &start {
                        Start::Subsystem(name) => Some(name.as_str()),
                        _ => None,
                    },
                )
                .with("pty", self.pty.is_some())
                .with("recording", recording.as_ref().map(|r| r.id().to_owned())),
        );
        let _ = self.downlink.send(Downlink::Started(start.clone())).await;
        let request = match start {
            Start::Shell => Request::Shell,
            Start::Exec(command) => Request::Exec(command.into_bytes()),
            Start::Subsystem(name) => Request::Subsystem(name),
        };
        StartOutcome::Relayed(self.request(request).await)
    }

    /// Client keystrokes or stdin. Waits while the uplink queue is full.
    pub async fn data(&self, data: &[u8]) {
        let _ = self
            .uplink
            .send(Uplink::Data(Bytes::copy_from_slice(data)))
            .await;
    }

    /// The client will send no more data.
    pub async fn eof(&self) {
        let _ = self.uplink.send(Uplink::Eof).await;
    }

    /// The client closed the channel.
    pub async fn close(&self) {
        let _ = self.uplink.send(Uplink::Close).await;
    }

    /// The client's terminal was resized.
    pub async fn window_change(&self, cols: u32, rows: u32, pix_width: u32, pix_height: u32) {
        let _ = self
            .uplink
            .send(Uplink::WindowChange {
                cols,
                rows,
                pix_width,
                pix_height,
            })
            .await;
    }

    /// A signal for the remote process.
    pub async fn signal(&self, signal: Sig) {
        let _ = self.uplink.send(Uplink::Signal(signal)).await;
    }
}

fn start_marker(session: &SessionShared, start: &Start) -> String {
    let who = format!(
        "{} → {}@{}",
        session.user().unwrap_or("?"),
        session
            .upstream_login
            .get()
            .map(String::as_str)
            .unwrap_or("?"),
        session.target().unwrap_or("?")
    );
    match start {
        Start::Shell => format!("start: shell, {who}"),
        Start::Exec(command) => format!("start: exec {command:?}, {who}"),
        Start::Subsystem(name) => format!("start: subsystem {name}, {who}"),
    }
}

/// Creates the channel's recording. `Ok(None)`: it could not be created but policy lets the
/// session continue unrecorded. `Err`: it could not, and the channel must not start.
fn start_recording(
    broker: &Broker,
    session: &SessionShared,
    start: &Start,
    pty: Option<&PtyRequest>,
) -> Result<Option<RecordingHandle>, String> {
    let id = session.next_recording_id();
    let user = session.user().unwrap_or_default().to_owned();
    let target = session.target().unwrap_or_default().to_owned();
    let login = session.upstream_login.get().cloned().unwrap_or_default();
    let command = match start {
        Start::Exec(command) => Some(command.clone()),
        _ => None,
    };
    let title = match &command {
        Some(command) => format!("{user} → {login}@{target}: {command}"),
        None => format!("{user} → {login}@{target}"),
    };
    let mut env = BTreeMap::new();
    if let Some(pty) = pty {
        env.insert("TERM".to_owned(), pty.term.clone());
    }
    let header = Header {
        version: 2,
        width: pty.map_or(80, |p| p.cols.max(1)),
        height: pty.map_or(24, |p| p.rows.max(1)),
        timestamp: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default(),
        title: Some(title),
        env,
        portcullis: Some(SessionFacts {
            recording: id.clone(),
            session: session.id.clone(),
            user,
            target,
            login,
            kind: start.kind().to_owned(),
            command,
            client: session.client.to_string(),
        }),
    };
    let settings = &broker.recordings;
    match portcullis_recorder::start(
        &settings.dir,
        &id,
        &header,
        &settings.key,
        RecordingOptions::default(),
    ) {
        Ok(recording) => Ok(Some(recording)),
        Err(error) => {
            let continuing = settings.on_failure == OnRecordingFailure::Continue;
            broker.audit.record(
                session
                    .audit("recording.failed")
                    .with("recording", &id)
                    .with("error", error.to_string())
                    .with("continuing_unrecorded", continuing),
            );
            tracing::error!(parent: &session.span, %error, continuing, "cannot start a recording");
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

/// Forwards the client's messages to the upstream channel, in order.
async fn uplink(
    upstream: ChannelWriteHalf<client::Msg>,
    mut queue: mpsc::Receiver<Uplink>,
    replies: Replies,
    session: Arc<SessionShared>,
    record_input: bool,
    on_failure: OnRecordingFailure,
) {
    let mut recording: Option<RecordingHandle> = None;
    loop {
        let message = tokio::select! {
            message = queue.recv() => message,
            () = session.control.ended() => None,
        };
        let Some(message) = message else {
            // The client's channel is gone or the session is ending.
            let _ = upstream.close().await;
            return;
        };
        let sent = match message {
            Uplink::Data(data) => {
                if let Some(active) = &recording {
                    if active.has_failed() {
                        if on_failure == OnRecordingFailure::Terminate {
                            // The downlink ends the session; nothing more goes upstream.
                            continue;
                        }
                        recording = None;
                    } else if record_input {
                        let _ = active.input(data.clone()).await;
                    }
                }
                session
                    .bytes_from_client
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                tokio::select! {
                    result = upstream.data_bytes(data) => result,
                    () = session.control.ended() => Ok(()),
                }
            }
            Uplink::Eof => upstream.eof().await,
            Uplink::Close => {
                let _ = upstream.close().await;
                return;
            }
            Uplink::WindowChange {
                cols,
                rows,
                pix_width,
                pix_height,
            } => {
                if let Some(active) = &recording {
                    let _ = active.resize(cols, rows).await;
                }
                upstream
                    .window_change(cols, rows, pix_width, pix_height)
                    .await
            }
            Uplink::Signal(signal) => upstream.signal(signal).await,
            Uplink::Env { name, value } => upstream.set_env(false, name, value).await,
            Uplink::Record(handle) => {
                recording = Some(handle);
                Ok(())
            }
            Uplink::Request { request, reply } => {
                lock(&replies).push_back(reply);
                let result = match request {
                    Request::Pty {
                        term,
                        cols,
                        rows,
                        pix_width,
                        pix_height,
                        modes,
                    } => {
                        upstream
                            .request_pty(true, &term, cols, rows, pix_width, pix_height, &modes)
                            .await
                    }
                    Request::Shell => upstream.request_shell(true).await,
                    Request::Exec(command) => upstream.exec(true, command).await,
                    Request::Subsystem(name) => upstream.request_subsystem(true, name).await,
                };
                if result.is_err()
                    && let Some(reply) = lock(&replies).pop_back()
                {
                    let _ = reply.send(false);
                }
                result
            }
        };
        if sent.is_err() {
            // The upstream channel is gone; the downlink sees it close and ends the channel.
            return;
        }
    }
}

fn lock(replies: &Replies) -> std::sync::MutexGuard<'_, VecDeque<oneshot::Sender<bool>>> {
    replies
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How a channel ended, for the client, the recording and the audit log.
#[derive(Debug)]
enum ChannelEnd {
    /// The upstream closed it (the normal end).
    Upstream,
    /// The session is ending for a reason of the bastion's.
    Session(EndReason),
}

struct DownlinkTask {
    id: ChannelId,
    upstream: ChannelReadHalf,
    client: ChannelWriteHalf<server::Msg>,
    client_handle: server::Handle,
    control: mpsc::Receiver<Downlink>,
    replies: Replies,
    session: Arc<SessionShared>,
    broker: Arc<Broker>,
}

/// What the upstream said about how its process ended.
#[derive(Debug, Clone)]
enum Exit {
    Status(u32),
    Signal(String),
}

/// Forwards the upstream's messages to the client until the channel ends, then seals the
/// recording and audits the channel's end.
async fn downlink(mut task: DownlinkTask) {
    {
        let mut recording: Option<RecordingHandle> = None;
        let mut pty = false;
        let mut start: Option<Start> = None;
        let mut exit: Option<Exit> = None;
        let mut control_open = true;
        let session = task.session.clone();

        let end = loop {
            tokio::select! {
                biased;
                () = session.control.ended() => {
                    break ChannelEnd::Session(session.control.reason().unwrap_or(EndReason::Shutdown));
                }
                failure = failed(recording.as_ref()), if recording.is_some() => {
                    task.recording_failed(&failure);
                    if task.broker.recordings.on_failure == OnRecordingFailure::Continue {
                        recording = None;
                    }
                }
                control = task.control.recv(), if control_open => match control {
                    Some(Downlink::Record { recording: handle }) => recording = Some(handle),
                    Some(Downlink::Pty) => pty = true,
                    Some(Downlink::Started(what)) => start = Some(what),
                    None => control_open = false,
                },
                message = task.upstream.wait() => match message {
                    Some(ChannelMsg::Data { data }) => {
                        if !task.forward(None, data, recording.as_ref()).await {
                            break ChannelEnd::Session(session.control.reason().unwrap_or(EndReason::ClientClosed));
                        }
                    }
                    Some(ChannelMsg::ExtendedData { data, ext }) => {
                        if !task.forward(Some(ext), data, recording.as_ref()).await {
                            break ChannelEnd::Session(session.control.reason().unwrap_or(EndReason::ClientClosed));
                        }
                    }
                    Some(ChannelMsg::Eof) => {
                        let _ = task.client.eof().await;
                    }
                    Some(ChannelMsg::ExitStatus { exit_status }) => {
                        exit = Some(Exit::Status(exit_status));
                        let _ = task.client.exit_status(exit_status).await;
                    }
                    Some(ChannelMsg::ExitSignal { signal_name, core_dumped, error_message, lang_tag }) => {
                        exit = Some(Exit::Signal(format!("{signal_name:?}")));
                        let _ = task
                            .client_handle
                            .exit_signal_request(task.id, signal_name, core_dumped, error_message, lang_tag)
                            .await;
                    }
                    Some(ChannelMsg::Success) => task.reply(true),
                    Some(ChannelMsg::Failure) => task.reply(false),
                    Some(ChannelMsg::Close) | None => break ChannelEnd::Upstream,
                    Some(_) => {}
                },
            }
        };

        if let ChannelEnd::Session(reason) = &end
            && reason.is_imposed()
        {
            let text = notice::message(&reason.to_string(), pty);
            if let Some(active) = &recording {
                let _ = active.output(text.bytes.clone()).await;
            }
            let _ = match text.ext {
                Some(ext) => task.client.extended_data_bytes(ext, text.bytes).await,
                None => task.client.data_bytes(text.bytes).await,
            };
            let _ = task.client.eof().await;
        }
        let _ = task.client.close().await;
        while let Some(reply) = lock(&task.replies).pop_front() {
            let _ = reply.send(false);
        }

        let label = match (&end, &exit) {
            (ChannelEnd::Session(reason), _) if reason.is_imposed() => {
                format!("ended by the bastion: {reason}")
            }
            (_, Some(Exit::Status(status))) => format!("exit status {status}"),
            (_, Some(Exit::Signal(signal))) => format!("killed by signal {signal}"),
            (ChannelEnd::Session(reason), None) => reason.to_string(),
            (ChannelEnd::Upstream, None) => "channel closed".to_owned(),
        };
        let summary = match &recording {
            Some(active) => active.finish(&label).await.ok(),
            None => None,
        };
        task.broker.audit.record(
            session
                .audit("channel.end")
                .with("channel", task.id.to_string())
                .with("kind", start.as_ref().map(Start::kind))
                .with("end", label)
                .with(
                    "exit_status",
                    match exit {
                        Some(Exit::Status(status)) => Some(status),
                        _ => None,
                    },
                )
                .with("recording", summary.as_ref().map(|s| s.id.clone()))
                .with("recording_seal", summary.as_ref().map(|s| s.seal.clone())),
        );
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
    /// Records and sends upstream output to the client. False when the client is gone or
    /// the session is ending.
    async fn forward(
        &self,
        ext: Option<u32>,
        data: Bytes,
        recording: Option<&RecordingHandle>,
    ) -> bool {
        if let Some(active) = recording {
            // Waits when the recorder is behind: output is never shown unrecorded.
            let _ = active.output(data.clone()).await;
        }
        self.session
            .bytes_to_client
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        let write = async {
            match ext {
                Some(ext) => self.client.extended_data_bytes(ext, data).await,
                None => self.client.data_bytes(data).await,
            }
        };
        tokio::select! {
            result = write => result.is_ok(),
            () = self.session.control.ended() => false,
        }
    }

    fn reply(&self, granted: bool) {
        if let Some(reply) = lock(&self.replies).pop_front() {
            let _ = reply.send(granted);
        }
    }

    fn recording_failed(&self, failure: &str) {
        let continuing = self.broker.recordings.on_failure == OnRecordingFailure::Continue;
        self.broker.audit.record(
            self.session
                .audit("recording.failed")
                .with("channel", self.id.to_string())
                .with("error", failure)
                .with("continuing_unrecorded", continuing),
        );
        tracing::error!(parent: &self.session.span, error = failure, continuing, "recording failed");
        if !continuing {
            self.session
                .control
                .end(EndReason::RecordingFailed(failure.to_owned()));
        }
    }
}
