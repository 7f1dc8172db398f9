//! A recording a crashed bastion left open is sealed at the next start: what verifies stays,
//! what does not is set aside byte for byte, an end marker says why; a recording changed in
//! the meantime is left untouched.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use portcullis_recorder::framed::FramedHeader;
use portcullis_recorder::recover::{Recovered, is_unsealed, seal_abandoned, unverified_path};
use portcullis_recorder::writer::mac_path;
use portcullis_recorder::{
    ChainKey, Header, RecordingOptions, SessionFacts, Verdict, start, start_framed, verify_file,
};

fn key() -> ChainKey {
    ChainKey::derive(b"test data key", "recordings")
}

fn facts(id: &str) -> SessionFacts {
    SessionFacts {
        recording: id.into(),
        session: "s1".into(),
        user: "alice".into(),
        target: "web01".into(),
        login: "deploy".into(),
        kind: "shell".into(),
        command: None,
        client: "127.0.0.1:5000".into(),
    }
}

async fn terminal_recording(dir: &Path, id: &str) -> PathBuf {
    let header = Header {
        version: 2,
        width: 80,
        height: 24,
        timestamp: 1_700_000_000,
        title: None,
        env: BTreeMap::new(),
        portcullis: Some(facts(id)),
    };
    let handle = start(dir, id, &header, &key(), RecordingOptions::default()).unwrap();
    for i in 0..6 {
        handle
            .output(Bytes::from(format!("line {i}\r\n")))
            .await
            .unwrap();
        handle.input(Bytes::from_static(b"x")).await.unwrap();
    }
    handle.finish("never seen").await.unwrap().path
}

async fn byte_recording(dir: &Path, id: &str) -> PathBuf {
    let header = FramedHeader::new(1_700_000_000, facts(id));
    let handle = start_framed(dir, id, &header, &key(), RecordingOptions::default()).unwrap();
    for i in 0..6u8 {
        handle.output(Bytes::from(vec![i; 5000])).await.unwrap();
        handle.input(Bytes::from(vec![0, i, 0xff])).await.unwrap();
    }
    handle.finish("never seen").await.unwrap().path
}

/// As if the bastion had been killed: no seal, and the tags of the last `untagged` units
/// never written.
fn crash(path: &Path, untagged: usize) {
    let mac = std::fs::read_to_string(mac_path(path)).unwrap();
    let mut lines: Vec<&str> = mac.lines().filter(|l| !l.starts_with("end ")).collect();
    lines.truncate(lines.len() - untagged);
    std::fs::write(mac_path(path), lines.join("\n") + "\n").unwrap();
}

fn check_sealed_after_crash(path: &Path, untagged: usize) {
    let before = std::fs::read(path).unwrap();
    let verified = match verify_file(path, &key()).unwrap() {
        Verdict::Unfinalized {
            verified_lines,
            unverified_lines,
        } => {
            assert_eq!(unverified_lines, untagged);
            verified_lines
        }
        other => panic!("not a crashed recording: {other}"),
    };
    assert!(is_unsealed(path).unwrap());

    let recovered = seal_abandoned(path, &key(), "bastion crashed").unwrap();
    match &recovered {
        Recovered::Sealed {
            lines, set_aside, ..
        } => {
            assert_eq!(*lines, verified + 1);
            assert_eq!(*set_aside, untagged);
        }
        other => panic!("{other:?}"),
    }
    let verdict = verify_file(path, &key()).unwrap();
    assert!(verdict.is_intact(), "{verdict}");
    assert!(!is_unsealed(path).unwrap());
    // Nothing is lost: what was kept and what was set aside are the file as it was.
    let after = std::fs::read(path).unwrap();
    let aside = std::fs::read(unverified_path(path)).unwrap_or_default();
    assert_eq!(untagged > 0, !aside.is_empty());
    let kept = before.len() - aside.len();
    assert_eq!(&after[..kept], &before[..kept]);
    assert_eq!(&before[kept..], &aside[..]);
    assert!(
        String::from_utf8_lossy(&after[kept..]).contains("end: bastion crashed"),
        "the end marker follows what was kept"
    );
    // Once: a second pass finds it sealed.
    assert_eq!(
        seal_abandoned(path, &key(), "bastion crashed").unwrap(),
        Recovered::AlreadySealed
    );
}

#[tokio::test]
async fn a_crashed_terminal_recording_is_sealed_with_its_unverified_tail_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    for (id, untagged) in [("t0", 0), ("t3", 3)] {
        let path = terminal_recording(dir.path(), id).await;
        crash(&path, untagged);
        check_sealed_after_crash(&path, untagged);
    }
}

#[tokio::test]
async fn a_crashed_byte_recording_is_sealed_and_a_half_written_frame_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = byte_recording(dir.path(), "b2").await;
    crash(&path, 2);
    // The last frame (the old end marker) was only half written.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(bytes.len() - 5);
    std::fs::write(&path, &bytes).unwrap();
    check_sealed_after_crash(&path, 2);
}

#[tokio::test]
async fn a_torn_tag_line_is_dropped_before_sealing() {
    let dir = tempfile::tempdir().unwrap();
    let path = terminal_recording(dir.path(), "torn").await;
    crash(&path, 2);
    let mut mac = std::fs::read(mac_path(&path)).unwrap();
    mac.extend_from_slice(b"0a1b2c");
    std::fs::write(mac_path(&path), mac).unwrap();
    let recovered = seal_abandoned(&path, &key(), "bastion crashed").unwrap();
    assert!(
        matches!(recovered, Recovered::Sealed { set_aside: 2, .. }),
        "{recovered:?}"
    );
    assert!(verify_file(&path, &key()).unwrap().is_intact());
}

#[tokio::test]
async fn a_recording_changed_while_the_bastion_was_down_is_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = terminal_recording(dir.path(), "changed").await;
    crash(&path, 1);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("line 2", "line X");
    std::fs::write(&path, &text).unwrap();
    let mac = std::fs::read(mac_path(&path)).unwrap();
    let recovered = seal_abandoned(&path, &key(), "bastion crashed").unwrap();
    assert!(
        matches!(recovered, Recovered::Tampered(Verdict::Tampered { .. })),
        "{recovered:?}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    assert_eq!(std::fs::read(mac_path(&path)).unwrap(), mac);
    assert!(!unverified_path(&path).exists());
}
