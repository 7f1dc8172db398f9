//! Throttling of guesses: failed logins, activation codes and admin API tokens.
//!
//! Failures are counted per *key*: the client's address, and the user together with the kind
//! of secret that was guessed ([`Method`]). A key with `max_failures` recent failures within
//! `window` is refused until the oldest ages out. Keeping methods apart means six wrong
//! passwords for bob — from anywhere — throttle bob's *password*, never his key or his
//! certificate, and a certificate from an attacker's own CA counts against the attacker's
//! address only: the throttle cannot be turned into a lock-out of the real user.
//!
//! A check that is about to verify a secret first [`Throttle::reserve`]s a slot on each of
//! its keys, atomically with the check: a reservation counts like a failure until it is
//! resolved, so a dozen connections answering a password prompt at the same instant get at
//! most `max_failures` verifications between them. A success gives the slot back; a failure
//! (or a dropped reservation) keeps it. A success never clears earlier failures: an attacker
//! guessing alice's password must not be helped by alice logging in.
//!
//! Pre-login audit lines are budgeted per source ([`Throttle::audit_budget`]) so a flood
//! of attempts from one address cannot grow the audit log without bound.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The kind of secret a failure was a guess at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// A password (the password method, keyboard-interactive, and its TOTP code).
    Password,
    /// A public key for an unknown user.
    PublicKey,
    /// A certificate from a trusted CA that does not fit.
    Certificate,
    /// A TOTP code at activation (`request … --code`, the activation dialog).
    ActivationCode,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Password => "password",
            Method::PublicKey => "publickey",
            Method::Certificate => "certificate",
            Method::ActivationCode => "activation code",
        }
    }
}

/// What is throttled.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ThrottleKey {
    /// An address logging in over SSH.
    Source(IpAddr),
    /// An address calling the admin API.
    ApiSource(IpAddr),
    /// A user name (known or not) and the kind of secret.
    User(String, Method),
}

impl std::fmt::Display for ThrottleKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ThrottleKey::Source(ip) => write!(f, "source {ip}"),
            ThrottleKey::ApiSource(ip) => write!(f, "API caller {ip}"),
            ThrottleKey::User(user, method) => {
                write!(f, "user {} ({})", crate::text::Shown(user), method.name())
            }
        }
    }
}

/// Keys tracked before expired entries are swept, bounding memory under a flood of made-up
/// user names or addresses.
const SWEEP_ABOVE: usize = 10_000;

#[derive(Debug, Default)]
struct Count {
    failures: VecDeque<Instant>,
    pending: usize,
}

#[derive(Debug, Default)]
struct Budget {
    written: VecDeque<Instant>,
    suppressed: u64,
}

#[derive(Debug, Default)]
struct State {
    counts: HashMap<ThrottleKey, Count>,
    budgets: HashMap<IpAddr, Budget>,
}

/// The throttle.
#[derive(Debug)]
pub struct Throttle {
    max_failures: usize,
    window: Duration,
    audit_lines: usize,
    state: Mutex<State>,
}

/// A slot held on some keys while a secret is verified; resolve it with
/// [`Reservation::succeeded`] or [`Reservation::failed`] (dropping it is a failure).
#[derive(Debug)]
pub struct Reservation<'a> {
    throttle: &'a Throttle,
    keys: Vec<ThrottleKey>,
    at: Instant,
    resolved: bool,
}

/// What may be audited of a pre-login event from one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditBudget {
    /// Write it; `suppressed` events were left out since the last one written.
    Write {
        /// Events not written before this one.
        suppressed: u64,
    },
    /// The budget has just run out: write this one, saying later ones are only counted.
    LastWritten,
    /// Count it, do not write it.
    Suppress,
}

impl Throttle {
    /// Allows `max_failures` per key within `window`.
    pub fn new(max_failures: u32, window: Duration) -> Self {
        let max_failures = max_failures.max(1) as usize;
        Self {
            max_failures,
            window,
            // Enough for every counted failure of a window and some uncounted ones (keys an
            // agent offers), never more.
            audit_lines: (4 * max_failures).max(20),
            state: Mutex::new(State::default()),
        }
    }

    /// The key among `keys` that is refused now, if any.
    pub fn blocked(&self, keys: &[ThrottleKey], now: Instant) -> Option<ThrottleKey> {
        let mut state = self.lock();
        self.first_full(&mut state, keys, now)
    }

    fn first_full(
        &self,
        state: &mut State,
        keys: &[ThrottleKey],
        now: Instant,
    ) -> Option<ThrottleKey> {
        keys.iter()
            .find(|key| {
                state.counts.get_mut(*key).is_some_and(|count| {
                    expire(&mut count.failures, now, self.window);
                    count.failures.len() + count.pending >= self.max_failures
                })
            })
            .cloned()
    }

    /// Takes a slot on every key, or none if one of them is full (that one is returned).
    pub fn reserve(
        &self,
        keys: Vec<ThrottleKey>,
        now: Instant,
    ) -> Result<Reservation<'_>, ThrottleKey> {
        let mut state = self.lock();
        if let Some(full) = self.first_full(&mut state, &keys, now) {
            return Err(full);
        }
        self.sweep(&mut state, now);
        for key in &keys {
            state.counts.entry(key.clone()).or_default().pending += 1;
        }
        Ok(Reservation {
            throttle: self,
            keys,
            at: now,
            resolved: false,
        })
    }

    /// Counts a failure against every key (for refusals that verified nothing costly).
    pub fn record_failure(&self, keys: &[ThrottleKey], now: Instant) {
        let mut state = self.lock();
        self.sweep(&mut state, now);
        for key in keys {
            self.add_failure(&mut state, key, now);
        }
    }

    fn add_failure(&self, state: &mut State, key: &ThrottleKey, now: Instant) {
        let count = state.counts.entry(key.clone()).or_default();
        expire(&mut count.failures, now, self.window);
        count.failures.push_back(now);
        // Only the newest `max_failures` matter for the decision.
        while count.failures.len() > self.max_failures {
            count.failures.pop_front();
        }
    }

    fn resolve(&self, keys: &[ThrottleKey], failed: bool, now: Instant) {
        let mut state = self.lock();
        for key in keys {
            if let Some(count) = state.counts.get_mut(key) {
                count.pending = count.pending.saturating_sub(1);
            }
            if failed {
                self.add_failure(&mut state, key, now);
            }
        }
    }

    /// Whether a pre-login audit line from `source` may be written now.
    pub fn audit_budget(&self, source: IpAddr, now: Instant) -> AuditBudget {
        let mut state = self.lock();
        if state.budgets.len() > SWEEP_ABOVE {
            let window = self.window;
            state.budgets.retain(|_, budget| {
                expire(&mut budget.written, now, window);
                !budget.written.is_empty()
            });
        }
        let budget = state.budgets.entry(source).or_default();
        expire(&mut budget.written, now, self.window);
        if budget.written.len() >= self.audit_lines {
            budget.suppressed += 1;
            return AuditBudget::Suppress;
        }
        budget.written.push_back(now);
        if budget.written.len() == self.audit_lines {
            return AuditBudget::LastWritten;
        }
        AuditBudget::Write {
            suppressed: std::mem::take(&mut budget.suppressed),
        }
    }

    fn sweep(&self, state: &mut State, now: Instant) {
        if state.counts.len() > SWEEP_ABOVE {
            let window = self.window;
            state.counts.retain(|_, count| {
                expire(&mut count.failures, now, window);
                !count.failures.is_empty() || count.pending > 0
            });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Reservation<'_> {
    /// The secret was right: the slot is given back.
    pub fn succeeded(mut self) {
        self.resolved = true;
        self.throttle.resolve(&self.keys, false, self.at);
    }

    /// The secret was wrong: the slot stays as a failure.
    pub fn failed(self) {
        // Drop does it.
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.resolved {
            self.throttle.resolve(&self.keys, true, self.at);
        }
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

    fn password(source: IpAddr, user: &str) -> Vec<ThrottleKey> {
        vec![
            ThrottleKey::Source(source),
            ThrottleKey::User(user.into(), Method::Password),
        ]
    }

    #[test]
    fn blocks_after_the_limit_and_recovers_after_the_window() {
        let throttle = Throttle::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(throttle.blocked(&password(A, "alice"), t0), None, "{i}");
            throttle.record_failure(&password(A, "alice"), t0 + Duration::from_secs(i));
        }
        let t5 = t0 + Duration::from_secs(5);
        assert_eq!(
            throttle.blocked(&password(A, "alice"), t5),
            Some(ThrottleKey::Source(A))
        );
        // Another source guessing the same user's password is refused too.
        assert_eq!(
            throttle.blocked(&password(B, "alice"), t5),
            Some(ThrottleKey::User("alice".into(), Method::Password))
        );
        // Another user from a fresh source is fine.
        assert_eq!(throttle.blocked(&password(B, "bob"), t5), None);
        // The first failure ages out at t0+60.
        assert_eq!(
            throttle.blocked(&password(A, "alice"), t0 + Duration::from_secs(60)),
            None
        );
    }

    #[test]
    fn password_guesses_do_not_block_the_users_key_or_certificate() {
        let throttle = Throttle::new(3, Duration::from_secs(60));
        let now = Instant::now();
        for _ in 0..6 {
            throttle.record_failure(&password(A, "bob"), now);
        }
        for method in [Method::PublicKey, Method::Certificate] {
            let keys = [
                ThrottleKey::Source(B),
                ThrottleKey::User("bob".into(), method),
            ];
            assert_eq!(throttle.blocked(&keys, now), None, "{method:?}");
        }
        assert!(throttle.blocked(&password(B, "bob"), now).is_some());
    }

    #[test]
    fn reservations_bound_parallel_verifications() {
        let throttle = Throttle::new(5, Duration::from_secs(60));
        let now = Instant::now();
        // Twelve answers arrive together, from twelve addresses.
        let mut held = Vec::new();
        let mut refused = 0;
        for i in 0..12u8 {
            let source = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 1, i));
            match throttle.reserve(password(source, "carol"), now) {
                Ok(reservation) => held.push(reservation),
                Err(key) => {
                    assert_eq!(key, ThrottleKey::User("carol".into(), Method::Password));
                    refused += 1;
                }
            }
        }
        assert_eq!((held.len(), refused), (5, 7));
        // All five were wrong: the user stays throttled, even for the right password.
        for reservation in held {
            reservation.failed();
        }
        assert!(throttle.reserve(password(B, "carol"), now).is_err());
    }

    #[test]
    fn a_success_gives_its_slot_back() {
        let throttle = Throttle::new(2, Duration::from_secs(60));
        let now = Instant::now();
        for _ in 0..5 {
            throttle
                .reserve(password(A, "alice"), now)
                .unwrap()
                .succeeded();
        }
        assert_eq!(throttle.blocked(&password(A, "alice"), now), None);
        drop(throttle.reserve(password(A, "alice"), now).unwrap());
        throttle
            .reserve(password(A, "alice"), now)
            .unwrap()
            .failed();
        assert!(throttle.blocked(&password(A, "alice"), now).is_some());
    }

    #[test]
    fn made_up_user_names_do_not_grow_memory_forever() {
        let throttle = Throttle::new(3, Duration::from_secs(1));
        let t0 = Instant::now();
        for i in 0..(SWEEP_ABOVE * 2) {
            throttle.record_failure(
                &password(A, &format!("u{i}")),
                t0 + Duration::from_secs(i as u64 / 1000),
            );
        }
        assert!(throttle.lock().counts.len() <= SWEEP_ABOVE + 2);
    }

    #[test]
    fn audit_lines_per_source_are_budgeted() {
        let throttle = Throttle::new(5, Duration::from_secs(60));
        let now = Instant::now();
        let verdicts: Vec<AuditBudget> = (0..25).map(|_| throttle.audit_budget(A, now)).collect();
        assert_eq!(verdicts[0], AuditBudget::Write { suppressed: 0 });
        assert_eq!(verdicts[19], AuditBudget::LastWritten);
        assert!(verdicts[20..].iter().all(|v| *v == AuditBudget::Suppress));
        // Another source has its own budget; the first one's refills after the window.
        assert_eq!(
            throttle.audit_budget(B, now),
            AuditBudget::Write { suppressed: 0 }
        );
        assert_eq!(
            throttle.audit_budget(A, now + Duration::from_secs(60)),
            AuditBudget::Write { suppressed: 5 }
        );
    }
}
