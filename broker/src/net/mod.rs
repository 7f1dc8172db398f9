//! Connections below SSH: which ones are admitted (pre-login slots per address and in all,
//! session permits), and the stream wrapper that lets a session cut its connections.
//!
//! * [`admission`]: the two connection budgets.
//! * [`severable`]: a stream the session can cut whatever state the SSH library is in.
//! * [`tls_files`]: PEM certificates and keys, and a server's name, for every TLS setup.

pub mod admission;
pub mod severable;
pub mod tls_files;
