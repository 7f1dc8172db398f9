//! Short-lived check-out for automation: a service (`kind = "service"`) granted access to a
//! target gets an OpenSSH *client* certificate from the bastion's CA for logging in through
//! the bastion — principal its own name, valid until the grant ends, key id naming the
//! grant. The session is brokered, recorded and filtered like any other. The front door
//! accepts such a certificate only while its grant is active, for the grant's own target
//! and user, checked at every login: revoking the grant locks the certificate out at once,
//! whatever its validity window says.

use std::time::SystemTime;

use portcullis_state::GrantRecord;
use russh::keys::ssh_key::{Certificate, PrivateKey, PublicKey};

use crate::services::Services;
use crate::vault::VaultError;
use crate::vault::ca::{self, CertificateFor};

/// What every check-out certificate's key id starts with.
const KEY_ID: &str = "portcullis checkout";

/// The key id of the certificate for `grant` of `user`.
pub fn key_id(user: &str, grant: u64) -> String {
    format!("{KEY_ID} user={user} grant={grant}")
}

/// The user and grant a key id names, if it is a check-out certificate's.
pub fn parse_key_id(key_id: &str) -> Option<(&str, u64)> {
    let rest = key_id.strip_prefix(KEY_ID)?.strip_prefix(" user=")?;
    let (user, grant) = rest.split_once(" grant=")?;
    Some((user, grant.parse().ok()?))
}

/// Signs `public_key` for logging in as `grant`'s user until the grant ends.
pub fn issue(
    ca: &PrivateKey,
    public_key: &PublicKey,
    grant: &GrantRecord,
    now: SystemTime,
) -> Result<Certificate, VaultError> {
    ca::sign(
        ca,
        CertificateFor {
            key: public_key.key_data().clone(),
            principal: &grant.grant.user,
            key_id: key_id(&grant.grant.user, grant.grant.id),
            from: now,
            until: grant.grant.expires_at,
            pty: true,
        },
    )
}

/// Whether the bastion's own CA (active or being retired) signed a certificate whose CA key
/// has this fingerprint.
pub async fn signed_by_us(
    services: &Services,
    ca: &russh::keys::ssh_key::Fingerprint,
) -> Result<bool, VaultError> {
    // The sealed entries, not their clear public-key column: whoever can write the database
    // must not be able to make a CA of theirs "ours". None is created on this pre-login path.
    Ok(services
        .vault
        .user_ca_public_keys()
        .await?
        .iter()
        .any(|key| &key.fingerprint(ca.algorithm()) == ca))
}

/// Whether a check-out certificate lets `user` in to `target` now: its grant must be
/// `user`'s, for `target`, and active. The refusal is a sentence.
pub async fn admits(
    services: &Services,
    cert: &Certificate,
    user: &str,
    target: Option<&str>,
) -> Result<u64, String> {
    let Some((named, grant)) = parse_key_id(cert.key_id()) else {
        return Err("a certificate of the bastion's CA that is not a check-out certificate".into());
    };
    if named != user {
        return Err(format!(
            "the check-out certificate is {named}'s, not {user}'s"
        ));
    }
    if !services.directory.user(user).is_some_and(|u| u.service) {
        return Err("check-out certificates are for service users only".into());
    }
    let record = services
        .state
        .grant(grant)
        .await
        .map_err(|e| format!("the grant cannot be checked now ({e})"))?
        .ok_or_else(|| format!("grant #{grant} does not exist"))?;
    if record.grant.user != user {
        return Err(format!("grant #{grant} is not {user}'s"));
    }
    if target != Some(record.grant.target.as_str()) {
        return Err(format!(
            "the certificate of grant #{grant} is for {} only",
            record.grant.target
        ));
    }
    if !record.grant.is_active(services.clock.now()) {
        let how = if record.revoked.is_some() {
            "was revoked"
        } else {
            "has ended"
        };
        return Err(format!(
            "grant #{grant} {how}: its certificate no longer gets in"
        ));
    }
    Ok(grant)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_name_user_and_grant_and_nothing_else_passes() {
        assert_eq!(
            key_id("ci-deploy", 12),
            "portcullis checkout user=ci-deploy grant=12"
        );
        assert_eq!(
            parse_key_id("portcullis checkout user=ci-deploy grant=12"),
            Some(("ci-deploy", 12))
        );
        for other in [
            "portcullis user=alice session=1 grant=12",
            "portcullis checkout user=ci grant=x",
            "portcullis checkout grant=12",
            "someone else's",
        ] {
            assert_eq!(parse_key_id(other), None, "{other}");
        }
    }
}
