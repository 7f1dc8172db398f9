//! Rotation of vaulted static credentials against real sshd, verify-then-commit: the new key
//! is installed through the old one, proven, committed, and the old one removed and proven
//! refused; nothing changes when the target is down; a rotation cut off between installing
//! and committing is finished by the next one; rotation runs by itself on `rotate_every`
//! (manual clock) and after a break-glass session (`rotate_after`); passwords rotate through
//! a `password_command`.
//!
//! Every test points `authorized_keys` at its own sshd's file in a temporary directory: no
//! test edits a real account's keys.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use portcullis_policy::ManualClock;
use portcullis_tests::raw::RawSsh;
use portcullis_tests::sshd::SshdOptions;
use portcullis_tests::{Bastion, ConfigText, Keypair, LocalUser, Sshd, World};
use russh::keys::key::PrivateKeyWithHashAlg;
use russh::keys::load_secret_key;

/// Whether `key` (a private key file) logs in to `sshd` as `login`.
async fn key_gets_in(sshd: &Sshd, login: &str, key: &std::path::Path) -> bool {
    let key = load_secret_key(key, None).unwrap();
    let mut raw = RawSsh::connect(sshd.address().parse().unwrap(), sshd.host_key())
        .await
        .unwrap();
    raw.handle
        .authenticate_publickey(login, PrivateKeyWithHashAlg::new(Arc::new(key), None))
        .await
        .unwrap()
        .success()
}

/// Whether `password` logs in to `sshd` as `login`.
async fn password_gets_in(sshd: &Sshd, login: &str, password: &str) -> bool {
    let mut raw = RawSsh::connect(sshd.address().parse().unwrap(), sshd.host_key())
        .await
        .unwrap();
    raw.handle
        .authenticate_password(login, password)
        .await
        .unwrap()
        .success()
}

/// The fingerprint `vault list` shows for `name`.
fn vault_fingerprint(bastion: &Bastion, name: &str) -> String {
    let listed = bastion.cli(&["vault", "list"]);
    assert_eq!(listed.code, Some(0), "{listed:?}");
    listed
        .stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().find(|w| w.starts_with("SHA256:")))
        .unwrap_or_else(|| panic!("{name} not listed: {listed:?}"))
        .to_owned()
}

/// A bastion whose target web01 logs in as root with a key the test holds (`operator`),
/// imported into the vault; `extra` is more TOML for the target.
fn keyed(scratch: &tempfile::TempDir, sshd: &Sshd, extra: &str) -> (Keypair, Keypair, Bastion) {
    let operator = Keypair::generate(scratch.path(), "operator");
    sshd.authorize(&operator.public);
    let alice = Keypair::generate(scratch.path(), "alice");
    let mut config = ConfigText::default();
    config
        .user("alice", &[&alice.public])
        .target("web01", sshd, "root", "web01")
        .raw(&format!(
            "authorized_keys = {:?}\n{extra}",
            sshd.authorized_keys_file().display().to_string()
        ))
        .role("web-admins", &["alice"], &["web01"]);
    let bastion = Bastion::new(&config);
    let put = bastion.cli(&[
        "vault",
        "put",
        "web01",
        "--private-key",
        operator.private.to_str().unwrap(),
    ]);
    assert_eq!(put.code, Some(0), "{put:?}");
    (operator, alice, bastion)
}

#[tokio::test]
async fn a_key_rotation_installs_proves_commits_and_the_old_key_no_longer_gets_in() {
    let scratch = tempfile::tempdir().unwrap();
    let sshd = Sshd::start();
    let (operator, alice, mut bastion) = keyed(&scratch, &sshd, "");
    bastion.start();
    let before = vault_fingerprint(&bastion, "web01");
    assert!(key_gets_in(&sshd, "root", &operator.private).await);

    let rotated = bastion.cli(&["vault", "rotate", "web01"]);
    assert_eq!(rotated.code, Some(0), "{rotated:?}");
    let after = vault_fingerprint(&bastion, "web01");
    assert_ne!(before, after);
    assert!(
        rotated
            .stdout
            .contains(&format!("rotated web01 on web01: {before} -> {after}")),
        "{rotated:?}"
    );

    // The old key is gone from the target and refused; the new one carries the marker.
    assert!(!key_gets_in(&sshd, "root", &operator.private).await);
    let keys = std::fs::read_to_string(sshd.authorized_keys_file()).unwrap();
    let old_body = operator.public.split_whitespace().nth(1).unwrap();
    assert!(!keys.contains(old_body), "{keys}");
    assert_eq!(keys.matches(" portcullis:web01 ").count(), 1, "{keys}");
    // Sessions use the new key.
    let ran = bastion.ssh(&alice, "alice+web01").exec("echo rotated-ok");
    assert_eq!(ran.code, Some(0), "{ran:?}");

    // Audited by the serving bastion, with fingerprints only.
    let audited = bastion.wait_for_audit("credential.rotated", |_| true);
    assert_eq!(audited["old_fingerprint"], before.as_str(), "{audited}");
    assert_eq!(audited["new_fingerprint"], after.as_str(), "{audited}");
    assert_eq!(audited["why"], "command line", "{audited}");
    assert_eq!(audited["resumed"], false, "{audited}");
    assert!(!audited.to_string().contains("PRIVATE"), "{audited}");

    // Again: the rotated key rotates in turn.
    let again = bastion.cli(&["vault", "rotate", "web01"]);
    assert_eq!(again.code, Some(0), "{again:?}");
    let keys = std::fs::read_to_string(sshd.authorized_keys_file()).unwrap();
    assert_eq!(keys.matches(" portcullis:web01 ").count(), 1, "{keys}");
    let ran = bastion
        .ssh(&alice, "alice+web01")
        .exec("echo rotated-twice");
    assert_eq!(ran.code, Some(0), "{ran:?}");
}

#[tokio::test]
async fn a_rotation_with_the_target_down_changes_nothing_and_says_why() {
    let scratch = tempfile::tempdir().unwrap();
    let mut sshd = Sshd::start();
    let (operator, _alice, mut bastion) = keyed(&scratch, &sshd, "");
    bastion.start();
    let before = vault_fingerprint(&bastion, "web01");
    let keys_before = std::fs::read_to_string(sshd.authorized_keys_file()).unwrap();
    sshd.stop();

    let failed = bastion.cli(&["vault", "rotate", "web01"]);
    assert_eq!(failed.code, Some(1), "{failed:?}");
    assert!(
        failed
            .stderr
            .contains("rotating web01 failed at install on web01: cannot connect to")
            && failed
                .stderr
                .contains("the old secret still works and the vault is unchanged"),
        "{failed:?}"
    );
    assert!(failed.stderr.contains("ALERT"), "{failed:?}");
    assert_eq!(vault_fingerprint(&bastion, "web01"), before);
    let audited = bastion.wait_for_audit("credential.rotation_failed", |_| true);
    assert_eq!(audited["step"], "install", "{audited}");
    assert_eq!(audited["target"], "web01", "{audited}");
    let alert = bastion.wait_for_alert("rotation_failed");
    assert_eq!(alert["credential"], "web01", "{alert}");
    assert_eq!(alert["severity"], "error", "{alert}");

    // Back up: nothing was left behind, the old key still works, and a rotation now goes
    // through.
    sshd.restart();
    assert_eq!(
        std::fs::read_to_string(sshd.authorized_keys_file()).unwrap(),
        keys_before
    );
    assert!(key_gets_in(&sshd, "root", &operator.private).await);
    let rotated = bastion.cli(&["vault", "rotate", "web01"]);
    assert_eq!(rotated.code, Some(0), "{rotated:?}");
    assert!(!key_gets_in(&sshd, "root", &operator.private).await);
}

#[tokio::test]
async fn a_rotation_cut_off_between_install_and_commit_is_finished_by_the_next_run() {
    let scratch = tempfile::tempdir().unwrap();
    let sshd = Sshd::start();
    let (operator, alice, mut bastion) = keyed(&scratch, &sshd, "");
    bastion.start();
    // What a run killed after installing leaves: the new key staged in the vault and its
    // line in the target's file, the vault entry still the old key.
    let staged_key = Keypair::generate(scratch.path(), "staged");
    let staged = load_secret_key(&staged_key.private, None).unwrap();
    bastion.stage_in_vault("web01", staged).await;
    let body = staged_key
        .public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    sshd.authorize(&format!("{body} portcullis:web01 2026-12-07T00:00:00Z"));
    let before = vault_fingerprint(&bastion, "web01");

    let resumed = bastion.cli(&["vault", "rotate", "web01"]);
    assert_eq!(resumed.code, Some(0), "{resumed:?}");
    let audited = bastion.wait_for_audit("credential.rotated", |_| true);
    assert_eq!(audited["resumed"], true, "{audited}");
    assert_eq!(audited["old_fingerprint"], before.as_str(), "{audited}");
    // The staged key is the one committed, and the only one left of the two.
    assert!(key_gets_in(&sshd, "root", &staged_key.private).await);
    assert!(!key_gets_in(&sshd, "root", &operator.private).await);
    assert_eq!(
        audited["new_fingerprint"].as_str().unwrap(),
        vault_fingerprint(&bastion, "web01")
    );
    let ran = bastion.ssh(&alice, "alice+web01").exec("echo resumed-ok");
    assert_eq!(ran.code, Some(0), "{ran:?}");
}

#[tokio::test]
async fn a_rotation_killed_between_install_and_commit_is_finished_by_the_next_run() {
    let scratch = tempfile::tempdir().unwrap();
    let sshd = Sshd::start();
    let (operator, alice, mut bastion) = keyed(&scratch, &sshd, "");
    bastion.start();
    let markers = || {
        std::fs::read_to_string(sshd.authorized_keys_file())
            .unwrap()
            .matches(" portcullis:web01 ")
            .count()
    };
    // The rotating process is killed the moment its new key is on the target: before its
    // commit, unless it was quicker than this loop (then it is tried again from there).
    let mut attempts = 0;
    let before = loop {
        attempts += 1;
        assert!(
            attempts <= 10,
            "never caught a rotation between install and commit"
        );
        let before = vault_fingerprint(&bastion, "web01");
        let installed_before = markers();
        let mut rotating = bastion
            .command()
            .args(["vault", "rotate", "web01"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let killed = loop {
            if markers() > installed_before {
                rotating.kill().unwrap();
                rotating.wait().unwrap();
                break true;
            }
            if rotating.try_wait().unwrap().is_some() {
                break false;
            }
            std::thread::yield_now();
        };
        if killed && vault_fingerprint(&bastion, "web01") == before {
            break before;
        }
    };
    // Killed between install and commit: the vault still holds the old key, which still
    // gets in; the new one is on the target and staged.
    let ran = bastion.ssh(&alice, "alice+web01").exec("echo still-old");
    assert_eq!(ran.code, Some(0), "{ran:?}");

    // Within the lease the next run leaves it alone (the rotation might still be running
    // elsewhere); after it, the next run finishes it.
    let early = bastion.cli(&["vault", "rotate", "web01"]);
    assert_eq!(early.code, Some(1), "{early:?}");
    assert!(
        early.stderr.contains("another rotation of it is under way"),
        "{early:?}"
    );
    bastion.age_staged("web01").await;
    let resumed = bastion.cli(&["vault", "rotate", "web01"]);
    assert_eq!(resumed.code, Some(0), "{resumed:?}");
    let audited = bastion.wait_for_audit("credential.rotated", |e| e["resumed"] == true);
    assert_eq!(audited["old_fingerprint"], before.as_str(), "{audited}");
    assert_eq!(
        audited["new_fingerprint"].as_str().unwrap(),
        vault_fingerprint(&bastion, "web01")
    );
    assert_eq!(
        markers(),
        1,
        "the key left by the killed run is the one kept"
    );
    assert!(!key_gets_in(&sshd, "root", &operator.private).await);
    let ran = bastion.ssh(&alice, "alice+web01").exec("echo repaired");
    assert_eq!(ran.code, Some(0), "{ran:?}");
}

#[tokio::test]
async fn a_rotation_cut_off_after_its_commit_has_the_old_key_removed_by_the_next() {
    let scratch = tempfile::tempdir().unwrap();
    let sshd = Sshd::start();
    let (operator, alice, mut bastion) = keyed(&scratch, &sshd, "");
    bastion.start();
    let rotated = bastion.cli(&["vault", "rotate", "web01"]);
    assert_eq!(rotated.code, Some(0), "{rotated:?}");
    // What a run cut off between its commit and the removal leaves: the replaced key still
    // on the target, and noted as retiring in the vault.
    sshd.authorize(&operator.public);
    bastion.retire_in_vault("web01", &operator.public).await;
    assert!(key_gets_in(&sshd, "root", &operator.private).await);

    let next = bastion.cli(&["vault", "rotate", "web01"]);
    assert_eq!(next.code, Some(0), "{next:?}");
    assert!(!key_gets_in(&sshd, "root", &operator.private).await);
    let keys = std::fs::read_to_string(sshd.authorized_keys_file()).unwrap();
    assert!(
        !keys.contains(operator.public.split_whitespace().nth(1).unwrap()),
        "{keys}"
    );
    let ran = bastion.ssh(&alice, "alice+web01").exec("echo tidy");
    assert_eq!(ran.code, Some(0), "{ran:?}");
}

#[test]
fn rotate_every_rotates_on_the_bastions_clock() {
    let clock = ManualClock::starting_now();
    let scratch = tempfile::tempdir().unwrap();
    let sshd = Sshd::start();
    let (_operator, alice, mut bastion) = keyed(&scratch, &sshd, "rotate_every = \"30d\"");
    bastion.start_on(clock.clone());
    let before = vault_fingerprint(&bastion, "web01");
    clock.advance(Duration::from_secs(29 * 86_400));
    // Not due yet: a session still runs on the same key.
    let ran = bastion.ssh(&alice, "alice+web01").exec("echo day-29");
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(bastion.audit_events("credential.rotated").is_empty());
    clock.advance(Duration::from_secs(2 * 86_400));
    let audited = bastion.wait_for_audit("credential.rotated", |e| e["why"] == "schedule");
    assert_eq!(audited["old_fingerprint"], before.as_str(), "{audited}");
    assert_ne!(vault_fingerprint(&bastion, "web01"), before);
    let ran = bastion.ssh(&alice, "alice+web01").exec("echo day-31");
    assert_eq!(ran.code, Some(0), "{ran:?}");
    // Once, not at every tick.
    let ran = bastion.ssh(&alice, "alice+web01").exec("echo later");
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert_eq!(bastion.audit_events("credential.rotated").len(), 1);
}

#[test]
fn a_break_glass_session_gets_its_credential_rotated_when_it_ends() {
    let world = World::start(|config, sshd, _| {
        config
            .target("db01", sshd, "root", "db01")
            .raw(&format!(
                "authorized_keys = {:?}\nrotate_after = [\"break-glass\"]",
                sshd.authorized_keys_file().display().to_string()
            ))
            .eligible(
                "db-emergency",
                &["alice"],
                &["db01"],
                "max_duration = \"1h\"\nbreak_glass = true",
            );
    });
    world.bastion.vault_key_for("db01", &world.sshd);
    let before = vault_fingerprint(&world.bastion, "db01");
    let granted = world
        .alice("alice")
        .exec("request db01 --for 30m --reason INC-9");
    assert_eq!(granted.code, Some(0), "{granted:?}");
    let ran = world.alice("alice+db01").exec("echo emergency");
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let audited = world
        .bastion
        .wait_for_audit("credential.rotated", |e| e["why"] == "break-glass");
    assert_eq!(audited["credential"], "db01", "{audited}");
    assert_eq!(audited["old_fingerprint"], before.as_str(), "{audited}");
    assert_ne!(vault_fingerprint(&world.bastion, "db01"), before);
    // A standing session on another credential does not rotate anything.
    let standing = world.alice("alice+web01").exec("echo standing");
    assert_eq!(standing.code, Some(0), "{standing:?}");
    assert_eq!(world.bastion.audit_events("credential.rotated").len(), 1);
}

#[tokio::test]
async fn a_password_rotates_through_its_command_and_the_old_one_stops_working() {
    let account = LocalUser::create();
    let _sudo = account.allow_sudo_without_password("/usr/sbin/chpasswd");
    let sshd = Sshd::start_with(SshdOptions {
        password_auth: true,
    });
    let scratch = tempfile::tempdir().unwrap();
    let alice = Keypair::generate(scratch.path(), "alice");
    let mut config = ConfigText::default();
    config
        .user("alice", &[&alice.public])
        .target("pw", &sshd, &account.name, "pw")
        .raw("password_command = \"sudo -n /usr/sbin/chpasswd\"")
        .role("all", &["alice"], &["pw"]);
    let mut bastion = Bastion::new(&config);
    bastion.vault_password("pw", &account.password);
    bastion.start();
    assert!(password_gets_in(&sshd, &account.name, &account.password).await);

    let rotated = bastion.cli(&["vault", "rotate", "pw"]);
    assert_eq!(rotated.code, Some(0), "{rotated:?}");
    assert!(!password_gets_in(&sshd, &account.name, &account.password).await);
    let ran = bastion.ssh(&alice, "alice+pw").exec("echo pw-rotated");
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stdout.contains("pw-rotated"), "{ran:?}");
    let audited = bastion.wait_for_audit("credential.rotated", |_| true);
    assert!(audited["old_fingerprint"].is_null(), "{audited}");

    // Without a password_command there is nothing to rotate with: refused, unchanged.
    std::fs::write(
        bastion.config_path(),
        std::fs::read_to_string(bastion.config_path())
            .unwrap()
            .replace("password_command = \"sudo -n /usr/sbin/chpasswd\"", ""),
    )
    .unwrap();
    let refused = bastion.cli(&["vault", "rotate", "pw"]);
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(
        refused.stderr.contains("no password_command"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn two_rotations_at_once_never_leave_the_vault_and_the_target_disagreeing() {
    let scratch = tempfile::tempdir().unwrap();
    let sshd = Sshd::start();
    let (operator, alice, mut bastion) = keyed(&scratch, &sshd, "");
    bastion.start();
    let spawn = || {
        bastion
            .command()
            .args(["vault", "rotate", "web01"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn(), spawn());
    let outputs = [
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    ];
    let succeeded = outputs.iter().filter(|o| o.status.success()).count();
    assert!(succeeded >= 1, "{outputs:?}");
    for refused in outputs.iter().filter(|o| !o.status.success()) {
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains("another rotation of it"),
            "a rotation that did not run says why: {stderr}"
        );
    }
    // Whatever the interleaving: one rotated key on the target, the one the vault holds.
    let keys = std::fs::read_to_string(sshd.authorized_keys_file()).unwrap();
    assert_eq!(keys.matches(" portcullis:web01 ").count(), 1, "{keys}");
    assert!(!key_gets_in(&sshd, "root", &operator.private).await);
    let ran = bastion.ssh(&alice, "alice+web01").exec("echo agreed");
    assert_eq!(ran.code, Some(0), "{ran:?}");
}
