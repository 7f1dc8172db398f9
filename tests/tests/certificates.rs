//! Per-login upstream certificates (`auth = "certificate"`): the target trusts the bastion's
//! user CA and holds no key for it; each login gets a fresh key pair and a certificate for
//! that login only, naming the user, session and grant in the target's own log. CA rotation
//! keeps both CAs published through an overlap.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, SystemTime};

use portcullis::upstream::certificate::{self, LoginFor};
use portcullis::vault::generate_ed25519;
use portcullis_tests::raw::RawSsh;
use portcullis_tests::util::wait_for;
use portcullis_tests::{Bastion, ConfigText, Keypair, Sshd};

/// A bastion whose one target, `web01`, is reached with certificates, and whose target trusts
/// nothing yet (no CA, no authorized key).
fn certificate_world() -> (tempfile::TempDir, Sshd, Keypair, Bastion) {
    let scratch = tempfile::tempdir().unwrap();
    let sshd = Sshd::start();
    let alice = Keypair::generate(scratch.path(), "alice");
    let mut config = ConfigText::default();
    config
        .user("alice", &[&alice.public])
        .certificate_target("web01", &sshd, "root")
        .role("web-admins", &["alice"], &["web01"]);
    let bastion = Bastion::new(&config);
    (scratch, sshd, alice, bastion)
}

/// `portcullis ca show`, checked.
fn ca_show(bastion: &Bastion) -> String {
    let shown = bastion.cli(&["ca", "show"]);
    assert_eq!(shown.code, Some(0), "{shown:?}");
    shown.stdout
}

/// The target's "Accepted publickey" log lines, once there are `count` (sshd's log is read
/// by a thread, which may be a line behind the session).
fn accepted_lines(sshd: &Sshd, count: usize) -> Vec<String> {
    let lines = || -> Vec<String> {
        sshd.log()
            .lines()
            .filter(|l| l.contains("Accepted publickey"))
            .map(String::from)
            .collect()
    };
    wait_for(Duration::from_secs(10), || {
        let found = lines();
        (found.len() >= count).then_some(())
    });
    lines()
}

#[test]
fn a_certificate_target_is_reached_with_a_certificate_per_login_that_the_target_log_names() {
    let (_scratch, sshd, alice, mut bastion) = certificate_world();
    let shown = ca_show(&bastion);
    assert_eq!(shown.lines().count(), 1, "{shown}");
    assert!(
        shown.starts_with("ssh-ed25519 ")
            && shown.trim_end().ends_with(" portcullis-user-ca-active"),
        "{shown}"
    );
    assert_eq!(ca_show(&bastion), shown, "the CA is made once, then kept");
    sshd.trust_user_cas(&shown);
    bastion.start();

    // A command: no terminal, so the certificate allows none.
    let ran = bastion.ssh(&alice, "alice+web01").exec("echo cert-ok; tty");
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(ran.stdout.contains("cert-ok"), "{ran:?}");
    assert!(ran.stdout.contains("not a tty"), "{ran:?}");
    // A terminal: the certificate for that login allows one.
    let terminal = bastion
        .ssh(&alice, "alice+web01")
        .flags(&["-tt"])
        .exec("tty");
    assert_eq!(terminal.code, Some(0), "{terminal:?}");
    assert!(terminal.stdout.contains("/dev/pts/"), "{terminal:?}");
    // A subsystem (SFTP) starts on the same deferred login.
    let sftp = bastion.ssh(&alice, "alice+web01").sftp("pwd\n");
    assert_eq!(sftp.code, Some(0), "{sftp:?}");
    assert!(
        sftp.stdout.contains("Remote working directory: /root"),
        "{sftp:?}"
    );

    // The target's own log says who logged in, session by session, with a certificate of
    // the bastion's CA.
    let sessions: Vec<String> = bastion
        .audit_events("upstream.connected")
        .iter()
        .map(|e| e["session"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(sessions.len(), 3, "{sessions:?}");
    let accepted = accepted_lines(&sshd, 3);
    assert_eq!(accepted.len(), 3, "{accepted:#?}");
    eprintln!("{}", accepted[0]);
    for session in &sessions {
        let key_id = format!("ID portcullis user=alice session={session} grant=standing");
        assert!(
            accepted
                .iter()
                .any(|l| l.contains("ED25519-CERT") && l.contains(&key_id)),
            "no login of session {session} in the target's log: {accepted:#?}"
        );
    }
    // A fresh key pair each time (the serials and key fingerprints differ).
    let keys: std::collections::HashSet<&str> = accepted
        .iter()
        .filter_map(|l| l.split("ED25519-CERT ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    assert_eq!(keys.len(), 3, "{accepted:#?}");

    // Nothing per target in the vault, and no key file anywhere in the data directory.
    let listed = bastion.cli(&["vault", "list"]);
    assert_eq!(listed.code, Some(0), "{listed:?}");
    assert!(!listed.stdout.contains("web01"), "{listed:?}");
    assert!(!listed.stdout.contains("user-ca"), "{listed:?}");
}

#[test]
fn a_ca_rotation_keeps_both_cas_published_until_the_old_one_is_retired() {
    let (_scratch, sshd, alice, mut bastion) = certificate_world();
    let old = ca_show(&bastion);
    sshd.trust_user_cas(&old);
    bastion.start();
    let run = |bastion: &Bastion| bastion.ssh(&alice, "alice+web01").exec("echo through");
    assert_eq!(run(&bastion).code, Some(0));

    let rotated = bastion.cli(&["ca", "rotate"]);
    assert_eq!(rotated.code, Some(0), "{rotated:?}");
    let both = ca_show(&bastion);
    let lines: Vec<&str> = both.lines().collect();
    assert_eq!(lines.len(), 2, "{both}");
    assert!(lines[0].ends_with("portcullis-user-ca-active"), "{both}");
    assert!(lines[1].ends_with("portcullis-user-ca-previous"), "{both}");
    let key = |line: &str| {
        line.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(key(lines[1]), key(old.trim()), "the old CA stays published");
    assert_eq!(rotated.stdout, both, "rotate prints what to publish");
    let audited = bastion.wait_for_audit("ca.rotated", |_| true);
    assert!(
        rotated.stderr.contains(&format!(
            "new CA {} signs from now on; {} stays published",
            audited["active"].as_str().unwrap(),
            audited["previous"].as_str().unwrap()
        )),
        "{audited} {rotated:?}"
    );

    // The running bastion signs with the new CA at once: a target that only trusts the old
    // one refuses, and the user is told what to check.
    let refused = run(&bastion);
    assert_ne!(refused.code, Some(0), "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("refused the bastion's certificate for root")
            && refused.stderr.contains("portcullis ca show"),
        "{refused:?}"
    );
    // One rotation at a time.
    let again = bastion.cli(&["ca", "rotate"]);
    assert_eq!(again.code, Some(1), "{again:?}");
    assert!(again.stderr.contains("retire it first"), "{again:?}");

    // With both published, logins work through the overlap.
    sshd.trust_user_cas(&both);
    assert_eq!(run(&bastion).code, Some(0));

    let retired = bastion.cli(&["ca", "retire"]);
    assert_eq!(retired.code, Some(0), "{retired:?}");
    let new = ca_show(&bastion);
    assert_eq!(new.lines().count(), 1, "{new}");
    assert_eq!(key(new.trim()), key(lines[0]));
    sshd.trust_user_cas(&new);
    assert_eq!(run(&bastion).code, Some(0));
    let retired_event = bastion.wait_for_audit("ca.retired", |_| true);
    assert_eq!(
        retired_event["retired"], audited["previous"],
        "{retired_event}"
    );
    assert_eq!(
        retired_event["active"], audited["active"],
        "{retired_event}"
    );
    let nothing = bastion.cli(&["ca", "retire"]);
    assert_eq!(nothing.code, Some(1), "{nothing:?}");
    assert!(nothing.stderr.contains("no previous CA"), "{nothing:?}");
}

#[tokio::test]
async fn a_login_certificate_is_refused_once_its_minutes_have_passed() {
    let sshd = Sshd::start();
    let ca = generate_ed25519("test CA").unwrap();
    sshd.trust_user_cas(&ca.public_key().to_openssh().unwrap());
    let login = LoginFor {
        user: "alice".into(),
        session: "expiry".into(),
        grant: Some(7),
        terminal: false,
    };
    let address = sshd.address().parse().unwrap();
    let attempt = |issued_at: SystemTime| {
        let issued = certificate::issue(&ca, "root", &login, issued_at).unwrap();
        let host_key = sshd.host_key().to_owned();
        async move {
            let mut raw = RawSsh::connect(address, &host_key).await.unwrap();
            raw.handle
                .authenticate_openssh_cert("root", issued.key, issued.certificate)
                .await
                .unwrap()
                .success()
        }
    };
    assert!(
        attempt(SystemTime::now()).await,
        "a fresh certificate gets in"
    );
    let lapsed = SystemTime::now() - certificate::VALIDITY - Duration::from_secs(2);
    assert!(!attempt(lapsed).await, "a lapsed certificate is refused");
    let refusal = wait_for(Duration::from_secs(10), || {
        sshd.log()
            .lines()
            .find(|l| l.contains("expired") || l.contains("not yet valid"))
            .map(String::from)
    });
    assert!(refusal.is_some(), "{}", sshd.log());
    eprintln!("{}", refusal.unwrap());
}

#[test]
fn an_activated_session_gets_a_certificate_naming_its_grant() {
    let scratch = tempfile::tempdir().unwrap();
    let sshd = Sshd::start();
    let alice = Keypair::generate(scratch.path(), "alice");
    let mut config = ConfigText::default();
    config
        .user("alice", &[&alice.public])
        .certificate_target("db01", &sshd, "root")
        .eligible(
            "db-admins",
            &["alice"],
            &["db01"],
            "max_duration = \"1h\"\ndefault_duration = \"30m\"\napprovals = 0",
        );
    let mut bastion = Bastion::new(&config);
    sshd.trust_user_cas(&ca_show(&bastion));
    bastion.start();

    // Activated inside the login, on the terminal: the dialog's channel is the session.
    let tmux = portcullis_tests::Tmux::start(
        &bastion.ssh(&alice, "alice+db01").shell_line(&["-tt"]),
        120,
        40,
    );
    tmux.wait_for_text("Reason (optional): ", Duration::from_secs(20));
    tmux.line("INC-7");
    tmux.wait_for_text("Duration [30m, at most 1h]: ", Duration::from_secs(10));
    tmux.line("");
    tmux.wait_for_text("access to db01 granted", Duration::from_secs(10));
    tmux.line("tty; echo on-$((6*7))");
    tmux.wait_for_text("on-42", Duration::from_secs(10));
    assert!(tmux.screen().contains("/dev/pts/"), "{}", tmux.screen());
    let grant = bastion.audit_events("access.granted")[0]["grant"].clone();
    assert_eq!(grant, 1, "{grant}");
    let accepted = accepted_lines(&sshd, 1);
    assert_eq!(accepted.len(), 1, "{accepted:#?}");
    assert!(
        accepted[0].contains("ID portcullis user=alice session=")
            && accepted[0].contains(" grant=1 (serial "),
        "{accepted:#?}"
    );

    // A command on the same grant, later, gets its own certificate naming the grant too.
    let ran = bastion.ssh(&alice, "alice+db01").exec("echo again");
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let accepted = accepted_lines(&sshd, 2);
    assert_eq!(accepted.len(), 2, "{accepted:#?}");
    assert!(accepted[1].contains(" grant=1 (serial "), "{accepted:#?}");
}
