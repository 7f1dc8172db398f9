//! Moves the audit events the command line left in the state store (`vault::events`) into
//! this node's audit log: at start, then every second while serving. On several nodes each
//! event is claimed by exactly one of them (the row's removal), so it is audited once.

use std::sync::Arc;
use std::time::Duration;

use crate::audit::AuditEvent;
use crate::services::Services;
use crate::vault::VaultError;

/// How often the store is looked at.
const EVERY: Duration = Duration::from_secs(1);

/// Delivers until shutdown.
pub async fn run(services: Arc<Services>) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = services.shutdown.cancelled() => return,
        }
        match deliver(&services).await {
            Ok(_) => failing = false,
            Err(error) => {
                if !failing {
                    tracing::warn!(%error, "cannot collect the command line's audit events yet; retrying");
                }
                failing = true;
            }
        }
    }
}

/// Audits every event left and not yet claimed; returns how many this node audited.
pub async fn deliver(services: &Services) -> Result<usize, VaultError> {
    let mut delivered = 0;
    for left in services.vault.left_events().await? {
        match left {
            Ok(event) => {
                if !services.vault.claim_event(&event.row).await? {
                    continue;
                }
                let mut audit = AuditEvent::new(event.event)
                    .with("at", humantime::format_rfc3339_millis(event.at).to_string())
                    .with("via", "command line");
                for (key, value) in event.fields.clone() {
                    audit = audit.with_field(key, value);
                }
                if let Err(error) = services.audit.record_required(audit) {
                    // Not lost: left again for the next pass.
                    services
                        .vault
                        .leave_event(event.event, event.fields)
                        .await?;
                    tracing::warn!(%error, event = event.event, "a command-line event waits for the audit log");
                    continue;
                }
                delivered += 1;
            }
            Err(rejected) => {
                // Taken out first, so it is reported once.
                if services.vault.claim_event(&rejected.row).await? {
                    tracing::error!("ALERT: {rejected}; it is not audited as an event");
                    services.audit.record(
                        AuditEvent::new("audit.left_event_rejected")
                            .with("reason", rejected.to_string()),
                    );
                    let message = format!(
                        "{rejected}: an audit event left in the state store is forged or damaged"
                    );
                    services
                        .audit
                        .record(crate::alerts::tampered("left_event", message));
                }
            }
        }
    }
    Ok(delivered)
}
