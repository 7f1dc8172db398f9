//! An audit line made ready to leave the bastion: its id, its place in the log, the node
//! that wrote it, and the JSON receivers get.
//!
//! The id is the first 128 bits of the line's chain tag (`mac`): the same line always has
//! the same id, however often it is sent (after an outage, a restart, a lost position), and
//! two lines never share one, since each tag covers the line and every line before it. A
//! receiver that drops ids it has seen keeps exactly one copy of each event.

use serde_json::{Map, Value};

/// Hex digits of the chain tag that make the id.
const ID_HEX: usize = 32;

/// One audit event, as forwarders send it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// Unique and stable (see the module's comment).
    pub id: String,
    /// Its line number in this node's audit log (1 for the first line).
    pub seq: u64,
    /// The event's name (`session.start`, `alert`).
    pub event: String,
    /// The event's time as written (RFC 3339, UTC).
    pub time: String,
    /// The line's fields (the event's own, `time`, `event` and `mac`).
    pub fields: Map<String, Value>,
    /// `{"id":…,"seq":…,"node":…,` then the line's own fields in their written order.
    pub json: String,
}

impl Outgoing {
    /// The line numbered `seq` of the log of `node`; `None` for a line that is not an
    /// audit event (a line damaged by a crash mid-write, which `audit verify` reports).
    pub fn from_line(line: &str, seq: u64, node: &str) -> Option<Self> {
        let fields: Map<String, Value> = serde_json::from_str(line).ok()?;
        let mac = fields.get("mac")?.as_str()?;
        let event = fields.get("event")?.as_str()?.to_owned();
        let time = fields.get("time")?.as_str()?.to_owned();
        if mac.len() < ID_HEX || !mac.is_ascii() {
            return None;
        }
        let id = mac[..ID_HEX].to_owned();
        // The line as written is kept byte for byte after the added fields: re-serializing
        // would reorder its keys.
        let rest = line.trim_end().strip_prefix('{')?;
        let mut json = String::with_capacity(line.len() + 96);
        json.push_str("{\"id\":");
        json.push_str(&Value::from(id.as_str()).to_string());
        json.push_str(",\"seq\":");
        json.push_str(&seq.to_string());
        json.push_str(",\"node\":");
        json.push_str(&Value::from(node).to_string());
        if rest != "}" {
            json.push(',');
        }
        json.push_str(rest);
        Some(Self {
            id,
            seq,
            event,
            time,
            fields,
            json,
        })
    }

    /// The alert's severity, for an `alert` event.
    pub fn severity(&self) -> Option<&str> {
        (self.event == crate::alerts::EVENT)
            .then(|| self.fields.get("severity")?.as_str())
            .flatten()
    }
}

/// Which events a forwarder carries: names or globs (`*`, `session.*`, `alert`).
#[derive(Debug, Clone)]
pub struct EventFilter(Vec<String>);

impl EventFilter {
    /// A filter taking the events any of `patterns` matches.
    pub fn new(patterns: &[String]) -> Self {
        Self(patterns.iter().map(|p| p.trim().to_owned()).collect())
    }

    /// Whether `event` is carried.
    pub fn takes(&self, event: &str) -> bool {
        self.0
            .iter()
            .any(|pattern| portcullis_config::glob::matches(pattern, event))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const MAC: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn a_line_gets_its_id_place_and_node_and_keeps_its_fields_in_order() {
        let line = format!(
            r#"{{"time":"2026-12-07T05:00:00.000Z","event":"command","user":"alice","line":"ls \"x\"","mac":"{MAC}"}}"#
        );
        let out = Outgoing::from_line(&line, 7, "node-a").unwrap();
        assert_eq!(out.id, "00112233445566778899aabbccddeeff");
        assert_eq!(out.event, "command");
        assert_eq!(out.time, "2026-12-07T05:00:00.000Z");
        assert!(out.json.starts_with(
            r#"{"id":"00112233445566778899aabbccddeeff","seq":7,"node":"node-a","time":"#
        ));
        let parsed: Map<String, Value> = serde_json::from_str(&out.json).unwrap();
        assert_eq!(parsed["line"], "ls \"x\"");
        assert_eq!(parsed["mac"], MAC);
        assert_eq!(out.severity(), None);
    }

    #[test]
    fn lines_that_are_not_events_are_not_sent() {
        assert_eq!(Outgoing::from_line("{\"time\":\"t\",\"ev", 1, "n"), None);
        assert_eq!(
            Outgoing::from_line(r#"{"time":"t","event":"x"}"#, 1, "n"),
            None
        );
        assert_eq!(
            Outgoing::from_line(r#"{"time":"t","event":"x","mac":"short"}"#, 1, "n"),
            None
        );
        assert_eq!(Outgoing::from_line("[1,2]", 1, "n"), None);
    }

    #[test]
    fn an_alert_carries_its_severity() {
        let line = format!(
            r#"{{"time":"t","event":"alert","alert":"user_locked","severity":"warning","mac":"{MAC}"}}"#
        );
        let out = Outgoing::from_line(&line, 1, "n").unwrap();
        assert_eq!(out.severity(), Some("warning"));
    }

    #[test]
    fn filters_take_names_and_globs() {
        let all = EventFilter::new(&["*".into()]);
        assert!(all.takes("session.start") && all.takes("alert"));
        let some = EventFilter::new(&["alert".into(), "session.*".into()]);
        assert!(some.takes("alert") && some.takes("session.end"));
        assert!(!some.takes("command") && !some.takes("alerts"));
    }
}
