//! RFC 4648 base32, the encoding authenticator apps use for TOTP secrets.
//!
//! Decoding is lenient the way authenticator apps are: case-insensitive, spaces and
//! trailing `=` padding ignored. Anything else outside the alphabet is an error. The work is
//! the `data-encoding` crate's (already in the build through russh).

use std::sync::OnceLock;

use data_encoding::{Encoding, Specification};

/// RFC 4648's base32 alphabet, lower case read as upper, spaces skipped, and bits left over
/// at the end not checked (authenticator apps do not check them either).
fn lenient() -> Option<&'static Encoding> {
    static ENCODING: OnceLock<Option<Encoding>> = OnceLock::new();
    ENCODING
        .get_or_init(|| {
            let mut spec = Specification::new();
            spec.symbols.push_str("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567");
            spec.translate.from.push_str("abcdefghijklmnopqrstuvwxyz");
            spec.translate.to.push_str("ABCDEFGHIJKLMNOPQRSTUVWXYZ");
            spec.ignore.push(' ');
            spec.check_trailing_bits = false;
            spec.encoding().ok()
        })
        .as_ref()
}

/// Decodes base32 text into bytes; `None` if a character is outside the alphabet or the
/// length cannot be base32.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    lenient()?
        .decode(text.trim_end_matches('=').as_bytes())
        .ok()
}

/// Encodes bytes as unpadded base32 (what `portcullis` prints for new TOTP secrets).
pub fn encode(bytes: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(encode(plain.as_bytes()), encoded);
            assert_eq!(decode(encoded).as_deref(), Some(plain.as_bytes()));
        }
    }

    #[test]
    fn lenient_like_authenticator_apps() {
        assert_eq!(decode("mzxw 6ytb oi==").as_deref(), Some(&b"foobar"[..]));
    }

    #[test]
    fn rejects_characters_outside_the_alphabet_and_impossible_lengths() {
        assert_eq!(decode("MZXW1"), None);
        assert_eq!(decode("MZ-W6"), None);
        assert_eq!(decode("MZX"), None, "3 characters are no whole byte count");
    }

    #[test]
    fn leftover_bits_are_not_checked() {
        // 26 characters: 16 bytes and 2 bits, set here, as some secrets are written.
        let secret = "JBSWY3DPEHPK3PXPJBSWY3DPEP";
        assert_eq!(decode(secret).map(|b| b.len()), Some(16));
    }
}
