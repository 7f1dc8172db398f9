//! The upstream side: portcullis as an SSH client of the target.
//!
//! [`connect`] takes an [`Authorized`] (the proof policy allowed this user to reach this
//! target now, bound to that target's entry) and nothing reaches a target without one. It connects within a deadline,
//! refuses any host key but the pinned one, and logs in as the target's `login` with the
//! vaulted credential, or with a certificate made for that one login
//! ([`certificate`]). The user never sees either; errors never contain them.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client;
use russh::keys::PublicKeyOrCertificate;
use russh::keys::key::PrivateKeyWithHashAlg;
use russh::keys::ssh_key::{HashAlg, PublicKey};
use russh::{Preferred, cipher};
use tokio_util::sync::CancellationToken;

use crate::authorized::Authorized;
use crate::directory::{TargetEntry, UpstreamAuth};
use crate::net::severable::Severable;
use crate::vault::{Credential, Vault, VaultError};

pub mod certificate;
mod lost;

use certificate::LoginCertificate;
pub use certificate::LoginFor;

pub use lost::OnLost;
use lost::{KeepaliveBound, LostAlarm};

/// Why the upstream could not be used. Every message is safe to show the user.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// TCP connect failed.
    #[error("cannot connect to {address}: {reason}")]
    Unreachable {
        /// `host:port`.
        address: String,
        /// What the OS said.
        reason: String,
    },
    /// Nothing answered in time.
    #[error("no answer from {address} within {}", humantime::format_duration(*after))]
    Timeout {
        /// `host:port`.
        address: String,
        /// The deadline.
        after: Duration,
    },
    /// The target presented a host key other than the pinned one.
    #[error(
        "the host key of {address} does not match the pinned key (expected {expected}, got {presented}); refusing to connect"
    )]
    HostKeyMismatch {
        /// `host:port`.
        address: String,
        /// Pinned key fingerprint.
        expected: String,
        /// Presented key fingerprint.
        presented: String,
    },
    /// The SSH handshake failed for another reason.
    #[error("SSH handshake with {address} failed: {reason}")]
    Handshake {
        /// `host:port`.
        address: String,
        /// russh's description.
        reason: String,
    },
    /// The vault could not provide the credential.
    #[error("credential {name:?} is unavailable: {source}")]
    Credential {
        /// The vault entry.
        name: String,
        /// Why.
        source: VaultError,
    },
    /// The target refused the credential.
    #[error("{address} refused the vaulted credential for {login}")]
    LoginRefused {
        /// `host:port`.
        address: String,
        /// The upstream account.
        login: String,
    },
    /// The target refused the login certificate.
    #[error(
        "{address} refused the bastion's certificate for {login} (does its TrustedUserCAKeys \
         hold the CA `portcullis ca show` prints?)"
    )]
    CertificateRefused {
        /// `host:port`.
        address: String,
        /// The upstream account.
        login: String,
    },
    /// The target refused to open a channel.
    #[error("the target refused to open a channel: {reason}")]
    ChannelRefused {
        /// russh's description.
        reason: String,
    },
}

impl UpstreamError {
    /// A short code for audit records.
    pub fn code(&self) -> &'static str {
        match self {
            UpstreamError::Unreachable { .. } => "unreachable",
            UpstreamError::Timeout { .. } => "timeout",
            UpstreamError::HostKeyMismatch { .. } => "host_key_mismatch",
            UpstreamError::Handshake { .. } => "handshake",
            UpstreamError::Credential { .. } => "credential",
            UpstreamError::LoginRefused { .. } | UpstreamError::CertificateRefused { .. } => {
                "login_refused"
            }
            UpstreamError::ChannelRefused { .. } => "channel_refused",
        }
    }
}

/// Checks the target's host key against the pinned one and remembers what it saw; once
/// logged in, tells the session if the connection is lost.
struct PinnedHostKey {
    expected: PublicKey,
    mismatch: Arc<Mutex<Option<String>>>,
    lost: LostAlarm,
    keepalive: KeepaliveBound,
}

impl client::Handler for PinnedHostKey {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let presented = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.key_data().clone(),
            // A host certificate is only as good as its key here: we pin keys, not CAs.
            PublicKeyOrCertificate::Certificate(cert) => cert.public_key().clone(),
        };
        if &presented == self.expected.key_data() {
            return Ok(true);
        }
        let fingerprint = presented.fingerprint(HashAlg::Sha256).to_string();
        if let Ok(mut slot) = self.mismatch.lock() {
            *slot = Some(fingerprint);
        }
        Ok(false)
    }

    async fn disconnected(
        &mut self,
        reason: client::DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        self.lost.ring(lost::describe(&reason, self.keepalive));
        match reason {
            client::DisconnectReason::ReceivedDisconnect(_) => Ok(()),
            client::DisconnectReason::Error(error) => Err(error),
        }
    }
}

/// A logged-in upstream connection.
pub struct Upstream {
    handle: client::Handle<PinnedHostKey>,
    address: String,
    lost: LostAlarm,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("address", &self.address)
            .finish()
    }
}

/// The client config for a target: only its pinned key's algorithm is offered (so
/// negotiation cannot pick another of the target's keys), AES-GCM preferred (AES-NI makes it
/// the fastest on the relay's hot path).
pub fn client_config(target: &TargetEntry, keepalive: Duration) -> client::Config {
    client::Config {
        preferred: Preferred {
            key: Cow::Owned(vec![target.host_key.algorithm()]),
            cipher: Cow::Borrowed(&[
                cipher::AES_128_GCM,
                cipher::AES_256_GCM,
                cipher::CHACHA20_POLY1305,
            ]),
            ..Preferred::DEFAULT
        },
        nodelay: true,
        keepalive_interval: Some(keepalive),
        keepalive_max: 3,
        window_size: 4 * 1024 * 1024,
        ..client::Config::default()
    }
}

/// What the login upstream is made with.
enum LoginSecret {
    Vaulted(Credential),
    Certificate(Box<LoginCertificate>),
}

/// Connects and logs in to the authorized target, for `login`; cancelling `sever` cuts the
/// connection. If the connection is lost after the login (not ended by the bastion),
/// `on_lost` is told what happened.
pub async fn connect(
    authorized: &Authorized,
    vault: &Vault,
    config: client::Config,
    deadline: Duration,
    sever: CancellationToken,
    on_lost: OnLost,
    login: &LoginFor,
) -> Result<Upstream, UpstreamError> {
    let target = authorized.target();
    let secret = match &target.auth {
        UpstreamAuth::Vaulted(name) => {
            LoginSecret::Vaulted(vault.get(name).await.map_err(|source| {
                UpstreamError::Credential {
                    name: name.clone(),
                    source,
                }
            })?)
        }
        UpstreamAuth::Certificate => {
            let unavailable = |source| UpstreamError::Credential {
                name: "the bastion's user CA".into(),
                source,
            };
            let ca = vault.user_ca().await.map_err(unavailable)?;
            LoginSecret::Certificate(Box::new(
                certificate::issue(&ca, &target.login, login, std::time::SystemTime::now())
                    .map_err(unavailable)?,
            ))
        }
    };
    match tokio::time::timeout(deadline, connect_and_login(target, secret, config, sever)).await {
        Ok(Ok(upstream)) => {
            upstream.lost.arm(on_lost);
            Ok(upstream)
        }
        Ok(Err(error)) => Err(error),
        Err(_) => Err(UpstreamError::Timeout {
            address: target.address.clone(),
            after: deadline,
        }),
    }
}

/// Logs in to `target` with `credential` (not the one its entry names: rotation tries a
/// new secret before it is committed). Nothing is told if the connection is lost.
pub async fn login_with(
    target: &TargetEntry,
    credential: Credential,
    deadline: Duration,
) -> Result<Upstream, UpstreamError> {
    let config = client_config(target, Duration::from_secs(15));
    let login = connect_and_login(
        target,
        LoginSecret::Vaulted(credential),
        config,
        CancellationToken::new(),
    );
    match tokio::time::timeout(deadline, login).await {
        Ok(result) => result,
        Err(_) => Err(UpstreamError::Timeout {
            address: target.address.clone(),
            after: deadline,
        }),
    }
}

async fn connect_and_login(
    target: &TargetEntry,
    secret: LoginSecret,
    config: client::Config,
    sever: CancellationToken,
) -> Result<Upstream, UpstreamError> {
    let address = target.address.clone();
    let stream = tokio::net::TcpStream::connect(&address)
        .await
        .map_err(|e| UpstreamError::Unreachable {
            address: address.clone(),
            reason: describe_io_error(&e),
        })?;
    let _ = stream.set_nodelay(true);
    // The session can cut this connection whatever state russh is in.
    let stream = Severable::new(stream, sever);

    let mismatch = Arc::new(Mutex::new(None));
    let lost = LostAlarm::default();
    let handler = PinnedHostKey {
        expected: target.host_key.clone(),
        mismatch: mismatch.clone(),
        lost: lost.clone(),
        keepalive: KeepaliveBound {
            interval: config.keepalive_interval.unwrap_or_default(),
            max_unanswered: config.keepalive_max,
        },
    };
    let handshake_error = |error: russh::Error| {
        let presented = mismatch.lock().ok().and_then(|slot| slot.clone());
        match presented {
            Some(presented) => UpstreamError::HostKeyMismatch {
                address: address.clone(),
                expected: target.host_key.fingerprint(HashAlg::Sha256).to_string(),
                presented,
            },
            None => UpstreamError::Handshake {
                address: address.clone(),
                reason: error.to_string(),
            },
        }
    };

    let mut handle = client::connect_stream(Arc::new(config), stream, handler)
        .await
        .map_err(handshake_error)?;
    let certificate = matches!(secret, LoginSecret::Certificate(_));
    let result = match secret {
        LoginSecret::Vaulted(Credential::PrivateKey(key)) => {
            handle
                .authenticate_publickey(&target.login, PrivateKeyWithHashAlg::new(key, None))
                .await
        }
        LoginSecret::Vaulted(Credential::Password(password)) => {
            handle
                .authenticate_password(&target.login, password.expose().as_str())
                .await
        }
        LoginSecret::Certificate(issued) => {
            let LoginCertificate { key, certificate } = *issued;
            handle
                .authenticate_openssh_cert(&target.login, key, certificate)
                .await
        }
    }
    .map_err(handshake_error)?;
    if !result.success() {
        let login = target.login.clone();
        return Err(if certificate {
            UpstreamError::CertificateRefused { address, login }
        } else {
            UpstreamError::LoginRefused { address, login }
        });
    }
    Ok(Upstream {
        handle,
        address,
        lost,
    })
}

fn describe_io_error(error: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match error.kind() {
        ConnectionRefused => "connection refused (is sshd running there?)".into(),
        HostUnreachable | NetworkUnreachable => "no route to the host".into(),
        TimedOut => "timed out".into(),
        _ => error.to_string(),
    }
}

impl Upstream {
    /// `host:port` of the target.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Opens a session channel on the target.
    pub async fn open_session_channel(&self) -> Result<russh::Channel<client::Msg>, UpstreamError> {
        self.handle
            .channel_open_session()
            .await
            .map_err(|e| UpstreamError::ChannelRefused {
                reason: e.to_string(),
            })
    }

    /// Runs `command` with `stdin`, for the bastion's own work on the target (rotation):
    /// its exit status and what it wrote on stderr (at most 4 KiB, for messages).
    pub async fn run(&self, command: &str, stdin: &[u8]) -> Result<(u32, String), UpstreamError> {
        let refused = |e: russh::Error| UpstreamError::ChannelRefused {
            reason: e.to_string(),
        };
        let mut channel = self.open_session_channel().await?;
        channel.exec(true, command).await.map_err(refused)?;
        if !stdin.is_empty() {
            channel.data(stdin).await.map_err(refused)?;
        }
        channel.eof().await.map_err(refused)?;
        let mut status = None;
        let mut stderr = Vec::new();
        while let Some(message) = channel.wait().await {
            match message {
                russh::ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                russh::ChannelMsg::ExtendedData { data, .. } if stderr.len() < 4096 => {
                    stderr.extend_from_slice(&data[..data.len().min(4096 - stderr.len())]);
                }
                russh::ChannelMsg::Close => break,
                _ => {}
            }
        }
        let stderr = String::from_utf8_lossy(&stderr).trim().to_owned();
        status
            .map(|status| (status, stderr))
            .ok_or_else(|| UpstreamError::ChannelRefused {
                reason: "the command ended without an exit status".into(),
            })
    }

    /// Ends the connection politely (its end is the bastion's doing: nobody is told it
    /// was lost).
    pub async fn disconnect(&self, reason: &str) {
        self.lost.disarm();
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, reason, "en")
            .await;
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        // Dropping the handle ends the connection: that is not a loss either.
        self.lost.disarm();
    }
}
