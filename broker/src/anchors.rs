//! Anchors: what the evidence files looked like when the bastion last wrote them, kept
//! outside those files (in the state database), so cutting the end off a file — and its
//! integrity chain with it — or swapping in another genuine file shows.
//!
//! * `audit`: how many lines the audit log holds and the chain tag of the last one,
//!   updated with every line written.
//! * `recording:<id>`: a recording exists (`sealed = false`) from its creation; at its end,
//!   its line count and seal (`sealed = true`).
//!
//! The chain key makes lines unforgeable; the anchor makes their number and end provable.

use std::sync::Arc;
use std::time::SystemTime;

use crate::store::{Store, StoreError, to_unix_ms};

/// The audit log's anchor.
pub const AUDIT: &str = "audit";

/// The anchor name of recording `id`.
pub fn recording(id: &str) -> String {
    format!("recording:{id}")
}

/// One anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// Lines written (for a recording being written: 0).
    pub count: u64,
    /// The chain tag of the last line, or a recording's seal; hex.
    pub tag: String,
    /// A recording that was sealed.
    pub sealed: bool,
}

/// Anchors in the state database.
#[derive(Debug, Clone)]
pub struct Anchors {
    store: Arc<Store>,
}

impl Anchors {
    /// Anchors kept in `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }

    /// The anchor called `name`, if one was ever set.
    pub fn get(&self, name: &str) -> Result<Option<Anchor>, StoreError> {
        self.store.with(|db| {
            let mut statement =
                db.prepare_cached("SELECT count, tag, sealed FROM anchors WHERE name = ?1")?;
            let mut rows = statement.query([name])?;
            let Some(row) = rows.next()? else {
                return Ok(None);
            };
            Ok(Some(Anchor {
                count: u64::try_from(row.get::<_, i64>(0)?).unwrap_or_default(),
                tag: row.get(1)?,
                sealed: row.get::<_, i64>(2)? != 0,
            }))
        })
    }

    /// Sets (or moves) the anchor called `name`.
    pub fn set(&self, name: &str, anchor: &Anchor) -> Result<(), StoreError> {
        let count = i64::try_from(anchor.count).unwrap_or(i64::MAX);
        self.store.with(|db| {
            db.prepare_cached(
                "INSERT INTO anchors (name, count, tag, sealed, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(name) DO UPDATE SET count = excluded.count, tag = excluded.tag,
                     sealed = excluded.sealed, updated_at = excluded.updated_at",
            )?
            .execute(rusqlite::params![
                name,
                count,
                anchor.tag,
                i64::from(anchor.sealed),
                to_unix_ms(SystemTime::now())
            ])
            .map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_are_set_moved_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let anchors = Anchors::new(Arc::new(Store::open(&dir.path().join("s.db")).unwrap()));
        assert_eq!(anchors.get(AUDIT).unwrap(), None);
        let first = Anchor {
            count: 1,
            tag: "aa".into(),
            sealed: false,
        };
        anchors.set(AUDIT, &first).unwrap();
        assert_eq!(anchors.get(AUDIT).unwrap(), Some(first));
        let sealed = Anchor {
            count: 9,
            tag: "bb".into(),
            sealed: true,
        };
        anchors.set(&recording("r-1"), &sealed).unwrap();
        anchors
            .set(
                AUDIT,
                &Anchor {
                    count: 2,
                    tag: "cc".into(),
                    sealed: false,
                },
            )
            .unwrap();
        assert_eq!(anchors.get(&recording("r-1")).unwrap(), Some(sealed));
        assert_eq!(anchors.get(AUDIT).unwrap().unwrap().count, 2);
    }
}
