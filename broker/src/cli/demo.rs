//! `portcullis demo`: everything needed for a first look, on this machine.
//!
//! It creates (once) a directory with a user key for "alice", a host key for a throwaway
//! OpenSSH sshd, and a config; starts that sshd on a free loopback port as the target
//! "demo" (logging in as the current account with a key that exists only in the vault);
//! then serves portcullis in front of it and prints the exact `ssh` line to try.

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
use crate::server::Broker;
use crate::vault::{Credential, VaultError, generate_ed25519};

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
    dir: PathBuf,
    config: PathBuf,
    port: u16,
    admin_port: u16,
    sshd_port: u16,
    login: String,
}

fn prepare(args: &DemoArgs) -> Result<Demo, String> {
    std::fs::create_dir_all(args.dir.join("sshd"))
        .map_err(|e| format!("cannot create {}: {e}", args.dir.display()))?;
    let dir = args
        .dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", args.dir.display()))?;
    let alice = key_file(&dir.join("alice_ed25519"), "alice@demo")?;
    let sshd_host = key_file(&dir.join("sshd/host_ed25519"), "demo sshd host key")?;
    let login = current_login();
    let sshd_port = free_port()?;
    let token = admin_token(&dir.join("admin-token"))?;
    let token_hash = crate::front::password::hash(&token)?;
    let public = |key: &PrivateKey| key.public_key().to_openssh().map_err(|e| e.to_string());

    let config = dir.join("portcullis.toml");
    let text = format!(
        r#"# Written by `portcullis demo` at each start; edit a copy for real use.
[server]
listen = "127.0.0.1:{port}"
data_dir = "data"

[recording]
input = true
on_failure = "terminate"

[[users]]
name = "alice"
public_keys = ["{alice}"]

[[targets]]
name = "demo"
address = "127.0.0.1:{sshd_port}"
login = "{login}"
credential = "{CREDENTIAL}"
host_key = "{host}"

# The same sshd under a second name, for just-in-time access: alice is only eligible for it,
# and connecting asks her for a reason and a duration first.
[[targets]]
name = "demo-jit"
address = "127.0.0.1:{sshd_port}"
login = "{login}"
credential = "{CREDENTIAL}"
host_key = "{host}"

[[roles]]
name = "demo-admins"
members = ["alice"]
targets = ["demo"]
access = "standing"
can_watch = true

[[roles]]
name = "demo-jit"
members = ["alice"]
targets = ["demo-jit"]
access = "eligible"
max_duration = "1h"
default_duration = "15m"
require_reason = true
approvals = 0

[access]
warn_before = ["5m", "1m"]

[admin]
listen = "127.0.0.1:{admin_port}"

[[admin.tokens]]
name = "demo-operator"
hash = "{token_hash}"
scopes = ["read", "operate"]
"#,
        port = args.port,
        admin_port = args.admin_port,
        alice = public(&alice)?,
        host = public(&sshd_host)?,
    );
    std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
    Ok(Demo {
        dir,
        config,
        port: args.port,
        admin_port: args.admin_port,
        sshd_port,
        login,
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

fn current_login() -> String {
    Command::new("id")
        .arg("-un")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "root".into())
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

impl Demo {
    fn run(self) -> ExitCode {
        let (loaded, directory) = match super::load(&self.config) {
            Ok(loaded) => loaded,
            Err(code) => return code,
        };
        super::init_tracing();
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => return fail(error),
        };
        runtime.block_on(async {
            let broker = match Broker::open(loaded.config, directory, super::master_key_env()) {
                Ok(broker) => Arc::new(broker),
                Err(error) => return fail(error),
            };
            let credential_key = match demo_credential(&broker) {
                Ok(public) => public,
                Err(error) => return fail(error),
            };
            let mut sshd = match self.start_sshd(&credential_key) {
                Ok(child) => child,
                Err(message) => return fail(message),
            };
            if let Err(message) = self.write_known_hosts(&broker) {
                let _ = sshd.kill();
                return fail(message);
            }
            // The admin API's certificate (created now if new), so its fingerprint can be shown.
            let fingerprint = match crate::admin::tls::load_or_create(
                None,
                None,
                &broker.config.server.data_dir,
                vec!["localhost".into(), "127.0.0.1".into()],
            ) {
                Ok(tls) => tls.fingerprint,
                Err(error) => {
                    let _ = sshd.kill();
                    return fail(error);
                }
            };
            self.print_instructions(&fingerprint);
            let result = super::serve::serve(broker).await;
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
            format!(
                "ListenAddress 127.0.0.1\nHostKey {dir}/host_ed25519\nAuthorizedKeysFile {dir}/authorized_keys\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                 UsePAM no\nStrictModes no\nSubsystem sftp internal-sftp\nPidFile {dir}/sshd.pid\nAllowUsers {login}\n",
                dir = sshd_dir.display(),
                login = self.login
            ),
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

    fn write_known_hosts(&self, broker: &Broker) -> Result<(), String> {
        let host = broker
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

    fn print_instructions(&self, fingerprint: &str) {
        let dir = self.dir.display();
        let ssh = format!(
            "ssh -F /dev/null -o IdentitiesOnly=yes -i {dir}/alice_ed25519 -o UserKnownHostsFile={dir}/known_hosts -p {}",
            self.port
        );
        eprintln!(
            "\nportcullis demo: target \"demo\" is a throwaway sshd on 127.0.0.1:{sshd} (logging in as {login} with a key only the vault holds).\n\
             Try, in another terminal:\n\n  {ssh} alice+demo@127.0.0.1\n\n\
             Also: `{ssh} alice+demo@127.0.0.1 'uname -a'`, and `{ssh} alice@127.0.0.1` for the bastion's own menu.\n\
             Just-in-time access: `{ssh} alice+demo-jit@127.0.0.1` asks for a reason and a duration, then lets alice in until it runs out.\n\
             Recordings: {dir}/data/recordings (asciinema play FILE). Audit log: {dir}/data/audit.jsonl.\n\n\
             Security's view in a browser: https://127.0.0.1:{admin}/ (self-signed certificate {fingerprint}),\n\
             signing in with the token in {dir}/admin-token. Or through the CLI (list, watch, kill):\n\n  \
             export PORTCULLIS_API=https://127.0.0.1:{admin} PORTCULLIS_TOKEN=$(cat {dir}/admin-token) PORTCULLIS_API_FINGERPRINT={fingerprint}\n  \
             portcullis sessions list; portcullis sessions watch ID; portcullis sessions kill ID --reason \"demo\"\n\n\
             (`cargo run -p portcullis --` in place of `portcullis` if it is not installed; alice may also `{ssh} alice@127.0.0.1 watch ID`.)\n\
             Config: {dir}/portcullis.toml. Ctrl-C stops everything.\n",
            sshd = self.sshd_port,
            login = self.login,
            admin = self.admin_port,
        );
    }
}

/// The demo target's key: kept in the vault across runs, created on the first.
fn demo_credential(broker: &Broker) -> Result<String, VaultError> {
    let key = match broker.vault.get(CREDENTIAL) {
        Ok(Credential::PrivateKey(key)) => key.public_key().clone(),
        Ok(Credential::Password(_)) | Err(VaultError::NotFound { .. }) => {
            let key = generate_ed25519("portcullis:demo")?;
            broker.vault.put_private_key(CREDENTIAL, &key, true)?;
            key.public_key().clone()
        }
        Err(error) => return Err(error),
    };
    key.to_openssh().map_err(|e| VaultError::BadKey {
        reason: e.to_string(),
    })
}
