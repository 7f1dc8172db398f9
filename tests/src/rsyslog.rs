//! Debian's real rsyslogd as a syslog receiver on a free loopback port, for end-to-end
//! tests of the bastion's syslog forwarder: RFC 5424 messages over TCP with octet-counting
//! framing (RFC 6587), plain or TLS (RFC 5425), with or without a client certificate; or
//! UDP (RFC 5426).
//!
//! A real receiver rather than a hand-written one, so the tests catch what a production
//! rsyslog would reject: a wrong frame length, a certificate it does not accept, a TLS
//! stack it cannot talk to.
//!
//! Everything lives in a temp dir: the config, the pidfile, rsyslog's work directory, the
//! received messages, its own log and, for TLS, a throwaway CA ([`crate::test_ca::TestCa`])
//! with a server and a client certificate. The config loads `imtcp` (and, for
//! TLS, the `gtls` netstream driver) and nothing else: no `imuxsock` or `imklog`, so this
//! rsyslogd never touches `/dev/log` or the kernel log, and its own messages stay in the
//! temp dir (`processInternalMessages`) instead of going to the machine's syslog.
//!
//! Each message is written as its raw text (`%rawmsg%`: from the `<PRI>` on, without the
//! octet-count frame) encoded as one JSON string per line, so a message holding newlines
//! still takes one line; [`Rsyslog::messages`] decodes them. rsyslog is told not to touch
//! the text on the way in (no `#ooo` escaping of control characters, no dropping of a
//! trailing newline), with two exceptions of its own it always applies: a NUL byte arrives
//! as the four characters `#000`, and bytes that are not UTF-8 are read back as U+FFFD.

use std::fs::File;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::test_ca::TestCa;
use crate::util::{free_port, wait_for};

const RSYSLOGD: &str = "/usr/sbin/rsyslogd";
/// The TLS netstream driver (package rsyslog-gnutls).
const GTLS_DRIVER: &str = "/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so";
/// How long anything may take on a busy two-core CI machine.
const PATIENCE: Duration = Duration::from_secs(60);

/// How the receiver listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Plain TCP, octet-counted frames.
    Tcp,
    /// TLS with a server certificate signed by the test CA; any client may connect.
    Tls,
    /// TLS that also requires a client certificate signed by the test CA.
    TlsWithClientCertificate,
    /// UDP, one message per datagram (RFC 5426).
    Udp,
}

/// A running (or stopped) rsyslogd receiving on one loopback port.
pub struct Rsyslog {
    dir: TempDir,
    port: u16,
    transport: Transport,
    /// `None` while stopped.
    child: Option<Child>,
}

impl Rsyslog {
    /// Starts a receiver on a free loopback port and waits until it listens; panics with
    /// its log if it does not come up.
    pub fn start(transport: Transport) -> Self {
        assert!(
            Path::new(RSYSLOGD).exists(),
            "{RSYSLOGD} is missing: install rsyslog"
        );
        if matches!(
            transport,
            Transport::Tls | Transport::TlsWithClientCertificate
        ) {
            assert!(
                Path::new(GTLS_DRIVER).exists(),
                "{GTLS_DRIVER} is missing: install rsyslog-gnutls"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("rsyslog-")
            .tempdir()
            .expect("temp dir");
        std::fs::create_dir(dir.path().join("work")).expect("rsyslog work dir");
        if matches!(
            transport,
            Transport::Tls | Transport::TlsWithClientCertificate
        ) {
            make_certificates(dir.path(), transport == Transport::TlsWithClientCertificate);
        }
        let mut receiver = Self {
            dir,
            port: 0,
            transport,
            child: None,
        };
        // The port was free a moment ago; if something took it meanwhile, rsyslogd says so
        // and keeps running without the listener, so try another.
        let mut failures = Vec::new();
        for _attempt in 0..5 {
            receiver.port = free_port();
            receiver.write_config();
            match receiver.spawn() {
                Ok(child) => {
                    receiver.child = Some(child);
                    return receiver;
                }
                Err(why) => failures.push(why),
            }
        }
        panic!("rsyslogd did not start: {failures:?}\n{}", receiver.log());
    }

    /// How it receives.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// TLS only: PEM file of the test CA that signed rsyslog's server certificate (for the
    /// bastion's `ca = ...`).
    pub fn ca_file(&self) -> Option<PathBuf> {
        matches!(
            self.transport,
            Transport::Tls | Transport::TlsWithClientCertificate
        )
        .then(|| self.dir.path().join("ca.pem"))
    }

    /// TlsWithClientCertificate only: a client certificate + key (PEM files) signed by the
    /// same CA, which rsyslog requires.
    pub fn client_certificate(&self) -> Option<(PathBuf, PathBuf)> {
        (self.transport == Transport::TlsWithClientCertificate).then(|| {
            (
                self.dir.path().join("client.pem"),
                self.dir.path().join("client.key"),
            )
        })
    }

    /// Stops it (SIGTERM, as an operator would), waiting until it has exited and the port
    /// is closed. The received messages stay.
    pub fn stop(&mut self) {
        if let Err(why) = self.shut_down() {
            panic!("rsyslogd did not stop: {why}\n{}", self.log());
        }
    }

    /// Freezes it (SIGSTOP): connections stay open and the kernel still takes bytes for
    /// it, but nothing is read or written — a receiver hung with events unread.
    pub fn freeze(&self) {
        let child = self.child.as_ref().expect("a running rsyslogd");
        let _ = Command::new("kill")
            .args(["-STOP", &child.id().to_string()])
            .status();
    }

    /// Kills it at once (SIGKILL, frozen or not): whatever its sockets held unread is lost,
    /// as when a receiver crashes.
    pub fn crash(&mut self) {
        let mut child = self.child.take().expect("a running rsyslogd");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts it again (stopping it first if it runs) on the same port, appending to the
    /// same output file, and waits until it listens.
    pub fn restart(&mut self) {
        self.stop();
        match self.spawn() {
            Ok(child) => self.child = Some(child),
            Err(why) => panic!(
                "rsyslogd did not restart on port {}: {why}\n{}",
                self.port,
                self.log()
            ),
        }
    }

    /// Every message received so far, in arrival order, as the raw RFC 5424 text (without
    /// the octet-count frame).
    pub fn messages(&self) -> Vec<String> {
        let bytes = std::fs::read(self.output_path()).unwrap_or_default();
        // rsyslogd writes a long line in several pieces: only whole lines are messages yet.
        let whole = match bytes.iter().rposition(|b| *b == b'\n') {
            Some(end) => &bytes[..end],
            None => return Vec::new(),
        };
        whole
            .split(|b| *b == b'\n')
            .map(|line| {
                // Bytes that are not UTF-8 come through the JSON escaping as they are.
                let line = String::from_utf8_lossy(line);
                serde_json::from_str::<String>(&line).unwrap_or_else(|error| {
                    panic!("rsyslog wrote a line that is not a JSON string ({error}): {line}")
                })
            })
            .collect()
    }

    /// Waits (up to a minute) until `check` holds for [`Rsyslog::messages`] and returns
    /// them; panics with `what`, the messages and rsyslogd's log if it never does.
    pub fn wait_until(&self, what: &str, check: impl Fn(&[String]) -> bool) -> Vec<String> {
        if let Some(messages) = wait_for(PATIENCE, || {
            let messages = self.messages();
            check(&messages).then_some(messages)
        }) {
            return messages;
        }
        let messages = self.messages();
        panic!(
            "rsyslog never got {what} (within {PATIENCE:?}); it has {} messages:\n{}\n\
             rsyslogd's log:\n{}",
            messages.len(),
            messages.join("\n"),
            self.log()
        );
    }

    /// What rsyslogd has said (its stderr, then its own messages), for failure reports.
    pub fn log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name));
        format!(
            "--- stderr ---\n{}--- internal messages ---\n{}",
            read("rsyslogd.stderr").unwrap_or_default(),
            read("rsyslogd.log").unwrap_or_default()
        )
    }

    fn output_path(&self) -> PathBuf {
        self.dir.path().join("received.jsonl")
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("rsyslog.conf")
    }

    fn pid_path(&self) -> PathBuf {
        self.dir.path().join("rsyslogd.pid")
    }

    /// rsyslog's input module for this transport.
    fn input(&self) -> &'static str {
        if self.transport == Transport::Udp {
            "imudp"
        } else {
            "imtcp"
        }
    }

    /// The config for this transport and port.
    fn write_config(&self) {
        let dir = self.dir.path().display();
        let (tls_files, stream_driver) = match self.transport {
            Transport::Tcp | Transport::Udp => (String::new(), String::new()),
            tls => {
                let auth_mode = match tls {
                    Transport::TlsWithClientCertificate => "x509/certvalid",
                    _ => "anon",
                };
                (
                    format!(
                        r#"
  defaultNetstreamDriverCAFile="{dir}/ca.pem"
  defaultNetstreamDriverCertFile="{dir}/server.pem"
  defaultNetstreamDriverKeyFile="{dir}/server.key""#
                    ),
                    format!(
                        r#" streamDriver.name="gtls" streamDriver.mode="1"
      streamDriver.authMode="{auth_mode}""#
                    ),
                )
            }
        };
        // maxMessageSize must come before any input module is loaded (64 KiB messages must
        // not be cut). DNS off: the sender is always 127.0.0.1, and a slow resolver must not
        // delay messages. The parser settings keep the raw text as it was sent.
        let config = format!(
            r#"# A syslog receiver for portcullis-tests: one loopback port, nothing else.
global(
  workDirectory="{dir}/work"
  maxMessageSize="128k"
  net.enableDNS="off"
  processInternalMessages="on"
  parser.escapeControlCharactersOnReceive="off"
  parser.dropTrailingLFOnReception="off"{tls_files}
)
module(load="{input}")
template(name="rawAsJsonString" type="string" string="\"%rawmsg:::json%\"\n")
ruleset(name="received") {{
  action(type="omfile" file="{output}" template="rawAsJsonString"
         flushOnTXEnd="on" asyncWriting="off")
}}
input(type="{input}" address="127.0.0.1" port="{port}" ruleset="received"{stream_driver})
# rsyslogd's own messages (start, TLS refusals): kept apart, for failure reports.
action(type="omfile" file="{dir}/rsyslogd.log")
"#,
            output = self.output_path().display(),
            port = self.port,
            input = self.input(),
        );
        std::fs::write(self.config_path(), config).expect("write rsyslog.conf");
    }

    /// Starts rsyslogd in the foreground and waits until it listens on the port.
    fn spawn(&self) -> Result<Child, String> {
        let _ = std::fs::remove_file(self.pid_path());
        let stderr = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("rsyslogd.stderr"))
            .expect("rsyslogd's stderr file");
        let log_before = self.log().len();
        let mut child = Command::new(RSYSLOGD)
            .arg("-n")
            .arg("-f")
            .arg(self.config_path())
            .arg("-i")
            .arg(self.pid_path())
            // Not systemd's service, whatever the environment says.
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDNAMES")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start rsyslogd");
        // Listening means this rsyslogd holds the listening socket: a successful connect
        // could reach whoever took the port, and each probe would leave a TLS error in the
        // log.
        let outcome = wait_for(PATIENCE, || {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(Err(format!("rsyslogd exited: {status}")));
            }
            if self.log().get(log_before..).is_some_and(|new| {
                new.contains("Could not create tcp listener")
                    || new.contains("error during config processing")
            }) {
                return Some(Err("rsyslogd could not listen".to_owned()));
            }
            listens(child.id(), self.port, self.transport == Transport::Udp).then_some(Ok(()))
        })
        .unwrap_or_else(|| Err(format!("rsyslogd did not listen within {PATIENCE:?}")));
        match outcome {
            Ok(()) => Ok(child),
            Err(why) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(why)
            }
        }
    }

    /// SIGTERM, then waits for the exit and the port to close; a SIGKILL if it hangs.
    fn shut_down(&mut self) -> Result<(), String> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // The child is not reaped yet, so its pid is still its own.
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let exited = wait_for(PATIENCE, || child.try_wait().ok().flatten());
        if exited.is_none() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("no exit within {PATIENCE:?} of SIGTERM; killed"));
        }
        let address = self.address();
        wait_for(PATIENCE, || {
            let closed = if self.transport == Transport::Udp {
                bound_sockets(self.port, true).is_empty()
            } else {
                TcpStream::connect(&address).is_err()
            };
            closed.then_some(())
        })
        .ok_or_else(|| format!("{address} still accepts connections after the exit"))
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.shut_down();
    }
}

/// Whether process `pid` holds a socket listening on 127.0.0.1:`port` (from /proc), TCP or
/// (with `udp`) UDP.
fn listens(pid: u32, port: u16, udp: bool) -> bool {
    let inodes = bound_sockets(port, udp);
    if inodes.is_empty() {
        return false;
    }
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .any(|target| {
            inodes
                .iter()
                .any(|inode| target.as_os_str() == inode.as_str())
        })
}

/// The sockets (as `socket:[INODE]`) listening on 127.0.0.1:`port`: from /proc/net/tcp
/// (state 0A, LISTEN) or /proc/net/udp (state 07, unconnected). Each line reads `sl
/// local_address rem_address st … inode`, the address as little-endian hex (127.0.0.1 is
/// 0100007F), the port big-endian.
fn bound_sockets(port: u16, udp: bool) -> Vec<String> {
    let local = format!("0100007F:{port:04X}");
    let (table, state) = if udp {
        ("/proc/net/udp", "07")
    } else {
        ("/proc/net/tcp", "0A")
    };
    std::fs::read_to_string(table)
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&state))
                .then(|| fields.get(9).map(|inode| format!("socket:[{inode}]")))
                .flatten()
        })
        .collect()
}

/// A test CA and, signed by it, a server certificate for 127.0.0.1 and localhost (and a
/// client certificate if `client`), as PEM files in `dir`: `ca.pem`, `server.pem` and
/// `server.key`, `client.pem` and `client.key`. (EC P-256, which rsyslog's gnutls takes.)
fn make_certificates(dir: &Path, client: bool) {
    let ca = TestCa::new(dir);
    ca.server("server");
    if client {
        ca.client("client");
    }
}
