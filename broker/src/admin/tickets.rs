//! One-time tickets for the live WebSocket: a browser cannot put a bearer token on a
//! WebSocket, so the console asks for a ticket with its token (`POST
//! /api/v1/sessions/{id}/live-ticket`) and opens `…/live?ticket=T`. A ticket is good for one
//! connection to one session, for a short time, and carries the token's name for the audit.
//!
//! One node keeps its tickets in memory; nodes sharing a store keep them there (by hash),
//! because behind a load balancer the console may get its ticket from one node and open
//! the view on another.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};

use portcullis_state::{LiveTicket, StateError};

use super::auth::Caller;
use crate::services::Services;

/// A fresh ticket: 24 random bytes, hex; `None` if the OS has no randomness.
fn new_ticket() -> Option<String> {
    let mut bytes = [0u8; 24];
    SystemRandom::new().fill(&mut bytes).ok()?;
    Some(hex::encode(bytes))
}

/// How a ticket is kept in a shared store: its SHA-256 (whoever reads the store cannot use
/// it).
fn hash(ticket: &str) -> String {
    hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        ticket.as_bytes(),
    ))
}

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
        let ticket = new_ticket()?;
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

    /// [`Tickets::issue`], in the shared store when nodes share one.
    pub async fn issue_for(
        &self,
        services: &Services,
        caller: Caller,
        session: &str,
    ) -> Result<Option<String>, StateError> {
        if services.state.node().is_none() {
            return Ok(self.issue(caller, session, services.clock.instant()));
        }
        let Some(ticket) = new_ticket() else {
            return Ok(None);
        };
        services
            .state
            .put_ticket(LiveTicket {
                hash: hash(&ticket),
                session: session.to_owned(),
                holder: caller.name.clone(),
                scopes: super::signature::scopes_text(caller.scopes()),
                expires: services.clock.now() + TICKET_LIFETIME,
            })
            .await?;
        Ok(Some(ticket))
    }

    /// [`Tickets::redeem`], from the shared store when nodes share one.
    pub async fn redeem_for(
        &self,
        services: &Services,
        ticket: &str,
        session: &str,
    ) -> Result<Option<Caller>, StateError> {
        if services.state.node().is_none() {
            return Ok(self.redeem(ticket, session, services.clock.instant()));
        }
        let Some(found) = services.state.take_ticket(&hash(ticket)).await? else {
            return Ok(None);
        };
        let scopes = super::signature::scopes_of(&found.scopes).unwrap_or_default();
        Ok(
            (found.session == session && found.expires > services.clock.now())
                .then(|| Caller::new(&found.holder, scopes)),
        )
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
