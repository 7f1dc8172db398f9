//! Failed-authentication throttling, per source address and per user.
//!
//! Each key keeps the times of its recent failures; once `max_failures` fall within
//! `window`, the key is refused until the oldest ages out. A success does not clear the
//! count: an attacker guessing alice's password must not be helped by alice logging in.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What is throttled.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ThrottleKey {
    /// A client address.
    Source(IpAddr),
    /// A user name (known or not).
    User(String),
}

impl std::fmt::Display for ThrottleKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ThrottleKey::Source(ip) => write!(f, "source {ip}"),
            ThrottleKey::User(user) => write!(f, "user {user}"),
        }
    }
}

/// Keys tracked before expired entries are swept, bounding memory under a flood of made-up
/// user names.
const SWEEP_ABOVE: usize = 10_000;

/// The throttle.
#[derive(Debug)]
pub struct Throttle {
    max_failures: usize,
    window: Duration,
    failures: Mutex<HashMap<ThrottleKey, VecDeque<Instant>>>,
}

impl Throttle {
    /// Allows `max_failures` per key within `window`.
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures: max_failures.max(1) as usize,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn keys(source: IpAddr, user: &str) -> [ThrottleKey; 2] {
        [
            ThrottleKey::Source(source),
            ThrottleKey::User(user.to_owned()),
        ]
    }

    /// The key that is currently refused, if any.
    pub fn blocked(&self, source: IpAddr, user: &str, now: Instant) -> Option<ThrottleKey> {
        let mut failures = self.lock();
        Self::keys(source, user).into_iter().find(|key| {
            failures.get_mut(key).is_some_and(|times| {
                expire(times, now, self.window);
                times.len() >= self.max_failures
            })
        })
    }

    /// Counts a failure against both the source and the user.
    pub fn record_failure(&self, source: IpAddr, user: &str, now: Instant) {
        let mut failures = self.lock();
        if failures.len() > SWEEP_ABOVE {
            failures.retain(|_, times| {
                expire(times, now, self.window);
                !times.is_empty()
            });
        }
        for key in Self::keys(source, user) {
            let times = failures.entry(key).or_default();
            expire(times, now, self.window);
            times.push_back(now);
            // Only the newest `max_failures` matter for the decision.
            while times.len() > self.max_failures {
                times.pop_front();
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ThrottleKey, VecDeque<Instant>>> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn expire(times: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while times
        .front()
        .is_some_and(|&t| now.saturating_duration_since(t) >= window)
    {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn blocks_after_the_limit_and_recovers_after_the_window() {
        let throttle = Throttle::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(throttle.blocked(A, "alice", t0), None, "attempt {i}");
            throttle.record_failure(A, "alice", t0 + Duration::from_secs(i));
        }
        assert_eq!(
            throttle.blocked(A, "alice", t0 + Duration::from_secs(5)),
            Some(ThrottleKey::Source(A))
        );
        // Another source guessing the same user is refused too: the user is throttled.
        assert_eq!(
            throttle.blocked(B, "alice", t0 + Duration::from_secs(5)),
            Some(ThrottleKey::User("alice".into()))
        );
        // Another user from a fresh source is fine.
        assert_eq!(
            throttle.blocked(B, "bob", t0 + Duration::from_secs(5)),
            None
        );
        // The first failure ages out at t0+60.
        assert_eq!(
            throttle.blocked(A, "alice", t0 + Duration::from_secs(60)),
            None
        );
    }

    #[test]
    fn made_up_user_names_do_not_grow_memory_forever() {
        let throttle = Throttle::new(3, Duration::from_secs(1));
        let t0 = Instant::now();
        for i in 0..(SWEEP_ABOVE * 2) {
            throttle.record_failure(
                A,
                &format!("u{i}"),
                t0 + Duration::from_secs(i as u64 / 1000),
            );
        }
        assert!(throttle.lock().len() <= SWEEP_ABOVE + 2);
    }
}
