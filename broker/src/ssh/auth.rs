//! Authentication decisions for the front door: public keys, OpenSSH user certificates,
//! passwords, and password + TOTP through keyboard-interactive.
//!
//! Each decision checks the throttle first (see [`crate::credentials::throttle`]). A password (with its
//! TOTP code) is verified only after a slot on the client's address and on the user's
//! password count has been reserved, atomically, so parallel answers cannot outrun the
//! limit. Refusals that could be guesses count against the address and the user *for that
//! method*: wrong passwords never throttle a user's key or certificate, and a certificate
//! from an untrusted CA counts against the address alone. Offered public keys that are not
//! the user's are refused and audited but not counted: agents offer every key they hold, and
//! keys cannot be guessed. Pre-login audit lines are budgeted per address.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use portcullis_config::conditions::Network;
use russh::keys::Certificate;
use russh::keys::ssh_key::certificate::CertType;
use russh::keys::ssh_key::{HashAlg, PublicKey};
use russh::server::Auth;

use crate::access::checkout;
use crate::alerts::{self, Alert};
use crate::audit::AuditEvent;
use crate::credentials::throttle::{AuditBudget, Method, Reservation, ThrottleKey};
use crate::credentials::{password, totp};
use crate::live::SessionShared;
use crate::services::Services;
use crate::text::Shown;
use portcullis_state::StateError;

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

/// What a refused certificate counts against.
enum Counts {
    /// The address only (a CA anyone could have made).
    Source,
    /// The address and the user's certificate method.
    SourceAndUser,
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
    services: Arc<Services>,
    session: Arc<SessionShared>,
}

impl Authenticator {
    /// For the connection described by `session`.
    pub fn new(services: Arc<Services>, session: Arc<SessionShared>) -> Self {
        Self { services, session }
    }

    fn source(&self) -> IpAddr {
        self.session.client.ip()
    }

    /// The throttle keys of a `method` attempt for `user` from this connection.
    fn keys(&self, user: &str, method: Method) -> Vec<ThrottleKey> {
        vec![
            ThrottleKey::Source(self.source()),
            ThrottleKey::User(user.to_owned(), method),
        ]
    }

    /// Writes a pre-login audit event, within this address's budget.
    fn audit_preauth(&self, event: AuditEvent) {
        match self
            .services
            .throttle
            .audit_budget(self.source(), self.services.clock.instant())
        {
            AuditBudget::Write { suppressed } => self
                .services
                .audit
                .record(event.with("suppressed_before", (suppressed > 0).then_some(suppressed))),
            AuditBudget::LastWritten => self.services.audit.record(event.with(
                "note",
                "more pre-login events from this address are counted, not written, until its rate drops",
            )),
            AuditBudget::Suppress => {}
        }
    }

    /// A refusal because `key` is throttled (audited within budget).
    fn throttled_refusal(&self, user: &str, method: &str, key: &ThrottleKey) -> Step {
        self.audit_preauth(
            self.session
                .audit("auth.throttled")
                .with("user", user)
                .with("method", method)
                .with("throttled", key.to_string()),
        );
        tracing::warn!(parent: &self.session.span, user = %Shown(user), %key, "authentication throttled");
        self.alert_login_failures(user, key);
        Step::Refused
    }

    /// The `login_failures` alert for `key`, once per key and window. Within the source's
    /// audit budget like every pre-login line: a flood from many names must not become a
    /// flood of alerts.
    fn alert_login_failures(&self, user: &str, key: &ThrottleKey) {
        if !self
            .services
            .throttle
            .first_refusal(key, self.services.clock.instant())
        {
            return;
        }
        let message = format!(
            "too many failed logins ({key}); further attempts are refused until they age out"
        );
        self.audit_preauth(
            Alert::LoginFailures
                .on(self.session.audit(alerts::EVENT), message)
                .with("user", user)
                .with("throttled", key.to_string()),
        );
    }

    /// A wrong password (or code) whose try held a throttle slot: the slot stays as the
    /// failure, and the refusal is audited (with the alert if it reached the limit).
    async fn refuse_reserved(
        &self,
        reservation: Reservation<'_>,
        user: &str,
        method: &str,
        reason: &str,
    ) -> Step {
        reservation.failed();
        let refused = self.refuse(user, method, reason);
        self.after_counted_failure(user, &self.keys(user, Method::Password))
            .await;
        refused
    }

    /// After a failure was counted against `keys`: if it was the one that reached the
    /// limit, the alert goes out now rather than at the next attempt.
    async fn after_counted_failure(&self, user: &str, keys: &[ThrottleKey]) {
        if let Ok(Some(key)) = self
            .services
            .throttle
            .blocked(keys, self.services.clock.now())
            .await
        {
            self.alert_login_failures(user, &key);
        }
    }

    /// `Some(Refused)` when one of `keys` is throttled, or the throttle cannot be checked.
    async fn throttled(&self, user: &str, method: &str, keys: &[ThrottleKey]) -> Option<Step> {
        match self
            .services
            .throttle
            .blocked(keys, self.services.clock.now())
            .await
        {
            Ok(None) => None,
            Ok(Some(key)) => Some(self.throttled_refusal(user, method, &key)),
            Err(error) => Some(self.unchecked_refusal(user, method, &error)),
        }
    }

    /// A refusal because the throttle's store could not answer: no attempt is verified
    /// without being counted.
    fn unchecked_refusal(&self, user: &str, method: &str, error: &StateError) -> Step {
        tracing::error!(parent: &self.session.span, user = %Shown(user), method, %error, "cannot check the login throttle; refusing");
        Step::Refused
    }

    /// Takes a throttle slot for a verification of `method`; the refusal if there is none.
    async fn reserve(
        &self,
        user: &str,
        method: &str,
        keys: Vec<ThrottleKey>,
    ) -> Result<Reservation<'_>, Step> {
        match self
            .services
            .throttle
            .reserve(keys, self.services.clock.now())
            .await
        {
            Ok(Ok(reservation)) => Ok(reservation),
            Ok(Err(key)) => Err(self.throttled_refusal(user, method, &key)),
            Err(error) => Err(self.unchecked_refusal(user, method, &error)),
        }
    }

    fn refuse(&self, user: &str, method: &str, reason: &str) -> Step {
        self.refuse_and_audit(user, method, reason, |e| e)
    }

    /// Refuses, counting a failure against `counts` (empty: not counted).
    async fn refuse_with(
        &self,
        user: &str,
        method: &str,
        reason: &str,
        counts: &[ThrottleKey],
        extra: impl FnOnce(AuditEvent) -> AuditEvent,
    ) -> Step {
        if !counts.is_empty()
            && let Err(error) = self
                .services
                .throttle
                .record_failure(counts, self.services.clock.now())
                .await
        {
            tracing::error!(parent: &self.session.span, %error, "cannot count a failed login");
        }
        let refused = self.refuse_and_audit(user, method, reason, extra);
        if !counts.is_empty() {
            self.after_counted_failure(user, counts).await;
        }
        refused
    }

    /// Refuses: counted in the metrics, audited within budget, logged.
    fn refuse_and_audit(
        &self,
        user: &str,
        method: &str,
        reason: &str,
        extra: impl FnOnce(AuditEvent) -> AuditEvent,
    ) -> Step {
        crate::metrics::Metrics::count(&self.services.metrics.auth_failures_total);
        self.audit_preauth(extra(
            self.session
                .audit("auth.failure")
                .with("user", user)
                .with("method", method)
                .with("reason", reason),
        ));
        tracing::info!(parent: &self.session.span, user = %Shown(user), method, reason, "authentication refused");
        Step::Refused
    }

    fn accept(&self, user: &str, method: &'static str) -> Step {
        Step::Accepted(Authenticated {
            user: user.to_owned(),
            method,
        })
    }

    /// A key offered before signing: say whether a signature with it would be accepted.
    pub async fn publickey_offered(&self, user: &str, key: &PublicKey) -> Step {
        let keys = self.keys(user, Method::PublicKey);
        if let Some(refused) = self.throttled(user, "publickey", &keys).await {
            return refused;
        }
        let known = self.services.directory.user(user);
        if known.is_some_and(|u| u.has_key(key)) {
            return Step::Continue(Auth::Accept);
        }
        // russh shows a certificate's inner key here; the certificate itself is judged
        // after the signature, so let it through when any CA is trusted (the bastion's own
        // signs services' check-out certificates).
        if !self.services.directory.cas().is_empty() || known.is_some_and(|u| u.service) {
            return Step::Continue(Auth::Accept);
        }
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let (reason, counts) = if known.is_some() {
            ("key not authorized for this user", &[][..])
        } else {
            ("unknown user", &keys[..])
        };
        self.refuse_with(user, "publickey", reason, counts, |e| {
            e.with("key", fingerprint)
        })
        .await
    }

    /// A signed public key login.
    pub async fn publickey(&self, user: &str, key: &PublicKey) -> Step {
        let known = self.services.directory.user(user);
        if known.is_some_and(|u| u.has_key(key)) {
            return self.accept(user, "publickey");
        }
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let keys = self.keys(user, Method::PublicKey);
        let counts = if known.is_none() { &keys[..] } else { &[][..] };
        self.refuse_with(
            user,
            "publickey",
            "key not authorized for this user",
            counts,
            |e| e.with("key", fingerprint),
        )
        .await
    }

    /// A signed certificate login (russh has checked the signature and validity window), to
    /// `target` if the login names one.
    pub async fn certificate(&self, user: &str, target: Option<&str>, cert: &Certificate) -> Step {
        let keys = self.keys(user, Method::Certificate);
        if let Some(refused) = self.throttled(user, "certificate", &keys).await {
            return refused;
        }
        let ca_fingerprint = cert.signature_key().fingerprint(HashAlg::Sha256);
        let key_id = cert.key_id().to_owned();
        let judged = match checkout::signed_by_us(&self.services, &ca_fingerprint).await {
            Ok(true) => {
                self.judge_checkout(user, target, cert, &ca_fingerprint)
                    .await
            }
            Ok(false) => self.judge_certificate(user, cert, &ca_fingerprint),
            Err(error) => Err((
                format!("the bastion's CA cannot be read now ({error})"),
                Counts::Source,
            )),
        };
        match judged {
            Ok(ca) => {
                tracing::info!(parent: &self.session.span, user = %Shown(user), key_id = %Shown(&key_id), ca = %ca, "certificate accepted");
                self.accept(user, "certificate")
            }
            Err((reason, counts)) => {
                let counts = match counts {
                    Counts::Source => &keys[..1],
                    Counts::SourceAndUser => &keys[..],
                };
                self.refuse_with(user, "certificate", &reason, counts, |e| {
                    e.with("key_id", &key_id)
                        .with("ca", ca_fingerprint.to_string())
                })
                .await
            }
        }
    }

    /// The bastion's clock in Unix seconds (certificates and TOTP codes count in them).
    fn now_secs(&self) -> u64 {
        self.services
            .clock
            .now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default()
    }

    /// What every certificate must be: signed by `ca`, valid now on the bastion's clock, a
    /// user certificate, for `user`.
    fn check_user_certificate(
        &self,
        user: &str,
        cert: &Certificate,
        ca: &russh::keys::ssh_key::Fingerprint,
    ) -> Result<(), String> {
        if let Err(e) = cert.validate_at(self.now_secs(), [ca]) {
            return Err(format!("certificate invalid: {e}"));
        }
        if cert.cert_type() != CertType::User {
            return Err("not a user certificate".into());
        }
        if !cert.valid_principals().iter().any(|p| p == user) {
            return Err("the certificate's principals do not include this user".into());
        }
        Ok(())
    }

    /// A service's check-out certificate, signed by the bastion's own CA: valid now, a user
    /// certificate for this user, and its grant active for this target (see
    /// [`checkout::admits`]).
    async fn judge_checkout(
        &self,
        user: &str,
        target: Option<&str>,
        cert: &Certificate,
        ca_fingerprint: &russh::keys::ssh_key::Fingerprint,
    ) -> Result<String, (String, Counts)> {
        let refuse = |reason: String| Err((reason, Counts::SourceAndUser));
        self.check_user_certificate(user, cert, ca_fingerprint)
            .map_err(|reason| (reason, Counts::SourceAndUser))?;
        if !cert.critical_options().is_empty() {
            return refuse("a check-out certificate with critical options".into());
        }
        match checkout::admits(&self.services, cert, user, target).await {
            Ok(grant) => Ok(format!("the bastion's own (check-out of grant #{grant})")),
            Err(reason) => refuse(reason),
        }
    }

    /// Whether `cert` (signed by `ca_fingerprint`) lets `user` in: the trusted CA's name, or
    /// why not and what the failure counts against.
    fn judge_certificate(
        &self,
        user: &str,
        cert: &Certificate,
        ca_fingerprint: &russh::keys::ssh_key::Fingerprint,
    ) -> Result<String, (String, Counts)> {
        let refuse = |reason: &str| Err((reason.to_owned(), Counts::SourceAndUser));
        let Some(ca) = self.services.directory.ca(ca_fingerprint) else {
            // Anyone can make a CA: its certificates are the caller's failure, not the
            // user's, so they count against the address only.
            return Err((
                "certificate signed by an untrusted CA".to_owned(),
                Counts::Source,
            ));
        };
        if let Err(reason) = self.check_user_certificate(user, cert, &ca.fingerprint) {
            return refuse(&reason);
        }
        if self.services.directory.user(user).is_none() {
            return refuse("certificate principal is not a configured user");
        }
        for (name, value) in cert.critical_options().iter() {
            match name.as_str() {
                "source-address" if source_allowed(value, self.source()) => {}
                "source-address" => {
                    return refuse("source-address does not allow this client");
                }
                other => {
                    return refuse(&format!(
                        "certificate has critical option {:?}, which portcullis does not enforce",
                        Shown(other).to_string()
                    ));
                }
            }
        }
        Ok(ca.name.clone())
    }

    /// The password method (only for users without TOTP: those must use
    /// keyboard-interactive, which asks for the code too).
    pub async fn password(&self, user: &str, password: &str) -> Step {
        let entry = self.services.directory.user(user);
        if entry.is_some_and(|u| u.totp_key.is_some()) {
            return self.refuse(
                user,
                "password",
                "a TOTP code is required (use keyboard-interactive)",
            );
        }
        let reservation = match self
            .reserve(user, "password", self.keys(user, Method::Password))
            .await
        {
            Ok(reservation) => reservation,
            Err(refused) => return refused,
        };
        let hash = entry.and_then(|u| u.password_hash.as_ref().map(|h| h.expose().clone()));
        if check_password(hash, password.to_owned()).await {
            reservation.succeeded().await;
            self.accept(user, "password")
        } else {
            self.refuse_reserved(
                reservation,
                user,
                "password",
                "wrong password or unknown user",
            )
            .await
        }
    }

    /// First keyboard-interactive round: which prompts to show. Nothing is reserved yet (a
    /// prompt verifies nothing); the answers are checked against the throttle when they come.
    pub async fn keyboard_interactive_prompts(&self, user: &str) -> Result<KbdPrompts, Step> {
        if let Some(refused) = self
            .throttled(
                user,
                "keyboard-interactive",
                &self.keys(user, Method::Password),
            )
            .await
        {
            return Err(refused);
        }
        // Unknown users get the same prompt as known ones: the answer reveals nothing.
        Ok(match self.services.directory.user(user) {
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
        let reservation = match self
            .reserve(user, method, self.keys(user, Method::Password))
            .await
        {
            Ok(reservation) => reservation,
            Err(refused) => return refused,
        };
        let entry = self.services.directory.user(user);
        let hash = entry.and_then(|u| u.password_hash.as_ref().map(|h| h.expose().clone()));
        let mut answers = answers.into_iter();
        let password = answers.next().unwrap_or_default();
        let password_ok = check_password(hash, password).await;
        let totp_key = entry.and_then(|u| u.totp_key.as_ref());
        let with_code = prompts == KbdPrompts::PasswordAndCode && totp_key.is_some();
        let refusal = match (prompts, totp_key) {
            (KbdPrompts::PasswordAndCode, Some(key)) => {
                let code = answers.next().unwrap_or_default();
                let step = totp::matching_step(key.expose(), &code, self.now_secs());
                match (password_ok, step) {
                    (true, Some(step)) => {
                        match self.services.state.accept_totp_step(user, step).await {
                            Ok(true) => None,
                            Ok(false) => Some("TOTP code already used"),
                            Err(error) => {
                                tracing::error!(%error, "cannot check the TOTP replay guard");
                                Some("the TOTP replay guard is unavailable")
                            }
                        }
                    }
                    (true, None) => Some("wrong TOTP code"),
                    (false, _) => Some("wrong password or unknown user"),
                }
            }
            _ if password_ok => None,
            _ => Some("wrong password or unknown user"),
        };
        match refusal {
            None => {
                reservation.succeeded().await;
                let how = if with_code {
                    "password+totp"
                } else {
                    "password"
                };
                self.accept(user, how)
            }
            Some(reason) => {
                self.refuse_reserved(reservation, user, method, reason)
                    .await
            }
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
    list.split(',')
        .any(|entry| Network::parse(entry).is_ok_and(|network| network.contains(ip)))
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
