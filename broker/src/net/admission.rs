//! Who gets a connection slot: two budgets, so nobody who has not logged in can crowd out
//! those who have.
//!
//! * Before authentication a connection holds a *pre-login slot*: at most
//!   `max_unauthenticated` in all and `max_unauthenticated_per_source` from one address
//!   (like sshd's MaxStartups). One host holding idle sockets fills only its own share.
//! * At authentication it trades that slot for a *session permit* (`max_connections`); a
//!   login beyond that is told the bastion is full.
//!
//! Slots are given back when dropped, however the connection ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The budgets.
#[derive(Debug)]
pub struct Admission {
    preauth: Arc<Semaphore>,
    per_source_max: usize,
    per_source: Mutex<HashMap<IpAddr, usize>>,
    sessions: Arc<Semaphore>,
}

/// Why a new connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crowded {
    /// Every pre-login slot is taken.
    Everywhere,
    /// This address holds its share of pre-login slots.
    Source,
}

/// A pre-login slot, held until the connection authenticates or ends.
#[derive(Debug)]
pub struct PreAuthSlot {
    admission: Arc<Admission>,
    source: IpAddr,
    _permit: OwnedSemaphorePermit,
}

impl Admission {
    /// Budgets from the config's three limits.
    pub fn new(max_unauthenticated: usize, per_source: usize, max_sessions: usize) -> Self {
        Self {
            preauth: Arc::new(Semaphore::new(max_unauthenticated.max(1))),
            per_source_max: per_source.max(1),
            per_source: Mutex::new(HashMap::new()),
            sessions: Arc::new(Semaphore::new(max_sessions.max(1))),
        }
    }

    /// A pre-login slot for a connection from `source`, if there is one.
    pub fn admit(self: &Arc<Self>, source: IpAddr) -> Result<PreAuthSlot, Crowded> {
        let mut per_source = self.lock();
        let held = per_source.get(&source).copied().unwrap_or(0);
        if held >= self.per_source_max {
            return Err(Crowded::Source);
        }
        let permit = self
            .preauth
            .clone()
            .try_acquire_owned()
            .map_err(|_| Crowded::Everywhere)?;
        per_source.insert(source, held + 1);
        Ok(PreAuthSlot {
            admission: self.clone(),
            source,
            _permit: permit,
        })
    }

    /// A session permit for a connection that has just authenticated, if one is free.
    pub fn session_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.sessions.clone().try_acquire_owned().ok()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.per_source
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for PreAuthSlot {
    fn drop(&mut self) {
        let mut per_source = self.admission.lock();
        if let Some(held) = per_source.get_mut(&self.source) {
            *held -= 1;
            if *held == 0 {
                per_source.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn one_source_takes_only_its_share_and_slots_come_back() {
        let admission = Arc::new(Admission::new(4, 2, 10));
        let a1 = admission.admit(A).unwrap();
        let _a2 = admission.admit(A).unwrap();
        assert_eq!(admission.admit(A).unwrap_err(), Crowded::Source);
        let _b1 = admission.admit(B).unwrap();
        drop(a1);
        let _a3 = admission.admit(A).unwrap();
        let _b2 = admission.admit(B).unwrap();
        let c = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 3));
        assert_eq!(admission.admit(c).unwrap_err(), Crowded::Everywhere);
        assert_eq!(admission.lock().len(), 2);
    }

    #[test]
    fn sessions_have_their_own_budget() {
        let admission = Admission::new(1, 1, 2);
        let first = admission.session_permit().unwrap();
        let _second = admission.session_permit().unwrap();
        assert!(admission.session_permit().is_none());
        drop(first);
        assert!(admission.session_permit().is_some());
    }
}
