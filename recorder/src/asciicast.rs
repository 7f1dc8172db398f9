//! asciicast v2: a JSON header line, then one JSON array per event:
//! `[seconds, "o" | "i" | "r" | "m", data]`.
//!
//! `asciinema play` and the asciinema web player read these files. Terminal output arrives
//! in arbitrary byte chunks that may split a UTF-8 character; [`Utf8Carry`] holds the
//! incomplete tail until the next chunk so no character is mangled at a chunk boundary.

use std::collections::BTreeMap;
use std::io::Write;

use serde::{Deserialize, Serialize};

/// The first line of a recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Always 2.
    pub version: u8,
    /// Terminal columns at the start.
    pub width: u32,
    /// Terminal rows at the start.
    pub height: u32,
    /// Unix time the recording started.
    pub timestamp: u64,
    /// Human title: who reached what.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub title: Option<String>,
    /// Captured environment (TERM, SHELL).
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub env: BTreeMap<String, String>,
    /// portcullis' own facts about the session; players ignore unknown header keys.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub portcullis: Option<SessionFacts>,
}

/// Who, what and where, stored in the header so a recording explains itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SessionFacts {
    /// The recording's id (also the file stem); the integrity chain is bound to it.
    pub recording: String,
    /// The broker session the channel belongs to.
    pub session: String,
    /// Who logged in to the bastion.
    pub user: String,
    /// The target name.
    pub target: String,
    /// The upstream account.
    pub login: String,
    /// `shell`, `exec` or `subsystem`.
    pub kind: String,
    /// The exec command line, when there is one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub command: Option<String>,
    /// The client's address.
    pub client: String,
}

/// The four event types of asciicast v2, and standard error, which a framed recording keeps
/// apart (a terminal merges it into its output, and so does asciicast).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Terminal output ("o"), or a channel's standard output.
    Output,
    /// A channel's standard error (extended data); "o" in asciicast.
    ErrorOutput,
    /// Keyboard input ("i").
    Input,
    /// Terminal resize ("r", data `COLSxROWS`).
    Resize,
    /// A marker ("m", data is a label).
    Marker,
}

impl EventKind {
    /// The one-letter code used in files.
    pub fn code(self) -> &'static str {
        match self {
            EventKind::Output | EventKind::ErrorOutput => "o",
            EventKind::Input => "i",
            EventKind::Resize => "r",
            EventKind::Marker => "m",
        }
    }

    /// The kind for a code, if it is one of the four (never [`EventKind::ErrorOutput`]).
    pub fn from_code(code: &str) -> Option<Self> {
        Some(match code {
            "o" => EventKind::Output,
            "i" => EventKind::Input,
            "r" => EventKind::Resize,
            "m" => EventKind::Marker,
            _ => return None,
        })
    }
}

/// Writes one event line (without the newline) into `out`.
pub fn encode_event(seconds: f64, kind: EventKind, data: &str, out: &mut Vec<u8>) {
    begin_event(seconds, kind, out);
    push_json_str(out, data);
    end_event(out);
}

/// Starts an event line: `[seconds,"o","` (the data string is left open).
pub fn begin_event(seconds: f64, kind: EventKind, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail.
    let _ = write!(out, "[{seconds:.6},\"{}\",\"", kind.code());
}

/// Closes what [`begin_event`] opened.
pub fn end_event(out: &mut Vec<u8>) {
    out.extend_from_slice(b"\"]");
}

/// Appends `text` JSON-escaped (without quotes). Runs of bytes that need no escaping, which
/// is nearly all terminal output, are scanned eight bytes at a time and copied whole; this
/// is several times faster than a general serializer and sits on the path of every byte a
/// session shows.
pub fn push_json_str(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    let mut start = 0;
    let mut i = 0;
    loop {
        // Jump to the next byte that needs escaping, a word at a time.
        while let Some(word) = bytes.get(i..i + 8) {
            let mut array = [0u8; 8];
            array.copy_from_slice(word);
            let hits = escape_mask(u64::from_le_bytes(array));
            if hits != 0 {
                i += (hits.trailing_zeros() / 8) as usize;
                break;
            }
            i += 8;
        }
        // Within the last few bytes, go one at a time.
        while i < bytes.len() && !needs_escape(bytes[i]) && bytes.len() - i < 8 {
            i += 1;
        }
        let Some(&byte) = bytes.get(i) else {
            break;
        };
        if !needs_escape(byte) {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                let _ = write!(out, "\\u{byte:04x}");
            }
        }
        i += 1;
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Whether a byte must be escaped in a JSON string: control characters, `"` and `\\`.
fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// The high bit of each byte of `word` (little-endian) that needs escaping. SWAR: the
/// classic "has a zero byte" and "has a byte below n" tricks; they may flag extra bytes
/// only *after* a real hit (borrows run upwards), so the lowest flag is always exact.
fn escape_mask(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    let quote = zero_byte(word ^ (ONES * u64::from(b'"')));
    let backslash = zero_byte(word ^ (ONES * u64::from(b'\\')));
    below_space | quote | backslash
}

/// One parsed event line.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Seconds since the start of the recording.
    pub time: f64,
    /// Event type.
    pub kind: EventKind,
    /// Payload.
    pub data: String,
}

/// Parses an event line; `None` if it is not a v2 event of a known type.
pub fn decode_event(line: &str) -> Option<Event> {
    let (time, code, data): (f64, String, String) = serde_json::from_str(line).ok()?;
    Some(Event {
        time,
        kind: EventKind::from_code(&code)?,
        data,
    })
}

/// Turns byte chunks into text without splitting characters across chunks. Invalid bytes
/// become U+FFFD, as in any terminal.
#[derive(Debug, Default)]
pub struct Utf8Carry {
    pending: Vec<u8>,
}

impl Utf8Carry {
    /// Text for this chunk; an incomplete character at its end waits for the next chunk.
    pub fn feed(&mut self, chunk: &[u8]) -> String {
        let mut out = String::with_capacity(chunk.len());
        self.feed_into(chunk, |text| out.push_str(text));
        out
    }

    /// Like [`Utf8Carry::feed`], handing the text to `sink` piece by piece without copying it.
    pub fn feed_into(&mut self, mut chunk: &[u8], mut sink: impl FnMut(&str)) {
        if let Some(&lead) = self.pending.first() {
            // Finish the character left over from the last chunk.
            let width = utf8_width(lead).max(self.pending.len() + 1);
            let take = (width - self.pending.len()).min(chunk.len());
            self.pending.extend_from_slice(&chunk[..take]);
            if self.pending.len() < width {
                return;
            }
            match std::str::from_utf8(&self.pending) {
                Ok(text) => {
                    sink(text);
                    chunk = &chunk[take..];
                }
                // A broken sequence: one replacement, and the new bytes are read afresh.
                Err(_) => sink("\u{FFFD}"),
            }
            self.pending.clear();
        }
        loop {
            match std::str::from_utf8(chunk) {
                Ok(text) => {
                    if !text.is_empty() {
                        sink(text);
                    }
                    return;
                }
                Err(error) => {
                    let (valid, after) = chunk.split_at(error.valid_up_to());
                    if let Ok(text) = std::str::from_utf8(valid)
                        && !text.is_empty()
                    {
                        sink(text);
                    }
                    match error.error_len() {
                        None => {
                            self.pending = after.to_vec();
                            return;
                        }
                        Some(len) => {
                            sink("\u{FFFD}");
                            chunk = &after[len..];
                        }
                    }
                }
            }
        }
    }

    /// Whether a partial character is being held.
    pub fn is_holding(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Whatever is still held, as text (at the end of a recording).
    pub fn flush(&mut self) -> String {
        let pending = std::mem::take(&mut self.pending);
        String::from_utf8_lossy(&pending).into_owned()
    }
}

/// Bytes in the UTF-8 sequence a lead byte starts (1 for bytes that cannot lead one, so
/// they are replaced on their own).
fn utf8_width(lead: u8) -> usize {
    match lead {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_escaper_agrees_with_serde_json() {
        let mut samples: Vec<String> = vec![
            String::new(),
            "plain".into(),
            "quote \" backslash \\ tab \t cr \r lf \n".into(),
            "\u{1b}[1;31mred\u{1b}[0m \u{7f} \u{0} \u{8} \u{c} é ☃ 🚀".into(),
        ];
        samples.push((0u8..128).map(char::from).collect());
        // Every position within a word, for every byte that needs escaping.
        for special in ['"', '\\', '\n', '\u{1}', '\u{1f}'] {
            for at in 0..17 {
                let mut text: String = "abcdefghijklmnopq".into();
                text.insert(at, special);
                samples.push(text);
            }
        }
        for sample in samples {
            let mut ours = Vec::new();
            push_json_str(&mut ours, &sample);
            let quoted = format!("\"{}\"", String::from_utf8(ours).unwrap());
            let back: String = serde_json::from_str(&quoted).unwrap();
            assert_eq!(back, sample);
        }
    }

    #[test]
    fn feeding_any_bytes_in_any_split_never_panics_and_matches_lossy_for_valid_text() {
        let valid = "aé☃🚀z".as_bytes();
        let invalid = [0xffu8, 0xc3, 0x28, 0xe2, 0x82, 0xf0, 0x9f, 0x92, 0x41, 0x80];
        for input in [valid, &invalid[..]] {
            for cut in 0..=input.len() {
                let mut carry = Utf8Carry::default();
                let mut out = carry.feed(&input[..cut]);
                out.push_str(&carry.feed(&input[cut..]));
                out.push_str(&carry.flush());
                if input == valid {
                    assert_eq!(out.as_bytes(), valid, "cut at {cut}");
                } else {
                    assert!(out.contains('\u{FFFD}'));
                }
            }
        }
    }

    #[test]
    fn events_are_json_arrays_asciinema_reads() {
        let mut line = Vec::new();
        encode_event(
            1.5,
            EventKind::Output,
            "hi \"there\"\r\n\u{1b}[0m",
            &mut line,
        );
        let text = String::from_utf8(line).unwrap();
        assert_eq!(text, r#"[1.500000,"o","hi \"there\"\r\n\u001b[0m"]"#);
        let event = decode_event(&text).unwrap();
        assert_eq!(event.kind, EventKind::Output);
        assert_eq!(event.data, "hi \"there\"\r\n\u{1b}[0m");
        assert!((event.time - 1.5).abs() < 1e-9);
    }

    #[test]
    fn header_has_the_v2_fields() {
        let header = Header {
            version: 2,
            width: 80,
            height: 24,
            timestamp: 1_700_000_000,
            title: Some("alice → web01".into()),
            env: BTreeMap::from([("TERM".into(), "xterm".into())]),
            portcullis: None,
        };
        let json = serde_json::to_value(&header).unwrap();
        assert_eq!(json["version"], 2);
        assert_eq!(json["width"], 80);
        assert_eq!(json["env"]["TERM"], "xterm");
        assert!(json.get("portcullis").is_none());
    }

    #[test]
    fn split_characters_are_carried_to_the_next_chunk() {
        let text = "héllo → wörld 🚀";
        let bytes = text.as_bytes();
        for cut in 0..bytes.len() {
            let mut carry = Utf8Carry::default();
            let mut out = carry.feed(&bytes[..cut]);
            out.push_str(&carry.feed(&bytes[cut..]));
            out.push_str(&carry.flush());
            assert_eq!(out, text, "cut at {cut}");
        }
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut carry = Utf8Carry::default();
        assert_eq!(carry.feed(b"a\xffb\xc3"), "a\u{FFFD}b");
        assert_eq!(carry.feed(b"\xa9!"), "é!");
        assert_eq!(carry.feed(b"\xe2\x82"), "");
        assert_eq!(carry.flush(), "\u{FFFD}");
    }
}
