//! What every TLS setup of the bastion reads the same way: certificates and keys from PEM
//! files (errors name the file), and the name a server's certificate is checked against.

use std::net::IpAddr;
use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, InvalidDnsNameError, PrivateKeyDer, ServerName};

/// Every certificate in the PEM file at `path` (none is not an error here: callers say
/// what an empty file means for them).
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The private key in the PEM file at `path`.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// What a server at `host` must prove to be: its IP address, or its DNS name.
pub fn server_name(host: &str) -> Result<ServerName<'static>, InvalidDnsNameError> {
    match host.parse::<IpAddr>() {
        Ok(ip) => Ok(ServerName::IpAddress(ip.into())),
        Err(_) => ServerName::try_from(host.to_owned()),
    }
}
