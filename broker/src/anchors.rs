//! Anchors: what the evidence files looked like when the bastion last wrote them, kept
//! outside those files (in the state store), so cutting the end off a file — and its
//! integrity chain with it — or swapping in another genuine file shows.
//!
//! * `audit` (`audit:<node>` on a shared store): how many lines the audit log holds and the chain tag of the last one,
//!   updated with every line written.
//! * `recording:<id>`: a recording exists (`sealed = false`) from its creation; at its end,
//!   its line count and seal (`sealed = true`).
//!
//! The chain key makes lines unforgeable; the anchor makes their number and end provable.
//! The audit log and `recordings verify` are synchronous, so they wait for the store here
//! (the SQLite store answers from a thread of its own and needs no runtime for that).

use portcullis_state::{StateError, StateStore};

pub use portcullis_state::Anchor;

/// The audit log's anchor: `audit`, or `audit:<node>` when nodes share the store (each
/// keeps a log of its own).
pub fn audit(state: &dyn StateStore) -> String {
    match state.node() {
        Some(node) => format!("audit:{node}"),
        None => "audit".to_owned(),
    }
}

/// The anchor name of recording `id`.
pub fn recording(id: &str) -> String {
    format!("recording:{id}")
}

/// The anchor called `name`, waiting for the store.
pub fn get(state: &dyn StateStore, name: &str) -> Result<Option<Anchor>, StateError> {
    futures::executor::block_on(state.anchor(name))
}

/// Sets the anchor called `name`, waiting for the store.
pub fn set(state: &dyn StateStore, name: &str, anchor: Anchor) -> Result<(), StateError> {
    futures::executor::block_on(state.set_anchor(name, anchor))
}
