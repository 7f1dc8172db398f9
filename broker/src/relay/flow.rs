//! Flow control for the client → upstream direction.
//!
//! russh answers every client data packet with window space at once and runs all of a
//! connection's callbacks on one loop, so the only way to slow a client down is to make the
//! `data` callback wait, which stops that loop. That is right when the upstream is slow
//! (TCP backpressure reaches the client), but it deadlocks a channel busy both ways, like
//! `ssh host cat < big > out`: the downlink waits for the client's window, whose adjustment
//! sits in the stopped loop behind the data the callback is holding.
//!
//! So the callback waits only while the downlink is *not* in the middle of a write to the
//! client. While it is, queued client data may grow beyond the high-water mark until the
//! loop has read the client's window adjustment. An honest client's adjustment arrives
//! within a window's worth of data; a client that sends without ever reading hits the hard
//! cap and its session is ended, so memory stays bounded either way.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::Notify;

/// Queued client bytes above which the client is made to wait.
pub const HIGH_WATER: usize = 4 * 1024 * 1024;
/// Queued client bytes at which the session is ended as misbehaving.
pub const HARD_CAP: usize = 64 * 1024 * 1024;

/// Shared between the handler (adds), the uplink (drains) and the downlink (writing flag).
#[derive(Debug, Default)]
pub struct Flow {
    queued: AtomicUsize,
    downlink_writing: AtomicBool,
    uplink_gone: AtomicBool,
    changed: Notify,
}

/// The client has queued more than [`HARD_CAP`] without letting its output drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

impl Flow {
    /// Counts `len` bytes into the queue; `Err` once the hard cap is passed.
    pub fn add(&self, len: usize) -> Result<(), Overflow> {
        let queued = self.queued.fetch_add(len, Ordering::AcqRel) + len;
        if queued > HARD_CAP {
            Err(Overflow)
        } else {
            Ok(())
        }
    }

    /// The uplink took `len` bytes off the queue.
    pub fn drained(&self, len: usize) {
        self.queued.fetch_sub(len, Ordering::AcqRel);
        self.changed.notify_waiters();
    }

    /// The downlink starts (true) or finishes (false) a write to the client.
    pub fn set_downlink_writing(&self, writing: bool) {
        self.downlink_writing.store(writing, Ordering::Release);
        if writing {
            self.changed.notify_waiters();
        }
    }

    /// The uplink has stopped: nothing will drain the queue, so nobody should wait for it.
    pub fn uplink_gone(&self) {
        self.uplink_gone.store(true, Ordering::Release);
        self.changed.notify_waiters();
    }

    /// Bytes waiting for the upstream.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Waits while the queue is above the high-water mark and the downlink is not writing.
    pub async fn wait_for_room(&self) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the check, so no wake-up between check and wait is lost.
            changed.as_mut().enable();
            if self.queued() <= HIGH_WATER
                || self.downlink_writing.load(Ordering::Acquire)
                || self.uplink_gone.load(Ordering::Acquire)
            {
                return;
            }
            changed.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn waits_above_the_mark_until_drained() {
        let flow = Arc::new(Flow::default());
        flow.add(HIGH_WATER + 10).unwrap();
        let waiter = tokio::spawn({
            let flow = flow.clone();
            async move { flow.wait_for_room().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        flow.drained(20);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn a_downlink_write_releases_the_waiter() {
        let flow = Arc::new(Flow::default());
        flow.add(HIGH_WATER + 10).unwrap();
        let waiter = tokio::spawn({
            let flow = flow.clone();
            async move { flow.wait_for_room().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        flow.set_downlink_writing(true);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn a_stopped_uplink_releases_the_waiter() {
        let flow = Arc::new(Flow::default());
        flow.add(HIGH_WATER + 10).unwrap();
        let waiter = tokio::spawn({
            let flow = flow.clone();
            async move { flow.wait_for_room().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        flow.uplink_gone();
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
    }

    #[test]
    fn the_hard_cap_is_an_error() {
        let flow = Flow::default();
        assert_eq!(flow.add(HARD_CAP), Ok(()));
        assert_eq!(flow.add(1), Err(Overflow));
    }
}
