//! portcullis: a privileged-access SSH session broker.
//!
//! How a connection moves through the crate:
//!
//! ```text
//! app::serve (accept) ── net::admission (pre-login slot) ──▶ ssh::connection::run
//!   └─ russh server ── ssh::FrontHandler (thin adapter)
//!        ├─ ssh::auth ── credentials (password, TOTP, throttle) ── session permit
//!        └─ Event (bounded queue) ──▶ session::owner::Owner (one task per connection)
//!             ├─ session::route ── session::authorize (the one policy check)
//!             │                      → authorized::Authorized → upstream (pinned key, vault)
//!             ├─ relay ── per channel: uplink, downlink, gate (command control), recording
//!             └─ bastion::{menu, prompt, spectator}, session::activation ── the bastion's
//!                own terminal app
//!        session::guard ◀── change feed: re-authorizes, ends the session on a no
//! access (just-in-time operations, locks) ──▶ portcullis_state (rows, change feed)
//! live::SessionShared ◀── registry, watch, metrics;  ops::kill ──▶ change feed ──▶ guard
//! audit ◀── every step (anchored by `anchors`);  vault ◀── credentials upstream
//! services::Services ── what all of it shares, with the clock (portcullis_policy::Clock)
//! ```
//!
//! Modules, lowest first (each imports only modules above it in this list, never back):
//! * [`text`], [`ids`], [`datadir`], [`directory`], [`catalog`], [`authorized`]: plain
//!   helpers and data; policy's yes bound to its target.
//! * [`anchors`], [`audit`], [`evidence`]: the audit log, and evidence checked against its
//!   anchors.
//! * [`vault`], [`hostkey`], [`credentials`], [`net`], [`upstream`]: secrets, proofs,
//!   connection budgets, the SSH client side.
//! * [`live`], [`registry`], [`metrics`]: a live connection's shared record (and why it
//!   ended, from which side); the set of them; counters.
//! * [`services`]: what everything above shares, opened before anything is bound.
//! * [`access`]: just-in-time activation, reviews and locks, as operations.
//! * [`watch`], [`bastion`]: following a live recording; the bastion's own terminal app.
//! * [`relay`]: one channel relayed both ways, recorded, with command control.
//! * [`session`]: one connection's owner: routing, the policy check and its re-checks,
//!   activation, deadlines.
//! * [`ssh`]: the SSH front door (thin handler, authentication, a connection's lifetime).
//! * [`ops`], [`admin`]: kill; the HTTPS admin API.
//! * [`app`], [`cli`]: the running service (accept loop, drain); the `portcullis` command
//!   line.

pub mod access;
pub mod admin;
pub mod alerts;
pub mod anchors;
pub mod api_client;
pub mod app;
pub mod audit;
pub mod audit_query;
pub mod audit_ship;
pub mod audit_tail;
pub mod authorized;
pub mod bastion;
pub mod catalog;
pub mod cli;
pub mod cli_events;
pub mod cluster;
pub mod cluster_secret;
pub mod credentials;
pub mod datadir;
pub mod directory;
pub mod evidence;
pub mod forward;
pub mod hostkey;
pub mod ids;
pub mod live;
pub mod metrics;
pub mod net;
pub mod ops;
pub mod registry;
pub mod relay;
pub mod rotation;
pub mod services;
pub mod session;
pub mod ssh;
pub mod state_backend;
pub mod text;
pub mod upstream;
pub mod vault;
pub mod watch;
