//! Authentication decisions for the front door: public keys, OpenSSH user certificates,
//! passwords, and password + TOTP through keyboard-interactive.
//!
//! Each decision checks the throttle first, and every refusal that could be a guess
//! (a wrong password, code or certificate, an unknown user) counts against the client's
//! address and the user name. Offered public keys that are not the user's are refused and
//! audited but not counted: agents offer every key they hold, and keys cannot be guessed.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use russh::keys::Certificate;
use russh::keys::ssh_key::certificate::CertType;
use russh::keys::ssh_key::{HashAlg, PublicKey};
use russh::server::Auth;

use super::{password, totp};
use crate::server::Broker;
use crate::session::SessionShared;

/// A successful authentication: who and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// The bastion user.
    pub user: String,
    /// `publickey`, `certificate`, `password` or `password+totp`.
    pub method: &'static str,
}

/// The outcome of one authentication step.
#[derive(Debug)]
pub enum Step {
    /// Proceed: russh's answer (a public key "ok, sign it", or keyboard-interactive prompts).
    Continue(Auth),
    /// Refused.
    Refused,
    /// Authenticated.
    Accepted(Authenticated),
}

/// The prompts of a keyboard-interactive round, remembered until the answers arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KbdPrompts {
    /// Just a password.
    Password,
    /// A password and a TOTP code.
    PasswordAndCode,
}

/// Decides authentication for one connection.
pub struct Authenticator {
    broker: Arc<Broker>,
    session: Arc<SessionShared>,
}

impl Authenticator {
    /// For the connection described by `session`.
    pub fn new(broker: Arc<Broker>, session: Arc<SessionShared>) -> Self {
        Self { broker, session }
    }

    fn source(&self) -> IpAddr {
        self.session.client.ip()
    }

    /// `Some(Refused)` when this source or user is throttled (and audits it).
    fn throttled(&self, user: &str, method: &str) -> Option<Step> {
        let key = self
            .broker
            .throttle
            .blocked(self.source(), user, Instant::now())?;
        self.broker.audit.record(
            self.session
                .audit("auth.throttled")
                .with("user", user)
                .with("method", method)
                .with("throttled", key.to_string()),
        );
        tracing::warn!(parent: &self.session.span, user, %key, "authentication throttled");
        Some(Step::Refused)
    }

    fn refuse(&self, user: &str, method: &str, reason: &str, counts: bool) -> Step {
        self.refuse_with(user, method, reason, counts, |e| e)
    }

    fn refuse_with(
        &self,
        user: &str,
        method: &str,
        reason: &str,
        counts: bool,
        extra: impl FnOnce(crate::audit::AuditEvent) -> crate::audit::AuditEvent,
    ) -> Step {
        if counts {
            self.broker
                .throttle
                .record_failure(self.source(), user, Instant::now());
        }
        crate::metrics::Metrics::count(&self.broker.metrics.auth_failures_total);
        self.broker.audit.record(extra(
            self.session
                .audit("auth.failure")
                .with("user", user)
                .with("method", method)
                .with("reason", reason),
        ));
        tracing::info!(parent: &self.session.span, user, method, reason, "authentication refused");
        Step::Refused
    }

    fn accept(&self, user: &str, method: &'static str) -> Step {
        Step::Accepted(Authenticated {
            user: user.to_owned(),
            method,
        })
    }

    /// A key offered before signing: say whether a signature with it would be accepted.
    pub fn publickey_offered(&self, user: &str, key: &PublicKey) -> Step {
        if let Some(refused) = self.throttled(user, "publickey") {
            return refused;
        }
        let known = self.broker.directory.user(user);
        if known.is_some_and(|u| u.has_key(key)) {
            return Step::Continue(Auth::Accept);
        }
        // russh shows a certificate's inner key here; the certificate itself is judged
        // after the signature, so let it through when any CA is trusted.
        if !self.broker.directory.cas().is_empty() {
            return Step::Continue(Auth::Accept);
        }
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let reason = if known.is_some() {
            "key not authorized for this user"
        } else {
            "unknown user"
        };
        self.refuse_with(user, "publickey", reason, known.is_none(), |e| {
            e.with("key", fingerprint)
        })
    }

    /// A signed public key login.
    pub fn publickey(&self, user: &str, key: &PublicKey) -> Step {
        let known = self.broker.directory.user(user);
        if known.is_some_and(|u| u.has_key(key)) {
            return self.accept(user, "publickey");
        }
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        self.refuse_with(
            user,
            "publickey",
            "key not authorized for this user",
            known.is_none(),
            |e| e.with("key", fingerprint),
        )
    }

    /// A signed certificate login (russh has checked the signature and validity window).
    pub fn certificate(&self, user: &str, cert: &Certificate) -> Step {
        if let Some(refused) = self.throttled(user, "certificate") {
            return refused;
        }
        let ca_fingerprint = cert.signature_key().fingerprint(HashAlg::Sha256);
        let ca = self.broker.directory.ca(&ca_fingerprint);
        let key_id = cert.key_id().to_owned();
        let refuse = |reason: &str| {
            self.refuse_with(user, "certificate", reason, true, |e| {
                e.with("key_id", &key_id)
                    .with("ca", ca_fingerprint.to_string())
            })
        };
        let Some(ca) = ca else {
            return refuse("certificate signed by an untrusted CA");
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        if let Err(e) = cert.validate_at(now, [&ca.fingerprint]) {
            return refuse(&format!("certificate invalid: {e}"));
        }
        if cert.cert_type() != CertType::User {
            return refuse("not a user certificate");
        }
        if !cert.valid_principals().iter().any(|p| p == user) {
            return refuse("the certificate's principals do not include this user");
        }
        if self.broker.directory.user(user).is_none() {
            return refuse("certificate principal is not a configured user");
        }
        for (name, value) in cert.critical_options().iter() {
            match name.as_str() {
                "source-address" if source_allowed(value, self.source()) => {}
                "source-address" => return refuse("source-address does not allow this client"),
                other => {
                    return refuse(&format!(
                        "certificate has critical option {other:?}, which portcullis does not enforce"
                    ));
                }
            }
        }
        tracing::info!(parent: &self.session.span, user, key_id, ca = %ca.name, "certificate accepted");
        self.accept(user, "certificate")
    }

    /// The password method (only for users without TOTP: those must use
    /// keyboard-interactive, which asks for the code too).
    pub async fn password(&self, user: &str, password: &str) -> Step {
        if let Some(refused) = self.throttled(user, "password") {
            return refused;
        }
        let entry = self.broker.directory.user(user);
        if entry.is_some_and(|u| u.totp_key.is_some()) {
            return self.refuse(
                user,
                "password",
                "a TOTP code is required (use keyboard-interactive)",
                false,
            );
        }
        let hash = entry.and_then(|u| u.password_hash.as_ref().map(|h| h.expose().clone()));
        if check_password(hash, password.to_owned()).await {
            self.accept(user, "password")
        } else {
            self.refuse(user, "password", "wrong password or unknown user", true)
        }
    }

    /// First keyboard-interactive round: which prompts to show.
    pub fn keyboard_interactive_prompts(&self, user: &str) -> Result<KbdPrompts, Step> {
        if let Some(refused) = self.throttled(user, "keyboard-interactive") {
            return Err(refused);
        }
        // Unknown users get the same prompt as known ones: the answer reveals nothing.
        Ok(match self.broker.directory.user(user) {
            Some(u) if u.totp_key.is_some() => KbdPrompts::PasswordAndCode,
            _ => KbdPrompts::Password,
        })
    }

    /// Second keyboard-interactive round: check the answers.
    pub async fn keyboard_interactive_answers(
        &self,
        user: &str,
        prompts: KbdPrompts,
        answers: Vec<String>,
    ) -> Step {
        let method = "keyboard-interactive";
        let entry = self.broker.directory.user(user);
        let hash = entry.and_then(|u| u.password_hash.as_ref().map(|h| h.expose().clone()));
        let mut answers = answers.into_iter();
        let password = answers.next().unwrap_or_default();
        let password_ok = check_password(hash, password).await;
        match (prompts, entry.and_then(|u| u.totp_key.as_ref())) {
            (KbdPrompts::PasswordAndCode, Some(key)) => {
                let code = answers.next().unwrap_or_default();
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or_default();
                let step = totp::matching_step(key.expose(), &code, now);
                match (password_ok, step) {
                    (true, Some(step)) if self.broker.totp_replay.accept(user, step) => {
                        self.accept(user, "password+totp")
                    }
                    (true, Some(_)) => self.refuse(user, method, "TOTP code already used", true),
                    (true, None) => self.refuse(user, method, "wrong TOTP code", true),
                    (false, _) => self.refuse(user, method, "wrong password or unknown user", true),
                }
            }
            _ if password_ok => self.accept(user, "password"),
            _ => self.refuse(user, method, "wrong password or unknown user", true),
        }
    }
}

/// Verifies on a blocking thread (argon2 is deliberately slow); an unknown user or one
/// without a password is checked against a decoy so timing does not tell them apart.
async fn check_password(hash: Option<String>, password: String) -> bool {
    tokio::task::spawn_blocking(move || match hash {
        Some(hash) => password::verify(&hash, &password),
        None => {
            password::verify(password::decoy_hash(), &password);
            false
        }
    })
    .await
    .unwrap_or(false)
}

/// Whether `ip` is within the comma-separated CIDR list of a certificate's
/// `source-address` option.
fn source_allowed(list: &str, ip: IpAddr) -> bool {
    list.split(',').any(|entry| cidr_contains(entry.trim(), ip))
}

fn cidr_contains(cidr: &str, ip: IpAddr) -> bool {
    let (network, bits) = match cidr.split_once('/') {
        Some((network, bits)) => (network, bits.parse::<u32>().ok()),
        None => (cidr, None),
    };
    let Ok(network) = network.parse::<IpAddr>() else {
        return false;
    };
    match (network, ip) {
        (IpAddr::V4(net), IpAddr::V4(ip)) => {
            let bits = bits.unwrap_or(32).min(32);
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(net) & mask == u32::from(ip) & mask
        }
        (IpAddr::V6(net), IpAddr::V6(ip)) => {
            let bits = bits.unwrap_or(128).min(128);
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(net) & mask == u128::from(ip) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_address_lists() {
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(source_allowed("10.0.0.0/8", ip));
        assert!(source_allowed("192.168.0.0/16, 10.1.2.3", ip));
        assert!(!source_allowed("10.1.2.4", ip));
        assert!(!source_allowed("10.1.3.0/24", ip));
        assert!(source_allowed("0.0.0.0/0", ip));
        assert!(!source_allowed("::1", ip));
        assert!(source_allowed("::1/128", "::1".parse().unwrap()));
        assert!(!source_allowed("garbage", ip));
    }
}
