//! The vault: upstream credentials (private keys, passwords) sealed in the state store.
//!
//! * [`keyring`]: the master key and the data key it wraps.
//! * [`seal`]: AES-256-GCM with ring.
//!
//! A credential is sealed under the data key with its name and kind as associated data, so
//! a sealed value copied onto another entry does not open. What leaves the vault is a
//! [`Credential`] (whose secrets are `Secret`s or zeroizing key types) or a
//! [`CredentialInfo`], which has no secret at all: that is what listings and logs see.

pub mod ca;
pub mod events;
pub mod keyring;
pub mod seal;
pub mod staged;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use portcullis_config::Secret;
use portcullis_config::validate::is_valid_name;
use portcullis_recorder::ChainKey;
use portcullis_state::{CredentialRow, StateError, StateStore};
use russh::keys::ssh_key::{HashAlg, LineEnding, PrivateKey};

use keyring::DataKey;
use seal::SealingKey;

/// Why a vault operation failed. No variant carries secret material.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The master key does not unwrap the data key.
    #[error(
        "the master key from {source_desc} does not open this vault ({database}): it was sealed with a different key; nothing was changed"
    )]
    WrongMasterKey {
        /// Where the key came from.
        source_desc: String,
        /// The state store, in words.
        database: String,
    },
    /// The vault exists but no master key was found.
    #[error(
        "the vault is sealed but there is no master key: {} does not exist and {} is not set",
        file.display(),
        keyring::MASTER_KEY_ENV
    )]
    NoMasterKey {
        /// The expected file.
        file: PathBuf,
    },
    /// The master key is not 64 hex digits.
    #[error("the master key in {source_desc} is malformed: it must be 64 hex digits (32 bytes)")]
    MalformedMasterKey {
        /// Where the key came from.
        source_desc: String,
    },
    /// No entry with this name.
    #[error("no vault entry named {name:?}")]
    NotFound {
        /// The name asked for.
        name: String,
    },
    /// An entry with this name exists and replacing was not asked for.
    #[error("vault entry {name:?} already exists (use --replace to overwrite it)")]
    Exists {
        /// The name.
        name: String,
    },
    /// The name is not usable.
    #[error("{name:?} is not a valid vault entry name (letters, digits, '_', '-', '.')")]
    BadName {
        /// The name.
        name: String,
    },
    /// A key that cannot be used upstream.
    #[error("unusable private key: {reason}")]
    BadKey {
        /// Why.
        reason: String,
    },
    /// A sealed entry did not open: the database was damaged or edited.
    #[error("vault entry {name:?} cannot be opened: it is damaged or was tampered with")]
    Corrupt {
        /// The entry.
        name: String,
    },
    /// A CA rotation is already under way.
    #[error(
        "a CA rotation is already under way: the previous CA {previous} is still published; \
         retire it first (portcullis ca retire) once every target trusts the active one"
    )]
    RotationInProgress {
        /// The previous CA's fingerprint.
        previous: String,
    },
    /// `ca retire` without a rotation.
    #[error("there is no previous CA to retire (only the active one is published)")]
    NothingToRetire,
    /// A rekey to the key already in use.
    #[error("the new master key is the one in use; nothing was changed")]
    SameMasterKey,
    /// Two rekeys at once.
    #[error(
        "the vault's key was changed by someone else during this rekey; nothing was committed \
         (check which master key opens it now)"
    )]
    ConcurrentRekey,
    /// The operating system's random source or the cipher failed.
    #[error("cryptographic failure in the vault")]
    Crypto,
    /// A file could not be read or written.
    #[error("{}: {message}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        message: String,
    },
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// What kind of secret an entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// An OpenSSH private key.
    PrivateKey,
    /// A password.
    Password,
    /// The bastion's own user CA (see [`ca`]).
    UserCa,
    /// An audit event the command line left (see [`events`]).
    AdminEvent,
    /// Public keys a rotation replaced, still to be removed from targets (see [`staged`]).
    Retiring,
}

impl CredentialKind {
    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::PrivateKey => "private-key",
            CredentialKind::Password => "password",
            CredentialKind::UserCa => "user-ca",
            CredentialKind::AdminEvent => "admin-event",
            CredentialKind::Retiring => "retiring",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "private-key" => Some(CredentialKind::PrivateKey),
            "password" => Some(CredentialKind::Password),
            "user-ca" => Some(CredentialKind::UserCa),
            "admin-event" => Some(CredentialKind::AdminEvent),
            "retiring" => Some(CredentialKind::Retiring),
            _ => None,
        }
    }
}

/// A secret taken out of the vault, for logging in upstream.
pub enum Credential {
    /// A private key (ssh-key zeroizes it on drop).
    PrivateKey(Arc<PrivateKey>),
    /// A password.
    Password(Secret<String>),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::PrivateKey(_) => f.write_str("Credential::PrivateKey([redacted])"),
            Credential::Password(_) => f.write_str("Credential::Password([redacted])"),
        }
    }
}

/// Everything about an entry except its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialInfo {
    /// Entry name.
    pub name: String,
    /// What it holds.
    pub kind: CredentialKind,
    /// SHA256 fingerprint of the public key, for private keys.
    pub fingerprint: Option<String>,
    /// The public key in OpenSSH format, for private keys.
    pub public_key: Option<String>,
    /// When it was stored.
    pub created_at: SystemTime,
}

/// The open vault.
pub struct Vault {
    store: Arc<dyn StateStore>,
    data_key: DataKey,
    sealing: SealingKey,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

fn associated_data(name: &str, kind: CredentialKind) -> Vec<u8> {
    format!("portcullis credential v1\0{name}\0{}", kind.as_str()).into_bytes()
}

impl Vault {
    /// Opens the vault in `store` with the master key from `environment` or `master_key_file`
    /// (created with a fresh key on first start).
    pub async fn open(
        store: Arc<dyn StateStore>,
        master_key_file: &std::path::Path,
        environment: Option<String>,
    ) -> Result<Self, VaultError> {
        let data_key = keyring::open_keyring(store.as_ref(), master_key_file, environment).await?;
        let sealing = SealingKey::new(data_key.bytes()).map_err(|_| VaultError::Crypto)?;
        Ok(Self {
            store,
            data_key,
            sealing,
        })
    }

    /// Rewraps the data key under `new` (see [`keyring::rekey`]); `current` and `source` are
    /// the master key this vault was opened with and where it came from.
    pub async fn rekey(
        &self,
        current: &Secret<[u8; 32]>,
        source: &keyring::MasterKeySource,
        new: &Secret<[u8; 32]>,
    ) -> Result<keyring::Rekeyed, VaultError> {
        keyring::rekey(self.store.as_ref(), &self.data_key, current, source, new).await
    }

    /// An HMAC key for one purpose, derived from the data key.
    pub fn derived_key(&self, label: &str) -> ChainKey {
        ChainKey::derive(self.data_key.bytes(), label)
    }

    /// Stores a private key.
    pub async fn put_private_key(
        &self,
        name: &str,
        key: &PrivateKey,
        replace: bool,
    ) -> Result<CredentialInfo, VaultError> {
        check_usable_key(key)?;
        let info = self.key_info(name, CredentialKind::PrivateKey, key)?;
        let encoded = self.encode_key(key)?;
        self.put(info, encoded.as_bytes(), replace).await
    }

    fn key_info(
        &self,
        name: &str,
        kind: CredentialKind,
        key: &PrivateKey,
    ) -> Result<CredentialInfo, VaultError> {
        let public = key.public_key();
        Ok(CredentialInfo {
            name: name.to_owned(),
            kind,
            fingerprint: Some(public.fingerprint(HashAlg::Sha256).to_string()),
            public_key: public.to_openssh().ok(),
            created_at: SystemTime::now(),
        })
    }

    fn encode_key(&self, key: &PrivateKey) -> Result<zeroize::Zeroizing<String>, VaultError> {
        key.to_openssh(LineEnding::LF)
            .map_err(|e| VaultError::BadKey {
                reason: e.to_string(),
            })
    }

    /// Stores a password.
    pub async fn put_password(
        &self,
        name: &str,
        password: &Secret<String>,
        replace: bool,
    ) -> Result<CredentialInfo, VaultError> {
        let info = self.secret_info(name, CredentialKind::Password);
        self.put(info, password.expose().as_bytes(), replace).await
    }

    fn secret_info(&self, name: &str, kind: CredentialKind) -> CredentialInfo {
        CredentialInfo {
            name: name.to_owned(),
            kind,
            fingerprint: None,
            public_key: None,
            created_at: SystemTime::now(),
        }
    }

    /// An entry's description (no secret), if it exists.
    pub async fn info(&self, name: &str) -> Result<Option<CredentialInfo>, VaultError> {
        Ok(self
            .list()
            .await?
            .into_iter()
            .find(|info| info.name == name))
    }

    async fn put(
        &self,
        info: CredentialInfo,
        secret: &[u8],
        replace: bool,
    ) -> Result<CredentialInfo, VaultError> {
        if !is_valid_name(&info.name) {
            return Err(VaultError::BadName { name: info.name });
        }
        self.put_unchecked(info, secret, replace).await
    }

    /// Seals and stores; the name is the caller's to check (the CA's are not operator names).
    async fn put_unchecked(
        &self,
        info: CredentialInfo,
        secret: &[u8],
        replace: bool,
    ) -> Result<CredentialInfo, VaultError> {
        let sealed = self
            .sealing
            .seal(secret, &associated_data(&info.name, info.kind))
            .map_err(|_| VaultError::Crypto)?;
        let row = CredentialRow {
            name: info.name.clone(),
            kind: info.kind.as_str().to_owned(),
            fingerprint: info.fingerprint.clone(),
            public_key: info.public_key.clone(),
            created_at: info.created_at,
            sealed,
        };
        if !self.store.put_credential(row, replace).await? {
            return Err(VaultError::Exists { name: info.name });
        }
        Ok(info)
    }

    /// Takes a secret out, for logging in upstream.
    pub async fn get(&self, name: &str) -> Result<Credential, VaultError> {
        let not_found = || VaultError::NotFound {
            name: name.to_owned(),
        };
        if !is_valid_name(name) {
            return Err(not_found());
        }
        let row = self.store.credential(name).await?.ok_or_else(not_found)?;
        self.credential_from_row(&row)
    }

    /// A row as a credential (a key or a password). Only the bastion signs with its CA: a
    /// row of another kind is no entry to log in with.
    fn credential_from_row(&self, row: &CredentialRow) -> Result<Credential, VaultError> {
        let corrupt = || VaultError::Corrupt {
            name: row.name.clone(),
        };
        let text = self.open_row(row)?;
        Ok(match CredentialKind::parse(&row.kind) {
            Some(CredentialKind::PrivateKey) => Credential::PrivateKey(Arc::new(
                PrivateKey::from_openssh(text.expose()).map_err(|_| corrupt())?,
            )),
            Some(CredentialKind::Password) => Credential::Password(text),
            _ => {
                return Err(VaultError::NotFound {
                    name: row.name.clone(),
                });
            }
        })
    }

    /// Opens entry `name`, which must be of `kind`, as text.
    async fn open_entry(
        &self,
        name: &str,
        kind: CredentialKind,
    ) -> Result<Secret<String>, VaultError> {
        let row = self
            .store
            .credential(name)
            .await?
            .ok_or_else(|| VaultError::NotFound {
                name: name.to_owned(),
            })?;
        if CredentialKind::parse(&row.kind) != Some(kind) {
            return Err(VaultError::Corrupt {
                name: name.to_owned(),
            });
        }
        self.open_row(&row)
    }

    /// A row's sealed secret, as text (its name and kind are what it was sealed with).
    fn open_row(&self, row: &CredentialRow) -> Result<Secret<String>, VaultError> {
        let corrupt = || VaultError::Corrupt {
            name: row.name.clone(),
        };
        let kind = CredentialKind::parse(&row.kind).ok_or_else(corrupt)?;
        let plain = self
            .sealing
            .open(&row.sealed, &associated_data(&row.name, kind))
            .map_err(|_| corrupt())?;
        let text = String::from_utf8(plain).map_err(|error| {
            let mut bytes = error.into_bytes();
            zeroize::Zeroize::zeroize(&mut bytes);
            corrupt()
        })?;
        Ok(Secret::new(text))
    }

    /// Every entry, without secrets, sorted by name.
    pub async fn list(&self) -> Result<Vec<CredentialInfo>, VaultError> {
        self.store
            .credentials()
            .await?
            .into_iter()
            // The bastion's own entries (its CA) are not operators' to see here.
            .filter(|row| is_valid_name(&row.name))
            .map(|row| {
                let kind = CredentialKind::parse(&row.kind).ok_or_else(|| VaultError::Corrupt {
                    name: row.name.clone(),
                })?;
                Ok(CredentialInfo {
                    name: row.name,
                    kind,
                    fingerprint: row.fingerprint,
                    public_key: row.public_key,
                    created_at: row.created_at,
                })
            })
            .collect()
    }

    /// Deletes an entry.
    pub async fn remove(&self, name: &str) -> Result<(), VaultError> {
        if !is_valid_name(name) || !self.store.remove_credential(name).await? {
            return Err(VaultError::NotFound {
                name: name.to_owned(),
            });
        }
        Ok(())
    }
}

/// Keys portcullis can log in with: this build has no RSA support (see NOTES: the `rsa`
/// feature brings an unfixed advisory), and passphrase-protected keys cannot be used
/// unattended.
fn check_usable_key(key: &PrivateKey) -> Result<(), VaultError> {
    if key.is_encrypted() {
        return Err(VaultError::BadKey {
            reason: "it is protected by a passphrase; store a copy without one (ssh-keygen -p)"
                .into(),
        });
    }
    use russh::keys::ssh_key::Algorithm;
    match key.algorithm() {
        Algorithm::Ed25519 | Algorithm::Ecdsa { .. } => Ok(()),
        other => Err(VaultError::BadKey {
            reason: format!("{other} keys are not supported; use ed25519 or ECDSA"),
        }),
    }
}

/// Generates a new ed25519 private key.
pub fn generate_ed25519(comment: &str) -> Result<PrivateKey, VaultError> {
    let seed = zeroize::Zeroizing::new(seal::random_key().map_err(|_| VaultError::Crypto)?);
    let keypair = russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&seed);
    let mut key = PrivateKey::from(keypair);
    key.set_comment(comment);
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn open(dir: &std::path::Path, env: Option<&str>) -> Result<Vault, VaultError> {
        let store: Arc<dyn StateStore> =
            Arc::new(portcullis_state::SqliteStore::open(&dir.join("state.db")).unwrap());
        Vault::open(store, &dir.join("master.key"), env.map(String::from)).await
    }

    #[tokio::test]
    async fn first_start_creates_a_private_master_key_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let vault = open(dir.path(), None).await.unwrap();
        vault
            .put_password("db", &Secret::new("s3cret-pw".into()), false)
            .await
            .unwrap();
        assert!(!crate::datadir::is_shared(&dir.path().join("master.key")).unwrap());
        drop(vault);
        let vault = open(dir.path(), None).await.unwrap();
        match vault.get("db").await.unwrap() {
            Credential::Password(p) => assert_eq!(p.expose(), "s3cret-pw"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_wrong_master_key_is_a_clear_error_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        open(dir.path(), None)
            .await
            .unwrap()
            .put_password("db", &Secret::new("pw".into()), false)
            .await
            .unwrap();
        let before = std::fs::read(dir.path().join("state.db")).unwrap();
        let wrong = "11".repeat(32);
        let error = open(dir.path(), Some(&wrong)).await.unwrap_err();
        assert!(
            matches!(error, VaultError::WrongMasterKey { .. }),
            "{error}"
        );
        assert!(
            error.to_string().contains("does not open this vault"),
            "{error}"
        );
        assert!(
            error.to_string().contains("$PORTCULLIS_MASTER_KEY"),
            "{error}"
        );
        assert_eq!(before, std::fs::read(dir.path().join("state.db")).unwrap());
    }

    #[tokio::test]
    async fn a_missing_master_key_is_not_replaced_by_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        open(dir.path(), None).await.unwrap();
        std::fs::remove_file(dir.path().join("master.key")).unwrap();
        let error = open(dir.path(), None).await.unwrap_err();
        assert!(matches!(error, VaultError::NoMasterKey { .. }), "{error}");
        assert!(!dir.path().join("master.key").exists());
    }

    #[tokio::test]
    async fn a_malformed_environment_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let error = open(dir.path(), Some("not-hex")).await.unwrap_err();
        assert!(
            matches!(error, VaultError::MalformedMasterKey { .. }),
            "{error}"
        );
    }

    #[tokio::test]
    async fn keys_round_trip_and_listing_has_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let vault = open(dir.path(), None).await.unwrap();
        let key = generate_ed25519("portcullis:web01").unwrap();
        let info = vault.put_private_key("web01", &key, false).await.unwrap();
        assert!(info.fingerprint.as_deref().unwrap().starts_with("SHA256:"));
        assert!(matches!(
            vault.put_private_key("web01", &key, false).await,
            Err(VaultError::Exists { .. })
        ));
        vault.put_private_key("web01", &key, true).await.unwrap();
        match vault.get("web01").await.unwrap() {
            Credential::PrivateKey(k) => assert_eq!(k.public_key(), key.public_key()),
            other => panic!("{other:?}"),
        }
        let listing = format!("{:?}", vault.list().await.unwrap());
        let private = key.to_openssh(LineEnding::LF).unwrap();
        let body: String = private.lines().nth(1).unwrap().chars().take(40).collect();
        assert!(!listing.contains(&body));
        vault.remove("web01").await.unwrap();
        assert!(matches!(
            vault.get("web01").await,
            Err(VaultError::NotFound { .. })
        ));
        assert!(matches!(
            vault.remove("web01").await,
            Err(VaultError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn a_sealed_value_moved_to_another_entry_does_not_open() {
        let dir = tempfile::tempdir().unwrap();
        let vault = open(dir.path(), None).await.unwrap();
        vault
            .put_password("a", &Secret::new("pa".into()), false)
            .await
            .unwrap();
        vault
            .put_password("b", &Secret::new("pb".into()), false)
            .await
            .unwrap();
        // a's sealed value put on b's row, as someone with write access to the store might.
        let mut row = vault.store.credential("a").await.unwrap().unwrap();
        row.name = "b".into();
        assert!(vault.store.put_credential(row, true).await.unwrap());
        assert!(matches!(
            vault.get("b").await,
            Err(VaultError::Corrupt { .. })
        ));
    }
}
