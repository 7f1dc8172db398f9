//! Where time comes from. Decisions take `now` as an argument; the bastion asks one [`Clock`]
//! for it, and waits for deadlines (a grant's end, an idle timeout, an approval's patience)
//! through the same clock. [`SystemClock`] is the real one; [`ManualClock`] moves only when
//! a test advances it, so timing scenarios run in milliseconds and never race the machine.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

/// A future that resolves once a deadline has passed.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A source of time.
pub trait Clock: Debug + Send + Sync + 'static {
    /// The wall-clock time (what records and decisions use).
    fn now(&self) -> SystemTime;
    /// A monotonic reading, for measuring spans (throttle windows, idle time): it never
    /// goes back, whatever the wall clock does.
    fn instant(&self) -> Instant;
    /// Resolves once [`Clock::now`] has reached `deadline` (at once if it has already).
    fn sleep_until(&self, deadline: SystemTime) -> Sleep;
}

impl dyn Clock {
    /// Resolves once `span` has passed on this clock.
    pub fn sleep(&self, span: Duration) -> Sleep {
        self.sleep_until(self.now() + span)
    }
}

/// The machine's clocks.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl SystemClock {
    /// The system clock, shared.
    pub fn shared() -> Arc<dyn Clock> {
        Arc::new(SystemClock)
    }
}

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn instant(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, deadline: SystemTime) -> Sleep {
        Box::pin(async move {
            // Slept on the monotonic clock, then checked on the wall clock: if that was set
            // back meanwhile, sleep the difference again.
            while let Ok(left) = deadline.duration_since(SystemTime::now()) {
                if left.is_zero() {
                    break;
                }
                tokio::time::sleep(left).await;
            }
        })
    }
}

/// A clock that moves only when told: tests set the scene, advance it past a deadline and
/// wait for what the deadline should cause.
#[derive(Debug)]
pub struct ManualClock {
    /// How far the clock has been advanced from where it started.
    advanced: watch::Sender<Duration>,
    wall: SystemTime,
    monotonic: Instant,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: SystemTime) -> Arc<Self> {
        Arc::new(Self {
            advanced: watch::channel(Duration::ZERO).0,
            wall: start,
            monotonic: Instant::now(),
        })
    }

    /// A clock standing at the machine's present time (records still look plausible).
    pub fn starting_now() -> Arc<Self> {
        Self::new(SystemTime::now())
    }

    /// Moves the clock forward by `span`, waking whatever it made due.
    pub fn advance(&self, span: Duration) {
        self.advanced.send_modify(|advanced| *advanced += span);
    }

    fn offset(&self) -> Duration {
        *self.advanced.borrow()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        self.wall + self.offset()
    }

    fn instant(&self) -> Instant {
        self.monotonic + self.offset()
    }

    fn sleep_until(&self, deadline: SystemTime) -> Sleep {
        let due = deadline.duration_since(self.wall).unwrap_or_default();
        let mut advanced = self.advanced.subscribe();
        Box::pin(async move {
            if advanced.wait_for(|now| *now >= due).await.is_err() {
                // The clock is gone: nothing will ever be due.
                std::future::pending::<()>().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_wakes_sleepers_only_when_advanced_past_their_deadline() {
        let clock = ManualClock::starting_now();
        let start = clock.now();
        let begun = clock.instant();
        let shared: Arc<dyn Clock> = clock.clone();
        let mut sleeping = tokio::spawn(shared.sleep(Duration::from_secs(60)));
        clock.advance(Duration::from_secs(59));
        tokio::task::yield_now().await;
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut sleeping)
                .await
                .is_err(),
            "woke before its deadline"
        );
        clock.advance(Duration::from_secs(1));
        sleeping.await.unwrap();
        assert_eq!(clock.now(), start + Duration::from_secs(60));
        assert_eq!(clock.instant() - begun, Duration::from_secs(60));
        // A deadline already past resolves at once.
        shared.sleep_until(start).await;
    }

    #[tokio::test]
    async fn the_system_clock_sleeps_until_a_wall_clock_deadline() {
        let clock = SystemClock::shared();
        let deadline = clock.now() + Duration::from_millis(20);
        clock.sleep_until(deadline).await;
        assert!(clock.now() >= deadline);
    }
}
