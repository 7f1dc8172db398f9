//! portcullis policy: pure access decisions.
//!
//! ```text
//! Config ──Policy::new──▶ Policy ──check(user, target, now)──▶ Ok(Authorization) | Err(Denied)
//!                                └─reachable(user)──────────▶ [Reachable]
//! ```
//!
//! * [`access`]: roles → who may reach what; the [`Authorization`] proof type.
//! * [`jit`]: just-in-time access: eligibility, activation, approval, grants.
//! * [`glob`]: the `*`/`?` patterns roles use for target names.
//!
//! No I/O and no clock of its own: the caller passes `now`, so every decision is a pure
//! function of (config, inputs, time) and is tested exhaustively.

pub mod access;
pub mod glob;
pub mod jit;

pub use access::{Authorization, Denied, Lock, Policy, PolicyError, Reachable};
pub use jit::{
    ActivationError, ActivationPath, Eligibility, Grant, Request, RequestState, ReviewRefused,
};
