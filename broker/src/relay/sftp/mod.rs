//! The file-transfer audit of an sftp channel (and so of OpenSSH's scp, which speaks SFTP):
//! both directions' bytes are cut into packets as they pass ([`wire`]), and the
//! conversation is followed ([`tracker`]) into one audit event per file operation. It only
//! watches: every byte is relayed as it came, whether it parses or not.
//!
//! ```text
//! uplink ── client bytes ──▶ Direction(client) ─┐
//!                                               ├─▶ Tracker ─▶ audit: sftp.open, sftp.close, …
//! downlink ── server bytes ─▶ Direction(server) ┘
//! ```

pub mod tracker;
pub mod wire;

use std::sync::{Arc, Mutex};

use tracker::{SftpEvent, Tracker};
use wire::{Cut, Packets};

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
    pub fn start(
        services: Arc<Services>,
        session: Arc<SessionShared>,
        channel: String,
    ) -> (Direction, Direction) {
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
            },
            Direction {
                audit,
                packets: Packets::default(),
                from_client: false,
            },
        )
    }

    fn tracker(&self) -> std::sync::MutexGuard<'_, Tracker> {
        self.tracker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn record(&self, events: Vec<SftpEvent>) {
        record(&self.services, &self.session, &self.channel, events);
    }
}

/// Writes file-transfer events to the audit log, each naming the session and channel.
pub fn record(services: &Services, session: &SessionShared, channel: &str, events: Vec<SftpEvent>) {
    for event in events {
        let mut audit = session.audit(event.name).with("channel", channel);
        for (key, value) in event.fields {
            audit = audit.with(key, value);
        }
        services.audit.record(audit);
    }
}

/// One direction of an sftp channel, as its relay task sees it.
pub struct Direction {
    audit: Arc<SftpAudit>,
    packets: Packets,
    from_client: bool,
}

impl super::Watch for Direction {
    fn see(&mut self, data: &[u8]) {
        let cuts = self.packets.push(data);
        if cuts.is_empty() {
            return;
        }
        let events: Vec<SftpEvent> = {
            let mut tracker = self.audit.tracker();
            cuts.into_iter()
                .flat_map(|cut| match cut {
                    Cut::Packet(kind, payload) if self.from_client => {
                        tracker.request(kind, &payload)
                    }
                    Cut::Packet(kind, payload) => tracker.response(kind, &payload),
                    Cut::Lost(why) => {
                        tracker.lost(if self.from_client { "client" } else { "server" }, &why)
                    }
                })
                .collect()
        };
        self.audit.record(events);
    }

    fn finish(&self) {
        let events = self.audit.tracker().finish();
        self.audit.record(events);
    }
}
