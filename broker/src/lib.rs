//! portcullis: a privileged-access SSH session broker.
//!
//! How a session moves through the crate:
//!
//! ```text
//! server::Server (accept, connection limit)
//!   └─ session::supervisor::run ── one task per connection, always ends in `finish`
//!        └─ front::FrontHandler (russh server)
//!             ├─ front::auth ── keys, certificates, password (+TOTP), throttling
//!             ├─ session::route ── policy::Policy::check → Authorization → upstream::connect
//!             │                      (pinned host key, vaulted credential)
//!             └─ session::channel ── uplink/downlink tasks per channel, recorder tee
//! audit::AuditLog ◀── every step;  vault::Vault ◀── credentials
//! access (locks, just-in-time) ──▶ portcullis_state::StateStore (state.db) ──▶ change feed
//! ```
//!
//! * [`server`]: the shared [`server::Broker`] state, binding and the accept loop.
//! * [`front`]: the SSH front door (authentication, the russh handler).
//! * [`upstream`]: the SSH client side (host-key pinning, credential injection).
//! * [`session`]: supervision, routing, the channel relay, bastion messages and menu.
//! * [`vault`]: sealed credentials, kept by the state store (`portcullis_state`).
//! * [`access`]: just-in-time activation, reviews and locks, as operations.
//! * [`audit`]: the hash-chained audit log; [`anchors`]: where it and each recording
//!   ended, kept outside the files.
//! * [`directory`]: identities from the config, parsed (keys, CAs, host keys).
//! * [`evidence`]: a recording checked against its anchor and the audit log.
//! * [`admin`]: the HTTPS admin API; [`ops`]: kill; [`watch`]: following a live
//!   recording; [`catalog`]: recordings on disk.
//! * [`registry`], [`metrics`]: live sessions, counters.
//! * [`datadir`], [`hostkey`], [`ids`]: files, the host key, identifiers.
//! * [`text`]: client text made safe to show (escapes), and commands checked for what sshd
//!   would cut or misread.
//! * [`cli`]: the `portcullis` command line.

pub mod access;
pub mod admin;
pub mod anchors;
pub mod audit;
pub mod catalog;
pub mod cli;
pub mod datadir;
pub mod directory;
pub mod evidence;
pub mod front;
pub mod hostkey;
pub mod ids;
pub mod metrics;
pub mod ops;
pub mod registry;
pub mod server;
pub mod session;
pub mod text;
pub mod upstream;
pub mod vault;
pub mod watch;
