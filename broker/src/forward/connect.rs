//! Connections to receivers: TCP, or TLS checked against the configured CA (the system's
//! bundle by default), with a client certificate for receivers that ask for one.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use portcullis_config::ForwardConfig;

use crate::net::tls_files;

/// Where the system keeps the CAs it trusts (Debian's ca-certificates).
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A byte stream to a receiver, plain or TLS.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for T {}

/// How to reach one receiver.
#[derive(Clone)]
pub struct Endpoint {
    /// Host name or address, as configured.
    pub host: String,
    /// Port.
    pub port: u16,
    /// TLS, when the receiver speaks it.
    pub tls: Option<TlsConnector>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{} (tls: {})",
            self.host,
            self.port,
            self.tls.is_some()
        )
    }
}

impl Endpoint {
    /// Opens a connection, TLS included, within `timeout`.
    pub async fn connect(&self, timeout: Duration) -> Result<Box<dyn Stream>, String> {
        let address = format!("{}:{}", self.host, self.port);
        let work = async {
            let tcp = TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| format!("cannot connect to {address}: {e}"))?;
            let _ = tcp.set_nodelay(true);
            let Some(tls) = &self.tls else {
                return Ok(Box::new(tcp) as Box<dyn Stream>);
            };
            let name =
                tls_files::server_name(&self.host).map_err(|e| format!("{}: {e}", self.host))?;
            let stream = tls
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS with {address} failed: {e}"))?;
            Ok(Box::new(stream) as Box<dyn Stream>)
        };
        tokio::time::timeout(timeout, work).await.map_err(|_| {
            format!(
                "{address} did not answer within {}",
                humantime::format_duration(timeout)
            )
        })?
    }
}

/// The TLS settings of a forwarder, from its CA and client certificate files. Read once at
/// start, so a missing or unreadable file stops the bastion with its name instead of
/// failing every delivery later.
pub fn tls_connector(config: &ForwardConfig) -> Result<TlsConnector, String> {
    let ca = config
        .ca_file
        .as_deref()
        .unwrap_or(Path::new(SYSTEM_CA_BUNDLE));
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(tls_files::certificates(ca)?);
    if added == 0 {
        return Err(format!("{}: holds no CA certificate", ca.display()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match (&config.client_cert_file, &config.client_key_file) {
        (Some(cert), Some(key)) => {
            let chain = tls_files::certificates(cert)?;
            let key = tls_files::private_key(key)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("{}: {e}", cert.display()))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(TlsConnector::from(Arc::new(config)))
}
