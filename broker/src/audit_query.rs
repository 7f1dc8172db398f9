//! Searching the audit log: the events matching a filter, read line by line so a large log
//! never has to fit in memory. Command lines and file transfers have their own filters.
//! With several nodes, [`query_shared`] searches every node's events in the shared store
//! (each found event names the node that logged it, `logged_by`).

use std::fs::File;
use std::io::{self, BufRead};
use std::path::Path;
use std::time::SystemTime;

use serde_json::Value;

/// Filters for [`query`].
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    /// Only events at or after this time.
    pub since: Option<SystemTime>,
    /// Only events of this type; a trailing `*` matches any ending (`sftp.*`).
    pub event: Option<String>,
    /// Only events about this user.
    pub user: Option<String>,
    /// Only events about this target.
    pub target: Option<String>,
    /// Only events of this session.
    pub session: Option<String>,
    /// Only `command` events whose line this pattern finds.
    pub command: Option<regex::Regex>,
    /// Only file-transfer events (see [`is_transfer`]) naming a path this pattern finds.
    pub files: Option<regex::Regex>,
    /// At most this many, the newest.
    pub limit: usize,
}

/// The fields of a file-transfer event that name files.
const PATH_FIELDS: [&str; 5] = ["path", "from", "to", "points_to", "name"];

/// Whether an event is about a file transfer: an sftp operation or a legacy scp file.
pub fn is_transfer(event: &Value) -> bool {
    event["event"]
        .as_str()
        .is_some_and(|name| name.starts_with("sftp.") || name.starts_with("scp."))
}

impl AuditFilter {
    /// [`AuditFilter::since`] as the log writes times (RFC 3339 in UTC with milliseconds:
    /// such times compare as text).
    fn since_text(&self) -> Option<String> {
        self.since
            .map(|t| humantime::format_rfc3339_millis(t).to_string())
    }

    /// How many events to return at most.
    fn limit(&self) -> usize {
        if self.limit == 0 {
            DEFAULT_LIMIT
        } else {
            self.limit
        }
    }

    /// Whether `event` passes every filter given. `since` is [`AuditFilter::since`] as text.
    fn matches(&self, event: &Value, since: Option<&str>) -> bool {
        let field = |key: &str, wanted: &Option<String>| {
            wanted
                .as_deref()
                .is_none_or(|wanted| event[key].as_str() == Some(wanted))
        };
        // RFC 3339 times in UTC with fixed precision compare as strings.
        since.is_none_or(|since| event["time"].as_str().is_some_and(|t| t >= since))
            && self.event.as_deref().is_none_or(|wanted| {
                let name = event["event"].as_str().unwrap_or_default();
                match wanted.strip_suffix('*') {
                    Some(prefix) => name.starts_with(prefix),
                    None => name == wanted,
                }
            })
            && field("user", &self.user)
            && field("target", &self.target)
            && field("session", &self.session)
            && self.command.as_ref().is_none_or(|pattern| {
                event["event"] == "command"
                    && event["line"].as_str().is_some_and(|l| pattern.is_match(l))
            })
            && self.files.as_ref().is_none_or(|pattern| {
                is_transfer(event)
                    && PATH_FIELDS
                        .iter()
                        .filter_map(|key| event[*key].as_str())
                        .any(|path| pattern.is_match(path))
            })
    }
}

/// How many events a search returns when not told.
const DEFAULT_LIMIT: usize = 1000;

/// Every node's events matching `filter` from the shared store, oldest first, ordered by
/// time across nodes; only the newest `limit` matches are kept. Column filters run in the
/// store; the rest here, page by page.
pub async fn query_shared(
    state: &dyn portcullis_state::StateStore,
    filter: &AuditFilter,
) -> Result<Vec<Value>, portcullis_state::StateError> {
    const PAGE: usize = 1000;
    let since = filter.since_text();
    let limit = filter.limit();
    let (event, event_prefix) = match filter.event.as_deref() {
        Some(event) => match event.strip_suffix('*') {
            Some(prefix) => (Some(prefix.to_owned()), true),
            None => (Some(event.to_owned()), false),
        },
        None => (None, false),
    };
    let mut page = portcullis_state::AuditPage {
        since: since.clone(),
        event,
        event_prefix,
        user: filter.user.clone(),
        target: filter.target.clone(),
        session: filter.session.clone(),
        before: None,
        limit: PAGE,
    };
    let mut found = Vec::new();
    'pages: loop {
        let lines = state.audit_page(page.clone()).await?;
        let full = lines.len() == PAGE;
        for line in lines {
            page.before = Some((line.time.clone(), line.node.clone(), line.seq));
            let Ok(mut event) = serde_json::from_str::<Value>(&line.body) else {
                continue;
            };
            if filter.matches(&event, since.as_deref()) {
                event["logged_by"] = Value::String(line.node);
                found.push(event);
                if found.len() == limit {
                    break 'pages;
                }
            }
        }
        if !full {
            break;
        }
    }
    found.reverse();
    Ok(found)
}

/// Events from the log matching `filter`, oldest first; only the newest `limit` matches
/// are kept.
pub fn query(path: &Path, filter: &AuditFilter) -> io::Result<Vec<Value>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let since = filter.since_text();
    let limit = filter.limit();
    let mut events = std::collections::VecDeque::with_capacity(limit.min(1024));
    for line in io::BufReader::new(file).lines() {
        let Ok(event) = serde_json::from_str::<Value>(&line?) else {
            continue;
        };
        if filter.matches(&event, since.as_deref()) {
            if events.len() == limit {
                events.pop_front();
            }
            events.push_back(event);
        }
    }
    Ok(events.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn search(events: &[Value], filter: AuditFilter) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let text: Vec<String> = events.iter().map(Value::to_string).collect();
        std::fs::write(&path, text.join("\n")).unwrap();
        query(&path, &filter)
            .unwrap()
            .iter()
            .map(|e| e["event"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn transfers_are_found_by_any_path_they_name_and_events_by_prefix() {
        let events = [
            json!({"event": "sftp.open", "session": "s1", "path": "/srv/a.txt", "target": "web01"}),
            json!({"event": "sftp.rename", "session": "s1", "from": "/tmp/x", "to": "/srv/b.txt"}),
            json!({"event": "sftp.symlink", "session": "s2", "path": "/tmp/l", "points_to": "/srv/c"}),
            json!({"event": "scp.file", "session": "s2", "path": "/in", "name": "srv-notes"}),
            json!({"event": "command", "session": "s1", "line": "cat /srv/a.txt"}),
        ];
        let files = |pattern: &str| AuditFilter {
            files: Some(regex::Regex::new(pattern).unwrap()),
            ..AuditFilter::default()
        };
        assert_eq!(
            search(&events, files("srv")),
            ["sftp.open", "sftp.rename", "sftp.symlink", "scp.file"]
        );
        assert_eq!(
            search(
                &events,
                AuditFilter {
                    session: Some("s1".into()),
                    ..files("")
                }
            ),
            ["sftp.open", "sftp.rename"]
        );
        let by_event = |event: &str| AuditFilter {
            event: Some(event.into()),
            ..AuditFilter::default()
        };
        assert_eq!(
            search(&events, by_event("sftp.*")),
            ["sftp.open", "sftp.rename", "sftp.symlink"]
        );
        assert_eq!(search(&events, by_event("sftp.")), Vec::<String>::new());
        assert_eq!(
            search(
                &events,
                AuditFilter {
                    target: Some("web01".into()),
                    ..AuditFilter::default()
                }
            ),
            ["sftp.open"]
        );
    }
}
