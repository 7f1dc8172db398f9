//! `portcullis demo`: everything needed for a first look, on this machine, safely.
//!
//! It creates (once) a directory with a user key for "alice", a host key for a throwaway
//! OpenSSH sshd, a config with example command rules, and an `ssh_config`; starts that sshd
//! on a free loopback port as the target "demo", logging in as an unprivileged account
//! (`account`: never root) with a key that exists only in the vault; then serves portcullis
//! in front of it and prints the one `ssh` line to try.
//!
//! Instructions go to stdout, logs to stderr.
//!
//! * `account`: who the target logs in as.
//! * `files`: the configs it writes.

mod account;
mod files;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use russh::keys::ssh_key::{LineEnding, PrivateKey};

use super::fail;
use crate::datadir::write_private_file;
use crate::services::Services;
use crate::vault::{Credential, VaultError, generate_ed25519};
use account::{Account, AccountOrigin};

/// `portcullis demo` options.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory for the demo's keys, config and data.
    #[arg(long, default_value = "portcullis-demo")]
    dir: PathBuf,
    /// Port for the bastion.
    #[arg(long, default_value_t = 2222)]
    port: u16,
    /// Port for the admin API.
    #[arg(long, default_value_t = 8443)]
    admin_port: u16,
}

const SSHD: &str = "/usr/sbin/sshd";
const CREDENTIAL: &str = "demo";

/// Runs the demo until Ctrl-C.
pub fn run(args: DemoArgs) -> ExitCode {
    if !Path::new(SSHD).exists() {
        return fail(format!(
            "the demo runs OpenSSH's sshd as its target, and {SSHD} is missing (Debian/Ubuntu: apt-get install openssh-server)"
        ));
    }
    match prepare(&args) {
        Ok(demo) => demo.run(),
        Err(message) => fail(message),
    }
}

struct Demo {
    /// The directory as the user named it (relative paths stay relative in what is printed).
    shown_dir: PathBuf,
    dir: PathBuf,
    config: PathBuf,
    port: u16,
    admin_port: u16,
    sshd_port: u16,
    account: Account,
}

fn prepare(args: &DemoArgs) -> Result<Demo, String> {
    std::fs::create_dir_all(args.dir.join("sshd"))
        .map_err(|e| format!("cannot create {}: {e}", args.dir.display()))?;
    let dir = args
        .dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", args.dir.display()))?;
    let account = account::prepare(&dir)?;
    let alice = key_file(&dir.join("alice_ed25519"), "alice@demo")?;
    let sshd_host = key_file(&dir.join("sshd/host_ed25519"), "demo sshd host key")?;
    let sshd_port = free_port()?;
    let token = admin_token(&dir.join("admin-token"))?;
    let token_hash = crate::credentials::password::hash(&token)?;
    let public = |key: &PrivateKey| key.public_key().to_openssh().map_err(|e| e.to_string());
    let connect_command = format!("ssh -F {} {{login}}", args.dir.join("ssh_config").display());

    let config = dir.join("portcullis.toml");
    let text = files::bastion_config(&files::BastionConfig {
        port: args.port,
        admin_port: args.admin_port,
        sshd_port,
        alice_key: &public(&alice)?,
        sshd_host_key: &public(&sshd_host)?,
        login: &account.name,
        credential: CREDENTIAL,
        token_hash: &token_hash,
        connect_command: &connect_command,
    });
    std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
    let ssh_config = dir.join("ssh_config");
    std::fs::write(&ssh_config, files::ssh_config(args.port, &dir))
        .map_err(|e| format!("{}: {e}", ssh_config.display()))?;
    Ok(Demo {
        shown_dir: args.dir.clone(),
        dir,
        config,
        port: args.port,
        admin_port: args.admin_port,
        sshd_port,
        account,
    })
}

/// The demo's admin API token: random, kept in a file (0600) across runs.
fn admin_token(path: &Path) -> Result<String, String> {
    if let Ok(token) = std::fs::read_to_string(path) {
        return Ok(token.trim().to_owned());
    }
    let bytes = crate::vault::seal::random_key().map_err(|_| "no randomness".to_owned())?;
    let token = hex::encode(&bytes[..24]);
    write_private_file(path, format!("{token}\n").as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(token)
}

/// Loads a private key, creating it first if the file does not exist.
fn key_file(path: &Path, comment: &str) -> Result<PrivateKey, String> {
    if let Ok(text) = std::fs::read_to_string(path) {
        return PrivateKey::from_openssh(&text).map_err(|e| format!("{}: {e}", path.display()));
    }
    let key = generate_ed25519(comment).map_err(|e| e.to_string())?;
    let text = key.to_openssh(LineEnding::LF).map_err(|e| e.to_string())?;
    write_private_file(path, text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
    let public = key.public_key().to_openssh().map_err(|e| e.to_string())?;
    std::fs::write(path.with_extension("pub"), format!("{public}\n"))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(key)
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

/// `cat`, by absolute path (sshd insists on one for AuthorizedKeysCommand).
fn cat_binary() -> Result<PathBuf, String> {
    ["/usr/bin/cat", "/bin/cat"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| "cannot find cat in /usr/bin or /bin".to_owned())
}

impl Demo {
    fn run(self) -> ExitCode {
        let (runtime, loaded, directory) = match super::serve::prepare(&self.config) {
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
            let credential_key = match demo_credential(&services).await {
                Ok(public) => public,
                Err(error) => return fail(error),
            };
            let mut sshd = match self.start_sshd(&credential_key) {
                Ok(child) => child,
                Err(message) => return fail(message),
            };
            if let Err(message) = self.write_known_hosts(&services) {
                let _ = sshd.kill();
                return fail(message);
            }
            // The admin API's certificate (created now if new), so its fingerprint can be shown.
            let fingerprint = match crate::admin::tls::load_or_create(
                None,
                None,
                &services.config.server.data_dir,
                vec!["localhost".into(), "127.0.0.1".into()],
            ) {
                Ok(tls) => tls.fingerprint,
                Err(error) => {
                    let _ = sshd.kill();
                    return fail(error);
                }
            };
            let result = super::serve::serve_then(services, |_| {
                self.print_instructions(&fingerprint);
            })
            .await;
            let _ = sshd.kill();
            let _ = sshd.wait();
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => fail(message),
            }
        })
    }

    fn start_sshd(&self, credential_public_key: &str) -> Result<Child, String> {
        let sshd_dir = self.dir.join("sshd");
        std::fs::write(
            sshd_dir.join("authorized_keys"),
            format!("{credential_public_key}\n"),
        )
        .map_err(|e| e.to_string())?;
        let config = sshd_dir.join("sshd_config");
        std::fs::write(
            &config,
            files::sshd_config(&sshd_dir, &self.account, &cat_binary()?),
        )
        .map_err(|e| e.to_string())?;
        // sshd needs its privilege-separation directory when run as root.
        let _ = std::fs::create_dir_all("/run/sshd");
        let mut child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .args(["-p", &self.sshd_port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {SSHD}: {e}"))?;
        let Some(stderr) = child.stderr.take() else {
            return Err("sshd has no stderr".into());
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut said = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Server listening on") {
                    let _ = ready_tx.send(Ok(()));
                } else if said.len() < 20 {
                    said.push(line);
                }
            }
            let _ = ready_tx.send(Err(said.join("\n")));
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        match ready_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Ok(())) => Ok(child),
            Ok(Err(output)) => {
                let _ = child.kill();
                Err(format!("the demo sshd did not start:\n{output}"))
            }
            Err(_) => {
                let _ = child.kill();
                Err("the demo sshd did not start within 10 s".into())
            }
        }
    }

    fn write_known_hosts(&self, services: &Services) -> Result<(), String> {
        let host = services
            .host_key()
            .public_key()
            .to_openssh()
            .map_err(|e| e.to_string())?;
        std::fs::write(
            self.dir.join("known_hosts"),
            format!("[127.0.0.1]:{} {host}\n", self.port),
        )
        .map_err(|e| e.to_string())
    }

    /// What to do next, on stdout (the logs go to stderr).
    fn print_instructions(&self, fingerprint: &str) {
        let shown = self.shown_dir.display();
        let ssh = format!("ssh -F {shown}/ssh_config");
        let sftp = format!("sftp -F {shown}/ssh_config");
        let account = match &self.account.origin {
            AccountOrigin::Invoker => format!(
                "as you ({}; the demo has no rights you do not have)",
                self.account.name
            ),
            AccountOrigin::Created { home, new } => format!(
                "as {}, an unprivileged account the demo {}\n(no password, no sudo; home {})",
                self.account.name,
                if *new {
                    "has created"
                } else {
                    "created earlier"
                },
                home.display()
            ),
        };
        println!(
            "\nportcullis demo is running. In another terminal, from this directory:\n\n    \
             {ssh} alice+demo\n\n\
             The target \"demo\" is a throwaway sshd on 127.0.0.1:{sshd}; portcullis logs in there\n\
             {account}, with a key only its vault holds.\n\n\
             Things to try, all harmless:\n  \
             on the target:  touch forbidden      stopped by the rule demo-forbidden before it runs\n  \
             {blank}  systemctl restart x  the rule service-restart asks you to confirm first\n  \
             files:          {sftp} alice+demo, then put {shown}/ssh_config forbidden.txt\n  \
             {blank}  permission denied by the rule demo-forbidden-file; other puts work\n  \
             just in time:   {ssh} alice+demo-jit\n  \
             bastion menu:   {ssh} alice\n\n\
             Recordings: {shown}/data/recordings (asciinema play FILE)\n\
             Audit log:  {shown}/data/audit.jsonl\n\
             Security's console: https://127.0.0.1:{admin}/ (certificate {fingerprint}),\n\
             signing in with the token in {shown}/admin-token. Config: {shown}/portcullis.toml.\n\
             Ctrl-C stops everything.\n",
            sshd = self.sshd_port,
            admin = self.admin_port,
            blank = " ".repeat(14),
        );
    }
}

/// The demo target's key: kept in the vault across runs, created on the first.
async fn demo_credential(services: &Services) -> Result<String, VaultError> {
    let key = match services.vault.get(CREDENTIAL).await {
        Ok(Credential::PrivateKey(key)) => key.public_key().clone(),
        Ok(Credential::Password(_)) | Err(VaultError::NotFound { .. }) => {
            let key = generate_ed25519("portcullis:demo")?;
            services
                .vault
                .put_private_key(CREDENTIAL, &key, true)
                .await?;
            key.public_key().clone()
        }
        Err(error) => return Err(error),
    };
    key.to_openssh().map_err(|e| VaultError::BadKey {
        reason: e.to_string(),
    })
}
