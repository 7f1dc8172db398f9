//! Starting and stopping: config problems stop `serve` before anything exists, a wrong
//! master key changes nothing, garbage on the socket changes nothing, and SIGTERM in the
//! middle of a session tells the user why and leaves a sealed recording.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use portcullis_tests::util::sha256_file;
use portcullis_tests::{Bastion, ConfigText, Keypair, Sshd, Tmux, World};

#[test]
fn sigterm_mid_session_tells_the_user_and_seals_the_recording() {
    let mut world = World::start(|config, _, _| {
        config.server("shutdown_grace = \"10s\"");
    });
    let tmux = Tmux::start(&world.alice("alice+web01").shell_line(&["-tt"]), 100, 30);
    // Wait for output only the remote shell can produce (the local terminal echoes typing).
    tmux.line("echo before-$((20+1))");
    tmux.wait_for_text("before-21", Duration::from_secs(20));

    let started = Instant::now();
    let code = world.bastion.terminate();
    assert_eq!(code, Some(0), "{}", world.bastion.log());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown took {:?}",
        started.elapsed()
    );

    tmux.wait_for_text(
        "portcullis: the bastion is shutting down",
        Duration::from_secs(10),
    );
    assert!(
        tmux.wait_exit(Duration::from_secs(10)).is_some(),
        "the client ended"
    );

    let casts = world.bastion.recordings();
    assert_eq!(
        casts.len(),
        1,
        "{}\n{:#?}",
        world.bastion.log(),
        world.bastion.audit()
    );
    let text = std::fs::read_to_string(&casts[0]).unwrap();
    assert!(text.contains("before-21"));
    assert!(
        text.trim_end()
            .ends_with(r#""m","end: ended by the bastion: the bastion is shutting down"]"#),
        "{}",
        text.lines().last().unwrap()
    );
    let verify = world
        .bastion
        .cli(&["recordings", "verify", casts[0].to_str().unwrap()]);
    assert_eq!(verify.code, Some(0), "{verify:?}");

    let end = world.bastion.audit_events("session.end");
    assert_eq!(end.len(), 1);
    assert_eq!(end[0]["reason"], "shutdown");
    assert_eq!(world.bastion.audit_events("server.stop").len(), 1);
    let verify = world.bastion.cli(&["audit", "verify"]);
    assert_eq!(verify.code, Some(0), "{verify:?}");
}

fn good_config(sshd: &Sshd, alice: &Keypair) -> ConfigText {
    let mut config = ConfigText::default();
    config
        .user("alice", &[&alice.public])
        .target("web01", sshd, "root", "web01")
        .role("web-admins", &["alice"], &["web*"]);
    config
}

#[test]
fn a_config_typo_is_named_with_its_line_and_nothing_starts() {
    let sshd = Sshd::start();
    let scratch = tempfile::tempdir().unwrap();
    let alice = Keypair::generate(scratch.path(), "alice");
    let port = portcullis_tests::util::free_port();
    let mut config = good_config(&sshd, &alice);
    config.raw(&format!("[recording]\ninptu = true\n\n[[targets]]\nname = \"db01\"\naddress = \"127.0.0.1:{port}\"\n"));
    let bastion = Bastion::new(&config);

    let checked = bastion.cli(&["check-config"]);
    assert_eq!(checked.code, Some(64), "{checked:?}");
    let text = std::fs::read_to_string(bastion.config_path()).unwrap();
    let typo_line = text.lines().position(|l| l.starts_with("inptu")).unwrap() + 1;
    assert!(
        checked
            .stderr
            .contains(&format!(":line {typo_line}: recording.inptu: unknown key")),
        "{}",
        checked.stderr
    );
    // Every problem in one run: the incomplete target too.
    assert!(
        checked.stderr.contains("targets[1].login: is missing"),
        "{}",
        checked.stderr
    );
    assert!(
        checked.stderr.contains("targets[1].host_key: is missing"),
        "{}",
        checked.stderr
    );

    let served = bastion.cli(&["serve"]);
    assert_eq!(served.code, Some(64), "{served:?}");
    assert!(served.stderr.contains("recording.inptu"));
    assert!(!bastion.data_dir().exists(), "nothing was created");
}

#[test]
fn a_bad_key_in_the_config_is_named() {
    let sshd = Sshd::start();
    let scratch = tempfile::tempdir().unwrap();
    let alice = Keypair::generate(scratch.path(), "alice");
    let mut config = good_config(&sshd, &alice);
    config.user("bob", &["ssh-ed25519 not-base64!"]);
    let bastion = Bastion::new(&config);
    let checked = bastion.cli(&["check-config"]);
    assert_eq!(checked.code, Some(64), "{checked:?}");
    assert!(
        checked
            .stderr
            .contains("users[1].public_keys[0]: not an OpenSSH public key"),
        "{}",
        checked.stderr
    );
    let good = Bastion::new(&good_config(&sshd, &alice));
    let checked = good.cli(&["check-config"]);
    assert_eq!(checked.code, Some(0), "{checked:?}");
    assert!(checked.stdout.ends_with(": OK\n"));
}

#[test]
fn a_missing_config_file_is_a_clear_error() {
    let bastion = Bastion::new(&ConfigText::default());
    std::fs::remove_file(bastion.config_path()).unwrap();
    let served = bastion.cli(&["serve"]);
    assert_eq!(served.code, Some(64));
    assert!(
        served.stderr.contains("cannot read config file"),
        "{served:?}"
    );
}

#[test]
fn a_wrong_master_key_is_refused_and_changes_nothing() {
    let mut world = World::start(|_, _, _| {});
    assert_eq!(world.bastion.terminate(), Some(0));
    let db = world.bastion.data_dir().join("state.db");
    let before = sha256_file(&db);
    let audit_before = sha256_file(&world.bastion.data_dir().join("audit.jsonl"));

    world.bastion.env("PORTCULLIS_MASTER_KEY", &"ab".repeat(32));
    let served = world.bastion.cli(&["serve"]);
    assert_eq!(served.code, Some(1), "{served:?}");
    assert!(
        served.stderr.contains("does not open this vault"),
        "{}",
        served.stderr
    );
    assert!(
        served.stderr.contains("$PORTCULLIS_MASTER_KEY"),
        "{}",
        served.stderr
    );
    let listed = world.bastion.cli(&["vault", "list"]);
    assert_eq!(listed.code, Some(1));
    assert!(listed.stderr.contains("does not open this vault"));
    assert_eq!(sha256_file(&db), before, "the vault is untouched");
    assert_eq!(
        sha256_file(&world.bastion.data_dir().join("audit.jsonl")),
        audit_before
    );

    let mut world_malformed = world;
    world_malformed
        .bastion
        .env("PORTCULLIS_MASTER_KEY", "not-a-key");
    let served = world_malformed.bastion.cli(&["serve"]);
    assert_eq!(served.code, Some(1));
    assert!(
        served.stderr.contains("must be 64 hex digits"),
        "{}",
        served.stderr
    );
}

#[test]
fn garbage_on_the_socket_is_dropped_and_changes_nothing() {
    let world = World::start(|_, _, _| {});
    let events_before = world.bastion.audit().len();
    for payload in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0u8, 255, 13, 10, 7, 7, 7][..],
        &b"SSH-2.0-x\r\n\x00\x00\x00\x10garbage-packet!!"[..],
    ] {
        let mut stream = TcpStream::connect(world.bastion.address()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let _ = stream.write_all(payload);
        let mut sink = Vec::new();
        // The bastion sends its banner and then closes; read until it does.
        let _ = stream.read_to_end(&mut sink);
        assert!(
            String::from_utf8_lossy(&sink).starts_with("SSH-2.0-portcullis"),
            "{sink:?}"
        );
    }
    let ran = world.alice("alice+web01").exec("echo still-serving");
    assert_eq!(ran.stdout, "still-serving\n");
    let new_events: Vec<String> = world.bastion.audit()[events_before..]
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        !new_events.iter().any(|e| e.starts_with("auth.failure")),
        "{new_events:?}"
    );
}

#[test]
fn a_client_that_never_authenticates_is_disconnected() {
    let world = World::start(|config, _, _| {
        config.server("login_grace_time = \"1s\"");
    });
    let mut stream = TcpStream::connect(world.bastion.address()).unwrap();
    stream.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let started = Instant::now();
    let mut sink = Vec::new();
    let _ = stream.read_to_end(&mut sink);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "held for {:?}",
        started.elapsed()
    );
}

#[test]
fn a_session_the_bastion_was_killed_under_is_ended_at_its_next_start() {
    let mut world = World::start(|_, _, _| {});
    let mut client = world
        .alice("alice+web01")
        .ssh_command(Some("echo running; sleep 120"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(client.stdout.as_mut().unwrap()),
        &mut first,
    )
    .unwrap();
    assert_eq!(first, "running\n");
    let started = world.bastion.wait_for_audit("session.start", |_| true);
    let session = started["session"].as_str().unwrap().to_owned();

    // No SIGTERM, no drain: the process is gone and its session was never ended.
    let pid = world.bastion.pid().unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    world.bastion.terminate();
    portcullis_tests::util::stop(&mut client);
    assert!(world.bastion.audit_events("session.end").is_empty());

    world.bastion.start();
    let ended = world
        .bastion
        .wait_for_audit("session.end", |e| e["session"] == session.as_str());
    assert_eq!(ended["reason"], "bastion_crashed", "{ended}");
    assert_eq!(ended["side"], "bastion", "{ended}");
    assert_eq!(ended["user"], "alice", "{ended}");
    assert_eq!(ended["target"], "web01", "{ended}");
    // Once: a second start finds nothing left open.
    world.bastion.terminate();
    world.bastion.start();
    let ran = world.alice("alice+web01").exec("echo after-$((1+1))");
    assert_eq!(ran.stdout, "after-2\n", "{ran:?}");
    let ends: Vec<_> = world
        .bastion
        .audit_events("session.end")
        .into_iter()
        .filter(|e| e["session"] == session.as_str())
        .collect();
    assert_eq!(ends.len(), 1, "{ends:#?}");
}
