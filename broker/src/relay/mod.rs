//! The relay of one session channel between the client and the upstream.
//!
//! ```text
//! FrontHandler callbacks ──Uplink queue──▶ [uplink] ──▶ upstream channel
//!    (data, eof, requests…)  (flow::Flow)      └─ "i" events to the recording
//! client channel ◀── [downlink] ◀── upstream channel (data, stderr, exit, replies)
//!                       └─ "o" events to the recording; seals it when the channel ends
//! ```
//!
//! * [`uplink`](mod@uplink), [`downlink`](mod@downlink): the two directions, separate tasks so that neither waits on
//!   the other (a task blocked writing to a slow client never stops keystrokes going up).
//! * [`flow`]: bounds what the client may queue without deadlocking busy channels.
//! * [`recording`]: the channel's recording, started before its shell or command.
//! * [`gate`]: command control on terminal channels (and [`ChannelRelay::start`] checks
//!   exec commands against the rules before they reach the upstream).
//! * [`sftp`], [`scp`]: the file-transfer audits (and sftp's file rules), watching the
//!   bytes as they pass; [`transfer`]: the events they write; [`insertions`]: the
//!   bastion's own answers (an sftp refusal) put into what the client is sent.
//!
//! A slow reader on either side slows its sender instead of growing memory: the downlink
//! waits for the client's window, and the uplink queue is bounded by [`flow`].
//!
//! Requests that want a reply (pty-req, shell, exec, subsystem) are answered with the
//! upstream's own answer: the uplink queues a reply slot before sending, the downlink fills
//! slots in order as the upstream answers (SSH answers requests in order).

mod downlink;
pub mod flow;
pub mod gate;
pub mod insertions;
mod recording;
pub mod scp;
pub mod sftp;
pub mod transfer;
mod uplink;
mod verdict;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use portcullis_config::CommandAction;
use portcullis_recorder::RecordingHandle;
use russh::{ChannelId, ChannelWriteHalf, Pty, Sig, client, server};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::live::SessionShared;
use crate::services::Services;
use downlink::{DownlinkTask, downlink};
use flow::Flow;
pub use insertions::Insertions;
use recording::start_recording;
use uplink::{UplinkTask, uplink};

/// How long the upstream has to answer a channel request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// The client's terminal was resized: the latest size is in the channel's
    /// [`PendingSize`] (a flood of resizes queues one message, not one per resize).
    WindowChange,
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
    /// Command control for this terminal channel, from now on.
    Gate(Box<gate::Gate>),
    /// The file-transfer audit of this channel: what the client sends.
    Watch(Box<dyn Watch>),
    /// Where the bastion's own answers wait (sftp refusals): the uplink waits while too
    /// many do.
    Insertions(Arc<Insertions>),
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
    Record {
        recording: RecordingHandle,
    },
    Pty,
    Started(Start),
    /// Feed the output to this screen (for the command gate).
    Screen(Arc<gate::screen::Screen>),
    /// Show the bastion's words on the client's terminal, in order with the output.
    Say(String),
    /// The file-transfer audit of this channel: what the server sends.
    Watch(Box<dyn Watch>),
    /// The bastion's own answers to put into what the client is sent (sftp refusals).
    Insertions(Arc<Insertions>),
}

/// Watches one direction of a channel's bytes as they pass (the file-transfer audits of
/// sftp and legacy scp). It sees everything; only file rules make it hold anything back.
pub trait Watch: Send + Sync {
    /// Bytes passing this way.
    fn see(&mut self, data: &[u8]);
    /// The client's bytes on their way upstream: what goes on, which is all of them
    /// unless rules cut a refused request out. `Err` (why) ends the channel: what must be
    /// checked cannot be.
    fn pass(&mut self, data: Bytes) -> Result<Vec<Bytes>, String> {
        self.see(&data);
        Ok(vec![data])
    }
    /// Bytes of this direction's current message seen but not complete: the bastion's
    /// own answers go in only between messages.
    fn partial(&self) -> usize {
        0
    }
    /// What it found since last asked, one line per file operation (or refusal), for the
    /// channel's recording: its markers carry the transfer's timeline with the bytes.
    fn take_notes(&mut self) -> Vec<String> {
        Vec::new()
    }
    /// The channel ended (what it finds then is in the next [`Watch::take_notes`]).
    fn finish(&mut self);
}

/// Writes what a file-transfer watch found into the channel's recording, as markers: after
/// `batch`, the output held back before them, when the direction batches its output.
async fn write_notes(
    watch: &mut dyn Watch,
    recording: Option<&RecordingHandle>,
    batch: Option<&mut portcullis_recorder::OutputBatch>,
) {
    let notes = watch.take_notes();
    let Some(active) = recording else {
        return;
    };
    if notes.is_empty() {
        return;
    }
    if let Some(batch) = batch {
        let _ = active.flush_output(batch).await;
    }
    for note in notes {
        let _ = active.marker(note).await;
    }
}

type Replies = Arc<Mutex<VecDeque<oneshot::Sender<bool>>>>;

/// A terminal size the client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WindowSize {
    cols: u32,
    rows: u32,
    pix_width: u32,
    pix_height: u32,
}

/// The latest resize not yet passed upstream.
type PendingSize = Arc<Mutex<Option<WindowSize>>>;

/// What a queued signal or environment variable counts as in the flow-control budget, so
/// that a flood of them is bounded like a flood of data (the client is made to wait, and
/// cut off at the hard cap).
const CONTROL_COST: usize = 1024;

/// The handler's side of a relayed channel.
pub struct ChannelRelay {
    id: ChannelId,
    uplink: mpsc::UnboundedSender<Uplink>,
    flow: Arc<Flow>,
    size: PendingSize,
    downlink: mpsc::Sender<Downlink>,
    pty: Option<PtyRequest>,
    started: bool,
    /// Cancelled once the channel has ended (the downlink's last act).
    closed: CancellationToken,
}

/// What happened to a start request (shell, exec, subsystem).
#[derive(Debug)]
pub enum StartOutcome {
    /// Relayed; the bool is the upstream's answer.
    Relayed(bool),
    /// Refused by the bastion (a recording could not be started, a command rule): show
    /// the message and end the channel with this exit status.
    Refused {
        /// For the user.
        message: String,
        /// The channel's exit status.
        status: u32,
    },
}

/// Exit status of a command a rule stopped (as a shell says "cannot execute").
pub const BLOCKED_STATUS: u32 = 126;

/// Wires a client channel to a freshly opened upstream channel and starts both tasks.
/// Only the client's write half is taken: its data reaches the relay through the handler
/// callbacks (a read half kept but not drained would stall the connection).
pub fn open_relay(
    services: Arc<Services>,
    session: Arc<SessionShared>,
    client_write: ChannelWriteHalf<server::Msg>,
    client_handle: server::Handle,
    upstream: russh::Channel<client::Msg>,
) -> ChannelRelay {
    let id = client_write.id();
    let (upstream_read, upstream_write) = upstream.split();
    let replies: Replies = Arc::default();
    // Unbounded as a channel, bounded in bytes by `flow` (see there for why).
    let (uplink_tx, uplink_rx) = mpsc::unbounded_channel();
    let flow = Arc::new(Flow::default());
    let size = PendingSize::default();
    let (downlink_tx, downlink_rx) = mpsc::channel(8);
    // Cancelled by the downlink when the channel ends, so an uplink waiting for window
    // space on a channel the upstream has closed gives up (and the handler, which may be
    // waiting for room in the uplink queue, is released).
    let closed = CancellationToken::new();

    session
        .open_channels
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tasks = session.tasks.clone();
    let span = session.span.clone();
    tasks.spawn(
        uplink(UplinkTask {
            upstream: upstream_write,
            queue: uplink_rx,
            flow: flow.clone(),
            size: size.clone(),
            replies: replies.clone(),
            closed: closed.clone(),
            session: session.clone(),
            record_input: services.config.recording.input,
            on_failure: services.recordings.on_failure,
        })
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
            closed: closed.clone(),
            flow: flow.clone(),
            notices: session.notices.subscribe(),
            session,
            services,
        })
        .instrument(span),
    );
    ChannelRelay {
        id,
        uplink: uplink_tx,
        flow,
        size,
        downlink: downlink_tx,
        pty: None,
        started: false,
        closed,
    }
}

impl ChannelRelay {
    /// Whether the channel has ended (the bastion closed it toward the client).
    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    async fn request(&self, request: Request) -> bool {
        let (reply, answer) = oneshot::channel();
        if self
            .uplink
            .send(Uplink::Request { request, reply })
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

    /// Whether the client was given a terminal on this channel.
    pub fn has_pty(&self) -> bool {
        self.pty.is_some()
    }

    /// Relays an environment variable. OpenSSH sends these without wanting a reply, so
    /// none is waited for.
    pub async fn env(&self, name: &str, value: &str) {
        self.control(Uplink::Env {
            name: name.to_owned(),
            value: value.to_owned(),
        })
        .await;
    }

    /// Queues a signal or variable, counted in the flow budget (see [`CONTROL_COST`]).
    async fn control(&self, message: Uplink) {
        if self.flow.add(CONTROL_COST).is_err() {
            // Past the hard cap: the data path ends the session; this one is dropped.
            self.flow.drained(CONTROL_COST);
            return;
        }
        if self.uplink.send(message).is_err() {
            self.flow.drained(CONTROL_COST);
            return;
        }
        self.flow.wait_for_room().await;
    }

    /// Starts a shell, command or subsystem: the command rules first (a blocked command
    /// never reaches the upstream), then the recording (nothing runs unrecorded), then the
    /// request upstream.
    pub async fn start(
        &mut self,
        services: &Arc<Services>,
        session: &Arc<SessionShared>,
        start: Start,
    ) -> StartOutcome {
        if self.started {
            // RFC 4254 allows one of these per channel.
            return StartOutcome::Relayed(false);
        }
        self.started = true;
        if start == Start::Shell && self.pty.is_none() && follows_commands(services, session) {
            return self.refuse_shell_without_terminal(services, session);
        }
        if let Some(refused) = self.check_command(services, session, &start) {
            return refused;
        }
        // A subsystem (sftp) is a protocol, never a terminal: recorded as exact bytes even
        // if the client asked for a pty.
        let terminal = match &start {
            Start::Subsystem(_) => None,
            Start::Shell | Start::Exec(_) => self.pty.as_ref(),
        };
        let recording = match start_recording(services, session, &start, terminal).await {
            Ok(recording) => recording,
            Err(message) => return StartOutcome::Refused { message, status: 1 },
        };
        if let Some(recording) = &recording {
            session.add_recording(recording.clone(), terminal.is_some());
            let _ = recording.marker(start_marker(session, &start)).await;
            let _ = self
                .downlink
                .send(Downlink::Record {
                    recording: recording.clone(),
                })
                .await;
            let _ = self.uplink.send(Uplink::Record(recording.clone()));
        }
        if speaks_sftp(&start) {
            let (client, server, insertions) = sftp::SftpAudit::start(
                services.clone(),
                session.clone(),
                self.id.to_string(),
                file_rules_apply(services, session),
            );
            if let Some(insertions) = insertions {
                let _ = self
                    .downlink
                    .send(Downlink::Insertions(insertions.clone()))
                    .await;
                let _ = self.uplink.send(Uplink::Insertions(insertions));
            }
            let _ = self.downlink.send(Downlink::Watch(Box::new(server))).await;
            let _ = self.uplink.send(Uplink::Watch(Box::new(client)));
        }
        if let Start::Exec(command) = &start
            && let Some((way, path)) = scp::parse_command(command)
        {
            let watch = Box::new(scp::ScpWatch {
                source: scp::ScpSource::new(way, path),
                services: services.clone(),
                session: session.clone(),
                channel: self.id.to_string(),
                notes: Vec::new(),
            });
            match way {
                scp::Way::Upload => {
                    let _ = self.uplink.send(Uplink::Watch(watch));
                }
                scp::Way::Download => {
                    let _ = self.downlink.send(Downlink::Watch(watch)).await;
                }
            }
        }
        if let Some(pty) = &self.pty
            && !matches!(start, Start::Subsystem(_))
            && follows_commands(services, session)
        {
            // A terminal: lines typed into it are read and checked at each Enter.
            let screen = Arc::new(gate::screen::Screen::new(pty.rows, pty.cols));
            let _ = self.downlink.send(Downlink::Screen(screen.clone())).await;
            let _ = self.uplink.send(Uplink::Gate(Box::new(gate::Gate::new(
                services.clone(),
                session.clone(),
                self.id.to_string(),
                screen,
                self.downlink.clone(),
            ))));
        }
        services.audit.record(
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

    /// A shell without a terminal reads command lines from stdin with no echo and no prompt:
    /// the gate could neither read nor check them, so where lines are checked or audited it
    /// is refused, with what to use instead.
    fn refuse_shell_without_terminal(
        &self,
        services: &Services,
        session: &SessionShared,
    ) -> StartOutcome {
        services.audit.record(
            session
                .audit("command")
                .with("channel", self.id.to_string())
                .with("role", session.role().unwrap_or_default())
                .with("kind", "shell")
                .with("action", "deny")
                .with("outcome", "refused")
                .with("reason", "a shell without a terminal"),
        );
        tracing::info!(parent: &session.span, "shell without a terminal refused");
        StartOutcome::Refused {
            message: format!(
                "a shell without a terminal is not allowed on {}: the command lines it reads could not be checked or audited. Use `ssh -t` for an interactive shell, or give the command itself: ssh … 'COMMAND'",
                session.target().unwrap_or("this target")
            ),
            status: BLOCKED_STATUS,
        }
    }

    /// Checks an exec command (or a subsystem, as its name) against the command rules and
    /// audits it. `Some`: refused. A command cannot be confirmed or held for review without
    /// a terminal to ask on, so `warn` and `review` refuse it too, saying where it can run.
    fn check_command(
        &self,
        services: &Services,
        session: &SessionShared,
        start: &Start,
    ) -> Option<StartOutcome> {
        let line = match start {
            Start::Exec(command) => command.as_str(),
            Start::Subsystem(name) => name.as_str(),
            Start::Shell => return None,
        };
        let role = session.role().unwrap_or_default();
        let target = session.target().unwrap_or_default();
        let rule = services.command_rules.evaluate(role, target, line);
        let action = rule.map_or(CommandAction::Allow, |r| r.action);
        let refusal = match (rule, action) {
            (Some(rule), CommandAction::Deny | CommandAction::Terminate) => {
                Some(format!("blocked by {}", rule.describe()))
            }
            (Some(rule), CommandAction::Warn | CommandAction::Review) => Some(format!(
                "{} needs {} first, which needs a terminal: run it in an interactive session (ssh -t)",
                rule.describe(),
                if action == CommandAction::Warn {
                    "your confirmation"
                } else {
                    "an approval"
                }
            )),
            _ => None,
        };
        // A transfer the file rules cannot check is refused, whatever the command rules say.
        let (refusal, action) = match refusal {
            None => match self.escapes_file_rules(services, session, start) {
                Some(why) => (Some(why), CommandAction::Deny),
                None => (None, action),
            },
            refused => (refused, action),
        };
        verdict::Verdict {
            channel: &self.id.to_string(),
            kind: start.kind(),
            line,
            rule,
            action,
            stopped: refusal.is_some(),
            uncertain: false,
            what: "command",
        }
        .carry_out(services, session);
        let message = refusal?;
        Some(StartOutcome::Refused {
            message,
            status: BLOCKED_STATUS,
        })
    }

    /// Where file rules apply, a file transfer they could not check: legacy scp (its own
    /// protocol, not SFTP) and an sftp server on a terminal (where the command gate, not
    /// the SFTP reader, would see the bytes). `Some`: why it is refused.
    fn escapes_file_rules(
        &self,
        services: &Services,
        session: &SessionShared,
        start: &Start,
    ) -> Option<String> {
        if !file_rules_apply(services, session) {
            return None;
        }
        match start {
            Start::Exec(command) if scp::parse_command(command).is_some() => Some(
                "legacy scp (scp -O) cannot be checked against the file rules here: use scp without -O, or sftp".to_owned(),
            ),
            _ if speaks_sftp(start) && self.pty.is_some() => Some(
                "an sftp server on a terminal cannot be checked against the file rules: run it without -t"
                    .to_owned(),
            ),
            _ => None,
        }
    }

    /// Client keystrokes or stdin. Waits while too much is queued for the upstream (see
    /// [`flow`]); `Err` if the client has queued past the hard cap.
    pub async fn data(&self, data: &[u8]) -> Result<(), flow::Overflow> {
        self.flow.add(data.len())?;
        if self
            .uplink
            .send(Uplink::Data(Bytes::copy_from_slice(data)))
            .is_err()
        {
            // The uplink is gone (channel closed): nothing will drain this.
            self.flow.drained(data.len());
            return Ok(());
        }
        self.flow.wait_for_room().await;
        Ok(())
    }

    /// The client will send no more data.
    pub async fn eof(&self) {
        let _ = self.uplink.send(Uplink::Eof);
    }

    /// The client closed the channel.
    pub async fn close(&self) {
        let _ = self.uplink.send(Uplink::Close);
    }

    /// The client's terminal was resized. Only the latest size matters: while one is
    /// waiting to be passed on, a newer one replaces it instead of queueing behind it.
    pub async fn window_change(&self, cols: u32, rows: u32, pix_width: u32, pix_height: u32) {
        let size = WindowSize {
            cols,
            rows,
            pix_width,
            pix_height,
        };
        let waiting = lock(&self.size).replace(size).is_some();
        if !waiting {
            let _ = self.uplink.send(Uplink::WindowChange);
        }
    }

    /// A signal for the remote process.
    pub async fn signal(&self, signal: Sig) {
        self.control(Uplink::Signal(signal)).await;
    }
}

/// Whether the channel speaks SFTP: the sftp subsystem, or an sftp server run as a command
/// (`ssh host /usr/lib/openssh/sftp-server`, what `sftp -s` does), which must not escape the
/// file audit and rules.
fn speaks_sftp(start: &Start) -> bool {
    match start {
        Start::Subsystem(name) => name == "sftp",
        Start::Exec(command) => command
            .split_whitespace()
            .next()
            .and_then(|program| program.rsplit('/').next())
            .is_some_and(|name| name == "sftp-server"),
        Start::Shell => false,
    }
}

/// Whether file rules (`kind = "sftp"`) apply to this session's role and target.
fn file_rules_apply(services: &Services, session: &SessionShared) -> bool {
    services.command_rules.any_of_kind_for(
        portcullis_config::RuleKind::Sftp,
        session.role().unwrap_or_default(),
        session.target().unwrap_or_default(),
    )
}

/// Whether command lines on this session's terminals are read: to enforce rules, or to
/// audit them (`[recording] commands`).
fn follows_commands(services: &Services, session: &SessionShared) -> bool {
    services.config.recording.commands
        || services.command_rules.any_for(
            session.role().unwrap_or_default(),
            session.target().unwrap_or_default(),
        )
}

fn start_marker(session: &SessionShared, start: &Start) -> String {
    let who = format!(
        "{} → {}@{}",
        session.user().unwrap_or("?"),
        session.upstream_login().unwrap_or("?"),
        session.target().unwrap_or("?")
    );
    match start {
        Start::Shell => format!("start: shell, {who}"),
        Start::Exec(command) => format!("start: exec {command:?}, {who}"),
        Start::Subsystem(name) => format!("start: subsystem {name}, {who}"),
    }
}

fn lock<T>(shared: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
