//! A bastion run inside the test process, on a clock the test holds: the same services,
//! front door and admin API as `portcullis serve`, so timing scenarios (a grant's end, an
//! idle timeout, a lock's duration, an approval's patience) happen when the test advances
//! the clock, not after real seconds. Its log goes to the bastion's log file, as the
//! binary's does.

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use portcullis::app::{self, Listening, Stop};
use portcullis::services::Services;
use portcullis_policy::Clock;
use tokio::sync::watch;

/// A running in-process bastion.
pub struct InProcess {
    stop: watch::Sender<Stop>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl InProcess {
    /// Opens the services for the config at `config` (its data directory as configured),
    /// serves on a runtime of its own and returns once everything listens.
    pub fn start(
        config: &Path,
        log: &Path,
        master_key: Option<String>,
        clock: Arc<dyn Clock>,
    ) -> (Self, Listening) {
        let (loaded, directory) = portcullis::cli::load(config).expect("a valid config");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let (stop, stopping) = watch::channel(Stop::Running);
        let (ready, listening) = std::sync::mpsc::channel();
        let failed = ready.clone();
        let thread = std::thread::Builder::new()
            .name("bastion".into())
            .spawn(move || {
                let subscriber = tracing_subscriber::fmt()
                    .with_env_filter("debug,russh=warn")
                    .with_writer(std::sync::Mutex::new(log))
                    .with_ansi(false)
                    .with_target(false)
                    .finish();
                let dispatch = tracing::Dispatch::new(subscriber);
                let for_workers = dispatch.clone();
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    // Each worker logs to this bastion's file (a global subscriber would
                    // mix the bastions of tests running side by side).
                    .on_thread_start(move || {
                        std::mem::forget(tracing::dispatcher::set_default(&for_workers));
                    })
                    .build()
                    .expect("a runtime");
                let _main = tracing::dispatcher::set_default(&dispatch);
                runtime.block_on(async move {
                    let services = Services::open(loaded.config, directory, master_key, clock)
                        .await
                        .map_err(|error| error.to_string());
                    let services = match services {
                        Ok(services) => Arc::new(services),
                        Err(error) => {
                            let _ = failed.send(Err(error.clone()));
                            return Err(error);
                        }
                    };
                    let result = app::serve(
                        services,
                        |listening| {
                            let _ = ready.send(Ok(listening.clone()));
                        },
                        stopping,
                    )
                    .await;
                    if let Err(error) = &result {
                        let _ = failed.send(Err(error.clone()));
                    }
                    result
                })
            })
            .expect("a thread for the bastion");
        let listening = match listening.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(listening)) => listening,
            Ok(Err(error)) => panic!("the in-process bastion did not start: {error}"),
            Err(_) => panic!("the in-process bastion did not start within 30 s"),
        };
        (
            Self {
                stop,
                thread: Some(thread),
            },
            listening,
        )
    }

    /// Drains it as SIGTERM would and waits until it has stopped.
    pub fn stop(mut self) {
        let _ = self.stop.send(Stop::Drain);
        if let Some(thread) = self.thread.take() {
            let result = thread.join().expect("the bastion thread panicked");
            assert_eq!(result, Ok(()), "the in-process bastion failed");
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        // Dropped without `stop` (a failed test): tell it not to wait for sessions.
        let _ = self.stop.send(Stop::Now);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
