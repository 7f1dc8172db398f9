//! `ssh bob@bastion watch ID`: a live session's terminal, streamed read-only onto the
//! watcher's own channel. The watcher leaves with `q` or Ctrl-C, or when the session ends.

use std::sync::Arc;

use bytes::Bytes;
use russh::ChannelWriteHalf;
use russh::server::Msg;
use tokio_util::sync::CancellationToken;

use super::notice;
use crate::live::SessionShared;
use crate::watch::{Follower, output_of};

/// Streams `follower` onto `channel` until the watched recording ends, `stop` is cancelled,
/// or the watcher's own session ends; then closes the channel with exit status 0.
pub async fn run(
    follower: Follower,
    channel: ChannelWriteHalf<Msg>,
    pty: bool,
    watched: Arc<SessionShared>,
    watcher: Arc<SessionShared>,
    stop: CancellationToken,
) {
    let mut follower = follower;
    let banner = format!(
        "watching session {} ({} → {}), read-only; q or Ctrl-C to stop",
        watched.id,
        watched.user().unwrap_or("?"),
        watched.target().unwrap_or("?")
    );
    say(&channel, notice::message(&banner, pty)).await;
    let ending = loop {
        let line = tokio::select! {
            line = follower.next_line() => line,
            () = stop.cancelled() => break "stopped watching",
            () = watcher.control.ended() => break "stopped watching",
        };
        let Some(line) = line else {
            break "the watched session ended";
        };
        if let Some(output) = output_of(&line) {
            let write = channel.data_bytes(Bytes::from(output));
            tokio::select! {
                result = write => if result.is_err() { return },
                () = stop.cancelled() => break "stopped watching",
                () = watcher.control.ended() => break "stopped watching",
            }
        }
    };
    say(&channel, notice::message(ending, pty)).await;
    let _ = channel.exit_status(0).await;
    let _ = channel.eof().await;
    let _ = channel.close().await;
}

async fn say(channel: &ChannelWriteHalf<Msg>, text: notice::Text) {
    let _ = match text.ext {
        Some(ext) => channel.extended_data_bytes(ext, text.bytes).await,
        None => channel.data_bytes(text.bytes).await,
    };
}
