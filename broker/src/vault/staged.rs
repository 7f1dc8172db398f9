//! A rotation's new secret, kept in the vault *before* it is installed on any target, so a
//! rotation cut off half way (the bastion killed between installing the new key and
//! committing it) can be finished or undone by the next one: the secret that may already be
//! installed upstream is never only in a dead process's memory.
//!
//! Staged secrets live beside the entry they will replace, under a name no operator entry
//! can have (`@staged.NAME`), sealed like any credential.

use super::{Credential, CredentialKind, Vault, VaultError};

fn staged_name(name: &str) -> String {
    format!("@staged.{name}")
}

fn retiring_name(name: &str) -> String {
    format!("@retiring.{name}")
}

/// A staged secret.
pub struct Staged {
    /// The secret.
    pub secret: Credential,
    /// When it was staged.
    pub since: std::time::SystemTime,
}

impl Vault {
    /// Keeps `secret` as the staged replacement of entry `name`, unless one is staged already
    /// (another node's rotation, or one cut off): false then, and nothing is changed.
    pub async fn stage_new(&self, name: &str, secret: &Credential) -> Result<bool, VaultError> {
        match self.put_staged(name, secret, false).await {
            Ok(()) => Ok(true),
            Err(VaultError::Exists { .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Keeps `secret` as the staged replacement of entry `name` (replacing a stale one).
    pub async fn stage(&self, name: &str, secret: &Credential) -> Result<(), VaultError> {
        self.put_staged(name, secret, true).await
    }

    async fn put_staged(
        &self,
        name: &str,
        secret: &Credential,
        replace: bool,
    ) -> Result<(), VaultError> {
        let staged = staged_name(name);
        let (info, text) = match secret {
            Credential::PrivateKey(key) => (
                self.key_info(&staged, CredentialKind::PrivateKey, key)?,
                self.encode_key(key)?,
            ),
            Credential::Password(password) => (
                self.secret_info(&staged, CredentialKind::Password),
                zeroize::Zeroizing::new(password.expose().clone()),
            ),
        };
        self.put_unchecked(info, text.as_bytes(), replace).await?;
        Ok(())
    }

    /// The staged replacement of entry `name`, if a rotation left one, and when it was
    /// staged.
    pub async fn staged(&self, name: &str) -> Result<Option<Staged>, VaultError> {
        let Some(row) = self.store.credential(&staged_name(name)).await? else {
            return Ok(None);
        };
        Ok(Some(Staged {
            secret: self.credential_from_row(&row)?,
            since: row.created_at,
        }))
    }

    /// Makes the staged secret of `name` the entry itself, then drops the staged copy (a crash
    /// between the two leaves both equal, which the next rotation tidies).
    pub async fn commit_staged(&self, name: &str, secret: &Credential) -> Result<(), VaultError> {
        match secret {
            Credential::PrivateKey(key) => {
                self.put_private_key(name, key, true).await?;
            }
            Credential::Password(password) => {
                self.put_password(name, password, true).await?;
            }
        }
        self.drop_staged(name).await
    }

    /// Forgets the staged secret of `name` (nothing if there is none).
    pub async fn drop_staged(&self, name: &str) -> Result<(), VaultError> {
        self.store.remove_credential(&staged_name(name)).await?;
        Ok(())
    }

    /// Notes `public_key` (a replaced key of entry `name`) as still to be removed from the
    /// targets, beside any noted before: written before a rotation commits, so a rotation
    /// cut off after its commit leaves the next one the key to take out.
    pub async fn retire(
        &self,
        name: &str,
        public_key: &russh::keys::ssh_key::PublicKey,
    ) -> Result<(), VaultError> {
        let mut lines = self.retiring(name).await?;
        let line = public_key.to_openssh().map_err(|e| VaultError::BadKey {
            reason: e.to_string(),
        })?;
        if !lines.contains(&line) {
            lines.push(line);
        }
        let info = super::CredentialInfo {
            name: retiring_name(name),
            kind: CredentialKind::Retiring,
            fingerprint: None,
            public_key: Some(lines.join("\n")),
            created_at: std::time::SystemTime::now(),
        };
        // Public keys only: nothing secret is sealed.
        self.put_unchecked(info, b"", true).await?;
        Ok(())
    }

    /// The replaced public keys of entry `name` not yet proven gone from its targets.
    pub async fn retiring(&self, name: &str) -> Result<Vec<String>, VaultError> {
        Ok(self
            .store
            .credential(&retiring_name(name))
            .await?
            .filter(|row| row.kind == CredentialKind::Retiring.as_str())
            .and_then(|row| row.public_key)
            .map(|lines| lines.lines().map(str::to_owned).collect())
            .unwrap_or_default())
    }

    /// Every replaced key of entry `name` is gone from its targets.
    pub async fn retired(&self, name: &str) -> Result<(), VaultError> {
        self.store.remove_credential(&retiring_name(name)).await?;
        Ok(())
    }
}
