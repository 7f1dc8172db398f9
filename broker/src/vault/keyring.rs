//! The master key and the data key it wraps.
//!
//! ```text
//! master key (env PORTCULLIS_MASTER_KEY, or data/master.key; 32 bytes as 64 hex digits)
//!   └─ wraps ─▶ data key (random, stored sealed in state.db `keyring`)
//!                 ├─ seals ─▶ each credential
//!                 └─ derives ─▶ recording and audit-log HMAC keys
//! ```
//!
//! Rotating the master key only rewraps the data key; recordings stay verifiable.
//! The master key file is created only on a true first start (no keyring yet): creating a
//! fresh key for an existing vault would just be a wrong key.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use portcullis_config::Secret;
use portcullis_state::StateStore;

use super::VaultError;
use super::seal::{SealingKey, random_key};
use crate::datadir::write_private_file;

/// Environment variable that overrides the master key file.
pub const MASTER_KEY_ENV: &str = "PORTCULLIS_MASTER_KEY";

const KEYRING_AAD: &[u8] = b"portcullis keyring v1";

/// Where the master key came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterKeySource {
    /// The environment variable.
    Environment,
    /// A file.
    File(PathBuf),
}

impl std::fmt::Display for MasterKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MasterKeySource::Environment => write!(f, "${MASTER_KEY_ENV}"),
            MasterKeySource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Parses 64 hex digits (surrounding white space allowed) into a key.
pub fn parse_master_key(text: &str) -> Option<Secret<[u8; 32]>> {
    let bytes = hex::decode(text.trim()).ok()?;
    let array: [u8; 32] = bytes.try_into().ok()?;
    Some(Secret::new(array))
}

/// The vault's data key, unwrapped.
pub struct DataKey(Secret<[u8; 32]>);

impl DataKey {
    pub(super) fn bytes(&self) -> &[u8; 32] {
        self.0.expose()
    }
}

/// Loads the master key and unwraps (or, on first start, creates) the data key.
/// `environment` is the value of [`MASTER_KEY_ENV`], passed in so tests need not touch the
/// process environment.
pub async fn open_keyring(
    store: &dyn StateStore,
    master_key_file: &Path,
    environment: Option<String>,
) -> Result<DataKey, VaultError> {
    let wrapped = store.wrapped_data_key().await?;
    let (master, source) = load_master_key(master_key_file, environment, wrapped.is_none())?;
    let master = SealingKey::new(master.expose()).map_err(|_| VaultError::Crypto)?;
    let wrapped = match wrapped {
        Some(wrapped) => wrapped,
        None => {
            let key = random_key().map_err(|_| VaultError::Crypto)?;
            let sealed = master
                .seal(&key, KEYRING_AAD)
                .map_err(|_| VaultError::Crypto)?;
            // Another first start may have stored its key meanwhile: the stored one wins.
            store
                .init_wrapped_data_key(sealed, SystemTime::now())
                .await?
        }
    };
    let plain = master
        .open(&wrapped, KEYRING_AAD)
        .map_err(|_| VaultError::WrongMasterKey {
            source_desc: source.to_string(),
            database: store.location(),
        })?;
    let key: [u8; 32] = plain.try_into().map_err(|_| VaultError::Crypto)?;
    Ok(DataKey(Secret::new(key)))
}

fn load_master_key(
    file: &Path,
    environment: Option<String>,
    first_start: bool,
) -> Result<(Secret<[u8; 32]>, MasterKeySource), VaultError> {
    if let Some(text) = environment.filter(|t| !t.trim().is_empty()) {
        let key = parse_master_key(&text).ok_or(VaultError::MalformedMasterKey {
            source_desc: MasterKeySource::Environment.to_string(),
        })?;
        return Ok((key, MasterKeySource::Environment));
    }
    let source = MasterKeySource::File(file.to_owned());
    match std::fs::read_to_string(file) {
        Ok(text) => {
            let key = parse_master_key(&text).ok_or_else(|| VaultError::MalformedMasterKey {
                source_desc: source.to_string(),
            })?;
            Ok((key, source))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && first_start => {
            let key = random_key().map_err(|_| VaultError::Crypto)?;
            let text = format!("{}\n", hex::encode(key));
            write_private_file(file, text.as_bytes()).map_err(|e| VaultError::Io {
                path: file.to_owned(),
                message: e.to_string(),
            })?;
            tracing::info!(file = %file.display(), "created a new vault master key");
            Ok((Secret::new(key), source))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(VaultError::NoMasterKey {
            file: file.to_owned(),
        }),
        Err(e) => Err(VaultError::Io {
            path: file.to_owned(),
            message: e.to_string(),
        }),
    }
}
