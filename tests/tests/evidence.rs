//! Evidence that cannot be shortened or swapped unnoticed: the audit log's end and each
//! recording's seal are anchored outside the files; a log cut at its end is reported by
//! `audit verify` and written into the log at the next start, a recording cut short or
//! replaced by another genuine one fails `recordings verify`. And the data at rest: a
//! private data directory, a private state database, a warning when the master key sits
//! beside the data it protects, and audit queries that stream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use portcullis_recorder::writer::mac_path;
use portcullis_tests::{ConfigText, Ran, World};

const READER: &str = "reader-token-0123456789";

fn run_two_sessions(world: &World) {
    for n in 0..2 {
        let ran = world
            .alice("alice+web01")
            .exec(&format!("echo evidence-{n}"));
        assert_eq!(ran.stdout, format!("evidence-{n}\n"), "{ran:?}");
    }
    let ended = portcullis_tests::util::wait_for(std::time::Duration::from_secs(20), || {
        (world.bastion.audit_events("session.end").len() >= 2).then_some(())
    });
    assert!(ended.is_some());
}

fn tampered(ran: &Ran, words: &str) {
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(
        ran.stdout.contains("TAMPERED") && ran.stdout.contains(words),
        "{ran:?}"
    );
}

#[test]
fn a_cut_audit_log_is_reported_and_not_quietly_continued() {
    let mut world = World::start(|_, _, _| {});
    run_two_sessions(&world);
    world.bastion.terminate();
    let log = world.bastion.data_dir().join("audit.jsonl");
    let intact = world.bastion.cli(&["audit", "verify"]);
    assert_eq!(intact.code, Some(0), "{intact:?}");
    assert!(
        intact.stdout.contains("ends where it was last written"),
        "{intact:?}"
    );

    // The last session's lines (and the shutdown) removed: what is left chains perfectly.
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let keep = lines
        .iter()
        .rposition(|l| l.contains("\"event\":\"session.start\""))
        .unwrap();
    let cut: String = lines[..keep].iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&log, cut).unwrap();
    tampered(&world.bastion.cli(&["audit", "verify"]), "were removed");

    // A restart does not paper over it: the log says so itself, and verify keeps saying so.
    world.bastion.start();
    assert!(
        world
            .bastion
            .log()
            .contains("ALERT: the audit log does not end where it was last written"),
        "{}",
        world.bastion.log()
    );
    let found = world
        .bastion
        .wait_for_audit("audit.anchor_mismatch", |_| true);
    assert!(found["found"].as_str().unwrap().contains("were removed"));
    let ran = world.alice("alice+web01").exec("echo after");
    assert_eq!(ran.stdout, "after\n");
    tampered(
        &world.bastion.cli(&["audit", "verify"]),
        "did not end where",
    );
}

/// A world with two sealed recordings (and a read token for the API).
fn recorded() -> (World, PathBuf, PathBuf) {
    let world = World::start(|config, _, _| {
        config.admin(&[("auditor", READER, &["read"])]);
    });
    run_two_sessions(&world);
    let casts = world.bastion.recordings();
    assert_eq!(casts.len(), 2, "{casts:?}");
    for cast in &casts {
        let ran = world
            .bastion
            .cli(&["recordings", "verify", cast.to_str().unwrap()]);
        assert_eq!(ran.code, Some(0), "{ran:?}");
    }
    (world, casts[0].clone(), casts[1].clone())
}

fn drop_last_lines(path: &Path, count: usize) {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let kept: String = lines[..lines.len() - count]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(path, kept).unwrap();
}

/// Cuts the last `count` units off a recording file: lines of a .cast, frames of a .rec.
fn drop_last_units(path: &Path, count: usize) {
    if path.extension().is_some_and(|e| e != "rec") {
        return drop_last_lines(path, count);
    }
    use portcullis_recorder::framed::{Unit, UnitReader};
    let bytes = std::fs::read(path).unwrap();
    let mut reader = UnitReader::new(&bytes[..]);
    let mut ends = Vec::new();
    let mut at = 0;
    while let Unit::Whole(unit) = reader.next_unit().unwrap() {
        // The header line has its newline after it.
        at += unit.len() + usize::from(ends.is_empty());
        ends.push(at);
    }
    std::fs::write(path, &bytes[..ends[ends.len() - 1 - count]]).unwrap();
}

fn id_of(cast: &Path) -> String {
    cast.file_stem().unwrap().to_string_lossy().into_owned()
}

#[test]
fn a_recording_cut_short_with_its_integrity_file_is_tampered_not_unfinished() {
    let (world, first, _) = recorded();
    // The end marker off the recording; its tag and the seal off the integrity file.
    drop_last_units(&first, 1);
    drop_last_lines(&mac_path(&first), 2);
    let ran = world
        .bastion
        .cli(&["recordings", "verify", first.to_str().unwrap()]);
    tampered(&ran, "its end was cut off");
    // The console and API say the same.
    let (status, answer) = world.bastion.api_request(
        READER,
        "GET",
        &format!("/api/v1/recordings/{}/verify", id_of(&first)),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(answer["status"], "tampered", "{answer}");
}

#[test]
fn another_genuine_recording_put_in_a_recordings_place_is_caught() {
    let (world, first, second) = recorded();
    std::fs::copy(&second, &first).unwrap();
    std::fs::copy(mac_path(&second), mac_path(&first)).unwrap();
    let ran = world
        .bastion
        .cli(&["recordings", "verify", first.to_str().unwrap()]);
    tampered(
        &ran,
        &format!("hold recording {}, not {}", id_of(&second), id_of(&first)),
    );
    // Renaming the pair to match does not help: it is not the seal kept for that id.
    let other = first.with_file_name(format!(
        "{}.{}",
        id_of(&second),
        first.extension().unwrap().to_string_lossy()
    ));
    assert_eq!(other, second);
    let ran = world
        .bastion
        .cli(&["recordings", "verify", second.to_str().unwrap()]);
    assert_eq!(ran.code, Some(0), "the original still verifies: {ran:?}");
}

#[test]
fn the_data_directory_and_state_database_are_private() {
    let mut config = ConfigText::default();
    config.raw("");
    let mut bastion = portcullis_tests::Bastion::new(&config);
    // A data directory an operator made world-readable, and a state file left 0644.
    let data = bastion.data_dir();
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(data.join("state.db"), b"").unwrap();
    std::fs::set_permissions(
        data.join("state.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    bastion.start();
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    for name in [
        "state.db",
        "state.db-wal",
        "state.db-shm",
        "audit.jsonl",
        "master.key",
    ] {
        let path = data.join(name);
        assert!(path.exists(), "{name} missing");
        assert_eq!(mode(&path) & 0o077, 0, "{name} can be read by others");
    }
    assert!(
        bastion
            .log()
            .contains("could be read by other accounts; it is now private"),
        "{}",
        bastion.log()
    );
}

#[test]
fn check_config_warns_when_the_master_key_sits_beside_the_data() {
    let beside = portcullis_tests::Bastion::new(&ConfigText::default());
    let ran = beside.cli(&["check-config"]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stdout.ends_with(": OK\n"), "{ran:?}");
    assert!(
        ran.stderr
            .contains("portcullis: warning: the vault's master key")
            && ran.stderr.contains("is kept inside data_dir"),
        "{ran:?}"
    );
    let keys = tempfile::tempdir().unwrap();
    let mut config = ConfigText::default();
    config.raw(&format!(
        "[vault]\nmaster_key_file = {:?}\n",
        keys.path().join("master.key")
    ));
    let apart = portcullis_tests::Bastion::new(&config);
    let ran = apart.cli(&["check-config"]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(!ran.stderr.contains("warning"), "{ran:?}");
}

#[test]
fn audit_queries_read_a_large_log_without_holding_it() {
    let world = World::start(|config, _, _| {
        config.admin(&[("auditor", READER, &["read"])]);
    });
    let pid = world.bastion.pid().unwrap();
    // 150 MB of (unchained, but well-formed) command events appended to the log.
    let log = world.bastion.data_dir().join("audit.jsonl");
    {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        let line = format!(
            "{{\"time\":\"2026-01-01T00:00:00.000Z\",\"event\":\"command\",\"user\":\"bulk\",\"line\":\"{}\"}}\n",
            "x".repeat(1000)
        );
        let block = line.repeat(1000);
        for _ in 0..150 {
            file.write_all(block.as_bytes()).unwrap();
        }
    }
    let (_, before) = portcullis_tests::raw::memory_kib(pid);
    let (status, answer) =
        world
            .bastion
            .api_request(READER, "GET", "/api/v1/commands?q=xxx&limit=10", None);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["commands"].as_array().map(Vec::len),
        Some(10),
        "{answer}"
    );
    let (_, after) = portcullis_tests::raw::memory_kib(pid);
    let grown = after.saturating_sub(before);
    assert!(
        grown < 32 * 1024,
        "the bastion's peak memory grew by {grown} KiB for a query over a 150 MB log"
    );
}
