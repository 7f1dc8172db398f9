//! Access as operations: just-in-time activation and its reviews, and locks. Each operation
//! validates its inputs, applies the policy crate's rules, writes through the state store
//! (which tells every subscriber: waiting logins, sessions, other nodes), audits what
//! happened and ends the sessions it must.
//!
//! ```text
//! ssh menu · activation dialog · gate (review) · admin API
//!        └──▶ access::{jit, locks} ──▶ policy (rules) ──▶ state (rows, change feed) ──▶ audit
//! ```
//!
//! * [`jit`]: activate, approve, deny, cancel, revoke, acknowledge, expire; command lines
//!   held for review; what people list.
//! * [`locks`]: lock and unlock users.
//! * [`AccessError`]: every refusal, as a sentence for whoever asked.

pub mod checkout;
mod error;
pub mod jit;
pub mod locks;

pub use error::AccessError;
