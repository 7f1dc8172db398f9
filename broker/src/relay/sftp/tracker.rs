//! Follows an SFTP conversation — requests from the client, answers from the server, matched
//! by request id — and says what happened to which file, one audit event per operation:
//! `sftp.open`, `sftp.close` (bytes read and written, and the sha256 of the content when the
//! whole file went one way, in order), `sftp.remove`, `sftp.rename`, `sftp.mkdir`,
//! `sftp.rmdir`, `sftp.setstat`, `sftp.symlink`, and `sftp.unparseable` for what cannot be read
//! (the packet is relayed all the same: the server decides).
//!
//! Pure: packets in, events out; the relay hooks it to a channel ([`super::SftpAudit`]).
//! Memory is bounded whatever the client sends: requests awaiting an answer and open
//! handles are capped, and what is over the cap is counted, not kept.

use std::collections::HashMap;

use ring::digest;
use serde_json::{Value, json};

use super::wire::{Attributes, Fields};
use crate::relay::transfer::TransferEvent;

/// Requests awaiting an answer that are followed at most (OpenSSH keeps 64 in flight).
const MAX_PENDING: usize = 4096;
/// Open handles followed at most.
const MAX_HANDLES: usize = 1024;
/// `sftp.unparseable` events per channel at most; the rest are counted in the last one.
const MAX_UNPARSEABLE: u32 = 10;

/// A request the answer to which is awaited.
#[derive(Debug)]
enum Pending {
    Open {
        path: String,
        mode: String,
    },
    Close {
        handle: Vec<u8>,
    },
    Read {
        handle: Vec<u8>,
        offset: u64,
    },
    Write {
        handle: Vec<u8>,
    },
    /// An operation on a path, audited when its status comes.
    Op(TransferEvent),
    /// The real path of `.`: the answer names the directory relative paths start from.
    Home,
    /// Nothing to audit (stat, realpath, directory listing…).
    Other,
}

/// A file the client has open.
struct OpenFile {
    path: String,
    mode: String,
    read: u64,
    written: u64,
    /// The content, while it has gone one way, in order, from the start.
    hash: Option<digest::Context>,
    next_read: u64,
    next_write: u64,
    /// The server said end-of-file to a read: everything was read.
    read_to_end: bool,
    failed_writes: u32,
}

impl OpenFile {
    fn new(path: String, mode: String) -> Self {
        Self {
            path,
            mode,
            read: 0,
            written: 0,
            hash: Some(digest::Context::new(&digest::SHA256)),
            next_read: 0,
            next_write: 0,
            read_to_end: false,
            failed_writes: 0,
        }
    }

    /// Data the server sent for a read at `offset`. Clients that read ahead in parallel
    /// (paramiko's prefetch) may ask for a range twice: what was already read is not read
    /// again. A gap (a range skipped, to come later) means the content cannot be hashed in
    /// order, and from then on bytes are counted as they come.
    fn read(&mut self, offset: u64, data: &[u8]) {
        let end = offset.saturating_add(data.len() as u64);
        // Out of order (or after writes): bytes are counted as they come.
        if self.hash.is_none() || self.written > 0 || offset > self.next_read {
            self.hash = None;
            self.read += data.len() as u64;
            self.next_read = self.next_read.max(end);
            return;
        }
        if end <= self.next_read {
            return;
        }
        let fresh = &data[(self.next_read - offset) as usize..];
        if let Some(hash) = &mut self.hash {
            hash.update(fresh);
        }
        self.read += fresh.len() as u64;
        self.next_read = end;
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if self.read > 0 || offset != self.next_write {
            self.hash = None;
        }
        if let Some(hash) = &mut self.hash {
            hash.update(data);
        }
        self.written += data.len() as u64;
        self.next_write = offset.saturating_add(data.len() as u64);
    }

    /// `sftp.close`; `how` says how it ended when it was not by the client's close.
    fn closed(self, outcome: &str) -> TransferEvent {
        // Whole: every byte read up to the end, or written from the start (a write is the
        // file's whole content when it was created or truncated).
        let whole = (self.read > 0 && self.read_to_end)
            || (self.written > 0
                && self.failed_writes == 0
                && (self.mode.contains("truncate") || self.mode.contains("create")));
        let sha256 = self
            .hash
            .filter(|_| whole)
            .map(|hash| hex::encode(hash.finish()));
        TransferEvent {
            name: "sftp.close",
            fields: vec![
                ("path", json!(self.path)),
                ("mode", json!(self.mode)),
                ("bytes_read", json!(self.read)),
                ("bytes_written", json!(self.written)),
                ("sha256", json!(sha256)),
                ("outcome", json!(outcome)),
            ],
        }
    }
}

/// What the open flags ask for, in words: `read`, `write`, `create`, `truncate`, `append`,
/// `exclusive`.
fn open_mode(flags: u32) -> String {
    [
        (0x01, "read"),
        (0x02, "write"),
        (0x04, "append"),
        (0x08, "create"),
        (0x10, "truncate"),
        (0x20, "exclusive"),
    ]
    .iter()
    .filter(|(bit, _)| flags & bit != 0)
    .map(|(_, word)| *word)
    .collect::<Vec<_>>()
    .join(",")
}

/// One SFTP channel's conversation.
#[derive(Default)]
pub struct Tracker {
    pending: HashMap<u32, Pending>,
    handles: HashMap<Vec<u8>, OpenFile>,
    /// Where the server resolves relative paths from, once it has said.
    home: Option<String>,
    unparseable: u32,
    untracked: u64,
}

impl Tracker {
    /// The directory relative paths start from, once the server has said (clients ask for
    /// the real path of `.` first).
    pub fn home(&self) -> Option<&str> {
        self.home.as_deref()
    }

    /// The path an open handle was opened with.
    pub fn handle_path(&self, handle: &[u8]) -> Option<&str> {
        self.handles.get(handle).map(|file| file.path.as_str())
    }

    /// A packet from the client.
    pub fn request(&mut self, kind: u8, payload: &[u8]) -> Vec<TransferEvent> {
        if kind == 1 {
            // INIT: the version, no id.
            return Vec::new();
        }
        match self.parse_request(kind, payload) {
            Some((id, pending)) => {
                if self.pending.len() >= MAX_PENDING && !self.pending.contains_key(&id) {
                    self.untracked += 1;
                } else {
                    self.pending.insert(id, pending);
                }
                Vec::new()
            }
            None => self.unparseable("client", kind),
        }
    }

    fn parse_request(&mut self, kind: u8, payload: &[u8]) -> Option<(u32, Pending)> {
        let mut f = Fields::new(payload);
        let id = f.u32()?;
        let op = |name: &'static str, fields: Vec<(&'static str, Value)>| {
            Pending::Op(TransferEvent { name, fields })
        };
        let pending = match kind {
            3 => {
                let path = f.text()?;
                let flags = f.u32()?;
                Pending::Open {
                    path,
                    mode: open_mode(flags),
                }
            }
            4 => Pending::Close {
                handle: f.bytes()?.to_vec(),
            },
            5 => Pending::Read {
                handle: f.bytes()?.to_vec(),
                offset: f.u64()?,
            },
            6 => {
                let handle = f.bytes()?.to_vec();
                let offset = f.u64()?;
                let data = f.bytes()?;
                if let Some(file) = self.handles.get_mut(&handle) {
                    file.write(offset, data);
                }
                Pending::Write { handle }
            }
            9 => {
                let path = f.text()?;
                let attributes = f.attributes()?;
                op("sftp.setstat", setstat_fields(path, attributes))
            }
            10 => {
                let handle = f.bytes()?;
                let attributes = f.attributes()?;
                let path = self
                    .handles
                    .get(handle)
                    .map(|file| file.path.clone())
                    .unwrap_or_default();
                op("sftp.setstat", setstat_fields(path, attributes))
            }
            13 => op("sftp.remove", vec![("path", json!(f.text()?))]),
            14 => {
                let path = f.text()?;
                let attributes = f.attributes()?;
                let mut fields = vec![("path", json!(path))];
                if let Some(mode) = attributes.permissions {
                    fields.push(("mode", json!(format!("{:04o}", mode & 0o7777))));
                }
                op("sftp.mkdir", fields)
            }
            15 => op("sftp.rmdir", vec![("path", json!(f.text()?))]),
            18 => rename(f.text()?, f.text()?),
            // OpenSSH sends the link's target first, then the link's own path.
            20 => {
                let target = f.text()?;
                let link = f.text()?;
                op(
                    "sftp.symlink",
                    vec![("path", json!(link)), ("points_to", json!(target))],
                )
            }
            200 => {
                let name = f.bytes()?;
                match name {
                    b"posix-rename@openssh.com" => rename(f.text()?, f.text()?),
                    b"lsetstat@openssh.com" => {
                        let path = f.text()?;
                        let attributes = f.attributes()?;
                        op("sftp.setstat", setstat_fields(path, attributes))
                    }
                    b"hardlink@openssh.com" => {
                        let target = f.text()?;
                        let link = f.text()?;
                        op(
                            "sftp.link",
                            vec![("path", json!(link)), ("points_to", json!(target))],
                        )
                    }
                    _ => Pending::Other,
                }
            }
            16 => match f.bytes()? {
                b"." | b"" => Pending::Home,
                _ => Pending::Other,
            },
            7 | 8 | 11 | 12 | 17 | 19 => Pending::Other,
            _ => return None,
        };
        Some((id, pending))
    }

    /// A packet from the server.
    pub fn response(&mut self, kind: u8, payload: &[u8]) -> Vec<TransferEvent> {
        if kind == 2 {
            // VERSION: no id.
            return Vec::new();
        }
        let mut f = Fields::new(payload);
        let Some(id) = f.u32() else {
            return self.unparseable("server", kind);
        };
        let Some(pending) = self.pending.remove(&id) else {
            return Vec::new();
        };
        let status = if kind == 101 {
            let Some(code) = f.u32() else {
                return self.unparseable("server", kind);
            };
            Some((code, f.text().unwrap_or_default()))
        } else {
            None
        };
        let failure = status
            .as_ref()
            .filter(|(code, _)| *code != 0)
            .map(|(code, message)| status_text(*code, message));
        match pending {
            Pending::Open { path, mode } => {
                let mut event = TransferEvent {
                    name: "sftp.open",
                    fields: vec![("path", json!(path)), ("mode", json!(mode))],
                };
                match (kind, f.bytes()) {
                    (102, Some(handle)) => {
                        if self.handles.len() < MAX_HANDLES {
                            self.handles
                                .insert(handle.to_vec(), OpenFile::new(path, mode));
                        } else {
                            self.untracked += 1;
                        }
                        event.fields.push(("outcome", json!("ok")));
                    }
                    _ => {
                        event.fields.push(("outcome", json!("failed")));
                        event.fields.push(("error", json!(failure)));
                    }
                }
                vec![event]
            }
            Pending::Close { handle } => match self.handles.remove(&handle) {
                Some(file) => vec![file.closed("closed")],
                None => Vec::new(),
            },
            Pending::Read { handle, offset } => {
                if let Some(file) = self.handles.get_mut(&handle) {
                    match (kind, status) {
                        (103, _) => {
                            if let Some(data) = f.bytes() {
                                file.read(offset, data);
                            }
                        }
                        // End of file.
                        (_, Some((1, _))) => file.read_to_end = true,
                        _ => file.hash = None,
                    }
                }
                Vec::new()
            }
            Pending::Write { handle } => {
                if failure.is_some()
                    && let Some(file) = self.handles.get_mut(&handle)
                {
                    file.failed_writes += 1;
                }
                Vec::new()
            }
            Pending::Op(mut event) => {
                match failure {
                    None => event.fields.push(("outcome", json!("ok"))),
                    Some(error) => {
                        event.fields.push(("outcome", json!("failed")));
                        event.fields.push(("error", json!(error)));
                    }
                }
                vec![event]
            }
            Pending::Home => {
                // NAME: a count, then the first name (a string), its long name, attributes.
                if kind == 104
                    && f.u32().is_some_and(|count| count >= 1)
                    && let Some(path) = f.text()
                    && path.starts_with('/')
                {
                    self.home = Some(path);
                }
                Vec::new()
            }
            Pending::Other => Vec::new(),
        }
    }

    /// The channel ended: files still open are closed as far as the audit goes, and what
    /// could not be followed is counted.
    pub fn finish(&mut self) -> Vec<TransferEvent> {
        let mut events: Vec<TransferEvent> = self
            .handles
            .drain()
            .map(|(_, file)| file.closed("channel ended"))
            .collect();
        if self.unparseable > MAX_UNPARSEABLE || self.untracked > 0 {
            events.push(TransferEvent {
                name: "sftp.unparseable",
                fields: vec![
                    ("packets", json!(self.unparseable)),
                    ("untracked", json!(self.untracked)),
                ],
            });
        }
        events
    }

    fn unparseable(&mut self, from: &str, kind: u8) -> Vec<TransferEvent> {
        self.unparseable += 1;
        if self.unparseable > MAX_UNPARSEABLE {
            return Vec::new();
        }
        vec![TransferEvent {
            name: "sftp.unparseable",
            fields: vec![("from", json!(from)), ("type", json!(kind))],
        }]
    }

    /// A direction stopped being parseable (see [`super::wire::Cut::Lost`]).
    pub fn lost(&mut self, from: &str, why: &str) -> Vec<TransferEvent> {
        vec![TransferEvent {
            name: "sftp.unparseable",
            fields: vec![
                ("from", json!(from)),
                ("reason", json!(why)),
                ("following", json!(false)),
            ],
        }]
    }
}

fn rename(from: String, to: String) -> Pending {
    Pending::Op(TransferEvent {
        name: "sftp.rename",
        fields: vec![("from", json!(from)), ("to", json!(to))],
    })
}

fn setstat_fields(path: String, attributes: Attributes) -> Vec<(&'static str, Value)> {
    vec![
        ("path", json!(path)),
        ("attributes", json!(attributes.describe())),
    ]
}

/// A failed status in words.
fn status_text(code: u32, message: &str) -> String {
    let name = match code {
        1 => "end of file",
        2 => "no such file",
        3 => "permission denied",
        4 => "failure",
        5 => "bad message",
        8 => "operation unsupported",
        _ => "error",
    };
    if message.is_empty() {
        format!("{name} ({code})")
    } else {
        format!("{name} ({code}): {}", crate::text::one_line(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::relay::sftp::wire::encode::{string, with_id as request};

    #[test]
    fn garbage_of_every_type_never_panics_and_is_counted() {
        let mut tracker = Tracker::default();
        let mut x: u32 = 12345;
        for kind in 0..=255u8 {
            for len in [0usize, 1, 3, 4, 5, 9, 17, 40] {
                let payload: Vec<u8> = (0..len)
                    .map(|_| {
                        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                        (x >> 16) as u8
                    })
                    .collect();
                tracker.request(kind, &payload);
                tracker.response(kind, &payload);
            }
        }
        let last = tracker.finish();
        assert!(tracker.unparseable > MAX_UNPARSEABLE);
        assert!(last.iter().any(|e| e.name == "sftp.unparseable"));
    }

    #[test]
    fn the_home_directory_is_learned_from_the_real_path_of_dot_only() {
        let mut tracker = Tracker::default();
        let name = |path: &[u8]| {
            request(
                7,
                &[
                    &1u32.to_be_bytes(),
                    &string(path),
                    &string(b""),
                    &0u32.to_be_bytes(),
                ],
            )
        };
        // The real path of something else says nothing about where relative paths start.
        tracker.request(16, &request(7, &[&string(b"/srv")]));
        tracker.response(104, &name(b"/srv"));
        assert_eq!(tracker.home(), None);
        // A relative answer is not a home.
        tracker.request(16, &request(7, &[&string(b".")]));
        tracker.response(104, &name(b"srv"));
        assert_eq!(tracker.home(), None);
        tracker.request(16, &request(7, &[&string(b".")]));
        tracker.response(104, &name(b"/root"));
        assert_eq!(tracker.home(), Some("/root"));
    }

    #[test]
    fn requests_never_answered_are_capped() {
        let mut tracker = Tracker::default();
        for id in 0..(MAX_PENDING as u32 + 500) {
            tracker.request(17, &request(id, &[&string(b"/etc")]));
        }
        assert_eq!(tracker.pending.len(), MAX_PENDING);
        assert_eq!(tracker.untracked, 500);
    }

    /// Opens `path` for reading (request 1), answered with `handle`.
    fn open_for_reading(tracker: &mut Tracker, path: &[u8], handle: &[u8]) {
        tracker.request(
            3,
            &request(
                1,
                &[&string(path), &1u32.to_be_bytes(), &0u32.to_be_bytes()],
            ),
        );
        tracker.response(102, &request(1, &[&string(handle)]));
    }

    #[test]
    fn a_range_read_twice_counts_once_and_keeps_the_sha256() {
        let mut tracker = Tracker::default();
        open_for_reading(&mut tracker, b"/srv/b", b"h");
        // 0..4, then 0..4 again (a prefetch racing the reader), then 2..8 overlapping.
        for (id, offset, data) in [
            (2u32, 0u64, &b"abcd"[..]),
            (3, 0, b"abcd"),
            (4, 2, b"cdefgh"),
        ] {
            tracker.request(
                5,
                &request(
                    id,
                    &[&string(b"h"), &offset.to_be_bytes(), &8u32.to_be_bytes()],
                ),
            );
            tracker.response(103, &request(id, &[&string(data)]));
        }
        tracker.request(
            5,
            &request(
                5,
                &[&string(b"h"), &8u64.to_be_bytes(), &8u32.to_be_bytes()],
            ),
        );
        tracker.response(101, &request(5, &[&1u32.to_be_bytes(), &string(b"eof")]));
        tracker.request(4, &request(6, &[&string(b"h")]));
        let events = tracker.response(101, &request(6, &[&0u32.to_be_bytes(), &string(b"")]));
        let expected = hex::encode(digest::digest(&digest::SHA256, b"abcdefgh"));
        assert!(
            events[0].fields.contains(&("bytes_read", json!(8))),
            "{events:?}"
        );
        assert!(
            events[0].fields.contains(&("sha256", json!(expected))),
            "{events:?}"
        );
    }

    #[test]
    fn a_file_read_out_of_order_has_no_sha256() {
        let mut tracker = Tracker::default();
        open_for_reading(&mut tracker, b"/srv/a", b"h1");
        for (id, offset) in [(2u32, 4u64), (3, 0)] {
            tracker.request(
                5,
                &request(
                    id,
                    &[&string(b"h1"), &offset.to_be_bytes(), &4u32.to_be_bytes()],
                ),
            );
            tracker.response(103, &request(id, &[&string(b"data")]));
        }
        tracker.request(
            5,
            &request(
                4,
                &[&string(b"h1"), &8u64.to_be_bytes(), &4u32.to_be_bytes()],
            ),
        );
        tracker.response(101, &request(4, &[&1u32.to_be_bytes(), &string(b"eof")]));
        tracker.request(4, &request(5, &[&string(b"h1")]));
        let events = tracker.response(101, &request(5, &[&0u32.to_be_bytes(), &string(b"")]));
        let close = &events[0];
        assert_eq!(close.name, "sftp.close");
        assert!(close.fields.contains(&("bytes_read", json!(8))));
        assert!(close.fields.contains(&("sha256", Value::Null)));
    }
}
