//! Identifiers for sessions and recordings: time-ordered, so a directory listing or an
//! `ORDER BY id` is chronological, and random enough that nobody guesses another's.

use std::time::{SystemTime, UNIX_EPOCH};

use ring::rand::{SecureRandom, SystemRandom};

/// A new session id: 12 hex digits of milliseconds since the epoch, then 12 random ones.
pub fn new_session_id() -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let mut random = [0u8; 6];
    // SystemRandom only fails if the OS has no randomness at all; a zeroed suffix still
    // leaves the time-ordered prefix unique per millisecond for this process.
    let _ = SystemRandom::new().fill(&mut random);
    format!("{:012x}{}", millis & 0xffff_ffff_ffff, hex::encode(random))
}

/// Whether `text` has the shape of an id this module makes (for inputs from the CLI).
pub fn is_session_id(text: &str) -> bool {
    text.len() == 24
        && text
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The shortest prefix of an id that may stand for it.
pub const MIN_PREFIX: usize = 4;

/// The item whose id is `wanted`, or else the only one whose id starts with it (a prefix of
/// at least [`MIN_PREFIX`] characters, as people type them from a listing); none when the
/// prefix is ambiguous.
pub fn by_id_or_prefix<T>(
    items: impl IntoIterator<Item = T>,
    wanted: &str,
    id: impl Fn(&T) -> &str,
) -> Option<T> {
    let mut exact = None;
    let mut prefixed = Vec::new();
    for item in items {
        if id(&item) == wanted {
            exact = Some(item);
        } else if wanted.len() >= MIN_PREFIX && id(&item).starts_with(wanted) && prefixed.len() < 2
        {
            prefixed.push(item);
        }
    }
    exact.or_else(|| match prefixed.len() {
        1 => prefixed.pop(),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_found_whole_or_by_a_unique_prefix() {
        let ids = ["01a2aa0000", "01a2bb0000", "01a2bb1111"];
        let find = |wanted: &str| by_id_or_prefix(ids, wanted, |s| s);
        assert_eq!(find("01a2bb1111"), Some("01a2bb1111"));
        assert_eq!(find("01a2aa"), Some("01a2aa0000"));
        // Ambiguous, too short, or nothing like it.
        assert_eq!(find("01a2bb"), None);
        assert_eq!(find("01a"), None);
        assert_eq!(find("ffff"), None);
        // An exact id wins even where it is also a prefix of another.
        let nested = ["abcd", "abcdef"];
        assert_eq!(by_id_or_prefix(nested, "abcd", |s| s), Some("abcd"));
    }

    #[test]
    fn ids_sort_by_time_and_differ() {
        let a = new_session_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_session_id();
        assert!(is_session_id(&a), "{a}");
        assert!(a < b);
        assert_ne!(new_session_id(), new_session_id());
    }
}
