//! The operator's commands: vault put/list/rm, hash-password, audit verify.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::process::Stdio;

use portcullis_tests::{Bastion, ConfigText, Keypair, World};

fn bastion() -> (tempfile::TempDir, Bastion) {
    let scratch = tempfile::tempdir().unwrap();
    let alice = Keypair::generate(scratch.path(), "alice");
    let mut config = ConfigText::default();
    config.user("alice", &[&alice.public]);
    (scratch, Bastion::new(&config))
}

#[test]
fn vault_put_list_and_rm() {
    let (scratch, bastion) = bastion();

    let generated = bastion.cli(&["vault", "put", "web01", "--generate", "ed25519"]);
    assert_eq!(generated.code, Some(0), "{generated:?}");
    assert!(
        generated.stdout.starts_with("ssh-ed25519 AAAA"),
        "the public key to install: {generated:?}"
    );
    assert!(generated.stdout.trim_end().ends_with("portcullis:web01"));

    let imported = Keypair::generate(scratch.path(), "db-key");
    let put = bastion.cli(&[
        "vault",
        "put",
        "db01",
        "--private-key",
        imported.private.to_str().unwrap(),
    ]);
    assert_eq!(put.code, Some(0), "{put:?}");
    bastion.vault_password("app01", "an-app-password");

    let listed = bastion.cli(&["vault", "list"]);
    assert_eq!(listed.code, Some(0), "{listed:?}");
    let lines: Vec<&str> = listed.stdout.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{listed:?}");
    assert!(
        lines[1].starts_with("app01") && lines[1].contains("password") && lines[1].contains(" - "),
        "{listed:?}"
    );
    assert!(
        lines[2].starts_with("db01")
            && lines[2].contains("private-key")
            && lines[2].contains("SHA256:"),
        "{listed:?}"
    );
    assert!(lines[3].starts_with("web01"));
    assert!(!listed.stdout.contains("an-app-password"));

    let again = bastion.cli(&["vault", "put", "web01", "--generate", "ed25519"]);
    assert_eq!(again.code, Some(1));
    assert!(
        again.stderr.contains("already exists (use --replace"),
        "{again:?}"
    );
    let replaced = bastion.cli(&[
        "vault",
        "put",
        "web01",
        "--generate",
        "ed25519",
        "--replace",
    ]);
    assert_eq!(replaced.code, Some(0), "{replaced:?}");
    assert_ne!(replaced.stdout, generated.stdout, "a new key");

    let removed = bastion.cli(&["vault", "rm", "db01"]);
    assert_eq!(removed.code, Some(0));
    let missing = bastion.cli(&["vault", "rm", "db01"]);
    assert_eq!(missing.code, Some(1));
    assert!(
        missing.stderr.contains("no vault entry named \"db01\""),
        "{missing:?}"
    );
    assert!(!bastion.cli(&["vault", "list"]).stdout.contains("db01"));
}

#[test]
fn bad_vault_input_is_refused_and_changes_nothing() {
    let (scratch, bastion) = bastion();
    bastion.vault_generate("keep");
    let before = bastion.cli(&["vault", "list"]).stdout;

    let garbage = scratch.path().join("not-a-key");
    std::fs::write(&garbage, "hello").unwrap();
    let ran = bastion.cli(&[
        "vault",
        "put",
        "x",
        "--private-key",
        garbage.to_str().unwrap(),
    ]);
    assert_eq!(ran.code, Some(1));
    assert!(
        ran.stderr.contains("is not an OpenSSH private key"),
        "{ran:?}"
    );

    let protected = scratch.path().join("protected");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "a passphrase", "-f"])
        .arg(&protected)
        .status()
        .unwrap();
    assert!(status.success());
    let ran = bastion.cli(&[
        "vault",
        "put",
        "x",
        "--private-key",
        protected.to_str().unwrap(),
    ]);
    assert_eq!(ran.code, Some(1));
    assert!(ran.stderr.contains("protected by a passphrase"), "{ran:?}");

    let ran = bastion.cli(&["vault", "put", "bad name", "--generate", "ed25519"]);
    assert_eq!(ran.code, Some(1));
    assert!(
        ran.stderr.contains("is not a valid vault entry name"),
        "{ran:?}"
    );

    let ran = bastion.cli(&["vault", "put", "x", "--private-key", "/nonexistent/key"]);
    assert_eq!(ran.code, Some(1));
    assert!(
        ran.stderr.contains("cannot read /nonexistent/key"),
        "{ran:?}"
    );

    let ran = bastion.cli(&["vault", "put", "x"]);
    assert_eq!(ran.code, Some(2), "clap insists on one source: {ran:?}");

    assert_eq!(bastion.cli(&["vault", "list"]).stdout, before);
}

#[test]
fn hash_password_prints_a_hash_that_logs_in() {
    let (_scratch, bastion) = bastion();
    let mut child = bastion
        .command()
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(
        child.stdin.as_mut().unwrap(),
        "correct horse battery staple"
    )
    .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let hash = String::from_utf8(output.stdout).unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(portcullis::credentials::password::verify(
        hash.trim(),
        "correct horse battery staple"
    ));
}

#[test]
fn the_audit_log_verifies_and_an_edit_is_caught() {
    let mut world = World::start(|_, _, _| {});
    let ran = world.alice("alice+web01").exec("true");
    assert_eq!(ran.code, Some(0));
    world.bastion.wait_for_audit("session.end", |_| true);
    assert_eq!(world.bastion.terminate(), Some(0));
    let verified = world.bastion.cli(&["audit", "verify"]);
    assert_eq!(verified.code, Some(0), "{verified:?}");
    assert!(verified.stdout.contains("intact"), "{verified:?}");

    let path = world.bastion.data_dir().join("audit.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replacen("\"user\":\"alice\"", "\"user\":\"carol\"", 1),
    )
    .unwrap();
    let verified = world.bastion.cli(&["audit", "verify"]);
    assert_eq!(verified.code, Some(1), "{verified:?}");
    assert!(verified.stdout.contains("TAMPERED at line"), "{verified:?}");
    // The verify left an alert, which the bastion audits (and forwards) once it serves.
    world.bastion.start();
    let alert = world.bastion.wait_for_alert("evidence_tampered");
    assert_eq!(alert["severity"], "critical");
    assert_eq!(alert["evidence"], "audit_log");
    assert_eq!(alert["via"], "command line");
}

#[test]
fn the_deploy_example_configs_are_valid() {
    for example in [
        "portcullis.example.toml",
        "cluster/node-a.toml",
        "cluster/node-b.toml",
    ] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy")
            .join(example);
        let ran: portcullis_tests::Ran =
            std::process::Command::new(portcullis_tests::util::portcullis_bin())
                .args(["check-config", "--config"])
                .arg(&path)
                .output()
                .unwrap()
                .into();
        assert_eq!(ran.code, Some(0), "{example}: {ran:?}");
    }
}

#[test]
fn an_event_forged_into_the_state_store_is_refused_and_raises_an_alert() {
    // Someone with write access to the database (not the data key) leaves an "event" for
    // the bastion to audit: it is refused, and security hears of it.
    let world = World::start(|_, _, _| {});
    let db = rusqlite::Connection::open(world.bastion.data_dir().join("state.db")).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    db.execute(
        "INSERT INTO credentials (name, kind, fingerprint, public_key, created_at, sealed) \
         VALUES ('@event.00000000000000000001.vault.rekeyed', 'admin-event', NULL, NULL, 0, ?1)",
        [b"{\"event\":\"vault.rekeyed\",\"by\":\"mallory\"}".to_vec()],
    )
    .unwrap();
    let rejected = world
        .bastion
        .wait_for_audit("audit.left_event_rejected", |_| true);
    assert!(
        rejected["reason"]
            .as_str()
            .unwrap()
            .contains("damaged or forged"),
        "{rejected}"
    );
    let alert = world.bastion.wait_for_alert("evidence_tampered");
    assert_eq!(alert["evidence"], "left_event");
    assert_eq!(alert["severity"], "critical");
    assert!(world.bastion.audit_events("vault.rekeyed").is_empty());
}
