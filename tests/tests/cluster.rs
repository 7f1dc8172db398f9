//! Two bastion nodes sharing a real PostgreSQL: what one node is told, the other acts on —
//! a kill, a lock, a revocation, an approval — and what one counts, the other counts too
//! (failed logins, used TOTP codes). Each scenario waits for the condition (a screen, an
//! audit line), and says how long it took.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use portcullis::credentials::{password, totp};
use portcullis_tests::client::Askpass;
use portcullis_tests::util::wait_for;
use portcullis_tests::{Bastion, Cluster, Keypair, Ran, SshCommand, Tmux};

const SECOPS: &str = "secops-token-0123456789";
const READER: &str = "reader-token-0123456789";
const TOTP_SECRET: [u8; 20] = *b"portcullis-node-test";

/// Nodes a and b; bob is in secops (approvers); alice is eligible for db01 (`settings`);
/// carol logs in with a password, dave with a password and a TOTP code.
fn cluster(settings: &str) -> (Cluster, Keypair) {
    cluster_with(settings, "")
}

/// [`cluster`] with more `[cluster]` settings.
fn cluster_with(settings: &str, cluster_settings: &str) -> (Cluster, Keypair) {
    let mut bob = None;
    let carol = password::hash("carols-password").unwrap();
    let dave = password::hash("daves-password").unwrap();
    let secret = portcullis_config::base32::encode(&TOTP_SECRET);
    let cluster = Cluster::start_with(&["a", "b"], cluster_settings, |config, sshd, scratch| {
        let key = Keypair::generate(scratch.path(), "bob");
        config
            .server("auth_max_failures = 5\nauth_failure_window = \"10m\"")
            .user("bob", &[&key.public])
            .target("db01", sshd, "root", "web01")
            .eligible("db-admins", &["alice"], &["db*"], settings)
            .role("secops", &["bob"], &["web01"])
            .raw(&format!(
                "[[users]]\nname = \"carol\"\npassword_hash = {carol:?}\n\n\
                 [[users]]\nname = \"dave\"\npassword_hash = {dave:?}\ntotp_secret = {secret:?}\n\n\
                 [[roles]]\nname = \"password-people\"\nmembers = [\"carol\", \"dave\"]\ntargets = [\"web01\"]\n"
            ))
            .admin(&[
                ("secops", SECOPS, &["read", "operate"]),
                ("auditor", READER, &["read"]),
            ]);
        bob = Some(key);
    });
    (cluster, bob.unwrap())
}

/// An interactive shell for alice on `node`, ready (the remote shell has answered).
fn shell(cluster: &Cluster, node: &Bastion, target: &str) -> Tmux {
    let tmux = Tmux::start(
        &node
            .ssh(&cluster.alice, &format!("alice+{target}"))
            .shell_line(&["-tt"]),
        110,
        30,
    );
    tmux.line("echo ready-$((40+2))");
    tmux.wait_for_text("ready-42", Duration::from_secs(20));
    tmux
}

/// The id of alice's live session on `node`, from its audit log.
fn session_on(node: &Bastion, target: &str) -> String {
    node.wait_for_audit("session.start", |e| {
        e["user"] == "alice" && e["target"] == target
    })["session"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Waits for `text` on the screen and returns how long that took from `since`.
fn seen_after(tmux: &Tmux, text: &str, since: Instant) -> Duration {
    tmux.wait_for_text(text, Duration::from_secs(20));
    since.elapsed()
}

#[test]
fn a_kill_a_lock_and_a_revocation_through_one_node_end_sessions_on_the_other() {
    let (cluster, _) = cluster(
        "max_duration = \"4h\"\ndefault_duration = \"1h\"\nrequire_reason = true\napprovals = 0",
    );
    let (a, b) = (cluster.node(0), cluster.node(1));

    // Kill: the session runs on a; the operator uses b.
    let tmux = shell(&cluster, a, "web01");
    let id = session_on(a, "web01");
    // Both nodes list it, named by the node that runs it, with its bytes (b asks a).
    let listed = |node: &Bastion| -> Option<serde_json::Value> {
        let (status, body) = node.api_request(READER, "GET", "/api/v1/sessions", None);
        assert_eq!(status, 200, "{body}");
        body["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id.as_str())
            .cloned()
    };
    assert_eq!(listed(a).unwrap()["node"], "a");
    let remote = wait_for(Duration::from_secs(20), || {
        listed(b).filter(|s| s["bytes_to_client"].as_u64() > Some(0))
    })
    .expect("b lists a's session with its bytes");
    assert_eq!(remote["node"], "a", "{remote}");
    assert_eq!(remote["user"], "alice", "{remote}");
    assert_eq!(remote["target"], "web01", "{remote}");
    let table = b.api_cli(READER, &["sessions", "list"]);
    let row = table
        .stdout
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_default();
    assert!(
        row.contains("alice") && row.trim_end().ends_with(" a"),
        "{table:?}"
    );
    let asked = Instant::now();
    let killed = b.api_cli(
        SECOPS,
        &["sessions", "kill", &id, "--reason", "INC-1 suspicious"],
    );
    assert_eq!(killed.code, Some(0), "{killed:?}");
    let took = seen_after(
        &tmux,
        "portcullis: session terminated by secops: INC-1 suspicious",
        asked,
    );
    assert!(tmux.wait_exit(Duration::from_secs(10)).is_some());
    eprintln!("kill through b ended the session on a after {took:?}");
    let end = a.wait_for_audit("session.end", |e| e["session"] == id.as_str());
    assert_eq!(end["reason"], "killed", "{end}");
    let audited = b.wait_for_audit("session.killed", |_| true);
    assert_eq!(audited["session"], id.as_str(), "{audited}");

    // Lock: placed through b, alice's session on a ends and both nodes refuse her.
    let tmux = shell(&cluster, a, "web01");
    let asked = Instant::now();
    let locked = b.api_cli(SECOPS, &["lock", "alice", "--reason", "laptop stolen"]);
    assert_eq!(locked.code, Some(0), "{locked:?}");
    assert!(
        locked.stdout.contains("1 live session(s) ended"),
        "b counts a's session: {locked:?}"
    );
    let took = seen_after(&tmux, "laptop stolen", asked);
    assert!(tmux.wait_exit(Duration::from_secs(10)).is_some());
    eprintln!("lock through b ended the session on a after {took:?}");
    for node in [a, b] {
        let refused = node.ssh(&cluster.alice, "alice+web01").exec("true");
        assert_eq!(
            refused.stderr, "portcullis: your account is locked by secops: laptop stolen\n",
            "{refused:?}"
        );
    }
    let unlocked = a.api_cli(SECOPS, &["unlock", "alice"]);
    assert_eq!(unlocked.code, Some(0), "{unlocked:?}");
    let ran = b
        .ssh(&cluster.alice, "alice+web01")
        .exec("echo back-$((1+1))");
    assert_eq!(ran.stdout, "back-2\n", "{ran:?}");

    // Revocation: the grant is activated through b, used on a, revoked through b.
    let granted = b
        .ssh(&cluster.alice, "alice")
        .exec("request db01 --for 1h --reason INC-12");
    assert_eq!(granted.code, Some(0), "{granted:?}");
    let tmux = shell(&cluster, a, "db01");
    // a's heartbeat tells the shared index which grant its session rests on…
    let db01 = session_on(a, "db01");
    let indexed = wait_for(Duration::from_secs(20), || {
        let ran = cluster.postgres.psql(
            "portcullis",
            &format!("SELECT grant_id FROM sessions WHERE id = '{db01}'"),
        );
        (ran.stdout.trim() == "1").then_some(())
    });
    assert!(indexed.is_some(), "a's heartbeat did not index the grant");
    let asked = Instant::now();
    let revoked = b.api_cli(
        SECOPS,
        &["grants", "revoke", "1", "--reason", "incident closed"],
    );
    assert_eq!(revoked.code, Some(0), "{revoked:?}");
    // …so b's answer counts it.
    assert!(
        revoked.stdout.contains("1 live session(s) ended"),
        "{revoked:?}"
    );
    let took = seen_after(
        &tmux,
        "portcullis: your access was revoked by secops (grant #1): incident closed",
        asked,
    );
    assert!(tmux.wait_exit(Duration::from_secs(10)).is_some());
    eprintln!("revocation through b ended the session on a after {took:?}");
    let end = a.wait_for_audit("session.end", |e| e["target"] == "db01");
    assert_eq!(end["reason"], "grant_revoked", "{end}");
    let refused = a.ssh(&cluster.alice, "alice+db01").exec("true");
    assert_eq!(refused.code, Some(1), "{refused:?}");
}

#[test]
fn an_approval_given_on_one_node_releases_the_login_waiting_on_the_other() {
    let (cluster, bob) = cluster(
        "max_duration = \"4h\"\ndefault_duration = \"1h\"\nrequire_reason = true\napprovals = 1\napprovers = [\"secops\"]",
    );
    let (a, b) = (cluster.node(0), cluster.node(1));
    let tmux = Tmux::start(
        &a.ssh(&cluster.alice, "alice+db01").shell_line(&["-tt"]),
        120,
        40,
    );
    tmux.wait_for_text("Reason", Duration::from_secs(20));
    tmux.line("INC-9 replication lag");
    tmux.wait_for_text("Duration [", Duration::from_secs(10));
    tmux.line("");
    tmux.wait_for_text(
        "waiting for approval of request #1 by secops…",
        Duration::from_secs(10),
    );
    let pending = b.ssh(&bob, "bob").exec("requests");
    assert!(
        pending
            .stdout
            .contains("#1    alice → db01 for 1h (role db-admins)"),
        "b lists a's request: {pending:?}"
    );
    let asked = Instant::now();
    let approved = b.ssh(&bob, "bob").exec("approve 1 --comment 'go ahead'");
    assert_eq!(approved.code, Some(0), "{approved:?}");
    let took = seen_after(&tmux, "request #1 approved; access granted until", asked);
    eprintln!("approval on b released the login on a after {took:?}");
    tmux.line("echo remote-$((6*7))");
    tmux.wait_for_text("remote-42", Duration::from_secs(20));
    // The approver's node activates the grant; the waiting login's node lets it through.
    let activated = b.wait_for_audit("grant.activated", |_| true);
    assert_eq!(activated["request"], 1, "{activated}");
    assert_eq!(activated["via"], "approval", "{activated}");
    let start = a.wait_for_audit("session.start", |e| e["target"] == "db01");
    assert_eq!(start["user"], "alice", "{start}");
    let approval = b.wait_for_audit("request.approved", |_| true);
    assert_eq!(approval["by"], "bob", "{approval}");
}

fn password_login(node: &Bastion, askpass: &Askpass, login: &str) -> Ran {
    password_login_from(node, askpass, login, "127.0.0.1")
}

fn password_login_from(node: &Bastion, askpass: &Askpass, login: &str, source: &str) -> Ran {
    let mut command = SshCommand::new(node.address(), &node.known_hosts(), None, login)
        .interactive_auth()
        .option(&format!("BindAddress={source}"))
        .option("PreferredAuthentications=keyboard-interactive,password")
        .option("NumberOfPasswordPrompts=1")
        .ssh_command(Some("echo logged-in"));
    askpass.apply(&mut command);
    command.output().unwrap().into()
}

fn code_now() -> String {
    let step = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 30;
    format!("{:06}", totp::code_at(&TOTP_SECRET, step))
}

#[test]
fn failed_logins_and_used_codes_count_on_every_node() {
    let (cluster, _) = cluster("max_duration = \"1h\"\napprovals = 0");
    let (a, b) = (cluster.node(0), cluster.node(1));
    let askpass = Askpass::new();

    // Five wrong passwords for carol, three through a and two through b, each from an
    // address of its own (so only the count per user can add up to five)…
    askpass.answer("not-carols-password", "");
    for (node, source) in [
        (a, "127.0.0.2"),
        (a, "127.0.0.3"),
        (a, "127.0.0.4"),
        (b, "127.0.0.5"),
        (b, "127.0.0.6"),
    ] {
        let ran = password_login_from(node, &askpass, "carol+web01", source);
        assert_ne!(ran.stdout, "logged-in\n", "{ran:?}");
    }
    // …and the right one is refused on either, from yet another address.
    askpass.answer("carols-password", "");
    for (node, source) in [(a, "127.0.0.7"), (b, "127.0.0.8")] {
        let ran = password_login_from(node, &askpass, "carol+web01", source);
        assert_ne!(ran.stdout, "logged-in\n", "the 6th try gets in: {ran:?}");
        let throttled = node.wait_for_audit("auth.throttled", |e| e["user"] == "carol");
        assert!(
            throttled["throttled"]
                .as_str()
                .is_some_and(|key| key.contains("carol")),
            "{throttled}"
        );
    }

    // A TOTP code used through a is refused through b.
    askpass.answer("daves-password", &code_now());
    let mut first = password_login(a, &askpass, "dave+web01");
    if first.stdout != "logged-in\n" {
        // The code's 30 s step turned between reading it and using it: take the next one.
        askpass.answer("daves-password", &code_now());
        first = password_login(a, &askpass, "dave+web01");
    }
    assert_eq!(first.stdout, "logged-in\n", "{first:?}");
    let replay = password_login(b, &askpass, "dave+web01");
    assert_ne!(
        replay.stdout, "logged-in\n",
        "the same code twice: {replay:?}"
    );
    b.wait_for_audit("auth.failure", |e| e["reason"] == "TOTP code already used");
}

#[test]
fn a_node_killed_outright_is_found_lost_and_its_sessions_ended_by_the_survivor() {
    let (mut cluster, _) = cluster_with(
        "max_duration = \"1h\"\napprovals = 0",
        "lease = \"3s\"\ndatabase_grace = \"3s\"",
    );
    // A session on a survives b restarting: a node ends only what it ran itself.
    let on_a = shell(&cluster, cluster.node(0), "web01");
    let id = session_on(cluster.node(0), "web01");
    assert_eq!(cluster.nodes[1].terminate(), Some(0));
    cluster.nodes[1].start();
    on_a.line("echo still-$((2+2))");
    on_a.wait_for_text("still-4", Duration::from_secs(20));

    // A grant activated through a, which a's loss must not touch.
    let granted = cluster
        .node(0)
        .ssh(&cluster.alice, "alice")
        .exec("request db01 --for 1h --reason INC-77");
    assert_eq!(granted.code, Some(0), "{granted:?}");
    // (That session has ended on a before a is killed: only the shell is live.)
    cluster.node(0).wait_for_audit("session.end", |e| {
        e["user"] == "alice" && e["target"].is_null()
    });

    // a is killed with its session live: b finds it lost within the lease and ends it.
    let killed = Instant::now();
    cluster.nodes[0].kill_hard();
    let b = cluster.node(1);
    let end = b.wait_for_audit("session.end", |e| e["session"] == id.as_str());
    eprintln!(
        "b recorded a's session as ended {:?} after a was killed",
        killed.elapsed()
    );
    assert_eq!(end["reason"], "node_lost", "{end}");
    assert_eq!(end["node"], "a", "{end}");
    assert_eq!(end["user"], "alice", "{end}");
    assert!(end["bytes_to_client"].as_u64().is_some(), "{end}");
    let lost = b.wait_for_audit("node.lost", |e| e["node"] == "a");
    assert_eq!(lost["sessions"], 1, "{lost}");
    assert_eq!(b.wait_for_alert("node_lost")["node"], "a");
    let unsealed = b.wait_for_audit("recording.unsealed", |e| e["session"] == id.as_str());
    assert!(
        unsealed["recording"].as_str().unwrap().starts_with(&id),
        "{unsealed}"
    );
    let (status, body) = b.api_request(READER, "GET", &format!("/api/v1/sessions/{id}"), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ended"]["reason"], "node_lost", "{body}");
    // alice reconnects through b, and her grant from a still lets her reach db01.
    let ran = b
        .ssh(&cluster.alice, "alice+web01")
        .exec("echo via-b-$((3+4))");
    assert_eq!(ran.stdout, "via-b-7\n", "{ran:?}");
    let ran = b.ssh(&cluster.alice, "alice+db01").exec("echo db-$((4+5))");
    assert_eq!(ran.stdout, "db-9\n", "the grant outlived its node: {ran:?}");
    // a comes back: its session was ended already, so it is not ended twice.
    cluster.nodes[0].start();
    let a = cluster.node(0);
    let ran = a
        .ssh(&cluster.alice, "alice+web01")
        .exec("echo via-a-$((4+4))");
    assert_eq!(ran.stdout, "via-a-8\n", "{ran:?}");
    assert!(
        a.audit_events("session.end")
            .iter()
            .all(|e| e["session"] != id.as_str()),
        "{:#?}",
        a.audit_events("session.end")
    );
    drop(on_a);
}

#[test]
fn a_database_restart_keeps_live_sessions_refuses_logins_meanwhile_and_recovers_by_itself() {
    let (cluster, _) = cluster("max_duration = \"1h\"\napprovals = 0");
    let (a, b) = (cluster.node(0), cluster.node(1));
    let tmux = shell(&cluster, a, "web01");
    let id = session_on(a, "web01");
    cluster.postgres.pause();
    // The live session goes on.
    tmux.line("echo during-$((5+5))");
    tmux.wait_for_text("during-10", Duration::from_secs(20));
    // A new login is refused, and (once the node has noticed the database is gone) told why.
    let told = wait_for(Duration::from_secs(20), || {
        let refused = a
            .ssh(&cluster.alice, "alice+web01")
            .showing_banners()
            .exec("echo should-not-run");
        assert_eq!(refused.code, Some(255), "{refused:?}");
        refused.stderr.contains(
            "portcullis: the bastion cannot reach its state database; logins are refused until it is back"
        ).then_some(refused)
    });
    assert!(told.is_some(), "no reason given:\n{}", a.log());
    cluster.postgres.resume();
    // Logins work again on both nodes, without a restart.
    for node in [a, b] {
        let ran = wait_for(Duration::from_secs(30), || {
            let ran = node
                .ssh(&cluster.alice, "alice+web01")
                .exec("echo back-$((1+1))");
            (ran.stdout == "back-2\n").then_some(ran)
        });
        assert!(
            ran.is_some(),
            "no login after the database came back:\n{}",
            node.log()
        );
    }
    // And a kill through b reaches a again (a follows the change log again).
    let killed = b.api_cli(
        SECOPS,
        &["sessions", "kill", &id, "--reason", "after the outage"],
    );
    assert_eq!(killed.code, Some(0), "{killed:?}");
    tmux.wait_for_text(
        "portcullis: session terminated by secops: after the outage",
        Duration::from_secs(20),
    );
}

#[test]
fn past_the_database_grace_live_sessions_end_with_the_reason() {
    let (cluster, _) = cluster_with(
        "max_duration = \"1h\"\napprovals = 0",
        "lease = \"4s\"\ndatabase_grace = \"2s\"",
    );
    let a = cluster.node(0);
    let tmux = shell(&cluster, a, "web01");
    let id = session_on(a, "web01");
    cluster.postgres.pause();
    tmux.wait_for_text(
        "the bastion could not check your access: its state database has been unreachable for 2s",
        Duration::from_secs(30),
    );
    assert!(tmux.wait_exit(Duration::from_secs(10)).is_some());
    let end = a.wait_for_audit("session.end", |e| e["session"] == id.as_str());
    assert_eq!(end["reason"], "state_failed", "{end}");
    cluster.postgres.resume();
}

#[test]
fn a_node_that_cannot_use_its_database_says_why_and_exits_64_or_69() {
    let postgres = portcullis_tests::Postgres::start();
    let created = postgres.psql("postgres", "CREATE DATABASE portcullis");
    assert_eq!(created.code, Some(0), "{created:?}");
    let node = |section: &str, password: &str| {
        let mut config = portcullis_tests::ConfigText::default();
        config.raw(section);
        let mut node = Bastion::new(&config);
        node.env("PORTCULLIS_STATE_PASSWORD", password);
        node
    };
    let section = portcullis_tests::cluster::node_section(&postgres, "a");
    let serve = |node: &Bastion| -> Ran { node.cli(&["serve"]) };

    let wrong = serve(&node(&section, "not-the-password"));
    assert_eq!(wrong.code, Some(64), "{wrong:?}");
    assert!(
        wrong
            .stderr
            .contains("refused the connection: password authentication failed"),
        "{wrong:?}"
    );

    let port = portcullis_tests::util::free_port();
    let nowhere = section.replace(&format!(":{}/", postgres.port()), &format!(":{port}/"));
    let down = serve(&node(&nowhere, postgres.password()));
    assert_eq!(down.code, Some(69), "{down:?}");
    assert!(down.stderr.contains("cannot be reached"), "{down:?}");

    // A schema from a newer portcullis: migrate first (a CLI command does), then pretend.
    let current = node(&section, postgres.password());
    let listed = current.cli(&["vault", "list"]);
    assert_eq!(listed.code, Some(0), "{listed:?}");
    let raised = postgres.psql(
        "portcullis",
        "INSERT INTO schema_migrations (version, applied_at, applied_by) VALUES (999, 0, 'future')",
    );
    assert_eq!(raised.code, Some(0), "{raised:?}");
    let newer = serve(&current);
    assert_eq!(newer.code, Some(64), "{newer:?}");
    assert!(newer.stderr.contains("upgrade portcullis"), "{newer:?}");
}

#[test]
fn each_node_forwards_its_own_audit_log_and_the_receiver_gets_both_whole() {
    let receiver_dir = tempfile::tempdir().unwrap();
    let receiver = portcullis_tests::webhook::WebhookReceiver::start(receiver_dir.path());
    let cluster = Cluster::start(&["a", "b"], |config, _, _| {
        config.raw(&format!(
            "[[audit.forward]]\nname = \"siem\"\nkind = \"webhook\"\nurl = {:?}\nca_file = {:?}\n",
            receiver.url("/events"),
            receiver.ca_file().display().to_string()
        ));
    });
    let (a, b) = (cluster.node(0), cluster.node(1));
    for (node, word) in [(a, "on-a"), (b, "on-b")] {
        let ran = node
            .ssh(&cluster.alice, "alice+web01")
            .exec(&format!("echo {word}"));
        assert_eq!(ran.stdout, format!("{word}\n"), "{ran:?}");
        node.wait_for_audit("session.end", |_| true);
    }
    // Each node's events, by id, as its own log holds them.
    let ids = |node: &Bastion| -> Vec<String> {
        node.audit()
            .iter()
            .map(|e| e["mac"].as_str().unwrap()[..32].to_owned())
            .collect()
    };
    let (from_a, from_b) = (ids(a), ids(b));
    let events = receiver.wait_until("both nodes' events", |events| {
        let got = |node: &str| -> Vec<String> {
            events
                .iter()
                .filter(|e| e["node"] == node)
                .map(|e| e["id"].as_str().unwrap().to_owned())
                .collect()
        };
        got("a").starts_with(&from_a) && got("b").starts_with(&from_b)
    });
    // Two logs, two chains: no id is shared, and each node's seq counts its own lines.
    assert!(from_a.iter().all(|id| !from_b.contains(id)));
    for node in ["a", "b"] {
        let seqs: Vec<u64> = events
            .iter()
            .filter(|e| e["node"] == node)
            .map(|e| e["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs[0], 1, "{node}: {seqs:?}");
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "{node}: {seqs:?}"
        );
    }
    let line = |node: &str, word: &str| {
        events.iter().any(|e| {
            e["node"] == node
                && e["event"] == "channel.start"
                && e["command"] == format!("echo {word}").as_str()
        })
    };
    assert!(line("a", "on-a") && line("b", "on-b"), "{events:#?}");
}

#[test]
fn any_node_searches_every_nodes_audit_events_in_time_order_with_the_node_named() {
    let (cluster, _) = cluster("max_duration = \"1h\"\napprovals = 0");
    let (a, b) = (cluster.node(0), cluster.node(1));
    let first = a
        .ssh(&cluster.alice, "alice+web01")
        .exec("echo first-$((1+1))");
    assert_eq!(first.stdout, "first-2\n", "{first:?}");
    let second = b
        .ssh(&cluster.alice, "alice+web01")
        .exec("echo second-$((2+2))");
    assert_eq!(second.stdout, "second-4\n", "{second:?}");
    for node in [a, b] {
        // Each node's copy arrives a moment after its line is written: wait for both.
        let commands = wait_for(Duration::from_secs(20), || {
            let (status, body) =
                node.api_request(READER, "GET", "/api/v1/commands?q=echo&user=alice", None);
            assert_eq!(status, 200, "{body}");
            let found: Vec<(String, String)> = body["commands"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        e["line"].as_str().unwrap_or_default().to_owned(),
                        e["logged_by"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            (found.len() == 2).then_some(found)
        })
        .unwrap_or_else(|| panic!("both nodes' commands were not found:\n{}", node.log()));
        assert_eq!(
            commands,
            [
                ("echo first-$((1+1))".to_owned(), "a".to_owned()),
                ("echo second-$((2+2))".to_owned(), "b".to_owned())
            ]
        );
    }
    // The CLI's search too, and the audit API by event prefix.
    let searched = b.cli(&["audit", "search", "--command", "second", "--json"]);
    assert_eq!(searched.code, Some(0), "{searched:?}");
    assert!(
        searched.stdout.contains("\"logged_by\":\"b\"") && searched.stdout.contains("second-"),
        "{searched:?}"
    );
    let (status, body) = a.api_request(READER, "GET", "/api/v1/audit?event=session.*", None);
    assert_eq!(status, 200, "{body}");
    let starts: Vec<&str> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "session.start")
        .map(|e| e["logged_by"].as_str().unwrap())
        .collect();
    assert!(starts.contains(&"a") && starts.contains(&"b"), "{body}");
    // Each node's own log still verifies (the copy changes nothing in it).
    for node in [a, b] {
        let verified = node.cli(&["audit", "verify"]);
        assert_eq!(verified.code, Some(0), "{verified:?}");
    }
}

#[test]
fn any_node_watches_a_live_session_and_serves_recordings_written_on_another() {
    let (cluster, _) = cluster("max_duration = \"1h\"\napprovals = 0");
    let (a, b) = (cluster.node(0), cluster.node(1));
    let tmux = shell(&cluster, a, "web01");
    let id = session_on(a, "web01");

    // Watched through b: the history first, then what is typed on a.
    let mut watcher = b
        .api_command(READER, &["sessions", "watch", &id])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let seen = portcullis_tests::util::Collected::start(watcher.stdout.take().unwrap());
    seen.wait_for_text("ready-42", Duration::from_secs(20));
    tmux.line("echo watched-$((3*3))");
    seen.wait_for_text("watched-9", Duration::from_secs(20));
    let watched = a.wait_for_audit("session.watched", |_| true);
    assert_eq!(watched["by"], "auditor (via node b)", "{watched}");
    // The console's one-time ticket, asked of b, opens the view on a (behind a load
    // balancer its next connection may land on any node), and only once.
    let (status, issued) = b.api_request(
        READER,
        "POST",
        &format!("/api/v1/sessions/{id}/live-ticket"),
        None,
    );
    assert_eq!(status, 200, "{issued}");
    let ticket = issued["ticket"].as_str().unwrap();
    assert!(live_view_opens(a, &id, ticket), "the ticket works on a");
    assert!(
        !live_view_opens(b, &id, ticket),
        "a ticket is used once, cluster-wide"
    );
    tmux.line("exit");
    assert!(tmux.wait_exit(Duration::from_secs(10)).is_some());
    portcullis_tests::util::stop(&mut watcher);

    // The recording lives on a's disk; b lists, fetches and verifies it.
    let end = a.wait_for_audit("session.end", |e| e["session"] == id.as_str());
    assert_eq!(end["reason"], "client_closed", "{end}");
    let local = a.recordings();
    assert_eq!(local.len(), 1, "{local:?}");
    let recording = local[0].file_stem().unwrap().to_str().unwrap().to_owned();
    let listed = wait_for(Duration::from_secs(20), || {
        let (status, body) = b.api_request(READER, "GET", "/api/v1/recordings", None);
        assert_eq!(status, 200, "{body}");
        body["recordings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == recording.as_str())
            .cloned()
    })
    .expect("b lists a's recording");
    assert_eq!(listed["node"], "a", "{listed}");
    let (status, bytes) = b.api_bytes(READER, &format!("/api/v1/recordings/{recording}"));
    assert_eq!(status, 200);
    assert_eq!(
        bytes,
        std::fs::read(&local[0]).unwrap(),
        "the same file, byte for byte"
    );
    let (status, verdict) = b.api_request(
        READER,
        "GET",
        &format!("/api/v1/recordings/{recording}/verify"),
        None,
    );
    assert_eq!(status, 200, "{verdict}");
    assert_eq!(verdict["status"], "intact", "{verdict}");
    let (status, missing) = b.api_request(READER, "GET", "/api/v1/recordings/nope-1", None);
    assert_eq!(status, 404, "{missing}");

    // A node-to-node call signed with another secret is refused; with the cluster's, served.
    let (address, fingerprint) = a.api();
    let address = address.trim_start_matches("https://").to_owned();
    let call = |secret: &[u8]| {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        let signer = portcullis::admin::signature::Signer::new(
            key,
            "b",
            "mallory",
            &[portcullis_config::Scope::Read],
        );
        let client =
            portcullis::cli::api::ApiClient::for_peer(&address, &fingerprint, signer.boxed())
                .unwrap();
        portcullis_tests::raw::runtime()
            .block_on(client.request("GET".parse().unwrap(), "/api/v1/sessions", None))
            .unwrap()
            .0
            .as_u16()
    };
    assert_eq!(call(b"not-the-cluster-secret-not-the-cluster"), 401);
    let secret = std::fs::read_to_string(cluster.scratch.path().join("cluster.secret")).unwrap();
    assert_eq!(call(secret.trim().as_bytes()), 200);
}

/// Whether `node` opens the live view of `session` for `ticket` (a browser's way: no token)
/// and sends its first line.
fn live_view_opens(node: &Bastion, session: &str, ticket: &str) -> bool {
    use futures::StreamExt;
    let (url, fingerprint) = node.api();
    let client = portcullis::cli::api::ApiClient::new(&portcullis::cli::api::ApiArgs {
        url: Some(url),
        token: Some("not-a-token".into()),
        fingerprint: Some(fingerprint),
        ca: None,
    })
    .unwrap();
    portcullis_tests::raw::runtime().block_on(async {
        let Ok(mut socket) = client
            .websocket(&format!("/api/v1/sessions/{session}/live?ticket={ticket}"))
            .await
        else {
            return false;
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(20), socket.next()).await,
            Ok(Some(Ok(_)))
        )
    })
}

#[test]
fn a_grant_activated_on_one_node_ends_its_session_on_the_other_when_it_expires() {
    let clock = portcullis_policy::ManualClock::starting_now();
    let cluster = Cluster::start_on(&["a", "b"], "", clock.clone(), |config, sshd, _| {
        config
            .target("db01", sshd, "root", "web01")
            .eligible(
                "db-admins",
                &["alice"],
                &["db*"],
                "max_duration = \"4h\"\ndefault_duration = \"1h\"\napprovals = 0",
            )
            .raw("[access]\nwarn_before = [\"1m\"]");
    });
    let (a, b) = (cluster.node(0), cluster.node(1));
    let granted = a
        .ssh(&cluster.alice, "alice")
        .exec("request db01 --for 1h --reason INC-5");
    assert_eq!(granted.code, Some(0), "{granted:?}");
    let tmux = shell(&cluster, b, "db01");
    clock.advance(Duration::from_secs(59 * 60));
    tmux.wait_for_text(
        "portcullis: your access ends in 1m (grant #1",
        Duration::from_secs(20),
    );
    clock.advance(Duration::from_secs(60));
    tmux.wait_for_text(
        "portcullis: your access has ended (grant #1 expired)",
        Duration::from_secs(20),
    );
    assert!(tmux.wait_exit(Duration::from_secs(10)).is_some());
    let end = b.wait_for_audit("session.end", |e| e["target"] == "db01");
    assert_eq!(end["reason"], "grant_expired", "{end}");
    // One node records the grant's end (whichever janitor came first), once.
    let expired = wait_for(Duration::from_secs(20), || {
        let events: Vec<_> = [a, b]
            .iter()
            .flat_map(|node| node.audit_events("grant.expired"))
            .collect();
        (!events.is_empty()).then_some(events)
    })
    .expect("the grant's end is recorded");
    assert_eq!(expired.len(), 1, "{expired:#?}");
    let refused = a.ssh(&cluster.alice, "alice+db01").exec("true");
    assert_eq!(refused.code, Some(1), "{refused:?}");
}

#[test]
fn the_console_of_one_node_lists_watches_and_kills_a_session_on_the_other() {
    let (cluster, _) = cluster("max_duration = \"1h\"\napprovals = 0");
    let (a, b) = (cluster.node(0), cluster.node(1));
    let browser = portcullis_tests::Browser::start();
    let (url, _) = b.api();
    browser.goto(&format!("{url}/"));
    browser.wait("#token");
    browser.type_into("#token", SECOPS);
    browser.click("#signin");
    browser.wait("#nav:not([hidden])");

    let tmux = shell(&cluster, a, "web01");
    let id = session_on(a, "web01");
    let row = browser.wait(&format!("tr[data-session=\"{id}\"]"));
    assert!(
        browser.text_of(&row).contains("alice"),
        "{}",
        browser.text_of(&row)
    );
    // The Node column names a.
    browser.wait_for_text("#sessions", "Node");
    let cells = browser.execute(
        "return [...document.querySelectorAll(`tr[data-session=\"${arguments[0]}\"] td`)].map((c) => c.textContent)",
        serde_json::json!([id]),
    );
    assert_eq!(cells[1], "a", "{cells}");
    browser.screenshot("cluster-sessions");

    // Watched through b's page: the backlog, then what is typed on a.
    browser.click(&format!("tr[data-session=\"{id}\"] a.session-link"));
    // The facts come from a, which runs it: its node, upstream login and channels.
    let facts = browser.wait_for_text("#session-facts", "Upstream login");
    browser.wait_for_text("#session-facts", "root");
    assert!(facts.contains("Node"), "{facts}");
    browser.wait_for_text("#live-terminal", "ready-42");
    tmux.line("echo watched-$((6*7))");
    browser.wait_for_text("#live-terminal", "watched-42");
    browser.screenshot("cluster-session-live");

    // Killed from b's page: the client on a is told why.
    browser.type_into("#kill-reason", "seen from node b");
    browser.click("#kill");
    tmux.wait_for_text(
        "session terminated by secops: seen from node b",
        Duration::from_secs(20),
    );
    assert!(tmux.wait_exit(Duration::from_secs(10)).is_some());
    browser.wait_for_text("#live-state", "This session has ended.");
    let problems = browser.console_problems();
    assert!(problems.is_empty(), "browser console: {problems:#?}");
}
