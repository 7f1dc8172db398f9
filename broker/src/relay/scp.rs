//! The file-transfer audit of legacy scp (`scp -O`: an exec of `scp -t PATH` to upload,
//! `scp -f PATH` to download). The side that sends files — the client for `-t`, the server
//! for `-f` — writes a record per file (`C<mode> <size> <name>\n`, then the bytes, then a
//! NUL), per directory (`D<mode> 0 <name>\n` … `E\n`) and times (`T…\n`); each file is
//! audited as `scp.file` with its name, mode, size and the sha256 of its bytes. It only
//! watches: the bytes pass as they came, and a stream it cannot follow is audited as
//! `scp.unparseable` once and then left alone.

use std::sync::Arc;

use ring::digest;
use serde_json::json;

use super::transfer::{self, TransferEvent};
use crate::live::SessionShared;
use crate::services::Services;

/// The longest record line followed.
const MAX_LINE: usize = 4096;
/// Directory depth followed at most.
const MAX_DEPTH: usize = 64;

/// Which way files go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// `scp -t`: the client sends.
    Upload,
    /// `scp -f`: the server sends.
    Download,
}

/// The legacy scp exec `command` runs, if it is one: which way, and the path it names.
pub fn parse_command(command: &str) -> Option<(Way, String)> {
    let mut words = command.split_whitespace();
    let program = words.next()?;
    if program != "scp" && !program.ends_with("/scp") {
        return None;
    }
    let mut way = None;
    let mut path = None;
    for word in words {
        match word {
            "-t" => way = Some(Way::Upload),
            "-f" => way = Some(Way::Download),
            "--" => {}
            flag if flag.starts_with('-') => {
                if flag.contains('t') && !flag.contains('f') {
                    way = way.or(Some(Way::Upload));
                } else if flag.contains('f') {
                    way = way.or(Some(Way::Download));
                }
            }
            other => path = Some(other.to_owned()),
        }
    }
    Some((way?, path.unwrap_or_default()))
}

enum State {
    /// Reading a record line.
    Line(Vec<u8>),
    /// Reading a file's bytes.
    Data(Box<InFile>),
    /// Given up.
    Lost,
}

/// A file whose bytes are passing.
struct InFile {
    name: String,
    mode: String,
    size: u64,
    left: u64,
    hash: digest::Context,
}

/// Follows the sending side of a legacy scp transfer.
pub struct ScpSource {
    way: Way,
    path: String,
    state: State,
    directories: Vec<String>,
}

impl ScpSource {
    /// The sending side of `scp -t/-f path`.
    pub fn new(way: Way, path: String) -> Self {
        Self {
            way,
            path,
            state: State::Line(Vec::new()),
            directories: Vec::new(),
        }
    }

    /// Bytes the sending side wrote; the files they complete.
    pub fn see(&mut self, mut data: &[u8]) -> Vec<TransferEvent> {
        let mut events = Vec::new();
        while !data.is_empty() {
            match &mut self.state {
                State::Lost => break,
                State::Line(line) => {
                    let Some(&byte) = data.first() else { break };
                    data = &data[1..];
                    if line.is_empty() && byte == 0 {
                        // The NUL after a file's bytes (or an acknowledgement).
                        continue;
                    }
                    if byte != b'\n' {
                        line.push(byte);
                        if line.len() > MAX_LINE {
                            events.extend(self.lost("a record line too long"));
                        }
                        continue;
                    }
                    let line = std::mem::take(line);
                    events.extend(self.record(&line));
                }
                State::Data(file) => {
                    let take = file.left.min(data.len() as u64) as usize;
                    file.hash.update(&data[..take]);
                    file.left -= take as u64;
                    data = &data[take..];
                    if file.left == 0 {
                        events.push(self.file_done());
                    }
                }
            }
        }
        events
    }

    /// A complete record line.
    fn record(&mut self, line: &[u8]) -> Vec<TransferEvent> {
        let text = String::from_utf8_lossy(line);
        let Some(kind) = text.chars().next() else {
            return Vec::new();
        };
        match kind {
            'C' | 'D' => {
                let mut parts = text[1..].splitn(3, ' ');
                let (Some(mode), Some(size), Some(name)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return self.lost("a malformed file or directory record");
                };
                let Ok(size) = size.parse::<u64>() else {
                    return self.lost("a malformed size");
                };
                if kind == 'D' {
                    if self.directories.len() >= MAX_DEPTH {
                        return self.lost("directories nested too deep");
                    }
                    self.directories.push(name.to_owned());
                    return Vec::new();
                }
                let name = self
                    .directories
                    .iter()
                    .map(String::as_str)
                    .chain(std::iter::once(name))
                    .collect::<Vec<_>>()
                    .join("/");
                self.state = State::Data(Box::new(InFile {
                    name,
                    mode: mode.to_owned(),
                    size,
                    left: size,
                    hash: digest::Context::new(&digest::SHA256),
                }));
                if size == 0 {
                    return vec![self.file_done()];
                }
                Vec::new()
            }
            'E' => {
                self.directories.pop();
                Vec::new()
            }
            // Times, and warnings or errors (1, 2) from the sender.
            'T' | '\u{1}' | '\u{2}' => Vec::new(),
            _ => self.lost("an unknown record"),
        }
    }

    fn file_done(&mut self) -> TransferEvent {
        let state = std::mem::replace(&mut self.state, State::Line(Vec::new()));
        let State::Data(file) = state else {
            return self.lost_event("internal: no file in progress");
        };
        let InFile {
            name,
            mode,
            size,
            hash,
            ..
        } = *file;
        TransferEvent {
            name: "scp.file",
            fields: vec![
                (
                    "direction",
                    json!(match self.way {
                        Way::Upload => "upload",
                        Way::Download => "download",
                    }),
                ),
                ("path", json!(self.path)),
                ("name", json!(name)),
                ("mode", json!(mode)),
                ("size", json!(size)),
                ("sha256", json!(hex::encode(hash.finish()))),
            ],
        }
    }

    fn lost(&mut self, why: &str) -> Vec<TransferEvent> {
        vec![self.lost_event(why)]
    }

    fn lost_event(&mut self, why: &str) -> TransferEvent {
        self.state = State::Lost;
        TransferEvent {
            name: "scp.unparseable",
            fields: vec![("reason", json!(why)), ("path", json!(self.path))],
        }
    }
}

/// The sending side of a legacy scp channel, audited as it passes.
pub struct ScpWatch {
    pub(super) source: ScpSource,
    pub(super) services: Arc<Services>,
    pub(super) session: Arc<SessionShared>,
    pub(super) channel: String,
    /// Lines for the recording not yet taken.
    pub(super) notes: Vec<String>,
}

impl super::Watch for ScpWatch {
    fn see(&mut self, data: &[u8]) {
        let events = self.source.see(data);
        if !events.is_empty() {
            self.notes
                .extend(events.iter().map(TransferEvent::describe));
            transfer::record(&self.services, &self.session, &self.channel, events);
        }
    }

    fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    fn finish(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_says_which_way_and_where() {
        assert_eq!(
            parse_command("scp -t /srv/in"),
            Some((Way::Upload, "/srv/in".into()))
        );
        assert_eq!(
            parse_command("scp -r -p -f -- /etc/hosts"),
            Some((Way::Download, "/etc/hosts".into()))
        );
        assert_eq!(parse_command("scp"), None);
        assert_eq!(parse_command("rsync --server ."), None);
    }

    #[test]
    fn files_are_followed_across_any_chunking_and_garbage_stops_it() {
        let mut stream =
            b"D0755 0 dir\nT1 0 1 0\nC0644 5 a.txt\nhello\0C0600 0 empty\n\0E\n".to_vec();
        stream.extend_from_slice(b"C0644 3 b\nxyz\0");
        for split in 0..stream.len() {
            let mut source = ScpSource::new(Way::Upload, "/srv".into());
            let mut events = source.see(&stream[..split]);
            events.extend(source.see(&stream[split..]));
            let names: Vec<_> = events
                .iter()
                .map(|e| {
                    e.fields
                        .iter()
                        .find(|(k, _)| *k == "name")
                        .unwrap()
                        .1
                        .clone()
                })
                .collect();
            assert_eq!(names, [json!("dir/a.txt"), json!("dir/empty"), json!("b")]);
            let first = &events[0].fields;
            let hello = ring::digest::digest(&ring::digest::SHA256, b"hello");
            assert!(first.contains(&("sha256", json!(hex::encode(hello.as_ref())))));
        }
        let mut source = ScpSource::new(Way::Download, "/x".into());
        let events = source.see(b"Zgarbage\nC0644 1 f\nq\0");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].name, "scp.unparseable");
        assert!(source.see(&[b'x'; 10_000]).is_empty());
        let mut source = ScpSource::new(Way::Download, "/x".into());
        assert_eq!(
            source.see(&[b'C'; MAX_LINE + 10])[0].name,
            "scp.unparseable"
        );
    }
}
