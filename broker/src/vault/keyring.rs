//! The master key and the data key it wraps.
//!
//! ```text
//! master key (env PORTCULLIS_MASTER_KEY, or data/master.key; 32 bytes as 64 hex digits)
//!   └─ wraps ─▶ data key (random, stored sealed in state.db `keyring`)
//!                 ├─ seals ─▶ each credential
//!                 └─ derives ─▶ recording and audit-log HMAC keys
//! ```
//!
//! Rotating the master key ([`rekey`]) only rewraps the data key; credentials stay sealed as
//! they are and recordings stay verifiable. The master key file is created only on a true
//! first start (no keyring yet): creating a fresh key for an existing vault would just be a
//! wrong key.
//!
//! A rekey never leaves the vault without a working key. It stores the data key wrapped by
//! the new master key beside the current one (a *pending* wrap), then replaces the master
//! key file (write and rename), then commits the pending wrap in place of the current one,
//! then drops the pending row. Until the commit the old key opens the current wrap and the
//! new key the pending one; an open with the new key that finds the rekey unfinished
//! finishes it. After the commit only the new key opens the vault.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use portcullis_config::Secret;
use portcullis_state::{CredentialRow, StateStore};

use super::VaultError;
use super::seal::{SealingKey, random_key};
use crate::datadir::write_private_file;

/// Environment variable that overrides the master key file.
pub const MASTER_KEY_ENV: &str = "PORTCULLIS_MASTER_KEY";

const KEYRING_AAD: &[u8] = b"portcullis keyring v1";

/// The credentials-table row holding a rekey's pending wrap (no operator name starts with
/// `@`, so no entry can collide with it or list it).
const PENDING: &str = "@keyring.pending";
/// Its `kind`.
const PENDING_KIND: &str = "keyring";

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
    if let Ok(plain) = master.open(&wrapped, KEYRING_AAD) {
        if let Some(pending) = store.credential(PENDING).await? {
            if master.open(&pending.sealed, KEYRING_AAD).is_ok() {
                // Committed, cut off before the pending row was dropped.
                store.remove_credential(PENDING).await?;
            } else {
                tracing::warn!(
                    "an unfinished master-key rotation was found; the current master key still \
                     opens the vault (run `portcullis vault rekey` again to rotate it)"
                );
            }
        }
        return data_key(plain);
    }
    // The new key of a rekey cut off before its commit opens the pending wrap: finish it.
    if let Some(pending) = store.credential(PENDING).await?
        && pending.kind == PENDING_KIND
        && let Ok(plain) = master.open(&pending.sealed, KEYRING_AAD)
    {
        let key = data_key(plain)?;
        store
            .replace_wrapped_data_key(wrapped, pending.sealed)
            .await?;
        store.remove_credential(PENDING).await?;
        tracing::info!("finished a master-key rotation that was cut off before its commit");
        return Ok(key);
    }
    Err(VaultError::WrongMasterKey {
        source_desc: source.to_string(),
        database: store.location(),
    })
}

fn data_key(plain: Vec<u8>) -> Result<DataKey, VaultError> {
    let key: [u8; 32] = plain.try_into().map_err(|_| VaultError::Crypto)?;
    Ok(DataKey(Secret::new(key)))
}

/// What a rekey did, for the operator and the audit (key ids, never keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rekeyed {
    /// The retired master key's id.
    pub old_key_id: String,
    /// The new master key's id.
    pub new_key_id: String,
    /// The master key file now holding the new key (`None`: the key comes from the
    /// environment, which the operator changes).
    pub wrote: Option<PathBuf>,
}

/// A master key's id: the start of a keyed hash of it (names it in messages and the audit
/// without revealing anything about it).
pub fn key_id(key: &[u8; 32]) -> String {
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"portcullis master key id"),
        key,
    );
    hex::encode(&tag.as_ref()[..8])
}

/// Rewraps `data` (opened with the `current` master key from `source`) under `new`, and puts
/// `new` in the master key file when that is where the current key came from. See the module
/// documentation for why every step leaves a working key.
pub async fn rekey(
    store: &dyn StateStore,
    data: &DataKey,
    current: &Secret<[u8; 32]>,
    source: &MasterKeySource,
    new: &Secret<[u8; 32]>,
) -> Result<Rekeyed, VaultError> {
    if current.expose() == new.expose() {
        return Err(VaultError::SameMasterKey);
    }
    let wrapped = store.wrapped_data_key().await?.ok_or(VaultError::Crypto)?;
    let pending = stage(store, data, new).await?;
    let wrote = match source {
        MasterKeySource::File(path) => {
            replace_key_file(path, new)?;
            Some(path.clone())
        }
        MasterKeySource::Environment => None,
    };
    if !store.replace_wrapped_data_key(wrapped, pending).await? {
        return Err(VaultError::ConcurrentRekey);
    }
    store.remove_credential(PENDING).await?;
    Ok(Rekeyed {
        old_key_id: key_id(current.expose()),
        new_key_id: key_id(new.expose()),
        wrote,
    })
}

/// A rekey's first step: the data key wrapped by `new`, stored as the pending wrap.
async fn stage(
    store: &dyn StateStore,
    data: &DataKey,
    new: &Secret<[u8; 32]>,
) -> Result<Vec<u8>, VaultError> {
    let sealing = SealingKey::new(new.expose()).map_err(|_| VaultError::Crypto)?;
    let pending = sealing
        .seal(data.bytes(), KEYRING_AAD)
        .map_err(|_| VaultError::Crypto)?;
    store
        .put_credential(
            CredentialRow {
                name: PENDING.to_owned(),
                kind: PENDING_KIND.to_owned(),
                fingerprint: None,
                public_key: None,
                created_at: SystemTime::now(),
                sealed: pending.clone(),
            },
            true,
        )
        .await?;
    Ok(pending)
}

/// Writes `key` to a new file beside `path` and renames it over `path`: a crash leaves the
/// old file or the new one, whole.
fn replace_key_file(path: &Path, key: &Secret<[u8; 32]>) -> Result<(), VaultError> {
    let io = |e: std::io::Error| VaultError::Io {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let mut staging = path.as_os_str().to_owned();
    staging.push(".new");
    let staging = PathBuf::from(staging);
    let _ = std::fs::remove_file(&staging);
    let text = Secret::new(format!("{}\n", hex::encode(key.expose())));
    write_private_file(&staging, text.expose().as_bytes()).map_err(io)?;
    std::fs::rename(&staging, path).map_err(io)?;
    if let Some(dir) = path.parent()
        && let Ok(dir) = std::fs::File::open(dir)
    {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// The master key and where it came from, as [`open_keyring`] reads it (for a rekey).
pub fn current_master_key(
    master_key_file: &Path,
    environment: Option<String>,
) -> Result<(Secret<[u8; 32]>, MasterKeySource), VaultError> {
    load_master_key(master_key_file, environment, false)
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use portcullis_state::SqliteStore;

    use super::*;

    struct Setup {
        dir: tempfile::TempDir,
        store: Arc<dyn StateStore>,
    }

    impl Setup {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let store: Arc<dyn StateStore> =
                Arc::new(SqliteStore::open(&dir.path().join("state.db")).unwrap());
            Self { dir, store }
        }

        fn file(&self) -> PathBuf {
            self.dir.path().join("master.key")
        }

        async fn open_with_file(&self) -> Result<DataKey, VaultError> {
            open_keyring(self.store.as_ref(), &self.file(), None).await
        }

        async fn open_with(&self, key: &Secret<[u8; 32]>) -> Result<DataKey, VaultError> {
            open_keyring(
                self.store.as_ref(),
                &self.dir.path().join("absent.key"),
                Some(hex::encode(key.expose())),
            )
            .await
        }
    }

    fn new_key() -> Secret<[u8; 32]> {
        Secret::new(random_key().unwrap())
    }

    fn file_key(setup: &Setup) -> Secret<[u8; 32]> {
        parse_master_key(&std::fs::read_to_string(setup.file()).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_rekey_rewraps_the_same_data_key_and_replaces_the_key_file() {
        let setup = Setup::new();
        let data = setup.open_with_file().await.unwrap();
        let old = file_key(&setup);
        let new = new_key();
        let source = MasterKeySource::File(setup.file());
        let done = rekey(setup.store.as_ref(), &data, &old, &source, &new)
            .await
            .unwrap();
        assert_eq!(done.wrote, Some(setup.file()));
        assert_eq!(done.old_key_id, key_id(old.expose()));
        assert_ne!(done.old_key_id, done.new_key_id);
        assert_eq!(file_key(&setup).expose(), new.expose());
        assert!(!crate::datadir::is_shared(&setup.file()).unwrap());
        let reopened = setup.open_with_file().await.unwrap();
        assert_eq!(reopened.bytes(), data.bytes(), "the data key is the same");
        assert!(matches!(
            setup.open_with(&old).await,
            Err(VaultError::WrongMasterKey { .. })
        ));
        assert!(setup.store.credential(PENDING).await.unwrap().is_none());
        assert!(matches!(
            rekey(setup.store.as_ref(), &data, &new, &source, &new).await,
            Err(VaultError::SameMasterKey)
        ));
    }

    #[tokio::test]
    async fn a_rekey_cut_off_at_any_step_leaves_the_old_or_the_new_key_working() {
        // After the pending wrap is stored (the key file not yet replaced): both keys open;
        // the new one finishes the rekey.
        let setup = Setup::new();
        let data = setup.open_with_file().await.unwrap();
        let old = file_key(&setup);
        let new = new_key();
        stage(setup.store.as_ref(), &data, &new).await.unwrap();
        assert_eq!(setup.open_with(&old).await.unwrap().bytes(), data.bytes());
        assert_eq!(setup.open_with_file().await.unwrap().bytes(), data.bytes());
        assert_eq!(setup.open_with(&new).await.unwrap().bytes(), data.bytes());
        assert!(setup.store.credential(PENDING).await.unwrap().is_none());
        assert!(matches!(
            setup.open_with(&old).await,
            Err(VaultError::WrongMasterKey { .. })
        ));

        // After the key file is replaced too (not committed): the file's new key opens and
        // finishes; until then the old key (say, from the environment) still opens.
        let setup = Setup::new();
        let data = setup.open_with_file().await.unwrap();
        let old = file_key(&setup);
        let new = new_key();
        stage(setup.store.as_ref(), &data, &new).await.unwrap();
        replace_key_file(&setup.file(), &new).unwrap();
        assert_eq!(setup.open_with(&old).await.unwrap().bytes(), data.bytes());
        assert_eq!(setup.open_with_file().await.unwrap().bytes(), data.bytes());
        assert!(matches!(
            setup.open_with(&old).await,
            Err(VaultError::WrongMasterKey { .. })
        ));

        // After the commit, before the pending row is dropped: the new key opens and tidies.
        let setup = Setup::new();
        let data = setup.open_with_file().await.unwrap();
        let new = new_key();
        let wrapped = setup.store.wrapped_data_key().await.unwrap().unwrap();
        let pending = stage(setup.store.as_ref(), &data, &new).await.unwrap();
        replace_key_file(&setup.file(), &new).unwrap();
        assert!(
            setup
                .store
                .replace_wrapped_data_key(wrapped, pending)
                .await
                .unwrap()
        );
        assert_eq!(setup.open_with_file().await.unwrap().bytes(), data.bytes());
        assert!(setup.store.credential(PENDING).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_wrong_key_opens_neither_wrap_of_an_unfinished_rekey() {
        let setup = Setup::new();
        let data = setup.open_with_file().await.unwrap();
        stage(setup.store.as_ref(), &data, &new_key())
            .await
            .unwrap();
        assert!(matches!(
            setup.open_with(&new_key()).await,
            Err(VaultError::WrongMasterKey { .. })
        ));
        assert!(setup.store.credential(PENDING).await.unwrap().is_some());
    }
}
