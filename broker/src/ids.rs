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

#[cfg(test)]
mod tests {
    use super::*;

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
