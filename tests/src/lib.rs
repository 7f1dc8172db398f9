//! The end-to-end harness: real parts only.
//!
//! * [`sshd::Sshd`]: OpenSSH sshd on a free loopback port, the upstream.
//! * [`bastion::Bastion`]: the `portcullis` binary with a test config; [`bastion::World`]
//!   puts one in front of an sshd with a user who may reach it.
//! * [`client::SshCommand`]: the stock `ssh`, `scp`, `sftp` and `rsync`, host key pinned.
//! * [`tmux::Tmux`]: interactive terminals.
//! * [`keys`]: keys and certificates via `ssh-keygen`.
//! * [`raw::RawSsh`]: a custom SSH client for what OpenSSH never sends.
//! * [`cluster::Cluster`]: several nodes sharing a real PostgreSQL ([`postgres::Postgres`]).
//! * [`browser::Browser`]: headless Chromium through ChromeDriver, for the web console.
//! * [`webhook::WebhookReceiver`]: an HTTPS webhook receiver ([`test_ca::TestCa`] signs its
//!   certificate), for the audit forwarder.
//! * [`rsyslog::Rsyslog`]: Debian's rsyslogd as a receiver (TCP, TLS or UDP), for the syslog forwarder.
//!
//! Scenarios live in `tests/`, one file per user story. Tests that check something is
//! blocked use harmless sentinels: the upstreams run as root on the developer's machine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod bastion;
pub mod browser;
pub mod client;
pub mod cluster;
pub mod disk;
pub mod in_process;
pub mod keys;
pub mod light_upstream;
pub mod postgres;
pub mod raw;
pub mod rsyslog;
pub mod sshd;
pub mod test_ca;
pub mod tmux;
pub mod util;
pub mod webhook;

pub use bastion::{Bastion, ConfigText, World};
pub use browser::Browser;
pub use client::SshCommand;
pub use cluster::Cluster;
pub use keys::Keypair;
pub use postgres::Postgres;
pub use sshd::{LocalUser, Sshd};
pub use tmux::Tmux;
pub use util::Ran;

/// `N` random bytes (for unique names and secrets).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("randomness");
    bytes
}
