//! Bytes of the bastion's own put into what the client is sent — the answer to an sftp
//! request a file rule refused — queued by the uplink, written by the downlink between the
//! server's messages (never inside one: see `Watch::partial`).

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::Notify;

/// Answers waiting to be written to the client.
#[derive(Default)]
pub struct Insertions {
    queue: Mutex<VecDeque<Bytes>>,
    waiting: Notify,
}

impl Insertions {
    /// Queues `bytes` for the client, and wakes the downlink if it is idle.
    pub fn push(&self, bytes: Bytes) {
        super::lock(&self.queue).push_back(bytes);
        self.waiting.notify_one();
    }

    /// Everything queued, in order.
    pub fn take(&self) -> Vec<Bytes> {
        super::lock(&self.queue).drain(..).collect()
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
}
