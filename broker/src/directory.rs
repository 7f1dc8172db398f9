//! The config's identities, parsed: users' public keys, password hashes and TOTP keys,
//! trusted certificate authorities, and targets with their pinned host keys.
//!
//! Parsing happens once at start; every problem is reported against its config key, in the
//! same form as the config crate's own problems, so `check-config` shows them together.

use std::collections::HashMap;

use portcullis_config::{Config, KeyPath, Problem, Secret, TargetAuth};
use russh::keys::ssh_key::{Fingerprint, HashAlg, PublicKey};

/// A user as the front door sees them.
#[derive(Debug)]
pub struct UserEntry {
    /// Login name.
    pub name: String,
    /// Keys allowed to log in.
    pub keys: Vec<PublicKey>,
    /// Argon2 PHC string.
    pub password_hash: Option<Secret<String>>,
    /// Decoded TOTP key.
    pub totp_key: Option<Secret<Vec<u8>>>,
    /// A non-human identity (`kind = "service"`): checks out certificates, is never
    /// prompted.
    pub service: bool,
}

impl UserEntry {
    /// Whether `key` is one of this user's keys (comments do not matter).
    pub fn has_key(&self, key: &PublicKey) -> bool {
        self.keys.iter().any(|k| k.key_data() == key.key_data())
    }
}

/// A trusted user-certificate authority.
#[derive(Debug)]
pub struct TrustedCa {
    /// Name for audit records.
    pub name: String,
    /// Its key's fingerprint, as certificates are checked against.
    pub fingerprint: Fingerprint,
}

/// A target as the upstream side sees it.
#[derive(Debug, Clone)]
pub struct TargetEntry {
    /// Name used in logins.
    pub name: String,
    /// `host:port`.
    pub address: String,
    /// Upstream account.
    pub login: String,
    /// How portcullis logs in there.
    pub auth: UpstreamAuth,
    /// Pinned host key.
    pub host_key: PublicKey,
    /// When and how its vaulted credential is rotated.
    pub rotation: Rotation,
}

/// A target's rotation settings (`rotate_every`, `rotate_after`, `authorized_keys`,
/// `password_command`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate this often.
    pub every: Option<std::time::Duration>,
    /// Rotate after a session on a break-glass grant ends.
    pub after_break_glass: bool,
    /// Rotate after a service's checked-out grant ends.
    pub after_checkout: bool,
    /// The target's authorized keys file (`None`: the login's `~/.ssh/authorized_keys`).
    pub authorized_keys: Option<String>,
    /// The command that sets a password, fed `LOGIN:PASSWORD` on stdin.
    pub password_command: Option<String>,
}

/// How portcullis logs in to a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamAuth {
    /// With this vault entry (a private key or a password).
    Vaulted(String),
    /// With a fresh key pair and a certificate for that one login, signed by the bastion's
    /// user CA.
    Certificate,
}

/// Everything identity-related from the config, parsed.
#[derive(Debug, Default)]
pub struct Directory {
    users: HashMap<String, UserEntry>,
    cas: Vec<TrustedCa>,
    targets: HashMap<String, TargetEntry>,
}

fn parse_public_key(text: &str) -> Result<PublicKey, String> {
    PublicKey::from_openssh(text.trim()).map_err(|e| {
        format!("not an OpenSSH public key ({e}); expected e.g. \"ssh-ed25519 AAAA... comment\"")
    })
}

impl Directory {
    /// The targets logged in to with vault entry `credential`, by name.
    pub fn targets_using(&self, credential: &str) -> Vec<&TargetEntry> {
        let mut using: Vec<&TargetEntry> = self
            .targets
            .values()
            .filter(|t| matches!(&t.auth, UpstreamAuth::Vaulted(name) if name == credential))
            .collect();
        using.sort_by(|a, b| a.name.cmp(&b.name));
        using
    }

    /// Every target, by name.
    pub fn targets(&self) -> Vec<&TargetEntry> {
        let mut all: Vec<&TargetEntry> = self.targets.values().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Parses the identities of a validated config; all problems are collected.
    pub fn from_config(config: &Config) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let root = KeyPath::root();
        let mut directory = Directory::default();

        for (i, user) in config.users.iter().enumerate() {
            let at = root.key("users").index(i);
            let mut keys = Vec::new();
            for (k, text) in user.public_keys.iter().enumerate() {
                match parse_public_key(text) {
                    Ok(key) => keys.push(key),
                    Err(message) => {
                        problems.push(Problem::new(at.key("public_keys").index(k), message))
                    }
                }
            }
            if let Some(hash) = &user.password_hash
                && let Err(e) = argon2::PasswordHash::new(hash.expose())
            {
                problems.push(Problem::new(
                    at.key("password_hash"),
                    format!("is not a valid argon2 hash: {e}"),
                ));
            }
            directory.users.insert(
                user.name.clone(),
                UserEntry {
                    name: user.name.clone(),
                    keys,
                    password_hash: user.password_hash.clone(),
                    totp_key: user.totp_key(),
                    service: user.kind == portcullis_config::UserKind::Service,
                },
            );
        }

        for (i, ca) in config.user_cas.iter().enumerate() {
            match parse_public_key(&ca.public_key) {
                Ok(key) => directory.cas.push(TrustedCa {
                    name: ca
                        .name
                        .clone()
                        .filter(|n| !n.is_empty())
                        .unwrap_or_else(|| key.comment().to_string()),
                    fingerprint: key.fingerprint(HashAlg::Sha256),
                }),
                Err(message) => problems.push(Problem::new(
                    root.key("user_cas").index(i).key("public_key"),
                    message,
                )),
            }
        }

        for (i, target) in config.targets.iter().enumerate() {
            match parse_public_key(&target.host_key) {
                Ok(host_key) => {
                    directory.targets.insert(
                        target.name.clone(),
                        TargetEntry {
                            name: target.name.clone(),
                            address: target.address_with_port(),
                            login: target.login.clone(),
                            auth: match target.auth {
                                TargetAuth::Credential => {
                                    UpstreamAuth::Vaulted(target.credential.clone())
                                }
                                TargetAuth::Certificate => UpstreamAuth::Certificate,
                            },
                            host_key,
                            rotation: Rotation {
                                every: target.rotate_every,
                                after_break_glass: target
                                    .rotate_after
                                    .iter()
                                    .any(|a| a == "break-glass"),
                                after_checkout: target.rotate_after.iter().any(|a| a == "checkout"),
                                authorized_keys: target.authorized_keys.clone(),
                                password_command: target.password_command.clone(),
                            },
                        },
                    );
                }
                Err(message) => problems.push(Problem::new(
                    root.key("targets").index(i).key("host_key"),
                    message,
                )),
            }
        }

        if problems.is_empty() {
            Ok(directory)
        } else {
            Err(problems)
        }
    }

    /// A user by name.
    pub fn user(&self, name: &str) -> Option<&UserEntry> {
        self.users.get(name)
    }

    /// A target by name.
    pub fn target(&self, name: &str) -> Option<&TargetEntry> {
        self.targets.get(name)
    }

    /// The trusted CAs.
    pub fn cas(&self) -> &[TrustedCa] {
        &self.cas
    }

    /// The CA with this fingerprint, if trusted.
    pub fn ca(&self, fingerprint: &Fingerprint) -> Option<&TrustedCa> {
        self.cas.iter().find(|ca| &ca.fingerprint == fingerprint)
    }
}
