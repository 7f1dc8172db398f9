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

/// The four event types of asciicast v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Terminal output ("o").
    Output,
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
            EventKind::Output => "o",
            EventKind::Input => "i",
            EventKind::Resize => "r",
            EventKind::Marker => "m",
        }
    }

    /// The kind for a code, if it is one of the four.
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
    // Writing into a Vec cannot fail, and a &str always serializes.
    let _ = write!(out, "[{seconds:.6},\"{}\",", kind.code());
    let _ = serde_json::to_writer(&mut *out, data);
    out.push(b']');
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
        let joined;
        let mut rest: &[u8] = if self.pending.is_empty() {
            chunk
        } else {
            self.pending.extend_from_slice(chunk);
            joined = std::mem::take(&mut self.pending);
            &joined
        };
        let mut out = String::with_capacity(rest.len());
        loop {
            match std::str::from_utf8(rest) {
                Ok(text) => {
                    out.push_str(text);
                    return out;
                }
                Err(error) => {
                    let (valid, after) = rest.split_at(error.valid_up_to());
                    out.push_str(&String::from_utf8_lossy(valid));
                    match error.error_len() {
                        None => {
                            self.pending = after.to_vec();
                            return out;
                        }
                        Some(len) => {
                            out.push('\u{FFFD}');
                            rest = &after[len..];
                        }
                    }
                }
            }
        }
    }

    /// Whatever is still held, as text (at the end of a recording).
    pub fn flush(&mut self) -> String {
        let pending = std::mem::take(&mut self.pending);
        String::from_utf8_lossy(&pending).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
