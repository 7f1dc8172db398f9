//! The audit log, `data/audit.jsonl`: one JSON object per line, append-only, HMAC-chained.
//!
//! ```json
//! {"time":"2026-11-22T06:00:00.123Z","event":"session.start","session":"…","user":"alice",
//!  "source":"10.1.2.3:50122","target":"web01", …event fields…, "mac":"<64 hex>"}
//! ```
//!
//! `mac` is the chain tag over the line as written without its `,"mac":"…"` suffix, chained
//! from the previous line's tag, so deleting, editing or reordering lines is detectable
//! (`portcullis audit verify`). Each line is written with a single `write` and no buffering:
//! the log is complete up to the moment anything fails. No secret is ever put in an event;
//! callers pass names, fingerprints and reasons only.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::SystemTime;

use portcullis_policy::Clock;
use portcullis_recorder::chain::{Chain, ChainKey, parse_tag, tags_equal};
use serde::Serialize;

use std::sync::Arc;

use portcullis_state::{StateError, StateStore};

use crate::anchors::{self, Anchor};

/// Context of the first line of a log, and of a line that restarts the chain.
const CHAIN_CONTEXT: &[u8] = b"portcullis audit.jsonl v1";
/// The event written when the log is reopened after its last line was found damaged.
const RESTART_EVENT: &str = "audit.chain_restarted";
/// `,"mac":"` + 64 hex + `"}`
const MAC_SUFFIX_LEN: usize = 8 + 64 + 2;

/// One audit event being built.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    event: &'static str,
    fields: Vec<(std::borrow::Cow<'static, str>, serde_json::Value)>,
}

impl AuditEvent {
    /// A new event of this type (`auth.success`, `session.end`, ...).
    pub fn new(event: &'static str) -> Self {
        Self {
            event,
            fields: Vec::new(),
        }
    }

    /// Adds a field; `None` values are left out.
    pub fn with(mut self, key: &'static str, value: impl Serialize) -> Self {
        match serde_json::to_value(value) {
            Ok(serde_json::Value::Null) | Err(_) => {}
            Ok(value) => self.fields.push((key.into(), value)),
        }
        self
    }

    /// Adds a field whose name is only known at run time (events the command line left in
    /// the state store, see `cli_events`).
    pub fn with_field(mut self, key: String, value: serde_json::Value) -> Self {
        if !value.is_null() {
            self.fields.push((key.into(), value));
        }
        self
    }

    /// The event type.
    pub fn kind(&self) -> &'static str {
        self.event
    }

    /// Its type and fields, to be left for the audit log by another process (see
    /// `vault::events`).
    pub fn into_parts(self) -> (&'static str, serde_json::Map<String, serde_json::Value>) {
        let fields = self
            .fields
            .into_iter()
            .map(|(key, value)| (key.into_owned(), value))
            .collect();
        (self.event, fields)
    }

    fn render(&self, time: SystemTime) -> String {
        let mut line = String::with_capacity(256);
        line.push_str("{\"time\":");
        push_json(
            &mut line,
            &humantime::format_rfc3339_millis(time).to_string(),
        );
        line.push_str(",\"event\":");
        push_json(&mut line, self.event);
        for (key, value) in &self.fields {
            line.push(',');
            push_json(&mut line, key);
            line.push(':');
            line.push_str(&value.to_string());
        }
        line.push('}');
        line
    }
}

fn push_json(out: &mut String, text: &str) {
    out.push_str(&serde_json::Value::from(text).to_string());
}

/// Why the audit log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The file could not be read or written.
    #[error("audit log {}: {source}", path.display())]
    Io {
        /// The log.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// Its anchor could not be read.
    #[error("audit log anchor: {0}")]
    Anchor(#[from] StateError),
}

/// The open audit log.
pub struct AuditLog {
    path: PathBuf,
    inner: Mutex<Writer>,
    clock: Arc<dyn Clock>,
    /// The number of lines in the file, for those who follow it (forwarders wake on it).
    written: tokio::sync::watch::Sender<u64>,
    /// How the file differed from its anchor when it was opened, if it did.
    mismatch_at_open: Option<String>,
}

struct Writer {
    file: File,
    chain: Chain,
    /// Lines in the file.
    count: u64,
    /// Moves the anchor after each line (none in unit tests).
    anchorer: Option<Anchorer>,
}

/// Keeps the audit anchor in the state store up to date from a thread of its own, so a
/// store write (a transaction, maybe an fsync) never runs on an async worker or under the
/// log's lock. Only the newest anchor matters: while one is being stored, newer ones
/// replace each other, and the next store writes the last. The anchor therefore trails the
/// file by at most one store write and never claims a line the file does not hold.
struct Anchorer {
    slot: Arc<(Mutex<AnchorSlot>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct AnchorSlot {
    newest: Option<Anchor>,
    closing: bool,
}

impl Anchorer {
    fn start(state: Arc<dyn StateStore>) -> io::Result<Self> {
        let slot = Arc::new((Mutex::new(AnchorSlot::default()), Condvar::new()));
        let thread = std::thread::Builder::new()
            .name("audit-anchor".into())
            .spawn({
                let slot = Arc::clone(&slot);
                move || Self::run(&slot, state.as_ref())
            })?;
        Ok(Self {
            slot,
            thread: Some(thread),
        })
    }

    fn run(slot: &(Mutex<AnchorSlot>, Condvar), state: &dyn StateStore) {
        let (lock, wake) = slot;
        loop {
            let (newest, closing) = {
                let mut slot = lock
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                while slot.newest.is_none() && !slot.closing {
                    slot = wake
                        .wait(slot)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
                (slot.newest.take(), slot.closing)
            };
            if let Some(anchor) = newest
                && let Err(error) = anchors::set(state, &anchors::audit(state), anchor)
            {
                tracing::error!(%error, "cannot anchor the audit log");
            }
            if closing {
                return;
            }
        }
    }

    /// The file now ends with `anchor`'s line.
    fn moved(&self, anchor: Anchor) {
        let (lock, wake) = &*self.slot;
        lock.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .newest = Some(anchor);
        wake.notify_one();
    }
}

impl Drop for Anchorer {
    /// Stores the last anchor before the log is gone.
    fn drop(&mut self) {
        let (lock, wake) = &*self.slot;
        lock.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .closing = true;
        wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The event written when the log at start does not match its anchor: lines were removed
/// from its end or it was replaced. It stays in the chain, so `audit verify` reports it for
/// good.
const ANCHOR_MISMATCH_EVENT: &str = "audit.anchor_mismatch";

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .finish()
    }
}

impl AuditLog {
    /// Opens (creating if needed) the log and continues its chain. With `state`, the file
    /// is first checked against the anchor of the last line written: a log that lost lines
    /// at its end, or was swapped, is not quietly continued — an `audit.anchor_mismatch`
    /// event saying what was found is chained in, and an alert raised.
    pub fn open(
        path: &Path,
        key: ChainKey,
        state: Option<Arc<dyn StateStore>>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, AuditError> {
        let error = |source| AuditError::Io {
            path: path.to_owned(),
            source,
        };
        let anchor = match &state {
            Some(state) => anchors::get(state.as_ref(), &anchors::audit(state.as_ref()))?,
            None => None,
        };
        let scan = scan(path, anchor.as_ref().map(|a| a.count)).map_err(error)?;
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(error)?;
        let (chain, restart) = match scan.last.as_deref() {
            None => (Chain::start(&key, CHAIN_CONTEXT), false),
            Some(line) => match split_mac(line).and_then(|(_, mac)| parse_tag(mac)) {
                Some(tag) => (Chain::resume(&key, tag), false),
                None => (Chain::start(&key, CHAIN_CONTEXT), true),
            },
        };
        if restart && !scan.last.as_deref().is_some_and(|l| l.ends_with('\n')) {
            // The damaged line was cut mid-write: end it so the next event starts afresh.
            file.write_all(b"\n").map_err(error)?;
        }
        let mismatch = anchor.as_ref().and_then(|anchor| scan.against(anchor));
        let anchorer = state.map(Anchorer::start).transpose().map_err(error)?;
        let log = Self {
            path: path.to_owned(),
            inner: Mutex::new(Writer {
                file,
                chain,
                count: scan.lines,
                anchorer,
            }),
            clock,
            written: tokio::sync::watch::Sender::new(scan.lines),
            mismatch_at_open: mismatch.clone(),
        };
        if restart {
            log.record(AuditEvent::new(RESTART_EVENT).with(
                "reason",
                "the previous line was incomplete or damaged (an interrupted write?)",
            ));
        }
        if let (Some(anchor), Some(found)) = (anchor, mismatch) {
            tracing::error!(
                expected_lines = anchor.count,
                found_lines = scan.lines,
                %found,
                "ALERT: the audit log does not end where it was last written: {found}"
            );
            log.record(
                AuditEvent::new(ANCHOR_MISMATCH_EVENT)
                    .with("found", found)
                    .with("anchored_lines", anchor.count)
                    .with("anchored_tag", &anchor.tag)
                    .with("lines_found", scan.lines),
            );
        }
        Ok(log)
    }

    /// How the file differed from where it was last written (lines removed from its end,
    /// or another file), when it was opened; it was audited as `audit.anchor_mismatch`.
    pub fn mismatch_at_open(&self) -> Option<&str> {
        self.mismatch_at_open.as_deref()
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The number of lines in the file now.
    pub fn line_count(&self) -> u64 {
        *self.written.borrow()
    }

    /// The number of lines in the file, now and as it grows.
    pub fn lines(&self) -> tokio::sync::watch::Receiver<u64> {
        self.written.subscribe()
    }

    /// Appends an event. A failure to write is logged, never propagated: auditing must not
    /// be the thing that takes the bastion down mid-session. (What must not happen without
    /// its record — a session starting — uses [`AuditLog::record_required`].)
    pub fn record(&self, event: AuditEvent) {
        if let Err(error) = self.try_record(&event) {
            tracing::error!(event = event.kind(), %error, "cannot write to the audit log");
        }
    }

    /// Appends an event that what follows depends on: the caller must not go on without it
    /// (no session without an audit trail). A failure is an `ALERT` log line and an error.
    pub fn record_required(&self, event: AuditEvent) -> Result<(), AuditError> {
        self.try_record(&event).map_err(|source| {
            tracing::error!(
                event = event.kind(),
                path = %self.path.display(),
                %source,
                "ALERT: the audit log cannot be written; sessions are refused until it can"
            );
            AuditError::Io {
                path: self.path.clone(),
                source,
            }
        })
    }

    fn try_record(&self, event: &AuditEvent) -> io::Result<()> {
        let body = event.render(self.clock.now());
        let mut writer = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The chain moves only once the line is written: a failed write leaves it where the
        // file ends, so the next line that can be written continues it.
        let mut chain = writer.chain.clone();
        if event.kind() == RESTART_EVENT {
            chain.reset(CHAIN_CONTEXT);
        }
        let tag = chain.append(body.as_bytes());
        let mut line = body;
        line.pop(); // the closing brace
        line.push_str(",\"mac\":\"");
        line.push_str(&hex::encode(tag));
        line.push_str("\"}\n");
        // One write(2) into the page cache, under the lock so lines land in chain order: the
        // line survives the process being killed the moment the client is told anything.
        // (No fsync here; the state store's anchor is what proves the count.)
        let before = writer.file.metadata()?.len();
        if let Err(error) = writer.file.write_all(line.as_bytes()) {
            // A full disk may have taken part of the line: cut it off, so the log does not
            // hold half a line that `audit verify` would call damage.
            let _ = writer.file.set_len(before);
            return Err(error);
        }
        writer.chain = chain;
        writer.count += 1;
        self.written.send_replace(writer.count);
        // The line is in the file before its anchor moves: the anchor never claims more.
        if let Some(anchorer) = &writer.anchorer {
            anchorer.moved(Anchor {
                count: writer.count,
                tag: hex::encode(tag),
                sealed: false,
            });
        }
        Ok(())
    }
}

/// The body (with its closing brace restored) and the mac of a written line.
fn split_mac(line: &str) -> Option<(String, &str)> {
    let line = line.trim_end_matches('\n');
    if line.len() < MAC_SUFFIX_LEN || !line.is_char_boundary(line.len() - MAC_SUFFIX_LEN) {
        return None;
    }
    let (body, suffix) = line.split_at(line.len() - MAC_SUFFIX_LEN);
    let mac = suffix.strip_prefix(",\"mac\":\"")?.strip_suffix("\"}")?;
    Some((format!("{body}}}"), mac))
}

/// What a pass over the file found, for reopening it.
struct Scan {
    /// Lines (a torn last line counts: a newline will end it).
    lines: u64,
    /// The last line, with its newline if it has one.
    last: Option<String>,
    /// The mac of the line the anchor names, if the file has that many lines.
    mac_at_anchor: Option<String>,
}

impl Scan {
    /// How the file differs from `anchor`, in words; `None` if it matches.
    fn against(&self, anchor: &Anchor) -> Option<String> {
        if self.lines < anchor.count {
            return Some(format!(
                "{} lines were written but {} are there: the last {} were removed",
                anchor.count,
                self.lines,
                anchor.count - self.lines
            ));
        }
        if anchor.count > 0 && self.mac_at_anchor.as_deref() != Some(anchor.tag.as_str()) {
            return Some(format!(
                "line {} is not the line written there: the log was replaced or rewritten",
                anchor.count
            ));
        }
        None
    }
}

/// Reads the file once, line by line.
fn scan(path: &Path, anchored: Option<u64>) -> io::Result<Scan> {
    let mut found = Scan {
        lines: 0,
        last: None,
        mac_at_anchor: None,
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e),
    };
    let mut reader = io::BufReader::new(file);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(found);
        }
        found.lines += 1;
        if Some(found.lines) == anchored {
            found.mac_at_anchor = split_mac(&line).map(|(_, mac)| mac.to_owned());
        }
        found.last = Some(line.clone());
    }
}

/// The outcome of checking an audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditVerdict {
    /// Every line chains correctly (and the log ends where its anchor says).
    Intact {
        /// Events checked.
        events: usize,
        /// Times the chain was restarted after a damaged line.
        restarts: usize,
        /// Whether an anchor was there to check the end against.
        anchored: bool,
    },
    /// A line does not chain, lines are missing, or the bastion found it cut at a start.
    Tampered {
        /// 1-based line number.
        line: usize,
        /// What was found.
        reason: String,
    },
}

/// Checks every line of an audit log, and its end against `anchor` (read before the file,
/// so a bastion writing meanwhile only makes the file longer than the anchor). Reads the
/// file line by line.
pub fn verify_log(
    path: &Path,
    key: &ChainKey,
    anchor: Option<&Anchor>,
) -> io::Result<AuditVerdict> {
    let tampered = |line: usize, reason: String| Ok(AuditVerdict::Tampered { line, reason });
    let mut chain = Chain::start(key, CHAIN_CONTEXT);
    let mut restarts = 0;
    let mut events = 0;
    let mut lines = 0usize;
    // A line that is not a record is fine only if the next one restarts the chain.
    let mut damaged: Option<usize> = None;
    let mut cut_found: Option<(usize, String)> = None;
    let mut mac_at_anchor: Option<String> = None;
    let mut reader = io::BufReader::new(File::open(path)?);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        lines += 1;
        let number = lines;
        let restarts_here = line.contains(&format!("\"event\":\"{RESTART_EVENT}\""));
        if let Some(bad) = damaged.take()
            && !restarts_here
        {
            return tampered(bad, "the line is not a complete audit record".into());
        }
        let Some((body, mac)) = split_mac(&line) else {
            damaged = Some(number);
            continue;
        };
        if anchor.is_some_and(|a| a.count == number as u64) {
            mac_at_anchor = Some(mac.to_owned());
        }
        if restarts_here {
            chain.reset(CHAIN_CONTEXT);
            restarts += 1;
        }
        let expected = parse_tag(mac).unwrap_or([0; 32]);
        if !tags_equal(&chain.append(body.as_bytes()), &expected) {
            return tampered(
                number,
                "the line was changed, or a line before it was removed or reordered".into(),
            );
        }
        if cut_found.is_none() && body.contains(&format!("\"event\":\"{ANCHOR_MISMATCH_EVENT}\"")) {
            let found = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|e| e["found"].as_str().map(str::to_owned))
                .unwrap_or_default();
            cut_found = Some((number, found));
        }
        events += 1;
    }
    if let Some(bad) = damaged {
        return tampered(bad, "the line is not a complete audit record".into());
    }
    if let Some(anchor) = anchor {
        let found = Scan {
            lines: lines as u64,
            last: None,
            mac_at_anchor,
        };
        if let Some(difference) = found.against(anchor) {
            return tampered(lines + 1, difference);
        }
    }
    if let Some((line, found)) = cut_found {
        return tampered(
            line,
            format!(
                "when the bastion started here, the log did not end where it had been written: {found}"
            ),
        );
    }
    Ok(AuditVerdict::Intact {
        events,
        restarts,
        anchored: anchor.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_policy::SystemClock;

    fn key() -> ChainKey {
        ChainKey::new(b"audit key")
    }

    fn sample(path: &Path) {
        let log = AuditLog::open(path, key(), None, SystemClock::shared()).unwrap();
        log.record(
            AuditEvent::new("auth.success")
                .with("user", "alice")
                .with("method", "publickey")
                .with("target", None::<String>),
        );
        log.record(
            AuditEvent::new("session.end")
                .with("bytes_up", 10)
                .with("reason", "client \"quit\""),
        );
    }

    #[test]
    fn lines_are_json_with_fields_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        sample(&path);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(first["event"], "auth.success");
        assert_eq!(first["user"], "alice");
        assert!(first.get("target").is_none());
        assert!(lines[0].starts_with("{\"time\":\""));
        assert_eq!(
            verify_log(&path, &key(), None).unwrap(),
            AuditVerdict::Intact {
                events: 2,
                restarts: 0,
                anchored: false
            }
        );
    }

    #[test]
    fn the_chain_continues_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        sample(&path);
        sample(&path);
        assert_eq!(
            verify_log(&path, &key(), None).unwrap(),
            AuditVerdict::Intact {
                events: 4,
                restarts: 0,
                anchored: false
            }
        );
    }

    #[test]
    fn edits_and_deletions_are_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        sample(&path);
        sample(&path);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replacen("alice", "mallory", 1)).unwrap();
        assert!(matches!(
            verify_log(&path, &key(), None).unwrap(),
            AuditVerdict::Tampered { line: 1, .. }
        ));
        let without_second: String = text
            .lines()
            .enumerate()
            .filter(|(i, _)| *i != 1)
            .map(|(_, l)| format!("{l}\n"))
            .collect();
        std::fs::write(&path, without_second).unwrap();
        assert!(matches!(
            verify_log(&path, &key(), None).unwrap(),
            AuditVerdict::Tampered { line: 2, .. }
        ));
        assert!(matches!(
            verify_log(&path, &ChainKey::new(b"other"), None).unwrap(),
            AuditVerdict::Tampered { line: 1, .. }
        ));
    }

    #[test]
    fn a_torn_last_line_restarts_the_chain_visibly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        sample(&path);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"time\":\"2026-").unwrap();
        drop(file);
        sample(&path);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(RESTART_EVENT));
        assert_eq!(
            verify_log(&path, &key(), None).unwrap(),
            AuditVerdict::Intact {
                events: 5,
                restarts: 1,
                anchored: false
            }
        );
    }

    fn anchored(dir: &Path) -> Arc<dyn StateStore> {
        Arc::new(portcullis_state::SqliteStore::open(&dir.join("state.db")).unwrap())
    }

    #[test]
    fn a_cut_end_is_found_by_verify_and_written_down_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let state = anchored(dir.path());
        let log = AuditLog::open(&path, key(), Some(state.clone()), SystemClock::shared()).unwrap();
        for n in 0..4 {
            log.record(AuditEvent::new("session.start").with("n", n));
        }
        drop(log);
        let anchor = anchors::get(state.as_ref(), &anchors::audit(state.as_ref()))
            .unwrap()
            .unwrap();
        assert_eq!(anchor.count, 4);
        assert!(matches!(
            verify_log(&path, &key(), Some(&anchor)).unwrap(),
            AuditVerdict::Intact {
                events: 4,
                anchored: true,
                ..
            }
        ));
        // Cut the last two lines: the chain of what is left is fine, the anchor is not.
        let text = std::fs::read_to_string(&path).unwrap();
        let kept: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
        std::fs::write(&path, kept).unwrap();
        let verdict = verify_log(&path, &key(), Some(&anchor)).unwrap();
        assert!(
            matches!(&verdict, AuditVerdict::Tampered { line: 3, reason } if reason.contains("the last 2 were removed")),
            "{verdict:?}"
        );
        // Reopened, the log says so in itself, and verify keeps saying so.
        let log = AuditLog::open(&path, key(), Some(state.clone()), SystemClock::shared()).unwrap();
        log.record(AuditEvent::new("session.start"));
        drop(log);
        let anchor = anchors::get(state.as_ref(), &anchors::audit(state.as_ref()))
            .unwrap()
            .unwrap();
        assert_eq!(anchor.count, 4);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(ANCHOR_MISMATCH_EVENT));
        let verdict = verify_log(&path, &key(), Some(&anchor)).unwrap();
        assert!(
            matches!(&verdict, AuditVerdict::Tampered { line: 3, reason } if reason.contains("did not end where")),
            "{verdict:?}"
        );
    }

    #[test]
    fn a_swapped_log_does_not_match_its_anchor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let state = anchored(dir.path());
        let log = AuditLog::open(&path, key(), Some(state.clone()), SystemClock::shared()).unwrap();
        log.record(AuditEvent::new("session.start").with("user", "alice"));
        log.record(AuditEvent::new("session.end").with("user", "alice"));
        drop(log);
        // An older copy of the log (one genuine line) with one genuine line of its own.
        let other = dir.path().join("other.jsonl");
        let log = AuditLog::open(&other, key(), None, SystemClock::shared()).unwrap();
        log.record(AuditEvent::new("session.start").with("user", "alice"));
        log.record(AuditEvent::new("server.stop"));
        drop(log);
        std::fs::copy(&other, &path).unwrap();
        let anchor = anchors::get(state.as_ref(), &anchors::audit(state.as_ref()))
            .unwrap()
            .unwrap();
        let verdict = verify_log(&path, &key(), Some(&anchor)).unwrap();
        assert!(
            matches!(&verdict, AuditVerdict::Tampered { reason, .. } if reason.contains("replaced")),
            "{verdict:?}"
        );
    }
}
