//! One client connection, from accept to its audit record.
//!
//! ```text
//! accept ─▶ front::connection::run (owns the connection's lifetime)
//!             ├─ russh session loop ──▶ front::FrontHandler (auth, routing, channel requests)
//!             │                           └─ channel::open_relay ─▶ uplink task   (client → upstream)
//!             │                                                 └─▶ downlink task (upstream → client)
//!             ├─ waits on: client gone | SessionControl::end (shutdown, recording failure, …)
//!             └─ finish: channels drain, recordings sealed, upstream closed, `session.end` audited
//! ```
//!
//! * [`login`]: `USER+TARGET` parsing.
//! * [`route`]: after authentication, where the connection goes (target, menu, refusal).
//! * [`channel`]: the relay of one SSH channel, both directions, with recording.
//! * [`notice`]: messages from the bastion itself to the client's terminal.
//! * [`menu`]: the bastion's own command interface (no target in the login); [`prompt`]
//!   runs it interactively.
//! * [`activation`]: just-in-time activation asked for on the user's terminal.
//! * [`console`], [`terminal`]: conversations on a channel (line editing, questions).
//! * [`spectator`]: `watch ID` over ssh, streaming another session read-only.
//! * [`deadlines`]: the idle timeout and the grant's end, watched beside the session.

pub mod activation;
pub mod channel;
pub mod console;
pub mod deadlines;
pub mod login;
pub mod menu;
pub mod notice;
pub mod prompt;
pub mod route;
pub mod spectator;
pub mod terminal;

pub use crate::live::{EndReason, Identity, Notice, SessionControl, SessionShared};
