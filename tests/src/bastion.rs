//! The bastion under test: the real `portcullis` binary with a config written for the test,
//! on a port the OS picks, its stderr (at debug level) kept in a log file.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;

use portcullis_policy::Clock;

use crate::client::SshCommand;
use crate::in_process::InProcess;
use crate::keys::Keypair;
use crate::sshd::Sshd;
use crate::util::{Ran, portcullis_bin, run_with_timeout, wait_for};

/// A config being written for a test.
#[derive(Debug, Default, Clone)]
pub struct ConfigText {
    server_extra: String,
    body: String,
}

impl ConfigText {
    /// Adds `key = value` lines to `[server]`.
    pub fn server(&mut self, lines: &str) -> &mut Self {
        self.server_extra.push_str(lines);
        self.server_extra.push('\n');
        self
    }

    /// A user with public keys.
    pub fn user(&mut self, name: &str, keys: &[&str]) -> &mut Self {
        let keys: Vec<String> = keys.iter().map(|k| format!("{k:?}")).collect();
        let _ = write!(
            self.body,
            "\n[[users]]\nname = {name:?}\npublic_keys = [{}]\n",
            keys.join(", ")
        );
        self
    }

    /// A target behind `sshd`.
    pub fn target(&mut self, name: &str, sshd: &Sshd, login: &str, credential: &str) -> &mut Self {
        self.target_at(name, &sshd.address(), sshd.host_key(), login, credential)
    }

    /// A target at any address with any pinned key.
    pub fn target_at(
        &mut self,
        name: &str,
        address: &str,
        host_key: &str,
        login: &str,
        credential: &str,
    ) -> &mut Self {
        let _ = write!(
            self.body,
            "\n[[targets]]\nname = {name:?}\naddress = {address:?}\nlogin = {login:?}\ncredential = {credential:?}\nhost_key = {host_key:?}\n"
        );
        self
    }

    /// A target behind `sshd` logged in to with per-login certificates from the bastion's CA.
    pub fn certificate_target(&mut self, name: &str, sshd: &Sshd, login: &str) -> &mut Self {
        let _ = write!(
            self.body,
            "\n[[targets]]\nname = {name:?}\naddress = {:?}\nlogin = {login:?}\nauth = \"certificate\"\nhost_key = {:?}\n",
            sshd.address(),
            sshd.host_key()
        );
        self
    }

    /// A role with standing access.
    pub fn role(&mut self, name: &str, members: &[&str], targets: &[&str]) -> &mut Self {
        let _ = write!(
            self.body,
            "\n[[roles]]\nname = {name:?}\nmembers = [{}]\ntargets = [{}]\naccess = \"standing\"\n",
            toml_list(members),
            toml_list(targets)
        );
        self
    }

    /// A role whose members are eligible for `targets`; `settings` are more `key = value`
    /// lines for it (max_duration is required).
    pub fn eligible(
        &mut self,
        name: &str,
        members: &[&str],
        targets: &[&str],
        settings: &str,
    ) -> &mut Self {
        let _ = write!(
            self.body,
            "\n[[roles]]\nname = {name:?}\nmembers = [{}]\ntargets = [{}]\naccess = \"eligible\"\n{settings}\n",
            toml_list(members),
            toml_list(targets)
        );
        self
    }

    /// Turns the admin API on (on a port the OS picks) with one token per (name, token, scopes).
    pub fn admin(&mut self, tokens: &[(&str, &str, &[&str])]) -> &mut Self {
        self.body.push_str("\n[admin]\nlisten = \"127.0.0.1:0\"\n");
        for (name, token, scopes) in tokens {
            let hash = portcullis::credentials::password::hash(token).expect("hash a token");
            let scopes: Vec<String> = scopes.iter().map(|s| format!("{s:?}")).collect();
            let _ = write!(
                self.body,
                "\n[[admin.tokens]]\nname = {name:?}\nhash = {hash:?}\nscopes = [{}]\n",
                scopes.join(", ")
            );
        }
        self
    }

    /// Any other TOML (sections after `[server]`).
    pub fn raw(&mut self, toml: &str) -> &mut Self {
        self.body.push('\n');
        self.body.push_str(toml);
        self.body.push('\n');
        self
    }

    fn render(&self) -> String {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"data\"\n{}\n{}",
            self.server_extra, self.body
        )
    }
}

/// `"a", "b"`: the inside of a TOML array of strings.
fn toml_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("{i:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A bastion's directory, config and (when started) process.
pub struct Bastion {
    dir: TempDir,
    child: Option<Child>,
    in_process: Option<InProcess>,
    address: Option<SocketAddr>,
    api: Option<(SocketAddr, String)>,
    env: Vec<(String, String)>,
}

impl Bastion {
    /// Writes the config into a fresh directory; nothing runs yet.
    pub fn new(config: &ConfigText) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("bastion-")
            .tempdir()
            .expect("temp dir");
        std::fs::write(dir.path().join("portcullis.toml"), config.render()).expect("write config");
        Self {
            dir,
            child: None,
            in_process: None,
            address: None,
            api: None,
            env: Vec::new(),
        }
    }

    /// Sets an environment variable for every command run against this bastion.
    pub fn env(&mut self, key: &str, value: &str) -> &mut Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The bastion's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Its config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("portcullis.toml")
    }

    /// Its data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The log of its stderr.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("portcullis.log")
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// A `portcullis` command against this bastion's config.
    pub fn command(&self) -> Command {
        let mut command = Command::new(portcullis_bin());
        command.env("PORTCULLIS_CONFIG", self.config_path());
        command.env("RUST_LOG", "debug");
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command
    }

    /// Runs `portcullis ARGS` to completion.
    pub fn cli(&self, args: &[&str]) -> Ran {
        run_with_timeout(60, self.command().args(args)).into()
    }

    /// `portcullis vault put NAME --generate ed25519`: returns the public key to install.
    pub fn vault_generate(&self, name: &str) -> String {
        let ran = self.cli(&["vault", "put", name, "--generate", "ed25519"]);
        assert_eq!(ran.code, Some(0), "vault put failed: {ran:?}");
        ran.stdout.trim().to_owned()
    }

    /// `portcullis vault put NAME --password-stdin`.
    pub fn vault_password(&self, name: &str, password: &str) {
        use std::io::Write;
        let mut child = self
            .command()
            .args(["vault", "put", name, "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run vault put");
        writeln!(child.stdin.as_mut().expect("stdin"), "{password}").expect("write password");
        let output = child.wait_with_output().expect("vault put");
        assert!(output.status.success(), "vault put failed: {output:?}");
    }

    /// A vault credential for `sshd`: generated by portcullis, installed in sshd.
    pub fn vault_key_for(&self, name: &str, sshd: &Sshd) {
        let public = self.vault_generate(name);
        sshd.authorize(&public);
    }

    /// Stages `key` as the replacement of vault entry `name`, as a credential rotation does
    /// before it installs it, longer ago than a rotation lasts (what a rotation cut off after
    /// installing leaves behind).
    pub async fn stage_in_vault(&self, name: &str, key: russh::keys::PrivateKey) {
        let store: Arc<dyn portcullis_state::StateStore> = Arc::new(
            portcullis_state::SqliteStore::open(&self.data_dir().join("state.db"))
                .expect("open the state database"),
        );
        let vault = portcullis::vault::Vault::open(
            store.clone(),
            &self.data_dir().join("master.key"),
            None,
        )
        .await
        .expect("open the vault");
        vault
            .stage(
                name,
                &portcullis::vault::Credential::PrivateKey(Arc::new(key)),
            )
            .await
            .expect("stage");
        self.age_staged(name).await;
    }

    /// Notes `public_key` (a line) as a replaced key of vault entry `name` not yet removed
    /// from the targets, as a rotation does just before it commits.
    pub async fn retire_in_vault(&self, name: &str, public_key: &str) {
        let store: Arc<dyn portcullis_state::StateStore> = Arc::new(
            portcullis_state::SqliteStore::open(&self.data_dir().join("state.db"))
                .expect("open the state database"),
        );
        let vault =
            portcullis::vault::Vault::open(store, &self.data_dir().join("master.key"), None)
                .await
                .expect("open the vault");
        let key = russh::keys::PublicKey::from_openssh(public_key).expect("a public key");
        vault.retire(name, &key).await.expect("retire");
    }

    /// Makes the secret staged for vault entry `name` older than a rotation's lease, as if
    /// that much time had passed since the rotation that staged it was cut off.
    pub async fn age_staged(&self, name: &str) {
        let store = portcullis_state::SqliteStore::open(&self.data_dir().join("state.db"))
            .expect("open the state database");
        let staged = format!("@staged.{name}");
        let mut row = portcullis_state::StateStore::credential(&store, &staged)
            .await
            .expect("read")
            .expect("a staged secret");
        row.created_at -= portcullis::rotation::LEASE + Duration::from_secs(1);
        assert!(
            portcullis_state::StateStore::put_credential(&store, row, true)
                .await
                .expect("age the row")
        );
    }

    /// Starts `portcullis serve` and waits until it listens.
    pub fn start(&mut self) -> &mut Self {
        assert!(self.child.is_none(), "already started");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let before = self.log().len();
        let child = self
            .command()
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start portcullis");
        self.child = Some(child);
        let address = wait_for(Duration::from_secs(30), || {
            let log = self.log();
            let line = log[before..]
                .lines()
                .find(|l| l.starts_with("portcullis: listening on "))?;
            line.trim_start_matches("portcullis: listening on ")
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        });
        let Some(address) = address else {
            let _ = self.child.as_mut().map(Child::kill);
            panic!("portcullis did not start:\n{}", self.log());
        };
        self.address = Some(address);
        let log = self.log();
        self.api = log[before..]
            .lines()
            .find_map(|l| l.strip_prefix("portcullis: admin API on https://"))
            .and_then(|rest| {
                let (address, rest) = rest.split_once(' ')?;
                let fingerprint = rest.strip_prefix("(certificate ")?.strip_suffix(')')?;
                Some((address.parse().ok()?, fingerprint.to_owned()))
            });
        self.write_known_hosts();
        self
    }

    /// Starts the bastion inside this process on `clock` (see [`crate::in_process`]) and
    /// waits until it listens. Time-driven behaviour then follows the clock the test holds.
    pub fn start_on(&mut self, clock: Arc<dyn Clock>) -> &mut Self {
        assert!(
            self.child.is_none() && self.in_process.is_none(),
            "already started"
        );
        let master_key = self
            .env
            .iter()
            .find(|(key, _)| key == "PORTCULLIS_MASTER_KEY")
            .map(|(_, value)| value.clone());
        let (running, listening) =
            InProcess::start(&self.config_path(), &self.log_path(), master_key, clock);
        self.in_process = Some(running);
        self.address = Some(listening.ssh);
        self.api = listening.admin;
        self.write_known_hosts();
        self
    }

    fn write_known_hosts(&self) {
        std::fs::write(
            self.known_hosts(),
            format!(
                "[127.0.0.1]:{} {}\n",
                self.address().port(),
                self.host_public_key()
            ),
        )
        .expect("known_hosts");
    }

    /// The bastion's host key, as an OpenSSH public key line.
    pub fn host_public_key(&self) -> String {
        let output = Command::new("ssh-keygen")
            .arg("-y")
            .arg("-f")
            .arg(self.data_dir().join("host_ed25519"))
            .output()
            .expect("ssh-keygen -y");
        assert!(output.status.success(), "cannot read the bastion host key");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// A custom SSH client connected to this bastion (host key pinned), not yet logged in.
    pub async fn raw(&self) -> crate::raw::RawSsh {
        self.raw_from([127, 0, 0, 1]).await
    }

    /// [`Bastion::raw`] from another loopback address.
    pub async fn raw_from(&self, source: [u8; 4]) -> crate::raw::RawSsh {
        crate::raw::RawSsh::connect_from(source.into(), self.address(), &self.host_public_key())
            .await
            .expect("connect to the bastion")
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address.expect("bastion not started")
    }

    /// The admin API's URL and certificate fingerprint (when `[admin]` is on).
    pub fn api(&self) -> (String, String) {
        let (address, fingerprint) = self.api.clone().expect("the admin API is not on");
        (format!("https://{address}"), fingerprint)
    }

    /// `portcullis ARGS --api … --token TOKEN --fingerprint …`, to run.
    pub fn api_cli(&self, token: &str, args: &[&str]) -> Ran {
        run_with_timeout(60, &mut self.api_command(token, args)).into()
    }

    /// `portcullis ARGS --api … --token TOKEN --fingerprint …`, to start (a follower).
    pub fn api_command(&self, token: &str, args: &[&str]) -> Command {
        let (url, fingerprint) = self.api();
        let mut command = self.command();
        command.args(args).args([
            "--api",
            &url,
            "--token",
            token,
            "--fingerprint",
            &fingerprint,
        ]);
        command
    }

    /// A raw API request: status and JSON body (`Value::Null` if the body is not JSON).
    pub fn api_request(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let (status, body) = self.api_raw(token, method, path, body);
        let json = serde_json::from_slice(&body).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&body).into_owned())
        });
        (status, json)
    }

    /// The markers of the first sealed recording of a channel without a terminal (start,
    /// end, file operations), as the API lists them, read with `token`.
    pub fn sealed_recording_markers(&self, token: &str) -> Vec<String> {
        let ended = self.wait_for_audit("channel.end", |e| e["recording_seal"].as_str().is_some());
        let recording = ended["recording"].as_str().expect("a recording id");
        let (status, survey) = self.api_request(
            token,
            "GET",
            &format!("/api/v1/recordings/{recording}/streams"),
            None,
        );
        assert_eq!(status, 200, "{survey}");
        survey["markers"]
            .as_array()
            .expect("markers")
            .iter()
            .map(|m| m["text"].as_str().expect("a marker's text").to_owned())
            .collect()
    }

    /// A GET through the admin API whose answer is bytes (a recording's stream).
    pub fn api_bytes(&self, token: &str, path: &str) -> (u16, Vec<u8>) {
        self.api_raw(token, "GET", path, None)
    }

    fn api_raw(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, Vec<u8>) {
        let (url, fingerprint) = self.api();
        let args = portcullis::cli::api::ApiArgs {
            url: Some(url),
            token: Some(token.to_owned()),
            fingerprint: Some(fingerprint),
            ca: None,
        };
        let client = portcullis::cli::api::ApiClient::new(&args).expect("API client");
        let method = method.parse().expect("HTTP method");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (status, body) = runtime
            .block_on(client.request(method, path, body))
            .expect("an answer from the API");
        (status.as_u16(), body.to_vec())
    }

    /// A known_hosts file pinning the bastion's host key.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// An ssh client logging in as `login` with `key`.
    pub fn ssh(&self, key: &Keypair, login: &str) -> SshCommand {
        SshCommand::new(self.address(), &self.known_hosts(), Some(key), login)
    }

    /// Its process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends SIGTERM and waits for it to exit; returns its exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        if let Some(running) = self.in_process.take() {
            running.stop();
            return Some(0);
        }
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let exited = wait_for(Duration::from_secs(30), || child.try_wait().ok().flatten());
        match exited {
            Some(status) => status.code(),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "portcullis did not exit within 30 s of SIGTERM:\n{}",
                    self.log()
                );
            }
        }
    }

    /// Sends SIGKILL (no chance to clean up) and waits for the process to be gone.
    pub fn kill_hard(&mut self) {
        let mut child = self.child.take().expect("a running bastion");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// The audit log's events, parsed (a line still being written is left for next time).
    pub fn audit(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.data_dir().join("audit.jsonl")).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit lines are JSON"))
            .collect()
    }

    /// Audit events of one type.
    pub fn audit_events(&self, event: &str) -> Vec<serde_json::Value> {
        self.audit()
            .into_iter()
            .filter(|e| e["event"] == event)
            .collect()
    }

    /// Waits until an audit event of this type satisfying `matches` appears.
    pub fn wait_for_audit(
        &self,
        event: &str,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        wait_for(Duration::from_secs(20), || {
            self.audit_events(event).into_iter().find(|e| matches(e))
        })
        .unwrap_or_else(|| panic!("no {event} audit event; log:\n{:#?}", self.audit()))
    }

    /// Waits for an `alert` event of this kind (`host_key_mismatch`, ...) and checks it has
    /// a severity and a message.
    pub fn wait_for_alert(&self, alert: &str) -> serde_json::Value {
        let event = self.wait_for_audit("alert", |e| e["alert"] == alert);
        assert!(
            matches!(
                event["severity"].as_str(),
                Some("critical" | "error" | "warning")
            ),
            "{event}"
        );
        assert!(
            !event["message"].as_str().unwrap_or_default().is_empty(),
            "{event}"
        );
        event
    }

    /// The recording files (terminals' .cast, other channels' .rec), oldest first.
    pub fn recordings(&self) -> Vec<PathBuf> {
        let mut casts: Vec<PathBuf> = std::fs::read_dir(self.data_dir().join("recordings"))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "cast" || e == "rec"))
                    .collect()
            })
            .unwrap_or_default();
        casts.sort();
        casts
    }
}

impl Drop for Bastion {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A bastion in front of one sshd, with user alice (key `alice`) allowed to reach target
/// `web01` as `root` through role `web-admins`: the setting most scenarios start from.
pub struct World {
    /// Scratch directory for keys and files.
    pub scratch: TempDir,
    /// The upstream.
    pub sshd: Sshd,
    /// alice's key.
    pub alice: Keypair,
    /// The bastion.
    pub bastion: Bastion,
}

impl World {
    /// Builds and starts it; `extra` may add to the config before start.
    pub fn start(extra: impl FnOnce(&mut ConfigText, &Sshd, &TempDir)) -> Self {
        let mut world = Self::build(extra);
        world.bastion.start();
        world
    }

    /// Builds it and starts the bastion in this process on `clock` (see
    /// [`Bastion::start_on`]).
    pub fn start_on(
        clock: Arc<dyn Clock>,
        extra: impl FnOnce(&mut ConfigText, &Sshd, &TempDir),
    ) -> Self {
        let mut world = Self::build(extra);
        world.bastion.start_on(clock);
        world
    }

    fn build(extra: impl FnOnce(&mut ConfigText, &Sshd, &TempDir)) -> Self {
        let scratch = tempfile::Builder::new()
            .prefix("world-")
            .tempdir()
            .expect("temp dir");
        let sshd = Sshd::start();
        let alice = Keypair::generate(scratch.path(), "alice");
        let mut config = ConfigText::default();
        config
            .user("alice", &[&alice.public])
            .target("web01", &sshd, "root", "web01")
            .role("web-admins", &["alice"], &["web*"]);
        extra(&mut config, &sshd, &scratch);
        let bastion = Bastion::new(&config);
        bastion.vault_key_for("web01", &sshd);
        Self {
            scratch,
            sshd,
            alice,
            bastion,
        }
    }

    /// alice's ssh to `login`.
    pub fn alice(&self, login: &str) -> SshCommand {
        self.bastion.ssh(&self.alice, login)
    }

    /// A scratch file path.
    pub fn path(&self, name: &str) -> PathBuf {
        self.scratch.path().join(name)
    }
}
