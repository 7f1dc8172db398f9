//! The bastion's own terminal app: what a user meets when the bastion itself answers
//! (no target in the login, an activation to ask for, a refusal to explain, a session to
//! watch).
//!
//! * [`menu`]: the command interface (`targets`, `request`, `approve`, `watch`, …) and its
//!   wording; [`prompt`] runs it interactively.
//! * [`console`], [`terminal`]: conversations on a channel (line editing, questions, keys).
//! * [`notice`]: messages from the bastion to the client's terminal.
//! * [`spectator`]: `watch ID` over ssh, streaming another session read-only.

pub mod console;
pub mod menu;
pub mod notice;
pub mod prompt;
pub mod spectator;
pub mod terminal;
