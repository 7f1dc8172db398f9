//! The first run: `portcullis demo` as a new user would start it. It must print one short line
//! that works, log in upstream as an unprivileged account, stop the README's example commands,
//! and keep its logs (without colour codes) out of the instructions.
//!
//! Nothing destructive is typed here: blocking is shown with a sentinel file, and the no-wipe
//! rule is checked by evaluating the string against the demo's own config, never by sending it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_tests::Ran;
use portcullis_tests::util::{free_port, portcullis_bin, run_with_timeout, wait_for};

/// A running demo and what it printed.
struct Demo {
    child: Child,
    cwd: tempfile::TempDir,
    stdout: Arc<Mutex<String>>,
}

impl Demo {
    fn start() -> Self {
        let cwd = tempfile::Builder::new().prefix("demo-").tempdir().unwrap();
        let mut child = Command::new(portcullis_bin())
            .args(["demo", "--dir", "portcullis-demo", "--port"])
            .arg(free_port().to_string())
            .arg("--admin-port")
            .arg(free_port().to_string())
            .current_dir(cwd.path())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(cwd.path().join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        let stdout = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stdout.take().unwrap();
        let sink = stdout.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        let demo = Self { child, cwd, stdout };
        let ready = wait_for(Duration::from_secs(60), || {
            demo.stdout()
                .contains("Ctrl-C stops everything")
                .then_some(())
        });
        assert!(
            ready.is_some(),
            "the demo did not start:\n{}\n{}",
            demo.stdout(),
            demo.stderr()
        );
        demo
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.cwd.path().join("stderr.log")).unwrap_or_default()
    }

    fn dir(&self) -> PathBuf {
        self.cwd.path().join("portcullis-demo")
    }

    /// Runs a command line the demo printed, word by word, from the demo's directory, with
    /// `remote` as the remote command.
    fn run_printed(&self, line: &str, remote: &str) -> Ran {
        let words: Vec<&str> = line.split_whitespace().collect();
        let mut command = Command::new(words[0]);
        command
            .args(&words[1..])
            .args(["-o", "BatchMode=yes", remote])
            .current_dir(self.cwd.path())
            .stdin(Stdio::null());
        run_with_timeout(60, &mut command).into()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let exited = wait_for(Duration::from_secs(30), || {
            self.child.try_wait().ok().flatten()
        });
        if exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn am_root() -> bool {
    String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout)
        .unwrap()
        .trim()
        == "0"
}

#[test]
fn the_demo_prints_one_short_line_that_reaches_an_unprivileged_account() {
    let demo = Demo::start();
    let stdout = demo.stdout();

    // One line to connect, short, printed once.
    let connect: Vec<&str> = stdout
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("ssh ") && l.ends_with("alice+demo"))
        .collect();
    assert_eq!(
        connect,
        ["ssh -F portcullis-demo/ssh_config alice+demo"],
        "{stdout}"
    );
    // Instructions on stdout, logs on stderr, and no colour codes in a log that is a file.
    assert!(!stdout.contains(" INFO "), "{stdout}");
    let stderr = demo.stderr();
    assert!(stderr.contains("portcullis: listening on"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in a log file: {stderr:?}"
    );

    // The printed line works, and lands on an account that is not root.
    let ran = demo.run_printed(connect[0], "id -un; id -u");
    assert_eq!(ran.code, Some(0), "{ran:?}\n{stderr}");
    let mut words = ran.stdout.split_whitespace();
    let (name, uid) = (words.next().unwrap(), words.next().unwrap());
    assert_ne!(uid, "0", "the demo logged in as root: {ran:?}");
    if am_root() {
        assert_eq!(name, "portcullis-demo", "{ran:?}");
        assert!(stdout.contains("an unprivileged account"), "{stdout}");
    }
    let sshd_config = std::fs::read_to_string(demo.dir().join("sshd").join("sshd_config")).unwrap();
    assert!(
        sshd_config.contains(&format!("AllowUsers {name}\n")),
        "{sshd_config}"
    );
    assert!(
        sshd_config.contains("PermitRootLogin no\n"),
        "{sshd_config}"
    );
}

#[test]
fn the_demo_ships_the_readme_rules_and_its_hints_work() {
    let demo = Demo::start();
    let ssh = "ssh -F portcullis-demo/ssh_config";

    // The try-it rule stops a harmless sentinel before it runs.
    let sentinel = std::env::temp_dir().join(format!(
        "portcullis-demo-{}-forbidden",
        hex::encode(portcullis_tests::random_bytes::<6>())
    ));
    let ran = demo.run_printed(
        &format!("{ssh} alice+demo"),
        &format!("touch {}", sentinel.display()),
    );
    assert_eq!(ran.code, Some(126), "{ran:?}");
    assert!(
        ran.stderr.contains("blocked by rule demo-forbidden"),
        "{ran:?}"
    );
    assert!(!Path::new(&sentinel).exists(), "the blocked command ran");

    // The README's rules are in the demo's config: evaluated as strings, never sent anywhere.
    let loaded = portcullis_config::load_file(&demo.dir().join("portcullis.toml")).unwrap();
    let rules = portcullis_policy::CommandRules::new(&loaded.config).unwrap();
    let decide = |line: &str| {
        rules
            .evaluate("demo-admins", "demo", line)
            .map(|r| r.action)
    };
    use portcullis_config::CommandAction::{Deny, Review, Warn};
    // The no-wipe rule is checked as config (no destructive line is written here, not even
    // as a string); the harmless try-me rule stands in for it as a string.
    let no_wipe = loaded
        .config
        .command_rules
        .iter()
        .find(|r| r.name == "no-wipe")
        .expect("the README's no-wipe rule");
    assert_eq!(no_wipe.action, Deny);
    assert_eq!(decide("touch forbidden"), Some(Deny));
    assert_eq!(decide("systemctl restart nginx"), Some(Warn));
    assert_eq!(decide("crontab -r"), Some(Review));

    // The bastion's own "Connect with:" hint is a line that works from here.
    let targets = demo.run_printed(&format!("{ssh} alice"), "targets");
    assert_eq!(targets.code, Some(0), "{targets:?}");
    let hint = targets
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Connect with: "))
        .unwrap_or_else(|| panic!("no hint: {targets:?}"))
        .to_owned();
    assert_eq!(hint, format!("{ssh} alice+demo"));
    let ran = demo.run_printed(&hint, "echo through-the-hint");
    assert_eq!(ran.stdout, "through-the-hint\n", "{ran:?}");
}
