//! Bytes of the bastion's own put into what the client is sent — the answer to an sftp
//! request a file rule refused — queued by the uplink, written by the downlink between the
//! server's messages (never inside one: see `Watch::partial`).
//!
//! Bounded: a client that floods refused requests and reads no answers makes the uplink
//! wait for [`Insertions::room`], so its requests back up to it (flow control) instead of
//! its answers growing the bastion's memory.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::Notify;

/// Bytes of answers queued before the uplink waits for the downlink to write them.
const MAX_QUEUED: usize = 64 * 1024;

/// Answers waiting to be written to the client.
#[derive(Default)]
pub struct Insertions {
    queue: Mutex<Queue>,
    /// Wakes the downlink: answers are queued.
    waiting: Notify,
    /// Wakes the uplink: answers were taken.
    drained: Notify,
}

#[derive(Default)]
struct Queue {
    answers: VecDeque<Bytes>,
    bytes: usize,
}

impl Insertions {
    /// Queues `bytes` for the client, and wakes the downlink if it is idle.
    pub fn push(&self, bytes: Bytes) {
        let mut queue = super::lock(&self.queue);
        queue.bytes += bytes.len();
        queue.answers.push_back(bytes);
        drop(queue);
        self.waiting.notify_one();
    }

    /// Everything queued, in order.
    pub fn take(&self) -> Vec<Bytes> {
        let mut queue = super::lock(&self.queue);
        queue.bytes = 0;
        let answers = queue.answers.drain(..).collect();
        drop(queue);
        self.drained.notify_waiters();
        answers
    }

    /// Resolves once the queue holds no more than it may (at once, if it already does).
    pub async fn room(&self) {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            // Registered before the check, so a take in between is not missed.
            drained.as_mut().enable();
            if super::lock(&self.queue).bytes <= MAX_QUEUED {
                return;
            }
            drained.await;
        }
    }

    /// Resolves when something has been queued since the last wake (a push made while
    /// nobody waited is not lost: its wake is kept for the next wait).
    pub async fn queued(&self) {
        self.waiting.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_push_made_before_the_wait_still_wakes_it_and_order_is_kept() {
        let insertions = Insertions::default();
        insertions.push(Bytes::from_static(b"one"));
        insertions.push(Bytes::from_static(b"two"));
        insertions.queued().await;
        assert_eq!(insertions.take(), [&b"one"[..], &b"two"[..]]);
        assert!(insertions.take().is_empty());
    }

    #[tokio::test]
    async fn past_its_bound_the_queue_makes_the_uplink_wait_until_the_answers_are_taken() {
        let insertions = std::sync::Arc::new(Insertions::default());
        insertions.room().await;
        for _ in 0..=MAX_QUEUED / 1024 {
            insertions.push(Bytes::from(vec![0u8; 1024]));
        }
        let waiting = tokio::spawn({
            let insertions = insertions.clone();
            async move { insertions.room().await }
        });
        // The waiter is parked until the downlink takes the answers.
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        assert_eq!(insertions.take().len(), MAX_QUEUED / 1024 + 1);
        waiting.await.unwrap();
    }
}
