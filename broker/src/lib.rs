//! portcullis: a privileged-access SSH session broker.
//!
//! How a connection moves through the crate:
//!
//! ```text
//! app::Server (accept) ── net::admission (pre-login slot) ──▶ front::connection::run
//!   └─ russh server ── front::FrontHandler (thin adapter)
//!        ├─ front::auth ── credentials (password, TOTP, throttle) ── session permit
//!        └─ Event (bounded queue) ──▶ session::owner::Owner (one task per connection)
//!             ├─ session::route ── session::authorize (the one policy check)
//!             │                      → Authorization → upstream (pinned key, vault)
//!             ├─ session::channel ── relay per channel (uplink, downlink, gate, recording)
//!             └─ session::{menu, activation, prompt} ── the bastion's own terminal app
//!        session::guard ◀── change feed: re-authorizes, ends the session on a no
//! access (just-in-time operations, locks) ──▶ portcullis_state (rows, change feed)
//! live::SessionShared ◀── registry, watch, metrics, ops (kill)
//! audit ◀── every step (anchored by `anchors`);  vault ◀── credentials upstream
//! ```
//!
//! Modules, lowest first (each imports only modules above it in this list, never back):
//! * [`text`], [`ids`], [`datadir`], [`directory`], [`catalog`]: plain helpers and data.
//! * [`anchors`], [`audit`], [`evidence`]: the audit log, and evidence checked against its
//!   anchors.
//! * [`vault`], [`hostkey`], [`credentials`], [`net`], [`upstream`]: secrets, proofs,
//!   connection budgets, the SSH client side.
//! * [`live`], [`registry`], [`metrics`]: a live connection's shared record; the set of them;
//!   counters.
//! * [`services`]: what everything above shares, opened before anything is bound.
//! * [`access`]: just-in-time activation, reviews and locks, as operations.
//! * [`watch`], [`session`]: following a live recording; routing, the relay, the bastion's
//!   own terminal app.
//! * [`front`], [`app`]: the SSH front door and the accept loop.
//! * [`ops`], [`admin`], [`cli`]: kill; the HTTPS admin API; the `portcullis` command line.

pub mod access;
pub mod admin;
pub mod anchors;
pub mod app;
pub mod audit;
pub mod authorized;
pub mod catalog;
pub mod cli;
pub mod credentials;
pub mod datadir;
pub mod directory;
pub mod evidence;
pub mod front;
pub mod hostkey;
pub mod ids;
pub mod live;
pub mod metrics;
pub mod net;
pub mod ops;
pub mod registry;
pub mod services;
pub mod session;
pub mod text;
pub mod upstream;
pub mod vault;
pub mod watch;
