//! A real PostgreSQL 15 (Debian's server package) in a temp dir, on a free loopback port,
//! for the tests of the shared state store: `initdb` with a password (scram-sha-256) for the
//! `portcullis` role, `pg_ctl -w start`, and `pg_ctl stop -m fast` on drop.
//!
//! PostgreSQL refuses to run as root, and the tests run as root: the server runs as the
//! `postgres` system account the package creates, which owns the temp dir.

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use crate::util::{Ran, free_port, run_with_timeout};

/// Where Debian puts the server's programs.
pub const BIN: &str = "/usr/lib/postgresql/15/bin";
/// The account the server runs as.
const ACCOUNT: &str = "postgres";
/// The role the tests connect as.
pub const ROLE: &str = "portcullis";

/// A running PostgreSQL server.
pub struct Postgres {
    dir: TempDir,
    port: u16,
    password: String,
    /// More `-c` settings for the server.
    options: String,
}

impl Postgres {
    /// Initialises a cluster in a fresh temp dir and starts it; panics with the server's
    /// log if it does not come up.
    pub fn start() -> Self {
        Self::start_with(|_| String::new())
    }

    /// [`Postgres::start`] with more server settings: `options` gets the server's directory
    /// (owned by its account, to put files in) and returns `-c name=value` arguments.
    pub fn start_with(options: impl FnOnce(&Path) -> String) -> Self {
        assert!(
            Path::new(BIN).join("initdb").exists(),
            "{BIN}/initdb is missing: install postgresql-15 (tests/run.sh does)"
        );
        let dir = tempfile::Builder::new()
            .prefix("postgres-")
            .tempdir()
            .expect("temp dir");
        let password = format!("pw-{}-{}", std::process::id(), free_port());
        let password_file = dir.path().join("password");
        std::fs::write(&password_file, format!("{password}\n")).expect("password file");
        let options = options(dir.path());
        chown_to_account(dir.path());
        let data = dir.path().join("data");
        let initdb = as_account(
            Command::new(Path::new(BIN).join("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-U", ROLE, "--auth=scram-sha-256", "-E", "UTF8"])
                .args(["--no-locale", "--no-sync"])
                .arg(format!("--pwfile={}", password_file.display())),
        );
        assert_eq!(initdb.code, Some(0), "initdb failed: {initdb:?}");
        let port = free_port();
        let server = Self {
            dir,
            port,
            password,
            options,
        };
        server.resume();
        server
    }

    /// Starts the server (again, after [`Postgres::pause`]) on its port, waiting until it
    /// accepts connections.
    pub fn resume(&self) {
        let started = as_account(
            Command::new(Path::new(BIN).join("pg_ctl"))
                .arg("-D")
                .arg(self.dir.path().join("data"))
                .arg("-l")
                .arg(self.log_path())
                .args(["-w", "-t", "60", "-o"])
                .arg(format!(
                    "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off \
                     -c full_page_writes=off -c synchronous_commit=off {}",
                    self.port,
                    self.dir.path().display(),
                    self.options
                ))
                .arg("start"),
        );
        assert_eq!(
            started.code,
            Some(0),
            "pg_ctl start failed: {started:?}\n{}",
            self.log()
        );
    }

    /// Stops the server (its clients' connections drop), keeping its data for
    /// [`Postgres::resume`].
    pub fn pause(&self) {
        let stopped = as_account(
            Command::new(Path::new(BIN).join("pg_ctl"))
                .arg("-D")
                .arg(self.dir.path().join("data"))
                .args(["-w", "-t", "60", "stop", "-m", "fast"]),
        );
        assert_eq!(stopped.code, Some(0), "pg_ctl stop failed: {stopped:?}");
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `portcullis` role's password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// `postgres://portcullis@127.0.0.1:PORT/DB` (the password goes separately).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{ROLE}@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs SQL with `psql` as the `portcullis` role over TCP, with `password`.
    pub fn psql_with_password(&self, password: &str, database: &str, sql: &str) -> Ran {
        run_with_timeout(
            60,
            Command::new("psql")
                .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", ROLE])
                .args(["-d", database, "-c", sql])
                .env("PGPASSWORD", password)
                .env("PGCONNECT_TIMEOUT", "20"),
        )
        .into()
    }

    /// Runs SQL with `psql` as the `portcullis` role.
    pub fn psql(&self, database: &str, sql: &str) -> Ran {
        self.psql_with_password(&self.password, database, sql)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// What the server has logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_account(
            Command::new(Path::new(BIN).join("pg_ctl"))
                .arg("-D")
                .arg(self.dir.path().join("data"))
                .args(["-w", "-t", "60", "stop", "-m", "fast"]),
        );
    }
}

/// Runs `command` as the server's account (it refuses to run as root).
fn as_account(command: &mut Command) -> Ran {
    let mut wrapped = Command::new("runuser");
    wrapped
        .args(["-u", ACCOUNT, "--"])
        .arg(command.get_program())
        .args(command.get_args());
    run_with_timeout(120, &mut wrapped).into()
}

/// Hands the temp dir (and what is in it) to the server's account.
fn chown_to_account(dir: &Path) {
    let ran: Ran = run_with_timeout(
        30,
        Command::new("chown")
            .args(["-R", &format!("{ACCOUNT}:{ACCOUNT}")])
            .arg(dir),
    )
    .into();
    assert_eq!(ran.code, Some(0), "chown failed: {ran:?}");
}
