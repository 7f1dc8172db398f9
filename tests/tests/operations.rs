//! Security sees every live session, watches it, kills it, locks a user: over the admin API,
//! its CLI, and ssh.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use portcullis_policy::{Clock, ManualClock};
use portcullis_tests::util::{Collected, wait_for};
use portcullis_tests::{Keypair, Tmux, World};
use serde_json::json;

const SECOPS: &str = "secops-token-0123456789";
const READER: &str = "reader-token-0123456789";

fn world() -> World {
    World::start(|config, _, _| {
        config.admin(&[
            ("secops", SECOPS, &["read", "operate"]),
            ("auditor", READER, &["read"]),
        ]);
    })
}

/// An interactive shell for alice, ready (the remote shell has answered).
fn alice_shell(world: &World) -> Tmux {
    let tmux = Tmux::start(&world.alice("alice+web01").shell_line(&["-tt"]), 100, 30);
    tmux.line("echo ready-$((40+2))");
    tmux.wait_for_text("ready-42", Duration::from_secs(20));
    tmux
}

/// The id of alice's live session, from the API.
fn live_session_ids(world: &World) -> Vec<String> {
    let (status, body) = world
        .bastion
        .api_request(READER, "GET", "/api/v1/sessions", None);
    assert_eq!(status, 200, "{body}");
    body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["user"] == "alice")
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn kill_ends_a_live_interactive_session_at_once_with_the_reason_on_screen() {
    let world = world();
    let tmux = alice_shell(&world);

    let listed = world.bastion.api_cli(READER, &["sessions", "list"]);
    assert_eq!(listed.code, Some(0), "{listed:?}");
    let ids = live_session_ids(&world);
    assert_eq!(ids.len(), 1);
    assert!(
        listed.stdout.contains(&ids[0]) && listed.stdout.contains("web01"),
        "{listed:?}"
    );
    let shown = world
        .bastion
        .api_cli(READER, &["sessions", "show", &ids[0][..10]]);
    assert!(shown.stdout.contains("\"login\": \"root\""), "{shown:?}");

    let killed = world.bastion.api_cli(
        SECOPS,
        &[
            "sessions",
            "kill",
            &ids[0],
            "--reason",
            "suspicious activity",
        ],
    );
    assert_eq!(killed.code, Some(0), "{killed:?}");
    tmux.wait_for_text(
        "portcullis: session terminated by secops: suspicious activity",
        Duration::from_secs(5),
    );
    assert!(
        tmux.wait_exit(Duration::from_secs(10)).is_some(),
        "the ssh client ended"
    );

    let end = world.bastion.wait_for_audit("session.end", |_| true);
    assert_eq!(end["reason"], "killed");
    assert_eq!(end["side"], "operator", "{end}");
    let kill = world.bastion.audit_events("session.killed");
    assert_eq!(kill[0]["by"], "secops");
    assert_eq!(kill[0]["reason"], "suspicious activity");
    let cast = &world.bastion.recordings()[0];
    let text = std::fs::read_to_string(cast).unwrap();
    assert!(
        text.trim_end().ends_with(
            r#""m","end: ended by the bastion: session terminated by secops: suspicious activity"]"#
        ),
        "{}",
        text.lines().last().unwrap()
    );
    assert_eq!(
        world
            .bastion
            .cli(&["recordings", "verify", cast.to_str().unwrap()])
            .code,
        Some(0)
    );
    assert!(
        live_session_ids(&world).is_empty(),
        "the session left the registry"
    );
    // Once ended it is still shown, from the session index, with how it ended.
    let shown = world
        .bastion
        .api_cli(READER, &["sessions", "show", &ids[0]]);
    assert_eq!(shown.code, Some(0), "{shown:?}");
    let shown: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(shown["ended"]["reason"], "killed", "{shown}");
    assert_eq!(shown["user"], "alice", "{shown}");
}

#[test]
fn a_lock_ends_every_session_of_the_user_and_refuses_the_next_login_until_lifted() {
    let world = world();
    let tmux = alice_shell(&world);
    let mut background = world
        .alice("alice+web01")
        .ssh_command(Some("echo running; sleep 120"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Its command runs upstream (a session that is only logging in is not what this tests).
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(background.stdout.as_mut().unwrap()),
        &mut first,
    )
    .unwrap();
    assert_eq!(first, "running\n");
    assert!(
        wait_for(Duration::from_secs(20), || (live_session_ids(&world).len()
            == 2)
            .then_some(()))
        .is_some()
    );

    let locked = world.bastion.api_cli(
        SECOPS,
        &["lock", "alice", "--reason", "laptop stolen", "--for", "1h"],
    );
    assert_eq!(locked.code, Some(0), "{locked:?}");
    assert!(
        locked.stdout.contains("2 live session(s) ended"),
        "{locked:?}"
    );
    tmux.wait_for_text(
        "portcullis: session terminated: your account was locked by secops: laptop stolen",
        Duration::from_secs(5),
    );
    let exited = wait_for(Duration::from_secs(5), || {
        background.try_wait().ok().flatten()
    });
    assert!(exited.is_some(), "the background session ended too");
    let mut stderr = String::new();
    background
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        stderr.contains("your account was locked by secops: laptop stolen"),
        "{stderr}"
    );

    let refused = world
        .alice("alice+web01")
        .exec("touch /tmp/portcullis-locked-sentinel");
    assert_eq!(
        refused.stderr,
        "portcullis: your account is locked by secops: laptop stolen\n"
    );
    assert_eq!(refused.code, Some(1));
    assert!(!std::path::Path::new("/tmp/portcullis-locked-sentinel").exists());

    let (status, locks) = world
        .bastion
        .api_request(READER, "GET", "/api/v1/locks", None);
    assert_eq!(status, 200);
    assert_eq!(locks["locks"][0]["user"], "alice");
    assert!(locks["locks"][0]["until"].is_string());

    let unlocked = world.bastion.api_cli(SECOPS, &["unlock", "alice"]);
    assert_eq!(unlocked.code, Some(0), "{unlocked:?}");
    assert_eq!(
        world.alice("alice+web01").exec("echo back").stdout,
        "back\n"
    );
    let again = world.bastion.api_cli(SECOPS, &["unlock", "alice"]);
    assert_eq!(again.code, Some(1));
    assert!(
        again.stderr.contains("alice is not locked (404)"),
        "{again:?}"
    );

    let events: Vec<String> = world
        .bastion
        .audit()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect();
    assert!(events.contains(&"user.locked".into()) && events.contains(&"user.unlocked".into()));
    let alert = world.bastion.wait_for_alert("user_locked");
    assert_eq!(alert["user"], "alice");
}

#[test]
fn locks_survive_a_restart() {
    let mut world = world();
    let locked = world.bastion.api_cli(
        SECOPS,
        &["lock", "alice", "--reason", "under investigation"],
    );
    assert_eq!(locked.code, Some(0), "{locked:?}");
    assert_eq!(world.bastion.terminate(), Some(0));
    world.bastion.start();
    let refused = world.alice("alice+web01").exec("true");
    assert_eq!(
        refused.stderr,
        "portcullis: your account is locked by secops: under investigation\n"
    );
    let menu = world.alice("alice").exec("targets");
    assert_eq!(
        menu.code,
        Some(1),
        "a locked user gets no menu either: {menu:?}"
    );
}

#[test]
fn live_watch_over_the_api_receives_what_is_typed() {
    let world = world();
    let tmux = alice_shell(&world);
    let id = live_session_ids(&world).remove(0);
    let mut watcher = world
        .bastion
        .api_command(READER, &["sessions", "watch", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let seen = Collected::start(watcher.stdout.take().unwrap());
    // The watcher gets the history first: the "ready-42" already on screen. Once it has
    // that, it is attached.
    seen.wait_for_text("ready-42", Duration::from_secs(15));
    tmux.line("echo watched-$((3*3))");
    tmux.wait_for_text("watched-9", Duration::from_secs(10));
    tmux.line("exit");
    tmux.wait_exit(Duration::from_secs(10));
    let ended = wait_for(Duration::from_secs(10), || {
        watcher.try_wait().ok().flatten()
    });
    assert!(ended.is_some(), "the watcher exits when the session ends");
    let seen = seen.finish();
    assert!(seen.contains("watched-9"), "live: {seen}");
    assert!(seen.contains("watched-9"), "live: {seen}");
    world
        .bastion
        .wait_for_audit("session.watched", |e| e["by"] == "auditor");
}

#[test]
fn the_api_refuses_what_a_token_may_not_do_with_plain_messages() {
    let world = world();
    let api = &world.bastion;
    let (status, body) = api.api_request("", "GET", "/api/v1/sessions", None);
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("missing or invalid token"))
    );
    let (status, _) = api.api_request("not-a-token", "GET", "/api/v1/sessions", None);
    assert_eq!(status, 401);
    world.bastion.wait_for_audit("api.auth_failure", |_| true);

    let (status, _) = api.api_request(READER, "GET", "/api/v1/sessions", None);
    assert_eq!(status, 200);
    let (status, body) = api.api_request(
        READER,
        "POST",
        "/api/v1/sessions/0123456789ab/kill",
        Some(json!({"reason": "x"})),
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("this token lacks the operate scope"))
    );
    let (status, _) = api.api_request(
        READER,
        "POST",
        "/api/v1/locks",
        Some(json!({"user": "alice", "reason": "x"})),
    );
    assert_eq!(status, 403);

    let (status, body) = api.api_request(
        SECOPS,
        "POST",
        "/api/v1/sessions/0123456789ab/kill",
        Some(json!({"reason": "x"})),
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("no live session 0123456789ab"))
    );
    let (status, body) = api.api_request(
        SECOPS,
        "POST",
        "/api/v1/locks",
        Some(json!({"user": "alice"})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("bad request body"),
        "{body}"
    );
    let (status, _) = api.api_request(
        SECOPS,
        "POST",
        "/api/v1/locks",
        Some(json!({"user": "nobody", "reason": "x"})),
    );
    assert_eq!(status, 404);
    let (status, _) = api.api_request(
        SECOPS,
        "POST",
        "/api/v1/locks",
        Some(json!({"user": "alice", "reason": " "})),
    );
    assert_eq!(status, 400);
    let (status, _) = api.api_request(SECOPS, "DELETE", "/api/v1/locks/alice", None);
    assert_eq!(status, 404);
    let (status, _) = api.api_request(READER, "GET", "/api/v1/recordings/..%2Fstate.db", None);
    assert_eq!(status, 404);
    let (status, _) = api.api_request(READER, "GET", "/api/v1/nothing-here", None);
    assert_eq!(status, 404);
    let (status, body) = api.api_request("", "GET", "/healthz", None);
    assert_eq!((status, body), (200, json!("ok\n")));
    let (status, _) = api.api_request("", "GET", "/metrics", None);
    assert_eq!(status, 401);

    // The CLI trusts the certificate only when told how.
    let (url, _) = world.bastion.api();
    let ran = world
        .bastion
        .cli(&["sessions", "list", "--api", &url, "--token", READER]);
    assert_eq!(ran.code, Some(1));
    assert!(ran.stderr.contains("pass --fingerprint"), "{ran:?}");
    let wrong = format!("sha256:{}", "00".repeat(32));
    let ran = world.bastion.cli(&[
        "sessions",
        "list",
        "--api",
        &url,
        "--token",
        READER,
        "--fingerprint",
        &wrong,
    ]);
    assert_eq!(ran.code, Some(1));
    assert!(ran.stderr.contains("not the pinned"), "{ran:?}");
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[test]
fn metrics_count_sessions_bytes_and_failures() {
    let world = world();
    let (status, before) = world.bastion.api_request(READER, "GET", "/metrics", None);
    assert_eq!(status, 200);
    let before = before.as_str().unwrap().to_owned();
    assert_eq!(metric(&before, "portcullis_sessions_total"), 0);

    let ran = world
        .alice("alice+web01")
        .exec("head -c 100000 /dev/zero | tr '\\0' x");
    assert_eq!(ran.stdout.len(), 100_000);
    let stranger = Keypair::generate(world.scratch.path(), "stranger");
    world.bastion.ssh(&stranger, "alice+web01").exec("true");
    world.bastion.wait_for_audit("session.end", |_| true);

    let (_, after) = world.bastion.api_request(READER, "GET", "/metrics", None);
    let after = after.as_str().unwrap().to_owned();
    assert_eq!(metric(&after, "portcullis_sessions_total"), 1);
    assert_eq!(metric(&after, "portcullis_sessions_active"), 0);
    assert!(
        metric(
            &after,
            "portcullis_bytes_relayed_total{direction=\"to_client\"}"
        ) >= 100_000,
        "{after}"
    );
    assert!(
        metric(&after, "portcullis_auth_failures_total") >= 1,
        "{after}"
    );
}

#[test]
fn a_session_without_input_ends_after_the_roles_idle_timeout() {
    let clock = ManualClock::starting_now();
    let world = World::start_on(clock.clone(), |config, sshd, _| {
        config
            .target("idle01", sshd, "root", "web01")
            .raw("[[roles]]\nname = \"idlers\"\nmembers = [\"alice\"]\ntargets = [\"idle01\"]\nidle_timeout = \"5m\"\n");
    });
    let tmux = Tmux::start(&world.alice("alice+idle01").shell_line(&["-tt"]), 100, 30);
    tmux.line("echo typing-$((1+1))");
    tmux.wait_for_text("typing-2", Duration::from_secs(20));
    // Typing keeps it alive past the timeout: eight minutes in all, never five in silence.
    // (The echo is the sign the keystrokes passed the bastion.)
    for minute in [4, 8] {
        clock.advance(Duration::from_secs(4 * 60));
        tmux.line(&format!("echo alive-at-{minute}m"));
        tmux.wait_for_text(&format!("alive-at-{minute}m"), Duration::from_secs(10));
    }
    assert!(tmux.exit_status().is_none(), "still alive while typing");
    // …and five minutes of silence end it.
    clock.advance(Duration::from_secs(5 * 60));
    tmux.wait_for_text(
        "portcullis: session ended after 5m without input",
        Duration::from_secs(10),
    );
    assert!(tmux.wait_exit(Duration::from_secs(10)).is_some());
    let end = world.bastion.wait_for_audit("session.end", |_| true);
    assert_eq!(end["reason"], "idle");
}

#[test]
fn watching_over_ssh_is_for_roles_that_allow_it() {
    let world = World::start(|config, _, scratch| {
        let bob = Keypair::generate(scratch.path(), "bob");
        let carol = Keypair::generate(scratch.path(), "carol");
        config
            .user("bob", &[&bob.public])
            .user("carol", &[&carol.public])
            .raw("[[roles]]\nname = \"watchers\"\nmembers = [\"bob\"]\ntargets = [\"web01\"]\ncan_watch = true\n")
            .admin(&[("auditor", READER, &["read"])]);
    });
    let bob = Keypair {
        private: world.scratch.path().join("bob"),
        public: String::new(),
    };
    let carol = Keypair {
        private: world.scratch.path().join("carol"),
        public: String::new(),
    };
    let tmux = alice_shell(&world);
    let id = live_session_ids(&world).remove(0);

    let refused = world
        .bastion
        .ssh(&carol, "carol")
        .exec(&format!("watch {id}"));
    assert_eq!(refused.code, Some(1));
    assert!(
        refused.stderr.contains("you may not watch sessions"),
        "{refused:?}"
    );

    let mut watcher = world
        .bastion
        .ssh(&bob, "bob")
        .ssh_command(Some(&format!("watch {id}")))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let seen = Collected::start(watcher.stdout.take().unwrap());
    // Attached once the history (what is already on alice's screen) has arrived.
    seen.wait_for_text("ready-42", Duration::from_secs(15));
    tmux.line("echo seen-by-bob-$((5*5))");
    tmux.wait_for_text("seen-by-bob-25", Duration::from_secs(10));
    tmux.line("exit");
    let ended = wait_for(Duration::from_secs(15), || {
        watcher.try_wait().ok().flatten()
    });
    assert_eq!(
        ended.and_then(|s| s.code()),
        Some(0),
        "the watch ends with the session"
    );
    let seen = seen.finish();
    assert!(seen.contains("seen-by-bob-25"), "{seen}");
    let mut stderr = String::new();
    watcher
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("the watched session ended"), "{stderr}");
    world
        .bastion
        .wait_for_audit("session.watched", |e| e["by"] == "ssh:bob");
}

#[test]
fn the_cli_reads_the_audit_log_and_recordings_through_the_api() {
    let world = world();
    let ran = world.alice("alice+web01").exec("echo through-the-api");
    assert_eq!(ran.code, Some(0));
    world.bastion.wait_for_audit("session.end", |_| true);

    let tail = world.bastion.api_cli(READER, &["audit", "tail", "-n", "3"]);
    assert_eq!(tail.code, Some(0), "{tail:?}");
    let lines: Vec<serde_json::Value> = tail
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{tail:?}");
    assert_eq!(lines[2]["event"], "session.end");
    let only = world
        .bastion
        .api_cli(READER, &["audit", "tail", "--event", "channel.start"]);
    assert!(
        only.stdout
            .lines()
            .all(|l| l.contains("\"event\":\"channel.start\"")),
        "{only:?}"
    );
    assert!(only.stdout.contains("echo through-the-api"));

    // Following: a new event shows up without asking again.
    let mut follower = world
        .bastion
        .api_command(READER, &["audit", "tail", "-f", "-n", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let seen = Collected::start(follower.stdout.take().unwrap());
    // It prints the last event first (the session.end above): then it is following.
    seen.wait_for_text("session.end", Duration::from_secs(15));
    world.alice("alice+web01").exec("echo later-event-marker");
    seen.wait_for_text("later-event-marker", Duration::from_secs(15));
    let _ = follower.kill();
    let _ = follower.wait();

    let listed = world.bastion.api_cli(READER, &["recordings", "list"]);
    let id = listed
        .stdout
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    // An exec channel is recorded as exact bytes (a framed .rec), got whole.
    let got = world.bastion.api_cli(READER, &["recordings", "get", &id]);
    assert!(got.stdout.starts_with("portcullis-bytes v1 {"), "{got:?}");
    let verified = world
        .bastion
        .api_cli(READER, &["recordings", "verify", &id]);
    assert_eq!(verified.code, Some(0), "{verified:?}");
    assert!(verified.stdout.contains("intact"));

    // A CA file works instead of a fingerprint: the self-signed certificate is its own CA.
    let (url, _) = world.bastion.api();
    let ca = world.bastion.data_dir().join("admin-cert.pem");
    let ran = world.bastion.cli(&[
        "sessions",
        "list",
        "--api",
        &url,
        "--token",
        READER,
        "--ca",
        ca.to_str().unwrap(),
    ]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
}

#[test]
fn a_lock_with_a_duration_lifts_by_itself() {
    let clock = ManualClock::starting_now();
    let world = World::start_on(clock.clone(), |config, _, _| {
        config.admin(&[
            ("secops", SECOPS, &["read", "operate"]),
            ("auditor", READER, &["read"]),
        ]);
    });
    let locked = world.bastion.api_cli(
        SECOPS,
        &["lock", "alice", "--reason", "cool-off", "--for", "2h"],
    );
    assert_eq!(locked.code, Some(0), "{locked:?}");
    // The bastion counted the two hours on its own clock.
    let until = humantime::format_rfc3339_seconds(clock.now() + Duration::from_secs(2 * 3600));
    assert!(
        locked.stdout.contains(&format!("until {until}")),
        "{locked:?}"
    );
    assert_eq!(world.alice("alice+web01").exec("true").code, Some(1));
    clock.advance(Duration::from_secs(2 * 3600 - 1));
    let still = world.alice("alice+web01").exec("true");
    assert_eq!(still.code, Some(1), "lifted early: {still:?}");
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        world.alice("alice+web01").exec("echo free").stdout,
        "free\n"
    );
}
