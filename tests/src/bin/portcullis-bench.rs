//! The relay benchmark: bulk stdout and connection setup through portcullis, against direct
//! OpenSSH and an OpenSSH ProxyJump, interleaved in one run on one machine so the ratios
//! hold even when the machine is noisy.
//!
//! ```text
//! cargo run --release -p portcullis-tests --bin portcullis-bench -- [--mib 1024] [--runs 5] [--setups 20]
//! cargo run --release -p portcullis-tests --bin portcullis-bench -- --gate [--mib 256] [--runs 5]
//! cargo run --release -p portcullis-tests --bin portcullis-bench -- --payloads [--mib 256] [--runs 3] [--only "sftp get"]
//! cargo run --release -p portcullis-tests --bin portcullis-bench -- --cluster [--mib 256] [--runs 5] [--setups 20] [--kills 20]
//! ```
//!
//! `--cluster` compares the state backends (SQLite, and a real PostgreSQL shared by two
//! nodes) on bulk relay and connection setup, then times a kill given on node b until the
//! client of a session on node a is disconnected (`--kills` times).
//!
//! `--payloads` compares the three routes on every kind of payload users send: text, random
//! bytes and zeros as an exec's stdout (`cat FILE`, `head -c N /dev/zero`), and a file of
//! random bytes through sftp, down (`get`) and up (`put`); with each kind's recording size.
//!
//! `--forward` compares portcullis without audit forwarding and with two forwarders (syslog
//! over TLS to a real rsyslog, and a webhook over HTTPS) on bulk relay and connection setup,
//! then writes a burst of audit events and times until every forwarder has delivered them.
//!
//! `--certificates` compares a target reached with a vaulted key and one reached with a
//! per-login certificate from the bastion's CA (`auth = "certificate"`: a key pair made and
//! signed for each login, which waits for the first channel to know whether it is a
//! terminal), on bulk relay and connection setup.
//!
//! `--gate` compares portcullis with command control off (no rules, `[recording] commands =
//! false`) and on (200 rules, commands followed) on a terminal channel (`ssh -tt … cat`),
//! where every byte of output goes through the gate's screen.
//!
//! The upstream is a real OpenSSH sshd on loopback; the bastion runs in this process with
//! recording on (its default), writing every byte to an asciicast file like in production.
//! The payload is a text file in the page cache (`cat FILE` upstream), so the upstream
//! spends almost nothing producing it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis::app::Server;
use portcullis::directory::Directory;
use portcullis::services::Services;
use portcullis_tests::{Keypair, Sshd};

struct Options {
    mib: u64,
    runs: usize,
    setups: usize,
    cipher: Option<String>,
    gate: bool,
    payloads: bool,
    cluster: bool,
    forward: bool,
    certificates: bool,
    kills: usize,
    /// With --payloads: only the kinds whose name contains this (for profiling one).
    only: Option<String>,
}

fn options() -> Options {
    let mut options = Options {
        mib: 1024,
        runs: 5,
        setups: 20,
        cipher: None,
        gate: false,
        payloads: false,
        cluster: false,
        forward: false,
        certificates: false,
        kills: 20,
        only: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = || {
            args.get(i + 1)
                .and_then(|v| v.parse().ok())
                .expect("a number after the flag")
        };
        match args[i].as_str() {
            "--mib" => options.mib = value() as u64,
            "--runs" => options.runs = value(),
            "--setups" => options.setups = value(),
            "--cipher" => options.cipher = args.get(i + 1).cloned(),
            "--only" => options.only = args.get(i + 1).cloned(),
            "--kills" => options.kills = value(),
            flag @ ("--cluster" | "--certificates" | "--forward" | "--gate" | "--payloads") => {
                *match flag {
                    "--cluster" => &mut options.cluster,
                    "--certificates" => &mut options.certificates,
                    "--forward" => &mut options.forward,
                    "--gate" => &mut options.gate,
                    _ => &mut options.payloads,
                } = true;
                i += 1;
                continue;
            }
            other => {
                panic!(
                    "unknown argument {other}; use --mib N --runs N --setups N --cipher NAME --gate --payloads [--only KIND] --cluster [--kills N] --forward --certificates"
                )
            }
        }
        i += 2;
    }
    assert!(
        [
            options.gate,
            options.payloads,
            options.cluster,
            options.forward,
            options.certificates,
        ]
        .iter()
        .filter(|on| **on)
        .count()
            <= 1,
        "--gate, --payloads, --cluster, --forward and --certificates are separate benchmarks: run one at a time"
    );
    options
}

/// How a client reaches the upstream.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Direct,
    ProxyJump,
    /// Through one of the bastions (by index).
    Portcullis(usize),
}

/// A bastion running in this process.
struct Endpoint {
    name: &'static str,
    port: u16,
    known_hosts: PathBuf,
    recordings: PathBuf,
    services: Arc<Services>,
}

impl Route {
    fn name(self, bench: &Bench) -> &'static str {
        match self {
            Route::Direct => "direct OpenSSH",
            Route::ProxyJump => "OpenSSH ProxyJump",
            Route::Portcullis(i) => bench.bastions[i].name,
        }
    }
}

struct Bench {
    cipher: Option<String>,
    sshd: Sshd,
    key: Keypair,
    bastions: Vec<Endpoint>,
    sshd_known_hosts: PathBuf,
    /// Ask for a terminal (`ssh -tt`).
    pty: bool,
}

impl Bench {
    fn ssh(&self, route: Route, remote: &str) -> Command {
        let mut command = self.client("ssh", route);
        if self.pty && remote != "true" {
            command.arg("-tt");
        }
        let (port, destination) = self.destination(route);
        command.args(["-p", &port, &destination]);
        command.arg(remote).stdin(Stdio::null());
        command
    }

    /// `sftp` along `route`, reading its batch from stdin.
    fn sftp(&self, route: Route) -> Command {
        let mut command = self.client("sftp", route);
        let (port, destination) = self.destination(route);
        command.args(["-P", &port, "-b", "-", &destination]);
        command
    }

    /// The port and user@host a route's client connects to.
    fn destination(&self, route: Route) -> (String, String) {
        match route {
            Route::Direct | Route::ProxyJump => (
                self.sshd.address().rsplit(':').next().unwrap().to_owned(),
                "root@127.0.0.1".to_owned(),
            ),
            Route::Portcullis(i) => (
                self.bastions[i].port.to_string(),
                "bench+target@127.0.0.1".to_owned(),
            ),
        }
    }

    /// `program` (ssh or sftp) with the options every route shares and this route's own.
    fn client(&self, program: &str, route: Route) -> Command {
        let mut command = Command::new(program);
        command.args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "LogLevel=ERROR",
        ]);
        command.arg("-i").arg(&self.key.private);
        if let Some(cipher) = &self.cipher {
            command.args(["-c", cipher]);
        }
        let sshd_port = self.sshd.address().rsplit(':').next().unwrap().to_owned();
        match route {
            Route::Direct | Route::ProxyJump => {
                command.arg("-o").arg(format!(
                    "UserKnownHostsFile={}",
                    self.sshd_known_hosts.display()
                ));
                if route == Route::ProxyJump {
                    // The jump host is an sshd of its own (the same binary and machine), as
                    // a plain OpenSSH bastion would be.
                    let cipher = self
                        .cipher
                        .as_ref()
                        .map(|c| format!("-c {c} "))
                        .unwrap_or_default();
                    command.arg("-o").arg(format!(
                        "ProxyCommand=ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o LogLevel=ERROR {cipher}-i {} -o UserKnownHostsFile={} -p {sshd_port} -W %h:%p root@127.0.0.1",
                        self.key.private.display(),
                        self.sshd_known_hosts.display()
                    ));
                }
            }
            Route::Portcullis(i) => {
                command.arg("-o").arg(format!(
                    "UserKnownHostsFile={}",
                    self.bastions[i].known_hosts.display()
                ));
            }
        }
        command
    }

    fn timed(&self, route: Route, remote: &str) -> Duration {
        self.timed_with_cpu(route, remote).wall
    }

    /// Wall time, and the CPU time this process (the bastion) and the whole machine spent
    /// meanwhile.
    fn timed_with_cpu(&self, route: Route, remote: &str) -> Measured {
        let meter = Meter::start();
        let status = self
            .ssh(route, remote)
            .stdout(Stdio::null())
            .status()
            .expect("run ssh");
        assert!(
            status.success(),
            "{} failed running {remote}",
            route.name(self)
        );
        meter.stop()
    }

    /// Runs an sftp batch along `route`: wall time and CPU time meanwhile.
    fn sftp_with_cpu(&self, route: Route, batch: &str) -> Measured {
        use std::io::Write;
        let meter = Meter::start();
        let mut child = self
            .sftp(route)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("run sftp");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(batch.as_bytes())
            .unwrap();
        let status = child.wait().expect("sftp");
        assert!(status.success(), "{} failed: {batch}", route.name(self));
        meter.stop()
    }

    /// Bytes of recording the bastions hold, once every recording is sealed (the client
    /// may exit a moment before the bastion has written the end).
    fn recorded_bytes(&self) -> u64 {
        let sealed = |path: &Path| {
            std::fs::read_to_string(path)
                .is_ok_and(|text| text.lines().any(|l| l.starts_with("end ")))
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let macs: Vec<PathBuf> = self
                .bastions
                .iter()
                .flat_map(|b| std::fs::read_dir(&b.recordings).into_iter().flatten())
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "hmac"))
                .collect();
            if !macs.is_empty() && macs.iter().all(|p| sealed(p)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.bastions
            .iter()
            .flat_map(|b| std::fs::read_dir(&b.recordings).into_iter().flatten())
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    }

    fn clear_recordings(&self) {
        for bastion in &self.bastions {
            if let Ok(entries) = std::fs::read_dir(&bastion.recordings) {
                for entry in entries.flatten() {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }
}

fn write_payload(path: &Path, mib: u64) {
    use std::io::Write;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let target = mib * 1024 * 1024;
    let mut written = 0u64;
    let mut n = 0u64;
    while written < target {
        let line = format!(
            "portcullis benchmark line {n:010} the quick brown fox jumps over the lazy dog 0123456789\n"
        );
        file.write_all(line.as_bytes()).unwrap();
        written += line.len() as u64;
        n += 1;
    }
    file.flush().unwrap();
    // Warm the page cache so every run reads from memory.
    let _ = Command::new("cat").arg(path).stdout(Stdio::null()).status();
}

/// What one run cost.
struct Measured {
    wall: Duration,
    /// CPU time of this process: the bastion (the clients and sshd are other processes).
    bastion: Duration,
    /// CPU time of the whole machine: every process on every core, the kernel included.
    machine: Duration,
}

/// Takes the wall clock and CPU counters at the start of a run.
struct Meter {
    started: Instant,
    bastion: Duration,
    machine: Duration,
}

impl Meter {
    fn start() -> Self {
        Self {
            started: Instant::now(),
            bastion: own_cpu_time(),
            machine: machine_cpu_time(),
        }
    }

    fn stop(self) -> Measured {
        Measured {
            wall: self.started.elapsed(),
            bastion: own_cpu_time().saturating_sub(self.bastion),
            machine: machine_cpu_time().saturating_sub(self.machine),
        }
    }
}

/// Busy CPU time of the whole machine so far, all cores (from /proc/stat: everything but
/// idle and iowait).
fn machine_cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .filter_map(|(_, f)| f.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// User + system CPU time of this process so far (from /proc/self/stat, in clock ticks).
fn own_cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .init();
    }
    let options = options();
    let scratch = tempfile::Builder::new().prefix("bench-").tempdir().unwrap();
    let sshd = Sshd::start();
    let key = Keypair::generate(scratch.path(), "bench");
    sshd.authorize(&key.public);
    let sshd_known_hosts = scratch.path().join("sshd_known_hosts");
    let port = sshd.address().rsplit(':').next().unwrap().to_owned();
    std::fs::write(
        &sshd_known_hosts,
        format!(
            "[127.0.0.1]:{port} {}\n127.0.0.1 {}\n",
            sshd.host_key(),
            sshd.host_key()
        ),
    )
    .unwrap();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // With --cluster: the shared database, and what nodes must share (master key, password).
    let postgres = options.cluster.then(|| {
        let postgres = portcullis_tests::Postgres::start();
        let created = postgres.psql("postgres", "CREATE DATABASE bench");
        assert_eq!(created.code, Some(0), "{created:?}");
        std::fs::write(scratch.path().join("db-password"), postgres.password()).unwrap();
        postgres
    });
    let node = |name: &str| -> String {
        let postgres = postgres.as_ref().expect("a database");
        format!(
            "[vault]\nmaster_key_file = {:?}\n\n[state]\nbackend = \"postgres\"\nurl = {:?}\n\
             password_file = {:?}\nsslmode = \"disable\"\n\n[cluster]\nnode = {name:?}\n",
            scratch
                .path()
                .join("cluster-master.key")
                .display()
                .to_string(),
            postgres.url("bench"),
            scratch.path().join("db-password").display().to_string(),
        )
    };
    // With --forward: a real rsyslog over TLS and an HTTPS webhook receiver.
    let receivers = options.forward.then(|| Receivers::start(scratch.path()));
    let bastions: Vec<Endpoint> = if options.cluster {
        vec![
            start_bastion(&runtime, &scratch, &sshd, &key, "portcullis on SQLite", ""),
            start_bastion(
                &runtime,
                &scratch,
                &sshd,
                &key,
                "portcullis on PostgreSQL (a)",
                &node("a"),
            ),
            start_bastion(
                &runtime,
                &scratch,
                &sshd,
                &key,
                "portcullis on PostgreSQL (b)",
                &node("b"),
            ),
        ]
    } else if options.certificates {
        vec![
            start_bastion(&runtime, &scratch, &sshd, &key, "vaulted key", ""),
            start_certificate_bastion(&runtime, &scratch, &sshd, &key, "per-login certificate"),
        ]
    } else if options.forward {
        vec![
            start_bastion(&runtime, &scratch, &sshd, &key, "no forwarding", ""),
            start_bastion(
                &runtime,
                &scratch,
                &sshd,
                &key,
                "forwarding (syslog + webhook)",
                &receivers.as_ref().expect("receivers").config(),
            ),
        ]
    } else if options.gate {
        vec![
            start_bastion(
                &runtime,
                &scratch,
                &sshd,
                &key,
                "gate off",
                "[recording]\ncommands = false\n",
            ),
            start_bastion(
                &runtime,
                &scratch,
                &sshd,
                &key,
                "gate on (200 rules)",
                &portcullis_policy::sample_rules_toml(200),
            ),
        ]
    } else {
        vec![start_bastion(
            &runtime,
            &scratch,
            &sshd,
            &key,
            "portcullis (recording on)",
            "",
        )]
    };
    let bench = Bench {
        cipher: options.cipher.clone(),
        sshd,
        key,
        bastions,
        sshd_known_hosts,
        pty: options.gate,
    };
    let routes: Vec<Route> =
        if options.gate || options.cluster || options.forward || options.certificates {
            vec![Route::Portcullis(0), Route::Portcullis(1)]
        } else {
            vec![Route::Direct, Route::ProxyJump, Route::Portcullis(0)]
        };

    for route in &routes {
        bench.timed(*route, "true"); // warm-up, and a check that each route works
    }
    if options.payloads {
        payloads(&bench, &routes, &scratch, &options);
        for bastion in &bench.bastions {
            runtime.block_on(bastion.services.drain(Duration::from_secs(5)));
        }
        return;
    }

    let payload = scratch.path().join("payload.txt");
    eprintln!("writing a {} MiB payload…", options.mib);
    write_payload(&payload, options.mib);
    let cat = format!("cat {}", payload.display());

    let mut bulk: Vec<Vec<Duration>> = vec![Vec::new(); routes.len()];
    let mut bastion_cpu: Vec<Vec<Duration>> = vec![Vec::new(); bench.bastions.len()];
    for run in 1..=options.runs {
        for (i, route) in routes.iter().enumerate() {
            bench.clear_recordings();
            let Measured {
                wall: took,
                bastion: cpu,
                ..
            } = bench.timed_with_cpu(*route, &cat);
            eprintln!(
                "run {run}: {:<28} {:>7.2} s",
                route.name(&bench),
                took.as_secs_f64()
            );
            bulk[i].push(took);
            if let Route::Portcullis(b) = route {
                bastion_cpu[*b].push(cpu);
            }
        }
    }
    bench.clear_recordings();
    let mut setup: Vec<Vec<Duration>> = vec![Vec::new(); routes.len()];
    for _ in 0..options.setups {
        for (i, route) in routes.iter().enumerate() {
            setup[i].push(bench.timed(*route, "true"));
        }
    }

    let mib = options.mib as f64;
    let bulk_medians: Vec<Duration> = bulk.iter_mut().map(|s| median(s)).collect();
    let setup_medians: Vec<Duration> = setup.iter_mut().map(|s| median(s)).collect();
    let throughput: Vec<f64> = bulk_medians.iter().map(|d| mib / d.as_secs_f64()).collect();
    println!(
        "\n{} MiB of stdout{}, median of {} interleaved runs; `ssh … true`, median of {}; client cipher: {}:",
        options.mib,
        if options.gate {
            " on a terminal (ssh -tt)"
        } else {
            ""
        },
        options.runs,
        options.setups,
        options.cipher.as_deref().unwrap_or("each client's default")
    );
    println!(
        "{:<28} {:>10} {:>12} {:>12}",
        "route", "bulk (s)", "MiB/s", "setup (ms)"
    );
    for (i, route) in routes.iter().enumerate() {
        println!(
            "{:<28} {:>10.2} {:>12.1} {:>12.1}",
            route.name(&bench),
            bulk_medians[i].as_secs_f64(),
            throughput[i],
            setup_medians[i].as_secs_f64() * 1000.0
        );
    }
    for (b, bastion) in bench.bastions.iter().enumerate() {
        if bastion_cpu[b].is_empty() {
            continue; // (--cluster's node b only gives kills)
        }
        println!(
            "{}: {:.2} s of bastion CPU per run (median) for {} MiB, recording included",
            bastion.name,
            median(&mut bastion_cpu[b]).as_secs_f64(),
            options.mib
        );
    }
    if options.forward {
        forward_burst(&bench.bastions[1], 20_000);
        let receivers = receivers.as_ref().expect("receivers");
        println!(
            "received: {} syslog messages, {} webhook events",
            receivers.rsyslog.messages().len(),
            receivers.webhook.events().len()
        );
    }
    if options.cluster {
        println!(
            "PostgreSQL / SQLite: throughput {:.3}x, setup time {:.3}x",
            throughput[1] / throughput[0],
            setup_medians[1].as_secs_f64() / setup_medians[0].as_secs_f64(),
        );
        kill_latency(&bench, &runtime, options.kills);
    } else if options.certificates {
        println!(
            "certificate / vaulted key: throughput {:.3}x, setup time {:.3}x",
            throughput[1] / throughput[0],
            setup_medians[1].as_secs_f64() / setup_medians[0].as_secs_f64(),
        );
    } else if options.forward {
        println!(
            "forwarding / none: throughput {:.3}x, setup time {:.3}x, bastion CPU {:.2}x",
            throughput[1] / throughput[0],
            setup_medians[1].as_secs_f64() / setup_medians[0].as_secs_f64(),
            median(&mut bastion_cpu[1]).as_secs_f64() / median(&mut bastion_cpu[0]).as_secs_f64()
        );
    } else if options.gate {
        println!(
            "gate on / gate off: throughput {:.3}x, bastion CPU {:.2}x",
            throughput[1] / throughput[0],
            median(&mut bastion_cpu[1]).as_secs_f64() / median(&mut bastion_cpu[0]).as_secs_f64()
        );
    } else {
        println!(
            "portcullis throughput: {:.2}x direct, {:.2}x ProxyJump; setup time: {:.2}x direct, {:.2}x ProxyJump",
            throughput[2] / throughput[0],
            throughput[2] / throughput[1],
            setup_medians[2].as_secs_f64() / setup_medians[0].as_secs_f64(),
            setup_medians[2].as_secs_f64() / setup_medians[1].as_secs_f64(),
        );
    }
    for bastion in &bench.bastions {
        runtime.block_on(bastion.services.drain(Duration::from_secs(5)));
    }
    drop(bench);
    drop(postgres);
}

/// Times `kills` kills given through node b (bastion 2) of a session running on node a
/// (bastion 1), from the call until the session's ssh client has exited.
fn kill_latency(bench: &Bench, runtime: &tokio::runtime::Runtime, kills: usize) {
    use std::io::BufRead;
    let (a, b) = (&bench.bastions[1].services, &bench.bastions[2].services);
    let mut samples = Vec::with_capacity(kills);
    for _ in 0..kills {
        let mut client = bench
            .ssh(Route::Portcullis(1), "echo up; exec sleep 600")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run ssh");
        let mut first = String::new();
        std::io::BufReader::new(client.stdout.as_mut().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert_eq!(first, "up\n", "the session did not start");
        let id = a.registry.list()[0].id.clone();
        let asked = Instant::now();
        runtime
            .block_on(portcullis::ops::kill(b, &id, "bench", "kill latency"))
            .expect("kill through node b");
        while client.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(1));
        }
        samples.push(asked.elapsed());
        // The next session is alone in a's registry once this one has left it.
        while !a.registry.list().is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    samples.sort();
    let p99 = samples[(samples.len() * 99).div_ceil(100) - 1];
    println!(
        "kill on node b → client on node a disconnected, {} kills: median {:.1} ms, p99 {:.1} ms (min {:.1}, max {:.1})",
        samples.len(),
        median(&mut samples).as_secs_f64() * 1000.0,
        p99.as_secs_f64() * 1000.0,
        samples[0].as_secs_f64() * 1000.0,
        samples[samples.len() - 1].as_secs_f64() * 1000.0,
    );
}

/// Every kind of payload along every route, interleaved; one table.
fn payloads(bench: &Bench, routes: &[Route], scratch: &tempfile::TempDir, options: &Options) {
    let size = options.mib * 1024 * 1024;
    let text = scratch.path().join("payload.txt");
    eprintln!("writing {} MiB payloads…", options.mib);
    write_payload(&text, options.mib);
    let random = scratch.path().join("payload.bin");
    let made = Command::new("head")
        .args(["-c", &size.to_string(), "/dev/urandom"])
        .stdout(std::fs::File::create(&random).unwrap())
        .status()
        .unwrap();
    assert!(made.success());
    let _ = Command::new("cat")
        .arg(&random)
        .stdout(Stdio::null())
        .status();
    let uploaded = scratch.path().join("uploaded.bin");
    enum Run {
        Exec(String),
        Sftp(String),
    }
    let kinds: Vec<(&str, Run)> = vec![
        (
            "exec: text (cat)",
            Run::Exec(format!("cat {}", text.display())),
        ),
        (
            "exec: random (cat)",
            Run::Exec(format!("cat {}", random.display())),
        ),
        (
            "exec: zeros (head -c)",
            Run::Exec(format!("head -c {size} /dev/zero")),
        ),
        (
            "sftp get (random)",
            Run::Sftp(format!("get {} /dev/null\n", random.display())),
        ),
        (
            "sftp put (random)",
            Run::Sftp(format!("put {} {}\n", random.display(), uploaded.display())),
        ),
    ];
    let kinds: Vec<(&str, Run)> = kinds
        .into_iter()
        .filter(|(name, _)| {
            options
                .only
                .as_deref()
                .is_none_or(|only| name.contains(only))
        })
        .collect();
    assert!(!kinds.is_empty(), "--only matches no payload kind");
    // [kind][route] wall and machine CPU times; [kind] bastion CPU and recording size.
    let mut walls = vec![vec![Vec::new(); routes.len()]; kinds.len()];
    let mut machine = vec![vec![Vec::new(); routes.len()]; kinds.len()];
    let mut cpu = vec![Vec::new(); kinds.len()];
    let mut recorded = vec![0u64; kinds.len()];
    for run in 1..=options.runs {
        for (k, (name, how)) in kinds.iter().enumerate() {
            for (r, route) in routes.iter().enumerate() {
                bench.clear_recordings();
                let measured = match how {
                    Run::Exec(remote) => bench.timed_with_cpu(*route, remote),
                    Run::Sftp(batch) => bench.sftp_with_cpu(*route, batch),
                };
                eprintln!(
                    "run {run}: {name:<24} {:<28} {:>7.2} s",
                    route.name(bench),
                    measured.wall.as_secs_f64()
                );
                walls[k][r].push(measured.wall);
                machine[k][r].push(measured.machine);
                if matches!(route, Route::Portcullis(_)) {
                    cpu[k].push(measured.bastion);
                    recorded[k] = bench.recorded_bytes();
                }
            }
        }
    }
    bench.clear_recordings();
    println!(
        "\n{} MiB per payload, median of {} interleaved runs; client cipher: {}:",
        options.mib,
        options.runs,
        options.cipher.as_deref().unwrap_or("each client's default")
    );
    println!(
        "{:<24} {:>10} {:>10} {:>11} {:>9} {:>9} {:>12} {:>13} {:>22}",
        "payload",
        "direct s",
        "jump s",
        "portcullis",
        "÷direct",
        "÷jump",
        "CPU s/GiB",
        "recording",
        "machine CPU s/GiB d/j/p"
    );
    let gib = options.mib as f64 / 1024.0;
    for (k, (name, _)) in kinds.iter().enumerate() {
        let medians: Vec<f64> = walls[k]
            .iter_mut()
            .map(|s| median(s).as_secs_f64())
            .collect();
        let busy: Vec<f64> = machine[k]
            .iter_mut()
            .map(|s| median(s).as_secs_f64() / gib)
            .collect();
        println!(
            "{:<24} {:>10.2} {:>10.2} {:>11.2} {:>8.2}x {:>8.2}x {:>12.2} {:>12.3}% {:>8.1}/{:.1}/{:.1}",
            name,
            medians[0],
            medians[1],
            medians[2],
            medians[0] / medians[2],
            medians[1] / medians[2],
            median(&mut cpu[k]).as_secs_f64() / gib,
            recorded[k] as f64 * 100.0 / size as f64,
            busy[0],
            busy[1],
            busy[2]
        );
    }
    println!(
        "(÷direct, ÷jump: throughput through portcullis relative to that route; CPU: the bastion's; recording: its size against the payload's;\n \
         machine CPU: every process and the kernel, direct/jump/portcullis — on a machine with N cores a route needs at least machine CPU ÷ N of wall time)"
    );
}

/// A bastion in this process, on its production code path, in front of `sshd`.
fn start_bastion(
    runtime: &tokio::runtime::Runtime,
    scratch: &tempfile::TempDir,
    sshd: &Sshd,
    key: &Keypair,
    name: &'static str,
    extra: &str,
) -> Endpoint {
    start_bastion_reaching(
        runtime,
        scratch,
        sshd,
        key,
        name,
        extra,
        "credential = \"target\"",
    )
}

/// A bastion whose target trusts the bastion's CA: each login gets a fresh certificate.
fn start_certificate_bastion(
    runtime: &tokio::runtime::Runtime,
    scratch: &tempfile::TempDir,
    sshd: &Sshd,
    key: &Keypair,
    name: &'static str,
) -> Endpoint {
    let endpoint = start_bastion_reaching(
        runtime,
        scratch,
        sshd,
        key,
        name,
        "",
        "auth = \"certificate\"",
    );
    let vault = &endpoint.services.vault;
    runtime.block_on(vault.user_ca()).expect("the bastion's CA");
    let lines: Vec<String> = runtime
        .block_on(vault.published_user_cas())
        .expect("the CA's public key")
        .iter()
        .map(|ca| ca.line())
        .collect();
    sshd.trust_user_cas(&(lines.join("\n") + "\n"));
    endpoint
}

/// A bastion in front of `sshd`, its target reached as `target_auth` says.
fn start_bastion_reaching(
    runtime: &tokio::runtime::Runtime,
    scratch: &tempfile::TempDir,
    sshd: &Sshd,
    key: &Keypair,
    name: &'static str,
    extra: &str,
    target_auth: &str,
) -> Endpoint {
    let data = scratch.path().join(format!(
        "data-{}",
        name.replace(|c: char| !c.is_alphanumeric(), "-")
    ));
    let config_text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = {data:?}\n\n[[users]]\nname = \"bench\"\npublic_keys = [{public:?}]\n\n\
         [[targets]]\nname = \"target\"\naddress = {address:?}\nlogin = \"root\"\n{target_auth}\nhost_key = {host:?}\n\n\
         [[roles]]\nname = \"bench\"\nmembers = [\"bench\"]\ntargets = [\"target\"]\n\n{extra}",
        data = data.display().to_string(),
        public = key.public,
        address = sshd.address(),
        host = sshd.host_key(),
    );
    let config = portcullis_config::from_toml_str(&config_text).expect("bench config");
    let directory = Directory::from_config(&config).expect("bench identities");
    let services = Arc::new(
        runtime
            .block_on(Services::open(
                config,
                directory,
                None,
                portcullis_policy::SystemClock::shared(),
            ))
            .expect("open the bastion"),
    );
    let credential = portcullis::vault::generate_ed25519("bench").unwrap();
    runtime
        .block_on(services.vault.put_private_key("target", &credential, true))
        .unwrap();
    sshd.authorize(&credential.public_key().to_openssh().unwrap());
    let server = runtime
        .block_on(Server::bind(services.clone()))
        .expect("bind");
    let port = server.local_addr().unwrap().port();
    runtime.spawn(server.run());
    let forwarders =
        portcullis::forward::prepare(&services.config, &services.metrics.forwarders).unwrap();
    if !forwarders.is_empty() {
        runtime.spawn(portcullis::forward::run(
            services.clone(),
            forwarders,
            tokio_util::sync::CancellationToken::new(),
        ));
    }
    let known_hosts = scratch.path().join(format!("bastion_known_hosts-{port}"));
    std::fs::write(
        &known_hosts,
        format!(
            "[127.0.0.1]:{port} {}\n",
            services.host_key().public_key().to_openssh().unwrap()
        ),
    )
    .unwrap();
    Endpoint {
        name,
        port,
        known_hosts,
        recordings: data.join("recordings"),
        services,
    }
}

/// The receivers of `--forward`.
struct Receivers {
    rsyslog: portcullis_tests::rsyslog::Rsyslog,
    webhook: portcullis_tests::webhook::WebhookReceiver,
}

impl Receivers {
    fn start(dir: &Path) -> Self {
        let webhook_dir = dir.join("webhook");
        std::fs::create_dir_all(&webhook_dir).unwrap();
        Self {
            rsyslog: portcullis_tests::rsyslog::Rsyslog::start(
                portcullis_tests::rsyslog::Transport::Tls,
            ),
            webhook: portcullis_tests::webhook::WebhookReceiver::start(&webhook_dir),
        }
    }

    /// Every event to both.
    fn config(&self) -> String {
        format!(
            "[[audit.forward]]\nname = \"syslog\"\nkind = \"syslog\"\naddress = {:?}\nca_file = {:?}\nmax_lag = 1000000\n\n\
             [[audit.forward]]\nname = \"webhook\"\nkind = \"webhook\"\nurl = {:?}\nca_file = {:?}\nmax_lag = 1000000\n",
            self.rsyslog.address(),
            self.rsyslog.ca_file().unwrap().display().to_string(),
            self.webhook.url("/events"),
            self.webhook.ca_file().display().to_string(),
        )
    }
}

/// Writes `events` audit events at once and times, for each forwarder, until it has
/// delivered (and, for syslog, confirmed) all of them.
fn forward_burst(bastion: &Endpoint, events: u64) {
    let services = &bastion.services;
    let lag = |name: &str| {
        services
            .metrics
            .forwarders
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.lag(services.audit.line_count()))
            .unwrap()
    };
    let caught_up = |name: &str| {
        portcullis_tests::util::wait_for(Duration::from_secs(300), || {
            (lag(name) == 0).then_some(())
        })
        .unwrap_or_else(|| {
            let failures = services
                .metrics
                .forwarders
                .iter()
                .map(|f| {
                    format!(
                        "{}: lag {}, failures {}",
                        f.name,
                        f.lag(services.audit.line_count()),
                        f.failures.load(std::sync::atomic::Ordering::Relaxed)
                    )
                })
                .collect::<Vec<_>>();
            panic!("{name} did not catch up: {failures:?}")
        });
    };
    caught_up("syslog");
    caught_up("webhook");
    let started = Instant::now();
    for n in 0..events {
        services.audit.record(
            portcullis::audit::AuditEvent::new("bench.event")
                .with("n", n)
                .with("user", "bench")
                .with("line", "systemctl status nginx --no-pager"),
        );
    }
    let written = started.elapsed();
    println!(
        "\nburst of {events} audit events: written in {:.2} s ({:.0} events/s)",
        written.as_secs_f64(),
        events as f64 / written.as_secs_f64()
    );
    let mut pending = vec!["syslog", "webhook"];
    while !pending.is_empty() {
        let done = portcullis_tests::util::wait_for(Duration::from_secs(300), || {
            pending.iter().position(|name| lag(name) == 0)
        })
        .expect("the forwarders catch up");
        let name = pending.remove(done);
        let took = started.elapsed();
        println!(
            "{name:<8} delivered all of them {:.2} s after the first was written ({:.0} events/s)",
            took.as_secs_f64(),
            events as f64 / took.as_secs_f64()
        );
    }
}
