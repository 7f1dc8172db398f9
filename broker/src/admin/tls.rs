//! The admin API's TLS: the configured certificate, or a self-signed pair created in the
//! data directory on first start. Clients pin the self-signed certificate by its SHA-256
//! fingerprint (logged at start), or trust a CA they are given.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;

use crate::datadir::write_private_file;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("admin API TLS: {0}")]
pub struct TlsError(String);

/// The server configuration and the leaf certificate's fingerprint.
pub struct Tls {
    /// For the listener.
    pub config: Arc<ServerConfig>,
    /// `sha256:<hex>` of the leaf certificate.
    pub fingerprint: String,
}

pub use crate::api_client::fingerprint;

/// Loads `cert`/`key`, or (both `None`) the self-signed pair in `data_dir`, creating it the
/// first time for `names` (host names and addresses it should be valid for).
pub fn load_or_create(
    cert: Option<&Path>,
    key: Option<&Path>,
    data_dir: &Path,
    names: Vec<String>,
) -> Result<Tls, TlsError> {
    let (cert_path, key_path) = match (cert, key) {
        (Some(cert), Some(key)) => (cert.to_owned(), key.to_owned()),
        _ => {
            let pair = (
                data_dir.join("admin-cert.pem"),
                data_dir.join("admin-key.pem"),
            );
            if !pair.0.exists() {
                create_self_signed(&pair.0, &pair.1, names)?;
            }
            pair
        }
    };
    let chain = crate::net::tls_files::certificates(&cert_path).map_err(TlsError)?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError(format!(
            "{}: no certificate in it",
            cert_path.display()
        )));
    };
    let fingerprint = fingerprint(leaf);
    let key = crate::net::tls_files::private_key(&key_path).map_err(TlsError)?;
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| {
                TlsError(format!(
                    "{} and {}: {e}",
                    cert_path.display(),
                    key_path.display()
                ))
            })?;
    let mut config = config;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls {
        config: Arc::new(config),
        fingerprint,
    })
}

fn create_self_signed(cert: &Path, key: &Path, names: Vec<String>) -> Result<(), TlsError> {
    let certified = rcgen::generate_simple_self_signed(names)
        .map_err(|e| TlsError(format!("cannot create a self-signed certificate: {e}")))?;
    write_private_file(key, certified.signing_key.serialize_pem().as_bytes())
        .map_err(|e| TlsError(format!("{}: {e}", key.display())))?;
    write_private_file(cert, certified.cert.pem().as_bytes())
        .map_err(|e| TlsError(format!("{}: {e}", cert.display())))?;
    tracing::info!(file = %cert.display(), "created a self-signed certificate for the admin API");
    Ok(())
}
