//! One client connection, from accept to its audit record.
//!
//! ```text
//! accept ─▶ front::connection::run (owns the connection's lifetime)
//!             ├─ russh session loop ──▶ front::FrontHandler (auth; everything else an Event)
//!             │                             │ bounded queue, oneshot replies
//!             ├─ owner::Owner::run ◀────────┘ (route, channels, requests, data)
//!             │     ├─ route::decide ── authorize (the one policy check)
//!             │     └─ channel::open_relay ─▶ uplink task   (client → upstream)
//!             │                           └─▶ downlink task (upstream → client)
//!             ├─ guard::run: change feed ─▶ authorize again ─▶ end (locked, grant ended)
//!             ├─ waits on: client gone | SessionControl::end (shutdown, recording failure, …)
//!             └─ finish: channels drain, recordings sealed, upstream closed, `session.end` audited
//! ```
//!
//! * [`events`]: what the front door tells the owner; [`owner`]: the session's state and
//!   the one task that changes it.
//! * [`authorize`]: the policy check, with the locks and grants the state store holds;
//!   [`guard`]: re-runs it when the change feed says something that matters changed.
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
pub mod authorize;
pub mod channel;
pub mod console;
pub mod deadlines;
pub mod events;
pub mod guard;
pub mod login;
pub mod menu;
pub mod notice;
pub mod owner;
pub mod prompt;
pub mod route;
pub mod spectator;
pub mod terminal;

pub use crate::live::{EndReason, Identity, Notice, SessionControl, SessionShared, Side};
