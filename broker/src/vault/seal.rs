//! AES-256-GCM sealing (ring): a random 96-bit nonce per message, stored in front of the
//! ciphertext; associated data binds a sealed value to where it belongs.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// A 256-bit key for sealing.
pub struct SealingKey(LessSafeKey);

/// Sealing or opening failed. Deliberately carries no detail: GCM says only "no".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealError;

impl SealingKey {
    /// A key from 32 bytes.
    pub fn new(bytes: &[u8; 32]) -> Result<Self, SealError> {
        UnboundKey::new(&AES_256_GCM, bytes)
            .map(|key| Self(LessSafeKey::new(key)))
            .map_err(|_| SealError)
    }

    /// `nonce || ciphertext || tag`.
    pub fn seal(&self, plaintext: &[u8], associated: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SealError)?;
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + 16);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let mut body = out.split_off(NONCE_LEN);
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated),
                &mut body,
            )
            .map_err(|_| SealError)?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// The plaintext, if `sealed` was made by this key with the same associated data.
    pub fn open(&self, sealed: &[u8], associated: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(SealError);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError)?;
        let mut body = body.to_vec();
        let plaintext_len = self
            .0
            .open_in_place(nonce, Aad::from(associated), &mut body)
            .map_err(|_| SealError)?
            .len();
        body.truncate(plaintext_len);
        Ok(body)
    }
}

/// 32 fresh random bytes.
pub fn random_key() -> Result<[u8; 32], SealError> {
    let mut key = [0u8; 32];
    SystemRandom::new().fill(&mut key).map_err(|_| SealError)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let key = SealingKey::new(&[7u8; 32]).unwrap();
        let sealed = key.seal(b"hunter2", b"entry:web01").unwrap();
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(key.open(&sealed, b"entry:web01").unwrap(), b"hunter2");
        assert_eq!(key.open(&sealed, b"entry:db01"), Err(SealError));
        let other = SealingKey::new(&[8u8; 32]).unwrap();
        assert_eq!(other.open(&sealed, b"entry:web01"), Err(SealError));
        let mut flipped = sealed.clone();
        flipped[20] ^= 1;
        assert_eq!(key.open(&flipped, b"entry:web01"), Err(SealError));
        assert_eq!(key.open(&sealed[..10], b"entry:web01"), Err(SealError));
    }

    #[test]
    fn nonces_differ() {
        let key = SealingKey::new(&[7u8; 32]).unwrap();
        assert_ne!(key.seal(b"x", b"").unwrap(), key.seal(b"x", b"").unwrap());
    }
}
