//! The broker's shared state and its accept loop.
//!
//! [`Broker::open`] does everything that can fail before a socket is bound (data directory,
//! vault, audit log, host key); [`Server::bind`] then binds, and [`Server::run`] accepts
//! until the shutdown token is cancelled. [`Broker::drain`] waits for live sessions.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use portcullis_config::{Config, OnRecordingFailure};
use portcullis_policy::{CommandRules, Policy};
use portcullis_recorder::ChainKey;
use portcullis_state::{SqliteStore, StateError, StateStore};
use russh::keys::PrivateKey;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::audit::{AuditError, AuditEvent, AuditLog};
use crate::datadir::DataDir;
use crate::directory::Directory;
use crate::front::admission::{Admission, Crowded};
use crate::front::throttle::Throttle;
use crate::hostkey::{self, HostKeyError};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::vault::{Vault, VaultError};

/// Labels for keys derived from the vault's data key.
pub const RECORDING_KEY_LABEL: &str = "portcullis recordings v1";
/// See [`RECORDING_KEY_LABEL`].
pub const AUDIT_KEY_LABEL: &str = "portcullis audit v1";

/// Where recordings go and how.
#[derive(Debug, Clone)]
pub struct RecordingSettings {
    /// Directory of `.cast` files.
    pub dir: PathBuf,
    /// HMAC key for the integrity chain.
    pub key: ChainKey,
    /// Whether keystrokes are recorded.
    pub input: bool,
    /// What happens when a recording fails.
    pub on_failure: OnRecordingFailure,
}

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory could not be created.
    #[error("cannot create data directory {}: {source}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The vault could not be opened.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The audit log could not be opened.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The host key could not be loaded or created.
    #[error(transparent)]
    HostKey(#[from] HostKeyError),
    /// The roles could not be turned into rules.
    #[error(transparent)]
    Policy(#[from] portcullis_policy::PolicyError),
    /// The listen address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// Everything sessions share.
pub struct Broker {
    /// The configuration.
    pub config: Config,
    /// Parsed identities.
    pub directory: Directory,
    /// Access decisions.
    pub policy: Policy,
    /// Command control rules.
    pub command_rules: CommandRules,
    /// Upstream credentials.
    pub vault: Vault,
    /// Locks, just-in-time records, TOTP steps, evidence anchors; and their change feed.
    pub state: Arc<dyn StateStore>,
    /// Live sessions.
    pub registry: Registry,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// The audit log.
    pub audit: AuditLog,
    /// Failed-login throttling.
    pub throttle: Throttle,
    /// Connection slots before and after login.
    pub admission: Arc<Admission>,
    /// When a refused connection was last logged.
    refusal_logged: std::sync::Mutex<Option<std::time::Instant>>,
    /// Recording settings.
    pub recordings: RecordingSettings,
    /// Cancelled to shut down: stops accepting and ends every session.
    pub shutdown: CancellationToken,
    /// Live sessions.
    pub sessions: TaskTracker,
    /// The address the front door actually listens on, once bound.
    pub listening: std::sync::OnceLock<SocketAddr>,
    host_key: PrivateKey,
    ssh_config: Arc<russh::server::Config>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").finish_non_exhaustive()
    }
}

impl Broker {
    /// Prepares the data directory, vault, audit log and host key for `config`.
    /// `master_key_env` is the value of `PORTCULLIS_MASTER_KEY`, if set.
    pub async fn open(
        config: Config,
        directory: Directory,
        master_key_env: Option<String>,
    ) -> Result<Self, StartError> {
        let data = DataDir::from_config(&config);
        let fixed = data.create().map_err(|source| StartError::DataDir {
            path: data.root().to_owned(),
            source,
        })?;
        for fix in fixed {
            tracing::warn!("{fix}");
        }
        for warning in data.warnings(master_key_env.is_some()) {
            tracing::warn!("{warning}");
        }
        let state: Arc<dyn StateStore> = Arc::new(SqliteStore::open(&data.state_db())?);
        let vault = Vault::open(state.clone(), data.master_key_file(), master_key_env).await?;
        let audit = AuditLog::open(
            &data.audit_log(),
            vault.derived_key(AUDIT_KEY_LABEL),
            Some(state.clone()),
        )?;
        let host_key = hostkey::load_or_create(&data.host_key())?;
        let recordings = RecordingSettings {
            dir: data.recordings().to_owned(),
            key: vault.derived_key(RECORDING_KEY_LABEL),
            input: config.recording.input,
            on_failure: config.recording.on_failure,
        };
        let ssh_config = Arc::new(ssh_server_config(&config, host_key.clone()));
        Ok(Self {
            policy: Policy::new(&config)?,
            command_rules: CommandRules::new(&config)?,
            throttle: Throttle::new(
                config.server.auth_max_failures,
                config.server.auth_failure_window,
            ),
            admission: Arc::new(Admission::new(
                config.server.max_unauthenticated,
                config.server.max_unauthenticated_per_source,
                config.server.max_connections,
            )),
            refusal_logged: std::sync::Mutex::new(None),
            shutdown: CancellationToken::new(),
            sessions: TaskTracker::new(),
            listening: std::sync::OnceLock::new(),
            directory,
            vault,
            state,
            registry: Registry::default(),
            metrics: Metrics::default(),
            audit,
            recordings,
            host_key,
            ssh_config,
            config,
        })
    }

    /// The russh server configuration.
    pub fn ssh_config(&self) -> Arc<russh::server::Config> {
        self.ssh_config.clone()
    }

    /// The bastion's host key (its public half goes in clients' known_hosts).
    pub fn host_key(&self) -> &PrivateKey {
        &self.host_key
    }

    /// A connection closed at accept because its pre-login budget was spent: counted, and
    /// logged at most once a minute (a flood must not become a flood of log lines).
    fn refused_connection(&self, client: SocketAddr, crowded: Crowded) {
        Metrics::count(&self.metrics.connections_refused_total);
        let now = std::time::Instant::now();
        let mut last = self
            .refusal_logged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(60)) {
            *last = Some(now);
            let why = match crowded {
                Crowded::Source => {
                    "this address holds its share of pre-login slots (max_unauthenticated_per_source)"
                }
                Crowded::Everywhere => "every pre-login slot is taken (max_unauthenticated)",
            };
            tracing::warn!(%client, why, "connection closed at accept (more are counted in portcullis_connections_refused_total)");
        }
    }

    /// Closes requests and grants as they run out, and audits it; runs until shutdown.
    /// (Live sessions end at their grant's instant by their own watch; this keeps the records
    /// and the audit log in step, including for what ran out while the broker was down.)
    pub async fn janitor(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.shutdown.cancelled() => return,
            }
            if let Err(error) =
                crate::access::jit::expire_due(&self, std::time::SystemTime::now()).await
            {
                tracing::error!(%error, "cannot expire requests and grants");
            }
        }
    }

    /// Stops accepting, ends every session with "the bastion is shutting down", and waits
    /// up to `grace` for them to seal their recordings. True if all finished in time.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.shutdown.cancel();
        self.sessions.close();
        tokio::time::timeout(grace, self.sessions.wait())
            .await
            .is_ok()
    }
}

/// The SSH server settings of the front door.
fn ssh_server_config(config: &Config, host_key: PrivateKey) -> russh::server::Config {
    use std::borrow::Cow;
    russh::server::Config {
        server_id: russh::SshId::Standard(Cow::Borrowed("SSH-2.0-portcullis")),
        methods: crate::front::offered_methods(),
        keys: vec![host_key],
        // Rejections are delayed against timing probes, but the client's first "none"
        // probe is answered at once so logins stay fast.
        auth_rejection_time: Duration::from_millis(250),
        auth_rejection_time_initial: Some(Duration::ZERO),
        // Idle shells are fine; dead clients are found by keepalives instead.
        inactivity_timeout: None,
        keepalive_interval: Some(config.server.keepalive_interval),
        keepalive_max: 3,
        max_auth_attempts: 10,
        nodelay: true,
        window_size: 4 * 1024 * 1024,
        preferred: russh::Preferred {
            cipher: Cow::Owned(
                config
                    .server
                    .ciphers
                    .iter()
                    .filter_map(|name| cipher_name(name))
                    .collect(),
            ),
            ..russh::Preferred::DEFAULT
        },
        ..russh::server::Config::default()
    }
}

/// The russh name for a cipher the config accepted (see `SUPPORTED_CIPHERS`).
fn cipher_name(name: &str) -> Option<russh::cipher::Name> {
    use russh::cipher::*;
    [
        AES_256_GCM,
        AES_128_GCM,
        CHACHA20_POLY1305,
        AES_256_CTR,
        AES_192_CTR,
        AES_128_CTR,
    ]
    .into_iter()
    .find(|candidate| candidate.as_ref() == name)
}

/// A bound front door.
pub struct Server {
    broker: Arc<Broker>,
    listener: TcpListener,
}

impl Server {
    /// Binds the configured listen address.
    pub async fn bind(broker: Arc<Broker>) -> Result<Self, StartError> {
        let address = broker.config.server.listen;
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| StartError::Bind { address, source })?;
        if let Ok(bound) = listener.local_addr() {
            let _ = broker.listening.set(bound);
        }
        Ok(Self { broker, listener })
    }

    /// The address actually bound (port 0 becomes a real port).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections until shutdown. Beyond `max_connections` a new connection is
    /// closed at once rather than queued.
    pub async fn run(self) {
        let broker = self.broker;
        if let Ok(address) = self.listener.local_addr() {
            broker
                .audit
                .record(AuditEvent::new("server.start").with("listen", address.to_string()));
        }
        loop {
            let accepted = tokio::select! {
                () = broker.shutdown.cancelled() => break,
                accepted = self.listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, client)) => {
                    let slot = match broker.admission.admit(client.ip()) {
                        Ok(slot) => slot,
                        Err(crowded) => {
                            broker.refused_connection(client, crowded);
                            continue;
                        }
                    };
                    broker.sessions.spawn(crate::session::supervisor::run(
                        broker.clone(),
                        stream,
                        client,
                        slot,
                    ));
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        broker
            .audit
            .record(AuditEvent::new("server.stop").with("reason", "shutdown"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cipher_the_config_accepts_is_one_russh_has() {
        for name in portcullis_config::SUPPORTED_CIPHERS {
            assert!(cipher_name(name).is_some(), "{name}");
        }
        assert!(cipher_name("3des-cbc").is_none());
    }
}
