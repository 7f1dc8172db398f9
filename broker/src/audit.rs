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
use std::sync::Mutex;
use std::time::SystemTime;

use portcullis_recorder::chain::{Chain, ChainKey, parse_tag, tags_equal};
use serde::Serialize;

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
    fields: Vec<(&'static str, serde_json::Value)>,
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
            Ok(value) => self.fields.push((key, value)),
        }
        self
    }

    /// The event type.
    pub fn kind(&self) -> &'static str {
        self.event
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
#[error("audit log {}: {source}", path.display())]
pub struct AuditError {
    path: PathBuf,
    source: io::Error,
}

/// The open audit log.
pub struct AuditLog {
    path: PathBuf,
    inner: Mutex<Writer>,
}

struct Writer {
    file: File,
    chain: Chain,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .finish()
    }
}

impl AuditLog {
    /// Opens (creating if needed) the log and continues its chain.
    pub fn open(path: &Path, key: ChainKey) -> Result<Self, AuditError> {
        let error = |source| AuditError {
            path: path.to_owned(),
            source,
        };
        let last = last_line(path).map_err(error)?;
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(error)?;
        let (chain, restart) = match last.as_deref() {
            None => (Chain::start(&key, CHAIN_CONTEXT), false),
            Some(line) => match split_mac(line).and_then(|(_, mac)| parse_tag(mac)) {
                Some(tag) => (Chain::resume(&key, tag), false),
                None => (Chain::start(&key, CHAIN_CONTEXT), true),
            },
        };
        if restart && !last.as_deref().is_some_and(|l| l.ends_with('\n')) {
            // The damaged line was cut mid-write: end it so the next event starts afresh.
            file.write_all(b"\n").map_err(error)?;
        }
        let log = Self {
            path: path.to_owned(),
            inner: Mutex::new(Writer { file, chain }),
        };
        if restart {
            log.record(AuditEvent::new(RESTART_EVENT).with(
                "reason",
                "the previous line was incomplete or damaged (an interrupted write?)",
            ));
        }
        Ok(log)
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends an event. A failure to write is logged, never propagated: auditing must not
    /// be the thing that takes the bastion down mid-session.
    pub fn record(&self, event: AuditEvent) {
        if let Err(error) = self.try_record(&event) {
            tracing::error!(event = event.kind(), %error, "cannot write to the audit log");
        }
    }

    fn try_record(&self, event: &AuditEvent) -> io::Result<()> {
        let body = event.render(SystemTime::now());
        let mut writer = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if event.kind() == RESTART_EVENT {
            writer.chain.reset(CHAIN_CONTEXT);
        }
        let tag = writer.chain.append(body.as_bytes());
        let mut line = body;
        line.pop(); // the closing brace
        line.push_str(",\"mac\":\"");
        line.push_str(&hex::encode(tag));
        line.push_str("\"}\n");
        writer.file.write_all(line.as_bytes())
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

/// The last line of the file, with its newline if it has one; `None` for no file or empty.
fn last_line(path: &Path) -> io::Result<Option<String>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut last = None;
    let mut reader = io::BufReader::new(file);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(last);
        }
        last = Some(line.clone());
    }
}

/// Filters for [`query`].
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    /// Only events at or after this time.
    pub since: Option<SystemTime>,
    /// Only events of this type.
    pub event: Option<String>,
    /// Only events about this user.
    pub user: Option<String>,
    /// Only events about this target.
    pub target: Option<String>,
    /// Only `command` events whose line this pattern finds.
    pub command: Option<regex::Regex>,
    /// At most this many, the newest.
    pub limit: usize,
}

/// Events from the log matching `filter`, oldest first. The file is read line by line and
/// only the newest `limit` matches are kept, so a large log never has to fit in memory.
pub fn query(path: &Path, filter: &AuditFilter) -> io::Result<Vec<serde_json::Value>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let since = filter
        .since
        .map(|t| humantime::format_rfc3339_millis(t).to_string());
    let limit = if filter.limit == 0 {
        1000
    } else {
        filter.limit
    };
    let matches = |event: &serde_json::Value| {
        // RFC 3339 times in UTC with fixed precision compare as strings.
        since
            .as_deref()
            .is_none_or(|since| event["time"].as_str().is_some_and(|t| t >= since))
            && filter
                .event
                .as_deref()
                .is_none_or(|e| event["event"].as_str() == Some(e))
            && filter
                .user
                .as_deref()
                .is_none_or(|u| event["user"].as_str() == Some(u))
            && filter
                .target
                .as_deref()
                .is_none_or(|t| event["target"].as_str() == Some(t))
            && filter.command.as_ref().is_none_or(|pattern| {
                event["event"] == "command"
                    && event["line"].as_str().is_some_and(|l| pattern.is_match(l))
            })
    };
    let mut events = std::collections::VecDeque::with_capacity(limit.min(1024));
    for line in io::BufReader::new(file).lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line?) else {
            continue;
        };
        if matches(&event) {
            if events.len() == limit {
                events.pop_front();
            }
            events.push_back(event);
        }
    }
    Ok(events.into())
}

/// The outcome of checking an audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditVerdict {
    /// Every line chains correctly.
    Intact {
        /// Events checked.
        events: usize,
        /// Times the chain was restarted after a damaged line.
        restarts: usize,
    },
    /// A line does not chain.
    Tampered {
        /// 1-based line number.
        line: usize,
        /// What was found.
        reason: String,
    },
}

/// Checks every line of an audit log.
pub fn verify_log(path: &Path, key: &ChainKey) -> io::Result<AuditVerdict> {
    let text = std::fs::read_to_string(path)?;
    let mut chain = Chain::start(key, CHAIN_CONTEXT);
    let mut restarts = 0;
    let mut events = 0;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    for (index, line) in lines.iter().enumerate() {
        let number = index + 1;
        let Some((body, mac)) = split_mac(line) else {
            let next_restarts = lines
                .get(index + 1)
                .is_some_and(|next| next.contains(&format!("\"event\":\"{RESTART_EVENT}\"")));
            if next_restarts {
                continue;
            }
            return Ok(AuditVerdict::Tampered {
                line: number,
                reason: "the line is not a complete audit record".into(),
            });
        };
        if body.contains(&format!("\"event\":\"{RESTART_EVENT}\"")) {
            chain.reset(CHAIN_CONTEXT);
            restarts += 1;
        }
        let expected = parse_tag(mac).unwrap_or([0; 32]);
        if !tags_equal(&chain.append(body.as_bytes()), &expected) {
            return Ok(AuditVerdict::Tampered {
                line: number,
                reason: "the line was changed, or a line before it was removed or reordered".into(),
            });
        }
        events += 1;
    }
    Ok(AuditVerdict::Intact { events, restarts })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ChainKey {
        ChainKey::new(b"audit key")
    }

    fn sample(path: &Path) {
        let log = AuditLog::open(path, key()).unwrap();
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
            verify_log(&path, &key()).unwrap(),
            AuditVerdict::Intact {
                events: 2,
                restarts: 0
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
            verify_log(&path, &key()).unwrap(),
            AuditVerdict::Intact {
                events: 4,
                restarts: 0
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
            verify_log(&path, &key()).unwrap(),
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
            verify_log(&path, &key()).unwrap(),
            AuditVerdict::Tampered { line: 2, .. }
        ));
        assert!(matches!(
            verify_log(&path, &ChainKey::new(b"other")).unwrap(),
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
            verify_log(&path, &key()).unwrap(),
            AuditVerdict::Intact {
                events: 5,
                restarts: 1
            }
        );
    }
}
