//! The bastion's own SSH user CA, sealed in the vault like any credential.
//!
//! Targets with `auth = "certificate"` trust it (`TrustedUserCAKeys`) instead of holding a
//! key per target; the bastion signs a certificate for each login with the *active* CA. A
//! rotation makes a new active CA and keeps the old one as *previous*: both are published
//! (`portcullis ca show`) so targets can trust the new one before the old one is retired.
//!
//! The two live in the credentials table under names no operator can give an entry
//! (`@user-ca.active`, `@user-ca.previous`), so `vault` commands never show or touch them.
//! Every step of a rotation leaves a usable state: a crash after the old CA is copied to
//! *previous* but before the new one is written leaves both names on the old key, which
//! signs and is published as before.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use russh::keys::ssh_key::certificate::{Builder, CertType};
use russh::keys::ssh_key::public::KeyData;
use russh::keys::ssh_key::{Certificate, HashAlg, PrivateKey, PublicKey};

use super::{CredentialKind, Vault, VaultError, generate_ed25519, seal};

/// How far back the bastion's certificates are valid from, for clocks running behind ours.
pub const SKEW: Duration = Duration::from_secs(60);

/// What a certificate of the bastion's CA says; everything else is the same for all of them
/// (a user certificate, a random nonce and serial, no critical option, no forwarding).
pub struct CertificateFor<'a> {
    /// The key it certifies.
    pub key: KeyData,
    /// Its one principal.
    pub principal: &'a str,
    /// Its key id (who and what it is for).
    pub key_id: String,
    /// Valid from [`SKEW`] before this.
    pub from: SystemTime,
    /// Valid until this.
    pub until: SystemTime,
    /// `permit-pty`.
    pub pty: bool,
}

/// Signs a user certificate with `ca`.
pub fn sign(ca: &PrivateKey, what: CertificateFor<'_>) -> Result<Certificate, VaultError> {
    let seconds = |at: SystemTime| at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let bad = |e: russh::keys::ssh_key::Error| VaultError::BadKey {
        reason: format!("cannot make a certificate: {e}"),
    };
    let nonce = seal::random_key().map_err(|_| VaultError::Crypto)?;
    let random = seal::random_key().map_err(|_| VaultError::Crypto)?;
    let mut serial = [0u8; 8];
    serial.copy_from_slice(&random[..8]);
    let mut builder = Builder::new(
        nonce.to_vec(),
        what.key,
        seconds(what.from - SKEW),
        seconds(what.until),
    )
    .map_err(bad)?;
    builder
        .serial(u64::from_be_bytes(serial))
        .map_err(bad)?
        .cert_type(CertType::User)
        .map_err(bad)?
        .key_id(what.key_id)
        .map_err(bad)?
        .valid_principal(what.principal)
        .map_err(bad)?;
    if what.pty {
        builder.extension("permit-pty", "").map_err(bad)?;
    }
    builder.sign(ca).map_err(bad)
}

/// The entry of the CA that signs.
const ACTIVE: &str = "@user-ca.active";
/// The entry of the CA being retired: published, never signing.
const PREVIOUS: &str = "@user-ca.previous";

/// A CA's public half, for `ca show` and the audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedCa {
    /// `active` or `previous`.
    pub role: &'static str,
    /// The `TrustedUserCAKeys` line.
    pub public_key: PublicKey,
}

impl PublishedCa {
    /// `SHA256:…`.
    pub fn fingerprint(&self) -> String {
        self.public_key.fingerprint(HashAlg::Sha256).to_string()
    }

    /// The line to put in a target's `TrustedUserCAKeys` file.
    pub fn line(&self) -> String {
        self.public_key
            .to_openssh()
            .unwrap_or_else(|_| "(unprintable key)".into())
    }
}

/// What a rotation step did, for the operator and the audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaChange {
    /// The CA that signs from now on.
    pub active: String,
    /// The CA still published (after `rotate`) or removed (after `retire`).
    pub previous: Option<String>,
}

impl Vault {
    /// The CA that signs login certificates, created on first use.
    pub async fn user_ca(&self) -> Result<PrivateKey, VaultError> {
        if let Some(key) = self.ca_key(ACTIVE).await? {
            return Ok(key);
        }
        let key = generate_ed25519("portcullis user CA")?;
        match self.put_ca(ACTIVE, &key, false).await {
            Ok(()) => Ok(key),
            // Another node (or command) made one first: theirs is the CA.
            Err(VaultError::Exists { .. }) => {
                self.ca_key(ACTIVE)
                    .await?
                    .ok_or_else(|| VaultError::NotFound {
                        name: ACTIVE.to_owned(),
                    })
            }
            Err(error) => Err(error),
        }
    }

    /// The CAs targets should trust: the active one (created if there is none yet) and, during
    /// a rotation, the previous one.
    pub async fn published_user_cas(&self) -> Result<Vec<PublishedCa>, VaultError> {
        let active = self.user_ca().await?.public_key().clone();
        let mut published = vec![PublishedCa {
            role: "active",
            public_key: active.clone(),
        }];
        if let Some(previous) = self.ca_key(PREVIOUS).await?
            && previous.public_key().key_data() != active.key_data()
        {
            published.push(PublishedCa {
                role: "previous",
                public_key: previous.public_key().clone(),
            });
        }
        Ok(published)
    }

    /// The public keys of the CAs there are (active, and previous during a rotation), read
    /// from their sealed entries — none is created.
    pub async fn user_ca_public_keys(&self) -> Result<Vec<PublicKey>, VaultError> {
        let mut keys = Vec::new();
        for name in [ACTIVE, PREVIOUS] {
            if let Some(key) = self.ca_key(name).await? {
                keys.push(key.public_key().clone());
            }
        }
        Ok(keys)
    }

    /// Makes a new active CA; the old one stays published as *previous* until
    /// [`Vault::retire_user_ca`]. Refused while a previous CA is still published: one
    /// rotation at a time.
    pub async fn rotate_user_ca(&self) -> Result<CaChange, VaultError> {
        let current = self.user_ca().await?;
        if let Some(previous) = self.ca_key(PREVIOUS).await?
            && previous.public_key().key_data() != current.public_key().key_data()
        {
            return Err(VaultError::RotationInProgress {
                previous: fingerprint(&previous),
            });
        }
        let new = generate_ed25519("portcullis user CA")?;
        // Old first: if the second write never happens, both names hold the old CA.
        self.put_ca(PREVIOUS, &current, true).await?;
        self.put_ca(ACTIVE, &new, true).await?;
        Ok(CaChange {
            active: fingerprint(&new),
            previous: Some(fingerprint(&current)),
        })
    }

    /// Stops publishing the previous CA: certificates it signed no longer get in anywhere
    /// the targets' `TrustedUserCAKeys` follow `ca show`.
    pub async fn retire_user_ca(&self) -> Result<CaChange, VaultError> {
        let active = self.user_ca().await?;
        let Some(previous) = self.ca_key(PREVIOUS).await? else {
            return Err(VaultError::NothingToRetire);
        };
        self.store.remove_credential(PREVIOUS).await?;
        let previous = fingerprint(&previous);
        let active = fingerprint(&active);
        Ok(CaChange {
            previous: (previous != active).then_some(previous),
            active,
        })
    }

    async fn ca_key(&self, name: &str) -> Result<Option<PrivateKey>, VaultError> {
        match self.open_entry(name, CredentialKind::UserCa).await {
            Ok(text) => PrivateKey::from_openssh(text.expose())
                .map(Some)
                .map_err(|_| VaultError::Corrupt {
                    name: name.to_owned(),
                }),
            Err(VaultError::NotFound { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    async fn put_ca(&self, name: &str, key: &PrivateKey, replace: bool) -> Result<(), VaultError> {
        let info = self.key_info(name, CredentialKind::UserCa, key)?;
        let encoded = self.encode_key(key)?;
        self.put_unchecked(info, encoded.as_bytes(), replace)
            .await
            .map(|_| ())
    }
}

fn fingerprint(key: &PrivateKey) -> String {
    key.public_key().fingerprint(HashAlg::Sha256).to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use portcullis_state::StateStore;

    use super::*;

    async fn vault(dir: &std::path::Path) -> Vault {
        let store: Arc<dyn StateStore> =
            Arc::new(portcullis_state::SqliteStore::open(&dir.join("state.db")).unwrap());
        Vault::open(store, &dir.join("master.key"), None)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_ca_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = vault(dir.path()).await.user_ca().await.unwrap();
        let again = vault(dir.path()).await.user_ca().await.unwrap();
        assert_eq!(first.public_key(), again.public_key());
        // It is no operator's entry: listings and `vault rm` do not see it.
        let vault = vault(dir.path()).await;
        assert!(vault.list().await.unwrap().is_empty());
        assert!(matches!(
            vault.remove(ACTIVE).await,
            Err(VaultError::NotFound { .. })
        ));
        assert_eq!(
            vault.user_ca().await.unwrap().public_key(),
            first.public_key()
        );
    }

    #[tokio::test]
    async fn rotation_publishes_both_until_the_old_one_is_retired() {
        let dir = tempfile::tempdir().unwrap();
        let vault = vault(dir.path()).await;
        let old = vault.user_ca().await.unwrap();
        let change = vault.rotate_user_ca().await.unwrap();
        assert_eq!(change.previous.as_deref(), Some(fingerprint(&old).as_str()));
        let new = vault.user_ca().await.unwrap();
        assert_ne!(new.public_key(), old.public_key());
        let published = vault.published_user_cas().await.unwrap();
        let roles: Vec<_> = published
            .iter()
            .map(|p| (p.role, p.fingerprint()))
            .collect();
        assert_eq!(
            roles,
            [
                ("active", fingerprint(&new)),
                ("previous", fingerprint(&old))
            ]
        );

        // One rotation at a time.
        let error = vault.rotate_user_ca().await.unwrap_err();
        assert!(
            error.to_string().contains("retire") && error.to_string().contains(&fingerprint(&old)),
            "{error}"
        );
        assert_eq!(
            vault.user_ca().await.unwrap().public_key(),
            new.public_key()
        );

        let retired = vault.retire_user_ca().await.unwrap();
        assert_eq!(retired.previous, Some(fingerprint(&old)));
        assert_eq!(vault.published_user_cas().await.unwrap().len(), 1);
        assert!(matches!(
            vault.retire_user_ca().await,
            Err(VaultError::NothingToRetire)
        ));
        vault.rotate_user_ca().await.unwrap();
    }

    #[tokio::test]
    async fn a_rotation_cut_off_half_way_leaves_the_old_ca_signing_and_can_be_finished() {
        let dir = tempfile::tempdir().unwrap();
        let vault = vault(dir.path()).await;
        let old = vault.user_ca().await.unwrap();
        // The first write of a rotation, and nothing after it.
        vault.put_ca(PREVIOUS, &old, true).await.unwrap();
        assert_eq!(
            vault.user_ca().await.unwrap().public_key(),
            old.public_key()
        );
        assert_eq!(vault.published_user_cas().await.unwrap().len(), 1);
        let change = vault.rotate_user_ca().await.unwrap();
        assert_eq!(change.previous, Some(fingerprint(&old)));
        assert_ne!(
            vault.user_ca().await.unwrap().public_key(),
            old.public_key()
        );
    }
}
