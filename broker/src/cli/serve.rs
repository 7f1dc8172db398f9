//! `portcullis serve`: check the config, open the data directory, bind, serve, and on
//! SIGTERM or SIGINT drain sessions within the grace period (a second signal exits at once).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use portcullis_config::LoadedConfig;
use russh::keys::ssh_key::HashAlg;
use tokio::runtime::Runtime;
use tokio::signal::unix::{SignalKind, signal};

use crate::admin::AdminServer;
use crate::directory::Directory;
use crate::{app::Server, services::Services};

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
        let services = match Services::open(loaded.config, directory, super::master_key_env()).await
        {
            Ok(services) => Arc::new(services),
            Err(error) => return super::fail(error),
        };
        match serve(services).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => super::fail(message),
        }
    })
}

/// Binds, serves until a signal, drains.
pub async fn serve(services: Arc<Services>) -> Result<(), String> {
    serve_then(services, || {}).await
}

/// [`serve`], calling `ready` once everything listens (the demo prints its instructions
/// then, so nobody tries them too early).
pub async fn serve_then(services: Arc<Services>, ready: impl FnOnce()) -> Result<(), String> {
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let server = Server::bind(services.clone())
        .await
        .map_err(|e| e.to_string())?;
    let address = server.local_addr().map_err(|e| e.to_string())?;
    let admin = match services.config.admin.listen {
        Some(listen) => {
            Some(AdminServer::bind(services.clone(), listen).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    // Stable lines on stderr, whatever RUST_LOG says: scripts and tests wait for them.
    if let Some(admin) = &admin {
        eprintln!(
            "portcullis: admin API on https://{} (certificate {})",
            admin.local_addr().map_err(|e| e.to_string())?,
            admin.fingerprint
        );
    }
    eprintln!(
        "portcullis: listening on {address} (host key {})",
        services
            .host_key()
            .public_key()
            .fingerprint(HashAlg::Sha256)
    );
    ready();
    let accepting = tokio::spawn(server.run());
    let janitor = tokio::spawn(crate::access::jit::expire_periodically(services.clone()));
    let api = admin.map(|admin| {
        tokio::spawn(async move {
            if let Err(error) = admin.run().await {
                tracing::error!(%error, "the admin API stopped");
            }
        })
    });

    let signal_name = tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    };
    let grace = services.config.server.shutdown_grace;
    tracing::info!(signal = signal_name, grace = %humantime::format_duration(grace), "shutting down");
    let drained = tokio::select! {
        drained = services.drain(grace) => drained,
        _ = terminate.recv() => false,
        _ = interrupt.recv() => false,
    };
    let _ = accepting.await;
    let _ = janitor.await;
    if let Some(api) = api {
        let _ = api.await;
    }
    if drained {
        tracing::info!("all sessions finished; bye");
    } else {
        tracing::warn!("exiting with sessions still open");
    }
    Ok(())
}
