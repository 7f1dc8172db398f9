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
//! The counts live in the state store (every node sees the same failures, and a restart
//! forgets none); a store that cannot answer refuses the attempt, never waves it through.
//!
//! Pre-login audit lines are budgeted per source ([`Throttle::audit_budget`]) so a flood
//! of attempts from one address cannot grow this node's audit log without bound (kept in
//! memory: it is about this node's log).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use portcullis_state::{StateError, StateStore};

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

    /// Its name in stored keys (no spaces, no slashes).
    fn code(self) -> &'static str {
        match self {
            Method::Password => "password",
            Method::PublicKey => "publickey",
            Method::Certificate => "certificate",
            Method::ActivationCode => "activation-code",
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

impl ThrottleKey {
    /// The key as the state store keeps it; the user name comes last, so whatever it holds
    /// cannot make two keys collide.
    fn stored(&self) -> String {
        match self {
            ThrottleKey::Source(ip) => format!("ssh-source/{ip}"),
            ThrottleKey::ApiSource(ip) => format!("api-source/{ip}"),
            ThrottleKey::User(user, method) => format!("user/{}/{user}", method.code()),
        }
    }
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

/// Sources tracked by the audit budget before expired entries are swept, bounding memory
/// under a flood from many addresses.
const SWEEP_ABOVE: usize = 10_000;

#[derive(Debug, Default)]
struct Budget {
    written: VecDeque<Instant>,
    suppressed: u64,
}

/// The throttle.
#[derive(Debug)]
pub struct Throttle {
    max_failures: u32,
    window: Duration,
    audit_lines: usize,
    budgets: Mutex<HashMap<IpAddr, Budget>>,
    /// Throttled keys already raised as an alert, and when: one alert per key and window.
    alerted: Mutex<HashMap<String, Instant>>,
    state: Arc<dyn StateStore>,
}

/// Most throttled keys remembered for their alert; past it (a flood from many addresses or
/// names) no new alert is raised until old ones age out, bounding memory and the log.
const MOST_ALERTED_KEYS: usize = 1_000;

/// A slot held on some keys while a secret is verified: [`Reservation::succeeded`] gives it
/// back; anything else (a wrong secret, a dropped connection, a crash) leaves it counted as
/// a failure.
#[derive(Debug)]
pub struct Reservation<'a> {
    throttle: &'a Throttle,
    slot: u64,
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
    /// Allows `max_failures` per key within `window`, counted in `state`.
    pub fn new(max_failures: u32, window: Duration, state: Arc<dyn StateStore>) -> Self {
        let max_failures = max_failures.max(1);
        Self {
            max_failures,
            window,
            // Enough for every counted failure of a window and some uncounted ones (keys an
            // agent offers), never more.
            audit_lines: (4 * max_failures as usize).max(20),
            budgets: Mutex::new(HashMap::new()),
            alerted: Mutex::new(HashMap::new()),
            state,
        }
    }

    /// Failures at or before this no longer count at `now`.
    fn since(&self, now: SystemTime) -> SystemTime {
        now.checked_sub(self.window).unwrap_or(UNIX_EPOCH)
    }

    /// The key among `keys` that is refused now, if any.
    pub async fn blocked(
        &self,
        keys: &[ThrottleKey],
        now: SystemTime,
    ) -> Result<Option<ThrottleKey>, StateError> {
        let full = self
            .state
            .full_guess_key(stored(keys), self.max_failures, self.since(now))
            .await?;
        Ok(full.and_then(|full| find(keys, &full)))
    }

    /// Takes a slot on every key, or none if one of them is full (that one is returned).
    pub async fn reserve(
        &self,
        keys: Vec<ThrottleKey>,
        now: SystemTime,
    ) -> Result<Result<Reservation<'_>, ThrottleKey>, StateError> {
        let answer = self
            .state
            .reserve_guess(stored(&keys), self.max_failures, self.since(now), now)
            .await?;
        Ok(match answer {
            Ok(slot) => Ok(Reservation {
                throttle: self,
                slot,
            }),
            Err(full) => Err(find(&keys, &full).unwrap_or_else(|| keys[0].clone())),
        })
    }

    /// Counts a failure against every key (for refusals that verified nothing costly).
    pub async fn record_failure(
        &self,
        keys: &[ThrottleKey],
        now: SystemTime,
    ) -> Result<(), StateError> {
        self.state
            .record_guess_failures(stored(keys), self.max_failures, self.since(now), now)
            .await
    }

    /// Whether a refusal because `key` is throttled should raise an alert: the first one
    /// for that key within the window does.
    pub fn first_refusal(&self, key: &ThrottleKey, now: Instant) -> bool {
        let mut alerted = self
            .alerted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let window = self.window;
        let fresh = |at: &Instant| now.saturating_duration_since(*at) < window;
        let stored = key.stored();
        if alerted.get(&stored).is_some_and(fresh) {
            return false;
        }
        if alerted.len() >= MOST_ALERTED_KEYS {
            alerted.retain(|_, at| fresh(at));
            if alerted.len() >= MOST_ALERTED_KEYS {
                return false;
            }
        }
        alerted.insert(stored, now);
        true
    }

    /// Whether a pre-login audit line from `source` may be written now.
    pub fn audit_budget(&self, source: IpAddr, now: Instant) -> AuditBudget {
        let mut budgets = self
            .budgets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if budgets.len() > SWEEP_ABOVE {
            let window = self.window;
            budgets.retain(|_, budget| {
                expire(&mut budget.written, now, window);
                !budget.written.is_empty()
            });
        }
        let budget = budgets.entry(source).or_default();
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
}

fn stored(keys: &[ThrottleKey]) -> Vec<String> {
    keys.iter().map(ThrottleKey::stored).collect()
}

fn find(keys: &[ThrottleKey], stored: &str) -> Option<ThrottleKey> {
    keys.iter().find(|key| key.stored() == stored).cloned()
}

impl Reservation<'_> {
    /// The secret was right: the slot is given back. If the store cannot take it back, it
    /// stays counted as a failure (the safe side) and the error is logged.
    pub async fn succeeded(self) {
        if let Err(error) = self.throttle.state.release_guess(self.slot).await {
            tracing::error!(%error, "cannot give a throttle slot back; it counts as a failure");
        }
    }

    /// The secret was wrong: the slot stays as a failure.
    pub fn failed(self) {}
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

    /// A throttle on a fresh SQLite store (the directory lives as long as the test).
    fn throttle(max: u32, window: Duration) -> (tempfile::TempDir, Throttle) {
        let dir = tempfile::tempdir().unwrap();
        let state = portcullis_state::SqliteStore::open(&dir.path().join("state.db")).unwrap();
        (dir, Throttle::new(max, window, Arc::new(state)))
    }

    fn t(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_000_000 + seconds)
    }

    #[tokio::test]
    async fn blocks_after_the_limit_and_recovers_after_the_window() {
        let (_dir, throttle) = throttle(3, Duration::from_secs(60));
        for i in 0..3 {
            assert_eq!(
                throttle.blocked(&password(A, "alice"), t(0)).await.unwrap(),
                None,
                "{i}"
            );
            throttle
                .record_failure(&password(A, "alice"), t(i))
                .await
                .unwrap();
        }
        assert_eq!(
            throttle.blocked(&password(A, "alice"), t(5)).await.unwrap(),
            Some(ThrottleKey::Source(A))
        );
        // Another source guessing the same user's password is refused too.
        assert_eq!(
            throttle.blocked(&password(B, "alice"), t(5)).await.unwrap(),
            Some(ThrottleKey::User("alice".into(), Method::Password))
        );
        // Another user from a fresh source is fine.
        assert_eq!(
            throttle.blocked(&password(B, "bob"), t(5)).await.unwrap(),
            None
        );
        // The first failure ages out at t0+60.
        assert_eq!(
            throttle
                .blocked(&password(A, "alice"), t(60))
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn password_guesses_do_not_block_the_users_key_or_certificate() {
        let (_dir, throttle) = throttle(3, Duration::from_secs(60));
        for _ in 0..6 {
            throttle
                .record_failure(&password(A, "bob"), t(0))
                .await
                .unwrap();
        }
        for method in [Method::PublicKey, Method::Certificate] {
            let keys = [
                ThrottleKey::Source(B),
                ThrottleKey::User("bob".into(), method),
            ];
            assert_eq!(
                throttle.blocked(&keys, t(0)).await.unwrap(),
                None,
                "{method:?}"
            );
        }
        assert!(
            throttle
                .blocked(&password(B, "bob"), t(0))
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn a_user_name_cannot_pose_as_another_key() {
        let (_dir, throttle) = throttle(1, Duration::from_secs(60));
        throttle
            .record_failure(
                &[ThrottleKey::User(
                    "x/password/alice".into(),
                    Method::Certificate,
                )],
                t(0),
            )
            .await
            .unwrap();
        let alice = [ThrottleKey::User("alice".into(), Method::Password)];
        assert_eq!(throttle.blocked(&alice, t(0)).await.unwrap(), None);
    }

    #[tokio::test]
    async fn reservations_bound_parallel_verifications() {
        let (_dir, throttle) = throttle(5, Duration::from_secs(60));
        // Twelve answers arrive together, from twelve addresses.
        let mut held = Vec::new();
        let mut refused = 0;
        for i in 0..12u8 {
            let source = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 1, i));
            match throttle
                .reserve(password(source, "carol"), t(0))
                .await
                .unwrap()
            {
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
        assert!(
            throttle
                .reserve(password(B, "carol"), t(0))
                .await
                .unwrap()
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_success_gives_its_slot_back() {
        let (_dir, throttle) = throttle(2, Duration::from_secs(60));
        for _ in 0..5 {
            throttle
                .reserve(password(A, "alice"), t(0))
                .await
                .unwrap()
                .unwrap()
                .succeeded()
                .await;
        }
        assert_eq!(
            throttle.blocked(&password(A, "alice"), t(0)).await.unwrap(),
            None
        );
        // A reservation dropped unresolved (a connection gone mid-check) counts.
        drop(throttle.reserve(password(A, "alice"), t(0)).await.unwrap());
        throttle
            .reserve(password(A, "alice"), t(0))
            .await
            .unwrap()
            .unwrap()
            .failed();
        assert!(
            throttle
                .blocked(&password(A, "alice"), t(0))
                .await
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn audit_lines_per_source_are_budgeted() {
        let (_dir, throttle) = throttle(5, Duration::from_secs(60));
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
