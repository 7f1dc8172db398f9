//! Opens the state store the config names: SQLite in the data directory (the embedded
//! default, one node), or the PostgreSQL database several nodes share.

use std::sync::Arc;

use portcullis_config::{Config, StateBackend};
use portcullis_state::{PostgresSettings, PostgresStore, SqliteStore, StateError, StateStore};

use crate::datadir::DataDir;

/// The environment variable holding the database role's password (before `password_file`).
pub const STATE_PASSWORD_ENV: &str = "PORTCULLIS_STATE_PASSWORD";

/// The node's name when the config gives none (one node on SQLite needs no name).
pub const DEFAULT_NODE: &str = "local";

/// This node's name.
pub fn node_name(config: &Config) -> &str {
    config.cluster.node.as_deref().unwrap_or(DEFAULT_NODE)
}

/// Opens (and migrates) the configured store. PostgreSQL failures say what to do:
/// [`StateError::is_unavailable`] (the database is down or unreachable) or
/// [`StateError::needs_operator`] (credentials, TLS, settings, a newer schema).
pub async fn open(config: &Config, data: &DataDir) -> Result<Arc<dyn StateStore>, StateError> {
    match config.state.backend {
        StateBackend::Sqlite => Ok(Arc::new(SqliteStore::open(&data.state_db())?)),
        StateBackend::Postgres => {
            let settings = postgres_settings(config, std::env::var(STATE_PASSWORD_ENV).ok())?;
            Ok(Arc::new(PostgresStore::open(settings).await?))
        }
    }
}

/// The store's settings from the config; `password_env` (the environment's password) wins
/// over `password_file`.
fn postgres_settings(
    config: &Config,
    password_env: Option<String>,
) -> Result<PostgresSettings, StateError> {
    let state = &config.state;
    let url = state
        .url
        .clone()
        .ok_or_else(|| StateError::Settings("[state] url is missing".into()))?;
    let mut settings = PostgresSettings::new(url, node_name(config));
    settings.password = match (password_env, &state.password_file) {
        (Some(password), _) => Some(password),
        (None, Some(file)) => Some(
            std::fs::read_to_string(file)
                .map_err(|e| {
                    StateError::Settings(format!(
                        "cannot read the state database password from {}: {e}",
                        file.display()
                    ))
                })?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
        ),
        (None, None) => None,
    };
    settings.ssl_mode = state
        .sslmode
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(StateError::Settings)?;
    settings.root_cert = state.root_cert_file.clone();
    settings.client_cert = state
        .client_cert_file
        .clone()
        .zip(state.client_key_file.clone());
    settings.pool_size = state.pool_size;
    settings.connect_timeout = state.connect_timeout;
    Ok(settings)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_environment_password_wins_over_the_file_and_the_file_loses_its_newline() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let mut config = Config::default();
        config.state.backend = StateBackend::Postgres;
        config.state.url = Some("postgres://p@db/s".into());
        config.state.password_file = Some(file);
        config.state.sslmode = Some("verify-full".into());
        config.cluster.node = Some("b".into());
        let from_file = postgres_settings(&config, None).unwrap();
        assert_eq!(from_file.password.as_deref(), Some("from-file"));
        assert_eq!(from_file.node, "b");
        assert_eq!(
            from_file.ssl_mode,
            Some(portcullis_state::SslMode::VerifyFull)
        );
        let from_env = postgres_settings(&config, Some("from-env".into())).unwrap();
        assert_eq!(from_env.password.as_deref(), Some("from-env"));
        config.state.password_file = Some(dir.path().join("missing"));
        let error = postgres_settings(&config, None).unwrap_err().to_string();
        assert!(
            error.contains("cannot read the state database password"),
            "{error}"
        );
    }
}
