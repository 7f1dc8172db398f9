//! Byte-faithful recordings of channels without a terminal (exec without a pty, sftp and
//! other subsystems): what `tar`, `pg_dump | gzip`, `rsync --server` or `git upload-pack`
//! sent, exactly, in separate streams.
//!
//! ```text
//! <id>.rec       "portcullis-bytes v1 " + JSON header + "\n", then frames:
//!                  kind u8 | flags u8 | at_us u64 LE | raw_len u32 LE | stored_len u32 LE | stored
//! <id>.rec.hmac  the same integrity file as a .cast: one tag per unit (the header line, then
//!                each frame, header and stored bytes), then `end <seal>`
//! ```
//!
//! * kind: 1 stdout, 2 stderr, 3 stdin, 4 marker (UTF-8 text), 5 resize (`COLSxROWS`).
//! * flags bit 0: `stored` is an LZ4 block of the `raw_len` bytes; otherwise `stored` is
//!   the bytes themselves (random data does not compress: it is stored as it is, so the file
//!   is never more than a frame header larger per frame than the payload).
//! * at_us: microseconds since the recording started.
//!
//! Compression is LZ4's block format, from the pure-Rust `lz4_flex` crate: no C library to
//! build, several GiB/s on zeros (a 1 MiB frame of zeros is stored in about 4 KiB), and it
//! gives up quickly on data that does not compress — which matters more here than the last
//! few percent of ratio, since the recorder runs beside the relay on the same cores.

use std::io::{self, Read};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::asciicast::{EventKind, SessionFacts};

/// The file extension of a framed recording.
pub const EXTENSION: &str = "rec";
/// What the header line starts with (then the JSON header).
pub const MAGIC: &[u8] = b"portcullis-bytes v1 ";
/// Bytes of a frame's header.
pub const FRAME_HEADER: usize = 18;
/// The most raw bytes one frame holds: larger events are split.
pub const FRAME_RAW_MAX: usize = 1024 * 1024;
/// The most stored bytes a reader accepts in one frame (an LZ4 block of
/// [`FRAME_RAW_MAX`] bytes is at most slightly larger): a corrupted length never makes a
/// reader allocate more.
pub const FRAME_STORED_MAX: usize = FRAME_RAW_MAX + FRAME_RAW_MAX / 255 + 64;
/// The longest header line a reader accepts.
const HEADER_MAX: usize = 64 * 1024;
const FLAG_LZ4: u8 = 1;

/// The JSON header of a framed recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FramedHeader {
    /// Always 1.
    pub version: u8,
    /// Unix time the recording started.
    pub timestamp: u64,
    /// How frames may be compressed: `lz4-block`.
    pub compression: String,
    /// Who, what and where: session, user, target, channel (the recording id), command.
    pub portcullis: SessionFacts,
}

impl FramedHeader {
    /// A header for a recording started at `timestamp` (Unix seconds).
    pub fn new(timestamp: u64, facts: SessionFacts) -> Self {
        Self {
            version: 1,
            timestamp,
            compression: "lz4-block".into(),
            portcullis: facts,
        }
    }

    /// The header line, without its newline (the chain's first unit).
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = MAGIC.to_vec();
        // A struct of strings and numbers always serializes.
        line.extend(serde_json::to_vec(self).unwrap_or_default());
        line
    }

    /// Parses a header line (without its newline).
    pub fn from_line(line: &[u8]) -> Option<Self> {
        serde_json::from_slice(line.strip_prefix(MAGIC)?).ok()
    }
}

/// One of a framed recording's streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// What the upstream sent on the channel.
    Stdout,
    /// What the upstream sent as extended data (stderr).
    Stderr,
    /// What the client sent (recorded when input recording is on).
    Stdin,
}

impl Stream {
    /// Its name on the command line and in the API.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::Stdin => "stdin",
        }
    }

    /// The stream called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        [Stream::Stdout, Stream::Stderr, Stream::Stdin]
            .into_iter()
            .find(|s| s.name() == name)
    }
}

/// What a frame holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// Bytes of a stream.
    Data(Stream),
    /// A labelled point in time (the start, a check, the end and why).
    Marker,
    /// A resize (a channel without a terminal has none; kept for completeness).
    Resize,
}

impl FrameKind {
    fn code(self) -> u8 {
        match self {
            FrameKind::Data(Stream::Stdout) => 1,
            FrameKind::Data(Stream::Stderr) => 2,
            FrameKind::Data(Stream::Stdin) => 3,
            FrameKind::Marker => 4,
            FrameKind::Resize => 5,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => FrameKind::Data(Stream::Stdout),
            2 => FrameKind::Data(Stream::Stderr),
            3 => FrameKind::Data(Stream::Stdin),
            4 => FrameKind::Marker,
            5 => FrameKind::Resize,
            _ => return None,
        })
    }

    /// The frame kind a recorder event becomes.
    pub fn of_event(kind: EventKind) -> Self {
        match kind {
            EventKind::Output => FrameKind::Data(Stream::Stdout),
            EventKind::ErrorOutput => FrameKind::Data(Stream::Stderr),
            EventKind::Input => FrameKind::Data(Stream::Stdin),
            EventKind::Marker => FrameKind::Marker,
            EventKind::Resize => FrameKind::Resize,
        }
    }
}

/// Appends a frame of `raw` to `out`: compressed when that makes it smaller.
pub fn encode_frame(kind: FrameKind, at: Duration, raw: &[u8], out: &mut Vec<u8>) {
    debug_assert!(raw.len() <= FRAME_RAW_MAX);
    let start = out.len();
    out.push(kind.code());
    out.push(0);
    out.extend_from_slice(
        &u64::try_from(at.as_micros())
            .unwrap_or(u64::MAX)
            .to_le_bytes(),
    );
    out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    let len_at = out.len();
    out.extend_from_slice(&0u32.to_le_bytes());
    let body = out.len();
    if !worth_compressing(raw) {
        out.extend_from_slice(raw);
        out[len_at..len_at + 4].copy_from_slice(&(raw.len() as u32).to_le_bytes());
        return;
    }
    out.resize(
        body + lz4_flex::block::get_maximum_output_size(raw.len()),
        0,
    );
    let stored = match lz4_flex::block::compress_into(raw, &mut out[body..]) {
        Ok(size) if size < raw.len() => {
            out[start + 1] = FLAG_LZ4;
            size
        }
        _ => {
            out[body..body + raw.len()].copy_from_slice(raw);
            raw.len()
        }
    };
    out.truncate(body + stored);
    out[len_at..len_at + 4].copy_from_slice(&(stored as u32).to_le_bytes());
}

/// Bytes compressed first, as a sample, before a large piece is compressed whole.
const SAMPLE: usize = 4096;

/// Whether compressing `raw` is likely to pay: a large piece whose first 4 KiB does not
/// shrink by a twentieth (random data, or data already compressed: gzip, encrypted
/// backups) is stored as it is without spending the time to find out for all of it.
fn worth_compressing(raw: &[u8]) -> bool {
    if raw.len() < 4 * SAMPLE {
        return true;
    }
    // lz4_flex wants room for its worst case (a tenth more, and a little) to compress into.
    let mut probe = [0u8; 2 * SAMPLE];
    match lz4_flex::block::compress_into(&raw[..SAMPLE], &mut probe) {
        Ok(size) => size * 20 < SAMPLE * 19,
        Err(_) => false,
    }
}

/// A frame read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What it holds.
    pub kind: FrameKind,
    /// When, since the recording started.
    pub at: Duration,
    /// The bytes, decompressed.
    pub data: Vec<u8>,
}

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Shorter than a frame's header.
    #[error("shorter than a frame header")]
    Short,
    /// The frame's kind or flags are not ones this version writes.
    #[error("unknown frame kind {0} or flags")]
    Unknown(u8),
    /// The stored bytes do not decompress to the announced length.
    #[error("the frame does not decompress to its {0} bytes")]
    Corrupt(u32),
}

/// Decodes one complete frame (a unit from [`UnitReader`]).
pub fn decode_frame(unit: &[u8]) -> Result<Frame, FrameError> {
    if unit.len() < FRAME_HEADER {
        return Err(FrameError::Short);
    }
    let (head, stored) = unit.split_at(FRAME_HEADER);
    let word = |at: usize| u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    let kind = FrameKind::from_code(head[0]).ok_or(FrameError::Unknown(head[0]))?;
    let mut at = [0u8; 8];
    at.copy_from_slice(&head[2..10]);
    let raw_len = word(10);
    if raw_len as usize > FRAME_RAW_MAX || word(14) as usize != stored.len() {
        return Err(FrameError::Corrupt(raw_len));
    }
    let data = match head[1] {
        0 if stored.len() == raw_len as usize => stored.to_vec(),
        FLAG_LZ4 => {
            let mut data = vec![0; raw_len as usize];
            match lz4_flex::block::decompress_into(stored, &mut data) {
                Ok(n) if n == data.len() => data,
                _ => return Err(FrameError::Corrupt(raw_len)),
            }
        }
        0 => return Err(FrameError::Corrupt(raw_len)),
        _ => return Err(FrameError::Unknown(head[0])),
    };
    Ok(Frame {
        kind,
        at: Duration::from_micros(u64::from_le_bytes(at)),
        data,
    })
}

/// Reads a framed recording unit by unit — the header line, then each frame whole — in
/// bounded memory, whatever the file holds.
pub struct UnitReader<R> {
    reader: R,
    header_read: bool,
}

/// What [`UnitReader::next_unit`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Unit {
    /// A complete unit.
    Whole(Vec<u8>),
    /// The file ends inside a unit (an interrupted write, or a cut), or a frame announces a
    /// size no writer makes: nothing after this can be read as units.
    Fragment,
    /// The file ends cleanly.
    End,
}

impl<R: Read> UnitReader<R> {
    /// Reads from the file's beginning.
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            header_read: false,
        }
    }

    /// The next unit.
    pub fn next_unit(&mut self) -> io::Result<Unit> {
        if !self.header_read {
            self.header_read = true;
            return self.header_line();
        }
        let mut head = [0u8; FRAME_HEADER];
        let got = read_full(&mut self.reader, &mut head)?;
        if got == 0 {
            return Ok(Unit::End);
        }
        if got < FRAME_HEADER {
            return Ok(Unit::Fragment);
        }
        let stored = u32::from_le_bytes([head[14], head[15], head[16], head[17]]) as usize;
        if stored > FRAME_STORED_MAX {
            return Ok(Unit::Fragment);
        }
        let mut unit = Vec::with_capacity(FRAME_HEADER + stored);
        unit.extend_from_slice(&head);
        unit.resize(FRAME_HEADER + stored, 0);
        if read_full(&mut self.reader, &mut unit[FRAME_HEADER..])? < stored {
            return Ok(Unit::Fragment);
        }
        Ok(Unit::Whole(unit))
    }

    fn header_line(&mut self) -> io::Result<Unit> {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            if self.reader.read(&mut byte)? == 0 {
                return Ok(if line.is_empty() {
                    Unit::End
                } else {
                    Unit::Fragment
                });
            }
            if byte[0] == b'\n' {
                return Ok(Unit::Whole(line));
            }
            if line.len() >= HEADER_MAX {
                return Ok(Unit::Fragment);
            }
            line.push(byte[0]);
        }
    }
}

/// Reads until `buf` is full or the input ends; returns how much was read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn units(file: &[u8]) -> Vec<Unit> {
        let mut reader = UnitReader::new(file);
        let mut all = Vec::new();
        loop {
            let unit = reader.next_unit().unwrap();
            let last = !matches!(unit, Unit::Whole(_));
            all.push(unit);
            if last {
                return all;
            }
        }
    }

    #[test]
    fn frames_round_trip_compressed_or_not() {
        let random: Vec<u8> = (0..100_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let zeros = vec![0u8; FRAME_RAW_MAX];
        for (kind, raw) in [
            (FrameKind::Data(Stream::Stdout), &random[..]),
            (FrameKind::Data(Stream::Stderr), &zeros[..]),
            (FrameKind::Marker, &b"end: client closed"[..]),
            (FrameKind::Data(Stream::Stdin), &b""[..]),
        ] {
            let mut out = Vec::new();
            encode_frame(kind, Duration::from_micros(1_500_000), raw, &mut out);
            assert!(out.len() <= FRAME_HEADER + raw.len(), "{kind:?} grew");
            let frame = decode_frame(&out).unwrap();
            assert_eq!(frame.kind, kind);
            assert_eq!(frame.at, Duration::from_micros(1_500_000));
            assert_eq!(frame.data, raw);
        }
        // A MiB of zeros is stored in well under 1% of it.
        let mut out = Vec::new();
        encode_frame(
            FrameKind::Data(Stream::Stdout),
            Duration::ZERO,
            &zeros,
            &mut out,
        );
        assert!(out.len() < FRAME_RAW_MAX / 100, "{}", out.len());
    }

    #[test]
    fn only_what_shrinks_in_a_sample_is_compressed() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let random: Vec<u8> = (0..64 * 1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        assert!(!worth_compressing(&random));
        assert!(worth_compressing(&vec![0u8; 64 * 1024]));
        assert!(
            worth_compressing(&random[..100]),
            "small pieces are simply tried"
        );
        let mut out = Vec::new();
        encode_frame(
            FrameKind::Data(Stream::Stdout),
            Duration::ZERO,
            &random,
            &mut out,
        );
        assert_eq!(out[1], 0, "stored as it is");
        assert_eq!(decode_frame(&out).unwrap().data, random);
    }

    #[test]
    fn a_file_is_read_unit_by_unit_and_cuts_are_fragments() {
        let header = FramedHeader::new(1, SessionFacts::default());
        let mut file = header.to_line();
        file.push(b'\n');
        let mut frame = Vec::new();
        encode_frame(
            FrameKind::Data(Stream::Stdout),
            Duration::ZERO,
            b"hello",
            &mut frame,
        );
        file.extend_from_slice(&frame);
        let all = units(&file);
        assert_eq!(all.len(), 3);
        assert_eq!(all[0], Unit::Whole(header.to_line()));
        assert_eq!(FramedHeader::from_line(&header.to_line()), Some(header));
        assert_eq!(all[1], Unit::Whole(frame.clone()));
        assert_eq!(all[2], Unit::End);
        for cut in [file.len() - 1, file.len() - frame.len() + 3] {
            assert_eq!(units(&file[..cut]).last(), Some(&Unit::Fragment));
        }
        // A length no writer makes is not believed (nor allocated).
        let mut huge = file.clone();
        let at = file.len() - frame.len() + 14;
        huge[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(units(&huge).last(), Some(&Unit::Fragment));
    }

    #[test]
    fn damaged_frames_are_errors_not_panics() {
        let mut frame = Vec::new();
        encode_frame(
            FrameKind::Data(Stream::Stdout),
            Duration::ZERO,
            &[7u8; 4096],
            &mut frame,
        );
        assert!(frame[1] == FLAG_LZ4);
        let mut bad = frame.clone();
        bad[0] = 99;
        assert_eq!(decode_frame(&bad), Err(FrameError::Unknown(99)));
        let mut bad = frame.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        bad.truncate(last - 2);
        assert!(decode_frame(&bad).is_err());
        assert!(decode_frame(&frame[..5]).is_err());
        assert!(decode_frame(&[]).is_err());
    }
}
