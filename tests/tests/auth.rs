//! Who gets in: public keys, certificates from a trusted CA, password + TOTP; and who does
//! not, with throttling of guessers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis::credentials::{password, totp};
use portcullis_policy::ManualClock;
use portcullis_tests::client::Askpass;
use portcullis_tests::keys::sign_user_certificate;
use portcullis_tests::{ConfigText, Keypair, SshCommand, Sshd, World};
use tempfile::TempDir;

fn refused(ran: &portcullis_tests::Ran) -> bool {
    ran.code == Some(255) && ran.stderr.contains("Permission denied")
}

#[test]
fn a_key_that_is_not_alices_is_refused_and_audited() {
    let world = World::start(|_, _, _| {});
    let mallory = Keypair::generate(world.scratch.path(), "mallory");
    let ran = world.bastion.ssh(&mallory, "alice+web01").exec("true");
    assert!(refused(&ran), "{ran:?}");
    let failure = world.bastion.wait_for_audit("auth.failure", |e| {
        e["user"] == "alice" && e["method"] == "publickey"
    });
    assert!(failure["key"].as_str().unwrap().starts_with("SHA256:"));
    assert!(world.bastion.audit_events("auth.success").is_empty());
    assert!(
        world.bastion.audit_events("upstream.connected").is_empty(),
        "no upstream without a login"
    );

    let ran = world
        .bastion
        .ssh(&world.alice, "mallory+web01")
        .exec("true");
    assert!(refused(&ran), "an unknown user is refused: {ran:?}");
}

/// A world whose bastion trusts `ca` for user certificates.
fn world_with_ca(ca: &Keypair) -> World {
    let ca_public = ca.public.clone();
    World::start(move |config, _, _| {
        config.raw(&format!(
            "[[user_cas]]\nname = \"corp-ca\"\npublic_key = {ca_public:?}\n"
        ));
    })
}

fn certificate_user(
    world: &World,
    name: &str,
    ca: &Keypair,
    principals: &str,
    validity: &str,
) -> Keypair {
    let key = Keypair::generate(world.scratch.path(), name);
    sign_user_certificate(ca, &key, principals, validity);
    key
}

fn with_certificate(world: &World, key: &Keypair, login: &str) -> SshCommand {
    world.bastion.ssh(key, login).option(&format!(
        "CertificateFile={}",
        key.certificate_path().display()
    ))
}

#[test]
fn certificates_from_the_trusted_ca_log_in_as_their_principal() {
    let scratch = tempfile::tempdir().unwrap();
    let ca = Keypair::generate(scratch.path(), "corp-ca");
    let world = world_with_ca(&ca);
    let key = certificate_user(&world, "alice-cert", &ca, "alice", "-5m:+1h");
    let ran = with_certificate(&world, &key, "alice+web01").exec("echo via-certificate");
    assert_eq!(ran.stdout, "via-certificate\n", "{ran:?}");
    let success = world.bastion.wait_for_audit("auth.success", |_| true);
    assert_eq!(success["method"], "certificate");
    assert_eq!(success["user"], "alice");
}

#[test]
fn untrusted_ca_wrong_principal_and_expired_certificates_are_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let ca = Keypair::generate(scratch.path(), "corp-ca");
    let rogue_ca = Keypair::generate(scratch.path(), "rogue-ca");
    let world = world_with_ca(&ca);

    let untrusted = certificate_user(&world, "untrusted", &rogue_ca, "alice", "-5m:+1h");
    let ran = with_certificate(&world, &untrusted, "alice+web01").exec("true");
    assert!(refused(&ran), "untrusted CA: {ran:?}");
    world.bastion.wait_for_audit("auth.failure", |e| {
        e["reason"] == "certificate signed by an untrusted CA"
    });

    let for_bob = certificate_user(&world, "for-bob", &ca, "bob", "-5m:+1h");
    let ran = with_certificate(&world, &for_bob, "alice+web01").exec("true");
    assert!(refused(&ran), "wrong principal: {ran:?}");
    world.bastion.wait_for_audit("auth.failure", |e| {
        e["reason"] == "the certificate's principals do not include this user"
    });

    let expired = certificate_user(&world, "expired", &ca, "alice", "20200101:20200102");
    let ran = with_certificate(&world, &expired, "alice+web01").exec("true");
    assert!(refused(&ran), "expired: {ran:?}");

    let not_yet = certificate_user(&world, "not-yet", &ca, "alice", "+1d:+2d");
    let ran = with_certificate(&world, &not_yet, "alice+web01").exec("true");
    assert!(refused(&ran), "not yet valid: {ran:?}");

    assert!(world.bastion.audit_events("auth.success").is_empty());
}

const TOTP_SECRET_BYTES: [u8; 20] = *b"portcullis-totp-test";

fn current_code(offset_steps: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let step = (now / 30) as i64 + offset_steps;
    format!("{:06}", totp::code_at(&TOTP_SECRET_BYTES, step as u64))
}

fn world_with_passwords(max_failures: u32) -> World {
    password_world(max_failures, None)
}

fn password_world(max_failures: u32, clock: Option<Arc<ManualClock>>) -> World {
    let hash = password::hash("carols-password").unwrap();
    let totp_hash = password::hash("daves-password").unwrap();
    let secret = portcullis_config::base32::encode(&TOTP_SECRET_BYTES);
    let configure = move |config: &mut ConfigText, _: &Sshd, _: &TempDir| {
        config.server(&format!(
            "auth_max_failures = {max_failures}\nauth_failure_window = \"10m\""
        ));
        config.raw(&format!(
            "[[users]]\nname = \"carol\"\npassword_hash = {hash:?}\n\n\
             [[users]]\nname = \"dave\"\npassword_hash = {totp_hash:?}\ntotp_secret = {secret:?}\n\n\
             [[roles]]\nname = \"password-people\"\nmembers = [\"carol\", \"dave\"]\ntargets = [\"web01\"]\n"
        ));
    };
    match clock {
        Some(clock) => World::start_on(clock, configure),
        None => World::start(configure),
    }
}

fn password_login(world: &World, askpass: &Askpass, login: &str) -> portcullis_tests::Ran {
    let mut command = SshCommand::new(
        world.bastion.address(),
        &world.bastion.known_hosts(),
        None,
        login,
    )
    .interactive_auth()
    .option("PreferredAuthentications=keyboard-interactive,password")
    .option("NumberOfPasswordPrompts=1")
    .ssh_command(Some("echo logged-in"));
    askpass.apply(&mut command);
    command.output().unwrap().into()
}

#[test]
fn password_and_totp_through_keyboard_interactive() {
    let world = world_with_passwords(10);
    let askpass = Askpass::new();

    askpass.answer("carols-password", "");
    let ran = password_login(&world, &askpass, "carol+web01");
    assert_eq!(
        ran.stdout, "logged-in\n",
        "password alone for a user without TOTP: {ran:?}"
    );

    askpass.answer("daves-password", &current_code(0));
    let ran = password_login(&world, &askpass, "dave+web01");
    assert_eq!(ran.stdout, "logged-in\n", "password and code: {ran:?}");
    let success = world
        .bastion
        .wait_for_audit("auth.success", |e| e["user"] == "dave");
    assert_eq!(success["method"], "password+totp");

    // The same code again is a replay.
    let ran = password_login(&world, &askpass, "dave+web01");
    assert!(refused(&ran), "a used code must not work twice: {ran:?}");
    world
        .bastion
        .wait_for_audit("auth.failure", |e| e["reason"] == "TOTP code already used");

    // A wrong code with the right password.
    askpass.answer("daves-password", &current_code(5));
    let ran = password_login(&world, &askpass, "dave+web01");
    assert!(refused(&ran), "wrong code: {ran:?}");
    world
        .bastion
        .wait_for_audit("auth.failure", |e| e["reason"] == "wrong TOTP code");

    // The right code with a wrong password.
    askpass.answer("not-daves-password", &current_code(1));
    let ran = password_login(&world, &askpass, "dave+web01");
    assert!(refused(&ran), "wrong password: {ran:?}");
}

#[test]
fn guessing_is_throttled_per_user_and_source_until_the_window_has_passed() {
    let clock = ManualClock::starting_now();
    let world = password_world(3, Some(clock.clone()));
    let askpass = Askpass::new();
    askpass.answer("wrong-guess", "");
    for _ in 0..3 {
        let ran = password_login(&world, &askpass, "carol+web01");
        assert!(refused(&ran), "{ran:?}");
    }
    // The failure that reached the limit raised the alert; no further attempt was needed
    // (and later refusals in the window raise no more).
    let alert = world.bastion.wait_for_alert("login_failures");
    assert_eq!(alert["severity"], "warning");
    assert_eq!(alert["user"], "carol");
    askpass.answer("carols-password", "");
    let ran = password_login(&world, &askpass, "carol+web01");
    assert!(
        refused(&ran),
        "the right password is refused while throttled: {ran:?}"
    );
    let throttled = world
        .bastion
        .wait_for_audit("auth.throttled", |e| e["user"] == "carol");
    assert!(
        throttled["throttled"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1")
            || throttled["throttled"] == "user carol"
    );

    // The source is throttled too: even alice's good key is refused from this address now.
    let ran = world.alice("alice+web01").exec("true");
    assert!(refused(&ran), "{ran:?}");
    // At most one alert per throttled key (this source, carol's password) in the window.
    let alerted: Vec<String> = world
        .bastion
        .audit_events("alert")
        .iter()
        .map(|a| a["throttled"].as_str().unwrap().to_owned())
        .collect();
    let distinct: std::collections::HashSet<&String> = alerted.iter().collect();
    assert_eq!(distinct.len(), alerted.len(), "{alerted:?}");

    // Failures count for the window (10m) after they happen: just short of it, still shut…
    clock.advance(Duration::from_secs(10 * 60 - 5));
    let ran = password_login(&world, &askpass, "carol+web01");
    assert!(refused(&ran), "let in before the window passed: {ran:?}");
    // …once it has passed for the last of them, the right password works again.
    clock.advance(Duration::from_secs(10));
    let ran = password_login(&world, &askpass, "carol+web01");
    assert_eq!(ran.stdout, "logged-in\n", "{ran:?}");
    let ran = world.alice("alice+web01").exec("echo key-$((2+2))");
    assert_eq!(ran.stdout, "key-4\n", "{ran:?}");
}

#[test]
fn failed_logins_still_count_after_a_restart() {
    // The counts live in the state store: restarting the bastion is no way to reset them.
    let mut world = password_world(3, None);
    let askpass = Askpass::new();
    askpass.answer("wrong-guess", "");
    for _ in 0..3 {
        let ran = password_login(&world, &askpass, "carol+web01");
        assert!(refused(&ran), "{ran:?}");
    }
    world.bastion.terminate();
    world.bastion.start();
    askpass.answer("carols-password", "");
    let ran = password_login(&world, &askpass, "carol+web01");
    assert!(
        refused(&ran),
        "the right password was let in after a restart wiped the count: {ran:?}"
    );
    world
        .bastion
        .wait_for_audit("auth.throttled", |e| e["user"] == "carol");
}

#[test]
fn a_used_totp_code_stays_used_across_a_restart() {
    let mut world = world_with_passwords(10);
    let askpass = Askpass::new();
    askpass.answer("daves-password", &current_code(0));
    let ran = password_login(&world, &askpass, "dave+web01");
    assert_eq!(ran.stdout, "logged-in\n", "{ran:?}");
    world.bastion.terminate();
    world.bastion.start();
    let ran = password_login(&world, &askpass, "dave+web01");
    assert!(
        refused(&ran),
        "the code was replayed after a restart: {ran:?}"
    );
    world
        .bastion
        .wait_for_audit("auth.failure", |e| e["reason"] == "TOTP code already used");
}
