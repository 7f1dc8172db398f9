//! A webhook receiver over HTTPS for the audit forwarder's tests: it keeps every request it
//! is sent (headers and body), answers with the status the test chooses (200, or 503 to
//! play a receiver in trouble), and can be stopped and started again on the same port.
//!
//! A few lines of HTTP/1.1 by hand rather than a server framework: the test must see the
//! requests exactly as sent, and control when the receiver is gone.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::test_ca::TestCa;
use crate::util::{free_port, wait_for};

/// Most bytes of a request's head, and of its body.
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 64 * 1024 * 1024;
/// The "status" that means: never answer.
const HANG: u16 = 0;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl Received {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The receiver.
pub struct WebhookReceiver {
    port: u16,
    acceptor: TlsAcceptor,
    received: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
    running: Option<(
        tokio::sync::oneshot::Sender<()>,
        std::thread::JoinHandle<()>,
    )>,
    ca_file: std::path::PathBuf,
}

impl WebhookReceiver {
    /// Starts on a free loopback port, with a certificate from a CA written into `dir`.
    pub fn start(dir: &Path) -> Self {
        let ca = TestCa::new(dir);
        let server = ca.server("webhook");
        let chain = CertificateDer::pem_file_iter(&server.cert)
            .expect("certificate")
            .collect::<Result<Vec<_>, _>>()
            .expect("certificate");
        let key = PrivateKeyDer::from_pem_file(&server.key).expect("key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("TLS config");
        let mut receiver = Self {
            port: free_port(),
            acceptor: TlsAcceptor::from(Arc::new(config)),
            received: Arc::default(),
            status: Arc::new(AtomicU16::new(200)),
            running: None,
            ca_file: ca.ca_file(),
        };
        receiver.restart();
        receiver
    }

    /// `https://127.0.0.1:PORT/PATH`.
    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    /// The CA its certificate chains to.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// From now on, answers every request with `status`.
    pub fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// From now on, reads each request and never answers it (a receiver that hangs).
    pub fn hang(&self) {
        self.status.store(HANG, Ordering::SeqCst);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    /// Every event received, in order (each request's body is a JSON array of them).
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.requests()
            .iter()
            .flat_map(|r| {
                serde_json::from_str::<Vec<serde_json::Value>>(&r.body)
                    .unwrap_or_else(|e| panic!("body is not a JSON array ({e}): {}", r.body))
            })
            .collect()
    }

    /// Waits until `check` holds for the events received.
    pub fn wait_until(
        &self,
        what: &str,
        check: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        wait_for(Duration::from_secs(60), || {
            let events = self.events();
            check(&events).then_some(events)
        })
        .unwrap_or_else(|| {
            panic!(
                "the webhook never received {what}; it has {:#?}",
                self.events()
            )
        })
    }

    /// Waits for an event satisfying `matches` and returns it.
    pub fn wait_for_event(
        &self,
        what: &str,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let events = self.wait_until(what, |events| events.iter().any(&matches));
        events
            .into_iter()
            .find(|e| matches(e))
            .expect("the event waited for")
    }

    /// Closes the port and every connection; nothing is accepted until [`Self::restart`].
    pub fn stop(&mut self) {
        if let Some((stop, thread)) = self.running.take() {
            let _ = stop.send(());
            thread.join().expect("receiver thread");
        }
    }

    /// Listens again on the same port.
    pub fn restart(&mut self) {
        assert!(self.running.is_none(), "already running");
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        let std_listener = std::net::TcpListener::bind(address)
            .unwrap_or_else(|e| panic!("cannot listen on {address}: {e}"));
        std_listener.set_nonblocking(true).expect("nonblocking");
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let acceptor = self.acceptor.clone();
        let received = self.received.clone();
        let status = self.status.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(std_listener).expect("listener");
                let serve = async {
                    loop {
                        let Ok((tcp, _)) = listener.accept().await else {
                            continue;
                        };
                        let acceptor = acceptor.clone();
                        let received = received.clone();
                        let status = status.clone();
                        tokio::spawn(async move {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                let _ = serve_connection(stream, &received, &status).await;
                            }
                        });
                    }
                };
                tokio::select! {
                    () = serve => {}
                    _ = stopped => {}
                }
            });
            // Dropping the runtime drops every connection's task: their sockets close.
            drop(runtime);
        });
        self.running = Some((stop, thread));
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads requests off one connection and answers each, until the client closes it.
async fn serve_connection(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    received: &Mutex<Vec<Received>>,
    status: &AtomicU16,
) -> std::io::Result<()> {
    let mut buffer = Vec::new();
    loop {
        let head_end = loop {
            if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            if buffer.len() > MAX_HEAD {
                return Ok(());
            }
            let mut chunk = [0u8; 8192];
            let read = stream.read(&mut chunk).await?;
            if read == 0 {
                return Ok(());
            }
            buffer.extend_from_slice(&chunk[..read]);
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        let headers: Vec<(String, String)> = head
            .lines()
            .skip(1)
            .filter_map(|line| {
                let (name, value) = line.split_once(':')?;
                Some((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            })
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0)
            .min(MAX_BODY);
        while buffer.len() < head_end + length {
            let mut chunk = [0u8; 65536];
            let read = stream.read(&mut chunk).await?;
            if read == 0 {
                return Ok(());
            }
            buffer.extend_from_slice(&chunk[..read]);
        }
        let body = String::from_utf8_lossy(&buffer[head_end..head_end + length]).into_owned();
        buffer.drain(..head_end + length);
        let answer = status.load(Ordering::SeqCst);
        if answer == HANG {
            // Holds the connection, answering nothing, until the receiver stops.
            std::future::pending::<()>().await;
        }
        if answer == 200 {
            received
                .lock()
                .expect("lock")
                .push(Received { headers, body });
        }
        let reply = format!("HTTP/1.1 {answer} Status\r\ncontent-length: 2\r\n\r\nok");
        stream.write_all(reply.as_bytes()).await?;
        stream.flush().await?;
    }
}
