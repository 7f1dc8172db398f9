//! Faults under a live bastion, with real parts failing for real: the target's sshd killed
//! or frozen mid-session, the bastion itself killed, its audit log's disk full, its
//! recordings directory read-only, its state database locked or corrupt, and a shutdown with
//! fifty sessions open. In every case the user is told why in a sentence, nothing hangs, and
//! the evidence is complete up to the fault and verifies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::BufRead;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use portcullis_tests::disk::SmallDisk;
use portcullis_tests::util::{Collected, stop, wait_for};
use portcullis_tests::{Sshd, Tmux, World};

/// An ssh client running `echo running; sleep 120` through the bastion, once it has printed
/// `running` (so its session is relaying), with its stderr collected.
struct LongCommand {
    child: Child,
    stderr: Collected,
}

impl LongCommand {
    fn start(world: &World) -> Self {
        let mut child = world
            .alice("alice+web01")
            .ssh_command(Some("echo running; sleep 120"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Collected::start(child.stderr.take().unwrap());
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert_eq!(first, "running\n", "stderr: {}", stderr.text());
        Self { child, stderr }
    }

    /// The client's exit code, once it has exited on its own.
    fn wait_exit(&mut self) -> Option<i32> {
        wait_for(Duration::from_secs(20), || {
            self.child.try_wait().ok().flatten()
        })
        .map(|status| status.code())
        .unwrap_or_else(|| panic!("the client did not exit; stderr: {}", self.stderr.text()))
    }
}

impl Drop for LongCommand {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Frozen sshd processes are thawed and killed at the end, whatever the test did.
struct Frozen<'a>(&'a Sshd);

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        self.0.signal_connections("CONT");
        self.0.signal_connections("KILL");
    }
}

#[test]
fn a_target_killed_mid_session_is_named_to_the_user_and_in_the_evidence() {
    let world = World::start(|_, _, _| {});
    let tmux = Tmux::start(&world.alice("alice+web01").shell_line(&["-tt"]), 100, 30);
    tmux.line("echo before-$((20+1))");
    tmux.wait_for_text("before-21", Duration::from_secs(20));

    let killed = Instant::now();
    assert!(world.sshd.signal_connections("KILL") > 0, "no sshd to kill");
    tmux.wait_for_text(
        "portcullis: web01 closed the connection",
        Duration::from_secs(20),
    );
    let told = killed.elapsed();
    println!("the user was told {told:?} after the target's sshd was killed");
    // Nothing waits on a timer here (the connection's end is seen at once): the bound only
    // leaves a loaded machine room, and the figure above is what it takes.
    assert!(told < Duration::from_secs(3), "told after {told:?}");
    assert!(tmux.wait_exit(Duration::from_secs(20)).is_some());

    let end = world
        .bastion
        .wait_for_audit("session.end", |e| e["user"] == "alice");
    assert_eq!(end["reason"], "upstream_lost", "{end}");
    assert_eq!(end["side"], "upstream", "{end}");
    assert!(
        end["detail"]
            .as_str()
            .unwrap()
            .starts_with("web01 closed the connection"),
        "{end}"
    );
    let channel = world.bastion.wait_for_audit("channel.end", |_| true);
    assert!(
        channel["end"]
            .as_str()
            .unwrap()
            .starts_with("connection lost: web01 closed the connection"),
        "{channel}"
    );

    // The recording holds the session up to the loss, says why it ended, and is sealed.
    let casts = world.bastion.recordings();
    assert_eq!(casts.len(), 1);
    let text = std::fs::read_to_string(&casts[0]).unwrap();
    assert!(text.contains("before-21"));
    let last = text.lines().last().unwrap();
    assert!(
        last.contains(r#""m","end: connection lost: web01 closed the connection"#),
        "{last}"
    );
    let verify = world
        .bastion
        .cli(&["recordings", "verify", casts[0].to_str().unwrap()]);
    assert_eq!(verify.code, Some(0), "{verify:?}");
    let verify = world.bastion.cli(&["audit", "verify"]);
    assert_eq!(verify.code, Some(0), "{verify:?}");
}

#[test]
fn a_target_that_hangs_is_given_up_on_by_keepalives_and_nothing_hangs() {
    let world = World::start(|config, _, _| {
        config.server("keepalive_interval = \"1s\"");
    });
    let mut client = LongCommand::start(&world);

    let frozen = Frozen(&world.sshd);
    let stopped = Instant::now();
    assert!(world.sshd.signal_connections("STOP") > 0, "no sshd to stop");
    // Four seconds of silence (a keepalive each second, three unanswered) and it is given up.
    client.stderr.wait_for_text(
        "portcullis: web01 stopped answering (no reply to keepalives for 4s)",
        Duration::from_secs(30),
    );
    println!(
        "the user was told {:?} after the target froze (keepalive bound: 4 s)",
        stopped.elapsed()
    );
    assert_eq!(client.wait_exit(), Some(255));
    let end = world
        .bastion
        .wait_for_audit("session.end", |e| e["user"] == "alice");
    assert_eq!(end["reason"], "upstream_lost", "{end}");
    assert_eq!(
        end["detail"],
        "web01 stopped answering (no reply to keepalives for 4s)"
    );
    drop(frozen);

    // The bastion itself is fine: the next session (to a live sshd process) works.
    let ran = world.alice("alice+web01").exec("echo after-$((1+1))");
    assert_eq!(ran.stdout, "after-2\n", "{ran:?}");
}

#[test]
fn a_bastion_killed_mid_session_leaves_evidence_that_verifies_and_is_sealed_at_its_next_start() {
    let mut world = World::start(|_, _, _| {});
    let tmux = Tmux::start(&world.alice("alice+web01").shell_line(&["-tt"]), 100, 30);
    tmux.line("echo marker-$((40+2))");
    tmux.wait_for_text("marker-42", Duration::from_secs(20));
    // The recording reaches the disk within its flush interval (1 s) of being shown.
    let shown = Instant::now();
    let cast = wait_for(Duration::from_secs(20), || {
        let casts = world.bastion.recordings();
        let cast = casts.first()?.clone();
        std::fs::read_to_string(&cast)
            .ok()?
            .contains("marker-42")
            .then_some(cast)
    })
    .expect("the output never reached the recording on disk");
    println!(
        "the output was on disk {:?} after the client showed it",
        shown.elapsed()
    );
    let session = world.bastion.audit_events("session.start")[0]["session"]
        .as_str()
        .unwrap()
        .to_owned();

    world.bastion.kill_hard();
    // What is on disk verifies as far as it goes, and says it was never finished.
    let verify = world
        .bastion
        .cli(&["recordings", "verify", cast.to_str().unwrap()]);
    assert_ne!(verify.code, Some(0), "{verify:?}");
    assert!(verify.stdout.contains("not finalized"), "{verify:?}");
    let verify = world.bastion.cli(&["audit", "verify"]);
    assert_eq!(verify.code, Some(0), "{verify:?}");
    assert!(tmux.wait_exit(Duration::from_secs(30)).is_some());

    world.bastion.start();
    let ended = world
        .bastion
        .wait_for_audit("session.end", |e| e["session"] == session.as_str());
    assert_eq!(ended["reason"], "bastion_crashed", "{ended}");
    let sealed = world
        .bastion
        .wait_for_audit("recording.sealed_after_crash", |_| true);
    assert_eq!(sealed["session"], session.as_str(), "{sealed}");
    let verify = world
        .bastion
        .cli(&["recordings", "verify", cast.to_str().unwrap()]);
    assert_eq!(verify.code, Some(0), "{verify:?}");
    let text = std::fs::read_to_string(&cast).unwrap();
    assert!(text.contains("marker-42"));
    assert!(
        text.lines()
            .last()
            .unwrap()
            .contains(r#""m","end: bastion crashed"#),
        "{text}"
    );
    let verify = world.bastion.cli(&["audit", "verify"]);
    assert_eq!(verify.code, Some(0), "{verify:?}");
}

#[test]
fn when_the_audit_log_cannot_be_written_no_session_starts_until_it_can() {
    let scratch = tempfile::tempdir().unwrap();
    let mut disk = SmallDisk::mount(&scratch.path().join("audit-disk"), "256k");
    let mut world = World::start(|_, _, _| {});
    // The audit log moves to the small disk: stopped, bound, started again.
    world.bastion.terminate();
    let log = world.bastion.data_dir().join("audit.jsonl");
    std::fs::copy(&log, disk.path.join("audit.jsonl")).unwrap();
    disk.bind_file("audit.jsonl", &log);
    world.bastion.start();
    let ran = world.alice("alice+web01").exec("echo first");
    assert_eq!(ran.stdout, "first\n", "{ran:?}");

    disk.fill();
    // The log's last page may still have room for a few lines: sessions go on until it has
    // none (each writes several), then none starts.
    let refused = (0..10).find_map(|_| {
        let ran = world.alice("alice+web01").exec("echo ran");
        (ran.code == Some(255)).then_some(ran)
    });
    assert!(refused.is_some(), "sessions still start with the disk full");
    let sentinel = world.path("unaudited-sentinel");
    let ran = world
        .alice("alice+web01")
        .exec(&format!("touch {}", sentinel.display()));
    assert_eq!(ran.code, Some(255), "{ran:?}");
    assert!(
        ran.stderr.contains(
            "the bastion cannot write its audit log, and no session starts without an audit trail"
        ),
        "{ran:?}"
    );
    assert!(!sentinel.exists(), "a command ran without an audit trail");
    assert!(
        world
            .bastion
            .log()
            .contains("ALERT: the audit log cannot be written; sessions are refused until it can"),
        "{}",
        world.bastion.log()
    );

    // Room again: sessions start, and the log has no half-written line from the failure.
    disk.free();
    let ran = world.alice("alice+web01").exec("echo again");
    assert_eq!(ran.stdout, "again\n", "{ran:?}");
    let verify = world.bastion.cli(&["audit", "verify"]);
    assert_eq!(verify.code, Some(0), "{verify:?}");
    world.bastion.terminate();
}

#[test]
fn a_read_only_recordings_directory_refuses_sessions_until_it_is_writable_again() {
    let scratch = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(&scratch.path().join("recordings"), "4m");
    let dir = disk.path.clone();
    let world = World::start(move |config, _, _| {
        config.raw(&format!(
            "[recording]\ndir = {:?}\n",
            dir.display().to_string()
        ));
    });
    disk.set_read_only(true);
    let sentinel = world.path("unrecorded-sentinel");
    let ran = world
        .alice("alice+web01")
        .exec(&format!("touch {}", sentinel.display()));
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(
        ran.stderr
            .contains("portcullis: the session cannot be recorded"),
        "{ran:?}"
    );
    assert!(ran.stderr.contains("Read-only file system"), "{ran:?}");
    assert!(!sentinel.exists(), "a command ran unrecorded");
    world
        .bastion
        .wait_for_audit("recording.failed", |e| e["user"] == "alice");

    disk.set_read_only(false);
    let ran = world.alice("alice+web01").exec("echo recorded");
    assert_eq!(ran.stdout, "recorded\n", "{ran:?}");
}

#[test]
fn sigterm_with_fifty_live_sessions_seals_every_recording_within_the_grace() {
    const SESSIONS: usize = 50;
    let mut world = World::start(|config, _, _| {
        config.server("shutdown_grace = \"20s\"\nmax_connections = 200");
    });
    let clients: Vec<LongCommand> = (0..SESSIONS).map(|_| LongCommand::start(&world)).collect();
    assert_eq!(world.bastion.audit_events("channel.start").len(), SESSIONS);

    let started = Instant::now();
    let code = world.bastion.terminate();
    let took = started.elapsed();
    println!("{SESSIONS} sessions ended and sealed in {took:?}");
    assert_eq!(code, Some(0), "{}", world.bastion.log());
    assert!(took < Duration::from_secs(20), "took {took:?}");

    let ends = world.bastion.audit_events("session.end");
    assert_eq!(ends.len(), SESSIONS);
    assert!(ends.iter().all(|e| e["reason"] == "shutdown"), "{ends:#?}");
    let recordings = world.bastion.recordings();
    assert_eq!(recordings.len(), SESSIONS);
    for recording in &recordings {
        let verify = world
            .bastion
            .cli(&["recordings", "verify", recording.to_str().unwrap()]);
        assert_eq!(verify.code, Some(0), "{verify:?}");
    }
    for mut client in clients {
        client.wait_exit();
        assert!(
            client
                .stderr
                .text()
                .contains("portcullis: the bastion is shutting down"),
            "{}",
            client.stderr.text()
        );
    }
}

const SECOPS: &str = "secops-token-0123456789";

#[test]
fn a_locked_state_database_gives_clear_errors_and_every_session_is_still_checked() {
    let world = World::start(|config, _, _| {
        config.admin(&[("secops", SECOPS, &["read", "operate"])]);
    });
    // Another process holds the database's write lock (as a stuck backup or a hand-run
    // sqlite3 shell would).
    let holder = rusqlite::Connection::open(world.bastion.data_dir().join("state.db")).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();

    // Policy checks read, which the lock does not stop: a session is still checked, and
    // admitted because alice may reach web01.
    let ran = world.alice("alice+web01").exec("echo checked");
    assert_eq!(ran.stdout, "checked\n", "{ran:?}");
    world
        .bastion
        .wait_for_audit("access.granted", |e| e["user"] == "alice");
    // What must be written cannot be: the operator is told in a sentence, nothing changes.
    let locked = world
        .bastion
        .api_cli(SECOPS, &["lock", "alice", "--reason", "laptop stolen"]);
    assert_ne!(locked.code, Some(0), "{locked:?}");
    assert!(
        locked
            .stderr
            .contains("the state database is locked by another process; nothing was changed"),
        "{locked:?}"
    );
    assert!(
        world.bastion.log().contains("database is locked"),
        "{}",
        world.bastion.log()
    );

    holder.execute_batch("ROLLBACK").unwrap();
    let locked = world
        .bastion
        .api_cli(SECOPS, &["lock", "alice", "--reason", "laptop stolen"]);
    assert_eq!(locked.code, Some(0), "{locked:?}");
    let sentinel = world.path("locked-sentinel");
    let ran = world
        .alice("alice+web01")
        .exec(&format!("touch {}", sentinel.display()));
    assert_ne!(ran.code, Some(0), "{ran:?}");
    assert!(!sentinel.exists(), "a locked user ran a command");
}

#[test]
fn a_corrupt_state_database_stops_the_start_with_a_sentence_and_is_left_as_found() {
    let mut world = World::start(|_, _, _| {});
    assert_eq!(world.bastion.terminate(), Some(0));
    let db = world.bastion.data_dir().join("state.db");
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    // Its first pages overwritten, as a bad disk or a stray `dd` would.
    let mut bytes = std::fs::read(&db).unwrap();
    for (i, byte) in bytes.iter_mut().take(8192).enumerate() {
        *byte = (i * 7 + 3) as u8;
    }
    std::fs::write(&db, &bytes).unwrap();
    let before = portcullis_tests::util::sha256_file(&db);

    let served = world.bastion.cli(&["serve"]);
    println!("{}", served.stderr);
    assert_eq!(served.code, Some(1), "{served:?}");
    assert!(
        served.stderr.contains(&db.display().to_string())
            && served
                .stderr
                .contains("is damaged or not a portcullis state database"),
        "{}",
        served.stderr
    );
    assert!(!served.stderr.contains("panicked"), "{}", served.stderr);
    assert_eq!(portcullis_tests::util::sha256_file(&db), before);
}
