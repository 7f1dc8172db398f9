//! What people prove themselves with, and the brakes on guessing: argon2 password hashes,
//! TOTP codes, and the throttle that counts failures per address and per user and method.
//!
//! * [`password`]: argon2 hashing and verification (with a decoy for unknown users).
//! * [`totp`]: RFC 6238 codes; the steps used are kept by the state store.
//! * [`throttle`]: failure counts (kept by the state store), reservations before each
//!   verification, audit budgets.

pub mod password;
pub mod throttle;
pub mod totp;
