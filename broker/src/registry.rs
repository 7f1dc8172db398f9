//! The live sessions, for security to see and act on. A session enters when its user has
//! authenticated and leaves when it is finished, whatever ended it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::live::SessionShared;

/// Sessions by id.
#[derive(Debug, Default)]
pub struct Registry {
    sessions: Mutex<HashMap<String, Arc<SessionShared>>>,
}

impl Registry {
    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<SessionShared>>> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a session.
    pub fn register(&self, session: Arc<SessionShared>) {
        self.sessions().insert(session.id.clone(), session);
    }

    /// Removes a session, calling `on_leave` with it while it is still counted, so that
    /// totals moved elsewhere (metrics) are never seen twice or not at all.
    pub fn unregister(&self, id: &str, on_leave: impl FnOnce(&SessionShared)) {
        let mut sessions = self.sessions();
        if let Some(session) = sessions.get(id) {
            on_leave(session);
        }
        sessions.remove(id);
    }

    /// A session by id, or by a unique prefix of its id.
    pub fn find(&self, id: &str) -> Option<Arc<SessionShared>> {
        let sessions = self.sessions();
        crate::ids::by_id_or_prefix(sessions.values(), id, |s| &s.id).cloned()
    }

    /// Every live session, oldest first.
    pub fn list(&self) -> Vec<Arc<SessionShared>> {
        let mut sessions: Vec<_> = self.sessions().values().cloned().collect();
        sessions.sort_by(|a, b| a.id.cmp(&b.id));
        sessions
    }

    /// The live sessions of one user.
    pub fn of_user(&self, user: &str) -> Vec<Arc<SessionShared>> {
        self.list()
            .into_iter()
            .filter(|s| s.user() == Some(user))
            .collect()
    }

    /// How many are live, and `f` over each, under one lock (for consistent metrics).
    pub fn with_all<T>(
        &self,
        f: impl FnOnce(&mut dyn Iterator<Item = &Arc<SessionShared>>) -> T,
    ) -> T {
        let sessions = self.sessions();
        f(&mut sessions.values())
    }
}
