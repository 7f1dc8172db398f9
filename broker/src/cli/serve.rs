//! `portcullis serve`: check the config, open the data directory, bind, serve, and on
//! SIGTERM or SIGINT drain sessions within the grace period (a second signal exits at once).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use portcullis_config::LoadedConfig;
use tokio::runtime::Runtime;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::app::{self, Listening, Stop};
use crate::directory::Directory;
use crate::services::Services;

/// Loads the config — every problem is reported before anything is created or bound —
/// then starts logging and the runtime. Shared with the demo.
pub(super) fn prepare(config_path: &Path) -> Result<(Runtime, LoadedConfig, Directory), ExitCode> {
    let (loaded, directory) = super::load(config_path)?;
    super::init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| super::fail(format!("cannot start the runtime: {error}")))?;
    Ok((runtime, loaded, directory))
}

/// Runs the bastion until a signal.
pub fn run(config_path: &Path) -> ExitCode {
    let (runtime, loaded, directory) = match prepare(config_path) {
        Ok(prepared) => prepared,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let services = match Services::open(
            loaded.config,
            directory,
            super::master_key_env(),
            portcullis_policy::SystemClock::shared(),
        )
        .await
        {
            Ok(services) => Arc::new(services),
            Err(error) => return super::fail_start(&error),
        };
        match serve(services).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => super::fail(message),
        }
    })
}

/// Binds, serves until a signal, drains.
pub async fn serve(services: Arc<Services>) -> Result<(), String> {
    serve_then(services, |_| {}).await
}

/// [`serve`], calling `ready` once everything listens (the demo prints its instructions
/// then, so nobody tries them too early). SIGTERM or SIGINT drains; a second one stops
/// waiting for sessions.
pub async fn serve_then(
    services: Arc<Services>,
    ready: impl FnOnce(&Listening),
) -> Result<(), String> {
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let (stop, stopping) = watch::channel(Stop::Running);
    let signals = tokio::spawn(async move {
        for next in [Stop::Drain, Stop::Now] {
            let name = tokio::select! {
                _ = terminate.recv() => "SIGTERM",
                _ = interrupt.recv() => "SIGINT",
            };
            tracing::info!(signal = name, "signal received");
            if stop.send(next).is_err() {
                return;
            }
        }
    });
    let result = app::serve(services, ready, stopping).await;
    signals.abort();
    result
}
