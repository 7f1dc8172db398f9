//! The webhook forwarder: events POSTed as a JSON array over HTTPS, a batch at a time.
//!
//! A batch counts as delivered when the receiver answers 2xx; anything else (no answer,
//! another status) sends the same batch again later, so a receiver sees each event at least
//! once and drops repeats by `id`. The receiver can check who sent it:
//!
//! * `Authorization: Bearer TOKEN` (`bearer_token_file`), or
//! * `X-Portcullis-Signature: t=UNIX,sha256=HEX`, the HMAC-SHA256 under the shared secret
//!   (`hmac_secret_file`) of `UNIX.BODY`: the time is signed with the body, so an old
//!   request replayed later is told apart by its time.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use zeroize::Zeroizing;

use super::connect::Endpoint;
use super::outgoing::Outgoing;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-portcullis-signature";
/// Most bytes of a refusal's body kept for the log.
const REFUSAL_SHOWN: usize = 200;

/// How a receiver knows the events are ours.
pub enum Proof {
    /// No proof (a receiver on loopback, or one that checks the client certificate).
    None,
    /// A bearer token.
    Bearer(Zeroizing<String>),
    /// An HMAC-SHA256 signature of each body.
    Hmac(ring::hmac::Key),
}

/// A webhook receiver and the HTTP connection to it, if one is open.
pub struct Webhook {
    endpoint: Endpoint,
    /// `Host` header.
    host: String,
    path: String,
    proof: Proof,
    timeout: Duration,
    sender: Option<SendRequest<Full<Bytes>>>,
    /// The task driving that connection: ended with it, so a receiver that never answers
    /// cannot pile up connections waiting for it.
    connection: Option<tokio::task::AbortHandle>,
}

impl Webhook {
    /// A forwarder POSTing to `path` at `endpoint`.
    pub fn new(endpoint: Endpoint, path: String, proof: Proof, timeout: Duration) -> Self {
        let host = if endpoint.host.contains(':') {
            format!("[{}]:{}", endpoint.host, endpoint.port)
        } else {
            format!("{}:{}", endpoint.host, endpoint.port)
        };
        Self {
            endpoint,
            host,
            path,
            proof,
            timeout,
            sender: None,
            connection: None,
        }
    }

    /// POSTs `events` as one JSON array; `Ok` once the receiver answered 2xx.
    pub async fn send(&mut self, events: &[Outgoing], unix_time: u64) -> Result<(), String> {
        let mut body = String::with_capacity(events.iter().map(|e| e.json.len() + 1).sum());
        body.push('[');
        for (i, event) in events.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&event.json);
        }
        body.push(']');
        let result = tokio::time::timeout(self.timeout, self.post(body, unix_time)).await;
        let result = result.unwrap_or_else(|_| {
            Err(format!(
                "{:?} did not answer within {}",
                self.endpoint,
                humantime::format_duration(self.timeout)
            ))
        });
        if result.is_err() {
            self.reset();
        }
        result
    }

    /// Drops the connection.
    pub fn reset(&mut self) {
        self.sender = None;
        if let Some(connection) = self.connection.take() {
            connection.abort();
        }
    }

    async fn post(&mut self, body: String, unix_time: u64) -> Result<(), String> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(&self.path)
            .header(hyper::header::HOST, &self.host)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, "portcullis");
        match &self.proof {
            Proof::None => {}
            Proof::Bearer(token) => {
                request = request.header(
                    hyper::header::AUTHORIZATION,
                    format!("Bearer {}", token.as_str()),
                );
            }
            Proof::Hmac(key) => {
                request = request.header(SIGNATURE_HEADER, signature(key, unix_time, &body));
            }
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let sender = match self.sender.take() {
            Some(sender) if !sender.is_closed() => self.sender.insert(sender),
            _ => {
                let stream = self.endpoint.connect(self.timeout).await?;
                let (sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .map_err(|e| format!("HTTP with {:?} failed: {e}", self.endpoint))?;
                if let Some(old) = self
                    .connection
                    .replace(tokio::spawn(connection).abort_handle())
                {
                    old.abort();
                }
                self.sender.insert(sender)
            }
        };
        sender
            .ready()
            .await
            .map_err(|e| format!("HTTP with {:?} failed: {e}", self.endpoint))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("POST to {:?} failed: {e}", self.endpoint))?;
        let status = response.status();
        // Read the answer in full, so the connection can carry the next batch.
        let answer = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("the answer from {:?} broke off: {e}", self.endpoint))?
            .to_bytes();
        if status.is_success() {
            return Ok(());
        }
        let shown = String::from_utf8_lossy(&answer[..answer.len().min(REFUSAL_SHOWN)]);
        Err(format!(
            "the receiver answered {status}: {}",
            crate::text::Shown(shown.trim())
        ))
    }
}

/// `t=UNIX,sha256=HEX` for `body` sent at `unix_time`.
pub fn signature(key: &ring::hmac::Key, unix_time: u64, body: &str) -> String {
    let mut context = ring::hmac::Context::with_key(key);
    context.update(unix_time.to_string().as_bytes());
    context.update(b".");
    context.update(body.as_bytes());
    format!(
        "t={unix_time},sha256={}",
        hex::encode(context.sign().as_ref())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_the_time_and_the_body() {
        let key =
            ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"0123456789abcdef0123456789abcdef");
        let signed = signature(&key, 1_700_000_000, "[{\"id\":\"a\"}]");
        let expected = ring::hmac::sign(&key, b"1700000000.[{\"id\":\"a\"}]");
        assert_eq!(
            signed,
            format!("t=1700000000,sha256={}", hex::encode(expected.as_ref()))
        );
        assert_ne!(signed, signature(&key, 1_700_000_001, "[{\"id\":\"a\"}]"));
    }
}
