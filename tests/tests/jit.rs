//! Just-in-time access, end to end with the stock ssh client: activation on the user's own
//! terminal, approval and denial by a second person (over ssh and through the admin API),
//! refusal of clients that cannot answer, grants that warn and end live sessions, revocation,
//! restarts, break-glass review and a fresh TOTP code at activation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis::credentials::{password, totp};
use portcullis_policy::ManualClock;
use portcullis_tests::util::wait_for;
use portcullis_tests::{ConfigText, Keypair, Sshd, Tmux, World};
use tempfile::TempDir;

const SECOPS: &str = "secops-token-0123456789";
const READER: &str = "reader-token-0123456789";

/// alice may reach web01 (standing) and is eligible for db01 with `settings`; bob is in
/// `secops`, the approvers; the admin API has an operate token (`secops`) and a read one.
struct Jit {
    world: World,
    bob: Keypair,
}

fn jit(settings: &str, extra: &str) -> Jit {
    jit_with(None, settings, extra)
}

/// [`jit`] with the bastion in this process on `clock`, for scenarios about time.
fn jit_on(clock: &Arc<ManualClock>, settings: &str, extra: &str) -> Jit {
    jit_with(Some(clock.clone()), settings, extra)
}

fn jit_with(clock: Option<Arc<ManualClock>>, settings: &str, extra: &str) -> Jit {
    let mut bob = None;
    let configure = |config: &mut ConfigText, sshd: &Sshd, scratch: &TempDir| {
        let key = Keypair::generate(scratch.path(), "bob");
        config
            .user("bob", &[&key.public])
            .target("db01", sshd, "root", "web01")
            .target("db02", sshd, "root", "web01")
            .eligible("db-admins", &["alice"], &["db*"], settings)
            .role("secops", &["bob"], &["web01"])
            .admin(&[
                ("secops", SECOPS, &["read", "operate"]),
                ("auditor", READER, &["read"]),
            ])
            .raw(extra);
        bob = Some(key);
    };
    let world = match clock {
        Some(clock) => World::start_on(clock, configure),
        None => World::start(configure),
    };
    Jit {
        world,
        bob: bob.unwrap(),
    }
}

impl Jit {
    fn bob(&self, command: &str) -> portcullis_tests::Ran {
        self.world.bastion.ssh(&self.bob, "bob").exec(command)
    }

    fn alice(&self, command: &str) -> portcullis_tests::Ran {
        self.world.alice("alice").exec(command)
    }

    /// An interactive login to `target` in tmux.
    fn terminal(&self, target: &str) -> Tmux {
        Tmux::start(
            &self
                .world
                .alice(&format!("alice+{target}"))
                .shell_line(&["-tt"]),
            120,
            40,
        )
    }

    /// Answers the reason and duration questions.
    fn answer(&self, tmux: &Tmux, reason: &str, duration: &str) {
        tmux.wait_for_text("Reason", Duration::from_secs(20));
        tmux.line(reason);
        tmux.wait_for_text("Duration [", Duration::from_secs(10));
        tmux.line(duration);
    }

    /// Runs a command in the remote shell and waits for its output.
    fn shell_works(&self, tmux: &Tmux) {
        tmux.line("echo remote-$((6*7))");
        tmux.wait_for_text("remote-42", Duration::from_secs(20));
    }
}

const SELF_SERVICE: &str = "max_duration = \"4h\"\ndefault_duration = \"1h\"\nrequire_reason = true\nreason_pattern = \"^(INC|CHG)-[0-9]+\"\napprovals = 0";
const WITH_APPROVAL: &str = "max_duration = \"4h\"\ndefault_duration = \"1h\"\nrequire_reason = true\napprovals = 1\napprovers = [\"secops\"]";

#[test]
fn activation_on_the_terminal_checks_the_answers_then_lands_on_the_target() {
    let jit = jit(SELF_SERVICE, "");
    let tmux = jit.terminal("db01");
    tmux.wait_for_text(
        "portcullis: db01 is just-in-time access (role db-admins; access starts as soon as you answer).",
        Duration::from_secs(20),
    );
    tmux.wait_for_text(
        "Reason (must match ^(INC|CHG)-[0-9]+): ",
        Duration::from_secs(5),
    );
    tmux.line("because");
    tmux.wait_for_text(
        "the reason must match ^(INC|CHG)-[0-9]+; try again",
        Duration::from_secs(5),
    );
    // Typing is echoed and editable: a typo rubbed out with Backspace.
    tmux.type_text("INC-42 disk fulx");
    tmux.keys(&["BSpace"]);
    tmux.line("l");
    tmux.wait_for_text("Duration [1h, at most 4h]: ", Duration::from_secs(5));
    tmux.line("5h");
    tmux.wait_for_text(
        "choose more than zero and at most 4h",
        Duration::from_secs(5),
    );
    tmux.line("30m");
    tmux.wait_for_text("access to db01 granted until", Duration::from_secs(10));
    jit.shell_works(&tmux);

    let activated = jit
        .world
        .bastion
        .wait_for_audit("grant.activated", |_| true);
    assert_eq!(activated["user"], "alice");
    assert_eq!(activated["target"], "db01");
    assert_eq!(activated["reason"], "INC-42 disk full");
    assert_eq!(activated["duration_s"], 1800);
    assert_eq!(activated["via"], "ssh-login");
    let granted = jit
        .world
        .bastion
        .wait_for_audit("access.granted", |e| e["target"] == "db01");
    assert_eq!(granted["grant"], activated["grant"]);

    // The grant covers the next login too, even one that cannot answer questions.
    let again = jit.world.alice("alice+db01").exec("echo again-$((1+1))");
    assert_eq!(again.code, Some(0), "{again:?}");
    assert_eq!(again.stdout, "again-2\n");
    let listing = jit.alice("targets");
    assert!(
        listing
            .stdout
            .contains("eligible, role db-admins: ACTIVE, grant #1"),
        "{listing:?}"
    );
    let grants = jit.alice("grants");
    assert!(
        grants.stdout.contains("#1    db01 (role db-admins)"),
        "{grants:?}"
    );

    tmux.line("exit");
    assert_eq!(tmux.wait_exit(Duration::from_secs(20)), Some(0));
    // (The client may exit a moment before the bastion has sealed the recording.)
    jit.world
        .bastion
        .wait_for_audit("session.end", |e| e["target"] == "db01");
    // The shell after the activation was recorded like any other.
    let cast = jit
        .world
        .bastion
        .recordings()
        .into_iter()
        .find(|p| std::fs::read_to_string(p).unwrap().contains("remote-42"))
        .expect("a recording of the activated shell");
    assert_eq!(
        jit.world
            .bastion
            .cli(&["recordings", "verify", cast.to_str().unwrap()])
            .code,
        Some(0)
    );
}

#[test]
fn a_client_that_cannot_answer_is_told_the_exact_command_which_works() {
    let jit = jit(SELF_SERVICE, "");
    let port = jit.world.bastion.address().port();
    let refused = jit.world.alice("alice+db01").exec("true");
    assert_eq!(refused.code, Some(1), "{refused:?}");
    let command = format!("ssh -p {port} alice@127.0.0.1 request db01 --for 1h --reason \"…\"");
    assert!(refused.stderr.contains(&command), "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("The reason must match ^(INC|CHG)-[0-9]+."),
        "{refused:?}"
    );
    assert!(
        jit.world
            .bastion
            .audit_events("upstream.connected")
            .is_empty(),
        "no upstream connection without a grant"
    );

    // Wrong answers change nothing.
    let bad = jit.alice("request db01 --for 1h --reason 'no ticket'");
    assert_eq!(bad.code, Some(1));
    assert!(bad.stderr.contains("the reason must match"), "{bad:?}");
    let unknown = jit.alice("request db99 --reason INC-1");
    assert!(
        unknown
            .stderr
            .contains("you cannot activate db99: there is no such target"),
        "{unknown:?}"
    );
    let standing = jit.alice("request web01 --reason INC-1");
    assert!(standing.stderr.contains("standing access"), "{standing:?}");
    assert!(jit.world.bastion.audit_events("grant.activated").is_empty());

    let granted = jit.alice("request db01 --for 1h --reason 'INC-7 rotate logs'");
    assert_eq!(granted.code, Some(0), "{granted:?}");
    assert!(
        granted.stdout.contains("access to db01 granted until"),
        "{granted:?}"
    );
    let twice = jit.alice("request db01 --reason INC-8");
    assert!(
        twice.stderr.contains("you already have grant #1 for db01"),
        "{twice:?}"
    );
    let ran = jit.world.alice("alice+db01").exec("echo ok-$((1+1))");
    assert_eq!(ran.stdout, "ok-2\n", "{ran:?}");

    // Users may end their own grants (and only theirs).
    let not_bobs = jit.bob("revoke 1");
    assert!(not_bobs.stderr.contains("#1 is not yours"), "{not_bobs:?}");
    let revoked = jit.alice("revoke 1 --reason 'done early'");
    assert_eq!(revoked.code, Some(0), "{revoked:?}");
    assert!(revoked.stdout.contains("revoked grant #1"), "{revoked:?}");
    let after = jit.world.alice("alice+db01").exec("true");
    assert_eq!(after.code, Some(1));
    assert!(after.stderr.contains("request db01"), "{after:?}");
}

#[test]
fn a_waiting_login_gets_through_when_a_second_person_approves_over_ssh() {
    let jit = jit(WITH_APPROVAL, "");
    let tmux = jit.terminal("db01");
    jit.answer(&tmux, "INC-9 replication lag", "");
    tmux.wait_for_text(
        "waiting for approval of request #1 by secops…",
        Duration::from_secs(10),
    );

    let own = jit.alice("approve 1");
    assert_eq!(own.code, Some(1));
    assert!(
        own.stderr.contains("nobody may approve their own request"),
        "{own:?}"
    );
    // A read-only token may look but not decide.
    let (status, body) = jit.world.bastion.api_request(
        READER,
        "POST",
        "/api/v1/requests/1/approve",
        Some(serde_json::json!({})),
    );
    assert_eq!(status, 403, "{body}");
    let listed = jit.world.bastion.api_cli(READER, &["requests", "list"]);
    assert!(
        listed.stdout.contains("alice") && listed.stdout.contains("INC-9 replication lag"),
        "{listed:?}"
    );

    let pending = jit.bob("requests");
    assert!(
        pending
            .stdout
            .contains("#1    alice → db01 for 1h (role db-admins)"),
        "{pending:?}"
    );
    let approved = jit.bob("approve 1 --comment 'go ahead'");
    assert_eq!(approved.code, Some(0), "{approved:?}");
    assert!(
        approved
            .stdout
            .contains("approved request #1: alice may reach db01"),
        "{approved:?}"
    );
    tmux.wait_for_text(
        "request #1 approved; access granted until",
        Duration::from_secs(5),
    );
    jit.shell_works(&tmux);

    let approval = jit
        .world
        .bastion
        .wait_for_audit("request.approved", |_| true);
    assert_eq!(approval["by"], "bob");
    assert_eq!(approval["comment"], "go ahead");
    let activated = jit
        .world
        .bastion
        .wait_for_audit("grant.activated", |_| true);
    assert_eq!(activated["request"], 1);
    assert_eq!(activated["via"], "approval");
    let again = jit.bob("approve 1");
    assert!(
        again.stderr.contains("it is no longer pending"),
        "{again:?}"
    );
}

#[test]
fn a_denial_ends_the_waiting_login_with_the_reason() {
    let jit = jit(WITH_APPROVAL, "");
    let tmux = jit.terminal("db01");
    jit.answer(&tmux, "INC-10", "2h");
    tmux.wait_for_text(
        "waiting for approval of request #1",
        Duration::from_secs(10),
    );

    let no_reason = jit.world.bastion.api_request(
        SECOPS,
        "POST",
        "/api/v1/requests/1/deny",
        Some(serde_json::json!({ "reason": " " })),
    );
    assert_eq!(no_reason.0, 400, "{:?}", no_reason.1);
    let denied = jit.world.bastion.api_cli(
        SECOPS,
        &["requests", "deny", "1", "--reason", "use the replica"],
    );
    assert_eq!(denied.code, Some(0), "{denied:?}");
    tmux.wait_for_text(
        "portcullis: request #1 was denied by secops: use the replica",
        Duration::from_secs(5),
    );
    assert_eq!(tmux.wait_exit(Duration::from_secs(10)), Some(1));
    let event = jit.world.bastion.wait_for_audit("request.denied", |_| true);
    assert_eq!(event["by"], "secops");
    assert!(jit.world.bastion.audit_events("grant.activated").is_empty());
    assert!(
        jit.world
            .bastion
            .audit_events("upstream.connected")
            .is_empty()
    );
}

#[test]
fn ctrl_c_withdraws_a_waiting_request() {
    let jit = jit(WITH_APPROVAL, "");
    let tmux = jit.terminal("db01");
    jit.answer(&tmux, "INC-11", "");
    tmux.wait_for_text("Ctrl-C withdraws the request", Duration::from_secs(10));
    tmux.keys(&["C-c"]);
    tmux.wait_for_text("portcullis: request #1 withdrawn", Duration::from_secs(5));
    assert_eq!(tmux.wait_exit(Duration::from_secs(10)), Some(1));
    jit.world
        .bastion
        .wait_for_audit("request.cancelled", |_| true);
    let nothing = jit.bob("requests");
    assert!(
        nothing.stdout.contains("No requests are waiting for you."),
        "{nothing:?}"
    );
}

#[test]
fn a_grant_warns_the_live_shell_then_ends_it_at_expiry() {
    let clock = ManualClock::starting_now();
    let jit = jit_on(
        &clock,
        "max_duration = \"4h\"\ndefault_duration = \"1h\"\napprovals = 0",
        "[access]\nwarn_before = [\"10m\", \"1m\"]",
    );
    let tmux = jit.terminal("db01");
    tmux.wait_for_text("Reason (optional): ", Duration::from_secs(20));
    tmux.line("");
    tmux.wait_for_text("Duration [1h, at most 4h]: ", Duration::from_secs(10));
    tmux.line("1h");
    tmux.wait_for_text("access to db01 granted", Duration::from_secs(10));
    jit.shell_works(&tmux);

    clock.advance(Duration::from_secs(50 * 60));
    tmux.wait_for_text(
        "portcullis: your access ends in 10m (grant #1",
        Duration::from_secs(10),
    );
    clock.advance(Duration::from_secs(9 * 60));
    let warned = tmux.wait_for_text(
        "portcullis: your access ends in 1m (grant #1",
        Duration::from_secs(10),
    );
    assert!(!warned.contains("your access has ended"), "{warned}");
    // A second before the end the shell still works.
    clock.advance(Duration::from_secs(59));
    tmux.line("echo still-$((6*7))");
    tmux.wait_for_text("still-42", Duration::from_secs(10));
    assert!(tmux.exit_status().is_none(), "ended before its grant");

    clock.advance(Duration::from_secs(1));
    let screen = tmux.wait_for_text(
        "portcullis: your access has ended (grant #1 expired)",
        Duration::from_secs(10),
    );
    assert!(
        screen.find("your access ends in 10m") < screen.find("your access ends in 1m")
            && screen.find("your access ends in 1m") < screen.find("your access has ended"),
        "{screen}"
    );
    assert!(tmux.wait_exit(Duration::from_secs(10)).is_some());

    // Ended at the grant's instant: the clock stood exactly there.
    let activated = jit
        .world
        .bastion
        .wait_for_audit("grant.activated", |_| true);
    let expires = humantime::parse_rfc3339(activated["expires_at"].as_str().unwrap()).unwrap();
    let end = jit
        .world
        .bastion
        .wait_for_audit("session.end", |e| e["target"] == "db01");
    assert_eq!(end["reason"], "grant_expired");
    assert_eq!(end["side"], "policy", "{end}");
    let ended = humantime::parse_rfc3339_weak(end["time"].as_str().unwrap()).unwrap();
    let apart = ended
        .duration_since(expires)
        .unwrap_or_else(|e| e.duration());
    assert!(
        apart < Duration::from_secs(1),
        "ended at {ended:?}, expires {expires:?}"
    );
    jit.world.bastion.wait_for_audit("grant.expired", |_| true);
    // The warnings and the end are in the recording too.
    let cast = jit.world.bastion.recordings().pop().unwrap();
    let text = std::fs::read_to_string(cast).unwrap();
    assert!(text.contains("your access ends in 10m"), "{text}");
    assert!(
        text.contains("your access has ended (grant #1 expired)"),
        "{text}"
    );
}

#[test]
fn revoking_a_grant_ends_its_live_session() {
    let jit = jit(SELF_SERVICE, "");
    let granted = jit.alice("request db01 --for 1h --reason INC-12");
    assert_eq!(granted.code, Some(0), "{granted:?}");
    let tmux = jit.terminal("db01");
    jit.shell_works(&tmux);

    let listed = jit.world.bastion.api_cli(READER, &["grants", "list"]);
    assert!(
        listed.stdout.contains("db01") && listed.stdout.contains("INC-12"),
        "{listed:?}"
    );
    let revoked = jit.world.bastion.api_cli(
        SECOPS,
        &["grants", "revoke", "1", "--reason", "incident closed"],
    );
    assert_eq!(revoked.code, Some(0), "{revoked:?}");
    assert!(
        revoked.stdout.contains("1 live session(s) ended"),
        "{revoked:?}"
    );
    tmux.wait_for_text(
        "portcullis: your access was revoked by secops (grant #1): incident closed",
        Duration::from_secs(5),
    );
    assert!(tmux.wait_exit(Duration::from_secs(10)).is_some());
    let end = jit
        .world
        .bastion
        .wait_for_audit("session.end", |e| e["target"] == "db01");
    assert_eq!(end["reason"], "grant_revoked");
    let event = jit.world.bastion.wait_for_audit("grant.revoked", |_| true);
    assert_eq!(event["by"], "secops");
    let refused = jit.world.alice("alice+db01").exec("true");
    assert_eq!(refused.code, Some(1), "{refused:?}");
}

#[test]
fn grants_and_pending_requests_survive_a_restart() {
    let mut jit = jit(
        "max_duration = \"4h\"\napprovals = 1\napprovers = [\"secops\"]",
        "",
    );
    let asked = jit.alice("request db01 --for 2h --reason first");
    assert!(
        asked.stdout.contains("request #1 for db01 is waiting"),
        "{asked:?}"
    );
    assert_eq!(jit.bob("approve 1").code, Some(0));
    let pending = jit.alice("request db02 --for 1h --reason second");
    assert!(
        pending.stdout.contains("request #2 for db02 is waiting"),
        "{pending:?}"
    );

    jit.world.bastion.terminate();
    jit.world.bastion.start();

    let ran = jit.world.alice("alice+db01").exec("echo kept-$((2+3))");
    assert_eq!(ran.stdout, "kept-5\n", "{ran:?}");
    let waiting = jit.bob("requests");
    assert!(waiting.stdout.contains("#2    alice → db02"), "{waiting:?}");
    assert!(!waiting.stdout.contains("#1 "), "{waiting:?}");
    assert_eq!(jit.bob("approve 2").code, Some(0));
    let ran = jit.world.alice("alice+db02").exec("echo approved-$((2+4))");
    assert_eq!(ran.stdout, "approved-6\n", "{ran:?}");
}

#[test]
fn a_grant_that_ran_out_while_the_bastion_was_down_is_expired_when_it_returns() {
    let clock = ManualClock::starting_now();
    let mut jit = jit_on(&clock, "max_duration = \"1h\"\napprovals = 0", "");
    let granted = jit.alice("request db01 --for 30m --reason short");
    assert_eq!(granted.code, Some(0), "{granted:?}");
    jit.world.bastion.terminate();
    clock.advance(Duration::from_secs(31 * 60));
    assert!(jit.world.bastion.audit_events("grant.expired").is_empty());
    jit.world.bastion.start_on(clock.clone());
    let expired = jit.world.bastion.wait_for_audit("grant.expired", |_| true);
    assert_eq!(expired["grant"], 1);
    let refused = jit.world.alice("alice+db01").exec("true");
    assert_eq!(refused.code, Some(1), "{refused:?}");
}

#[test]
fn break_glass_is_immediate_alerted_and_waits_for_acknowledgement() {
    let jit = jit(
        "max_duration = \"1h\"\nrequire_reason = true\napprovals = 1\napprovers = [\"secops\"]\nbreak_glass = true",
        "",
    );
    let granted = jit.alice("request db01 --for 10m --reason 'site down'");
    assert_eq!(granted.code, Some(0), "{granted:?}");
    assert!(
        granted
            .stdout
            .contains("break-glass activation: security has been alerted"),
        "{granted:?}"
    );
    let used = jit
        .world
        .bastion
        .wait_for_audit("breakglass.used", |_| true);
    assert_eq!(used["reason"], "site down");
    let alert = jit.world.bastion.wait_for_alert("break_glass");
    assert_eq!(alert["grant"], used["grant"]);
    assert!(
        wait_for(Duration::from_secs(5), || jit
            .world
            .bastion
            .log()
            .contains("ALERT: break-glass access used")
            .then_some(()))
        .is_some()
    );

    let review = jit.world.bastion.api_cli(READER, &["review"]);
    assert_eq!(review.code, Some(0), "{review:?}");
    assert!(
        review
            .stdout
            .contains("Break-glass activations awaiting acknowledgement"),
        "{review:?}"
    );
    let alice_row = review
        .stdout
        .lines()
        .find(|l| l.contains("alice") && l.contains("db-admins"))
        .unwrap_or_else(|| panic!("{review:?}"));
    assert!(alice_row.contains(" 1  "), "one activation: {alice_row}");
    let (status, body) =
        jit.world
            .bastion
            .api_request(READER, "POST", "/api/v1/review/1/ack", None);
    assert_eq!(status, 403, "{body}");
    let acked = jit.world.bastion.api_cli(SECOPS, &["review", "ack", "1"]);
    assert_eq!(acked.code, Some(0), "{acked:?}");
    let review = jit.world.bastion.api_cli(READER, &["review"]);
    assert!(
        review
            .stdout
            .contains("No break-glass activations await acknowledgement."),
        "{review:?}"
    );
    let ack = jit
        .world
        .bastion
        .wait_for_audit("breakglass.acknowledged", |_| true);
    assert_eq!(ack["by"], "secops");
}

#[test]
fn a_role_that_requires_mfa_wants_a_fresh_code_at_activation() {
    const SECRET: [u8; 20] = *b"portcullis-jit-totp!";
    let secret = portcullis_config::base32::encode(&SECRET);
    let hash = password::hash("erins-password").unwrap();
    let mut erin = None;
    let world = World::start(|config, sshd, scratch| {
        let key = Keypair::generate(scratch.path(), "erin");
        config.target("db01", sshd, "root", "web01").raw(&format!(
            "[[users]]\nname = \"erin\"\npublic_keys = [{:?}]\npassword_hash = {hash:?}\ntotp_secret = {secret:?}\n\n\
             [[roles]]\nname = \"db-admins\"\nmembers = [\"erin\"]\ntargets = [\"db01\"]\naccess = \"eligible\"\nmax_duration = \"1h\"\nrequire_mfa = true\n",
            key.public
        ));
        erin = Some(key);
    });
    let erin = erin.unwrap();
    let ssh = |command: &str| world.bastion.ssh(&erin, "erin").exec(command);
    let code = || {
        let step = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            / 30;
        format!("{:06}", totp::code_at(&SECRET, step))
    };

    let without = ssh("request db01 --reason INC-1");
    assert!(
        without
            .stderr
            .contains("a verification code from your authenticator is required"),
        "{without:?}"
    );
    let refused = world.bastion.ssh(&erin, "erin+db01").exec("true");
    assert!(refused.stderr.contains("--code CODE"), "{refused:?}");
    let wrong = ssh("request db01 --reason INC-1 --code 000000");
    let wrong = if wrong.stderr.contains("wrong verification code") {
        wrong
    } else {
        // 000000 may be the real code once in a million; then use an impossible one.
        ssh("request db01 --reason INC-1 --code 12345")
    };
    assert!(
        wrong.stderr.contains("wrong verification code"),
        "{wrong:?}"
    );
    let right = ssh(&format!("request db01 --reason INC-1 --code {}", code()));
    assert_eq!(right.code, Some(0), "{right:?}");
    assert!(right.stdout.contains("access to db01 granted"), "{right:?}");
    let ran = world
        .bastion
        .ssh(&erin, "erin+db01")
        .exec("echo mfa-$((3*3))");
    assert_eq!(ran.stdout, "mfa-9\n", "{ran:?}");
}

#[test]
fn a_login_stops_waiting_after_approval_wait_and_the_next_one_waits_on_the_same_request() {
    let clock = ManualClock::starting_now();
    let jit = jit_on(&clock, WITH_APPROVAL, "[access]\napproval_wait = \"10m\"");
    let tmux = jit.terminal("db01");
    jit.answer(&tmux, "INC-13", "");
    tmux.wait_for_text(
        "waiting for approval of request #1",
        Duration::from_secs(10),
    );
    clock.advance(Duration::from_secs(10 * 60));
    tmux.wait_for_text(
        "portcullis: no decision on request #1 within 10m; it stays open until",
        Duration::from_secs(10),
    );
    assert_eq!(tmux.wait_exit(Duration::from_secs(10)), Some(1));

    // Connecting again waits on the same request instead of asking again.
    let tmux = jit.terminal("db01");
    tmux.wait_for_text(
        "portcullis: your request #1 for db01 is already open",
        Duration::from_secs(20),
    );
    tmux.wait_for_text(
        "waiting for approval of request #1",
        Duration::from_secs(10),
    );
    // A second short of its patience, it is still waiting: the approval reaches it.
    clock.advance(Duration::from_secs(10 * 60 - 1));
    assert_eq!(jit.bob("approve 1").code, Some(0));
    tmux.wait_for_text("request #1 approved", Duration::from_secs(5));
    jit.shell_works(&tmux);
    assert_eq!(jit.world.bastion.audit_events("request.created").len(), 1);
}

#[test]
fn a_request_nobody_decides_lapses_and_ends_the_waiting_login() {
    let clock = ManualClock::starting_now();
    let jit = jit_on(
        &clock,
        WITH_APPROVAL,
        "[access]\nrequest_ttl = \"30m\"\napproval_wait = \"1h\"",
    );
    let tmux = jit.terminal("db01");
    jit.answer(&tmux, "INC-14", "");
    tmux.wait_for_text(
        "waiting for approval of request #1",
        Duration::from_secs(10),
    );
    clock.advance(Duration::from_secs(30 * 60));
    tmux.wait_for_text(
        "portcullis: request #1 lapsed without a decision",
        Duration::from_secs(10),
    );
    assert_eq!(tmux.wait_exit(Duration::from_secs(10)), Some(1));
    let lapsed = jit
        .world
        .bastion
        .wait_for_audit("request.expired", |_| true);
    assert_eq!(lapsed["request"], 1);
    let late = jit.bob("approve 1");
    assert!(late.stderr.contains("no longer pending"), "{late:?}");
}
