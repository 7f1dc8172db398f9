//! The tools admins drive over ssh work through the bastion unchanged, and leave their trail:
//! git (clone, push, fetch: `git-upload-pack` and `git-receive-pack` exec channels) and
//! Ansible (exec channels for its modules, sftp for the files it copies), each with real
//! clients against the real upstream sshd, every channel recorded and verifying.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use portcullis_tests::World;
use portcullis_tests::util::run_with_timeout;

/// The ssh command line (without destination) that reaches the bastion as alice: what git's
/// `GIT_SSH_COMMAND` and Ansible's `ansible_ssh_common_args` take. Temp paths hold no spaces.
fn ssh_options(world: &World) -> String {
    world.alice("alice+web01").common_args().join(" ")
}

fn git(dir: &Path, args: &[&str], ssh: &str) -> std::process::Output {
    run_with_timeout(
        120,
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_SSH_COMMAND", format!("ssh {ssh}"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", dir)
            .env("GIT_AUTHOR_NAME", "alice")
            .env("GIT_AUTHOR_EMAIL", "alice@example.org")
            .env("GIT_COMMITTER_NAME", "alice")
            .env("GIT_COMMITTER_EMAIL", "alice@example.org"),
    )
}

fn assert_ok(output: &std::process::Output, what: &str) {
    assert!(
        output.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every recording the bastion wrote verifies.
fn assert_recordings_verify(world: &World) {
    let recordings = world.bastion.recordings();
    assert!(!recordings.is_empty());
    for path in recordings {
        let id = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let verified = world.bastion.cli(&["recordings", "verify", &id]);
        assert_eq!(verified.code, Some(0), "{id}: {verified:?}");
    }
}

#[test]
fn git_clone_push_and_fetch_work_through_the_bastion() {
    let world = World::start(|_, _, _| {});
    let ssh = ssh_options(&world);
    let port = world.bastion.address().port();
    // The upstream is this machine: the bare repository is a local directory there.
    let bare = world.path("origin.git");
    assert_ok(
        &git(
            &world.path(""),
            &["init", "--bare", "-q", bare.to_str().unwrap()],
            "",
        ),
        "init",
    );
    let url = format!("ssh://alice+web01@127.0.0.1:{port}{}", bare.display());
    let work = world.path("work");
    std::fs::create_dir_all(&work).unwrap();
    assert_ok(&git(&work, &["clone", "-q", &url, "a"], &ssh), "clone");
    let a = work.join("a");
    let content: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 253) as u8).collect();
    std::fs::write(a.join("blob.bin"), &content).unwrap();
    assert_ok(&git(&a, &["add", "blob.bin"], &ssh), "add");
    assert_ok(
        &git(&a, &["commit", "-q", "-m", "through the bastion"], &ssh),
        "commit",
    );
    assert_ok(&git(&a, &["push", "-q", "origin", "HEAD"], &ssh), "push");
    // A second clone sees the pushed commit, byte for byte.
    assert_ok(
        &git(&work, &["clone", "-q", &url, "b"], &ssh),
        "second clone",
    );
    assert_eq!(std::fs::read(work.join("b/blob.bin")).unwrap(), content);
    let head =
        |dir: &Path| String::from_utf8(git(dir, &["rev-parse", "HEAD"], &ssh).stdout).unwrap();
    assert_eq!(head(&a), head(&work.join("b")));
    // And a fetch into the first brings nothing new, without error.
    assert_ok(&git(&a, &["fetch", "-q"], &ssh), "fetch");

    // Each ran as an exec channel, audited and recorded.
    let lines: Vec<String> = world
        .bastion
        .audit_events("command")
        .iter()
        .map(|e| e["line"].as_str().unwrap().to_owned())
        .collect();
    let quoted = format!("'{}'", bare.display());
    assert_eq!(
        lines
            .iter()
            .filter(|l| **l == format!("git-upload-pack {quoted}"))
            .count(),
        3,
        "{lines:#?}"
    );
    assert!(
        lines.contains(&format!("git-receive-pack {quoted}")),
        "{lines:#?}"
    );
    portcullis_tests::util::wait_for(std::time::Duration::from_secs(20), || {
        (world.bastion.audit_events("channel.end").len() >= 4).then_some(())
    })
    .expect("every channel ended");
    assert_recordings_verify(&world);
}

#[test]
fn an_ansible_playbook_runs_through_the_bastion() {
    let world = World::start(|_, _, _| {});
    let made = world.path("made-by-ansible.txt");
    let inventory = world.path("inventory.ini");
    std::fs::write(
        &inventory,
        format!(
            "[bastioned]\nweb01 ansible_host=127.0.0.1 ansible_port={port} ansible_user=alice+web01 \
             ansible_python_interpreter=/usr/bin/python3\n",
            port = world.bastion.address().port(),
        ),
    )
    .unwrap();
    let playbook = world.path("playbook.yml");
    std::fs::write(
        &playbook,
        format!(
            r#"- hosts: bastioned
  gather_facts: true
  tasks:
    - name: copy a file (sftp)
      ansible.builtin.copy:
        content: "written by ansible through portcullis\n"
        dest: {made}
        mode: "0640"
    - name: read it back (a command)
      ansible.builtin.command: cat {made}
      register: back
    - name: compare
      ansible.builtin.assert:
        that: back.stdout == "written by ansible through portcullis"
"#,
            made = made.display()
        ),
    )
    .unwrap();
    let ran = run_with_timeout(
        300,
        Command::new("/usr/bin/ansible-playbook")
            .arg("-i")
            .arg(&inventory)
            .arg(&playbook)
            // Its own ssh options: the bastion's pinned host key and alice's key, no
            // ControlPersist master left running after the test.
            .env("ANSIBLE_SSH_COMMON_ARGS", ssh_options(&world))
            .env("ANSIBLE_SSH_ARGS", "-o ControlMaster=no")
            .env("ANSIBLE_HOST_KEY_CHECKING", "True")
            .env("ANSIBLE_SSH_TRANSFER_METHOD", "sftp")
            .env("ANSIBLE_REMOTE_TEMP", world.path("ansible-remote"))
            .env("ANSIBLE_LOCAL_TEMP", world.path("ansible-local"))
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_RETRY_FILES_ENABLED", "False")
            .env("HOME", world.path("")),
    );
    let stdout = String::from_utf8_lossy(&ran.stdout);
    assert!(
        ran.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert!(stdout.contains("failed=0"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(&made).unwrap(),
        "written by ansible through portcullis\n"
    );
    // Modules went up over sftp, audited file by file; commands ran as exec channels.
    let uploads = world.bastion.audit_events("sftp.close");
    assert!(
        uploads
            .iter()
            .any(|e| e["bytes_written"].as_u64().unwrap_or(0) > 0
                && e["path"].as_str().unwrap().contains("ansible-remote")),
        "{uploads:#?}"
    );
    let commands = world.bastion.audit_events("command");
    assert!(
        commands
            .iter()
            .any(|e| e["kind"] == "exec" && e["line"].as_str().unwrap().contains("python3")),
        "{commands:#?}"
    );
    assert_recordings_verify(&world);
}
