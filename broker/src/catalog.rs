//! The recordings on disk, read from their headers: what `recordings list` and the API show.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_recorder::Header;
use portcullis_recorder::verify::read_header;

/// One recording.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its id (the file stem).
    pub id: String,
    /// The .cast file.
    pub path: PathBuf,
    /// Its header, if readable.
    pub header: Option<Header>,
    /// Size of the .cast file in bytes.
    pub size: u64,
}

impl Entry {
    /// When it started, from the header.
    pub fn started(&self) -> Option<SystemTime> {
        self.header
            .as_ref()
            .map(|h| UNIX_EPOCH + Duration::from_secs(h.timestamp))
    }

    /// A JSON description for the API.
    pub fn to_json(&self) -> serde_json::Value {
        let facts = self
            .header
            .as_ref()
            .and_then(|h| h.portcullis.clone())
            .unwrap_or_default();
        serde_json::json!({
            "id": self.id,
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
        if path.extension().is_none_or(|e| e != "cast") {
            continue;
        }
        let id = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let size = std::fs::metadata(&path)
            .map(|m| m.len())
            .unwrap_or_default();
        let header = read_header(&path).ok();
        let facts = header.as_ref().and_then(|h| h.portcullis.as_ref());
        let keep = filter
            .user
            .as_ref()
            .is_none_or(|u| facts.is_some_and(|f| &f.user == u))
            && filter
                .target
                .as_ref()
                .is_none_or(|t| facts.is_some_and(|f| &f.target == t))
            && filter.since.is_none_or(|since| {
                header
                    .as_ref()
                    .is_some_and(|h| UNIX_EPOCH + Duration::from_secs(h.timestamp) >= since)
            });
        if keep {
            entries.push(Entry {
                id,
                path,
                header,
                size,
            });
        }
    }
    entries.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(entries)
}

/// Whether `id` can only name a recording file in the directory (no path tricks).
pub fn is_recording_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}
