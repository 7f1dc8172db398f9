//! TOTP (RFC 6238): HMAC-SHA1, 30-second steps, 6 digits, one step of clock skew either way.
//!
//! Why not `totp-rs`: it computes the same RFC 4226 truncation (checked here against RFC
//! 6238's vectors) on RustCrypto's `hmac` 0.12, a second version beside the 0.13 in this
//! build, plus its own `base32` beside `data-encoding` and `constant_time_eq`; the HMAC here
//! is `ring`'s, which every other secret of the bastion already goes through. The part that
//! matters for security — no code accepted twice — is the state store's, either way.
//! No code is accepted twice for the same user: the step a code matched goes to the state
//! store (`accept_totp_step`), which refuses a step that is not newer than the last one.

use ring::hmac;

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
}
