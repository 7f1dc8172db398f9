//! Text one person types never reaches another person's terminal as control: a request
//! reason with a line break and a bidi override cannot forge a line in an approver's list, a
//! kill or lock reason with escape sequences cannot clear a user's screen, and command lines
//! with tricks in them are shown escaped by `audit search` and `recordings list`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use portcullis_tests::raw::{self, runtime};
use portcullis_tests::{Keypair, World};

const SECOPS: &str = "secops-token-0123456789";

/// alice is eligible for db01 (one approval by secops); bob is in secops.
fn world() -> (World, Keypair) {
    let mut bob = None;
    let world = World::start(|config, sshd, scratch| {
        let key = Keypair::generate(scratch.path(), "bob");
        config
            .user("bob", &[&key.public])
            .target("db01", sshd, "root", "web01")
            .eligible(
                "db-admins",
                &["alice"],
                &["db01"],
                "max_duration = \"4h\"\napprovals = 1\napprovers = [\"secops\"]",
            )
            .role("secops", &["bob"], &["web01"])
            .admin(&[("secops", SECOPS, &["read", "operate"])]);
        bob = Some(key);
    });
    (world, bob.unwrap())
}

fn no_raw_controls(text: &str) {
    for c in ['\u{1b}', '\u{9b}', '\u{202e}', '\u{200b}'] {
        assert!(!text.contains(c), "{c:?} reached a terminal raw: {text:?}");
    }
}

#[test]
fn a_request_reason_cannot_forge_what_an_approver_reads() {
    let (world, bob) = world();
    // The real request: db01 for 4h. The reason tries to end the line and draw a harmless
    // looking one, right to left.
    let reason = "INC-1\nalice → web02 for 10m \u{202e}m01 rof\u{200b}";
    let request = format!("request db01 --for 4h --reason '{reason}'");
    let ran = world.alice("alice").exec(&request);
    assert!(ran.stdout.contains("waiting for approval"), "{ran:?}");

    let listed = world.bastion.ssh(&bob, "bob").exec("requests");
    assert_eq!(listed.code, Some(0), "{listed:?}");
    no_raw_controls(&listed.stdout);
    assert!(
        !listed
            .stdout
            .lines()
            .any(|l| l.trim_start().starts_with("alice → web02")),
        "a forged line: {}",
        listed.stdout
    );
    assert!(
        listed
            .stdout
            .contains("reason: INC-1\\nalice → web02 for 10m \\u{202e}m01 rof\\u{200b}"),
        "{}",
        listed.stdout
    );
    assert!(
        listed.stdout.contains("alice → db01 for 4h"),
        "{}",
        listed.stdout
    );

    // The admin CLI's table shows it the same way.
    let table = world.bastion.api_cli(SECOPS, &["requests", "list"]);
    no_raw_controls(&table.stdout);
    assert_eq!(table.stdout.lines().count(), 2, "{}", table.stdout);
}

#[test]
fn kill_and_lock_reasons_cannot_drive_the_users_terminal() {
    let (world, _) = world();
    let runtime = runtime();
    // A user's running command; the kill comes through the API meanwhile.
    let running = || {
        runtime.block_on(async {
            let mut ssh = world.bastion.raw().await;
            assert!(ssh.login_key("alice+web01", &world.alice).await);
            let mut channel = ssh.session().await;
            channel
                .exec(true, &b"echo running; sleep 60"[..])
                .await
                .unwrap();
            assert!(raw::read_until(&mut channel, "running", Duration::from_secs(20)).await);
            (ssh, channel)
        })
    };
    let (_ssh, mut channel) = running();
    let sessions = world
        .bastion
        .api_request(SECOPS, "GET", "/api/v1/sessions", None);
    let id = sessions.1["sessions"][0]["id"].as_str().unwrap().to_owned();
    let (status, _) = world.bastion.api_request(
        SECOPS,
        "POST",
        &format!("/api/v1/sessions/{id}/kill"),
        Some(serde_json::json!({
            "reason": "\u{1b}[2J\u{1b}[Hall clear, \u{9b}31mcarry on"
        })),
    );
    assert_eq!(status, 200);
    let received = runtime.block_on(raw::collect(&mut channel, Duration::from_secs(20)));
    let stderr = received.stderr_text();
    no_raw_controls(&stderr);
    assert!(
        stderr.contains("session terminated by secops: \\e[2J\\e[Hall clear, \\x9b31mcarry on"),
        "{stderr:?}"
    );

    // A lock's reason reaches the user the same way.
    let (_ssh, mut channel) = running();
    let (status, _) = world.bastion.api_request(
        SECOPS,
        "POST",
        "/api/v1/locks",
        Some(serde_json::json!({ "user": "alice", "reason": "laptop\u{1b}]0;owned\u{7}" })),
    );
    assert_eq!(status, 200);
    let received = runtime.block_on(raw::collect(&mut channel, Duration::from_secs(20)));
    let stderr = received.stderr_text();
    no_raw_controls(&stderr);
    assert!(stderr.contains("laptop\\e]0;owned\\x07"), "{stderr:?}");
}

#[test]
fn command_lines_are_shown_escaped_in_searches_and_listings() {
    let (world, _) = world();
    // A multi-line command whose second line pretends to be another row, with a bidi trick.
    let command = "echo looked-at #\u{202e}txt.exe\n: fake-row alice web01 ran";
    let ran = world.alice("alice+web01").exec(command);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    world.bastion.wait_for_audit("session.end", |_| true);

    let search = world
        .bastion
        .cli(&["audit", "search", "--command", "looked-at"]);
    assert_eq!(search.code, Some(0), "{search:?}");
    no_raw_controls(&search.stdout);
    assert!(
        !search.stdout.lines().any(|l| l.starts_with(": fake-row")),
        "{}",
        search.stdout
    );
    assert!(
        search.stdout.contains("\\u{202e}txt.exe\\n: fake-row"),
        "{}",
        search.stdout
    );

    let listing = world.bastion.cli(&["recordings", "list"]);
    no_raw_controls(&listing.stdout);
    assert!(
        listing.stdout.contains("\\u{202e}txt.exe\\n: fake-row"),
        "{}",
        listing.stdout
    );
    assert_eq!(listing.stdout.lines().count(), 2, "{}", listing.stdout);
}
