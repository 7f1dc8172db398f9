//! A framed recording (a channel without a terminal) keeps every stream's exact bytes,
//! compactly, and shows every kind of tampering; `extract` gives the bytes back only from
//! what verifies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use bytes::Bytes;
use portcullis_recorder::extract::{ExtractError, extract};
use portcullis_recorder::framed::{FramedHeader, Stream, Unit, UnitReader};
use portcullis_recorder::writer::mac_path;
use portcullis_recorder::{
    ChainKey, RecordingOptions, SessionFacts, Verdict, start_framed, verify_file,
};

fn key() -> ChainKey {
    ChainKey::derive(b"test data key", "recordings")
}

fn header(id: &str) -> FramedHeader {
    FramedHeader::new(
        1_700_000_000,
        SessionFacts {
            recording: id.into(),
            session: "s1".into(),
            user: "alice".into(),
            target: "web01".into(),
            login: "deploy".into(),
            kind: "exec".into(),
            command: Some("tar cf - /srv".into()),
            client: "127.0.0.1:5000".into(),
        },
    )
}

/// Bytes that do not compress (a xorshift stream).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

struct Sample {
    path: PathBuf,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    stdin: Vec<u8>,
}

/// A recording of stdout sent in chunks of odd sizes, with stderr and stdin between.
async fn record(dir: &Path, id: &str, stdout: Vec<u8>) -> Sample {
    let handle = start_framed(dir, id, &header(id), &key(), RecordingOptions::default()).unwrap();
    handle.marker("start: exec").await.unwrap();
    let stdin = b"password-less input\x00\xff\n".to_vec();
    handle.input(Bytes::from(stdin.clone())).await.unwrap();
    let mut stderr = Vec::new();
    for (i, chunk) in stdout.chunks(32_771).enumerate() {
        handle.output(Bytes::copy_from_slice(chunk)).await.unwrap();
        if i % 16 == 0 {
            let line = format!("tar: warning {i}\n").into_bytes();
            stderr.extend_from_slice(&line);
            handle.error_output(Bytes::from(line)).await.unwrap();
        }
    }
    let summary = handle.finish("exit status 0").await.unwrap();
    assert_eq!(summary.output_bytes, (stdout.len() + stderr.len()) as u64);
    assert_eq!(summary.input_bytes, stdin.len() as u64);
    Sample {
        path: summary.path,
        stdout,
        stderr,
        stdin,
    }
}

fn cat(path: &Path, stream: Stream, force: bool) -> Result<(Vec<u8>, u64), ExtractError> {
    let mut out = Vec::new();
    let extracted = extract(path, &key(), stream, force, &mut out)?;
    assert_eq!(extracted.bytes, out.len() as u64);
    Ok((out, extracted.bytes))
}

#[tokio::test]
async fn every_stream_comes_back_exactly_and_random_bytes_take_no_more_room() {
    let dir = tempfile::tempdir().unwrap();
    let sample = record(dir.path(), "rec-1", noise(3 << 20, 7)).await;
    assert!(sample.path.to_string_lossy().ends_with("rec-1.rec"));
    let verdict = verify_file(&sample.path, &key()).unwrap();
    assert!(verdict.is_intact(), "{verdict}");
    for (stream, expected) in [
        (Stream::Stdout, &sample.stdout),
        (Stream::Stderr, &sample.stderr),
        (Stream::Stdin, &sample.stdin),
    ] {
        let (bytes, _) = cat(&sample.path, stream, false).unwrap();
        assert!(&bytes == expected, "{stream:?} differs");
    }
    let size = std::fs::metadata(&sample.path).unwrap().len();
    let payload = (sample.stdout.len() + sample.stderr.len()) as f64;
    assert!(size as f64 <= payload * 1.01, "{size} bytes for {payload}");
    // The header names who, what and where.
    let mut units = UnitReader::new(std::fs::File::open(&sample.path).unwrap());
    let Unit::Whole(first) = units.next_unit().unwrap() else {
        panic!("no header")
    };
    let header = FramedHeader::from_line(&first).unwrap();
    assert_eq!(header.portcullis.command.as_deref(), Some("tar cf - /srv"));
    assert_eq!(header.compression, "lz4-block");
}

#[tokio::test]
async fn zeros_take_almost_no_room() {
    let dir = tempfile::tempdir().unwrap();
    let sample = record(dir.path(), "rec-z", vec![0u8; 32 << 20]).await;
    let size = std::fs::metadata(&sample.path).unwrap().len();
    assert!(size < (32 << 20) / 100, "{size} bytes for 32 MiB of zeros");
    let (bytes, _) = cat(&sample.path, Stream::Stdout, false).unwrap();
    assert!(bytes == sample.stdout);
}

/// The byte offsets of the units (header line, then frames) of a framed file.
fn unit_offsets(file: &[u8]) -> Vec<(usize, usize)> {
    let mut reader = UnitReader::new(file);
    let mut offsets = Vec::new();
    let mut at = 0;
    while let Unit::Whole(unit) = reader.next_unit().unwrap() {
        let len = unit.len() + usize::from(offsets.is_empty());
        offsets.push((at, len));
        at += len;
    }
    offsets
}

#[tokio::test]
async fn every_kind_of_edit_is_detected_and_extract_stops_where_it_begins() {
    type Edit = fn(&mut Vec<u8>, &[(usize, usize)]);
    let edits: [(&str, Edit, Option<usize>); 6] = [
        (
            "a flipped byte in frame 3",
            |f, u| f[u[3].0 + 20] ^= 1,
            Some(4),
        ),
        (
            "frame 2 removed",
            |f, u| {
                f.drain(u[2].0..u[2].0 + u[2].1);
            },
            Some(3),
        ),
        (
            "frames 2 and 3 swapped",
            |f, u| {
                let (a, b) = (u[2], u[3]);
                let two = f[a.0..a.0 + a.1].to_vec();
                let three = f[b.0..b.0 + b.1].to_vec();
                f.splice(a.0..b.0 + b.1, three.into_iter().chain(two));
            },
            Some(3),
        ),
        (
            "frame 1 repeated",
            |f, u| {
                let one = f[u[1].0..u[1].0 + u[1].1].to_vec();
                f.splice(u[2].0..u[2].0, one);
            },
            Some(3),
        ),
        (
            "the last frames cut off",
            |f, u| f.truncate(u[u.len() - 2].0),
            None,
        ),
        ("cut inside a frame", |f, u| f.truncate(u[4].0 + 7), None),
    ];
    for (name, edit, unit) in edits {
        let dir = tempfile::tempdir().unwrap();
        let sample = record(dir.path(), "rec-e", noise(1 << 20, 3)).await;
        let mut file = std::fs::read(&sample.path).unwrap();
        let units = unit_offsets(&file);
        edit(&mut file, &units);
        std::fs::write(&sample.path, &file).unwrap();
        let verdict = verify_file(&sample.path, &key()).unwrap();
        match (&verdict, unit) {
            (Verdict::Tampered { line, .. }, Some(unit)) => {
                assert_eq!(*line, unit, "{name}: {verdict}")
            }
            (Verdict::Tampered { .. }, None) => {}
            _ => panic!("{name}: not detected: {verdict}"),
        }
        // Refused as it is; with force, only what comes before the damage.
        assert!(
            matches!(
                cat(&sample.path, Stream::Stdout, false),
                Err(ExtractError::NotIntact(_))
            ),
            "{name}"
        );
        let (bytes, _) = cat(&sample.path, Stream::Stdout, true).unwrap();
        assert!(bytes.len() < sample.stdout.len(), "{name}");
        assert!(
            sample.stdout.starts_with(&bytes),
            "{name}: forced output is not a prefix"
        );
    }
}

#[tokio::test]
async fn a_recording_cut_off_by_a_crash_is_unfinalized_and_its_verified_part_extracts() {
    let dir = tempfile::tempdir().unwrap();
    let sample = record(dir.path(), "rec-c", noise(1 << 20, 5)).await;
    // As if the bastion died: the seal never written, the last frame half on disk.
    let mac = std::fs::read_to_string(mac_path(&sample.path)).unwrap();
    let unsealed: String = mac
        .lines()
        .filter(|l| !l.starts_with("end "))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut tags: Vec<&str> = unsealed.lines().collect();
    tags.pop();
    std::fs::write(mac_path(&sample.path), tags.join("\n") + "\n").unwrap();
    let mut file = std::fs::read(&sample.path).unwrap();
    let units = unit_offsets(&file);
    let last = units[units.len() - 1];
    file.truncate(last.0 + last.1 / 2);
    std::fs::write(&sample.path, &file).unwrap();
    let verdict = verify_file(&sample.path, &key()).unwrap();
    assert!(
        matches!(
            verdict,
            Verdict::Unfinalized {
                unverified_lines: 1,
                ..
            }
        ),
        "{verdict}"
    );
    let (bytes, _) = cat(&sample.path, Stream::Stdout, true).unwrap();
    assert!(
        bytes == sample.stdout,
        "every data frame was before the cut"
    );
}

#[tokio::test]
async fn a_terminal_recording_has_no_streams_to_extract() {
    let dir = tempfile::tempdir().unwrap();
    let cast = dir.path().join("x.cast");
    std::fs::write(&cast, b"{}\n").unwrap();
    assert!(matches!(
        cat(&cast, Stream::Stdout, true),
        Err(ExtractError::NotFramed(_))
    ));
}
