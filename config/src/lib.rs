//! portcullis configuration.
//!
//! How a config file becomes a [`Config`]:
//!
//! ```text
//! file ──load::load_file──▶ TOML syntax (every syntax error, located)
//!                          ─▶ schema::Config via serde (every unknown key, located)
//!                          ─▶ validate (names, references, value shapes: every problem)
//!                          ─▶ LoadedConfig { config, source }
//! ```
//!
//! * [`schema`]: the structs, one per TOML section, with defaults and a doc line per field.
//! * [`load`]: reading, parsing, collecting problems and finding their lines.
//! * [`validate`]: semantic checks serde cannot express.
//! * [`problem`]: [`Problem`] and [`KeyPath`], shared with the broker's own checks (SSH keys).
//! * [`secret`]: [`Secret<T>`], for password hashes and TOTP keys.
//! * [`base32`]: the TOTP secret encoding.
//! * [`glob`]: the `*`/`?` name patterns (shared with the policy).
//!
//! This crate does no I/O besides reading the file and knows nothing of SSH.

pub mod base32;
pub mod conditions;
pub mod glob;
pub mod load;
pub mod problem;
pub mod schema;
pub mod secret;
pub mod validate;

pub use load::{ConfigError, LoadedConfig, Source, from_toml_str, load_file};
pub use problem::{KeyPath, Problem};
pub use schema::*;
pub use secret::Secret;
