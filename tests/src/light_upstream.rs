//! A light SSH server (russh) for the load harness: thousands of idle sessions behind the
//! bastion would need thousands of OpenSSH sshd processes, which do not fit beside the
//! bastion on a 2-core machine. It accepts the keys it was told to, opens session channels,
//! grants terminals, prints a prompt for a shell and echoes back whatever a channel sends
//! (like `cat` on a terminal in raw mode). Everything else correctness depends on runs
//! against real sshd.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use russh::keys::ssh_key::PublicKey;
use russh::server::{self, Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId, Pty};
use tokio::net::TcpListener;

use crate::keys::Keypair;

/// A running light upstream.
pub struct LightUpstream {
    /// Where it listens.
    pub address: SocketAddr,
    /// Its host key, as a target pins it.
    pub host_key: String,
    authorized: Arc<Mutex<Vec<PublicKey>>>,
    accepting: tokio::task::JoinHandle<()>,
}

impl LightUpstream {
    /// Starts listening on a free loopback port (inside a tokio runtime).
    pub async fn start(dir: &Path) -> Self {
        let host = Keypair::generate(dir, "light_upstream_host");
        let key = russh::keys::load_secret_key(&host.private, None).expect("host key");
        let config = Arc::new(server::Config {
            keys: vec![key],
            nodelay: true,
            inactivity_timeout: None,
            ..server::Config::default()
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let authorized = Arc::new(Mutex::new(Vec::new()));
        let keys = authorized.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let handler = Echo {
                    authorized: keys.clone(),
                };
                let config = config.clone();
                tokio::spawn(async move {
                    if let Ok(running) = server::run_stream(config, stream, handler).await {
                        let _ = running.await;
                    }
                });
            }
        });
        Self {
            address,
            host_key: host.public,
            authorized,
            accepting,
        }
    }

    /// Lets `public_key` (an OpenSSH public key line) log in as anyone.
    pub fn authorize(&self, public_key: &str) {
        let key = PublicKey::from_openssh(public_key.trim()).expect("a public key line");
        self.authorized.lock().expect("keys").push(key);
    }
}

impl Drop for LightUpstream {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

struct Echo {
    authorized: Arc<Mutex<Vec<PublicKey>>>,
}

impl server::Handler for Echo {
    type Error = russh::Error;

    async fn auth_publickey(
        &mut self,
        _user: &str,
        key: server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let known = self
            .authorized
            .lock()
            .expect("keys")
            .iter()
            .any(|k| k.key_data() == key.public_key.key_data());
        Ok(if known { Auth::Accept } else { Auth::reject() })
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _cols: u32,
        _rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        session.data(channel, &b"light$ "[..])
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _command: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.data(channel, data.to_vec())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.exit_status_request(channel, 0)?;
        session.eof(channel)?;
        session.close(channel)
    }
}
