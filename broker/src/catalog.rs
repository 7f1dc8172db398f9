//! The recordings on disk, read from their headers: what `recordings list` and the API show.
//! Terminals are recorded as asciicast (`<id>.cast`), channels without one as exact bytes per
//! stream (`<id>.rec`, see [`portcullis_recorder::framed`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_recorder::framed;
use portcullis_recorder::verify::{RecordingInfo, read_info};

/// The file extensions of recordings: asciicast, then framed.
const EXTENSIONS: [&str; 2] = ["cast", framed::EXTENSION];

/// The file of recording `id` in `dir`, whichever its format.
pub fn path_of(dir: &Path, id: &str) -> Option<PathBuf> {
    if !is_recording_id(id) {
        return None;
    }
    EXTENSIONS
        .iter()
        .map(|ext| dir.join(format!("{id}.{ext}")))
        .find(|path| path.exists())
}

/// One recording.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its id (the file stem).
    pub id: String,
    /// The recording file.
    pub path: PathBuf,
    /// What its header says, if it is readable.
    pub info: Option<RecordingInfo>,
    /// Size of the file in bytes.
    pub size: u64,
}

impl Entry {
    /// The recording in `path`, described from its header.
    pub fn of(path: PathBuf) -> Self {
        Self {
            id: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            size: std::fs::metadata(&path)
                .map(|m| m.len())
                .unwrap_or_default(),
            info: read_info(&path).ok(),
            path,
        }
    }

    /// When it started, from the header.
    pub fn started(&self) -> Option<SystemTime> {
        self.info
            .as_ref()
            .map(|i| UNIX_EPOCH + Duration::from_secs(i.timestamp))
    }

    /// Who, what and where, from the header (empty when it is unreadable).
    pub fn facts(&self) -> portcullis_recorder::SessionFacts {
        self.info
            .as_ref()
            .and_then(|i| i.facts.clone())
            .unwrap_or_default()
    }

    /// `asciicast` (a terminal, plays back) or `bytes` (exact bytes per stream).
    pub fn format(&self) -> &'static str {
        if self
            .path
            .extension()
            .is_some_and(|e| e == framed::EXTENSION)
        {
            "bytes"
        } else {
            "asciicast"
        }
    }

    /// A JSON description for the API.
    pub fn to_json(&self) -> serde_json::Value {
        let facts = self.facts();
        serde_json::json!({
            "id": self.id,
            "format": self.format(),
            "session": facts.session,
            "user": facts.user,
            "target": facts.target,
            "login": facts.login,
            "kind": facts.kind,
            "command": facts.command,
            "client": facts.client,
            "started_at": self.started().map(|t| humantime::format_rfc3339_seconds(t).to_string()),
            "size": self.size,
        })
    }
}

/// Filters for [`list`].
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// Only this user's.
    pub user: Option<String>,
    /// Only this target's.
    pub target: Option<String>,
    /// Only those started at or after this time.
    pub since: Option<SystemTime>,
}

/// The recordings in `dir` that match `filter`, oldest first.
pub fn list(dir: &Path, filter: &Filter) -> std::io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if !path
            .extension()
            .is_some_and(|e| EXTENSIONS.iter().any(|ext| e == *ext))
        {
            continue;
        }
        let entry = Entry::of(path);
        let info = entry.info.as_ref();
        let facts = info.and_then(|i| i.facts.as_ref());
        let keep = filter
            .user
            .as_ref()
            .is_none_or(|u| facts.is_some_and(|f| &f.user == u))
            && filter
                .target
                .as_ref()
                .is_none_or(|t| facts.is_some_and(|f| &f.target == t))
            && filter.since.is_none_or(|since| {
                info.is_some_and(|i| UNIX_EPOCH + Duration::from_secs(i.timestamp) >= since)
            });
        if keep {
            entries.push(entry);
        }
    }
    entries.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(entries)
}

/// Whether `id` can only name a recording file in the directory (no path tricks).
pub fn is_recording_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}
