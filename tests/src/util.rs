//! Small helpers: free ports, polling, running commands with a deadline.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Polls `check` every 20 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The harness's copy of the portcullis binary (built by cargo next to the test binaries).
pub fn portcullis_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let mut dir = exe.parent().expect("deps dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("portcullis-e2e");
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo test --workspace`",
        bin.display()
    );
    bin
}

/// Runs a command, killing it after `seconds` (coreutils `timeout`), so a broken bastion
/// fails a test instead of hanging it.
pub fn run_with_timeout(seconds: u64, command: &mut Command) -> Output {
    let program = command.get_program().to_owned();
    let args: Vec<_> = command.get_args().map(|a| a.to_owned()).collect();
    let mut wrapped = Command::new("timeout");
    wrapped
        .arg("-k")
        .arg("5")
        .arg(seconds.to_string())
        .arg(program)
        .args(args);
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped.output().expect("spawn command")
}

/// Text of a command's output.
#[derive(Debug, Clone)]
pub struct Ran {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Exit code (None: killed by a signal).
    pub code: Option<i32>,
}

impl From<Output> for Ran {
    fn from(output: Output) -> Self {
        Self {
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            code: output.status.code(),
        }
    }
}

/// SHA-256 of bytes, hex.
pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &std::path::Path) -> String {
    sha256(&std::fs::read(path).expect("read file for checksum"))
}

/// A file of `len` pseudo-random bytes (deterministic per seed).
pub fn random_file(path: &std::path::Path, len: usize, seed: u8) {
    let mut out = Vec::with_capacity(len);
    let mut block = ring::digest::digest(&ring::digest::SHA256, &[seed])
        .as_ref()
        .to_vec();
    while out.len() < len {
        block = ring::digest::digest(&ring::digest::SHA256, &block)
            .as_ref()
            .to_vec();
        out.extend_from_slice(&block);
    }
    out.truncate(len);
    std::fs::write(path, out).expect("write random file");
}

/// Stops a command started through `timeout` (as the harness's ssh commands are): SIGTERM,
/// which `timeout` passes on to the command, then reaps it.
pub fn stop(child: &mut std::process::Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// What a child process writes, read on a thread of its own as it arrives, so a test can
/// wait for a line (the sign that the child is attached) before it acts.
pub struct Collected {
    text: std::sync::Arc<std::sync::Mutex<String>>,
    reader: std::thread::JoinHandle<()>,
}

impl Collected {
    /// Starts reading `source` until it ends.
    pub fn start(mut source: impl std::io::Read + Send + 'static) -> Self {
        let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = text.clone();
        let reader = std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = source.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                let chunk = String::from_utf8_lossy(&buffer[..n]).into_owned();
                sink.lock().expect("collected text").push_str(&chunk);
            }
        });
        Self { text, reader }
    }

    /// Everything so far.
    pub fn text(&self) -> String {
        self.text.lock().expect("collected text").clone()
    }

    /// Waits until `needle` has been written; panics with what was, after `timeout`.
    pub fn wait_for_text(&self, needle: &str, timeout: Duration) {
        if wait_for(timeout, || self.text().contains(needle).then_some(())).is_none() {
            panic!("{needle:?} never came; got:\n{}", self.text());
        }
    }

    /// Whether the source has ended.
    pub fn is_finished(&self) -> bool {
        self.reader.is_finished()
    }

    /// Waits for the source to end and returns everything written.
    pub fn finish(self) -> String {
        self.reader.join().expect("the reader thread");
        self.text.lock().expect("collected text").clone()
    }
}
