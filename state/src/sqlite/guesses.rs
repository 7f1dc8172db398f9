//! The guess throttle's rows: one per failure, or per key of a reserved slot. Each call is
//! one transaction on the store's thread, so a check and the reservation it allows are
//! atomic: racing verifications cannot slip past the limit between them.

use std::future::Future;
use std::time::SystemTime;

use rusqlite::{Transaction, params};

use super::{SqliteStore, to_ms};
use crate::StateError;

/// The first of `keys` counting `limit` rows at or after `since`.
fn first_full(
    db: &Transaction<'_>,
    keys: &[String],
    limit: u32,
    since: i64,
) -> rusqlite::Result<Option<String>> {
    let mut count = db.prepare_cached("SELECT COUNT(*) FROM guesses WHERE key = ?1 AND at > ?2")?;
    for key in keys {
        let counted: i64 = count.query_row(params![key, since], |row| row.get(0))?;
        if counted >= i64::from(limit) {
            return Ok(Some(key.clone()));
        }
    }
    Ok(None)
}

impl SqliteStore {
    pub(super) fn reserve_guess_(
        &self,
        keys: Vec<String>,
        limit: u32,
        since: SystemTime,
        at: SystemTime,
    ) -> impl Future<Output = Result<Result<u64, String>, StateError>> + Send + 'static {
        let (since, at) = (to_ms(since), to_ms(at));
        self.call(move |db| {
            let db = db.transaction()?;
            // What is older than the window decides nothing any more.
            db.execute("DELETE FROM guesses WHERE at <= ?1", [since])?;
            if let Some(full) = first_full(&db, &keys, limit, since)? {
                return Ok(Err(full));
            }
            // The slot is the id of its first row: AUTOINCREMENT never hands an id out twice,
            // so a slot released late can only ever give back its own rows.
            let mut slot = 0;
            {
                let mut insert =
                    db.prepare_cached("INSERT INTO guesses (slot, key, at) VALUES (?1, ?2, ?3)")?;
                for key in &keys {
                    insert.execute(params![slot, key, at])?;
                    if slot == 0 {
                        slot = db.last_insert_rowid();
                        db.execute("UPDATE guesses SET slot = ?1 WHERE id = ?1", [slot])?;
                    }
                }
            }
            db.commit()?;
            Ok(Ok(u64::try_from(slot).unwrap_or_default()))
        })
    }

    pub(super) fn release_guess_(
        &self,
        slot: u64,
    ) -> impl Future<Output = Result<(), StateError>> + Send + 'static {
        let slot = i64::try_from(slot).unwrap_or(i64::MAX);
        self.call(move |db| {
            // Slot 0 is plain failures (and the slot of a reservation on no key): never freed.
            if slot == 0 {
                return Ok(());
            }
            db.execute("DELETE FROM guesses WHERE slot = ?1", [slot])
                .map(|_| ())
        })
    }

    pub(super) fn record_guess_failures_(
        &self,
        keys: Vec<String>,
        limit: u32,
        since: SystemTime,
        at: SystemTime,
    ) -> impl Future<Output = Result<(), StateError>> + Send + 'static {
        let (since, at) = (to_ms(since), to_ms(at));
        self.call(move |db| {
            let db = db.transaction()?;
            // A flood of made-up names adds rows; what is older than the window goes.
            db.execute("DELETE FROM guesses WHERE at <= ?1", [since])?;
            {
                // A failure of its own: slot 0 is never handed out (slots are row ids).
                let mut insert =
                    db.prepare_cached("INSERT INTO guesses (slot, key, at) VALUES (0, ?1, ?2)")?;
                let mut trim = db.prepare_cached(
                    "DELETE FROM guesses WHERE key = ?1 AND id NOT IN
                         (SELECT id FROM guesses WHERE key = ?1 ORDER BY at DESC, id DESC LIMIT ?2)",
                )?;
                for key in &keys {
                    insert.execute(params![key, at])?;
                    trim.execute(params![key, i64::from(limit)])?;
                }
            }
            db.commit()
        })
    }

    pub(super) fn full_guess_key_(
        &self,
        keys: Vec<String>,
        limit: u32,
        since: SystemTime,
    ) -> impl Future<Output = Result<Option<String>, StateError>> + Send + 'static {
        let since = to_ms(since);
        self.call(move |db| {
            let db = db.transaction()?;
            first_full(&db, &keys, limit, since)
        })
    }
}
