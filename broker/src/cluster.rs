//! This node among several sharing a PostgreSQL state store: every `[cluster] heartbeat` it
//! says it is alive (with its live sessions' byte counts, so any node can show them), and
//! looks for nodes that have stopped saying so. A node silent for longer than the lease is
//! taken for lost (SIGKILL, a machine gone): its sessions are ended in the index as
//! `node_lost` and audited here, and its recordings that were never sealed are flagged —
//! by whichever survivor claims it first, once.
//!
//! With the SQLite backend there is one node, and nothing to do.

use std::sync::Arc;

use portcullis_state::{LostNode, NodeBeat};

use crate::audit::AuditEvent;
use crate::services::Services;

/// The code of a session ended because the node running it was lost.
pub const NODE_LOST: &str = "node_lost";

/// Beats and watches until shutdown.
pub async fn keep_alive(services: Arc<Services>) {
    if services.state.node().is_none() {
        return;
    }
    let mut tick = tokio::time::interval(services.config.cluster.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = services.shutdown.cancelled() => return,
        }
        let beat = NodeBeat {
            admin: services.admin_listening.get().map(ToString::to_string),
            sessions: services
                .registry
                .list()
                .iter()
                .map(|session| {
                    use std::sync::atomic::Ordering::Relaxed;
                    (
                        session.id.clone(),
                        session.bytes_from_client.load(Relaxed),
                        session.bytes_to_client.load(Relaxed),
                    )
                })
                .collect(),
        };
        let beaten = services.state.heartbeat(beat).await;
        let claimed = match beaten {
            Ok(()) => {
                services
                    .state
                    .claim_lost_nodes(services.config.cluster.lease)
                    .await
            }
            Err(error) => Err(error),
        };
        match claimed {
            Ok(lost) => {
                if failing {
                    tracing::info!("the state database answers heartbeats again");
                    failing = false;
                }
                for node in lost {
                    node_lost(&services, node).await;
                }
            }
            Err(error) => {
                if !failing {
                    tracing::error!(%error, "cannot send this node's heartbeat");
                    failing = true;
                }
            }
        }
    }
}

/// Audits a lost node, the sessions its loss ended and its recordings left unsealed.
async fn node_lost(services: &Services, lost: LostNode) {
    let last = humantime::format_rfc3339_millis(lost.seen_at).to_string();
    tracing::error!(
        node = %lost.node,
        sessions = lost.sessions.len(),
        last_heartbeat = %last,
        "ALERT: node {} stopped sending heartbeats; its sessions are recorded as ended",
        lost.node
    );
    services.audit.record(
        AuditEvent::new("node.lost")
            .with("node", &lost.node)
            .with("last_heartbeat", &last)
            .with("sessions", lost.sessions.len()),
    );
    for record in &lost.sessions {
        let end = record.ended.as_ref();
        services.audit.record(
            AuditEvent::new("session.end")
                .with("session", &record.id)
                .with("node", &lost.node)
                .with("user", &record.user)
                .with("source", &record.client)
                .with("target", record.target.as_deref())
                .with("reason", NODE_LOST)
                .with("side", "bastion")
                .with("bytes_from_client", end.map(|e| e.bytes_from_client))
                .with("bytes_to_client", end.map(|e| e.bytes_to_client))
                .with(
                    "detail",
                    "the node running this session stopped sending heartbeats; byte counts are as of its last one",
                ),
        );
        let prefix = crate::anchors::recording(&format!("{}-", record.id));
        match services.state.anchors_named(&prefix).await {
            Ok(anchors) => {
                for (name, _) in anchors.into_iter().filter(|(_, a)| !a.sealed) {
                    let recording = name.trim_start_matches("recording:");
                    services.audit.record(
                        AuditEvent::new("recording.unsealed")
                            .with("recording", recording)
                            .with("session", &record.id)
                            .with("node", &lost.node)
                            .with("reason", "its node was lost before sealing it"),
                    );
                }
            }
            Err(error) => {
                tracing::error!(session = %record.id, %error, "cannot list a lost session's recordings");
            }
        }
    }
}
