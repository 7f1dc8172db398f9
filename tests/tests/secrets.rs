//! The vault's secrets never leave it: not in the log (even at trace level), the audit log,
//! a recording, an error message, a listing or the state database in clear.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use portcullis::vault::generate_ed25519;
use portcullis_tests::sshd::SshdOptions;
use portcullis_tests::{Bastion, ConfigText, Keypair, LocalUser, Sshd, Tmux};
use russh::keys::ssh_key::LineEnding;

#[test]
fn vault_secrets_appear_in_no_log_audit_line_recording_or_message() {
    let account = LocalUser::create();
    let sshd = Sshd::start_with(SshdOptions {
        password_auth: true,
    });
    let scratch = tempfile::tempdir().unwrap();
    let alice = Keypair::generate(scratch.path(), "alice");

    // A private key whose secret bytes the test knows, imported into the vault.
    let upstream_key = generate_ed25519("upstream").unwrap();
    let key_file = scratch.path().join("upstream_key");
    std::fs::write(
        &key_file,
        upstream_key.to_openssh(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    sshd.authorize(&upstream_key.public_key().to_openssh().unwrap());
    let seed = upstream_key
        .key_data()
        .ed25519()
        .unwrap()
        .private
        .to_bytes();
    let pem_body: Vec<String> = std::fs::read_to_string(&key_file)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(String::from)
        .collect();
    let wrong_password = format!(
        "Wrong-Vault-Secret-{}",
        hex::encode(portcullis_tests::random_bytes::<8>())
    );

    let mut config = ConfigText::default();
    config
        .user("alice", &[&alice.public])
        .target("keyed", &sshd, "root", "keyed")
        .target("pw", &sshd, &account.name, "pw")
        .target("wrongpw", &sshd, &account.name, "wrongpw")
        .role("all", &["alice"], &["*"]);
    let mut bastion = Bastion::new(&config);
    bastion.env("RUST_LOG", "trace");
    let put = bastion.cli(&[
        "vault",
        "put",
        "keyed",
        "--private-key",
        key_file.to_str().unwrap(),
    ]);
    assert_eq!(put.code, Some(0), "{put:?}");
    bastion.vault_password("pw", &account.password);
    bastion.vault_password("wrongpw", &wrong_password);
    bastion.start();

    let mut said = Vec::new();
    for (login, command) in [
        ("alice+keyed", "echo keyed-ok"),
        ("alice+pw", "echo pw-ok; env"),
        ("alice+wrongpw", "true"),
    ] {
        let ran = bastion.ssh(&alice, login).exec(command);
        said.push(format!("{ran:?}"));
    }
    assert!(
        said[0].contains("keyed-ok") && said[1].contains("pw-ok"),
        "{said:?}"
    );
    assert!(
        said[2].contains("refused the vaulted credential"),
        "{said:?}"
    );
    let tmux = Tmux::start(
        &bastion.ssh(&alice, "alice+pw").shell_line(&["-tt"]),
        100,
        30,
    );
    tmux.line("echo interactive-$((1+1))");
    tmux.wait_for_text("interactive-2", Duration::from_secs(20));
    tmux.line("exit");
    tmux.wait_exit(Duration::from_secs(20));
    said.push(tmux.screen());
    for args in [
        &["vault", "list"][..],
        &["recordings", "list"],
        &["audit", "verify"],
    ] {
        let ran = bastion.cli(args);
        assert_eq!(ran.code, Some(0), "{args:?}: {ran:?}");
        said.push(format!("{ran:?}"));
    }
    assert_eq!(bastion.terminate(), Some(0));

    let mut haystacks = vec![("log".to_owned(), bastion.log())];
    haystacks.push(("client output".into(), said.join("\n")));
    haystacks.push((
        "audit".into(),
        std::fs::read_to_string(bastion.data_dir().join("audit.jsonl")).unwrap(),
    ));
    for entry in std::fs::read_dir(bastion.data_dir().join("recordings")).unwrap() {
        let path = entry.unwrap().path();
        haystacks.push((path.display().to_string(), recorded_text(&path)));
    }
    assert!(haystacks.len() > 5, "recordings exist");
    assert!(
        haystacks[0].1.contains("TRACE"),
        "the log really is at trace level"
    );

    let seed_hex = hex::encode(seed);
    let seed_debug = format!("{:?}", &seed[..6]).trim_end_matches(']').to_owned();
    let mut secrets: Vec<(&str, String)> = vec![
        ("the upstream password", account.password.clone()),
        ("the wrong upstream password", wrong_password.clone()),
        ("the private key (hex)", seed_hex),
        ("the private key (debug bytes)", seed_debug),
    ];
    for line in pem_body.iter().filter(|l| l.len() > 16) {
        secrets.push(("a line of the private key file", line.clone()));
    }
    for (name, text) in &haystacks {
        for (what, secret) in &secrets {
            assert!(!text.contains(secret.as_str()), "{what} leaked into {name}");
        }
    }

    // At rest, the database holds them sealed only.
    let db = std::fs::read(bastion.data_dir().join("state.db")).unwrap();
    for (what, secret) in &secrets {
        assert!(
            !db.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{what} is in state.db in clear"
        );
    }
}

/// What a recording file holds, as text: a .cast as it is, a .rec's header and frames
/// decompressed (its bytes are compressed on disk, where a secret would not show).
fn recorded_text(path: &std::path::Path) -> String {
    use portcullis_recorder::framed::{Unit, UnitReader, decode_frame};
    let bytes = std::fs::read(path).unwrap();
    if path.extension().is_none_or(|e| e != "rec") {
        return String::from_utf8(bytes).unwrap();
    }
    let mut reader = UnitReader::new(&bytes[..]);
    let mut text = Vec::new();
    let mut header = true;
    while let Unit::Whole(unit) = reader.next_unit().unwrap() {
        if std::mem::take(&mut header) {
            text.extend_from_slice(&unit);
        } else {
            text.extend_from_slice(&decode_frame(&unit).unwrap().data);
        }
        text.push(b'\n');
    }
    String::from_utf8_lossy(&text).into_owned()
}
