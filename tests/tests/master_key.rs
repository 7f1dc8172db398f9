//! Master-key rotation (`portcullis vault rekey`): the vault's data key is rewrapped under a
//! new master key, the master key file replaced; sessions go on, the next start needs the new
//! key, the old one no longer opens the vault, and the rotation is audited by the serving
//! bastion although the command ran in another process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use portcullis_tests::World;

fn new_key_file(world: &World, name: &str) -> (std::path::PathBuf, String) {
    let key = hex::encode(portcullis_tests::random_bytes::<32>());
    let path = world.path(name);
    std::fs::write(&path, format!("{key}\n")).unwrap();
    (path, key)
}

#[test]
fn a_master_key_rotation_keeps_every_credential_and_is_audited() {
    let mut world = World::start(|_, _, _| {});
    let bastion = &world.bastion;
    assert_eq!(world.alice("alice+web01").exec("echo before").code, Some(0));
    let key_file = bastion.data_dir().join("master.key");
    let old = std::fs::read_to_string(&key_file).unwrap();

    // Bad input changes nothing.
    let malformed = world.path("malformed.key");
    std::fs::write(&malformed, "not-a-key\n").unwrap();
    let refused = bastion.cli(&[
        "vault",
        "rekey",
        "--new-master-key-file",
        malformed.to_str().unwrap(),
    ]);
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("is malformed: it must be 64 hex digits")
            && refused.stderr.contains("nothing was changed"),
        "{refused:?}"
    );
    let same = world.path("same.key");
    std::fs::write(&same, &old).unwrap();
    let refused = bastion.cli(&[
        "vault",
        "rekey",
        "--new-master-key-file",
        same.to_str().unwrap(),
    ]);
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(refused.stderr.contains("is the one in use"), "{refused:?}");
    let missing = bastion.cli(&["vault", "rekey"]);
    assert_eq!(missing.code, Some(1), "{missing:?}");
    assert!(
        missing.stderr.contains("PORTCULLIS_NEW_MASTER_KEY"),
        "{missing:?}"
    );
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), old);

    let (new_file, new) = new_key_file(&world, "new.key");
    let rekeyed = bastion.cli(&[
        "vault",
        "rekey",
        "--new-master-key-file",
        new_file.to_str().unwrap(),
    ]);
    assert_eq!(rekeyed.code, Some(0), "{rekeyed:?}");
    assert!(
        rekeyed.stdout.contains("the vault's master key is now"),
        "{rekeyed:?}"
    );
    assert_eq!(std::fs::read_to_string(&key_file).unwrap().trim(), new);

    // The serving bastion audits what the command did.
    let audited = bastion.wait_for_audit("vault.rekeyed", |_| true);
    assert_eq!(audited["via"], "command line", "{audited}");
    assert!(
        audited["by"].as_str().unwrap().contains('@')
            && audited["old_key_id"].as_str().unwrap().len() == 16
            && audited["new_key_id"] != audited["old_key_id"],
        "{audited}"
    );
    assert!(
        !audited.to_string().contains(&new),
        "no key in the audit log"
    );
    assert!(
        !audited.to_string().contains(old.trim()),
        "no key in the audit log"
    );
    // Sessions go on: the data key did not change.
    assert_eq!(world.alice("alice+web01").exec("echo during").code, Some(0));

    // The next start opens the vault with the new key; the old one opens nothing.
    world.bastion.terminate();
    world.bastion.start();
    assert_eq!(world.alice("alice+web01").exec("echo after").code, Some(0));
    let with_old = world
        .bastion
        .command()
        .env("PORTCULLIS_MASTER_KEY", old.trim())
        .args(["vault", "list"])
        .output()
        .unwrap();
    assert_eq!(with_old.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&with_old.stderr).contains("does not open this vault"),
        "{with_old:?}"
    );
    let verified = world.bastion.cli(&["audit", "verify"]);
    assert_eq!(verified.code, Some(0), "{verified:?}");
    assert_eq!(world.bastion.audit_events("vault.rekeyed").len(), 1);
}

#[test]
fn a_rekey_with_the_master_key_in_the_environment_leaves_the_files_alone() {
    let key = hex::encode(portcullis_tests::random_bytes::<32>());
    let mut world = World::start(|_, _, _| {});
    // Started over as a bastion whose master key comes from the environment only.
    world.bastion.terminate();
    std::fs::remove_dir_all(world.bastion.data_dir()).unwrap();
    world.bastion.env("PORTCULLIS_MASTER_KEY", &key);
    world.bastion.vault_key_for("web01", &world.sshd);
    world.bastion.start();
    assert!(!world.bastion.data_dir().join("master.key").exists());

    let new = hex::encode(portcullis_tests::random_bytes::<32>());
    let rekeyed = world
        .bastion
        .command()
        .env("PORTCULLIS_NEW_MASTER_KEY", &new)
        .args(["vault", "rekey"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&rekeyed.stdout);
    assert_eq!(rekeyed.status.code(), Some(0), "{rekeyed:?}");
    assert!(
        stdout.contains("set PORTCULLIS_MASTER_KEY to the new key"),
        "{stdout}"
    );
    assert!(!world.bastion.data_dir().join("master.key").exists());
    world
        .bastion
        .wait_for_audit("vault.rekeyed", |e| e["key_file"].is_null());

    world.bastion.terminate();
    world.bastion.env("PORTCULLIS_MASTER_KEY", &new);
    world.bastion.start();
    assert_eq!(world.alice("alice+web01").exec("echo after").code, Some(0));
}
