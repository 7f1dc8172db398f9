//! Rotation of vaulted static credentials, verify-then-commit.
//!
//! A key: a new key pair is made and *staged* in the vault (so it is never only in this
//! process's memory), installed on every target using the entry through the current key
//! (the target account's authorized keys, with a marker comment), proven by a login with the
//! new key on every one of them, committed in the vault, and only then are the old key (and
//! any key an earlier cut-off rotation left, by its marker) removed from the targets — and
//! the old key is tried once more to prove it no longer gets in.
//!
//! A password: a new one is staged, set on each target by its `password_command` through the
//! current password, proven by a login with it, then committed.
//!
//! Nothing is lost when a step fails: before the commit the old secret still works and the
//! vault entry is unchanged (an installed new key is taken out again); a staged secret left
//! by a rotation that was cut off (the bastion killed) is picked up by the next one, which
//! finishes installing it or finds it already in place. The caller audits the outcome.

pub mod schedule;
pub mod scripts;

use std::sync::Arc;
use std::time::Duration;

use portcullis_config::Secret;
use russh::keys::ssh_key::{HashAlg, PrivateKey};

use crate::directory::TargetEntry;
use crate::upstream::{self, UpstreamError};
use crate::vault::{Credential, Vault, VaultError, generate_ed25519, seal};

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    /// The vault entry.
    pub credential: String,
    /// The targets it was rotated on.
    pub targets: Vec<String>,
    /// Fingerprints of the old and new keys (passwords have none).
    pub old_fingerprint: Option<String>,
    /// The new key's.
    pub new_fingerprint: Option<String>,
    /// It finished a rotation an earlier run left staged.
    pub resumed: bool,
    /// Targets where the old key still got in after its removal (alerted).
    pub old_still_accepted: Vec<String>,
}

/// Why a rotation did not happen; the old secret still works and the vault is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rotating {credential} failed at {step}{}: {reason}", target.as_ref().map(|t| format!(" on {t}")).unwrap_or_default())]
pub struct RotationFailed {
    /// The vault entry.
    pub credential: String,
    /// `stage`, `install`, `verify`, `set-password`, `commit`, …
    pub step: &'static str,
    /// The target it failed on, if one.
    pub target: Option<String>,
    /// Why, in words.
    pub reason: String,
}

impl RotationFailed {
    fn new(
        credential: &str,
        step: &'static str,
        target: Option<&TargetEntry>,
        reason: String,
    ) -> Self {
        Self {
            credential: credential.to_owned(),
            step,
            target: target.map(|t| t.name.clone()),
            reason,
        }
    }
}

/// How long a staged secret belongs to the rotation that staged it; after that a rotation
/// that finds it takes it over (the one that staged it was cut off).
pub const LEASE: Duration = Duration::from_secs(15 * 60);

/// How long each login to a target may take.
const LOGIN_DEADLINE: Duration = Duration::from_secs(15);

/// Rotates vault entry `credential` on `targets` (every target that logs in with it).
pub async fn rotate(
    vault: &Vault,
    targets: &[&TargetEntry],
    credential: &str,
) -> Result<Rotated, RotationFailed> {
    let fail = |step, target: Option<&TargetEntry>, reason: String| {
        RotationFailed::new(credential, step, target, reason)
    };
    if targets.is_empty() {
        return Err(fail(
            "plan",
            None,
            "no target logs in with it (targets' credential = …), so there is nowhere to install a new one".into(),
        ));
    }
    let current = vault
        .get(credential)
        .await
        .map_err(|e| fail("plan", None, e.to_string()))?;
    // A staged copy of the entry itself is a commit cut off before the copy was dropped:
    // stale, not a rotation (as is one of another kind).
    let staged = vault
        .staged(credential)
        .await
        .map_err(|e| fail("plan", None, e.to_string()))?
        .filter(|staged| replaces(&staged.secret, &current));
    if let Some(staged) = &staged {
        // A staged secret is a rotation under way (here or on another node), or one cut off:
        // only once it is older than any rotation takes is it taken over.
        let age = std::time::SystemTime::now()
            .duration_since(staged.since)
            .unwrap_or_default();
        if age < LEASE {
            return Err(fail(
                "plan",
                None,
                format!(
                    "another rotation of it is under way (it staged a new secret {} ago); \
                     if that one was cut off, this is tried again after {}",
                    humantime::format_duration(Duration::from_secs(age.as_secs())),
                    humantime::format_duration(LEASE)
                ),
            ));
        }
    }
    match (current, staged.map(|staged| staged.secret)) {
        (Credential::PrivateKey(old), staged) => {
            let staged = match staged {
                Some(Credential::PrivateKey(key)) => Some(key),
                _ => None,
            };
            rotate_key(vault, targets, credential, old, staged).await
        }
        (Credential::Password(old), staged) => {
            let staged = match staged {
                Some(Credential::Password(password)) => Some(password),
                _ => None,
            };
            rotate_password(vault, targets, credential, old, staged).await
        }
    }
}

/// Whether a staged secret is a new one for `current`: of its kind, and not the same (a key
/// compared by its public half).
fn replaces(staged: &Credential, current: &Credential) -> bool {
    match (staged, current) {
        (Credential::PrivateKey(new), Credential::PrivateKey(old)) => {
            new.public_key() != old.public_key()
        }
        (Credential::Password(new), Credential::Password(old)) => new.expose() != old.expose(),
        _ => false,
    }
}

fn fingerprint(key: &PrivateKey) -> String {
    key.public_key().fingerprint(HashAlg::Sha256).to_string()
}

/// The base64 body of a public key (what identifies it in an authorized keys file).
fn body(key: &PrivateKey) -> String {
    key.public_key()
        .to_openssh()
        .ok()
        .and_then(|line| line.split_whitespace().nth(1).map(str::to_owned))
        .unwrap_or_default()
}

async fn login(target: &TargetEntry, credential: Credential) -> Result<upstream::Upstream, String> {
    upstream::login_with(target, credential, LOGIN_DEADLINE)
        .await
        .map_err(|e| e.to_string())
}

/// Whether `credential` logs in to `target` (a refusal is `Ok(false)`; an unreachable target
/// an error).
async fn gets_in(target: &TargetEntry, credential: Credential) -> Result<bool, String> {
    match upstream::login_with(target, credential, LOGIN_DEADLINE).await {
        Ok(upstream) => {
            upstream.disconnect("rotation check").await;
            Ok(true)
        }
        Err(UpstreamError::LoginRefused { .. }) => Ok(false),
        Err(other) => Err(other.to_string()),
    }
}

async fn run(upstream: &upstream::Upstream, script: &str, stdin: &[u8]) -> Result<(), String> {
    let (status, stderr) = upstream
        .run(script, stdin)
        .await
        .map_err(|e| e.to_string())?;
    if status == 0 {
        Ok(())
    } else if stderr.is_empty() {
        Err(format!(
            "the command on the target exited with status {status}"
        ))
    } else {
        Err(format!(
            "the command on the target exited with status {status}: {stderr}"
        ))
    }
}

async fn rotate_key(
    vault: &Vault,
    targets: &[&TargetEntry],
    credential: &str,
    old: Arc<PrivateKey>,
    staged: Option<Arc<PrivateKey>>,
) -> Result<Rotated, RotationFailed> {
    let fail = |step, target: Option<&TargetEntry>, reason: String| {
        RotationFailed::new(credential, step, target, reason)
    };
    let (new, resumed) = match staged {
        Some(key) => (key, true),
        None => {
            let key = Arc::new(
                generate_ed25519(&scripts::marker(credential))
                    .map_err(|e| fail("stage", None, e.to_string()))?,
            );
            stage_fresh(
                vault,
                credential,
                &Credential::PrivateKey(key.clone()),
                &Credential::PrivateKey(old.clone()),
            )
            .await?;
            (key, false)
        }
    };
    let marker = scripts::marker(credential);
    let line = format!(
        "{} {} {marker} {}",
        new.algorithm().as_str(),
        body(&new),
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
    );

    // Install and prove, target by target; on a failure, take the new key out again.
    let mut installed: Vec<&TargetEntry> = Vec::new();
    let mut outcome = Ok(());
    for target in targets {
        let keys = target.rotation.authorized_keys.as_deref();
        let step = async {
            // A resumed rotation may have installed it here already (and even removed the
            // old key): then there is nothing to install.
            if gets_in(target, Credential::PrivateKey(new.clone()))
                .await
                .map_err(|e| ("install", e))?
            {
                return Ok(());
            }
            let upstream = login(target, Credential::PrivateKey(old.clone()))
                .await
                .map_err(|e| ("install", e))?;
            let installing = run(&upstream, &scripts::install(keys, &body(&new), &line), b"").await;
            upstream.disconnect("rotation").await;
            installing.map_err(|e| ("install", e))?;
            match gets_in(target, Credential::PrivateKey(new.clone())).await {
                Ok(true) => Ok(()),
                Ok(false) => Err((
                    "verify",
                    "the target refused the new key after it was installed (does authorized_keys name the file its sshd reads?)".to_owned(),
                )),
                Err(e) => Err(("verify", e)),
            }
        };
        installed.push(target);
        if let Err((step, reason)) = step.await {
            outcome = Err(fail(step, Some(target), reason));
            break;
        }
    }
    if let Err(failed) = outcome {
        for target in installed {
            undo_install(target, &old, &new, &marker).await;
        }
        // Nothing of the new key is left anywhere: forget it.
        let _ = vault.drop_staged(credential).await;
        return Err(failed);
    }

    // Noted before the commit: if this run is cut off after it, the next one still knows to
    // take the old key out.
    vault
        .retire(credential, old.public_key())
        .await
        .map_err(|e| fail("commit", None, e.to_string()))?;
    let retiring: Vec<String> = vault
        .retiring(credential)
        .await
        .map_err(|e| fail("commit", None, e.to_string()))?
        .iter()
        .filter_map(|line| line.split_whitespace().nth(1).map(str::to_owned))
        .filter(|retired| *retired != body(&new))
        .collect();
    vault
        .commit_staged(credential, &Credential::PrivateKey(new.clone()))
        .await
        .map_err(|e| {
            fail(
                "commit",
                None,
                format!("{e} (the new key is installed and staged; the next rotation finishes it)"),
            )
        })?;

    // Committed: now the old key goes (with any an earlier run committed away but was cut
    // off before removing), and is proven gone.
    let mut old_still_accepted = Vec::new();
    for target in targets {
        let keys = target.rotation.authorized_keys.as_deref();
        let removed = match login(target, Credential::PrivateKey(new.clone())).await {
            Ok(upstream) => {
                let mut result = Ok(());
                for retired in &retiring {
                    if result.is_ok() {
                        result = run(
                            &upstream,
                            &scripts::remove(keys, retired, &body(&new), &marker),
                            b"",
                        )
                        .await;
                    }
                }
                upstream.disconnect("rotation").await;
                result
            }
            Err(e) => Err(e),
        };
        let still = gets_in(target, Credential::PrivateKey(old.clone())).await;
        if removed.is_err() || !matches!(still, Ok(false)) {
            tracing::error!(
                target = %target.name,
                credential,
                problem = ?removed.err(),
                "ALERT: the old key of {credential} still gets in to {} after its rotation; remove it there by hand",
                target.name
            );
            old_still_accepted.push(target.name.clone());
        }
    }
    if old_still_accepted.is_empty() {
        // Every replaced key is gone everywhere: nothing left to note.
        let _ = vault.retired(credential).await;
    }
    Ok(Rotated {
        credential: credential.to_owned(),
        targets: targets.iter().map(|t| t.name.clone()).collect(),
        old_fingerprint: Some(fingerprint(&old)),
        new_fingerprint: Some(fingerprint(&new)),
        resumed,
        old_still_accepted,
    })
}

/// Stages `new` for a fresh rotation of `credential` (whose secret is `current`). If another
/// rotation staged one since this one looked, that one goes on and this one stops; a stale
/// staged copy of the entry itself is replaced.
async fn stage_fresh(
    vault: &Vault,
    credential: &str,
    new: &Credential,
    current: &Credential,
) -> Result<(), RotationFailed> {
    let fail = |reason: String| RotationFailed::new(credential, "stage", None, reason);
    if vault
        .stage_new(credential, new)
        .await
        .map_err(|e| fail(e.to_string()))?
    {
        return Ok(());
    }
    match vault.staged(credential).await {
        Ok(Some(theirs)) if replaces(&theirs.secret, current) => Err(fail(
            "another rotation of it started at the same moment".into(),
        )),
        _ => vault
            .stage(credential, new)
            .await
            .map_err(|e| fail(e.to_string())),
    }
}

/// Takes a new key that did not make it out of a target again (through the old key).
async fn undo_install(
    target: &TargetEntry,
    old: &Arc<PrivateKey>,
    new: &Arc<PrivateKey>,
    marker: &str,
) {
    let keys = target.rotation.authorized_keys.as_deref();
    if let Ok(upstream) = login(target, Credential::PrivateKey(old.clone())).await {
        // Keep the old key, drop the new one and anything else rotation left.
        let script = scripts::remove(keys, &body(new), &body(old), marker);
        if let Err(error) = run(&upstream, &script, b"").await {
            tracing::warn!(target = %target.name, %error, "could not take an unused new key out again");
        }
        upstream.disconnect("rotation").await;
    }
}

/// A new password: 32 letters and digits.
fn new_password() -> Result<Secret<String>, VaultError> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let bytes = zeroize::Zeroizing::new(seal::random_key().map_err(|_| VaultError::Crypto)?);
    let text: String = bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    Ok(Secret::new(text))
}

async fn rotate_password(
    vault: &Vault,
    targets: &[&TargetEntry],
    credential: &str,
    old: Secret<String>,
    staged: Option<Secret<String>>,
) -> Result<Rotated, RotationFailed> {
    let fail = |step, target: Option<&TargetEntry>, reason: String| {
        RotationFailed::new(credential, step, target, reason)
    };
    if let Some(target) = targets
        .iter()
        .find(|t| t.rotation.password_command.is_none())
    {
        return Err(fail(
            "plan",
            Some(target),
            "it is a password and the target has no password_command to set a new one".into(),
        ));
    }
    let resumed = staged.is_some();
    let secret = |password: &Secret<String>| Credential::Password(password.clone());
    let new = match staged {
        Some(password) => password,
        None => {
            let password = new_password().map_err(|e| fail("stage", None, e.to_string()))?;
            stage_fresh(vault, credential, &secret(&password), &secret(&old)).await?;
            password
        }
    };
    // `earlier` targets already have the new password: once one has, it must never be
    // forgotten.
    for (earlier, target) in targets.iter().enumerate() {
        let set = async {
            if gets_in(target, secret(&new)).await? {
                return Ok(());
            }
            let upstream = login(target, secret(&old)).await?;
            // Secret zeroizes it when dropped.
            let stdin = Secret::new(format!("{}:{}\n", target.login, new.expose()));
            let command = target
                .rotation
                .password_command
                .as_deref()
                .unwrap_or("false");
            let result = run(&upstream, command, stdin.expose().as_bytes()).await;
            drop(stdin);
            upstream.disconnect("rotation").await;
            result?;
            match gets_in(target, secret(&new)).await? {
                true => Ok(()),
                false => {
                    Err("the target refused the new password after the command set it".to_owned())
                }
            }
        };
        if let Err(reason) = set.await {
            // The new password is forgotten only if it is set nowhere: no earlier target took
            // it, and the old one still works here. Otherwise it stays staged for the next
            // run to repair.
            if earlier == 0 && matches!(gets_in(target, secret(&old)).await, Ok(true)) {
                let _ = vault.drop_staged(credential).await;
            } else {
                tracing::error!(
                    target = %target.name,
                    credential,
                    "ALERT: the password of {credential} may have changed on {} without being proven; \
                     the new one stays staged and the next rotation tries it",
                    target.name
                );
            }
            return Err(fail("set-password", Some(target), reason));
        }
    }
    vault
        .commit_staged(credential, &Credential::Password(new))
        .await
        .map_err(|e| {
            fail(
                "commit",
                None,
                format!("{e} (the new password stays staged; the next rotation finishes it)"),
            )
        })?;
    Ok(Rotated {
        credential: credential.to_owned(),
        targets: targets.iter().map(|t| t.name.clone()).collect(),
        old_fingerprint: None,
        new_fingerprint: None,
        resumed,
        old_still_accepted: Vec::new(),
    })
}
