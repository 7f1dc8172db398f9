//! The signature of node-to-node calls (see [`super::peer`] for why and how they are made):
//! HMAC-SHA256 with the secret every node shares, over the method, the path with its query,
//! the calling node, the time, a random nonce and the operator the call is made for (with
//! their scopes). The answering node checks the signature, that the time is within a minute
//! of its own and that it has not seen the nonce (a recorded call cannot be replayed).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_config::Scope;
use ring::hmac;

/// The Authorization scheme of node-to-node calls.
pub const SCHEME: &str = "Portcullis-Peer";

/// How far a call's time may be from the answering node's clock.
const SKEW: Duration = Duration::from_secs(60);

fn scope_name(scope: Scope) -> &'static str {
    scope.as_str()
}

fn scope_of(name: &str) -> Option<Scope> {
    Scope::parse(name)
}

/// Scopes as text: `read+operate`.
pub fn scopes_text(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| scope_name(*s))
        .collect::<Vec<_>>()
        .join("+")
}

/// Scopes from [`scopes_text`]'s form.
pub fn scopes_of(text: &str) -> Result<Vec<Scope>, String> {
    text.split('+')
        .filter(|s| !s.is_empty())
        .map(|s| scope_of(s).ok_or_else(|| format!("unknown scope {s:?}")))
        .collect()
}

/// What is signed.
fn message(
    method: &str,
    path: &str,
    node: &str,
    time: u64,
    nonce: &str,
    caller: &str,
    scopes: &str,
) -> String {
    format!("portcullis-peer\n{method}\n{path}\n{node}\n{time}\n{nonce}\n{caller}\n{scopes}")
}

/// The most nonces remembered: a flood of valid calls beyond it is refused rather than
/// remembered without bound (or forgotten too early, which would allow replays).
const MAX_NONCES: usize = 100_000;

/// Nonces of calls accepted within the skew window (twice it: before and after).
#[derive(Debug, Default)]
pub struct SeenNonces {
    seen: std::sync::Mutex<std::collections::HashMap<String, SystemTime>>,
}

impl SeenNonces {
    /// Whether `nonce` is new at `now` (and remembers it).
    fn first_use(&self, nonce: &str, now: SystemTime) -> Result<(), String> {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.contains_key(nonce) {
            return Err("a call already made (replayed)".into());
        }
        if seen.len() >= MAX_NONCES {
            seen.retain(|_, at| now.duration_since(*at).unwrap_or_default() <= SKEW * 2);
            if seen.len() >= MAX_NONCES {
                return Err("too many node-to-node calls at once".into());
            }
        }
        seen.insert(nonce.to_owned(), now);
        Ok(())
    }
}

/// Signs calls made by this node for one operator.
#[derive(Clone)]
pub struct Signer {
    key: hmac::Key,
    node: String,
    caller: String,
    scopes: String,
}

impl Signer {
    /// For the operator called `name` with `scopes`, by `node`.
    pub fn new(key: hmac::Key, node: &str, name: &str, scopes: &[Scope]) -> Self {
        Self {
            key,
            node: node.to_owned(),
            caller: hex::encode(name.as_bytes()),
            scopes: scopes_text(scopes),
        }
    }

    /// As `ApiClient::for_peer` takes it: each call signed when it is made.
    pub fn boxed(self) -> crate::api_client::Signer {
        Box::new(move |method, path| self.header(method, path, SystemTime::now()))
    }

    /// The Authorization header of `method path` now.
    pub fn header(&self, method: &str, path: &str, now: SystemTime) -> String {
        let time = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let mut nonce = [0u8; 16];
        // Without randomness the call goes out with a nonce the peer refuses as replayed.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce);
        let nonce = hex::encode(nonce);
        let tag = hmac::sign(
            &self.key,
            message(
                method,
                path,
                &self.node,
                time,
                &nonce,
                &self.caller,
                &self.scopes,
            )
            .as_bytes(),
        );
        format!(
            "{SCHEME} node={},time={time},nonce={nonce},caller={},scopes={},mac={}",
            self.node,
            self.caller,
            self.scopes,
            hex::encode(tag.as_ref())
        )
    }
}

/// Who a verified node-to-node call is made for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The operator's name on the calling node.
    pub name: String,
    /// Their scopes.
    pub scopes: Vec<Scope>,
    /// The calling node.
    pub node: String,
}

/// Checks a node-to-node call's Authorization `value` (after the scheme) for `method path`:
/// the operator it is made for, and the node that asked.
pub fn verify(
    key: &hmac::Key,
    value: &str,
    method: &str,
    path: &str,
    now: SystemTime,
    seen: &SeenNonces,
) -> Result<Verified, String> {
    let field = |name: &str| {
        value
            .split(',')
            .find_map(|pair| pair.trim().strip_prefix(name)?.strip_prefix('='))
            .ok_or_else(|| format!("no {name}"))
    };
    let node = field("node")?;
    let time: u64 = field("time")?.parse().map_err(|_| "bad time".to_owned())?;
    let nonce = field("nonce")?;
    let caller = field("caller")?;
    let scopes = field("scopes")?;
    let mac = hex::decode(field("mac")?).map_err(|_| "bad mac".to_owned())?;
    hmac::verify(
        key,
        message(method, path, node, time, nonce, caller, scopes).as_bytes(),
        &mac,
    )
    .map_err(|_| "the signature does not check out".to_owned())?;
    let then = UNIX_EPOCH + Duration::from_secs(time);
    let apart = now
        .duration_since(then)
        .or_else(|_| then.duration_since(now))
        .unwrap_or_default();
    if apart > SKEW {
        return Err(format!(
            "signed {}s away from this node's clock",
            apart.as_secs()
        ));
    }
    seen.first_use(nonce, now)?;
    let name = String::from_utf8(hex::decode(caller).map_err(|_| "bad caller".to_owned())?)
        .map_err(|_| "bad caller".to_owned())?;
    let scopes = scopes_of(scopes)?;
    Ok(Verified {
        name,
        scopes,
        node: node.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_signed_call_checks_out_once_for_what_was_signed_and_nothing_else() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"0123456789abcdef0123456789abcdef");
        let signer = Signer::new(key.clone(), "b", "secops", &[Scope::Read]);
        let now = SystemTime::now();
        let header = signer.header("GET", "/api/v1/recordings/x-1", now);
        let value = header.strip_prefix(SCHEME).unwrap().trim();
        let seen = SeenNonces::default();
        let check = |key: &hmac::Key, value: &str, method: &str, path: &str, now| {
            verify(key, value, method, path, now, &seen)
        };
        // Another path, another method, another key, tampered scopes, too old: refused
        // (before the genuine call, so its nonce is still unused).
        assert!(check(&key, value, "GET", "/api/v1/recordings/x-2", now).is_err());
        assert!(check(&key, value, "POST", "/api/v1/recordings/x-1", now).is_err());
        let other = hmac::Key::new(hmac::HMAC_SHA256, b"another-secret-another-secret-xx");
        assert!(check(&other, value, "GET", "/api/v1/recordings/x-1", now).is_err());
        let widened = value.replace("scopes=read", "scopes=read+operate");
        assert!(check(&key, &widened, "GET", "/api/v1/recordings/x-1", now).is_err());
        let later = now + Duration::from_secs(120);
        let error = check(&key, value, "GET", "/api/v1/recordings/x-1", later).unwrap_err();
        assert!(error.contains("away from this node's clock"), "{error}");
        assert!(check(&key, "node=b", "GET", "/", now).is_err());
        let verified = check(&key, value, "GET", "/api/v1/recordings/x-1", now).unwrap();
        assert_eq!(
            verified,
            Verified {
                name: "secops".into(),
                scopes: vec![Scope::Read],
                node: "b".into()
            }
        );
        // The same call again is a replay; a new call (a new nonce) is not.
        let error = check(&key, value, "GET", "/api/v1/recordings/x-1", now).unwrap_err();
        assert!(error.contains("replayed"), "{error}");
        let again = signer.header("GET", "/api/v1/recordings/x-1", now);
        let again = again.strip_prefix(SCHEME).unwrap().trim();
        assert!(check(&key, again, "GET", "/api/v1/recordings/x-1", now).is_ok());
    }
}
