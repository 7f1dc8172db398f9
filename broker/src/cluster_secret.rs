//! The secret every node of a cluster shares (`[cluster] secret_file`): node-to-node calls
//! are signed with it (see `admin::signature`).

use std::path::Path;

use ring::hmac;

/// Reads the shared secret: at least 32 characters (surrounding whitespace ignored).
pub fn load_key(path: &Path) -> Result<hmac::Key, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let secret = text.trim();
    if secret.len() < 32 {
        return Err(format!(
            "holds {} characters; a cluster secret needs at least 32 (e.g. `openssl rand -hex 32`)",
            secret.len()
        ));
    }
    Ok(hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_short_secret_is_refused_with_how_to_make_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "short\n").unwrap();
        let error = load_key(&path).err().unwrap();
        assert!(error.contains("openssl rand -hex 32"), "{error}");
        std::fs::write(&path, format!("{}\n", "x".repeat(64))).unwrap();
        assert!(load_key(&path).is_ok());
    }
}
