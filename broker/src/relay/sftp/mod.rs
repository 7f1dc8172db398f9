//! The file-transfer audit of an sftp channel (and so of OpenSSH's scp, which speaks SFTP),
//! and its file rules: both directions' bytes are cut into packets as they pass ([`wire`]),
//! the conversation is followed ([`tracker`]) into one audit event per file operation, and
//! where `kind = "sftp"` rules apply, each request is checked ([`rules`]) before it goes on.
//!
//! ```text
//! uplink ── client bytes ──▶ Direction(client) ─┬─▶ Tracker ─▶ audit: sftp.open, sftp.close, …
//!               refused request: not forwarded ─┤
//!                   its PERMISSION_DENIED answer └─▶ Insertions ─▶ downlink, between packets
//! downlink ── server bytes ─▶ Direction(server) ──▶ Tracker
//! ```
//!
//! Without file rules it only watches: every byte is relayed as it came, whether it parses
//! or not. With them, the client's bytes go on as whole packets (a refused one cut out),
//! and a request whose path cannot be known is refused, since it cannot be checked.

pub mod rules;
pub mod tracker;
pub mod wire;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use portcullis_config::{CommandAction, RuleKind};
use serde_json::json;
use tracker::Tracker;
use wire::Packets;

use super::Insertions;
use super::transfer::{self, TransferEvent};
use crate::live::SessionShared;
use crate::services::Services;

/// One sftp channel's audit, shared by its two directions.
pub struct SftpAudit {
    services: Arc<Services>,
    session: Arc<SessionShared>,
    channel: String,
    tracker: Mutex<Tracker>,
}

impl SftpAudit {
    /// The audit of channel `channel`, and its two directions: the client's, the server's.
    /// Where file rules apply to the session (`ruled`), the client's direction checks each
    /// request, and answers a refused one through the insertions returned (for both relay
    /// tasks).
    pub fn start(
        services: Arc<Services>,
        session: Arc<SessionShared>,
        channel: String,
        ruled: bool,
    ) -> (Direction, Direction, Option<Arc<Insertions>>) {
        let insertions = ruled.then(|| Arc::new(Insertions::default()));
        let audit = Arc::new(Self {
            services,
            session,
            channel,
            tracker: Mutex::new(Tracker::default()),
        });
        (
            Direction {
                audit: audit.clone(),
                packets: Packets::default(),
                from_client: true,
                rules: insertions.clone(),
                notes: Vec::new(),
            },
            Direction {
                audit,
                packets: Packets::default(),
                from_client: false,
                rules: None,
                notes: Vec::new(),
            },
            insertions,
        )
    }

    fn tracker(&self) -> std::sync::MutexGuard<'_, Tracker> {
        self.tracker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn record(&self, events: Vec<TransferEvent>) {
        transfer::record(&self.services, &self.session, &self.channel, events);
    }

    /// Checks a client request against the file rules: `None` lets it go on; `Some` is
    /// the answer it gets instead, with a line for the recording (and the rule may end the
    /// session).
    fn check(&self, tracker: &Tracker, kind: u8, payload: &[u8]) -> Option<(Bytes, String)> {
        let reading = rules::read_request(kind, payload, tracker.home(), |handle| {
            tracker.handle_path(handle)
        });
        let role = self.session.role().unwrap_or_default();
        let target = self.session.target().unwrap_or_default();
        let (id, line, rule, refusal) = match reading {
            rules::Reading::Unchecked => return None,
            rules::Reading::Unreadable { id, op, why } => (
                id,
                format!("{op} ?"),
                None,
                Some(format!(
                    "portcullis: refused: {why}, so the file rules cannot be checked"
                )),
            ),
            rules::Reading::Lines { id, lines } => {
                let (rule, line) = match self.services.command_rules.evaluate_readings(
                    RuleKind::Sftp,
                    role,
                    target,
                    lines.iter().map(String::as_str),
                ) {
                    Some((rule, line)) => (rule, line.to_owned()),
                    // No rule: the sftp.* events audit it.
                    None => return None,
                };
                let refusal = (rule.action >= CommandAction::Warn)
                    .then(|| format!("portcullis: blocked by {}", rule.describe()));
                (id, line, Some(rule), refusal)
            }
        };
        let action = rule.map_or(CommandAction::Deny, |r| r.action);
        super::verdict::Verdict {
            channel: &self.channel,
            kind: "sftp",
            line: &line,
            rule,
            action,
            stopped: refusal.is_some(),
            uncertain: rule.is_none(),
            what: "file operation",
        }
        .carry_out(&self.services, &self.session);
        let message = refusal?;
        let note = format!(
            "sftp refused: {line} ({})",
            rule.map_or_else(|| message.clone(), |r| format!("rule {}", r.name))
        );
        Some((rules::status(id, rules::PERMISSION_DENIED, &message), note))
    }
}

/// One direction of an sftp channel, as its relay task sees it.
pub struct Direction {
    audit: Arc<SftpAudit>,
    packets: Packets,
    from_client: bool,
    /// File rules apply (client direction only): refusals are answered through these.
    rules: Option<Arc<Insertions>>,
    /// Lines for the recording not yet taken (see [`super::Watch::take_notes`]).
    notes: Vec<String>,
}

impl Direction {
    fn from(&self) -> &'static str {
        if self.from_client { "client" } else { "server" }
    }

    /// Cuts `data` into packets, follows them, and — with rules — checks the client's.
    fn cut(&mut self, data: &[u8]) -> wire::Cutting {
        let mut events = Vec::new();
        let mut refusals = Vec::new();
        let cutting = {
            let audit = &self.audit;
            let mut tracker = audit.tracker();
            let from_client = self.from_client;
            let ruled = self.rules.is_some();
            self.packets.cut(data, ruled, |kind, payload| {
                if !from_client {
                    events.extend(tracker.response(kind, payload));
                    return true;
                }
                if ruled && let Some(refusal) = audit.check(&tracker, kind, payload) {
                    refusals.push(refusal);
                    return false;
                }
                events.extend(tracker.request(kind, payload));
                true
            })
        };
        if let Some(why) = &cutting.lost {
            events.extend(self.audit.tracker().lost(self.from(), why));
        }
        self.notes
            .extend(events.iter().map(TransferEvent::describe));
        self.audit.record(events);
        if let Some(insertions) = &self.rules {
            for (answer, note) in refusals {
                insertions.push(answer);
                self.notes.push(note);
            }
        }
        cutting
    }
}

impl super::Watch for Direction {
    fn see(&mut self, data: &[u8]) {
        self.cut(data);
    }

    fn pass(&mut self, data: Bytes) -> Result<Vec<Bytes>, String> {
        if self.rules.is_none() {
            self.cut(&data);
            return Ok(vec![data]);
        }
        let cutting = self.cut(&data);
        match cutting.lost {
            // What cannot be cut into packets cannot be checked: the channel ends.
            Some(why) => {
                self.audit.services.audit.record(
                    self.audit
                        .session
                        .audit("command")
                        .with("channel", self.audit.channel.as_str())
                        .with("kind", "sftp")
                        .with("line", json!(null))
                        .with("action", "deny")
                        .with("outcome", "blocked")
                        .with("uncertain", true)
                        .with(
                            "reason",
                            format!("the client's stream cannot be followed: {why}"),
                        ),
                );
                Err(format!(
                    "the client's sftp stream cannot be followed ({why}), so the file rules cannot be checked"
                ))
            }
            None => Ok(cutting.kept),
        }
    }

    fn partial(&self) -> usize {
        self.packets.partial()
    }

    fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    fn finish(&mut self) {
        let events = self.audit.tracker().finish();
        self.notes
            .extend(events.iter().map(TransferEvent::describe));
        self.audit.record(events);
    }
}
