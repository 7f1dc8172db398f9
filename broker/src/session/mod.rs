//! One client connection, from accept to its audit record.
//!
//! ```text
//! accept ─▶ ssh::connection::run (owns the connection's lifetime)
//!             ├─ russh session loop ──▶ ssh::FrontHandler (auth; everything else an Event)
//!             │                             │ bounded queue, oneshot replies
//!             ├─ owner::Owner::run ◀────────┘ (route, channels, requests, data)
//!             │     ├─ route::decide ── authorize (the one policy check) ─▶ Authorized
//!             │     ├─ relay::open_relay ─▶ uplink task   (client → upstream)
//!             │     │                    └─▶ downlink task (upstream → client)
//!             │     └─ bastion::{menu, prompt, spectator}, activation (the bastion answers)
//!             ├─ guard::run: change feed ─▶ authorize again ─▶ end (locked, grant ended)
//!             │                           └─ a kill for this session ─▶ end (killed)
//!             ├─ deadlines: idle timeout, the grant's end (on the services' clock)
//!             ├─ waits on: client gone | SessionControl::end (shutdown, recording failure, …)
//!             │    then says goodbye to the client (disconnect with the reason)
//!             └─ owner: Phase::Closing ─▶ finish: channels drain, recordings sealed,
//!                upstream closed, `session.end` audited with its reason and side
//!                (live::EndReason, live::Side), the end written to the session index
//! ```
//!
//! * [`events`]: what the front door tells the owner; [`owner`]: the session's phase and
//!   channels, and the one task that changes them; [`phase`]: authenticating → authorized
//!   → relaying → closing, each with what the session has then; [`finish`]: the end, from
//!   the closing phase, always run.
//! * [`authorize`]: the policy check, with the locks and grants the state store holds; a yes
//!   is an [`crate::authorized::Authorized`] (decision and resolved target). [`guard`]
//!   re-runs it when the change feed says something that matters changed.
//! * [`login`]: `USER+TARGET` parsing.
//! * [`route`]: after authentication, where the connection goes (target, menu, activation,
//!   refusal), and the upstream connection it starts.
//! * [`activation`]: just-in-time activation asked for on the user's terminal, then the
//!   channel relayed once the grant exists.
//! * [`deadlines`]: the idle timeout and the grant's end, watched beside the session.
//! * [`index`]: the session's row in the state store's index, from start to end; at the
//!   next start, the sessions a crashed run left open are ended and [`abandoned`] seals
//!   their recordings.

pub mod abandoned;
pub mod activation;
pub mod authorize;
pub mod deadlines;
pub mod events;
pub mod finish;
pub mod guard;
pub mod index;
pub mod login;
pub mod owner;
pub mod phase;
pub mod route;

pub use crate::live::{EndReason, Identity, Notice, SessionControl, SessionShared, Side};
