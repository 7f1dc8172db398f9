//! How to reach the database: the URL, the password (never in the URL), TLS with libpq's
//! `sslmode` words, and this node's name.
//!
//! tokio-postgres understands `sslmode` only up to `require`; `verify-ca` and `verify-full`
//! are read here, so the URL may carry any of libpq's TLS parameters (`sslmode`,
//! `sslrootcert`, `sslcert`, `sslkey`) or the config file may say them.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::StateError;

/// libpq's `sslmode`, the subset that means something to a client that may verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, unverified (libpq's default).
    Prefer,
    /// TLS or nothing; the server certificate is verified only if a root certificate is
    /// given (then as `verify-ca`), as libpq does.
    Require,
    /// TLS, the server's certificate chained to the root certificate; any name.
    VerifyCa,
    /// TLS, chained to the root certificate and naming the host connected to.
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = String;
    fn from_str(word: &str) -> Result<Self, String> {
        Ok(match word {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode {other:?} is not one of disable, prefer, require, verify-ca, verify-full"
                ));
            }
        })
    }
}

impl SslMode {
    /// The word, as libpq spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// Everything needed to connect, as the config gives it.
#[derive(Clone)]
pub struct PostgresSettings {
    /// `postgres://user@host:port/db[?sslmode=…&sslrootcert=…]`; never with a password.
    pub url: String,
    /// The role's password (from `PORTCULLIS_STATE_PASSWORD` or a file).
    pub password: Option<String>,
    /// TLS; overrides the URL's `sslmode`.
    pub ssl_mode: Option<SslMode>,
    /// The CA certificate (PEM) the server's certificate must chain to.
    pub root_cert: Option<PathBuf>,
    /// A client certificate (PEM) and its key, for servers that ask for one.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// This node's name (`[cluster] node`).
    pub node: String,
    /// Connections kept open.
    pub pool_size: usize,
    /// How long a connection attempt or a wait for a free connection may take.
    pub connect_timeout: Duration,
    /// How often changes are read even without a notification (repairs a missed one).
    pub resync_every: Duration,
}

impl std::fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSettings")
            .field("url", &self.url)
            .field("ssl_mode", &self.ssl_mode)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl PostgresSettings {
    /// Settings with the defaults for what the config did not say.
    pub fn new(url: impl Into<String>, node: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            password: None,
            ssl_mode: None,
            root_cert: None,
            client_cert: None,
            node: node.into(),
            pool_size: 16,
            connect_timeout: Duration::from_secs(10),
            resync_every: Duration::from_secs(2),
        }
    }
}

/// What the URL and the settings say together: tokio-postgres's config plus TLS.
pub(crate) struct Resolved {
    pub config: tokio_postgres::Config,
    pub ssl_mode: SslMode,
    pub root_cert: Option<PathBuf>,
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// `postgres://user@host:port/db`, for messages.
    pub location: String,
}

/// Splits off the TLS parameters tokio-postgres does not know, then lets it parse the rest.
pub(crate) fn resolve(settings: &PostgresSettings) -> Result<Resolved, StateError> {
    let bad = |why: String| StateError::Settings(format!("state url {}: {why}", settings.url));
    let (base, query) = match settings.url.split_once('?') {
        Some((base, query)) => (base, query),
        None => (settings.url.as_str(), ""),
    };
    if !(base.starts_with("postgres://") || base.starts_with("postgresql://")) {
        return Err(bad("must start with postgres://".into()));
    }
    if base
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .is_some_and(|(user, _)| user.contains(':'))
    {
        return Err(bad(
            "holds a password; give it in PORTCULLIS_STATE_PASSWORD or password_file instead"
                .into(),
        ));
    }
    let mut ssl_mode = None;
    let mut root_cert = None;
    let (mut cert, mut key) = (None, None);
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "sslmode" => ssl_mode = Some(value.parse::<SslMode>().map_err(bad)?),
            "sslrootcert" => root_cert = Some(PathBuf::from(value)),
            "sslcert" => cert = Some(PathBuf::from(value)),
            "sslkey" => key = Some(PathBuf::from(value)),
            "password" => {
                return Err(bad(
                    "holds a password; give it in PORTCULLIS_STATE_PASSWORD or password_file instead"
                        .into(),
                ));
            }
            _ => kept.push(pair),
        }
    }
    let stripped = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let mut config = tokio_postgres::Config::from_str(&stripped).map_err(|e| bad(e.to_string()))?;
    if config.get_hosts().is_empty() {
        return Err(bad("names no host".into()));
    }
    if config.get_user().is_none() {
        return Err(bad("names no user (postgres://USER@host/db)".into()));
    }
    if let Some(password) = &settings.password {
        config.password(password.as_bytes());
    }
    config.connect_timeout(settings.connect_timeout);
    config.application_name(format!("portcullis {}", settings.node));
    let client_cert = match (settings.client_cert.clone(), cert.zip(key)) {
        (Some(pair), _) | (None, Some(pair)) => Some(pair),
        (None, None) => None,
    };
    let ssl_mode = settings.ssl_mode.or(ssl_mode).unwrap_or(SslMode::Prefer);
    let root_cert = settings.root_cert.clone().or(root_cert);
    if matches!(ssl_mode, SslMode::VerifyCa | SslMode::VerifyFull) && root_cert.is_none() {
        return Err(bad(format!(
            "sslmode {} needs a root certificate (sslrootcert or root_cert_file)",
            ssl_mode.as_str()
        )));
    }
    Ok(Resolved {
        config,
        ssl_mode,
        root_cert,
        client_cert,
        location: base.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn resolved(url: &str) -> Result<Resolved, StateError> {
        resolve(&PostgresSettings::new(url, "a"))
    }

    #[test]
    fn tls_words_are_read_and_taken_off_the_url() {
        let r = resolved("postgres://portcullis@db:5433/state?sslmode=verify-full&sslrootcert=/ca.pem&connect_timeout=3").unwrap();
        assert_eq!(r.ssl_mode, SslMode::VerifyFull);
        assert_eq!(r.root_cert, Some(PathBuf::from("/ca.pem")));
        assert_eq!(r.config.get_ports(), &[5433]);
        assert_eq!(r.config.get_dbname(), Some("state"));
        assert_eq!(r.location, "postgres://portcullis@db:5433/state");
        assert_eq!(
            resolved("postgres://p@db/s").unwrap().ssl_mode,
            SslMode::Prefer
        );
    }

    #[test]
    fn bad_urls_are_refused_with_a_reason() {
        for (url, why) in [
            ("mysql://p@db/s", "postgres://"),
            ("postgres://p:secret@db/s", "password"),
            ("postgres://p@db/s?password=x", "password"),
            ("postgres://p@db/s?sslmode=allow", "sslmode \"allow\""),
            ("postgres://p@db/s?sslmode=verify-ca", "root certificate"),
            ("postgres://db/s", "no user"),
        ] {
            let error = resolved(url).err().unwrap().to_string();
            assert!(error.contains(why), "{url}: {error}");
        }
    }
}
