//! The vault: upstream credentials (private keys, passwords) sealed in the state database.
//!
//! * [`keyring`]: the master key and the data key it wraps.
//! * [`seal`]: AES-256-GCM with ring.
//!
//! A credential is sealed under the data key with its name and kind as associated data, so
//! a sealed value copied onto another entry does not open. What leaves the vault is a
//! [`Credential`] (whose secrets are `Secret`s or zeroizing key types) or a
//! [`CredentialInfo`], which has no secret at all: that is what listings and logs see.

pub mod keyring;
pub mod seal;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use portcullis_config::Secret;
use portcullis_config::validate::is_valid_name;
use portcullis_recorder::ChainKey;
use rusqlite::OptionalExtension;
use russh::keys::ssh_key::{HashAlg, LineEnding, PrivateKey};

use crate::store::{Store, StoreError};
use keyring::DataKey;
use seal::SealingKey;

/// Why a vault operation failed. No variant carries secret material.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The master key does not unwrap the data key.
    #[error(
        "the master key from {source_desc} does not open this vault ({}): it was sealed with a different key; nothing was changed",
        database.display()
    )]
    WrongMasterKey {
        /// Where the key came from.
        source_desc: String,
        /// The state database.
        database: PathBuf,
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
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What kind of secret an entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// An OpenSSH private key.
    PrivateKey,
    /// A password.
    Password,
}

impl CredentialKind {
    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::PrivateKey => "private-key",
            CredentialKind::Password => "password",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "private-key" => Some(CredentialKind::PrivateKey),
            "password" => Some(CredentialKind::Password),
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
    /// Unix time it was stored.
    pub created_at: i64,
}

/// The open vault.
pub struct Vault {
    store: Arc<Store>,
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
    pub fn open(
        store: Arc<Store>,
        master_key_file: &std::path::Path,
        environment: Option<String>,
    ) -> Result<Self, VaultError> {
        let data_key = keyring::open_keyring(&store, master_key_file, environment)?;
        let sealing = SealingKey::new(data_key.bytes()).map_err(|_| VaultError::Crypto)?;
        Ok(Self {
            store,
            data_key,
            sealing,
        })
    }

    /// An HMAC key for one purpose, derived from the data key.
    pub fn derived_key(&self, label: &str) -> ChainKey {
        ChainKey::derive(self.data_key.bytes(), label)
    }

    /// Stores a private key.
    pub fn put_private_key(
        &self,
        name: &str,
        key: &PrivateKey,
        replace: bool,
    ) -> Result<CredentialInfo, VaultError> {
        check_usable_key(key)?;
        let public = key.public_key();
        let encoded = key
            .to_openssh(LineEnding::LF)
            .map_err(|e| VaultError::BadKey {
                reason: e.to_string(),
            })?;
        let info = CredentialInfo {
            name: name.to_owned(),
            kind: CredentialKind::PrivateKey,
            fingerprint: Some(public.fingerprint(HashAlg::Sha256).to_string()),
            public_key: public.to_openssh().ok(),
            created_at: unix_now(),
        };
        self.put(info, encoded.as_bytes(), replace)
    }

    /// Stores a password.
    pub fn put_password(
        &self,
        name: &str,
        password: &Secret<String>,
        replace: bool,
    ) -> Result<CredentialInfo, VaultError> {
        let info = CredentialInfo {
            name: name.to_owned(),
            kind: CredentialKind::Password,
            fingerprint: None,
            public_key: None,
            created_at: unix_now(),
        };
        self.put(info, password.expose().as_bytes(), replace)
    }

    fn put(
        &self,
        info: CredentialInfo,
        secret: &[u8],
        replace: bool,
    ) -> Result<CredentialInfo, VaultError> {
        if !is_valid_name(&info.name) {
            return Err(VaultError::BadName { name: info.name });
        }
        let sealed = self
            .sealing
            .seal(secret, &associated_data(&info.name, info.kind))
            .map_err(|_| VaultError::Crypto)?;
        let verb = if replace {
            "INSERT OR REPLACE"
        } else {
            "INSERT"
        };
        let result = self.store.with(|db| {
            db.execute(
                &format!(
                    "{verb} INTO credentials (name, kind, fingerprint, public_key, created_at, sealed)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                ),
                rusqlite::params![
                    info.name,
                    info.kind.as_str(),
                    info.fingerprint,
                    info.public_key,
                    info.created_at,
                    sealed
                ],
            )
        });
        match result {
            Ok(_) => Ok(info),
            Err(StoreError::Sqlite {
                source: rusqlite::Error::SqliteFailure(e, _),
                ..
            }) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                Err(VaultError::Exists { name: info.name })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Takes a secret out, for logging in upstream.
    pub fn get(&self, name: &str) -> Result<Credential, VaultError> {
        let row: Option<(String, Vec<u8>)> = self.store.with(|db| {
            db.query_row(
                "SELECT kind, sealed FROM credentials WHERE name = ?1",
                [name],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
        })?;
        let (kind, sealed) = row.ok_or_else(|| VaultError::NotFound {
            name: name.to_owned(),
        })?;
        let corrupt = || VaultError::Corrupt {
            name: name.to_owned(),
        };
        let kind = CredentialKind::parse(&kind).ok_or_else(corrupt)?;
        let plain = Secret::new(
            self.sealing
                .open(&sealed, &associated_data(name, kind))
                .map_err(|_| corrupt())?,
        );
        let text = std::str::from_utf8(plain.expose()).map_err(|_| corrupt())?;
        Ok(match kind {
            CredentialKind::PrivateKey => Credential::PrivateKey(Arc::new(
                PrivateKey::from_openssh(text).map_err(|_| corrupt())?,
            )),
            CredentialKind::Password => Credential::Password(Secret::new(text.to_owned())),
        })
    }

    /// Every entry, without secrets, sorted by name.
    pub fn list(&self) -> Result<Vec<CredentialInfo>, VaultError> {
        let rows = self.store.with(|db| {
            let mut statement = db.prepare(
                "SELECT name, kind, fingerprint, public_key, created_at FROM credentials ORDER BY name",
            )?;
            let rows = statement.query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Option<String>>(2)?,
                    row.get::<_, Option<String>>(3)?,
                    row.get::<_, i64>(4)?,
                ))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        rows.into_iter()
            .map(|(name, kind, fingerprint, public_key, created_at)| {
                let kind = CredentialKind::parse(&kind)
                    .ok_or_else(|| VaultError::Corrupt { name: name.clone() })?;
                Ok(CredentialInfo {
                    name,
                    kind,
                    fingerprint,
                    public_key,
                    created_at,
                })
            })
            .collect()
    }

    /// Deletes an entry.
    pub fn remove(&self, name: &str) -> Result<(), VaultError> {
        let removed = self
            .store
            .with(|db| db.execute("DELETE FROM credentials WHERE name = ?1", [name]))?;
        if removed == 0 {
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

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// Generates a new ed25519 private key.
pub fn generate_ed25519(comment: &str) -> Result<PrivateKey, VaultError> {
    let seed = seal::random_key().map_err(|_| VaultError::Crypto)?;
    let keypair = russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&seed);
    let mut key = PrivateKey::from(keypair);
    key.set_comment(comment);
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &std::path::Path, env: Option<&str>) -> Result<Vault, VaultError> {
        let store = Arc::new(Store::open(&dir.join("state.db")).unwrap());
        Vault::open(store, &dir.join("master.key"), env.map(String::from))
    }

    #[test]
    fn first_start_creates_a_private_master_key_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let vault = open(dir.path(), None).unwrap();
        vault
            .put_password("db", &Secret::new("s3cret-pw".into()), false)
            .unwrap();
        assert!(!crate::datadir::is_shared(&dir.path().join("master.key")).unwrap());
        drop(vault);
        let vault = open(dir.path(), None).unwrap();
        match vault.get("db").unwrap() {
            Credential::Password(p) => assert_eq!(p.expose(), "s3cret-pw"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_wrong_master_key_is_a_clear_error_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        open(dir.path(), None)
            .unwrap()
            .put_password("db", &Secret::new("pw".into()), false)
            .unwrap();
        let before = std::fs::read(dir.path().join("state.db")).unwrap();
        let wrong = "11".repeat(32);
        let error = open(dir.path(), Some(&wrong)).unwrap_err();
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

    #[test]
    fn a_missing_master_key_is_not_replaced_by_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        open(dir.path(), None).unwrap();
        std::fs::remove_file(dir.path().join("master.key")).unwrap();
        let error = open(dir.path(), None).unwrap_err();
        assert!(matches!(error, VaultError::NoMasterKey { .. }), "{error}");
        assert!(!dir.path().join("master.key").exists());
    }

    #[test]
    fn a_malformed_environment_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let error = open(dir.path(), Some("not-hex")).unwrap_err();
        assert!(
            matches!(error, VaultError::MalformedMasterKey { .. }),
            "{error}"
        );
    }

    #[test]
    fn keys_round_trip_and_listing_has_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let vault = open(dir.path(), None).unwrap();
        let key = generate_ed25519("portcullis:web01").unwrap();
        let info = vault.put_private_key("web01", &key, false).unwrap();
        assert!(info.fingerprint.as_deref().unwrap().starts_with("SHA256:"));
        assert!(matches!(
            vault.put_private_key("web01", &key, false),
            Err(VaultError::Exists { .. })
        ));
        vault.put_private_key("web01", &key, true).unwrap();
        match vault.get("web01").unwrap() {
            Credential::PrivateKey(k) => assert_eq!(k.public_key(), key.public_key()),
            other => panic!("{other:?}"),
        }
        let listing = format!("{:?}", vault.list().unwrap());
        let private = key.to_openssh(LineEnding::LF).unwrap();
        let body: String = private.lines().nth(1).unwrap().chars().take(40).collect();
        assert!(!listing.contains(&body));
        vault.remove("web01").unwrap();
        assert!(matches!(
            vault.get("web01"),
            Err(VaultError::NotFound { .. })
        ));
        assert!(matches!(
            vault.remove("web01"),
            Err(VaultError::NotFound { .. })
        ));
    }

    #[test]
    fn a_sealed_value_moved_to_another_entry_does_not_open() {
        let dir = tempfile::tempdir().unwrap();
        let vault = open(dir.path(), None).unwrap();
        vault
            .put_password("a", &Secret::new("pa".into()), false)
            .unwrap();
        vault
            .put_password("b", &Secret::new("pb".into()), false)
            .unwrap();
        vault
            .store
            .with(|db| {
                db.execute(
                    "UPDATE credentials SET sealed = (SELECT sealed FROM credentials WHERE name = 'a') WHERE name = 'b'",
                    [],
                )
            })
            .unwrap();
        assert!(matches!(vault.get("b"), Err(VaultError::Corrupt { .. })));
    }
}
