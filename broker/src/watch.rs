//! Following a live session's recording: everything written so far, then each new line as
//! it is written. The admin API's WebSocket and `ssh … watch ID` both read through this.

use std::sync::Arc;

use portcullis_recorder::Subscription;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::sync::broadcast::error::RecvError;

use crate::live::SessionShared;

/// Why a session cannot be watched.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// It has no recording (nothing started yet, or only file transfers).
    #[error("the session has no recording to watch yet")]
    NothingToWatch,
    /// Its recording has already ended.
    #[error("the session's recording has ended")]
    Ended,
    /// The file could not be read.
    #[error("cannot read the recording: {0}")]
    Io(#[from] std::io::Error),
}

/// A position in a recording being followed.
pub struct Follower {
    first: Option<Arc<str>>,
    backlog: Lines<BufReader<tokio::fs::File>>,
    backlog_left: u64,
    subscription: Subscription,
}

impl Follower {
    /// Starts following `session`'s watchable recording.
    pub async fn start(session: &SessionShared) -> Result<Self, WatchError> {
        let recording = session
            .watchable_recording()
            .ok_or(WatchError::NothingToWatch)?;
        let mut subscription = recording.subscribe().await.map_err(|_| WatchError::Ended)?;
        let file = tokio::fs::File::open(&subscription.path).await?;
        Ok(Self {
            first: subscription.first.take(),
            backlog: BufReader::new(file).lines(),
            backlog_left: subscription.lines_on_disk,
            subscription,
        })
    }

    /// The next line (asciicast JSON, the header first); `None` when the recording has
    /// ended. A watcher too slow for the live stream skips ahead.
    pub async fn next_line(&mut self) -> Option<Arc<str>> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        if self.backlog_left > 0 {
            self.backlog_left -= 1;
            if let Ok(Some(line)) = self.backlog.next_line().await {
                return Some(line.into());
            }
            self.backlog_left = 0;
        }
        loop {
            match self.subscription.live.recv().await {
                Ok(line) => return Some(line),
                Err(RecvError::Lagged(skipped)) => {
                    tracing::debug!(skipped, "watcher fell behind");
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

/// The terminal output in an asciicast event line, if it is an "o" event.
pub fn output_of(line: &str) -> Option<String> {
    let event = portcullis_recorder::asciicast::decode_event(line)?;
    (event.kind == portcullis_recorder::asciicast::EventKind::Output).then_some(event.data)
}
