//! A certificate for one upstream login (`auth = "certificate"` targets).
//!
//! Each login gets a fresh Ed25519 key pair, kept in memory only (ssh-key zeroizes it when
//! the last reference drops, right after the login), and a certificate the bastion's user CA
//! signs for it:
//! * principal: the target's `login`, and nothing else;
//! * valid from a minute ago (clock skew) for a few minutes: it only has to cover the
//!   handshake, and a copy is useless soon after;
//! * key id naming the user, the session and the grant, so the target's own sshd log says who
//!   really logged in (`Accepted publickey … ID portcullis user=alice session=… grant=12`);
//! * `permit-pty` only for a terminal session, and no forwarding extension at all: the
//!   bastion relays no forwarding, so a certificate that allowed it would only help someone
//!   who stole it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use russh::keys::ssh_key::{Certificate, PrivateKey};

pub use crate::vault::ca::SKEW;
use crate::vault::ca::{self, CertificateFor};
use crate::vault::{VaultError, generate_ed25519};

/// How long a certificate is valid after it is made.
pub const VALIDITY: Duration = Duration::from_secs(5 * 60);

/// Who a login is for, as the certificate states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginFor {
    /// The user behind the session.
    pub user: String,
    /// The session id.
    pub session: String,
    /// The grant it runs on (`None`: standing access).
    pub grant: Option<u64>,
    /// Whether the session is a terminal (`permit-pty`).
    pub terminal: bool,
}

impl LoginFor {
    /// The certificate's key id.
    pub fn key_id(&self) -> String {
        let grant = self
            .grant
            .map_or_else(|| "standing".to_owned(), |g| g.to_string());
        format!(
            "portcullis user={} session={} grant={grant}",
            self.user, self.session
        )
    }
}

/// A key pair and its certificate, for one login.
pub struct LoginCertificate {
    /// The private half (never written anywhere).
    pub key: Arc<PrivateKey>,
    /// The CA's certificate for it.
    pub certificate: Certificate,
}

/// Makes the key pair and signs its certificate with `ca`, valid around `now`.
pub fn issue(
    ca: &PrivateKey,
    principal: &str,
    login: &LoginFor,
    now: SystemTime,
) -> Result<LoginCertificate, VaultError> {
    let key = generate_ed25519("portcullis login")?;
    let certificate = ca::sign(
        ca,
        CertificateFor {
            key: key.public_key().key_data().clone(),
            principal,
            key_id: login.key_id(),
            from: now,
            until: now + VALIDITY,
            pty: login.terminal,
        },
    )?;
    Ok(LoginCertificate {
        key: Arc::new(key),
        certificate,
    })
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use russh::keys::ssh_key::certificate::CertType;

    use super::*;

    fn login(terminal: bool) -> LoginFor {
        LoginFor {
            user: "alice".into(),
            session: "s-1".into(),
            grant: Some(12),
            terminal,
        }
    }

    #[test]
    fn the_certificate_names_the_login_and_allows_only_what_the_session_needs() {
        let ca = generate_ed25519("ca").unwrap();
        let now = SystemTime::now();
        let issued = issue(&ca, "deploy", &login(true), now).unwrap();
        let cert = &issued.certificate;
        assert_eq!(cert.valid_principals(), ["deploy".to_owned()]);
        assert_eq!(cert.key_id(), "portcullis user=alice session=s-1 grant=12");
        assert_eq!(cert.cert_type(), CertType::User);
        assert_eq!(cert.public_key(), issued.key.public_key().key_data());
        let extensions: Vec<&String> = cert.extensions().keys().collect();
        assert_eq!(extensions, ["permit-pty"]);
        assert!(cert.critical_options().is_empty());
        let from = now.duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(cert.valid_after(), from - SKEW.as_secs());
        assert_eq!(cert.valid_before(), from + VALIDITY.as_secs());
        // Signed by the CA: the check OpenSSH makes with TrustedUserCAKeys.
        let fingerprint = ca
            .public_key()
            .fingerprint(russh::keys::ssh_key::HashAlg::Sha256);
        cert.validate_at(from, [&fingerprint]).unwrap();
        assert!(
            cert.validate_at(from + VALIDITY.as_secs() + 1, [&fingerprint])
                .is_err()
        );

        let exec = issue(&ca, "deploy", &login(false), now).unwrap();
        assert!(exec.certificate.extensions().is_empty());
        assert_ne!(exec.key.public_key(), issued.key.public_key());
        assert_ne!(exec.certificate.serial(), cert.serial());
    }

    #[test]
    fn standing_access_says_so_in_the_key_id() {
        let mut standing = login(false);
        standing.grant = None;
        assert_eq!(
            standing.key_id(),
            "portcullis user=alice session=s-1 grant=standing"
        );
    }
}
