//! What the front door's thin russh handler tells a session's owner: one event per callback
//! that concerns the session, each with a oneshot reply where SSH wants an answer. The
//! queue is bounded ([`EVENT_QUEUE`]): a client that floods requests waits, it does not grow
//! memory.

use bytes::Bytes;
use russh::server::{Handle, Msg};
use russh::{Channel, ChannelId, ChannelOpenFailure, Sig};
use tokio::sync::oneshot;

use super::login::Login;
use crate::bastion::console::PtyParams;
use crate::bastion::notice;
use crate::relay::Start;

/// Events waiting for the owner, at most (then the handler, and so the client, waits).
pub const EVENT_QUEUE: usize = 64;

/// One thing the client did.
pub enum Event {
    /// The client authenticated as `login`'s user: route it (the policy decides where it may
    /// go). Replied to once routing is done, before any channel opens.
    LoggedIn {
        /// The login name, parsed.
        login: Login,
        /// The connection's handle, for channels that are answered later.
        handle: Handle,
        /// Routing is done.
        done: oneshot::Sender<()>,
    },
    /// The client opens a session channel.
    ChannelOpen {
        /// The channel.
        channel: Channel<Msg>,
        /// Accept, or refuse with this reason.
        reply: oneshot::Sender<Result<(), ChannelOpenFailure>>,
    },
    /// A terminal for a channel.
    Pty {
        /// The channel.
        channel: ChannelId,
        /// What the client asked for.
        params: PtyParams,
        /// Granted or not.
        reply: oneshot::Sender<bool>,
    },
    /// An environment variable the front door accepted (`[server] accept_env`).
    Env {
        /// The channel.
        channel: ChannelId,
        /// Its name.
        name: String,
        /// Its value.
        value: String,
    },
    /// A shell, command or subsystem; `problem` says why it cannot be run as sent (a NUL
    /// byte, a control character, invalid UTF-8).
    Start {
        /// The channel.
        channel: ChannelId,
        /// What to start.
        start: Start,
        /// Why it cannot run, if it cannot.
        problem: Option<String>,
        /// What to answer.
        reply: oneshot::Sender<StartReply>,
    },
    /// The client's terminal was resized.
    WindowChange {
        /// The channel.
        channel: ChannelId,
        /// Columns, rows, pixel width and height.
        size: (u32, u32, u32, u32),
    },
    /// A signal for the remote process.
    Signal {
        /// The channel.
        channel: ChannelId,
        /// Which.
        signal: Sig,
    },
    /// Keystrokes or stdin; replied to once there is room for more (flow control).
    Data {
        /// The channel.
        channel: ChannelId,
        /// The bytes.
        data: Bytes,
        /// Room again.
        room: oneshot::Sender<()>,
    },
    /// The client will send no more on a channel.
    Eof {
        /// The channel.
        channel: ChannelId,
    },
    /// The client closed a channel.
    Close {
        /// The channel.
        channel: ChannelId,
    },
}

/// The answer to a start request.
#[derive(Debug)]
pub enum StartReply {
    /// Relayed upstream: the upstream's answer.
    Relayed(bool),
    /// Accepted; the bastion serves the channel from now on (a dialog, a prompt, a watch).
    Serving,
    /// Accepted and answered at once: show this, exit with `status`, close.
    Answer {
        /// What to show.
        text: notice::Text,
        /// The exit status.
        status: u32,
    },
    /// Refused (no such channel).
    Failed,
}
