//! The `portcullis` command line.
//!
//! * [`serve`]: run the bastion.
//! * [`demo`]: run it on a throwaway local sshd, for a first look.
//! * [`admin`]: `check-config`, `hash-password`, `vault …`, `recordings …`, `audit …`.
//! * [`ops`] (over [`api`], the admin API client): `sessions …`, `lock`, `unlock`, and the
//!   API forms of `recordings` and `audit tail`.
//! * [`access`] (over the API too): `requests …`, `grants …`, `review`.
//!
//! Exit codes: 0 success, 1 failure, 2 a recording or log that cannot be proven intact,
//! 64 a configuration problem (nothing was started or changed).

pub mod access;
pub mod admin;
pub mod ca;
pub mod checkout;
/// The admin API's client (shared with node-to-node calls).
pub mod api {
    pub use crate::api_client::*;
}
pub mod demo;
pub mod ops;
pub mod serve;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portcullis_config::{ConfigError, LoadedConfig};

use crate::directory::Directory;

/// Exit status for configuration problems (sysexits' EX_USAGE).
pub const EXIT_CONFIG: u8 = 64;

/// Exit status when something the bastion needs is down, e.g. its database (sysexits'
/// EX_UNAVAILABLE): trying again later may work.
pub const EXIT_UNAVAILABLE: u8 = 69;

#[derive(Debug, Parser)]
#[command(
    name = "portcullis",
    version,
    about = "A privileged-access SSH session broker: just-in-time access, vaulted credentials, recorded sessions."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `--config FILE`, shared by every command that reads the configuration.
#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// The configuration file.
    #[arg(
        long,
        short,
        env = "PORTCULLIS_CONFIG",
        default_value = "portcullis.toml"
    )]
    pub config: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the bastion.
    Serve(ConfigArg),
    /// Check a configuration file and report every problem with its key and line.
    CheckConfig(ConfigArg),
    /// Run a demo: a throwaway local sshd as the target, portcullis in front of it.
    Demo(demo::DemoArgs),
    /// Read a password on stdin and print its argon2 hash for `password_hash`.
    HashPassword,
    /// Manage upstream credentials.
    #[command(subcommand)]
    Vault(admin::VaultCommand),
    /// For automation: ask for access to TARGET, wait for the approval, and check out a
    /// certificate for logging in through the bastion (through the admin API).
    Checkout(checkout::CheckoutArgs),
    /// The bastion's SSH user CA for targets with auth = "certificate": show, rotate, retire.
    #[command(subcommand)]
    Ca(ca::CaCommand),
    /// List and verify session recordings.
    #[command(subcommand)]
    Recordings(admin::RecordingsCommand),
    /// Check or follow the audit log.
    #[command(subcommand)]
    Audit(admin::AuditCommand),
    /// Live sessions (through the admin API).
    #[command(subcommand)]
    Sessions(ops::SessionsCommand),
    /// Lock a user: their live sessions end and new logins are refused (through the admin API).
    Lock {
        /// The user.
        user: String,
        /// Why (shown to the user and audited).
        #[arg(long)]
        reason: String,
        /// Lift the lock by itself after this long (e.g. 1h); default: until unlocked.
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        duration: Option<std::time::Duration>,
        #[command(flatten)]
        api: api::ApiArgs,
    },
    /// Lift a user's lock (through the admin API).
    Unlock {
        /// The user.
        user: String,
        #[command(flatten)]
        api: api::ApiArgs,
    },
    /// Just-in-time access requests: list, approve, deny (through the admin API).
    #[command(subcommand)]
    Requests(access::RequestsCommand),
    /// Just-in-time access grants: list, revoke (through the admin API).
    #[command(subcommand)]
    Grants(access::GrantsCommand),
    /// Review eligibilities by use, and acknowledge break-glass activations.
    Review(access::ReviewArgs),
}

/// Entry point shared by the `portcullis` binary (and the test harness's copy of it).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::run(&args.config),
        Command::CheckConfig(args) => match load(&args.config) {
            Ok((loaded, _)) => {
                println!("{}: OK", args.config.display());
                // What only reading files can tell (a forwarder's CA, certificate, token): a
                // warning, as the config may be checked away from the host it runs on.
                if let Err(why) = crate::forward::prepare(&loaded.config, &[]) {
                    eprintln!("portcullis: warning: {why}; `serve` will refuse to start");
                }
                let data = crate::datadir::DataDir::from_config(&loaded.config);
                for warning in data.warnings(master_key_env().is_some()) {
                    eprintln!("portcullis: warning: {warning}");
                }
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Demo(args) => demo::run(args),
        Command::HashPassword => admin::hash_password(),
        Command::Vault(command) => admin::vault(command),
        Command::Ca(command) => ca::ca(command),
        Command::Checkout(args) => checkout::checkout(args),
        Command::Recordings(command) => admin::recordings(command),
        Command::Audit(command) => admin::audit(command),
        Command::Sessions(command) => ops::sessions(command),
        Command::Lock {
            user,
            reason,
            duration,
            api,
        } => ops::lock(user, reason, duration, api),
        Command::Unlock { user, api } => ops::unlock(user, api),
        Command::Requests(command) => access::requests(command),
        Command::Grants(command) => access::grants(command),
        Command::Review(args) => access::review(args),
    }
}

/// Loads a config and parses its identities; on problems, prints them all and returns the
/// exit code to use.
pub fn load(path: &Path) -> Result<(LoadedConfig, Directory), ExitCode> {
    let loaded = portcullis_config::load_file(path).map_err(|error: ConfigError| {
        eprintln!("portcullis: {error}");
        ExitCode::from(EXIT_CONFIG)
    })?;
    match Directory::from_config(&loaded.config) {
        Ok(directory) => Ok((loaded, directory)),
        Err(problems) => {
            eprintln!("portcullis: {}", loaded.source.invalid(problems));
            Err(ExitCode::from(EXIT_CONFIG))
        }
    }
}

/// A one-line error and exit status 1.
pub fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("portcullis: {message}");
    ExitCode::FAILURE
}

/// A state store failure at start: 69 when the database is unavailable, 64 when an operator
/// must change something (credentials, TLS, settings, the binary), 1 otherwise.
pub fn fail_state(error: &portcullis_state::StateError) -> ExitCode {
    eprintln!("portcullis: {error}");
    if error.is_unavailable() {
        ExitCode::from(EXIT_UNAVAILABLE)
    } else if error.needs_operator() {
        ExitCode::from(EXIT_CONFIG)
    } else {
        ExitCode::FAILURE
    }
}

/// A start failure, with [`fail_state`]'s exit codes for the state store's.
pub fn fail_start(error: &crate::services::StartError) -> ExitCode {
    match error {
        crate::services::StartError::State(state) => fail_state(state),
        other => fail(other),
    }
}

/// Who runs this command, for the audit events it leaves: the login behind sudo if any,
/// and the host.
pub fn operator() -> String {
    let user = ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    format!("{user}@{host}")
}

/// The value of `PORTCULLIS_MASTER_KEY`, if set.
pub fn master_key_env() -> Option<String> {
    std::env::var(crate::vault::keyring::MASTER_KEY_ENV).ok()
}

/// Logs to stderr; `RUST_LOG` filters (default: info, and warnings from the SSH library).
/// Colours only when stderr is a terminal and `NO_COLOR` is unset: a log file or journald
/// must not fill up with escape sequences.
pub fn init_tracing() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,russh=warn"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_target(false)
        .try_init();
}
