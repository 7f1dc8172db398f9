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
