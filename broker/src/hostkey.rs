//! The bastion's own SSH host key: `data/host_ed25519`, created on first start (mode 0600)
//! and reused after, so clients' known_hosts entries stay valid.

use std::path::Path;

use russh::keys::ssh_key::{HashAlg, LineEnding, PrivateKey};

use crate::datadir::write_private_file;

/// Why the host key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum HostKeyError {
    /// Reading or writing the file failed.
    #[error("host key {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// Loads the host key, creating a new ed25519 key if the file does not exist.
pub fn load_or_create(path: &Path) -> Result<PrivateKey, HostKeyError> {
    let error = |message: String| HostKeyError::Io {
        path: path.display().to_string(),
        message,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => PrivateKey::from_openssh(&text)
            .map_err(|e| error(format!("not an unencrypted OpenSSH private key: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = crate::vault::generate_ed25519("portcullis host key")
                .map_err(|e| error(e.to_string()))?;
            let text = key
                .to_openssh(LineEnding::LF)
                .map_err(|e| error(e.to_string()))?;
            write_private_file(path, text.as_bytes()).map_err(|e| error(e.to_string()))?;
            tracing::info!(
                file = %path.display(),
                fingerprint = %key.public_key().fingerprint(HashAlg::Sha256),
                "created a new host key"
            );
            Ok(key)
        }
        Err(e) => Err(error(e.to_string())),
    }
}
