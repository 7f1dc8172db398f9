//! A recording written through the public API reads back, verifies, and shows every kind of
//! tampering.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use portcullis_recorder::asciicast::{EventKind, decode_event};
use portcullis_recorder::writer::mac_path;
use portcullis_recorder::{
    ChainKey, Header, RecordingOptions, SessionFacts, Verdict, start, verify_file,
};

fn header(id: &str) -> Header {
    Header {
        version: 2,
        width: 100,
        height: 30,
        timestamp: 1_700_000_000,
        title: Some("alice → web01".into()),
        env: BTreeMap::from([("TERM".into(), "xterm-256color".into())]),
        portcullis: Some(SessionFacts {
            recording: id.into(),
            session: "s1".into(),
            user: "alice".into(),
            target: "web01".into(),
            login: "deploy".into(),
            kind: "shell".into(),
            command: None,
            client: "127.0.0.1:5000".into(),
        }),
    }
}

fn key() -> ChainKey {
    ChainKey::derive(b"test data key", "recordings")
}

async fn record_sample(dir: &Path, id: &str) -> PathBuf {
    let handle = start(dir, id, &header(id), &key(), RecordingOptions::default()).unwrap();
    handle.marker("start: alice → deploy@web01").await.unwrap();
    let snowman = "☃".as_bytes();
    handle.output(Bytes::from_static(b"$ ")).await.unwrap();
    handle.input(Bytes::from_static(b"ls\r")).await.unwrap();
    handle
        .output(Bytes::copy_from_slice(&snowman[..1]))
        .await
        .unwrap();
    handle
        .output(Bytes::copy_from_slice(&snowman[1..]))
        .await
        .unwrap();
    handle.resize(120, 40).await.unwrap();
    let summary = handle.finish("exit status 0").await.unwrap();
    assert_eq!(summary.output_bytes, 2 + 3);
    assert_eq!(summary.input_bytes, 3);
    assert!(
        handle.finish("again").await.is_err(),
        "only the first finish counts"
    );
    summary.path
}

#[tokio::test]
async fn a_recording_reads_back_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = record_sample(dir.path(), "rec-1").await;
    assert!(matches!(
        verify_file(&path, &key()).unwrap(),
        Verdict::Intact { lines: 7, seal } if seal.len() == 64
    ));

    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines = text.lines();
    let header: Header = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header.width, 100);
    let events: Vec<_> = lines.map(|l| decode_event(l).unwrap()).collect();
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    use EventKind::*;
    assert_eq!(kinds, [Marker, Output, Input, Output, Resize, Marker]);
    assert_eq!(
        events[3].data, "☃",
        "a character split across chunks is whole"
    );
    assert_eq!(events[4].data, "120x40");
    assert_eq!(events[5].data, "end: exit status 0");
    assert!(events.windows(2).all(|w| w[0].time <= w[1].time));
}

#[tokio::test]
async fn a_wrong_key_does_not_verify() {
    let dir = tempfile::tempdir().unwrap();
    let path = record_sample(dir.path(), "rec-k").await;
    let verdict = verify_file(&path, &ChainKey::derive(b"another key", "recordings")).unwrap();
    assert!(
        matches!(verdict, Verdict::Tampered { line: 1, .. }),
        "{verdict}"
    );
}

fn rewrite(path: &Path, edit: impl FnOnce(&mut Vec<String>)) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    edit(&mut lines);
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[tokio::test]
async fn every_kind_of_edit_is_detected() {
    type Edit = fn(&mut Vec<String>);
    let edits: [(&str, Edit, Option<usize>); 5] = [
        (
            "changed output",
            |l| l[2] = l[2].replace("$ ", "# "),
            Some(3),
        ),
        (
            "removed line",
            |l| {
                l.remove(3);
            },
            Some(4),
        ),
        ("swapped lines", |l| l.swap(2, 3), Some(3)),
        (
            "cut off the end",
            |l| {
                l.truncate(4);
            },
            None,
        ),
        (
            "appended line",
            |l| l.push(r#"[9.0,"o","echo appended"]"#.into()),
            None,
        ),
    ];
    for (name, edit, line) in edits {
        let dir = tempfile::tempdir().unwrap();
        let path = record_sample(dir.path(), "rec-t").await;
        rewrite(&path, edit);
        let verdict = verify_file(&path, &key()).unwrap();
        match (&verdict, line) {
            (Verdict::Tampered { line: found, .. }, Some(expected)) => {
                assert_eq!(*found, expected, "{name}: {verdict}")
            }
            (Verdict::Tampered { .. }, None) => {}
            _ => panic!("{name}: not detected: {verdict}"),
        }
    }
}

#[tokio::test]
async fn cutting_both_files_is_detected_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = record_sample(dir.path(), "rec-c").await;
    rewrite(&path, |l| l.truncate(4));
    rewrite(&mac_path(&path), |l| l.truncate(5)); // magic + 4 tags, no end line
    let verdict = verify_file(&path, &key()).unwrap();
    assert!(
        matches!(
            verdict,
            Verdict::Unfinalized {
                verified_lines: 4,
                unverified_lines: 0
            }
        ),
        "a cut recording is never reported intact: {verdict}"
    );
    assert!(!verdict.is_intact());
}

#[tokio::test]
async fn a_missing_integrity_file_is_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let path = record_sample(dir.path(), "rec-m").await;
    std::fs::remove_file(mac_path(&path)).unwrap();
    assert!(matches!(
        verify_file(&path, &key()).unwrap(),
        Verdict::Tampered { line: 0, .. }
    ));
}

#[tokio::test]
async fn data_reaches_the_disk_within_the_flush_interval() {
    let dir = tempfile::tempdir().unwrap();
    let options = RecordingOptions {
        flush_interval: Duration::from_millis(50),
        ..Default::default()
    };
    let handle = start(dir.path(), "live", &header("live"), &key(), options).unwrap();
    handle
        .output(Bytes::from_static(b"still running"))
        .await
        .unwrap();
    // Nothing asks for a flush but the interval: wait (generously) for the line and the tag
    // that covers it to land.
    let flushed = Verdict::Unfinalized {
        verified_lines: 2,
        unverified_lines: 0,
    };
    let mut verdict = verify_file(handle.path(), &key()).unwrap();
    for _ in 0..500 {
        if verdict == flushed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        verdict = verify_file(handle.path(), &key()).unwrap();
    }
    // As if the broker died now: the files on disk are consistent and authentic so far.
    assert_eq!(verdict, flushed);
    let on_disk = std::fs::read_to_string(handle.path()).unwrap();
    assert!(on_disk.contains("still running"), "{on_disk}");

    handle.finish("done").await.unwrap();
    assert!(verify_file(handle.path(), &key()).unwrap().is_intact());
}

#[tokio::test]
async fn dropping_every_handle_still_seals_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let handle = start(
        dir.path(),
        "dropped",
        &header("dropped"),
        &key(),
        RecordingOptions::default(),
    )
    .unwrap();
    let path = handle.path().to_owned();
    handle.output(Bytes::from_static(b"x")).await.unwrap();
    drop(handle);
    for _ in 0..100 {
        if std::fs::read_to_string(mac_path(&path))
            .unwrap()
            .contains("end ")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(verify_file(&path, &key()).unwrap().is_intact());
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("end: recording closed")
    );
}

#[tokio::test]
async fn bulk_output_is_merged_into_few_events() {
    let dir = tempfile::tempdir().unwrap();
    let handle = start(
        dir.path(),
        "bulk",
        &header("bulk"),
        &key(),
        RecordingOptions::default(),
    )
    .unwrap();
    let chunk = Bytes::from(vec![b'x'; 32 * 1024]);
    for _ in 0..256 {
        handle.output(chunk.clone()).await.unwrap();
    }
    let summary = handle.finish("done").await.unwrap();
    assert_eq!(summary.output_bytes, 8 * 1024 * 1024);
    assert!(
        summary.lines < 256,
        "expected merging, got {} lines",
        summary.lines
    );
    assert!(verify_file(&summary.path, &key()).unwrap().is_intact());
}

#[tokio::test]
async fn an_existing_file_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    record_sample(dir.path(), "same").await;
    assert!(
        start(
            dir.path(),
            "same",
            &header("same"),
            &key(),
            RecordingOptions::default()
        )
        .is_err()
    );
}

#[tokio::test]
async fn batched_output_is_one_event_and_times_never_go_back() {
    use portcullis_recorder::OutputBatch;
    let dir = tempfile::tempdir().unwrap();
    let handle = start(
        dir.path(),
        "batched",
        &header("batched"),
        &key(),
        RecordingOptions::default(),
    )
    .unwrap();
    let mut batch = OutputBatch::default();
    for part in ["one ", "two ", "three"] {
        handle
            .buffer_output(&mut batch, Bytes::from(part))
            .await
            .unwrap();
    }
    assert!(!batch.is_empty());
    // Input stamped later reaches the writer before the earlier-stamped batch.
    tokio::time::sleep(Duration::from_millis(30)).await;
    handle.input(Bytes::from_static(b"x")).await.unwrap();
    handle.flush_output(&mut batch).await.unwrap();
    assert!(batch.is_empty());
    let summary = handle.finish("done").await.unwrap();
    let text = std::fs::read_to_string(&summary.path).unwrap();
    let events: Vec<_> = text
        .lines()
        .skip(1)
        .map(|l| decode_event(l).unwrap())
        .collect();
    assert_eq!(events[0].kind, EventKind::Input);
    assert_eq!(events[1].kind, EventKind::Output);
    assert_eq!(events[1].data, "one two three");
    assert!(
        events.windows(2).all(|w| w[0].time <= w[1].time),
        "{events:?}"
    );
}

#[tokio::test]
async fn an_old_batch_is_handed_over_at_the_next_chunk() {
    use portcullis_recorder::OutputBatch;
    let dir = tempfile::tempdir().unwrap();
    let handle = start(
        dir.path(),
        "aged",
        &header("aged"),
        &key(),
        RecordingOptions::default(),
    )
    .unwrap();
    let mut batch = OutputBatch::default();
    handle
        .buffer_output(&mut batch, Bytes::from_static(b"first "))
        .await
        .unwrap();
    handle
        .buffer_output(&mut batch, Bytes::from_static(b"second "))
        .await
        .unwrap();
    assert!(!batch.is_empty(), "small and young: kept");
    tokio::time::sleep(portcullis_recorder::writer::BATCH_MAX_AGE + Duration::from_millis(50))
        .await;
    handle
        .buffer_output(&mut batch, Bytes::from_static(b"third"))
        .await
        .unwrap();
    assert!(
        batch.is_empty(),
        "an old batch goes to the writer with the next chunk"
    );
    let summary = handle.finish("done").await.unwrap();
    assert!(
        std::fs::read_to_string(&summary.path)
            .unwrap()
            .contains("first second third")
    );
}

#[tokio::test]
async fn a_watcher_gets_what_is_on_disk_then_every_later_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let handle = start(
        dir.path(),
        "watched",
        &header("watched"),
        &key(),
        RecordingOptions::default(),
    )
    .unwrap();
    handle
        .output(Bytes::from_static(b"before-watch"))
        .await
        .unwrap();
    let mut subscription = handle.subscribe().await.unwrap();
    let on_disk: Vec<String> = std::fs::read_to_string(&subscription.path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(on_disk.len() as u64, subscription.lines_on_disk);
    assert!(on_disk.last().unwrap().contains("before-watch"));

    handle
        .output(Bytes::from_static(b"after-watch"))
        .await
        .unwrap();
    handle.finish("done").await.unwrap();
    let mut live = Vec::new();
    while let Ok(line) = subscription.live.recv().await {
        live.push(line.to_string());
    }
    assert_eq!(live.len(), 2, "{live:?}");
    assert!(live[0].contains("after-watch"));
    assert!(live[1].contains("end: done"));
    // Together they are exactly the file.
    let whole: Vec<String> = std::fs::read_to_string(&subscription.path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!([on_disk, live].concat(), whole);
}

#[tokio::test]
async fn a_genuine_recording_copied_over_another_is_caught_by_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let first = record_sample(dir.path(), "rec-a").await;
    let second = record_sample(dir.path(), "rec-b").await;
    // rec-b's pair put where rec-a's was: every line and the seal are genuine.
    std::fs::copy(&second, &first).unwrap();
    std::fs::copy(mac_path(&second), mac_path(&first)).unwrap();
    let verdict = verify_file(&first, &key()).unwrap();
    assert!(
        matches!(&verdict, Verdict::Tampered { line: 0, reason } if reason.contains("hold recording rec-b, not rec-a")),
        "{verdict}"
    );
    assert!(verify_file(&second, &key()).unwrap().is_intact());
}
