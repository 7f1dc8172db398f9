//! Administrative commands that work on the data directory directly: the vault, recordings
//! and the audit log. They need the config (to find the data directory) and the master key.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand, ValueEnum};
use portcullis_config::Secret;
use portcullis_recorder::extract::extract;
use portcullis_recorder::framed::Stream;
use portcullis_recorder::{ChainKey, Verdict};
use russh::keys::ssh_key::PrivateKey;

use super::api::ApiArgs;
use super::{ConfigArg, fail, master_key_env};
use crate::audit::{AuditVerdict, verify_log};
use crate::datadir::DataDir;
use crate::services::{AUDIT_KEY_LABEL, RECORDING_KEY_LABEL};
use crate::vault::{CredentialInfo, Vault, generate_ed25519};
use portcullis_state::StateStore;

/// `portcullis vault …`
#[derive(Debug, Subcommand)]
pub enum VaultCommand {
    /// Store a credential (a private key or a password) under NAME.
    Put(PutArgs),
    /// List entries: name, kind, fingerprint, created. Never the secret.
    List(ConfigArg),
    /// Delete an entry.
    Rm {
        /// Entry name.
        name: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Rotate a vaulted credential on every target that uses it: install a new key (or set a
    /// new password), prove it, commit it, remove the old one. Nothing changes if a step fails.
    Rotate {
        /// Entry name.
        name: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Rotate the master key: rewrap the vault's data key under a new master key (64 hex
    /// digits, e.g. `openssl rand -hex 32`) and put it in the master key file.
    Rekey {
        /// File holding the new master key; default: $PORTCULLIS_NEW_MASTER_KEY.
        #[arg(long)]
        new_master_key_file: Option<PathBuf>,
        #[command(flatten)]
        config: ConfigArg,
    },
}

/// The environment variable `vault rekey` reads the new master key from.
pub const NEW_MASTER_KEY_ENV: &str = "PORTCULLIS_NEW_MASTER_KEY";

/// Key types `vault put --generate` makes.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KeyType {
    /// Ed25519.
    Ed25519,
}

/// `portcullis vault put`
#[derive(Debug, Args)]
#[group(id = "secret", required = true, multiple = false, args = ["private_key", "password_stdin", "generate"])]
pub struct PutArgs {
    /// Entry name (what targets' `credential` refers to).
    name: String,
    /// An unencrypted OpenSSH private key file.
    #[arg(long)]
    private_key: Option<PathBuf>,
    /// Read a password from the first line of stdin.
    #[arg(long)]
    password_stdin: bool,
    /// Generate a new key and print its public half to install upstream.
    #[arg(long, value_enum)]
    generate: Option<KeyType>,
    /// Overwrite an existing entry.
    #[arg(long)]
    replace: bool,
    #[command(flatten)]
    config: ConfigArg,
}

/// `portcullis recordings …`
#[derive(Debug, Subcommand)]
pub enum RecordingsCommand {
    /// List recordings, newest last (through the API with --api, else from the data directory).
    List {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Print a recording's .cast file (through the API with --api).
    Get {
        /// Recording id.
        id: String,
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Write the exact bytes of one stream of a recording without a terminal (exec, sftp,
    /// scp, rsync, git) to stdout. A recording that does not verify is refused; with --force,
    /// what verifies is written and stderr says up to where (exit 1 tampered, 2 unfinalized).
    Cat {
        /// Recording id.
        id: String,
        /// Which stream.
        #[arg(long, value_enum, default_value_t = StreamArg::Stdout)]
        stream: StreamArg,
        /// Write the part that verifies of a recording that does not.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Check a recording against its HMAC chain; exit 0 intact, 1 tampered, 2 unfinalized.
    Verify {
        /// A .cast file, or a recording id.
        recording: String,
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// A stream of a recording without a terminal.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StreamArg {
    /// What the upstream sent.
    Stdout,
    /// What the upstream sent as standard error.
    Stderr,
    /// What the client sent (recorded with `[recording] input = true`).
    Stdin,
}

impl StreamArg {
    fn stream(self) -> Stream {
        match self {
            StreamArg::Stdout => Stream::Stdout,
            StreamArg::Stderr => Stream::Stderr,
            StreamArg::Stdin => Stream::Stdin,
        }
    }
}

/// `portcullis audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the audit log's HMAC chain; exit 0 intact, 1 tampered.
    Verify(ConfigArg),
    /// Command lines (run, blocked, confirmed, held for review) or file operations (sftp,
    /// scp) from the audit log.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["command", "files"])))]
    Search {
        /// A regular expression the command line must contain a match of.
        #[arg(long)]
        command: Option<String>,
        /// File operations instead: a regular expression a path they name must contain a
        /// match of ('' for all).
        #[arg(long)]
        files: Option<String>,
        /// Only this user's.
        #[arg(long)]
        user: Option<String>,
        /// Only on this target.
        #[arg(long)]
        target: Option<String>,
        /// Only in this session.
        #[arg(long)]
        session: Option<String>,
        /// Only since this time (RFC 3339, e.g. 2026-11-22T06:00:00Z).
        #[arg(long)]
        since: Option<String>,
        /// At most this many, the newest.
        #[arg(short = 'n', long, default_value_t = 1000)]
        limit: usize,
        /// Print the events as JSON lines instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// The latest events, as JSON lines, through the admin API; -f keeps following.
    Tail {
        /// Keep printing new events as they come.
        #[arg(short, long)]
        follow: bool,
        /// Only events of this type.
        #[arg(long)]
        event: Option<String>,
        /// Only events about this user.
        #[arg(long)]
        user: Option<String>,
        /// How many events to start with.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
        #[command(flatten)]
        api: ApiArgs,
    },
}

fn print_commands(events: &[serde_json::Value], json: bool) {
    if print_json(events, json) {
        return;
    }
    // Several nodes: each line says which node logged it.
    let nodes = events.iter().any(|e| e["logged_by"].is_string());
    println!(
        "{:<24} {}{:<10} {:<10} {:<11} {:<14} LINE",
        "TIME",
        if nodes { "NODE       " } else { "" },
        "USER",
        "TARGET",
        "OUTCOME",
        "RULE"
    );
    for event in events {
        let text =
            |key: &str| crate::text::one_line(event[key].as_str().unwrap_or("-")).into_owned();
        let node = if nodes {
            format!("{:<10} ", text("logged_by"))
        } else {
            String::new()
        };
        println!(
            "{:<24} {node}{:<10} {:<10} {:<11} {:<14} {}",
            text("time"),
            text("user"),
            text("target"),
            text("outcome"),
            text("rule"),
            text("line")
        );
    }
}

/// With `json`, prints the events as JSON lines and says so.
fn print_json(events: &[serde_json::Value], json: bool) -> bool {
    if json {
        for event in events {
            println!("{event}");
        }
    }
    json
}

/// File operations as a table: time, who, where, which operation on which path, and what
/// came of it (bytes, the content's sha256 abbreviated).
fn print_transfers(events: &[serde_json::Value], json: bool) {
    if print_json(events, json) {
        return;
    }
    println!(
        "{:<24} {:<10} {:<10} {:<14} {:<8} PATH  DETAILS",
        "TIME", "USER", "TARGET", "EVENT", "OUTCOME"
    );
    for event in events {
        let text =
            |key: &str| crate::text::one_line(event[key].as_str().unwrap_or("-")).into_owned();
        let path = match (event["from"].as_str(), event["to"].as_str()) {
            (Some(from), Some(to)) => format!("{from} -> {to}"),
            _ => text("path"),
        };
        let mut details = Vec::new();
        for key in [
            "mode",
            "bytes_read",
            "bytes_written",
            "size",
            "points_to",
            "attributes",
        ] {
            match &event[key] {
                serde_json::Value::Null => {}
                serde_json::Value::String(value) => details.push(format!("{key}={value}")),
                value => details.push(format!("{key}={value}")),
            }
        }
        if let Some(sha) = event["sha256"].as_str() {
            details.push(format!("sha256={}", &sha[..sha.len().min(16)]));
        }
        println!(
            "{:<24} {:<10} {:<10} {:<14} {:<8} {}  {}",
            text("time"),
            text("user"),
            text("target"),
            text("event"),
            text("outcome"),
            crate::text::one_line(&path),
            crate::text::one_line(&details.join(" "))
        );
    }
}

/// Everything the admin commands need from the data directory, and a runtime to wait for
/// the state store on.
pub(super) struct Opened {
    runtime: tokio::runtime::Runtime,
    data: DataDir,
    directory: crate::directory::Directory,
    pub(super) vault: Vault,
    state: Arc<dyn StateStore>,
}

impl Opened {
    /// Leaves `event` for the serving bastion to audit (see `vault::events`), saying who ran
    /// the command; a failure is said, and makes the command fail although its change was
    /// made.
    pub(super) fn leave_event(&self, event: crate::audit::AuditEvent) -> ExitCode {
        let (name, mut fields) = event.into_parts();
        fields.insert("by".into(), super::operator().into());
        match self.wait(self.vault.leave_event(name, fields)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => fail(format!(
                "ALERT: the change was made but its audit event {name} could not be left for the \
                 bastion: {error}"
            )),
        }
    }

    /// Runs `future` to completion.
    pub(super) fn wait<T>(&self, future: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(future)
    }
}

pub(super) fn open(config: &ConfigArg) -> Result<Opened, ExitCode> {
    let (loaded, directory) = super::load(&config.config)?;
    let data = DataDir::from_config(&loaded.config);
    if let Err(error) = data.create() {
        return Err(fail(format!(
            "cannot create data directory {}: {error}",
            data.root().display()
        )));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(fail)?;
    let state = runtime
        .block_on(crate::state_backend::open(&loaded.config, &data))
        .map_err(|error| super::fail_state(&error))?;
    let vault = runtime
        .block_on(Vault::open(
            state.clone(),
            data.master_key_file(),
            master_key_env(),
        ))
        .map_err(fail)?;
    Ok(Opened {
        directory,
        runtime,
        data,
        vault,
        state,
    })
}

/// [`crate::audit_query::query_shared`] from the command line.
fn search_shared(
    config: &portcullis_config::Config,
    filter: &crate::audit_query::AuditFilter,
) -> Result<Vec<serde_json::Value>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let data = DataDir::from_config(config);
        let state = crate::state_backend::open(config, &data)
            .await
            .map_err(|e| e.to_string())?;
        crate::audit_query::query_shared(state.as_ref(), filter)
            .await
            .map_err(|e| e.to_string())
    })
}

/// `portcullis hash-password`
pub fn hash_password() -> ExitCode {
    let password = match read_stdin_line() {
        Ok(password) if !password.expose().is_empty() => password,
        Ok(_) => return fail("no password on stdin"),
        Err(error) => return fail(format!("cannot read stdin: {error}")),
    };
    match crate::credentials::password::hash(password.expose()) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(error) => fail(format!("cannot hash: {error}")),
    }
}

fn read_stdin_line() -> std::io::Result<Secret<String>> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let trimmed = line.trim_end_matches(['\n', '\r']).to_owned();
    zeroize::Zeroize::zeroize(&mut line);
    Ok(Secret::new(trimmed))
}

/// `portcullis vault …`
pub fn vault(command: VaultCommand) -> ExitCode {
    match command {
        VaultCommand::Put(args) => vault_put(args),
        VaultCommand::List(config) => {
            let opened = match open(&config) {
                Ok(opened) => opened,
                Err(code) => return code,
            };
            match opened.wait(opened.vault.list()) {
                Ok(entries) => {
                    print_entries(&entries);
                    ExitCode::SUCCESS
                }
                Err(error) => fail(error),
            }
        }
        VaultCommand::Rotate { name, config } => vault_rotate(&name, &config),
        VaultCommand::Rekey {
            new_master_key_file,
            config,
        } => vault_rekey(new_master_key_file.as_deref(), &config),
        VaultCommand::Rm { name, config } => {
            let opened = match open(&config) {
                Ok(opened) => opened,
                Err(code) => return code,
            };
            match opened.wait(opened.vault.remove(&name)) {
                Ok(()) => {
                    println!("removed {name}");
                    ExitCode::SUCCESS
                }
                Err(error) => fail(error),
            }
        }
    }
}

/// `portcullis vault rotate NAME`
fn vault_rotate(name: &str, config: &ConfigArg) -> ExitCode {
    let opened = match open(config) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let targets = opened.directory.targets_using(name);
    let outcome = opened.wait(crate::rotation::rotate(&opened.vault, &targets, name));
    // Every event is left; the first that could not be is the exit code.
    let left = crate::rotation::schedule::outcome_events(&outcome, "command line")
        .into_iter()
        .map(|event| opened.leave_event(event))
        .fold(ExitCode::SUCCESS, |first, code| {
            if first == ExitCode::SUCCESS {
                code
            } else {
                first
            }
        });
    match outcome {
        Ok(done) => {
            println!(
                "rotated {name} on {}{}",
                done.targets.join(", "),
                match (&done.old_fingerprint, &done.new_fingerprint) {
                    (Some(old), Some(new)) => format!(": {old} -> {new}"),
                    _ => String::new(),
                }
            );
            for target in &done.old_still_accepted {
                eprintln!(
                    "portcullis: ALERT: the old key still gets in to {target}; remove it there by hand"
                );
            }
            if done.old_still_accepted.is_empty() {
                left
            } else {
                ExitCode::FAILURE
            }
        }
        Err(failed) => fail(format!(
            "ALERT: {failed}; the old secret still works and the vault is unchanged"
        )),
    }
}

/// `portcullis vault rekey`
fn vault_rekey(new_master_key_file: Option<&Path>, config: &ConfigArg) -> ExitCode {
    use crate::vault::keyring;
    // The new key is read and checked before anything is opened or changed.
    let (text, from) = match new_master_key_file {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => (Secret::new(text), path.display().to_string()),
            Err(error) => return fail(format!("cannot read {}: {error}", path.display())),
        },
        None => match std::env::var(NEW_MASTER_KEY_ENV) {
            Ok(text) => (Secret::new(text), format!("${NEW_MASTER_KEY_ENV}")),
            Err(_) => {
                return fail(format!(
                    "no new master key: give --new-master-key-file FILE or set {NEW_MASTER_KEY_ENV} \
                     (64 hex digits, e.g. from `openssl rand -hex 32`)"
                ));
            }
        },
    };
    let Some(new) = keyring::parse_master_key(text.expose()) else {
        return fail(format!(
            "the new master key in {from} is malformed: it must be 64 hex digits (32 bytes); nothing was changed"
        ));
    };
    let opened = match open(config) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let (current, source) =
        match keyring::current_master_key(opened.data.master_key_file(), master_key_env()) {
            Ok(current) => current,
            Err(error) => return fail(error),
        };
    match opened.wait(opened.vault.rekey(&current, &source, &new)) {
        Ok(done) => {
            println!(
                "the vault's master key is now {} (was {})",
                done.new_key_id, done.old_key_id
            );
            match &done.wrote {
                Some(path) => println!("{} holds the new key", path.display()),
                None => println!(
                    "set {} to the new key before the next start of every node; the old key no \
                     longer opens the vault",
                    keyring::MASTER_KEY_ENV
                ),
            }
            opened.leave_event(
                crate::audit::AuditEvent::new("vault.rekeyed")
                    .with("old_key_id", &done.old_key_id)
                    .with("new_key_id", &done.new_key_id)
                    .with("key_file", done.wrote.map(|p| p.display().to_string())),
            )
        }
        Err(error) => fail(error),
    }
}

fn vault_put(args: PutArgs) -> ExitCode {
    // Read the secret before touching the vault, so bad input changes nothing.
    enum Input {
        Key(Box<PrivateKey>, bool),
        Password(Secret<String>),
    }
    let input = if let Some(path) = &args.private_key {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => Secret::new(text),
            Err(error) => return fail(format!("cannot read {}: {error}", path.display())),
        };
        match PrivateKey::from_openssh(text.expose()) {
            Ok(key) => Input::Key(Box::new(key), false),
            Err(error) => {
                return fail(format!(
                    "{} is not an OpenSSH private key: {error}",
                    path.display()
                ));
            }
        }
    } else if args.password_stdin {
        match read_stdin_line() {
            Ok(password) if !password.expose().is_empty() => Input::Password(password),
            Ok(_) => return fail("no password on stdin"),
            Err(error) => return fail(format!("cannot read stdin: {error}")),
        }
    } else {
        match generate_ed25519(&format!("portcullis:{}", args.name)) {
            Ok(key) => Input::Key(Box::new(key), true),
            Err(error) => return fail(error),
        }
    };
    let opened = match open(&args.config) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let result = match &input {
        Input::Key(key, _) => {
            opened.wait(opened.vault.put_private_key(&args.name, key, args.replace))
        }
        Input::Password(password) => opened.wait(opened.vault.put_password(
            &args.name,
            password,
            args.replace,
        )),
    };
    match result {
        Ok(info) => {
            if let (Input::Key(_, true), Some(public)) = (&input, &info.public_key) {
                eprintln!(
                    "stored {}; install this public key for the target's login:",
                    info.name
                );
                println!("{public}");
            } else {
                eprintln!(
                    "stored {} ({}{})",
                    info.name,
                    info.kind.as_str(),
                    info.fingerprint
                        .as_deref()
                        .map(|f| format!(", {f}"))
                        .unwrap_or_default()
                );
            }
            ExitCode::SUCCESS
        }
        Err(error) => fail(error),
    }
}

fn print_entries(entries: &[CredentialInfo]) {
    println!(
        "{:<24} {:<12} {:<52} CREATED",
        "NAME", "KIND", "FINGERPRINT"
    );
    for entry in entries {
        let created = entry.created_at;
        println!(
            "{:<24} {:<12} {:<52} {}",
            entry.name,
            entry.kind.as_str(),
            entry.fingerprint.as_deref().unwrap_or("-"),
            humantime::format_rfc3339_seconds(created)
        );
    }
}

/// `portcullis recordings …`
pub fn recordings(command: RecordingsCommand) -> ExitCode {
    match command {
        RecordingsCommand::List { api, .. } if api.url.is_some() => {
            super::ops::recordings_list(api)
        }
        RecordingsCommand::Get { id, api, .. } if api.url.is_some() => {
            super::ops::recordings_get(id, api)
        }
        RecordingsCommand::Verify { recording, api, .. } if api.url.is_some() => {
            super::ops::recordings_verify(recording, api)
        }
        RecordingsCommand::List { config, .. } => {
            let opened = match open(&config) {
                Ok(opened) => opened,
                Err(code) => return code,
            };
            list_recordings(opened.data.recordings())
        }
        RecordingsCommand::Get { id, config, .. } => {
            let Ok((loaded, _)) = super::load(&config.config) else {
                return ExitCode::from(super::EXIT_CONFIG);
            };
            let data = DataDir::from_config(&loaded.config);
            let path = resolve_recording(data.recordings(), &id);
            match std::fs::read(&path) {
                Ok(bytes) => {
                    use std::io::Write;
                    let _ = std::io::stdout().write_all(&bytes);
                    ExitCode::SUCCESS
                }
                Err(error) => fail(format!("cannot read {}: {error}", path.display())),
            }
        }
        RecordingsCommand::Cat {
            id,
            stream,
            force,
            config,
        } => {
            let opened = match open(&config) {
                Ok(opened) => opened,
                Err(code) => return code,
            };
            let path = resolve_recording(opened.data.recordings(), &id);
            let key = opened.vault.derived_key(RECORDING_KEY_LABEL);
            cat_recording(&path, &key, &opened, stream.stream(), force)
        }
        RecordingsCommand::Verify {
            recording, config, ..
        } => {
            let opened = match open(&config) {
                Ok(opened) => opened,
                Err(code) => return code,
            };
            let path = resolve_recording(opened.data.recordings(), &recording);
            let key = opened.vault.derived_key(RECORDING_KEY_LABEL);
            verify_recording(&path, &key, &opened)
        }
    }
}

/// A recording file given by path, or by id in `dir` (either format).
fn resolve_recording(dir: &Path, given: &str) -> PathBuf {
    let path = PathBuf::from(given);
    if path.exists() || given.contains('/') {
        return path;
    }
    crate::catalog::path_of(dir, given).unwrap_or_else(|| dir.join(format!("{given}.cast")))
}

/// `recordings cat`: checked like `verify` (integrity file, anchor, audit log) before a
/// byte is written.
fn cat_recording(
    path: &Path,
    key: &ChainKey,
    opened: &Opened,
    stream: Stream,
    force: bool,
) -> ExitCode {
    let verdict = match crate::evidence::verify_recording(
        path,
        key,
        opened.state.as_ref(),
        &opened.data.audit_log(),
    ) {
        Ok(verdict) => verdict,
        Err(error) => return fail(error),
    };
    if !verdict.is_intact() && !force {
        return fail(format!(
            "{}: {verdict}; nothing written (--force writes the part that verifies)",
            path.display()
        ));
    }
    let mut out = std::io::stdout().lock();
    match extract(path, key, stream, true, &mut out) {
        Ok(extracted) => match verdict {
            Verdict::Intact { .. } => ExitCode::SUCCESS,
            other => {
                eprintln!(
                    "portcullis: {}: {other}; wrote the {} bytes of {} in the {} frames that verify (up to {:.3} s into the recording)",
                    path.display(),
                    extracted.bytes,
                    stream.name(),
                    extracted.intact_frames,
                    extracted.intact_until.as_secs_f64()
                );
                ExitCode::from(if matches!(other, Verdict::Unfinalized { .. }) {
                    2
                } else {
                    1
                })
            }
        },
        Err(error) => fail(error),
    }
}

fn verify_recording(path: &Path, key: &ChainKey, opened: &Opened) -> ExitCode {
    match crate::evidence::verify_recording(
        path,
        key,
        opened.state.as_ref(),
        &opened.data.audit_log(),
    ) {
        Ok(verdict) => {
            println!("{}: {verdict}", path.display());
            match verdict {
                Verdict::Intact { .. } => ExitCode::SUCCESS,
                Verdict::Tampered { .. } => {
                    leave_tamper_alert(
                        opened,
                        format!("recording {} does not verify: {verdict}", path.display()),
                        "recording",
                        &path.display().to_string(),
                    );
                    ExitCode::FAILURE
                }
                Verdict::Unfinalized { .. } => ExitCode::from(2),
            }
        }
        Err(error) => fail(error),
    }
}

fn list_recordings(dir: &Path) -> ExitCode {
    let entries = match crate::catalog::list(dir, &crate::catalog::Filter::default()) {
        Ok(entries) => entries,
        Err(error) => return fail(format!("cannot read {}: {error}", dir.display())),
    };
    println!(
        "{:<28} {:<20} {:<12} {:<12} {:<9} {:<9} WHAT",
        "ID", "STARTED", "USER", "TARGET", "KIND", "FORMAT"
    );
    // Headers hold what clients sent (the command): escaped for the terminal.
    let shown = |text: &str| crate::text::one_line(text).into_owned();
    for entry in entries {
        let Some(started) = entry.started() else {
            println!("{:<28} (unreadable header)", shown(&entry.id));
            continue;
        };
        let facts = entry.facts();
        let what = facts.command.clone().unwrap_or_else(|| facts.kind.clone());
        println!(
            "{:<28} {:<20} {:<12} {:<12} {:<9} {:<9} {}",
            shown(&entry.id),
            humantime::format_rfc3339_seconds(started).to_string(),
            shown(&facts.user),
            shown(&facts.target),
            shown(&facts.kind),
            entry.format(),
            shown(&what)
        );
    }
    ExitCode::SUCCESS
}

/// A verify found evidence tampered with: the alert is left for the serving bastion, which
/// audits (and so forwards) it. The verdict printed and the exit code stand either way.
fn leave_tamper_alert(opened: &Opened, message: String, what: &str, path: &str) {
    let event = crate::alerts::tampered(what, message).with("path", path);
    let _ = opened.leave_event(event);
}

/// `portcullis audit …`
pub fn audit(command: AuditCommand) -> ExitCode {
    match command {
        AuditCommand::Tail {
            follow,
            event,
            user,
            lines,
            api,
        } => super::ops::audit_tail(follow, event, user, lines, api),
        AuditCommand::Search {
            command,
            files,
            user,
            target,
            session,
            since,
            limit,
            json,
            config,
        } => {
            let (flag, text) = match (&command, &files) {
                (Some(command), _) => ("--command", command),
                (None, Some(files)) => ("--files", files),
                (None, None) => return fail("give --command REGEX or --files REGEX"),
            };
            let pattern = match regex::Regex::new(text) {
                Ok(pattern) => pattern,
                Err(error) => {
                    return fail(format!("{flag} is not a valid regular expression: {error}"));
                }
            };
            let since = match since
                .as_deref()
                .map(humantime::parse_rfc3339_weak)
                .transpose()
            {
                Ok(since) => since,
                Err(_) => {
                    return fail("--since must be an RFC 3339 time like 2026-11-22T06:00:00Z");
                }
            };
            let (loaded, _) = match super::load(&config.config) {
                Ok(loaded) => loaded,
                Err(code) => return code,
            };
            let path = DataDir::from_config(&loaded.config).audit_log();
            let on_files = command.is_none();
            let filter = crate::audit_query::AuditFilter {
                since,
                event: (!on_files).then(|| "command".to_owned()),
                user,
                target,
                session,
                command: (!on_files).then(|| pattern.clone()),
                files: on_files.then_some(pattern),
                limit,
            };
            let found = if loaded.config.state.backend == portcullis_config::StateBackend::Postgres
            {
                // Several nodes: every node's events, from the shared store.
                search_shared(&loaded.config, &filter)
            } else {
                crate::audit_query::query(&path, &filter)
                    .map_err(|error| format!("cannot read {}: {error}", path.display()))
            };
            match found {
                Ok(events) if on_files => {
                    print_transfers(&events, json);
                    ExitCode::SUCCESS
                }
                Ok(events) => {
                    print_commands(&events, json);
                    ExitCode::SUCCESS
                }
                Err(error) => fail(error),
            }
        }
        AuditCommand::Verify(config) => {
            let opened = match open(&config) {
                Ok(opened) => opened,
                Err(code) => return code,
            };
            let path = opened.data.audit_log();
            // The anchor first: a bastion writing meanwhile only makes the file longer.
            let anchor = match crate::anchors::get(
                opened.state.as_ref(),
                &crate::anchors::audit(opened.state.as_ref()),
            ) {
                Ok(anchor) => anchor,
                Err(error) => return fail(error),
            };
            let key = opened.vault.derived_key(AUDIT_KEY_LABEL);
            match verify_log(&path, &key, anchor.as_ref()) {
                Ok(AuditVerdict::Intact {
                    events,
                    restarts,
                    anchored,
                }) => {
                    let end = if anchored {
                        "it ends where it was last written"
                    } else {
                        "no anchor yet to check its end against"
                    };
                    println!(
                        "{}: intact: {events} events ({restarts} chain restarts after damaged lines); {end}",
                        path.display()
                    );
                    ExitCode::SUCCESS
                }
                Ok(AuditVerdict::Tampered { line, reason }) => {
                    println!("{}: TAMPERED at line {line}: {reason}", path.display());
                    leave_tamper_alert(
                        &opened,
                        format!("the audit log does not verify at line {line}: {reason}"),
                        "audit_log",
                        &path.display().to_string(),
                    );
                    ExitCode::FAILURE
                }
                Err(error) => fail(format!("cannot read {}: {error}", path.display())),
            }
        }
    }
}
