//! What the file-transfer audits (sftp, legacy scp) find: one audit event per file
//! operation, written with the session and channel it happened on.

use serde_json::Value;

use crate::live::SessionShared;
use crate::services::Services;

/// One audit event: its name (`sftp.open`, `scp.file`, …) and fields.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferEvent {
    /// `sftp.open`, `sftp.close`, `scp.file`, …
    pub name: &'static str,
    /// Its fields.
    pub fields: Vec<(&'static str, Value)>,
}

impl TransferEvent {
    /// One line for the channel's recording (a marker): the name, then `key=value` for each
    /// field given, e.g. `sftp.close path=/srv/a mode=read bytes_read=12 … outcome=closed`.
    pub fn describe(&self) -> String {
        let mut line = self.name.to_owned();
        for (key, value) in &self.fields {
            match value {
                Value::Null => continue,
                Value::String(text) => line.push_str(&format!(" {key}={text}")),
                other => line.push_str(&format!(" {key}={other}")),
            }
        }
        crate::text::one_line(&line).into_owned()
    }
}

/// Writes file-transfer events to the audit log, each naming the session and channel.
pub fn record(
    services: &Services,
    session: &SessionShared,
    channel: &str,
    events: Vec<TransferEvent>,
) {
    for event in events {
        let mut audit = session.audit(event.name).with("channel", channel);
        for (key, value) in event.fields {
            audit = audit.with(key, value);
        }
        services.audit.record(audit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_event_reads_as_one_line_with_its_given_fields() {
        let event = TransferEvent {
            name: "sftp.close",
            fields: vec![
                ("path", json!("/srv/a b\nc")),
                ("bytes_read", json!(12)),
                ("sha256", json!(null)),
                ("outcome", json!("closed")),
            ],
        };
        let line = event.describe();
        assert!(line.starts_with("sftp.close path=/srv/a b"), "{line}");
        assert!(line.ends_with("bytes_read=12 outcome=closed"), "{line}");
        assert!(!line.contains('\n') && !line.contains("sha256"), "{line}");
    }
}
