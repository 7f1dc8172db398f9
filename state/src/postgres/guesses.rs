//! The guess throttle's rows, shared by every node: 5 failures spread over two nodes count
//! as 5. A check and the reservation it allows are one transaction holding an advisory lock
//! per key (taken in name order, so two transactions never wait on each other in a circle):
//! racing verifications on any nodes cannot slip past the limit between them.

use std::future::Future;
use std::time::SystemTime;

use tokio_postgres::GenericClient;

use super::{PostgresStore, id_of, to_ms};
use crate::StateError;

/// Locks `keys` for the rest of the transaction.
async fn lock_keys(db: &impl GenericClient, keys: &[String]) -> Result<(), tokio_postgres::Error> {
    let mut sorted: Vec<&String> = keys.iter().collect();
    sorted.sort_unstable();
    sorted.dedup();
    for key in sorted {
        db.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[key],
        )
        .await?;
    }
    Ok(())
}

/// The first of `keys` counting `limit` rows after `since`.
async fn first_full(
    db: &impl GenericClient,
    keys: &[String],
    limit: u32,
    since: i64,
) -> Result<Option<String>, tokio_postgres::Error> {
    for key in keys {
        let counted: i64 = db
            .query_one(
                "SELECT COUNT(*) FROM guesses WHERE key = $1 AND at > $2",
                &[key, &since],
            )
            .await?
            .get(0);
        if counted >= i64::from(limit) {
            return Ok(Some(key.clone()));
        }
    }
    Ok(None)
}

impl PostgresStore {
    pub(super) fn reserve_guess_(
        &self,
        keys: Vec<String>,
        limit: u32,
        since: SystemTime,
        at: SystemTime,
    ) -> impl Future<Output = Result<Result<u64, String>, StateError>> + Send + 'static {
        let (since, at) = (to_ms(since), to_ms(at));
        self.call(move |mut db| async move {
            let transaction = db.transaction().await?;
            lock_keys(&*transaction, &keys).await?;
            // What is older than the window decides nothing any more.
            transaction
                .execute("DELETE FROM guesses WHERE at <= $1", &[&since])
                .await?;
            if let Some(full) = first_full(&*transaction, &keys, limit, since).await? {
                transaction.commit().await?;
                return Ok(Err(full));
            }
            // The slot is the id of its first row: a sequence never hands an id out twice,
            // so a slot released late can only ever give back its own rows.
            let mut slot: i64 = 0;
            for key in &keys {
                let id: i64 = transaction
                    .query_one(
                        "INSERT INTO guesses (slot, key, at) VALUES ($1, $2, $3) RETURNING id",
                        &[&slot, key, &at],
                    )
                    .await?
                    .get(0);
                if slot == 0 {
                    slot = id;
                    transaction
                        .execute("UPDATE guesses SET slot = $1 WHERE id = $1", &[&slot])
                        .await?;
                }
            }
            transaction.commit().await?;
            Ok(Ok(id_of(slot)))
        })
    }

    pub(super) fn release_guess_(
        &self,
        slot: u64,
    ) -> impl Future<Output = Result<(), StateError>> + Send + 'static {
        let slot = i64::try_from(slot).unwrap_or(i64::MAX);
        self.call(move |db| async move {
            // Slot 0 is plain failures (and the slot of a reservation on no key): never freed.
            if slot != 0 {
                db.execute("DELETE FROM guesses WHERE slot = $1", &[&slot])
                    .await?;
            }
            Ok(())
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
        self.call(move |mut db| async move {
            let transaction = db.transaction().await?;
            lock_keys(&*transaction, &keys).await?;
            transaction
                .execute("DELETE FROM guesses WHERE at <= $1", &[&since])
                .await?;
            for key in &keys {
                // A failure of its own: slot 0 is never handed out (slots are row ids).
                transaction
                    .execute(
                        "INSERT INTO guesses (slot, key, at) VALUES (0, $1, $2)",
                        &[key, &at],
                    )
                    .await?;
                transaction
                    .execute(
                        "DELETE FROM guesses WHERE key = $1 AND id NOT IN
                             (SELECT id FROM guesses WHERE key = $1 ORDER BY at DESC, id DESC LIMIT $2)",
                        &[key, &i64::from(limit)],
                    )
                    .await?;
            }
            transaction.commit().await
        })
    }

    pub(super) fn full_guess_key_(
        &self,
        keys: Vec<String>,
        limit: u32,
        since: SystemTime,
    ) -> impl Future<Output = Result<Option<String>, StateError>> + Send + 'static {
        let since = to_ms(since);
        self.call(move |db| async move { first_full(&**db, &keys, limit, since).await })
    }
}
