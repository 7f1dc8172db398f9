//! The services sessions, operations and the admin API share: configuration, policy,
//! state store, vault, audit log, registry of live sessions, throttles and admission.
//!
//! [`Services::open`] does everything that can fail before a socket is bound (data
//! directory, state store, vault, audit log, host key); [`crate::app`] then binds and
//! serves. [`Services::drain`] waits for live sessions. Nothing here knows how a session
//! runs: this module sits below the front door and the sessions, which use it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use portcullis_config::{Config, OnRecordingFailure};
use portcullis_policy::{Clock, CommandRules, Policy};
use portcullis_recorder::ChainKey;
use portcullis_state::{StateError, StateStore};
use russh::keys::PrivateKey;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::audit::{AuditError, AuditLog};
use crate::credentials::throttle::Throttle;
use crate::datadir::DataDir;
use crate::directory::Directory;
use crate::hostkey::{self, HostKeyError};
use crate::metrics::Metrics;
use crate::net::admission::Admission;
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
    /// The cluster secret could not be read, or is too short.
    #[error("[cluster] secret_file {}: {why}", path.display())]
    ClusterSecret {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
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
pub struct Services {
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
    pub refusal_logged: std::sync::Mutex<Option<std::time::Instant>>,
    /// Recording settings.
    pub recordings: RecordingSettings,
    /// Cancelled to shut down: stops accepting and ends every session.
    pub shutdown: CancellationToken,
    /// Live sessions.
    pub sessions: TaskTracker,
    /// The address the front door actually listens on, once bound.
    pub listening: std::sync::OnceLock<SocketAddr>,
    /// Where the admin API listens and its certificate's fingerprint, once bound (other
    /// nodes are told, to reach it and pin it).
    pub admin_listening: std::sync::OnceLock<(SocketAddr, String)>,
    /// The key node-to-node calls are signed with (`[cluster] secret_file`).
    pub peer_key: Option<ring::hmac::Key>,
    /// Where time comes from (the system's, or a test's manual clock).
    pub clock: Arc<dyn Clock>,
    /// Credential rotations asked for, and what the scheduler remembers.
    pub rotations: crate::rotation::schedule::Rotations,
    host_key: PrivateKey,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services").finish_non_exhaustive()
    }
}

impl Services {
    /// Prepares the data directory, vault, audit log and host key for `config`.
    /// `master_key_env` is the value of `PORTCULLIS_MASTER_KEY`, if set; every time the
    /// bastion reads or waits for comes from `clock`.
    pub async fn open(
        config: Config,
        directory: Directory,
        master_key_env: Option<String>,
        clock: Arc<dyn Clock>,
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
        let state = crate::state_backend::open(&config, &data).await?;
        let vault = Vault::open(state.clone(), data.master_key_file(), master_key_env).await?;
        let audit = AuditLog::open(
            &data.audit_log(),
            vault.derived_key(AUDIT_KEY_LABEL),
            Some(state.clone()),
            clock.clone(),
        )?;
        if let Some(found) = audit.mismatch_at_open() {
            audit.record(crate::alerts::tampered(
                "audit_log",
                format!("the audit log does not end where it was last written: {found}"),
            ));
        }
        let host_key = hostkey::load_or_create(&data.host_key())?;
        let peer_key = match &config.cluster.secret_file {
            Some(path) => Some(crate::cluster_secret::load_key(path).map_err(|why| {
                StartError::ClusterSecret {
                    path: path.clone(),
                    why,
                }
            })?),
            None => None,
        };
        let recordings = RecordingSettings {
            dir: data.recordings().to_owned(),
            key: vault.derived_key(RECORDING_KEY_LABEL),
            input: config.recording.input,
            on_failure: config.recording.on_failure,
        };
        Ok(Self {
            policy: Policy::new(&config)?,
            command_rules: CommandRules::new(&config)?,
            throttle: Throttle::new(
                config.server.auth_max_failures,
                config.server.auth_failure_window,
                state.clone(),
            ),
            admission: Arc::new(Admission::new(
                config.server.max_unauthenticated,
                config.server.max_unauthenticated_per_source,
                config.server.max_connections,
            )),
            refusal_logged: std::sync::Mutex::new(None),
            rotations: crate::rotation::schedule::Rotations::default(),
            shutdown: CancellationToken::new(),
            sessions: TaskTracker::new(),
            listening: std::sync::OnceLock::new(),
            admin_listening: std::sync::OnceLock::new(),
            peer_key,
            clock,
            directory,
            vault,
            state,
            registry: Registry::default(),
            metrics: Metrics {
                forwarders: config
                    .audit
                    .forward
                    .iter()
                    .map(|f| {
                        Arc::new(crate::metrics::ForwarderMetrics {
                            name: f.name.clone(),
                            ..Default::default()
                        })
                    })
                    .collect(),
                ..Metrics::default()
            },
            audit,
            recordings,
            host_key,
            config,
        })
    }

    /// The bastion's host key (its public half goes in clients' known_hosts).
    pub fn host_key(&self) -> &PrivateKey {
        &self.host_key
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
