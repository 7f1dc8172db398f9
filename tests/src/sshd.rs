//! A real OpenSSH sshd on a free loopback port, with a throwaway config: the upstream of
//! every end-to-end test. Started by absolute path, ready when it says "Server listening",
//! killed and reaped on drop.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tempfile::TempDir;

use crate::keys::Keypair;
use crate::util::{free_port, wait_for};

const SSHD: &str = "/usr/sbin/sshd";

/// A running sshd.
pub struct Sshd {
    dir: TempDir,
    port: u16,
    child: Child,
    host_key: Keypair,
    log: Arc<Mutex<String>>,
}

/// How to start an sshd.
#[derive(Debug, Default, Clone)]
pub struct SshdOptions {
    /// Allow password logins (for vaulted password credentials).
    pub password_auth: bool,
}

impl Sshd {
    /// An sshd accepting public keys for any local account.
    pub fn start() -> Self {
        Self::start_with(SshdOptions::default())
    }

    /// An sshd with options.
    pub fn start_with(options: SshdOptions) -> Self {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: install openssh-server (.ci/run does)"
        );
        let _ = std::fs::create_dir_all("/run/sshd");
        let dir = tempfile::Builder::new()
            .prefix("sshd-")
            .tempdir()
            .expect("temp dir");
        let host_key = Keypair::generate(dir.path(), "host_ed25519");
        std::fs::write(dir.path().join("authorized_keys"), "").expect("authorized_keys");
        std::fs::write(dir.path().join("trusted_user_ca_keys"), "").expect("trusted CAs");
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1\n\
                 HostKey {dir}/host_ed25519\n\
                 AuthorizedKeysFile {dir}/authorized_keys\n\
                 TrustedUserCAKeys {dir}/trusted_user_ca_keys\n\
                 PasswordAuthentication {password}\n\
                 KbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\n\
                 UsePAM no\n\
                 StrictModes no\n\
                 Subsystem sftp internal-sftp\n\
                 PidFile {dir}/sshd.pid\n\
                 MaxStartups 200\n\
                 MaxSessions 50\n\
                 AcceptEnv LANG LC_* LD_PRELOAD BASH_ENV PORTCULLIS_TEST_*\n\
                 LogLevel VERBOSE\n",
                dir = dir.path().display(),
                password = if options.password_auth { "yes" } else { "no" },
            ),
        )
        .expect("sshd_config");
        let log = Arc::new(Mutex::new(String::new()));
        for _attempt in 0..5 {
            let port = free_port();
            if let Some(child) = spawn(&config, port, &log) {
                return Self {
                    dir,
                    port,
                    child,
                    host_key,
                    log,
                };
            }
        }
        panic!("sshd did not start; see its config in a tempdir");
    }

    /// Stops listening (the files stay): the target is down.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Listens again on the same port, with the same files.
    pub fn restart(&mut self) {
        self.child = spawn(&self.dir.path().join("sshd_config"), self.port, &self.log)
            .expect("sshd restarts on its port");
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Its host key, as the bastion should pin it.
    pub fn host_key(&self) -> &str {
        &self.host_key.public
    }

    /// The file it reads authorized keys from (for any account it serves).
    pub fn authorized_keys_file(&self) -> PathBuf {
        self.dir.path().join("authorized_keys")
    }

    /// Lets `public_key` log in (for any account this sshd serves).
    pub fn authorize(&self, public_key: &str) {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("authorized_keys"))
            .expect("authorized_keys");
        writeln!(file, "{}", public_key.trim()).expect("write authorized_keys");
    }

    /// Trusts exactly these user CAs (`TrustedUserCAKeys` lines, as `portcullis ca show`
    /// prints them); sshd reads the file at each login.
    pub fn trust_user_cas(&self, lines: &str) {
        std::fs::write(self.dir.path().join("trusted_user_ca_keys"), lines)
            .expect("write trusted_user_ca_keys");
    }

    /// What sshd has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    /// The directory holding its files.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// The sshd processes serving its connections (each connection's privileged monitor and
    /// unprivileged child), not the listener and not the shells they started.
    pub fn connection_processes(&self) -> Vec<u32> {
        descendants(self.child.id())
            .into_iter()
            .filter(|pid| process_name(*pid).as_deref() == Some("sshd"))
            .collect()
    }

    /// Sends `signal` (`KILL`, `STOP`, `CONT`, …) to every process serving one of its
    /// connections, as if the target's sshd had died or hung under the session; how many
    /// were signalled.
    pub fn signal_connections(&self, signal: &str) -> usize {
        let pids = self.connection_processes();
        for pid in &pids {
            let _ = std::process::Command::new("kill")
                .args([&format!("-{signal}"), &pid.to_string()])
                .status();
        }
        pids.len()
    }
}

/// Every process below `root` (children, theirs, …), from /proc.
fn descendants(root: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // `pid (comm) state ppid …`: the name may hold spaces and parentheses.
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parents.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut at = 0;
    while at < found.len() {
        let parent = found[at];
        found.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(pid, _)| *pid),
        );
        at += 1;
    }
    found.remove(0);
    found
}

fn process_name(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|name| name.trim().to_owned())
}

/// Starts sshd with `config` on `port` and waits until it listens (`None`: it did not, e.g.
/// the port was taken meanwhile). Its stderr goes to `log`.
fn spawn(config: &Path, port: u16, log: &Arc<Mutex<String>>) -> Option<Child> {
    let mut child = Command::new(SSHD)
        .args(["-D", "-e", "-f"])
        .arg(config)
        .args(["-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sshd");
    let stderr = child.stderr.take().expect("sshd stderr");
    let sink = log.clone();
    let listening_before = log
        .lock()
        .expect("log lock")
        .matches("Server listening on")
        .count();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut log = sink.lock().expect("log lock");
            log.push_str(&line);
            log.push('\n');
        }
    });
    let ready = wait_for(Duration::from_secs(10), || {
        let text = log.lock().expect("log lock").clone();
        if text.matches("Server listening on").count() > listening_before {
            Some(true)
        } else if child.try_wait().ok().flatten().is_some() {
            Some(false)
        } else {
            None
        }
    });
    if ready == Some(true) {
        return Some(child);
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A local account with a password, for password-credential tests; removed on drop.
pub struct LocalUser {
    /// Account name.
    pub name: String,
    /// Its password.
    pub password: String,
}

impl LocalUser {
    /// Creates a uniquely named account (needs root).
    pub fn create() -> Self {
        let suffix = hex::encode(crate::random_bytes::<4>());
        let name = format!("pc{suffix}");
        let password = format!("Vault-Secret-{}", hex::encode(crate::random_bytes::<12>()));
        let status = Command::new("useradd")
            .args(["--create-home", "--shell", "/bin/bash"])
            .arg(&name)
            .status()
            .expect("run useradd (tests need root)");
        assert!(
            status.success(),
            "useradd {name} failed: the password tests need root"
        );
        let mut chpasswd = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .spawn()
            .expect("run chpasswd");
        {
            use std::io::Write;
            let stdin = chpasswd.stdin.as_mut().expect("chpasswd stdin");
            writeln!(stdin, "{name}:{password}").expect("write chpasswd");
        }
        assert!(
            chpasswd.wait().expect("chpasswd").success(),
            "chpasswd failed"
        );
        Self { name, password }
    }
}

impl LocalUser {
    /// Lets this account run anything with sudo, after its password, while the guard lives
    /// (a drop-in in /etc/sudoers.d, removed with the guard).
    pub fn allow_sudo(&self) -> SudoRule {
        let path =
            std::path::PathBuf::from(format!("/etc/sudoers.d/portcullis-test-{}", self.name));
        std::fs::write(&path, format!("{} ALL=(ALL) ALL\n", self.name))
            .expect("write a sudoers drop-in");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o440))
            .expect("sudoers drop-in mode");
        SudoRule { path }
    }
}

impl LocalUser {
    /// Lets this account run `command` (a full path) as root with `sudo -n`, no password,
    /// while the guard lives.
    pub fn allow_sudo_without_password(&self, command: &str) -> SudoRule {
        let path = std::path::PathBuf::from(format!(
            "/etc/sudoers.d/portcullis-test-{}-nopasswd",
            self.name
        ));
        std::fs::write(
            &path,
            format!("{} ALL=(root) NOPASSWD: {command}\n", self.name),
        )
        .expect("write a sudoers drop-in");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o440))
            .expect("sudoers drop-in mode");
        SudoRule { path }
    }
}

/// A sudoers drop-in of a test's; removed on drop.
pub struct SudoRule {
    path: std::path::PathBuf,
}

impl Drop for SudoRule {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for LocalUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel")
            .args(["--remove", &self.name])
            .status();
    }
}
