//! A client for the admin API: HTTPS with a bearer token (the CLI), or a per-call signature
//! (one node calling another, see `admin::peer`), trusting the server's certificate only by
//! its pinned fingerprint or through a CA file the operator names.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// `sha256:<hex>` of a DER certificate.
pub fn fingerprint(der: &[u8]) -> String {
    format!(
        "sha256:{}",
        hex::encode(ring::digest::digest(&ring::digest::SHA256, der))
    )
}

/// Makes the Authorization header of one call (method, path with query).
pub type Signer = Box<dyn Fn(&str, &str) -> String + Send + Sync>;

/// Where the API is and how to trust it.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// The admin API, e.g. https://bastion:8443.
    #[arg(long = "api", env = "PORTCULLIS_API")]
    pub url: Option<String>,
    /// A bearer token with the needed scope.
    #[arg(long, env = "PORTCULLIS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Trust the server's certificate if its SHA-256 is this (logged by the bastion at start).
    #[arg(long, env = "PORTCULLIS_API_FINGERPRINT")]
    pub fingerprint: Option<String>,
    /// Trust certificates issued by the CA in this PEM file.
    #[arg(long, env = "PORTCULLIS_CA")]
    pub ca: Option<PathBuf>,
}

/// A connected-on-demand API client.
pub struct ApiClient {
    host: String,
    port: u16,
    auth: Auth,
    connector: TlsConnector,
}

/// How calls say who makes them.
enum Auth {
    /// An operator's token.
    Bearer(String),
    /// Another node, for one of its operators (signed per call).
    Signed(Signer),
}

impl Auth {
    /// The Authorization header of `method path`.
    fn header(&self, method: &Method, path: &str) -> String {
        match self {
            Self::Bearer(token) => format!("Bearer {token}"),
            Self::Signed(sign) => sign(method.as_str(), path),
        }
    }
}

/// Accepts exactly one certificate, by fingerprint (for the bastion's self-signed one).
#[derive(Debug)]
struct PinnedCertificate {
    fingerprint: String,
    provider: Arc<CryptoProvider>,
}

fn normalize_fingerprint(text: &str) -> String {
    let text = text.trim().to_ascii_lowercase();
    let hex = text.strip_prefix("sha256:").unwrap_or(&text);
    format!("sha256:{}", hex.replace(':', ""))
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if fingerprint(end_entity) == self.fingerprint {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the server's certificate is {}, not the pinned {}",
                fingerprint(end_entity),
                self.fingerprint
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl ApiClient {
    /// A client from the command line's settings; the error says what is missing.
    pub fn new(args: &ApiArgs) -> Result<Self, String> {
        let url = args
            .url
            .as_deref()
            .ok_or("no admin API given: pass --api https://HOST:PORT or set PORTCULLIS_API")?;
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| format!("{url}: the admin API is HTTPS only (https://HOST:PORT)"))?
            .trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => (
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned(),
                port.parse::<u16>()
                    .map_err(|_| format!("{url}: bad port"))?,
            ),
            _ => (rest.to_owned(), 443),
        };
        let token = args
            .token
            .clone()
            .ok_or("no API token given: pass --token or set PORTCULLIS_TOKEN")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let config = match (&args.fingerprint, &args.ca) {
            (Some(pinned), _) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedCertificate {
                    fingerprint: normalize_fingerprint(pinned),
                    provider,
                }))
                .with_no_client_auth(),
            (None, Some(ca)) => {
                let mut roots = RootCertStore::empty();
                for cert in crate::net::tls_files::certificates(ca)? {
                    roots
                        .add(cert)
                        .map_err(|e| format!("{}: {e}", ca.display()))?;
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            (None, None) => {
                return Err(
                    "cannot trust the admin API yet: pass --fingerprint (the bastion logs its certificate's at start) or --ca FILE"
                        .into(),
                );
            }
        };
        Ok(Self {
            host,
            port,
            auth: Auth::Bearer(token),
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// A client of another node's API at `address` (`host:port`), pinned to its
    /// certificate's `fingerprint`, signing each call with `signer`.
    pub fn for_peer(address: &str, fingerprint: &str, sign: Signer) -> Result<Self, String> {
        let (host, port) = address
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host.trim_matches(['[', ']']), port.parse().ok()?)))
            .ok_or_else(|| format!("{address} is not host:port"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedCertificate {
                fingerprint: normalize_fingerprint(fingerprint),
                provider,
            }))
            .with_no_client_auth();
        Ok(Self {
            host: host.to_owned(),
            port,
            auth: Auth::Signed(sign),
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    async fn connect(&self) -> Result<TlsStream<TcpStream>, String> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("cannot connect to {}:{}: {e}", self.host, self.port))?;
        let name = crate::net::tls_files::server_name(&self.host).map_err(|e| e.to_string())?;
        self.connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {}:{} failed: {e}", self.host, self.port))
    }

    /// Sends a request and returns the status and body; `Err` only when no answer came.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Bytes), String> {
        let (status, _, body) = self.exchange(method, path, body).await?;
        Ok((status, body))
    }

    /// Sends a request without a body; the status, the content type and the body.
    pub async fn request_raw(
        &self,
        method: Method,
        path: &str,
    ) -> Result<(StatusCode, Option<String>, Bytes), String> {
        self.exchange(method, path, None).await
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Option<String>, Bytes), String> {
        let stream = self.connect().await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let authorization = self.auth.header(&method, path);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, format!("{}:{}", self.host, self.port))
            .header(hyper::header::AUTHORIZATION, authorization)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(payload)))
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, content_type, body))
    }

    /// Sends a request; the body of a non-2xx answer becomes the error message.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Bytes, String> {
        let (status, body) = self.request(method, path, body).await?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(error_message(status, &body))
        }
    }

    /// A JSON call.
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let bytes = self.call(method, path, body).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| format!("the API answered something that is not JSON: {e}"))
    }

    /// Opens a WebSocket at `path`.
    pub async fn websocket(
        &self,
        path: &str,
    ) -> Result<tokio_tungstenite::WebSocketStream<TlsStream<TcpStream>>, String> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let stream = self.connect().await?;
        let mut request = format!("wss://{}:{}{path}", self.host, self.port)
            .into_client_request()
            .map_err(|e| e.to_string())?;
        let bearer = self
            .auth
            .header(&Method::GET, path)
            .parse()
            .map_err(|_| "the token has characters a header cannot carry".to_owned())?;
        request
            .headers_mut()
            .insert(hyper::header::AUTHORIZATION, bearer);
        match tokio_tungstenite::client_async(request, stream).await {
            Ok((socket, _)) => Ok(socket),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(error_message(
                response.status(),
                response.body().as_deref().unwrap_or_default(),
            )),
            Err(e) => Err(e.to_string()),
        }
    }
}

fn error_message(status: StatusCode, body: &[u8]) -> String {
    let detail = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(String::from))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    format!("{} ({})", detail, status.as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_compared_in_one_form() {
        assert_eq!(normalize_fingerprint("SHA256:AB:cd:01"), "sha256:abcd01");
        assert_eq!(normalize_fingerprint("abcd01"), "sha256:abcd01");
    }
}
