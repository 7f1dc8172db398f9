//! Every terminal is recorded as asciicast that asciinema plays, edits are detectable, and a
//! recording that cannot be written ends the session (or, if configured, is noted and the
//! session continues).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use portcullis_tests::disk::SmallDisk;
use portcullis_tests::{Tmux, World};

fn shell_session(world: &World, lines: &[&str]) -> PathBuf {
    let tmux = Tmux::start(&world.alice("alice+web01").shell_line(&["-tt"]), 90, 25);
    for line in lines {
        tmux.line(line);
    }
    tmux.line("exit");
    assert_eq!(
        tmux.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        tmux.screen()
    );
    let ended = world
        .bastion
        .wait_for_audit("channel.end", |e| e["kind"] == "shell");
    let id = ended["recording"].as_str().unwrap();
    world
        .bastion
        .data_dir()
        .join("recordings")
        .join(format!("{id}.cast"))
}

fn asciinema_play(cast: &Path) -> String {
    let output = Command::new("timeout")
        .args(["60", "asciinema", "play", "-s", "100", "-i", "0.05"])
        .arg(cast)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run asciinema (install the asciinema package)");
    assert!(output.status.success(), "asciinema play failed: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn a_shell_recording_plays_in_asciinema_and_verifies() {
    let world = World::start(|_, _, _| {});
    let cast = shell_session(
        &world,
        &["echo recorded-$((40+2))", "printf 'caf\\303\\251\\n'"],
    );

    let played = asciinema_play(&cast);
    assert!(played.contains("recorded-42"), "asciinema output: {played}");
    assert!(played.contains("café"), "UTF-8 survives: {played}");

    let text = std::fs::read_to_string(&cast).unwrap();
    let header: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    assert_eq!(header["width"], 90);
    assert_eq!(header["height"], 25);
    assert_eq!(header["title"], "alice → root@web01");
    assert!(
        !header["env"]["TERM"].as_str().unwrap().is_empty(),
        "the client's TERM is kept"
    );
    assert_eq!(header["portcullis"]["user"], "alice");
    let events: Vec<serde_json::Value> = text
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |kind: &str| {
        events
            .iter()
            .filter(|e| e[1] == kind)
            .map(|e| e[2].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert!(
        of("i").concat().contains("echo recorded-$((40+2))"),
        "keystrokes are recorded"
    );
    let markers = of("m");
    assert!(
        markers[0].starts_with("start: shell, alice → root@web01"),
        "{markers:?}"
    );
    assert_eq!(markers.last().unwrap(), "end: exit status 0");

    let verify = world
        .bastion
        .cli(&["recordings", "verify", cast.to_str().unwrap()]);
    assert_eq!(verify.code, Some(0), "{verify:?}");
    assert!(verify.stdout.contains("intact"), "{verify:?}");

    let listed = world.bastion.cli(&["recordings", "list"]);
    let id = cast.file_stem().unwrap().to_string_lossy().into_owned();
    assert!(
        listed
            .stdout
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("alice") && l.contains("web01")),
        "{listed:?}"
    );

    // The audit log's end record carries the seal of this very file.
    let ended = world.bastion.audit_events("channel.end");
    let seal = std::fs::read_to_string(format!("{}.hmac", cast.display())).unwrap();
    assert!(
        seal.trim_end()
            .ends_with(ended[0]["recording_seal"].as_str().unwrap())
    );
}

#[test]
fn an_edited_recording_fails_verification() {
    let world = World::start(|_, _, _| {});
    let cast = shell_session(&world, &["echo innocent-output"]);
    let text = std::fs::read_to_string(&cast).unwrap();
    assert!(text.contains("innocent-output"));
    std::fs::write(
        &cast,
        text.replacen("innocent-output", "harmless-output", 1),
    )
    .unwrap();
    let verify = world
        .bastion
        .cli(&["recordings", "verify", cast.to_str().unwrap()]);
    assert_eq!(verify.code, Some(1), "{verify:?}");
    assert!(verify.stdout.contains("TAMPERED at line"), "{verify:?}");
    let alert = world.bastion.wait_for_alert("evidence_tampered");
    assert_eq!(alert["evidence"], "recording");
    assert_eq!(alert["severity"], "critical");

    // Asking by id works as well, and an unknown id is an error, not a pass.
    let id = cast.file_stem().unwrap().to_string_lossy().into_owned();
    assert_eq!(
        world.bastion.cli(&["recordings", "verify", &id]).code,
        Some(1)
    );
    assert_eq!(
        world
            .bastion
            .cli(&["recordings", "verify", "no-such-recording"])
            .code,
        Some(1)
    );
}

#[test]
fn keystrokes_are_left_out_when_input_recording_is_off() {
    let world = World::start(|config, _, _| {
        config.raw("[recording]\ninput = false\n");
    });
    let cast = shell_session(&world, &["echo typed-secretly"]);
    let text = std::fs::read_to_string(&cast).unwrap();
    assert!(!text.contains(r#","i","#), "no input events");
    assert!(
        text.contains("typed-secretly"),
        "the echoed output is still recorded"
    );
}

#[test]
fn a_recording_that_fails_mid_session_ends_it_with_a_reason() {
    let scratch = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(&scratch.path().join("recordings"), "512k");
    let dir = disk.path.clone();
    let world = World::start(move |config, _, _| {
        config.raw(&format!(
            "[recording]\non_failure = \"terminate\"\ndir = {:?}\n",
            dir.display().to_string()
        ));
    });
    // Far more output than fits on the disk (random bytes: compression does not help).
    let output = portcullis_tests::util::run_with_timeout(
        60,
        &mut world
            .alice("alice+web01")
            .ssh_command(Some("head -c 6000000 /dev/urandom; echo finished")),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.stdout.ends_with(b"finished\n"),
        "the session must not run to the end unrecorded"
    );
    assert!(
        stderr.contains("portcullis: the session recording failed")
            && stderr.contains("sessions may not continue unrecorded"),
        "{stderr:?}"
    );
    assert_ne!(output.status.code(), Some(0));
    let failed = world.bastion.wait_for_audit("recording.failed", |_| true);
    assert_eq!(failed["continuing_unrecorded"], false);
    assert!(
        failed["error"].as_str().unwrap().contains("No space left"),
        "{failed}"
    );
    let end = world.bastion.wait_for_audit("session.end", |_| true);
    assert_eq!(end["reason"], "recording_failed");
    assert_eq!(end["side"], "recorder", "{end}");
    let alert = world.bastion.wait_for_alert("recording_failed");
    assert_eq!(alert["severity"], "error");
    assert_eq!(alert["continuing_unrecorded"], false);
    // What was written before the disk filled is intact: it verifies as far as it goes
    // (never sealed), and gives back a beginning of what the client received.
    let id = failed["recording"].as_str().unwrap();
    let verified = world.bastion.cli(&["recordings", "verify", id]);
    assert_eq!(verified.code, Some(2), "{verified:?}");
    let cat = portcullis_tests::util::run_with_timeout(
        60,
        world
            .bastion
            .command()
            .args(["recordings", "cat", id, "--force"]),
    );
    assert_eq!(cat.status.code(), Some(2), "{cat:?}");
    assert!(cat.stdout.len() > 100_000, "{} bytes", cat.stdout.len());
    // Output is recorded before it is relayed, so the recording may hold a little the client
    // never got (the session ended before it was delivered), and the client may have got a
    // little the recording cannot vouch for yet: up to the shorter, they are the same bytes.
    let common = cat.stdout.len().min(output.stdout.len());
    assert!(
        cat.stdout[..common] == output.stdout[..common],
        "the recording differs from what the client received within the first {common} bytes"
    );

    // With the disk already full, a new session cannot even start: refused, not unrecorded.
    disk.fill();
    let ran = world
        .alice("alice+web01")
        .exec("touch /tmp/portcullis-unrecorded-sentinel");
    assert!(
        ran.stderr
            .contains("portcullis: the session cannot be recorded"),
        "{ran:?}"
    );
    assert_eq!(ran.code, Some(1));
}

#[test]
fn with_on_failure_continue_the_session_goes_on_and_the_gap_is_audited() {
    let scratch = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(&scratch.path().join("recordings"), "512k");
    let dir = disk.path.clone();
    let world = World::start(move |config, _, _| {
        config.raw(&format!(
            "[recording]\non_failure = \"continue\"\ndir = {:?}\n",
            dir.display().to_string()
        ));
    });
    let ran = world.alice("alice+web01").exec(
        "for i in $(seq 1 200000); do echo line-$i-padding-padding-padding; done; echo finished",
    );
    assert!(ran.stdout.ends_with("finished\n"), "stderr: {}", ran.stderr);
    assert_eq!(ran.code, Some(0));
    let failed = world.bastion.wait_for_audit("recording.failed", |_| true);
    assert_eq!(failed["continuing_unrecorded"], true);
}
