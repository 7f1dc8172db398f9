//! TOTP (RFC 6238): HMAC-SHA1, 30-second steps, 6 digits, one step of clock skew either way,
//! and no code accepted twice for the same user.

use std::sync::Arc;

use ring::hmac;

use crate::store::{Store, StoreError};

const STEP_SECONDS: u64 = 30;
const DIGITS: u32 = 6;

/// The code for `step` (RFC 4226 dynamic truncation).
pub fn code_at(key: &[u8], step: u64) -> u32 {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
    let digest = hmac::sign(&key, &step.to_be_bytes());
    let digest = digest.as_ref();
    let offset = usize::from(digest[digest.len() - 1] & 0x0f);
    let binary = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    binary % 10u32.pow(DIGITS)
}

/// The step a code typed at `unix_time` belongs to, if it is valid within one step of skew.
pub fn matching_step(key: &[u8], code: &str, unix_time: u64) -> Option<u64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let typed: u32 = code.parse().ok()?;
    let now = unix_time / STEP_SECONDS;
    [now, now.saturating_sub(1), now + 1]
        .into_iter()
        .find(|&step| code_at(key, step) == typed)
}

/// Remembers the last step accepted for each user, in the state database, so a code cannot
/// be replayed — not even across a restart.
#[derive(Debug)]
pub struct ReplayGuard {
    store: Arc<Store>,
}

impl ReplayGuard {
    /// A guard keeping its steps in `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }

    /// Accepts `step` for `user` if it is newer than the last one accepted (one statement,
    /// so two logins racing with the same code cannot both win).
    pub fn accept(&self, user: &str, step: u64) -> Result<bool, StoreError> {
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        self.store.with(|db| {
            db.execute(
                "INSERT INTO totp_steps (user, step) VALUES (?1, ?2)
                 ON CONFLICT(user) DO UPDATE SET step = excluded.step
                 WHERE excluded.step > totp_steps.step",
                rusqlite::params![user, step],
            )
            .map(|changed| changed == 1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_vectors() {
        let key = b"12345678901234567890";
        // RFC 6238 appendix B gives 8 digits; the low 6 are the 6-digit codes.
        for (time, eight) in [
            (59u64, 94287082u32),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
        ] {
            assert_eq!(code_at(key, time / 30), eight % 1_000_000, "t={time}");
        }
    }

    #[test]
    fn skew_of_one_step_either_way() {
        let key = b"12345678901234567890";
        let code = format!("{:06}", code_at(key, 100));
        assert_eq!(matching_step(key, &code, 100 * 30), Some(100));
        assert_eq!(matching_step(key, &code, 101 * 30 + 29), Some(100));
        assert_eq!(matching_step(key, &code, 99 * 30), Some(100));
        assert_eq!(matching_step(key, &code, 102 * 30), None);
        assert_eq!(matching_step(key, "12345", 100 * 30), None);
        assert_eq!(matching_step(key, "abcdef", 100 * 30), None);
    }

    #[test]
    fn a_code_is_accepted_once_even_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let guard = ReplayGuard::new(Arc::new(Store::open(&path).unwrap()));
        assert!(guard.accept("alice", 10).unwrap());
        assert!(!guard.accept("alice", 10).unwrap());
        assert!(!guard.accept("alice", 9).unwrap());
        assert!(guard.accept("alice", 11).unwrap());
        assert!(guard.accept("bob", 10).unwrap());
        drop(guard);
        let reopened = ReplayGuard::new(Arc::new(Store::open(&path).unwrap()));
        assert!(!reopened.accept("alice", 11).unwrap());
        assert!(reopened.accept("alice", 12).unwrap());
    }
}
