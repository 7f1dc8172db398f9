//! A live connection's shared record: who it is, where it goes, its counters, recordings
//! and notices, and the control that ends it — with why ([`EndReason`]). The connection's
//! tasks, the registry of live sessions, watchers, metrics and the operations that end
//! sessions all hold it; it knows nothing of how a session runs.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use portcullis_policy::Clock;

use crate::authorized::Authorized;

use portcullis_recorder::RecordingHandle;

use crate::text::Shown;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Which side a session's end came from: who closed it, or what failed. Audited beside the
/// reason so an investigator (and, later, an alert rule) can tell a user leaving from a
/// target dying, a recorder failing, the state store failing or policy withdrawing access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The SSH client: left, misbehaved, or was too slow to authenticate.
    Client,
    /// The target's sshd.
    Upstream,
    /// The recorder: evidence could not be written.
    Recorder,
    /// The state store (locks, grants): it could not answer a check.
    State,
    /// Policy: a lock, an ended grant, an idle limit or a command rule.
    Policy,
    /// An operator, through the API or CLI.
    Operator,
    /// The bastion itself, shutting down.
    Bastion,
}

impl Side {
    /// Its name in audit records.
    pub fn code(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
            Side::Recorder => "recorder",
            Side::State => "state",
            Side::Policy => "policy",
            Side::Operator => "operator",
            Side::Bastion => "bastion",
        }
    }
}

/// Why a session (or one of its channels) ended: the session's outcome, and when something
/// failed, its error — [`EndReason::side`] says which side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// The client disconnected or closed its last channel.
    ClientClosed,
    /// The target's connection ended while the session was using it: the target closed it,
    /// its sshd was killed, or it stopped answering keepalives.
    UpstreamLost {
        /// The target's name.
        target: String,
        /// What happened, in words (already safe to show).
        why: String,
    },
    /// The bastion is shutting down.
    Shutdown,
    /// A recording could not be written and policy says sessions end then.
    RecordingFailed(String),
    /// The client did not authenticate in time.
    LoginTimeout,
    /// The client kept sending while not reading what it was sent, past the flow-control cap
    /// (this many bytes).
    Overflow(usize),
    /// An operator ended the session.
    Killed {
        /// The operator (an API token's name).
        by: String,
        /// Their reason.
        reason: String,
    },
    /// The user was locked.
    Locked {
        /// Who locked them.
        by: String,
        /// Why.
        reason: String,
    },
    /// No input from the user for this long.
    Idle(std::time::Duration),
    /// The grant the session rested on ran out.
    GrantExpired {
        /// The grant.
        grant: u64,
    },
    /// The grant the session rested on was revoked.
    GrantRevoked {
        /// The grant.
        grant: u64,
        /// By whom.
        by: String,
        /// Why.
        reason: String,
    },
    /// A command rule with `action = "terminate"` matched a line.
    CommandRule {
        /// The rule.
        rule: String,
        /// Its message.
        message: String,
    },
    /// Policy no longer allows what the session holds, for a reason other than a lock or
    /// an ended grant (the user or the role left the configuration).
    AccessWithdrawn(String),
    /// The state store could not answer a check the session depends on.
    StateFailed(String),
}

impl EndReason {
    /// A short machine-friendly code for audit records.
    pub fn code(&self) -> &'static str {
        match self {
            EndReason::ClientClosed => "client_closed",
            EndReason::UpstreamLost { .. } => "upstream_lost",
            EndReason::Shutdown => "shutdown",
            EndReason::RecordingFailed(_) => "recording_failed",
            EndReason::LoginTimeout => "login_timeout",
            EndReason::Overflow(_) => "flow_control",
            EndReason::Killed { .. } => "killed",
            EndReason::Locked { .. } => "locked",
            EndReason::Idle(_) => "idle",
            EndReason::GrantExpired { .. } => "grant_expired",
            EndReason::GrantRevoked { .. } => "grant_revoked",
            EndReason::CommandRule { .. } => "command_rule",
            EndReason::AccessWithdrawn(_) => "access_withdrawn",
            EndReason::StateFailed(_) => "state_failed",
        }
    }

    /// Which side the end came from.
    pub fn side(&self) -> Side {
        match self {
            EndReason::ClientClosed | EndReason::LoginTimeout | EndReason::Overflow(_) => {
                Side::Client
            }
            EndReason::UpstreamLost { .. } => Side::Upstream,
            EndReason::RecordingFailed(_) => Side::Recorder,
            EndReason::StateFailed(_) => Side::State,
            EndReason::Locked { .. }
            | EndReason::Idle(_)
            | EndReason::GrantExpired { .. }
            | EndReason::GrantRevoked { .. }
            | EndReason::CommandRule { .. }
            | EndReason::AccessWithdrawn(_) => Side::Policy,
            EndReason::Killed { .. } => Side::Operator,
            EndReason::Shutdown => Side::Bastion,
        }
    }

    /// Whether the user should be told: the end did not come from them (a target that
    /// vanished is news to them too; one that ended a command normally is not a session end).
    pub fn is_imposed(&self) -> bool {
        !matches!(self, EndReason::ClientClosed)
    }
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndReason::ClientClosed => f.write_str("client disconnected"),
            EndReason::UpstreamLost { target, why } => write!(f, "{} {why}", Shown(target)),
            EndReason::Shutdown => f.write_str("the bastion is shutting down"),
            EndReason::RecordingFailed(why) => write!(
                f,
                "the session recording failed ({}); sessions may not continue unrecorded",
                Shown(why)
            ),
            EndReason::LoginTimeout => f.write_str("authentication took too long"),
            EndReason::Overflow(cap) => write!(
                f,
                "the client sent more than {} MiB without reading what it was sent",
                cap / (1024 * 1024)
            ),
            EndReason::AccessWithdrawn(why) => write!(f, "access withdrawn: {why}"),
            EndReason::StateFailed(why) => {
                write!(f, "the bastion could not check your access: {why}")
            }
            // Reasons and names typed by one person are shown to another: escaped.
            EndReason::Killed { by, reason } => {
                write!(f, "session terminated by {}: {}", Shown(by), Shown(reason))
            }
            EndReason::Locked { by, reason } => {
                write!(
                    f,
                    "session terminated: your account was locked by {}: {}",
                    Shown(by),
                    Shown(reason)
                )
            }
            EndReason::GrantExpired { grant } => {
                write!(f, "your access has ended (grant #{grant} expired)")
            }
            EndReason::GrantRevoked { grant, by, reason } => {
                write!(
                    f,
                    "your access was revoked by {} (grant #{grant}): {}",
                    Shown(by),
                    Shown(reason)
                )
            }
            EndReason::CommandRule { rule, message } if message.is_empty() => {
                write!(f, "session terminated by rule {rule}")
            }
            EndReason::CommandRule { rule, message } => {
                write!(f, "session terminated by rule {rule}: {message}")
            }
            EndReason::Idle(after) => write!(
                f,
                "session ended after {} without input",
                humantime::format_duration(*after)
            ),
        }
    }
}

/// Ends a session from anywhere, with a reason. The first reason given wins.
#[derive(Debug)]
pub struct SessionControl {
    token: CancellationToken,
    reason: OnceLock<EndReason>,
}

impl SessionControl {
    /// A control whose token is a child of `parent` (shutdown reaches every session).
    pub fn child_of(parent: &CancellationToken) -> Self {
        Self {
            token: parent.child_token(),
            reason: OnceLock::new(),
        }
    }

    /// Ends the session for `reason` (ignored if it is already ending for another).
    pub fn end(&self, reason: EndReason) {
        // Cancelled with no reason of its own: the shutdown got there first (its parent
        // token), and the client leaving after being told so does not change why.
        let reason = if self.token.is_cancelled() {
            EndReason::Shutdown
        } else {
            reason
        };
        let _ = self.reason.set(reason);
        self.token.cancel();
    }

    /// Resolves when the session is told to end.
    pub async fn ended(&self) {
        self.token.cancelled().await
    }

    /// Whether the session has been told to end.
    pub fn is_ending(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Why it is ending; a cancelled token without a reason of its own was a shutdown.
    pub fn reason(&self) -> Option<EndReason> {
        if let Some(reason) = self.reason.get() {
            return Some(reason.clone());
        }
        self.token.is_cancelled().then_some(EndReason::Shutdown)
    }
}

/// A message from the bastion for the user's terminals.
#[derive(Debug, Clone)]
pub struct Notice {
    /// Its number in the session (so a channel shows each once).
    pub seq: u64,
    /// When it was sent.
    pub at: Instant,
    /// The text.
    pub text: Arc<str>,
}

impl Notice {
    /// How long a channel opened after a notice still shows it.
    pub const FRESH: Duration = Duration::from_secs(5);
}

/// Who is on the connection, once they have authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The bastion user.
    pub user: String,
    /// The target asked for, if any.
    pub target: Option<String>,
    /// How they authenticated (publickey, certificate, password, password+totp).
    pub method: String,
}

/// State shared by the supervisor, the russh handler and the channel tasks.
#[derive(Debug)]
pub struct SessionShared {
    /// Session id (also the prefix of its recordings).
    pub id: String,
    /// The client's address.
    pub client: SocketAddr,
    /// When the connection was accepted (on the bastion's clock).
    pub started_at: SystemTime,
    /// The bastion's clock (the session's deadlines and idle time are measured on it).
    pub clock: Arc<dyn Clock>,
    /// Ends the session.
    pub control: SessionControl,
    /// Set once, at authentication.
    pub identity: OnceLock<Identity>,
    /// What policy allowed, with its target, once a target was authorized: the role
    /// (command rules are per role), the grant it rests on, the upstream account.
    pub authorized: OnceLock<Authorized>,
    /// Bytes from the client relayed upstream.
    pub bytes_from_client: AtomicU64,
    /// Bytes from upstream relayed to the client.
    pub bytes_to_client: AtomicU64,
    /// Milliseconds after `started_at` of the user's last input (for the idle timeout).
    pub last_input_ms: AtomicU64,
    /// Milliseconds after `started_at` of the last output to the user.
    pub last_output_ms: AtomicU64,
    /// Channels open now.
    pub open_channels: AtomicU32,
    /// The session's recordings so far (and whether each has a terminal), for watchers.
    pub recordings: Mutex<Vec<(RecordingHandle, bool)>>,
    /// Messages for the user's terminals (grant warnings); each channel's downlink shows them.
    pub notices: tokio::sync::broadcast::Sender<Notice>,
    /// The latest notice, for a channel that opens just after it was sent.
    last_notice: Mutex<Option<Notice>>,
    /// The bastion address the client connected to (for commands it is told to run).
    pub local: OnceLock<SocketAddr>,
    /// Channel tasks, waited for before the session is finished.
    pub tasks: TaskTracker,
    /// Cuts both the client's and the upstream's TCP streams (see [`crate::net::severable`]): the last
    /// step of `finish`, after every polite goodbye has had its chance.
    pub sever: CancellationToken,
    /// The connection's tracing span. russh runs the handler in a task of its own, so
    /// events from there name this span explicitly (`parent: &session.span`).
    pub span: tracing::Span,
    recording_count: AtomicU32,
    /// The connection's slot: a pre-login one, then a session permit (see
    /// [`crate::net::admission`]); given back when the session finishes.
    slot: Mutex<Slot>,
}

/// Which budget a connection counts against (held for what dropping it gives back).
#[derive(Debug)]
enum Slot {
    PreAuth {
        _slot: crate::net::admission::PreAuthSlot,
    },
    Session {
        _permit: tokio::sync::OwnedSemaphorePermit,
    },
    Released,
}

impl SessionShared {
    /// The connection has authenticated: it now holds a session permit instead of its
    /// pre-login slot.
    pub fn admitted(&self, permit: tokio::sync::OwnedSemaphorePermit) {
        *self.slot() = Slot::Session { _permit: permit };
    }

    /// Gives the connection's slot back (the session is over).
    pub fn release_slot(&self) {
        *self.slot() = Slot::Released;
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// State for a newly accepted connection, holding its pre-login slot.
    pub fn new(
        id: String,
        client: SocketAddr,
        shutdown: &CancellationToken,
        slot: crate::net::admission::PreAuthSlot,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            span: tracing::info_span!(
                "session",
                id = %id,
                client = %client,
                user = tracing::field::Empty,
                target = tracing::field::Empty
            ),
            id,
            client,
            started_at: clock.now(),
            clock,
            control: SessionControl::child_of(shutdown),
            identity: OnceLock::new(),
            authorized: OnceLock::new(),
            bytes_from_client: AtomicU64::new(0),
            bytes_to_client: AtomicU64::new(0),
            last_input_ms: AtomicU64::new(0),
            last_output_ms: AtomicU64::new(0),
            open_channels: AtomicU32::new(0),
            recordings: Mutex::new(Vec::new()),
            notices: tokio::sync::broadcast::channel(16).0,
            last_notice: Mutex::new(None),
            local: OnceLock::new(),
            tasks: TaskTracker::new(),
            sever: CancellationToken::new(),
            recording_count: AtomicU32::new(0),
            slot: Mutex::new(Slot::PreAuth { _slot: slot }),
        }
    }

    /// Shows `text` on every open terminal channel of the session (and on one that opens
    /// within [`Notice::FRESH`]).
    pub fn notify(&self, text: &str) {
        let mut last = self
            .last_notice
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let notice = Notice {
            seq: last.as_ref().map_or(1, |n| n.seq + 1),
            at: self.clock.instant(),
            text: Arc::from(text),
        };
        *last = Some(notice.clone());
        let _ = self.notices.send(notice);
    }

    /// The latest notice if it is still fresh.
    pub fn fresh_notice(&self) -> Option<Notice> {
        self.last_notice
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .filter(|n| self.clock.instant() - n.at < Notice::FRESH)
    }

    /// The next recording id of this session: `<session>-<n>`.
    pub fn next_recording_id(&self) -> String {
        let n = self.recording_count.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{}-{n}", self.id)
    }

    /// Notes input from the user now.
    pub fn touch_input(&self) {
        self.last_input_ms
            .store(self.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Notes output to the user now.
    pub fn touch_output(&self) {
        self.last_output_ms
            .store(self.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// How long the session has run (on the bastion's clock).
    pub fn elapsed(&self) -> Duration {
        self.clock
            .now()
            .duration_since(self.started_at)
            .unwrap_or_default()
    }

    /// When the session is `idle` without input, as things stand: a fixed instant, moved
    /// by each keystroke.
    pub fn idle_deadline(&self, idle: Duration) -> SystemTime {
        self.started_at + Duration::from_millis(self.last_input_ms.load(Ordering::Relaxed)) + idle
    }

    /// The recording a watcher should see: the first with a terminal, else the latest.
    pub fn watchable_recording(&self) -> Option<RecordingHandle> {
        let recordings = self
            .recordings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        recordings
            .iter()
            .find(|(_, pty)| *pty)
            .or(recordings.last())
            .map(|(handle, _)| handle.clone())
    }

    /// Remembers a recording of this session.
    pub fn add_recording(&self, handle: RecordingHandle, pty: bool) {
        self.recordings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((handle, pty));
    }

    /// The user, once known.
    pub fn user(&self) -> Option<&str> {
        self.identity.get().map(|i| i.user.as_str())
    }

    /// The role its authorization came through, once a target was authorized.
    pub fn role(&self) -> Option<&str> {
        Some(self.authorized.get()?.decision().role())
    }

    /// The grant the session rests on, for eligible access.
    pub fn grant(&self) -> Option<u64> {
        self.authorized.get()?.decision().grant()
    }

    /// The upstream account, once a target was authorized.
    pub fn upstream_login(&self) -> Option<&str> {
        Some(self.authorized.get()?.target().login.as_str())
    }

    /// The target, once known.
    pub fn target(&self) -> Option<&str> {
        self.identity.get().and_then(|i| i.target.as_deref())
    }

    /// An audit event with this session's who/where filled in.
    pub fn audit(&self, event: &'static str) -> crate::audit::AuditEvent {
        crate::audit::AuditEvent::new(event)
            .with("session", &self.id)
            .with("user", self.user())
            .with("source", self.client.to_string())
            .with("target", self.target())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_reason_wins_and_shutdown_is_inferred() {
        let root = CancellationToken::new();
        let a = SessionControl::child_of(&root);
        a.end(EndReason::RecordingFailed("disk full".into()));
        a.end(EndReason::Shutdown);
        assert_eq!(
            a.reason(),
            Some(EndReason::RecordingFailed("disk full".into()))
        );

        let b = SessionControl::child_of(&root);
        assert_eq!(b.reason(), None);
        root.cancel();
        assert!(b.is_ending());
        assert_eq!(b.reason(), Some(EndReason::Shutdown));
    }
}
