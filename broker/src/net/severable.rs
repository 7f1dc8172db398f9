//! A stream the bastion can cut: once its token is cancelled, reads see end-of-file and
//! writes fail, whatever the SSH library is in the middle of. Disconnect messages are
//! polite; this is the guarantee that an ended session really ends.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Wraps a stream; cancelling the token severs it.
pub struct Severable<S> {
    inner: S,
    severed: Pin<Box<WaitForCancellationFutureOwned>>,
    is_severed: bool,
}

impl<S> Severable<S> {
    /// `inner`, cut when `token` is cancelled.
    pub fn new(inner: S, token: CancellationToken) -> Self {
        Self {
            inner,
            severed: Box::pin(token.cancelled_owned()),
            is_severed: false,
        }
    }

    fn check(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.is_severed && self.severed.as_mut().poll(cx).is_ready() {
            self.is_severed = true;
        }
        self.is_severed
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Severable<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.check(cx) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Severable<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.check(cx) {
            return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.check(cx) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_pending_read_ends_when_severed() {
        let (client, server) = tokio::io::duplex(64);
        let token = CancellationToken::new();
        let mut severable = Severable::new(server, token.clone());
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            severable.read(&mut buf).await
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        token.cancel();
        let read = tokio::time::timeout(std::time::Duration::from_secs(1), reader)
            .await
            .expect("the read ends")
            .expect("task");
        assert_eq!(read.expect("EOF, not an error"), 0);
        drop(client);
    }

    #[tokio::test]
    async fn writes_fail_after_severing() {
        let (_client, server) = tokio::io::duplex(64);
        let token = CancellationToken::new();
        let mut severable = Severable::new(server, token.clone());
        severable.write_all(b"before").await.expect("write before");
        token.cancel();
        assert!(severable.write_all(b"after").await.is_err());
    }
}
