//! The web console in a real headless Chromium, against a real bastion and sshd, with the
//! stock ssh client in tmux on the other side: sign in, see a live session appear, watch
//! what is typed, kill it, lock and unlock a user, replay a recording and jump through its
//! commands, see a session's file transfers, approve a waiting request, and a read-only
//! token that can do none of that.
//! A screenshot of each page is kept in `target/console-screenshots/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use portcullis_tests::util::wait_for;
use portcullis_tests::{Browser, Tmux, World};
use serde_json::json;

const SECOPS: &str = "secops-token-0123456789";
const READER: &str = "reader-token-0123456789";

struct Console {
    world: World,
    browser: Browser,
}

/// A bastion with an operate token (`secops`) and a read one (`auditor`), alice eligible
/// for db01 with one approval by secops, and a browser on the console's sign-in page.
fn console() -> Console {
    let world = World::start(|config, sshd, _| {
        config
            .target("db01", sshd, "root", "web01")
            .eligible(
                "db-admins",
                &["alice"],
                &["db01"],
                "max_duration = \"4h\"\ndefault_duration = \"1h\"\nrequire_reason = true\napprovals = 1\napprovers = [\"secops\"]",
            )
            .role("secops", &[], &[])
            .admin(&[
                ("secops", SECOPS, &["read", "operate"]),
                ("auditor", READER, &["read"]),
            ])
            .raw(
                "[[command_rules]]\nname = \"review-reviewed\"\npattern = 'touch\\s+\\S*reviewed-'\naction = \"review\"\napprovers = [\"secops\"]\n",
            );
    });
    std::fs::create_dir_all(world.path("sentinels")).unwrap();
    let browser = Browser::start();
    let (url, _) = world.bastion.api();
    browser.goto(&format!("{url}/"));
    Console { world, browser }
}

impl Console {
    fn sign_in(&self, token: &str) {
        self.browser.wait("#token");
        self.browser.type_into("#token", token);
        self.browser.click("#signin");
        self.browser.wait("#nav:not([hidden])");
    }

    fn open(&self, hash: &str) {
        let (url, _) = self.world.bastion.api();
        self.browser.goto(&format!("{url}/{hash}"));
    }

    /// alice's shell on web01, ready.
    fn shell(&self) -> Tmux {
        let tmux = Tmux::start(
            &self.world.alice("alice+web01").shell_line(&["-tt"]),
            100,
            30,
        );
        tmux.line("echo ready-$((40+2))");
        tmux.wait_for_text("ready-42", Duration::from_secs(20));
        tmux
    }

    /// Nothing on the page broke a rule of the Content-Security-Policy or threw.
    fn no_console_problems(&self) {
        let problems = self.browser.console_problems();
        assert!(problems.is_empty(), "browser console: {problems:#?}");
    }

    /// `fetch` from inside the page with `token`: the status.
    fn fetch_status(&self, token: &str, method: &str, path: &str, body: serde_json::Value) -> u64 {
        let status = self.browser.execute_async(
            "const [token, method, path, body, done] = arguments;
             fetch(path, {method, headers: {Authorization: 'Bearer ' + token,
               'Content-Type': 'application/json'}, body: method === 'GET' ? undefined : JSON.stringify(body)})
               .then((r) => done(r.status), (e) => done(String(e)));",
            json!([token, method, path, body]),
        );
        status
            .as_u64()
            .unwrap_or_else(|| panic!("fetch failed: {status}"))
    }
}

#[test]
fn a_reviewer_signs_in_sees_a_live_session_watches_it_and_kills_it() {
    let console = console();
    let browser = &console.browser;
    browser.wait("#token");
    browser.screenshot("signin");

    // A wrong token is refused with a plain message, and nothing is kept.
    browser.type_into("#token", "not-a-token");
    browser.click("#signin");
    browser.wait_for_text("#flash", "That token was not accepted.");
    let kept = browser.execute("return sessionStorage.length", json!([]));
    assert_eq!(kept, json!(0));
    // (The browser logs the 401 it was answered with; that one is expected.)
    let _ = browser.console_problems();
    browser.execute("document.getElementById('token').value = ''", json!([]));
    console.sign_in(SECOPS);
    browser.wait_for_text("#who", "secops");
    // The token is in this tab's sessionStorage, not in a cookie.
    let cookies = browser.execute("return document.cookie", json!([]));
    assert_eq!(cookies, json!(""));

    let tmux = console.shell();
    let row = browser.wait("tr[data-user=\"alice\"]");
    let session = browser.attribute(&row, "data-session").unwrap();
    browser.wait_for_text("#sessions", "web01");
    browser.screenshot("sessions");

    browser.click(&format!("tr[data-session=\"{session}\"] a.session-link"));
    browser.wait_for_text("#session-facts", "alice");
    // The backlog first, then what is typed from now on.
    browser.wait_for_text("#live-terminal", "ready-42");
    tmux.line("echo watched-$((6*7))");
    browser.wait_for_text("#live-terminal", "watched-42");
    browser.screenshot("session-live");

    // A kill needs a reason; with one, the client's ssh ends with it on screen.
    browser.click("#kill");
    browser.wait_for_text("#flash", "A kill needs a reason");
    assert!(tmux.exit_status().is_none(), "killed without a reason");
    browser.type_into("#kill-reason", "suspicious activity");
    browser.click("#kill");
    tmux.wait_exit(Duration::from_secs(10));
    assert!(
        tmux.screen()
            .contains("session terminated by secops: suspicious activity"),
        "{}",
        tmux.screen()
    );
    browser.wait_for_text("#flash", "Session killed: suspicious activity");
    browser.wait_for_text("#live-state", "This session has ended.");
    let killed = console
        .world
        .bastion
        .wait_for_audit("session.killed", |e| e["session"] == session.as_str());
    assert_eq!(killed["by"], "secops", "{killed}");

    // The audit page finds it.
    console.open("#/audit");
    browser.type_into("#event-search input[name=event]", "session.killed");
    browser.click("#event-search button");
    browser.wait_for_text("#events", "suspicious activity");
    browser.screenshot("audit");

    // Lock alice from the page: her next login is refused with the reason; then unlock.
    console.open("#/locks");
    browser.type_into("#lock-form input[name=user]", "alice");
    browser.type_into("#lock-form input[name=reason]", "under investigation");
    browser.click("#lock-form button");
    browser.wait("#locks tr[data-user=\"alice\"]");
    browser.screenshot("locks");
    let refused = console.world.alice("alice+web01").exec("true");
    assert_ne!(refused.code, Some(0));
    assert!(
        refused.stderr.contains("under investigation"),
        "{refused:?}"
    );
    browser.click("#locks tr[data-user=\"alice\"] button.unlock");
    browser.wait_for_text("#locks", "Nobody is locked.");
    let back = console
        .world
        .alice("alice+web01")
        .exec("echo back-$((1+1))");
    assert_eq!(back.stdout, "back-2\n", "{back:?}");
    console.no_console_problems();
}

#[test]
fn a_recording_replays_and_its_timeline_lists_the_commands_that_ran() {
    let console = console();
    let browser = &console.browser;
    let tmux = console.shell();
    tmux.line("echo one-$((0+1))");
    tmux.wait_for_text("one-1", Duration::from_secs(10));
    tmux.line("sleep 1; echo two-$((1+1))");
    tmux.wait_for_text("two-2", Duration::from_secs(10));
    tmux.line("echo three-$((1+2))");
    tmux.wait_for_text("three-3", Duration::from_secs(10));
    tmux.line("exit");
    tmux.wait_exit(Duration::from_secs(20));
    console
        .world
        .bastion
        .wait_for_audit("session.end", |_| true);

    console.sign_in(READER);
    console.open("#/recordings");
    let link = browser.wait("a.recording-link");
    browser.screenshot("recordings");
    browser.click_element(&link);
    browser.wait("#timeline button.marker");
    browser.wait_for_text("#recording-verdict", "Integrity");

    // The timeline is the recording's markers; its command entries are exactly the lines
    // the audit log says ran, in order.
    let labels: Vec<String> = browser
        .find_all("#timeline button.marker .label")
        .iter()
        .map(|e| browser.text_of(e))
        .collect();
    let ran: Vec<String> = console
        .world
        .bastion
        .audit_events("command")
        .iter()
        .filter(|e| e["outcome"] == "ran")
        .map(|e| format!("$ {}", e["line"].as_str().unwrap()))
        .collect();
    let commands: Vec<String> = labels
        .iter()
        .filter(|l| l.starts_with("$ "))
        .cloned()
        .collect();
    assert_eq!(commands, ran, "timeline {labels:?}");
    assert!(
        ran.contains(&"$ sleep 1; echo two-$((1+1))".to_owned()),
        "{ran:?}"
    );

    // Jumping to a command shows the terminal as it was when it was entered: what came
    // before is on screen, its own output is not yet.
    let index = labels
        .iter()
        .position(|l| l == "$ echo three-$((1+2))")
        .unwrap();
    browser.click(&format!("#timeline button.marker[data-index=\"{index}\"]"));
    let screen = browser.wait_for_text("#replay-terminal", "two-2");
    assert!(screen.contains("echo three-$((1+2))"), "{screen}");
    assert!(!screen.contains("three-3"), "{screen}");
    let current = browser.wait("#timeline li.current");
    assert_eq!(
        browser.attribute(&current, "data-index"),
        Some(index.to_string())
    );
    browser.screenshot("replay");
    console.no_console_problems();
}

#[test]
fn a_recording_without_a_terminal_shows_its_streams_with_a_text_preview() {
    let console = console();
    let browser = &console.browser;
    let ran = console
        .world
        .alice("alice+web01")
        .exec("printf 'bytes-%s\\n' out; printf 'warned\\n' >&2");
    assert_eq!(ran.stdout, "bytes-out\n", "{ran:?}");
    let ended = console
        .world
        .bastion
        .wait_for_audit("channel.end", |e| e["recording_seal"].as_str().is_some());
    let id = ended["recording"].as_str().unwrap();
    console.sign_in(READER);
    console.open(&format!("#/recordings/{id}"));
    let streams = browser.wait_for_text("#recording-streams", "bytes-out");
    assert!(streams.contains("warned"), "{streams}");
    assert!(streams.contains("stdin"), "{streams}");
    browser.wait("#recording-streams button.download[data-stream=\"stdout\"]");
    browser.wait_for_text("#recording-verdict", "intact");
    browser.wait_for_text("#recording-facts", "exact bytes per stream");
    // Its timeline: the markers of how the channel started and ended.
    browser.wait_for_text("#timeline", "start: exec");
    browser.wait_for_text("#timeline", "end: exit status 0");
    browser.screenshot("streams");
    console.no_console_problems();
}

#[test]
fn a_session_page_lists_its_file_transfers_operation_by_operation() {
    let console = console();
    let browser = &console.browser;
    let world = &console.world;
    let local = world.path("console-up.txt");
    std::fs::write(&local, "shown in the console\n").unwrap();
    let remote = world.path("console-remote.txt").display().to_string();
    let moved = format!("{remote}.moved");
    let ran = world.alice("alice+web01").sftp(&format!(
        "put {} {remote}\nrename {remote} {moved}\nrm {moved}\n",
        local.display()
    ));
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let removed = world
        .bastion
        .wait_for_audit("sftp.remove", |e| e["path"] == moved.as_str());
    let session = removed["session"].as_str().unwrap();
    console.sign_in(READER);
    console.open(&format!("#/sessions/{session}"));
    let shown = browser.wait_for_text("#session-transfers", "rename");
    for expected in [
        remote.as_str(),
        moved.as_str(),
        "write,create,truncate",
        "sha256 ",
    ] {
        assert!(shown.contains(expected), "{expected:?} not in {shown}");
    }
    browser.wait("#session-transfers tr[data-event=\"sftp.remove\"]");
    browser.screenshot("session-transfers");
    console.no_console_problems();
}

#[test]
fn a_request_approved_in_the_page_lets_the_waiting_login_through() {
    let console = console();
    let browser = &console.browser;
    console.sign_in(SECOPS);
    let tmux = Tmux::start(
        &console.world.alice("alice+db01").shell_line(&["-tt"]),
        100,
        30,
    );
    tmux.wait_for_text("Reason", Duration::from_secs(20));
    tmux.line("INC-7 disk full");
    tmux.wait_for_text("Duration [", Duration::from_secs(10));
    tmux.line("");
    tmux.wait_for_text(
        "waiting for approval of request #1 by secops…",
        Duration::from_secs(10),
    );

    console.open("#/requests");
    let row = "#requests tr[data-request=\"1\"]";
    browser.wait(row);
    browser.wait_for_text(row, "INC-7 disk full");
    browser.screenshot("requests");
    // A denial needs a reason; approval does not.
    browser.click(&format!("{row} button.deny"));
    browser.wait_for_text("#flash", "A denial needs a reason");
    browser.click(&format!("{row} button.approve"));
    browser.wait_for_text("#flash", "Request #1 approved.");
    tmux.line("echo approved-$((20+22))");
    tmux.wait_for_text("approved-42", Duration::from_secs(20));
    browser.wait_for_text("#requests-history", "approved by secops");
    let approved = console
        .world
        .bastion
        .wait_for_audit("request.approved", |e| e["request"] == 1);
    assert_eq!(approved["by"], "secops", "{approved}");

    // A command held for review shows up too, with its line; denied here, it does not run.
    let held = console.world.path("sentinels").join("reviewed-1");
    tmux.line(&format!("touch {}", held.display()));
    tmux.wait_for_text("request #2 waits for approval", Duration::from_secs(10));
    let row = "#requests tr[data-request=\"2\"]";
    browser.wait_for_text(row, &format!("touch {}", held.display()));
    let kind = browser.wait(row);
    assert_eq!(
        browser.attribute(&kind, "data-kind").as_deref(),
        Some("command")
    );
    browser.screenshot("requests-command");
    browser.type_into(&format!("{row} input.note"), "not on prod");
    browser.click(&format!("{row} button.deny"));
    tmux.wait_for_text(
        "request #2 denied by secops: not on prod; not run",
        Duration::from_secs(10),
    );
    assert!(!held.exists(), "a denied line ran");
    browser.wait_for_text("#requests-history", "denied by secops: not on prod");
    console.no_console_problems();
}

#[test]
fn a_read_only_token_sees_no_kill_or_decision_and_is_refused_if_it_tries() {
    let console = console();
    let browser = &console.browser;
    console.sign_in(READER);
    let tmux = console.shell();
    let row = browser.wait("tr[data-user=\"alice\"]");
    let session = browser.attribute(&row, "data-session").unwrap();
    console.open(&format!("#/sessions/{session}"));
    browser.wait_for_text("#live-terminal", "ready-42");
    assert!(
        browser.find("#kill").is_none(),
        "a read token sees a kill button"
    );
    assert!(browser.find("#kill-form").is_none());
    browser.screenshot("session-read-only");

    console.no_console_problems();
    // Going around the page does not help: the API refuses, and the session lives on.
    let status = console.fetch_status(
        READER,
        "POST",
        &format!("/api/v1/sessions/{session}/kill"),
        json!({"reason": "trying"}),
    );
    assert_eq!(status, 403);
    tmux.line("echo still-$((2+3))");
    tmux.wait_for_text("still-5", Duration::from_secs(10));

    // Nor can it lock, or decide requests.
    console.open("#/locks");
    browser.wait("#locks");
    assert!(browser.find("#lock-form").is_none());
    let status = console.fetch_status(
        READER,
        "POST",
        "/api/v1/locks",
        json!({"user": "alice", "reason": "trying"}),
    );
    assert_eq!(status, 403);
    console.open("#/requests");
    browser.wait_for_text("#requests", "Nothing waiting");
    assert!(browser.find("button.approve").is_none());

    // The page itself is locked down: scripts and styles from its own origin only.
    let policy = browser.execute_async(
        "const done = arguments[0];
         fetch('/').then((r) => done(r.headers.get('content-security-policy')));",
        json!([]),
    );
    let policy = policy.as_str().unwrap_or_default();
    assert!(
        policy.contains("script-src 'self' 'wasm-unsafe-eval'"),
        "{policy}"
    );
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    // A live WebSocket without a ticket or token is refused.
    let (url, _) = console.world.bastion.api();
    let ws = url.replacen("https://", "wss://", 1);
    let refused = browser.execute_async(
        "const [url, done] = arguments;
         const socket = new WebSocket(url);
         socket.onopen = () => done('open');
         socket.onerror = () => done('refused');",
        json!([format!(
            "{ws}/api/v1/sessions/{session}/live?ticket=guessed"
        )]),
    );
    assert_eq!(refused, json!("refused"));
    let signed_out = wait_for(Duration::from_secs(1), || {
        browser.find("#signout").map(|_| ())
    });
    assert!(signed_out.is_some());
    browser.click("#signout");
    browser.wait("#token");
    assert_eq!(
        browser.execute("return sessionStorage.length", json!([])),
        json!(0)
    );
}
