//! The load harness: the real portcullis binary (started by the harness, measured from
//! /proc) under many sessions at once. Not a test: a command whose figures go in the README.
//!
//! ```text
//! cargo build --release -p portcullis-tests --bins
//! target/release/portcullis-load traffic [--sessions 200] [--seconds 60] [--rate-kib 32]
//! target/release/portcullis-load idle [--sessions 1000]
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
//!   and its CPU while they idle.
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
use portcullis_tests::{Bastion, ConfigText, Keypair, Sshd};
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
            number("--rate-kib", 32) as usize,
        ),
        "idle" => idle(
            &runtime,
            number("--sessions", 1000) as usize,
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
        config.server(&format!(
            "max_connections = {}\nmax_unauthenticated_per_source = 100",
            sessions + 200
        ));
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

    async fn login_from(&self, source: IpAddr, target: &str, key: &Keypair) -> Option<RawSsh> {
        let mut ssh = RawSsh::connect_from(source, self.bastion.address(), &self.host_key())
            .await
            .ok()?;
        ssh.login_key(&format!("{USER}+{target}"), key)
            .await
            .then_some(ssh)
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

/// Bytes a session sends: xorshift noise (binary for exec channels; printable with a line
/// end every 64 bytes for terminals, as typing would be).
fn payload(seed: u64, len: usize, terminal: bool) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if !terminal {
                (x >> 24) as u8
            } else if i % 64 == 63 {
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
}

/// One session of `traffic`: sends paced noise for `length`, reads it all back.
async fn moving_session(rig: Arc<Rig>, index: usize, length: Duration, rate: usize) -> Moved {
    let terminal = index % 2 == 1;
    let ssh = rig.login("web01").await;
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
    assert!(raw::read_until(&mut channel, "READY", Duration::from_secs(60)).await);
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
    // Skip what is left of the READY line (a terminal may send "\r\n" or "\n").
    let mut skipping = true;
    while received.len() < expected {
        let Some(message) = tokio::time::timeout(Duration::from_secs(120), reader.wait())
            .await
            .ok()
            .flatten()
        else {
            break;
        };
        if let ChannelMsg::Data { data } = message {
            let mut bytes = &data[..];
            if skipping {
                while let [b'\r' | b'\n', rest @ ..] = bytes {
                    bytes = rest;
                }
                skipping = bytes.is_empty();
            }
            received.extend_from_slice(bytes);
        }
    }
    let writer = sending.await.unwrap();
    let _ = writer.eof().await;
    let _ = writer.close().await;
    Moved {
        terminal,
        sent: expected,
        intact: received.len() == expected && sha256(&received) == sent_digest,
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
    assert!(raw::read_until(&mut channel, "READY", Duration::from_secs(60)).await);
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

fn traffic(runtime: &tokio::runtime::Runtime, sessions: usize, length: Duration, rate: usize) {
    let sshd = Sshd::start();
    let rig = Rig::new(sessions, |config| {
        config.target("web01", &sshd, "root", "web01");
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
        let through = echo_latency(&rig.login("web01").await, 200).await;
        let mut direct_ssh = RawSsh::connect(sshd.address().parse().unwrap(), sshd.host_key())
            .await
            .unwrap();
        assert!(direct_ssh.login_key("root", &rig.key).await);
        let direct = echo_latency(&direct_ssh, 200).await;
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
fn idle(runtime: &tokio::runtime::Runtime, sessions: usize, pause: Duration) {
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
        "idle: {sessions} interactive sessions at their prompt, through portcullis to a light upstream"
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
                    .map(|_| {
                        let rig = rig.clone();
                        let opened = opened.clone();
                        tokio::spawn(async move {
                            let ssh = rig.login("light").await;
                            let mut channel = raw::shell(&ssh, 80, 24).await;
                            assert!(
                                raw::read_until(&mut channel, "light$ ", Duration::from_secs(60))
                                    .await
                            );
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
    let mut rig = Rig::new(logins, |config| {
        config.target("web01", &sshd, "root", "web01");
    });
    rig.bastion.vault_key_for("web01", &sshd);
    rig.bastion.start();
    let rig = Arc::new(rig);
    let stranger = Keypair::generate(rig.scratch.path(), "stranger");
    println!(
        "storm: {logins} logins in {}s from 10 addresses, every fifth with an unknown key",
        within.as_secs()
    );
    let started = Instant::now();
    let outcomes = runtime.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..logins {
            // Spread evenly over the window.
            let at = within * i as u32 / logins as u32;
            let rig = rig.clone();
            let key = if i % 5 == 4 {
                stranger.clone()
            } else {
                rig.key.clone()
            };
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(at.saturating_sub(started.elapsed())).await;
                let source = IpAddr::from([127, 0, 0, 10 + (i % 10) as u8]);
                let good = i % 5 != 4;
                let Some(ssh) = rig.login_from(source, "web01", &key).await else {
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
    let throttled = rig.bastion.audit_events("auth.throttled").len();
    println!(
        "  in {:.1}s: {good_in}/{good} good logins ran their command; {bad_in} unknown-key logins got in; auth.failure events: {failures}, auth.throttled: {throttled}; bastion running: {}",
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
    let mut rig = Rig::new(connections, |config| {
        config.target("web01", &sshd, "root", "web01");
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
