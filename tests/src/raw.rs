//! A custom SSH client (russh) for what the stock `ssh` never sends: a 65535×65535 terminal,
//! floods of window changes, NUL bytes in a command, arbitrary environment variables, many
//! keyboard-interactive logins answered at the same instant. It pins the bastion's host key
//! like the real client does.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use russh::client::{self, Handle, KeyboardInteractiveAuthResponse, Msg};
use russh::keys::key::PrivateKeyWithHashAlg;
use russh::keys::ssh_key::PublicKey;
use russh::keys::{PublicKeyOrCertificate, load_secret_key};
use russh::{Channel, ChannelMsg};

use crate::keys::Keypair;

/// Accepts only the pinned host key.
pub struct Pinned(PublicKey);

impl client::Handler for Pinned {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(
            matches!(key, PublicKeyOrCertificate::PublicKey { key, .. } if key.key_data() == self.0.key_data()),
        )
    }
}

/// One connection to the bastion.
pub struct RawSsh {
    /// The russh handle, for anything the helpers below do not cover.
    pub handle: Handle<Pinned>,
}

/// What a command sent back.
#[derive(Default, Clone)]
pub struct Output {
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
    /// Exit status, if one came.
    pub status: Option<u32>,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output")
            .field("stdout", &self.stdout_text())
            .field("stderr", &self.stderr_text())
            .field("status", &self.status)
            .finish()
    }
}

impl Output {
    /// stdout as text.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stderr as text.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

impl RawSsh {
    /// Connects and checks the host key (an OpenSSH public key line).
    pub async fn connect(address: SocketAddr, host_key: &str) -> Result<Self, russh::Error> {
        Self::connect_from(IpAddr::from([127, 0, 0, 1]), address, host_key).await
    }

    /// Connects from a chosen loopback address (127.0.0.0/8 is all local), so one test can
    /// be several clients.
    pub async fn connect_from(
        source: IpAddr,
        address: SocketAddr,
        host_key: &str,
    ) -> Result<Self, russh::Error> {
        let pinned = PublicKey::from_openssh(host_key).expect("a host key line");
        let config = client::Config {
            inactivity_timeout: Some(Duration::from_secs(120)),
            ..client::Config::default()
        };
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(source, 0))?;
        let stream = socket.connect(address).await?;
        let handle = client::connect_stream(Arc::new(config), stream, Pinned(pinned)).await?;
        Ok(Self { handle })
    }

    /// Public key login; true if accepted.
    pub async fn login_key(&mut self, user: &str, key: &Keypair) -> bool {
        let secret = load_secret_key(&key.private, None).expect("a private key");
        self.handle
            .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(secret), None))
            .await
            .is_ok_and(|r| r.success())
    }

    /// Starts keyboard-interactive: the prompts' texts, or `None` if the bastion refused at once.
    pub async fn kbd_prompts(&mut self, user: &str) -> Option<Vec<String>> {
        match self
            .handle
            .authenticate_keyboard_interactive_start(user, None)
            .await
        {
            Ok(KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. }) => {
                Some(prompts.into_iter().map(|p| p.prompt).collect())
            }
            _ => None,
        }
    }

    /// Answers the keyboard-interactive prompts; true if that logged in.
    pub async fn kbd_answer(&mut self, answers: Vec<String>) -> bool {
        matches!(
            self.handle
                .authenticate_keyboard_interactive_respond(answers)
                .await,
            Ok(KeyboardInteractiveAuthResponse::Success)
        )
    }

    /// Opens a session channel.
    pub async fn session(&self) -> Channel<Msg> {
        self.handle
            .channel_open_session()
            .await
            .expect("a session channel")
    }
}

/// Reads a channel until it closes (or `patience` passes): output, errors, exit status.
pub async fn collect(channel: &mut Channel<Msg>, patience: Duration) -> Output {
    let mut output = Output::default();
    let _ = tokio::time::timeout(patience, async {
        while let Some(message) = channel.wait().await {
            match message {
                ChannelMsg::Data { data } => output.stdout.extend_from_slice(&data),
                ChannelMsg::ExtendedData { data, ext: 1 } => output.stderr.extend_from_slice(&data),
                ChannelMsg::ExitStatus { exit_status } => output.status = Some(exit_status),
                ChannelMsg::Close => break,
                _ => {}
            }
        }
    })
    .await;
    output
}

/// Runs `command` (raw bytes, as a custom client may send them) on a new channel.
pub async fn exec(ssh: &RawSsh, command: &[u8]) -> Output {
    let mut channel = ssh.session().await;
    channel
        .exec(true, command.to_vec())
        .await
        .expect("send exec");
    let output = collect(&mut channel, Duration::from_secs(60)).await;
    // Answer the bastion's close, as OpenSSH does, so the channel is gone on both sides.
    let _ = channel.close().await;
    output
}

/// A runtime for a test that drives [`RawSsh`] from synchronous code.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Reads a channel's output until it contains `needle` (true) or `patience` passes (false).
pub async fn read_until(channel: &mut Channel<Msg>, needle: &str, patience: Duration) -> bool {
    let mut seen = Vec::new();
    tokio::time::timeout(patience, async {
        while let Some(message) = channel.wait().await {
            if let ChannelMsg::Data { data } | ChannelMsg::ExtendedData { data, .. } = message {
                seen.extend_from_slice(&data);
                if String::from_utf8_lossy(&seen).contains(needle) {
                    return true;
                }
            }
        }
        false
    })
    .await
    .unwrap_or(false)
}

/// Opens a terminal of `cols` × `rows` and starts a shell on it.
pub async fn shell(ssh: &RawSsh, cols: u32, rows: u32) -> Channel<Msg> {
    let channel = ssh.session().await;
    channel
        .request_pty(true, "xterm", cols, rows, 0, 0, &[])
        .await
        .expect("pty request");
    channel.request_shell(true).await.expect("shell request");
    channel
}

/// The resident and peak memory of a process, in KiB (VmRSS and VmHWM).
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}
