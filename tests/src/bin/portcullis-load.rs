//! The load harness: the real portcullis binary (started by the harness, measured from
//! /proc) under many sessions at once. Not a test: a command whose figures go in the README.
//!
//! ```text
//! cargo build --release -p portcullis-tests --bins
//! target/release/portcullis-load traffic [--sessions 200] [--seconds 60] [--rate-kib 8]
//! target/release/portcullis-load idle [--sessions 1000] [--typed]
//! target/release/portcullis-load storm [--logins 500] [--seconds 10]
//! target/release/portcullis-load flood [--connections 1000]
//! ```
//!
//! * `traffic`: sessions against a real OpenSSH sshd, half `cat` on an exec channel and half
//!   `cat` on a terminal in raw mode, each sending `--rate-kib` KiB/s of data and reading it
//!   back for `--seconds`; every byte is checked (SHA-256 of what went out against what came
//!   back), every recording verified; the bastion's CPU and memory; and, while the load
//!   runs, keystroke echo latency on a terminal through the bastion and straight to sshd.
//! * `idle`: interactive sessions that sit at their prompt, behind a light russh upstream
//!   (thousands of sshd processes do not fit beside them): the bastion's memory per session
//!   and its CPU while they idle. With `--typed`, each first types a line (so the command
//!   gate has read its screen) and then idles.
//! * `storm`: logins as fast as they come, a fifth of them with a key the bastion does not
//!   know: every good one gets in, the bad ones are refused and counted, nothing crashes.
//! * `flood`: connections from 127.0.0.2 that never authenticate, then a real login from
//!   127.0.0.1: how long it takes to get in.
//!
//! Needs what the tests need (sshd, ssh-keygen) and root; run it on an otherwise idle machine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use portcullis_tests::light_upstream::LightUpstream;
use portcullis_tests::raw::{self, RawSsh, memory_kib};
use portcullis_tests::{Bastion, ConfigText, Keypair, LocalUser, Sshd};
use russh::ChannelMsg;

const USER: &str = "load";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().cloned().unwrap_or_default();
    let number = |flag: &str, default: u64| -> u64 {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(|v| v.parse().expect("a number after the flag"))
            .unwrap_or(default)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    match mode.as_str() {
        "traffic" => traffic(
            &runtime,
            number("--sessions", 200) as usize,
            Duration::from_secs(number("--seconds", 60)),
            number("--rate-kib", 8) as usize,
        ),
        "idle" => idle(
            &runtime,
            number("--sessions", 1000) as usize,
            args.iter().any(|a| a == "--typed"),
            Duration::from_secs(number("--pause", 0)),
        ),
        "storm" => storm(
            &runtime,
            number("--logins", 500) as usize,
            Duration::from_secs(number("--seconds", 10)),
        ),
        "flood" => flood(&runtime, number("--connections", 1000) as usize),
        _ => panic!(
            "usage: portcullis-load traffic|idle|storm|flood [options] (see the source's header)"
        ),
    }
}

/// A bastion (the real binary) for `USER`, with room for `sessions`.
struct Rig {
    scratch: tempfile::TempDir,
    key: Keypair,
    bastion: Bastion,
}

impl Rig {
    fn new(sessions: usize, targets: impl FnOnce(&mut ConfigText)) -> Self {
        let scratch = tempfile::Builder::new().prefix("load-").tempdir().unwrap();
        let key = Keypair::generate(scratch.path(), "load");
        let mut config = ConfigText::default();
        // Room for the sessions; the pre-login limits stay at their defaults.
        config.server(&format!("max_connections = {}", sessions + 200));
        config.user(USER, &[&key.public]);
        targets(&mut config);
        config.role("load", &[USER], &["*"]);
        let bastion = Bastion::new(&config);
        Self {
            scratch,
            key,
            bastion,
        }
    }

    fn pid(&self) -> u32 {
        self.bastion.pid().expect("a running bastion")
    }

    async fn login(&self, target: &str) -> RawSsh {
        self.login_from(IpAddr::from([127, 0, 0, 1]), target, &self.key)
            .await
            .expect("login")
    }

    /// Client number `index`'s login, from an address of its own (as users at their own
    /// machines: the bastion limits unauthenticated connections per address).
    async fn login_as(&self, index: usize, target: &str) -> RawSsh {
        let source = IpAddr::from([127, 1, (index / 250) as u8, (index % 250) as u8 + 1]);
        match self.try_login(source, target, &self.key).await {
            Ok(ssh) => ssh,
            Err(why) => {
                let log = self.bastion.log();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                panic!("login of client {index} from {source}: {why}; bastion log ends: {tail:#?}")
            }
        }
    }

    async fn login_from(&self, source: IpAddr, target: &str, key: &Keypair) -> Option<RawSsh> {
        self.try_login(source, target, key).await.ok()
    }

    /// A login, or why it failed.
    async fn try_login(
        &self,
        source: IpAddr,
        target: &str,
        key: &Keypair,
    ) -> Result<RawSsh, String> {
        let mut ssh = RawSsh::connect_from(source, self.bastion.address(), &self.host_key())
            .await
            .map_err(|e| format!("connect: {e}"))?;
        if ssh.login_key(&format!("{USER}+{target}"), key).await {
            Ok(ssh)
        } else {
            Err("the key was refused".to_owned())
        }
    }

    fn host_key(&self) -> String {
        self.bastion.host_public_key()
    }
}

/// CPU time (user + system) the process has used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("process stat");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat")
        .1
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15; after the name, 12 and 13 (0-based 11, 12).
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Bytes a session sends: xorshift noise (binary for exec channels; printable for terminals,
/// with an Enter every 4 KiB: the command gate reads the screen at each Enter, after the
/// shell's echo has been quiet for 40 ms, so lines come at pasting pace, not hundreds a
/// second).
fn payload(seed: u64, len: usize, terminal: bool) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if !terminal {
                (x >> 24) as u8
            } else if i % 4096 == 4095 {
                b'\r'
            } else {
                b'!' + ((x >> 24) % 94) as u8
            }
        })
        .collect()
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

struct Moved {
    terminal: bool,
    sent: usize,
    intact: bool,
    /// Why it could not run, if it could not.
    failure: Option<String>,
}

/// Waits for the remote command's whole `READY` line (raw mode leaves "\n" as it is on a
/// terminal too): nothing is sent before it, so everything after it is the echo.
async fn ready(channel: &mut russh::Channel<russh::client::Msg>) -> Result<(), String> {
    let mut seen = Vec::new();
    let waited = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(message) = channel.wait().await {
            if let ChannelMsg::Data { data } | ChannelMsg::ExtendedData { data, .. } = message {
                seen.extend_from_slice(&data);
                if seen.ends_with(b"READY\n") {
                    return true;
                }
            }
        }
        false
    })
    .await;
    match waited {
        Ok(true) => Ok(()),
        _ => Err(format!(
            "the remote command did not get ready: {:?}",
            String::from_utf8_lossy(&seen)
        )),
    }
}

/// One session of `traffic`: sends paced noise for `length`, reads it all back.
async fn moving_session(rig: Arc<Rig>, index: usize, length: Duration, rate: usize) -> Moved {
    let terminal = index % 2 == 1;
    // Users arrive over a few seconds, not in one instant: the bastion admits a bounded
    // number of logins at a time (max_unauthenticated), as sshd's MaxStartups does.
    tokio::time::sleep(Duration::from_millis(20) * index as u32).await;
    let ssh = rig.login_as(index, "web01").await;
    let mut channel = ssh.session().await;
    if terminal {
        channel
            .request_pty(true, "xterm", 120, 40, 0, 0, &[])
            .await
            .unwrap();
    }
    // On a terminal, raw mode first, so bytes pass unchanged and are not echoed twice.
    let command = if terminal {
        "stty raw -echo; echo READY; exec cat"
    } else {
        "echo READY; exec cat"
    };
    channel.exec(true, command).await.unwrap();
    if let Err(why) = ready(&mut channel).await {
        return Moved {
            terminal,
            sent: 0,
            intact: false,
            failure: Some(format!("session {index}: {why}")),
        };
    }
    let (mut reader, writer) = channel.split();
    let chunk = 4096;
    let per_second = rate * 1024 / chunk;
    let total_chunks = (per_second as u64 * length.as_secs()).max(1) as usize;
    let data = payload(index as u64 + 1, total_chunks * chunk, terminal);
    let expected = data.len();
    let sent_digest = sha256(&data);
    let sending = tokio::spawn(async move {
        let mut pace = tokio::time::interval(Duration::from_secs(1) / per_second.max(1) as u32);
        for piece in data.chunks(chunk) {
            pace.tick().await;
            writer.data_bytes(piece.to_vec()).await.unwrap();
        }
        writer
    });
    let mut received = Vec::with_capacity(expected);
    while received.len() < expected {
        let Some(message) = tokio::time::timeout(Duration::from_secs(120), reader.wait())
            .await
            .ok()
            .flatten()
        else {
            break;
        };
        if let ChannelMsg::Data { data } = message {
            received.extend_from_slice(&data);
        }
    }
    let writer = sending.await.unwrap();
    let _ = writer.eof().await;
    let _ = writer.close().await;
    Moved {
        terminal,
        sent: expected,
        intact: received.len() == expected && sha256(&received) == sent_digest,
        failure: None,
    }
}

/// Keystroke echo latency on a raw terminal running `cat`: one byte out, the same byte
/// back, `count` times at a typist's pace.
async fn echo_latency(ssh: &RawSsh, count: usize) -> Vec<Duration> {
    let mut channel = ssh.session().await;
    channel
        .request_pty(true, "xterm", 80, 24, 0, 0, &[])
        .await
        .unwrap();
    channel
        .exec(true, "stty raw -echo; echo READY; exec cat")
        .await
        .unwrap();
    ready(&mut channel).await.expect("the echo session");
    let (mut reader, writer) = channel.split();
    let mut samples = Vec::with_capacity(count);
    let mut pace = tokio::time::interval(Duration::from_millis(50));
    for i in 0..count {
        pace.tick().await;
        let key = b'a' + (i % 26) as u8;
        let sent = Instant::now();
        writer.data_bytes(vec![key]).await.unwrap();
        loop {
            match reader.wait().await {
                Some(ChannelMsg::Data { data }) if data.contains(&key) => break,
                Some(_) => {}
                None => panic!("the echo session ended"),
            }
        }
        samples.push(sent.elapsed());
    }
    let _ = writer.close().await;
    samples.sort();
    samples
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The upstream account: a fresh one, so the upstream shell starts as a stock account's
/// does (root's rc files on a development machine may run anything at each login).
fn upstream_account() -> LocalUser {
    LocalUser::create()
}

fn traffic(runtime: &tokio::runtime::Runtime, sessions: usize, length: Duration, rate: usize) {
    let sshd = Sshd::start();
    let account = upstream_account();
    let rig = Rig::new(sessions, |config| {
        config.target("web01", &sshd, &account.name, "web01");
    });
    rig.bastion.vault_key_for("web01", &sshd);
    sshd.authorize(&rig.key.public);
    let mut rig = rig;
    rig.bastion.start();
    let rig = Arc::new(rig);
    let pid = rig.pid();
    println!(
        "traffic: {sessions} sessions (half exec, half terminal) × {rate} KiB/s each way for {}s, through portcullis to OpenSSH sshd",
        length.as_secs()
    );
    let (rss_before, _) = memory_kib(pid);
    let cpu_before = cpu_time(pid);
    let started = Instant::now();
    let results = runtime.block_on(async {
        let running: Vec<_> = (0..sessions)
            .map(|i| tokio::spawn(moving_session(rig.clone(), i, length, rate)))
            .collect();
        // Echo latency while the load runs, through the bastion and straight to sshd.
        tokio::time::sleep(length / 4).await;
        eprintln!("  [{:?}] measuring keystroke echo", started.elapsed());
        let through = echo_latency(&rig.login("web01").await, 200).await;
        let mut direct_ssh = RawSsh::connect(sshd.address().parse().unwrap(), sshd.host_key())
            .await
            .unwrap();
        assert!(direct_ssh.login_key(&account.name, &rig.key).await);
        let direct = echo_latency(&direct_ssh, 200).await;
        eprintln!(
            "  [{:?}] waiting for the sessions to finish",
            started.elapsed()
        );
        let mut moved = Vec::new();
        for task in running {
            moved.push(task.await.unwrap());
        }
        (moved, through, direct)
    });
    let wall = started.elapsed();
    let cpu = cpu_time(pid) - cpu_before;
    let (rss_after, peak) = memory_kib(pid);
    let (moved, through, direct) = results;
    let intact = moved.iter().filter(|m| m.intact).count();
    let failures: Vec<&String> = moved.iter().filter_map(|m| m.failure.as_ref()).collect();
    if !failures.is_empty() {
        println!(
            "  {} sessions failed, e.g. {:?}",
            failures.len(),
            &failures[..failures.len().min(3)]
        );
        let log = rig.bastion.log();
        for line in log
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .take(20)
        {
            println!("  bastion: {line}");
        }
    }
    let bytes: usize = moved.iter().map(|m| m.sent).sum();
    let terminals = moved.iter().filter(|m| m.terminal).count();
    println!(
        "  sessions: {} ({} exec, {terminals} terminal); intact both ways: {intact}/{}",
        moved.len(),
        moved.len() - terminals,
        moved.len()
    );
    println!(
        "  data: {:.1} MiB each way in {:.1}s",
        bytes as f64 / 1048576.0,
        wall.as_secs_f64()
    );
    println!(
        "  bastion CPU: {:.1}s in {:.1}s ({:.0}% of one core); memory: {} KiB before, {} KiB after, peak {} KiB",
        cpu.as_secs_f64(),
        wall.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64(),
        rss_before,
        rss_after,
        peak
    );
    println!(
        "  keystroke echo under load: through portcullis p50 {:.2} ms p99 {:.2} ms; direct sshd p50 {:.2} ms p99 {:.2} ms",
        percentile(&through, 0.5).as_secs_f64() * 1000.0,
        percentile(&through, 0.99).as_secs_f64() * 1000.0,
        percentile(&direct, 0.5).as_secs_f64() * 1000.0,
        percentile(&direct, 0.99).as_secs_f64() * 1000.0,
    );
    eprintln!("  [{:?}] verifying the recordings", started.elapsed());
    let recordings = rig.bastion.recordings();
    let verified = recordings
        .iter()
        .filter(|r| {
            rig.bastion
                .cli(&["recordings", "verify", r.to_str().unwrap()])
                .code
                == Some(0)
        })
        .count();
    println!(
        "  recordings: {verified}/{} verify intact",
        recordings.len()
    );
    assert_eq!(intact, moved.len(), "bytes were lost or reordered");
    assert_eq!(verified, recordings.len(), "a recording does not verify");
}

/// `pause`: a wait before the sessions open and after they are measured, announced, for
/// attaching a heap profiler (`heaptrack -p PID`) to the bastion.
fn idle(runtime: &tokio::runtime::Runtime, sessions: usize, typed: bool, pause: Duration) {
    let scratch = tempfile::tempdir().unwrap();
    let upstream = runtime.block_on(LightUpstream::start(scratch.path()));
    let address = upstream.address.to_string();
    let host_key = upstream.host_key.clone();
    let mut rig = Rig::new(sessions, |config| {
        config.target_at("light", &address, &host_key, "load", "light");
        if std::env::var_os("LOAD_EXPERIMENT_NO_COMMANDS").is_some() {
            config.raw("[recording]\ncommands = false\n");
        }
    });
    upstream.authorize(&rig.bastion.vault_generate("light"));
    rig.bastion.start();
    let pid = rig.pid();
    let rig = Arc::new(rig);
    println!(
        "idle: {sessions} interactive sessions at their prompt{}, through portcullis to a light upstream",
        if typed {
            ", each after typing a line"
        } else {
            ""
        }
    );

    let open = |count: usize| {
        let rig = rig.clone();
        runtime.block_on(async move {
            let opened = Arc::new(AtomicUsize::new(0));
            let mut held = Vec::with_capacity(count);
            // In waves, as users arrive; each session's shell has printed its prompt.
            for wave in (0..count).collect::<Vec<_>>().chunks(50) {
                let tasks: Vec<_> = wave
                    .iter()
                    .map(|&index| {
                        let rig = rig.clone();
                        let opened = opened.clone();
                        tokio::spawn(async move {
                            let ssh = rig.login_as(index, "light").await;
                            let mut channel = raw::shell(&ssh, 80, 24).await;
                            assert!(
                                raw::read_until(&mut channel, "light$ ", Duration::from_secs(60))
                                    .await
                            );
                            if typed {
                                // The light upstream echoes: the line shows, and its Enter
                                // makes the gate read the screen.
                                channel.data(&b"echo typed\r"[..]).await.unwrap();
                                assert!(
                                    raw::read_until(
                                        &mut channel,
                                        "typed\r",
                                        Duration::from_secs(60)
                                    )
                                    .await
                                );
                            }
                            opened.fetch_add(1, Ordering::Relaxed);
                            (ssh, channel)
                        })
                    })
                    .collect();
                for task in tasks {
                    held.push(task.await.unwrap());
                }
            }
            held
        })
    };
    // Warm-up: the first sessions fill pools and caches every later one reuses.
    drop(open(20));
    std::thread::sleep(Duration::from_secs(2));
    if !pause.is_zero() {
        println!("  bastion pid {pid}: opening in {}s", pause.as_secs());
        std::thread::sleep(pause);
    }
    let (rss_before, _) = memory_kib(pid);
    let held = open(sessions);
    // Let every connection's handshake buffers and first writes settle.
    std::thread::sleep(Duration::from_secs(5));
    let (rss_after, peak) = memory_kib(pid);
    let cpu_before = cpu_time(pid);
    let quiet = Duration::from_secs(10);
    std::thread::sleep(quiet);
    let cpu = cpu_time(pid) - cpu_before;
    let per_session = (rss_after.saturating_sub(rss_before)) as f64 / sessions as f64;
    println!(
        "  bastion memory: {rss_before} KiB before, {rss_after} KiB with {sessions} sessions (peak {peak} KiB): {per_session:.0} KiB per session; {} threads",
        threads(pid)
    );
    println!(
        "  bastion CPU while they idle: {:.2}s in {}s ({:.1}% of one core)",
        cpu.as_secs_f64(),
        quiet.as_secs(),
        100.0 * cpu.as_secs_f64() / quiet.as_secs_f64()
    );
    if !pause.is_zero() {
        println!("  holding the sessions {}s more", pause.as_secs());
        std::thread::sleep(pause);
    }
    drop(held);
    drop(upstream);
}

fn storm(runtime: &tokio::runtime::Runtime, logins: usize, within: Duration) {
    let sshd = Sshd::start();
    let account = upstream_account();
    let mut rig = Rig::new(logins, |config| {
        config.target("web01", &sshd, &account.name, "web01");
    });
    rig.bastion.vault_key_for("web01", &sshd);
    rig.bastion.start();
    let rig = Arc::new(rig);
    let stranger = Keypair::generate(rig.scratch.path(), "stranger");
    println!(
        "storm: {logins} logins in {}s: four in five by users from 10 addresses, one in five by an intruder (an unknown user) from 10 others",
        within.as_secs()
    );
    let started = Instant::now();
    let outcomes = runtime.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..logins {
            // Spread evenly over the window.
            let at = within * i as u32 / logins as u32;
            let rig = rig.clone();
            let stranger = stranger.clone();
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(at.saturating_sub(started.elapsed())).await;
                let good = i % 5 != 4;
                let ssh = if good {
                    let source = IpAddr::from([127, 0, 0, 10 + (i % 10) as u8]);
                    rig.login_from(source, "web01", &rig.key).await
                } else {
                    let source = IpAddr::from([127, 0, 0, 20 + (i % 10) as u8]);
                    match RawSsh::connect_from(source, rig.bastion.address(), &rig.host_key()).await
                    {
                        Ok(mut client) => client
                            .login_key("intruder+web01", &stranger)
                            .await
                            .then_some(client),
                        Err(_) => None,
                    }
                };
                let Some(ssh) = ssh else {
                    return (good, false);
                };
                let ran = raw::exec(&ssh, b"echo in").await;
                (good, ran.stdout_text() == "in\n")
            }));
        }
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap());
        }
        outcomes
    });
    let wall = started.elapsed();
    let good = outcomes.iter().filter(|(good, _)| *good).count();
    let good_in = outcomes.iter().filter(|(good, ok)| *good && *ok).count();
    let bad_in = outcomes.iter().filter(|(good, ok)| !*good && *ok).count();
    let failures = rig.bastion.audit_events("auth.failure").len();
    // Every refusal is logged; the audit log takes pre-login events within a budget.
    let log = rig.bastion.log();
    let refused = log.matches("authentication refused").count();
    let throttled_logged = log.matches("authentication throttled").count();
    let throttled = rig.bastion.audit_events("auth.throttled").len();
    println!(
        "  in {:.1}s: {good_in}/{good} good logins ran their command; {bad_in} intruder logins got in; logged: {refused} refused and {throttled_logged} throttled (audited within the pre-login budget: {failures} auth.failure, {throttled} auth.throttled); bastion running: {}",
        wall.as_secs_f64(),
        Arc::try_unwrap(rig)
            .ok()
            .map(|mut r| r.bastion.is_running())
            .unwrap_or(true)
    );
    assert_eq!(good_in, good, "a good login did not get in");
    assert_eq!(bad_in, 0, "an unknown key got in");
}

fn flood(runtime: &tokio::runtime::Runtime, connections: usize) {
    let sshd = Sshd::start();
    let account = upstream_account();
    let mut rig = Rig::new(connections, |config| {
        config.target("web01", &sshd, &account.name, "web01");
    });
    rig.bastion.vault_key_for("web01", &sshd);
    rig.bastion.start();
    let address: SocketAddr = rig.bastion.address();
    println!(
        "flood: {connections} connections from 127.0.0.2 that never authenticate, then a login from 127.0.0.1"
    );
    runtime.block_on(async {
        let mut idle = Vec::new();
        let mut refused = 0;
        for _ in 0..connections {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket
                .bind(SocketAddr::new(IpAddr::from([127, 0, 0, 2]), 0))
                .unwrap();
            match socket.connect(address).await {
                Ok(stream) => idle.push(stream),
                Err(_) => refused += 1,
            }
        }
        // How many the bastion still holds open once it has had its say.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut open = 0;
        for stream in &idle {
            let mut buffer = [0u8; 1024];
            // Drain what was sent (the banner); a closed one reads its end.
            loop {
                match stream.try_read(&mut buffer) {
                    Ok(0) => break,
                    Ok(_) => continue,
                    Err(_) => {
                        open += 1;
                        break;
                    }
                }
            }
        }
        let started = Instant::now();
        let ssh = rig.login("web01").await;
        let ran = raw::exec(&ssh, b"echo in").await;
        let took = started.elapsed();
        println!(
            "  {} connected ({refused} refused at connect), {open} still open; the real login ran its command in {:.0} ms ({:?})",
            idle.len(),
            took.as_secs_f64() * 1000.0,
            ran.stdout_text().trim()
        );
        assert_eq!(ran.stdout_text(), "in\n");
        drop(idle);
    });
}
