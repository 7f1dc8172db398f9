//! The real OpenSSH client, pointed at the bastion with its host key pinned
//! (`StrictHostKeyChecking=yes` against a known_hosts written for the test).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::keys::Keypair;
use crate::util::{Ran, run_with_timeout};

/// One `ssh`/`scp`/`sftp` invocation's common options.
#[derive(Debug, Clone)]
pub struct SshCommand {
    address: SocketAddr,
    known_hosts: PathBuf,
    key: Option<PathBuf>,
    login: String,
    options: Vec<String>,
    flags: Vec<String>,
    batch: bool,
    /// ssh's LogLevel: ERROR keeps test output clean; INFO shows the server's banner.
    log_level: &'static str,
}

impl SshCommand {
    /// `login@bastion` with `key`.
    pub fn new(
        address: SocketAddr,
        known_hosts: &Path,
        key: Option<&Keypair>,
        login: &str,
    ) -> Self {
        Self {
            address,
            known_hosts: known_hosts.to_owned(),
            key: key.map(|k| k.private.clone()),
            login: login.to_owned(),
            options: Vec::new(),
            flags: Vec::new(),
            batch: true,
            log_level: "ERROR",
        }
    }

    /// Adds `-o OPTION`.
    pub fn option(mut self, option: &str) -> Self {
        self.options.push(option.to_owned());
        self
    }

    /// Adds raw ssh flags (e.g. `-R 0:host:22`), placed before the destination.
    pub fn flags(mut self, flags: &[&str]) -> Self {
        self.flags.extend(flags.iter().map(|f| (*f).to_owned()));
        self
    }

    /// Shows what the server says before login (LogLevel INFO, as ssh's default is).
    pub fn showing_banners(mut self) -> Self {
        self.log_level = "INFO";
        self
    }

    /// Allows prompts (for password and TOTP logins through SSH_ASKPASS).
    pub fn interactive_auth(mut self) -> Self {
        self.batch = false;
        self
    }

    /// Options shared by ssh, scp and sftp (not the port, whose flag differs).
    pub fn common_args(&self) -> Vec<String> {
        let mut args = vec![
            "-F".into(),
            "/dev/null".into(),
            "-o".into(),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            "ConnectTimeout=20".into(),
            "-o".into(),
            format!("LogLevel={}", self.log_level),
        ];
        if self.batch {
            args.extend(["-o".into(), "BatchMode=yes".into()]);
        }
        match &self.key {
            Some(key) => {
                args.extend(["-o".into(), "IdentitiesOnly=yes".into(), "-i".into()]);
                args.push(key.display().to_string());
            }
            None => args.extend(["-o".into(), "PubkeyAuthentication=no".into()]),
        }
        for option in &self.options {
            args.extend(["-o".into(), option.clone()]);
        }
        args
    }

    /// `ssh ... login@127.0.0.1 [command]` as a Command (not run), killed after two minutes
    /// (coreutils `timeout`) so a broken bastion fails a test instead of hanging it.
    pub fn ssh_command(&self, remote: Option<&str>) -> Command {
        let mut command = Command::new("timeout");
        command
            .args(["-k", "5", "120", "ssh"])
            .args(self.common_args())
            .args(&self.flags)
            .arg("-p")
            .arg(self.address.port().to_string())
            .arg(format!("{}@127.0.0.1", self.login));
        if let Some(remote) = remote {
            command.arg(remote);
        }
        command
    }

    /// The ssh command line as one shell string (for tmux).
    pub fn shell_line(&self, extra: &[&str]) -> String {
        let mut parts = vec!["ssh".to_owned()];
        parts.extend(self.common_args());
        parts.extend(self.flags.iter().cloned());
        parts.extend(extra.iter().map(|s| (*s).to_owned()));
        parts.push("-p".into());
        parts.push(self.address.port().to_string());
        parts.push(format!("{}@127.0.0.1", self.login));
        parts
            .iter()
            .map(|p| shell_quote(p))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs `command` remotely; stdin is empty.
    pub fn exec(&self, command: &str) -> Ran {
        let mut ssh = self.ssh_command(Some(command));
        ssh.stdin(std::process::Stdio::null());
        ssh.output().expect("run ssh").into()
    }

    /// `scp` from `from` to `to`; remote paths are written `:PATH` and get the login prefixed.
    pub fn scp(&self, from: &str, to: &str, legacy_protocol: bool) -> Ran {
        let remote = |p: &str| match p.strip_prefix(':') {
            Some(path) => format!("{}@127.0.0.1:{path}", self.login),
            None => p.to_owned(),
        };
        let mut scp = Command::new("scp");
        if legacy_protocol {
            scp.arg("-O");
        }
        scp.args(self.common_args())
            .arg("-P")
            .arg(self.address.port().to_string())
            .arg(remote(from))
            .arg(remote(to));
        run_with_timeout(120, &mut scp).into()
    }

    /// `sftp -b -` with a batch of commands.
    pub fn sftp(&self, batch: &str) -> Ran {
        self.sftp_with(&[], batch)
    }

    /// `sftp -b -` with more options (`-s /usr/lib/openssh/sftp-server`…).
    pub fn sftp_with(&self, options: &[&str], batch: &str) -> Ran {
        use std::io::Write;
        let mut child = Command::new("timeout")
            .args(["-k", "5", "120", "sftp"])
            .args(options)
            .args(self.common_args())
            .arg("-P")
            .arg(self.address.port().to_string())
            .args(["-b", "-"])
            .arg(format!("{}@127.0.0.1", self.login))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run sftp");
        child
            .stdin
            .take()
            .expect("sftp stdin")
            .write_all(batch.as_bytes())
            .expect("write sftp batch");
        child.wait_with_output().expect("sftp").into()
    }

    /// `rsync -e 'ssh ...' from to` (remote paths as in [`SshCommand::scp`]).
    pub fn rsync(&self, from: &str, to: &str) -> Ran {
        let remote = |p: &str| match p.strip_prefix(':') {
            Some(path) => format!("{}@127.0.0.1:{path}", self.login),
            None => p.to_owned(),
        };
        let mut ssh = vec!["ssh".to_owned()];
        ssh.extend(self.common_args());
        ssh.push("-p".into());
        ssh.push(self.address.port().to_string());
        let shell = ssh
            .iter()
            .map(|p| shell_quote(p))
            .collect::<Vec<_>>()
            .join(" ");
        let mut rsync = Command::new("rsync");
        rsync.arg("-e").arg(shell).arg(remote(from)).arg(remote(to));
        run_with_timeout(120, &mut rsync).into()
    }
}

/// Quotes a word for sh.
pub fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@+,%".contains(c))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// Answers ssh's password and verification-code prompts from files, through SSH_ASKPASS
/// (`SSH_ASKPASS_REQUIRE=force`), the way a person would type them.
pub struct Askpass {
    dir: tempfile::TempDir,
}

impl Askpass {
    /// An askpass program with empty answers.
    pub fn new() -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("askpass-")
            .tempdir()
            .expect("temp dir");
        let script = dir.path().join("askpass");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\ncase \"$1\" in\n  *erification*) cat {d}/code ;;\n  *assword*) cat {d}/password ;;\n  *) exit 1 ;;\nesac\n",
                d = dir.path().display()
            ),
        )
        .expect("askpass script");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .expect("chmod askpass");
        let askpass = Self { dir };
        askpass.answer("", "");
        askpass
    }

    /// What to answer next.
    pub fn answer(&self, password: &str, code: &str) {
        std::fs::write(self.dir.path().join("password"), format!("{password}\n"))
            .expect("password file");
        std::fs::write(self.dir.path().join("code"), format!("{code}\n")).expect("code file");
    }

    /// Sets up `command` (an ssh Command) to use this askpass.
    pub fn apply(&self, command: &mut Command) {
        command
            .env("SSH_ASKPASS", self.dir.path().join("askpass"))
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0")
            .stdin(std::process::Stdio::null());
    }
}

impl Default for Askpass {
    fn default() -> Self {
        Self::new()
    }
}
