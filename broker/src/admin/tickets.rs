//! One-time tickets for the live WebSocket: a browser cannot put a bearer token on a
//! WebSocket, so the console asks for a ticket with its token (`POST
//! /api/v1/sessions/{id}/live-ticket`) and opens `…/live?ticket=T`. A ticket is good for one
//! connection to one session, for a short time, and carries the token's name for the audit.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};

use super::auth::Caller;

/// How long a ticket may wait for its connection.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(30);

/// Tickets issued and not used yet.
#[derive(Debug, Default)]
pub struct Tickets {
    open: Mutex<HashMap<String, Ticket>>,
}

#[derive(Debug)]
struct Ticket {
    caller: Caller,
    session: String,
    expires: Instant,
}

impl Tickets {
    /// A new ticket, issued at `now`, for `caller` to watch `session`; `None` if the OS has
    /// no randomness.
    pub fn issue(&self, caller: Caller, session: &str, now: Instant) -> Option<String> {
        let mut bytes = [0u8; 24];
        SystemRandom::new().fill(&mut bytes).ok()?;
        let ticket = hex::encode(bytes);
        let mut open = self.lock();
        open.retain(|_, t| t.expires > now);
        open.insert(
            ticket.clone(),
            Ticket {
                caller,
                session: session.to_owned(),
                expires: now + TICKET_LIFETIME,
            },
        );
        Some(ticket)
    }

    /// Uses up `ticket`: its caller, if it is open, unexpired at `now` and for `session`.
    pub fn redeem(&self, ticket: &str, session: &str, now: Instant) -> Option<Caller> {
        let found = self.lock().remove(ticket)?;
        (found.session == session && found.expires > now).then_some(found.caller)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Ticket>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller() -> Caller {
        Caller::new("secops", vec![portcullis_config::Scope::Read])
    }

    #[test]
    fn a_ticket_opens_one_connection_to_its_session_only() {
        let tickets = Tickets::default();
        let now = Instant::now();
        let ticket = tickets.issue(caller(), "s1", now).unwrap();
        assert_eq!(ticket.len(), 48);
        assert!(
            tickets.redeem(&ticket, "s2", now).is_none(),
            "another session"
        );
        // A failed attempt used it up too: a guessed ticket cannot be retried.
        assert!(tickets.redeem(&ticket, "s1", now).is_none());
        let ticket = tickets.issue(caller(), "s1", now).unwrap();
        assert_eq!(tickets.redeem(&ticket, "s1", now).unwrap().name, "secops");
        assert!(tickets.redeem(&ticket, "s1", now).is_none(), "used once");
        assert!(tickets.redeem("", "s1", now).is_none());
    }

    #[test]
    fn a_ticket_lapses_after_its_lifetime() {
        let tickets = Tickets::default();
        let issued = Instant::now();
        let ticket = tickets.issue(caller(), "s1", issued).unwrap();
        let late = issued + TICKET_LIFETIME;
        assert!(tickets.redeem(&ticket, "s1", late).is_none(), "lapsed");
        let ticket = tickets.issue(caller(), "s1", issued).unwrap();
        let in_time = late - Duration::from_millis(1);
        assert_eq!(
            tickets.redeem(&ticket, "s1", in_time).unwrap().name,
            "secops"
        );
    }
}
