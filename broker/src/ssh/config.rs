//! The front door's SSH server settings: identity, methods offered, timing, ciphers.

use std::borrow::Cow;
use std::time::Duration;

use portcullis_config::Config;
use russh::keys::PrivateKey;

/// The SSH server settings of the front door.
pub fn server_config(config: &Config, host_key: PrivateKey) -> russh::server::Config {
    russh::server::Config {
        server_id: russh::SshId::Standard(Cow::Borrowed("SSH-2.0-portcullis")),
        methods: super::offered_methods(),
        keys: vec![host_key],
        // Rejections are delayed against timing probes, but the client's first "none"
        // probe is answered at once so logins stay fast.
        auth_rejection_time: Duration::from_millis(250),
        auth_rejection_time_initial: Some(Duration::ZERO),
        // Idle shells are fine; dead clients are found by keepalives instead.
        inactivity_timeout: None,
        keepalive_interval: Some(config.server.keepalive_interval),
        keepalive_max: 3,
        max_auth_attempts: 10,
        nodelay: true,
        window_size: 4 * 1024 * 1024,
        preferred: russh::Preferred {
            cipher: Cow::Owned(
                config
                    .server
                    .ciphers
                    .iter()
                    .filter_map(|name| cipher_name(name))
                    .collect(),
            ),
            ..russh::Preferred::DEFAULT
        },
        ..russh::server::Config::default()
    }
}

/// The russh name for a cipher the config accepted (see `SUPPORTED_CIPHERS`).
fn cipher_name(name: &str) -> Option<russh::cipher::Name> {
    use russh::cipher::*;
    [
        AES_256_GCM,
        AES_128_GCM,
        CHACHA20_POLY1305,
        AES_256_CTR,
        AES_192_CTR,
        AES_128_CTR,
    ]
    .into_iter()
    .find(|candidate| candidate.as_ref() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cipher_the_config_accepts_is_one_russh_has() {
        for name in portcullis_config::SUPPORTED_CIPHERS {
            assert!(cipher_name(name).is_some(), "{name}");
        }
        assert!(cipher_name("3des-cbc").is_none());
    }
}
