//! The session index in the state store: a row when a session starts, its end when it
//! ends; and, when the bastion starts, the sessions a previous run of it left open (it was
//! killed, or the machine went down) are ended as `bastion_crashed` and audited, so every
//! `session.start` in the audit log finds its `session.end`, and their recordings sealed.
//!
//! The index is a record, not a gate: a store that cannot write it is logged as an error
//! and the session goes on (its checks go through `authorize`, which fails closed).

use portcullis_state::{SessionEnd, SessionRecord};

use crate::live::{EndReason, SessionShared};
use crate::services::Services;

/// The code of a session ended because the bastion that ran it stopped without ending it
/// (it was killed, or the machine went down).
pub const BASTION_CRASHED: &str = "bastion_crashed";

/// Indexes `session`, which has just authenticated.
pub async fn opened(services: &Services, session: &SessionShared) {
    let record = SessionRecord {
        id: session.id.clone(),
        user: session.user().unwrap_or_default().to_owned(),
        target: session.target().map(str::to_owned),
        client: session.client.to_string(),
        started_at: session.started_at,
        ended: None,
        node: None,
        progress: None,
        grant: None,
    };
    if let Err(error) = services.state.open_session(record).await {
        tracing::error!(parent: &session.span, %error, "cannot index the session");
    }
}

/// How many live sessions the shared index lists on the other nodes that pass `matches`
/// (none with a store only this node uses: the registry has them all).
pub async fn count_elsewhere(
    services: &Services,
    matches: impl Fn(&SessionRecord) -> bool,
) -> Result<usize, portcullis_state::StateError> {
    let Some(here) = services.state.node() else {
        return Ok(0);
    };
    Ok(services
        .state
        .open_sessions()
        .await?
        .iter()
        .filter(|s| s.node.as_deref() != Some(here) && matches(s))
        .count())
}

/// Records how `session` ended.
pub async fn closed(
    services: &Services,
    session: &SessionShared,
    reason: &EndReason,
    bytes_from_client: u64,
    bytes_to_client: u64,
) {
    let end = SessionEnd {
        at: services.clock.now(),
        reason: reason.code().to_owned(),
        bytes_from_client,
        bytes_to_client,
    };
    if let Err(error) = services.state.close_session(&session.id, end).await {
        tracing::error!(parent: &session.span, %error, "cannot record the session's end in the index");
    }
}

/// Ends, in the index and the audit log, the sessions a previous run left open. Runs before
/// this run accepts anything, so no session of its own can be among them. With several
/// nodes sharing the index, a node ends only the sessions it ran: the others' are live.
pub async fn end_left_open(services: &Services) {
    let left = match services.state.open_sessions().await {
        Ok(left) => left,
        Err(error) => {
            tracing::error!(%error, "cannot read the session index to end what a previous run left open");
            return;
        }
    };
    let own_node = services.state.node().map(str::to_owned);
    let mut ended = Vec::new();
    for record in left {
        if record.node.is_some() && record.node != own_node {
            continue;
        }
        let end = SessionEnd {
            at: services.clock.now(),
            reason: BASTION_CRASHED.to_owned(),
            bytes_from_client: 0,
            bytes_to_client: 0,
        };
        match services.state.close_session(&record.id, end).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(error) => {
                tracing::error!(session = %record.id, %error, "cannot end a session left open");
                continue;
            }
        }
        tracing::warn!(session = %record.id, user = %crate::text::Shown(&record.user), "a session was left open by a bastion that stopped without ending it; recorded as ended");
        services.audit.record(
            crate::audit::AuditEvent::new("session.end")
                .with("session", &record.id)
                .with("user", &record.user)
                .with("source", &record.client)
                .with("target", record.target.as_deref())
                .with("reason", BASTION_CRASHED)
                .with("side", "bastion")
                .with(
                    "detail",
                    "bastion crashed: it stopped without ending this session (killed, or the machine went down); its byte counts were not kept",
                ),
        );
        ended.push(record.id);
    }
    super::abandoned::seal_recordings(services, &ended).await;
}
