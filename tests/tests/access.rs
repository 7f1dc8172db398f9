//! Where a login may go, and what the user is told when it may not: unknown and forbidden
//! targets, malformed logins, the bastion's own menu, and upstreams that are down, silent,
//! impostors or refuse the vaulted credential.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use portcullis_tests::sshd::SshdOptions;
use portcullis_tests::{Bastion, ConfigText, Keypair, LocalUser, Sshd, Tmux, World};

#[test]
fn an_unknown_target_gets_a_human_message_and_a_failing_exit() {
    let world = World::start(|_, _, _| {});
    let ran = world.alice("alice+web99").exec("true");
    assert_eq!(
        ran.stderr, "portcullis: no access to web99: there is no such target\n",
        "{ran:?}"
    );
    assert_eq!(ran.code, Some(1));
    let denied = world.bastion.wait_for_audit("access.denied", |_| true);
    assert_eq!(denied["target"], "web99");
    assert!(world.bastion.audit_events("upstream.connected").is_empty());
}

#[test]
fn a_target_outside_the_users_roles_is_refused_before_any_upstream_contact() {
    let world = World::start(|config, sshd, _| {
        config.target("db01", sshd, "root", "web01");
    });
    let ran = world
        .alice("alice+db01")
        .exec("touch /tmp/should-not-exist");
    assert_eq!(
        ran.stderr,
        "portcullis: no access to db01: none of your roles grants it\n"
    );
    assert_eq!(ran.code, Some(1));
    assert!(world.bastion.audit_events("upstream.connected").is_empty());
    assert!(
        !world.sshd.log().contains("Accepted publickey"),
        "sshd saw no login:\n{}",
        world.sshd.log()
    );
}

#[test]
fn a_malformed_login_is_explained() {
    let world = World::start(|_, _, _| {});
    for login in ["alice+", "alice+web01+db01"] {
        let ran = world.alice(login).exec("true");
        assert!(
            ran.stderr.starts_with(&format!(
                "portcullis: malformed login {login:?}: expected USER+TARGET"
            )),
            "{login}: {ran:?}"
        );
        assert_eq!(ran.code, Some(1));
    }
}

#[test]
fn the_refusal_shows_on_an_interactive_terminal_too() {
    let world = World::start(|_, _, _| {});
    let tmux = Tmux::start(&world.alice("alice+web99").shell_line(&["-tt"]), 100, 30);
    tmux.wait_for_text(
        "portcullis: no access to web99: there is no such target",
        Duration::from_secs(20),
    );
    assert_eq!(tmux.wait_exit(Duration::from_secs(20)), Some(1));
}

#[test]
fn without_a_target_the_bastion_lists_what_the_user_may_reach() {
    let world = World::start(|config, sshd, _| {
        config.target("db01", sshd, "root", "web01");
    });
    let ran = world.alice("alice").exec("targets");
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stdout.contains("portcullis: you are alice."), "{ran:?}");
    assert!(ran.stdout.contains("web01"), "{ran:?}");
    assert!(
        !ran.stdout.contains("db01"),
        "only reachable targets are listed: {ran:?}"
    );
    assert!(ran.stdout.contains(&format!(
        "ssh -p {} alice+web01@",
        world.bastion.address().port()
    )));

    let ran = world.alice("alice").exec("frobnicate");
    assert_eq!(ran.code, Some(2));
    assert_eq!(
        ran.stderr,
        "portcullis: unknown command \"frobnicate\"; type help for the list\n"
    );

    // On a terminal the listing is followed by a prompt for more commands.
    let tmux = Tmux::start(&world.alice("alice").shell_line(&["-tt"]), 100, 30);
    tmux.wait_for_text("Targets you may reach:", Duration::from_secs(20));
    tmux.wait_for_text("portcullis> ", Duration::from_secs(5));
    tmux.line("whoami");
    tmux.wait_for_text("roles: web-admins (standing: web*)", Duration::from_secs(5));
    tmux.line("frobnicate");
    tmux.wait_for_text("portcullis: unknown command", Duration::from_secs(5));
    tmux.line("exit");
    assert_eq!(tmux.wait_exit(Duration::from_secs(20)), Some(0));
}

#[test]
fn an_upstream_that_is_down_gets_a_clear_message_quickly() {
    let closed_port = portcullis_tests::util::free_port();
    let world = World::start(|config, sshd, _| {
        config
            .target_at(
                "down01",
                &format!("127.0.0.1:{closed_port}"),
                sshd.host_key(),
                "root",
                "web01",
            )
            .role("down-admins", &["alice"], &["down01"]);
    });
    let started = Instant::now();
    let ran = world.alice("alice+down01").exec("true");
    assert_eq!(
        ran.stderr,
        format!(
            "portcullis: cannot reach down01: cannot connect to 127.0.0.1:{closed_port}: connection refused (is sshd running there?)\n"
        ),
        "{ran:?}"
    );
    assert_eq!(ran.code, Some(1));
    assert!(started.elapsed() < Duration::from_secs(10));
    let failed = world.bastion.wait_for_audit("upstream.failed", |_| true);
    assert_eq!(failed["error"], "unreachable");
}

#[test]
fn an_upstream_that_never_answers_times_out() {
    // Accepts TCP and then says nothing, like a hung host.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = silent.local_addr().unwrap();
    let world = World::start(|config, sshd, _| {
        config
            .server("upstream_connect_timeout = \"2s\"")
            .target_at(
                "hung01",
                &address.to_string(),
                sshd.host_key(),
                "root",
                "web01",
            )
            .role("hung-admins", &["alice"], &["hung01"]);
    });
    let ran = world.alice("alice+hung01").exec("true");
    assert_eq!(
        ran.stderr,
        format!("portcullis: cannot reach hung01: no answer from {address} within 2s\n"),
        "{ran:?}"
    );
    assert_eq!(ran.code, Some(1));
    drop(silent);
}

#[test]
fn an_upstream_with_another_host_key_is_refused_and_audited() {
    let scratch = tempfile::tempdir().unwrap();
    let impostor_key = Keypair::generate(scratch.path(), "pinned-but-wrong");
    let world = World::start(|config, sshd, _| {
        config
            .target_at(
                "impostor",
                &sshd.address(),
                &impostor_key.public,
                "root",
                "web01",
            )
            .role("impostor-admins", &["alice"], &["impostor"]);
    });
    let ran = world.alice("alice+impostor").exec("touch /tmp/never");
    assert!(
        ran.stderr
            .starts_with("portcullis: cannot reach impostor: the host key of 127.0.0.1:")
            && ran.stderr.contains("does not match the pinned key"),
        "{ran:?}"
    );
    assert_eq!(ran.code, Some(1));
    let mismatch = world
        .bastion
        .wait_for_audit("upstream.host_key_mismatch", |_| true);
    let alert = world.bastion.wait_for_alert("host_key_mismatch");
    assert_eq!(alert["severity"], "critical");
    assert_eq!(alert["target"], "impostor");
    assert_eq!(alert["presented"], mismatch["presented"]);
    assert!(
        mismatch["expected"]
            .as_str()
            .unwrap()
            .starts_with("SHA256:")
    );
    assert!(
        mismatch["presented"]
            .as_str()
            .unwrap()
            .starts_with("SHA256:")
    );
    assert_ne!(mismatch["expected"], mismatch["presented"]);
    // The credential was never offered to the impostor.
    assert!(
        !world.sshd.log().contains("Accepted publickey"),
        "{}",
        world.sshd.log()
    );
}

#[test]
fn an_upstream_refusing_the_vaulted_credential_is_reported() {
    let world = World::start(|config, sshd, _| {
        config
            .target("norights", sshd, "root", "not-installed")
            .role("norights-admins", &["alice"], &["norights"]);
    });
    world.bastion.vault_generate("not-installed");
    let ran = world.alice("alice+norights").exec("true");
    assert!(
        ran.stderr
            .starts_with("portcullis: cannot reach norights: ")
            && ran
                .stderr
                .contains("refused the vaulted credential for root"),
        "{ran:?}"
    );
    assert_eq!(ran.code, Some(1));
}

#[test]
fn a_missing_vault_entry_is_reported_without_contacting_the_target() {
    let world = World::start(|config, sshd, _| {
        config
            .target("novault", sshd, "root", "no-such-entry")
            .role("novault-admins", &["alice"], &["novault"]);
    });
    let ran = world.alice("alice+novault").exec("true");
    assert_eq!(
        ran.stderr,
        "portcullis: cannot reach novault: credential \"no-such-entry\" is unavailable: no vault entry named \"no-such-entry\"\n"
    );
}

#[test]
fn a_vaulted_password_logs_in_upstream() {
    let account = LocalUser::create();
    let sshd = Sshd::start_with(SshdOptions {
        password_auth: true,
    });
    let scratch = tempfile::tempdir().unwrap();
    let alice = Keypair::generate(scratch.path(), "alice");
    let mut config = ConfigText::default();
    config
        .user("alice", &[&alice.public])
        .target("app01", &sshd, &account.name, "app01-password")
        .role("app", &["alice"], &["app01"]);
    let mut bastion = Bastion::new(&config);
    bastion.vault_password("app01-password", &account.password);
    bastion.start();
    let ran = bastion.ssh(&alice, "alice+app01").exec("whoami");
    assert_eq!(ran.stdout.trim(), account.name, "{ran:?}");
    assert!(
        sshd.log()
            .contains(&format!("Accepted password for {}", account.name))
    );
}
