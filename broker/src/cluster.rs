//! This node among several sharing a PostgreSQL state store: every `[cluster] heartbeat` it
//! says it is alive (with its live sessions' byte counts, so any node can show them), and
//! looks for nodes that have stopped saying so. A node silent for longer than the lease is
//! taken for lost (SIGKILL, a machine gone): its sessions are ended in the index as
//! `node_lost` and audited here, and its recordings that were never sealed are flagged —
//! by whichever survivor claims it first, once.
//!
//! A node that cannot reach the database refuses new logins (see the SSH handler's
//! banner) and keeps its live sessions for `[cluster] database_grace`, then ends them: past
//! that, a lock or a revocation placed meanwhile would go unheard for too long.
//!
//! With the SQLite backend there is one node, and nothing to do.

use std::sync::Arc;

use portcullis_state::{LostNode, NodeBeat, SessionProgress};

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
    let heartbeat = services.config.cluster.heartbeat;
    let mut failing = false;
    let mut outage = Outage::default();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = services.shutdown.cancelled() => return,
        }
        outage.check(&services);
        let beat = NodeBeat {
            admin: services
                .admin_listening
                .get()
                .map(|(address, fingerprint)| format!("{address} {fingerprint}")),
            sessions: services
                .registry
                .list()
                .iter()
                .map(|session| {
                    use std::sync::atomic::Ordering::Relaxed;
                    SessionProgress {
                        id: session.id.clone(),
                        bytes_from_client: session.bytes_from_client.load(Relaxed),
                        bytes_to_client: session.bytes_to_client.load(Relaxed),
                        grant: session.grant(),
                    }
                })
                .collect(),
        };
        // A database that does not answer must not hold up the outage's clock.
        let claimed = tokio::time::timeout(heartbeat, async {
            services.state.heartbeat(beat).await?;
            services
                .state
                .claim_lost_nodes(services.config.cluster.lease)
                .await
        })
        .await
        .unwrap_or_else(|_| {
            Err(portcullis_state::StateError::Unreachable {
                location: services.state.location(),
                detail: format!(
                    "no answer to a heartbeat within {}",
                    humantime::format_duration(heartbeat)
                ),
            })
        });
        match claimed {
            Ok(lost) => {
                if failing {
                    tracing::info!("the state database answers heartbeats again");
                    failing = false;
                }
                outage.over();
                for node in lost {
                    node_lost(&services, node).await;
                }
            }
            Err(error) => {
                if !failing {
                    tracing::error!(%error, "cannot send this node's heartbeat");
                    failing = true;
                }
                outage.failed(&services);
            }
        }
    }
}

/// How long the database has been out of reach, and whether this node's sessions were
/// ended for it.
#[derive(Default)]
struct Outage {
    since: Option<std::time::Instant>,
    sessions_ended: bool,
}

impl Outage {
    /// A heartbeat failed (or the store says its connection is down).
    fn failed(&mut self, services: &Services) {
        if self.since.is_none() {
            self.since = Some(services.clock.instant());
        }
    }

    /// The database answered.
    fn over(&mut self) {
        *self = Self::default();
    }

    /// Ends the live sessions once the outage has lasted the grace.
    fn check(&mut self, services: &Services) {
        if !services.state.reachable() {
            self.failed(services);
        }
        let grace = services.config.cluster.database_grace;
        let Some(since) = self.since else { return };
        if self.sessions_ended || services.clock.instant().duration_since(since) < grace {
            return;
        }
        self.sessions_ended = true;
        let why = format!(
            "its state database has been unreachable for {}",
            humantime::format_duration(grace)
        );
        let live = services.registry.list();
        tracing::error!(
            sessions = live.len(),
            "ALERT: {why}; ending this node's live sessions"
        );
        for session in live {
            session
                .control
                .end(crate::live::EndReason::StateFailed(why.clone()));
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
    let message = format!(
        "node {} stopped sending heartbeats (last at {last}); its {} sessions are recorded as ended",
        lost.node,
        lost.sessions.len()
    );
    services.audit.record(
        crate::alerts::Alert::NodeLost
            .event(message)
            .with("node", &lost.node),
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
