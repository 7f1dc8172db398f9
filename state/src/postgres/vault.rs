//! The vault's rows: the wrapped data key (one row) and sealed credentials. Nothing here
//! can read a secret: sealing and opening are the broker's vault's.

use std::future::Future;
use std::time::SystemTime;

use tokio_postgres::Row;

use super::{PostgresStore, from_ms, to_ms};
use crate::{CredentialRow, StateError};

fn credential_from_row(row: &Row) -> CredentialRow {
    CredentialRow {
        name: row.get("name"),
        kind: row.get("kind"),
        fingerprint: row.get("fingerprint"),
        public_key: row.get("public_key"),
        created_at: from_ms(row.get("created_at")),
        sealed: row.get("sealed"),
    }
}

impl PostgresStore {
    pub(super) fn wrapped_data_key_(
        &self,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StateError>> + Send + 'static {
        self.call(|db| async move {
            Ok(db
                .query_opt("SELECT wrapped_data_key FROM keyring WHERE id = 1", &[])
                .await?
                .map(|row| row.get(0)))
        })
    }

    pub(super) fn init_wrapped_data_key_(
        &self,
        wrapped: Vec<u8>,
        at: SystemTime,
    ) -> impl Future<Output = Result<Vec<u8>, StateError>> + Send + 'static {
        self.call(move |db| async move {
            // Two nodes' first starts race here: the first row in wins, both read it back.
            db.execute(
                "INSERT INTO keyring (id, wrapped_data_key, created_at) VALUES (1, $1, $2)
                 ON CONFLICT (id) DO NOTHING",
                &[&wrapped, &to_ms(at)],
            )
            .await?;
            Ok(db
                .query_one("SELECT wrapped_data_key FROM keyring WHERE id = 1", &[])
                .await?
                .get(0))
        })
    }

    pub(super) fn replace_wrapped_data_key_(
        &self,
        expected: Vec<u8>,
        new: Vec<u8>,
    ) -> impl Future<Output = Result<bool, StateError>> + Send + 'static {
        self.call(move |db| async move {
            Ok(db
                .execute(
                    "UPDATE keyring SET wrapped_data_key = $1 WHERE id = 1 AND wrapped_data_key = $2",
                    &[&new, &expected],
                )
                .await?
                == 1)
        })
    }

    pub(super) fn put_credential_(
        &self,
        row: CredentialRow,
        replace: bool,
    ) -> impl Future<Output = Result<bool, StateError>> + Send + 'static {
        self.call(move |db| async move {
            let on_conflict = if replace {
                "DO UPDATE SET kind = excluded.kind, fingerprint = excluded.fingerprint,
                     public_key = excluded.public_key, created_at = excluded.created_at,
                     sealed = excluded.sealed"
            } else {
                "DO NOTHING"
            };
            Ok(db
                .execute(
                    &format!(
                        "INSERT INTO credentials (name, kind, fingerprint, public_key, created_at, sealed)
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) {on_conflict}"
                    ),
                    &[
                        &row.name,
                        &row.kind,
                        &row.fingerprint,
                        &row.public_key,
                        &to_ms(row.created_at),
                        &row.sealed,
                    ],
                )
                .await?
                == 1)
        })
    }

    pub(super) fn credential_(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<CredentialRow>, StateError>> + Send + 'static {
        let name = name.to_owned();
        self.call(move |db| async move {
            Ok(db
                .query_opt("SELECT * FROM credentials WHERE name = $1", &[&name])
                .await?
                .as_ref()
                .map(credential_from_row))
        })
    }

    pub(super) fn credentials_(
        &self,
    ) -> impl Future<Output = Result<Vec<CredentialRow>, StateError>> + Send + 'static {
        self.call(|db| async move {
            Ok(db
                .query("SELECT * FROM credentials ORDER BY name", &[])
                .await?
                .iter()
                .map(credential_from_row)
                .collect())
        })
    }

    pub(super) fn remove_credential_(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<bool, StateError>> + Send + 'static {
        let name = name.to_owned();
        self.call(move |db| async move {
            Ok(db
                .execute("DELETE FROM credentials WHERE name = $1", &[&name])
                .await?
                > 0)
        })
    }
}
