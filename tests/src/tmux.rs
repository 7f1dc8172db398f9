//! Interactive terminals driven through tmux: a private tmux server per test (its own
//! socket), panes kept after their command exits so the last screen can still be read.

use std::process::Command;
use std::time::Duration;

use crate::util::wait_for;

/// A tmux session running one command.
pub struct Tmux {
    socket: String,
    status_file: std::path::PathBuf,
}

impl Tmux {
    /// Starts `command_line` (a shell command) in a `width`×`height` terminal.
    pub fn start(command_line: &str, width: u16, height: u16) -> Self {
        let socket = format!(
            "portcullis-test-{}",
            hex::encode(crate::random_bytes::<6>())
        );
        let conf = std::env::temp_dir().join(format!("{socket}.conf"));
        std::fs::write(
            &conf,
            "set -g remain-on-exit on\nset -g history-limit 5000\n",
        )
        .expect("tmux conf");
        // tmux may mark a pane dead before it has reaped the process, and then never learn
        // its status: the command records its own.
        let status_file = std::env::temp_dir().join(format!("{socket}.status"));
        let wrapped = format!("{command_line}; echo $? > {}", status_file.display());
        let status = Command::new("tmux")
            .args(["-L", &socket, "-f"])
            .arg(&conf)
            .args([
                "new-session",
                "-d",
                "-s",
                "main",
                "-x",
                &width.to_string(),
                "-y",
                &height.to_string(),
            ])
            .arg(wrapped)
            .env("TERM", "xterm-256color")
            .status()
            .expect("run tmux");
        assert!(status.success(), "tmux did not start");
        Self {
            socket,
            status_file,
        }
    }

    fn tmux(&self) -> Command {
        let mut command = Command::new("tmux");
        command.args(["-L", &self.socket]);
        command
    }

    /// Types literal text.
    pub fn type_text(&self, text: &str) {
        let status = self
            .tmux()
            .args(["send-keys", "-t", "main", "-l", text])
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    /// Sends key names (`Enter`, `C-c`, `Up`).
    pub fn keys(&self, keys: &[&str]) {
        let status = self
            .tmux()
            .args(["send-keys", "-t", "main"])
            .args(keys)
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    /// Sends raw bytes, as a terminal would pass them on (escape sequences, control keys).
    pub fn bytes(&self, bytes: &[u8]) {
        let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let status = self
            .tmux()
            .args(["send-keys", "-t", "main", "-H"])
            .args(&hex)
            .status()
            .expect("tmux send-keys -H");
        assert!(status.success());
    }

    /// Pastes `text` as a terminal would: bracketed (`ESC[200~ … ESC[201~`) when the program
    /// asked for bracketed pastes and `bracketed` is set; newlines arrive as CR either way.
    pub fn paste(&self, text: &str, bracketed: bool) {
        let status = self
            .tmux()
            .args(["set-buffer", "--", text])
            .status()
            .expect("tmux set-buffer");
        assert!(status.success());
        let mut paste = self.tmux();
        paste.args(["paste-buffer", "-t", "main"]);
        if bracketed {
            paste.arg("-p");
        }
        assert!(paste.status().expect("tmux paste-buffer").success());
    }

    /// Types a line and presses Enter.
    pub fn line(&self, text: &str) {
        self.type_text(text);
        self.keys(&["Enter"]);
    }

    /// The visible screen.
    pub fn screen(&self) -> String {
        let output = self
            .tmux()
            .args(["capture-pane", "-p", "-J", "-t", "main", "-S", "-200"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Waits until the screen contains `text`; panics with the screen otherwise.
    pub fn wait_for_text(&self, text: &str, timeout: Duration) -> String {
        wait_for(timeout, || {
            let screen = self.screen();
            screen.contains(text).then_some(screen)
        })
        .unwrap_or_else(|| panic!("{text:?} never appeared; screen:\n{}", self.screen()))
    }

    /// Resizes the terminal.
    pub fn resize(&self, width: u16, height: u16) {
        let status = self
            .tmux()
            .args([
                "resize-window",
                "-t",
                "main",
                "-x",
                &width.to_string(),
                "-y",
                &height.to_string(),
            ])
            .status()
            .expect("tmux resize-window");
        assert!(status.success());
    }

    /// The command's exit status once it has exited.
    pub fn exit_status(&self) -> Option<i32> {
        std::fs::read_to_string(&self.status_file)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Waits for the command to exit and returns its status.
    pub fn wait_exit(&self, timeout: Duration) -> Option<i32> {
        wait_for(timeout, || self.exit_status())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").status();
        let _ = std::fs::remove_file(std::env::temp_dir().join(format!("{}.conf", self.socket)));
        let _ = std::fs::remove_file(&self.status_file);
    }
}
