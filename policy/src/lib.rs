//! portcullis policy: pure access decisions.
//!
//! ```text
//! Config ──Policy::new──▶ Policy ──check(user, target, now)──▶ Ok(Authorization) | Err(Denied)
//!                                └─reachable(user)──────────▶ [Reachable]
//! ```
//!
//! * [`access`]: roles → who may reach what; the [`Authorization`] proof type.
//! * [`jit`]: just-in-time access: eligibility, activation, approval, grants.
//! * [`commands`]: command control: the rule a command line meets.
//! * [`clock`]: where the bastion's time comes from ([`SystemClock`], or a [`ManualClock`]
//!   that tests advance).
//!
//! No I/O and no clock read inside a decision: the caller passes `now` (from its
//! [`Clock`]), so every decision is a pure function of (config, inputs, time) and is tested
//! exhaustively.

pub mod access;
pub mod clock;
pub mod commands;
pub mod jit;
mod prefilter;

/// The name globs, from the config crate (validation needs them too).
pub use portcullis_config::glob;

pub use access::{Authorization, Denied, Lock, Policy, PolicyError, Reachable};
pub use clock::{Clock, ManualClock, SystemClock};
pub use commands::{CommandRule, CommandRules, sample_rules_toml};
pub use jit::{
    ActivationError, ActivationPath, ConditionFailed, Conditions, Eligibility, Grant, Request,
    RequestKind, RequestState, ReviewRefused, Reviewer,
};
