//! Locks placed by security: kept in the state database so they survive a restart, and in
//! memory so every login can consult them without touching the disk.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use portcullis_policy::Lock;

use crate::store::{Store, StoreError, from_unix_seconds, to_unix_seconds};

/// The set of locks.
#[derive(Debug)]
pub struct Locks {
    store: Arc<Store>,
    cache: Mutex<HashMap<String, Lock>>,
}

impl Locks {
    /// Loads the locks from the database, dropping those that have expired.
    pub fn load(store: Arc<Store>, now: SystemTime) -> Result<Self, StoreError> {
        store.with(|db| {
            db.execute(
                "DELETE FROM locks WHERE until IS NOT NULL AND until <= ?1",
                [to_unix_seconds(now)],
            )
        })?;
        let rows = store.with(|db| {
            let mut statement =
                db.prepare("SELECT user, reason, locked_by, since, until FROM locks")?;
            let rows = statement.query_map([], |row| {
                Ok(Lock {
                    user: row.get(0)?,
                    reason: row.get(1)?,
                    by: row.get(2)?,
                    since: from_unix_seconds(row.get(3)?),
                    until: row.get::<_, Option<i64>>(4)?.map(from_unix_seconds),
                })
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        Ok(Self {
            store,
            cache: Mutex::new(rows.into_iter().map(|l| (l.user.clone(), l)).collect()),
        })
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Lock>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The user's lock, if one holds at `now`.
    pub fn active(&self, user: &str, now: SystemTime) -> Option<Lock> {
        self.cache()
            .get(user)
            .filter(|lock| lock.is_active(now))
            .cloned()
    }

    /// Every lock that holds at `now`, by user name.
    pub fn list(&self, now: SystemTime) -> Vec<Lock> {
        let mut locks: Vec<Lock> = self
            .cache()
            .values()
            .filter(|lock| lock.is_active(now))
            .cloned()
            .collect();
        locks.sort_by(|a, b| a.user.cmp(&b.user));
        locks
    }

    /// Places (or replaces) a lock.
    pub fn lock(&self, lock: Lock) -> Result<(), StoreError> {
        self.store.with(|db| {
            db.execute(
                "INSERT OR REPLACE INTO locks (user, reason, locked_by, since, until)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params![
                    lock.user,
                    lock.reason,
                    lock.by,
                    to_unix_seconds(lock.since),
                    lock.until.map(to_unix_seconds)
                ],
            )
        })?;
        self.cache().insert(lock.user.clone(), lock);
        Ok(())
    }

    /// Lifts a user's lock; false if there was none.
    pub fn unlock(&self, user: &str) -> Result<bool, StoreError> {
        let removed = self
            .store
            .with(|db| db.execute("DELETE FROM locks WHERE user = ?1", [user]))?;
        self.cache().remove(user);
        Ok(removed > 0)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn lock(user: &str, until: Option<u64>) -> Lock {
        Lock {
            user: user.into(),
            reason: "investigation".into(),
            by: "secops".into(),
            since: at(1_000),
            until: until.map(at),
        }
    }

    #[test]
    fn locks_survive_reopening_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("state.db")).unwrap());
        let locks = Locks::load(store.clone(), at(1_000)).unwrap();
        locks.lock(lock("alice", None)).unwrap();
        locks.lock(lock("bob", Some(2_000))).unwrap();
        assert!(locks.active("alice", at(5_000)).is_some());
        assert!(locks.active("bob", at(1_999)).is_some());
        assert!(locks.active("bob", at(2_000)).is_none());
        drop(locks);

        let reopened = Locks::load(store.clone(), at(1_500)).unwrap();
        assert_eq!(reopened.list(at(1_500)).len(), 2);
        assert!(reopened.unlock("alice").unwrap());
        assert!(!reopened.unlock("alice").unwrap());
        drop(reopened);

        // Expired locks are cleared on load.
        let later = Locks::load(store, at(3_000)).unwrap();
        assert!(later.list(at(3_000)).is_empty());
    }
}
