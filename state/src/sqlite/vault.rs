//! The vault's rows: the wrapped data key (one row) and sealed credentials. Nothing here
//! can read a secret: sealing and opening are the broker's vault's.

use std::future::Future;
use std::time::SystemTime;

use rusqlite::{OptionalExtension, Row, params};

use super::{SqliteStore, from_ms, to_ms};
use crate::{CredentialRow, StateError};

fn credential_from_row(row: &Row<'_>) -> rusqlite::Result<CredentialRow> {
    Ok(CredentialRow {
        name: row.get(0)?,
        kind: row.get(1)?,
        fingerprint: row.get(2)?,
        public_key: row.get(3)?,
        created_at: from_ms(row.get(4)?),
        sealed: row.get(5)?,
    })
}

const COLUMNS: &str = "name, kind, fingerprint, public_key, created_at, sealed";

impl SqliteStore {
    pub(super) fn wrapped_data_key_(
        &self,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StateError>> + Send + 'static {
        self.call(|db| {
            db.query_row(
                "SELECT wrapped_data_key FROM keyring WHERE id = 1",
                [],
                |row| row.get(0),
            )
            .optional()
        })
    }

    pub(super) fn init_wrapped_data_key_(
        &self,
        wrapped: Vec<u8>,
        at: SystemTime,
    ) -> impl Future<Output = Result<Vec<u8>, StateError>> + Send + 'static {
        self.call(move |db| {
            db.execute(
                "INSERT OR IGNORE INTO keyring (id, wrapped_data_key, created_at) VALUES (1, ?1, ?2)",
                params![wrapped, to_ms(at)],
            )?;
            db.query_row(
                "SELECT wrapped_data_key FROM keyring WHERE id = 1",
                [],
                |row| row.get(0),
            )
        })
    }

    pub(super) fn replace_wrapped_data_key_(
        &self,
        expected: Vec<u8>,
        new: Vec<u8>,
    ) -> impl Future<Output = Result<bool, StateError>> + Send + 'static {
        self.call(move |db| {
            Ok(db.execute(
                "UPDATE keyring SET wrapped_data_key = ?1 WHERE id = 1 AND wrapped_data_key = ?2",
                params![new, expected],
            )? == 1)
        })
    }

    pub(super) fn put_credential_(
        &self,
        row: CredentialRow,
        replace: bool,
    ) -> impl Future<Output = Result<bool, StateError>> + Send + 'static {
        self.call(move |db| {
            let verb = if replace {
                "INSERT OR REPLACE"
            } else {
                "INSERT OR IGNORE"
            };
            db.execute(
                &format!("{verb} INTO credentials ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
                params![
                    row.name,
                    row.kind,
                    row.fingerprint,
                    row.public_key,
                    to_ms(row.created_at),
                    row.sealed
                ],
            )
            .map(|stored| stored == 1)
        })
    }

    pub(super) fn credential_(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<CredentialRow>, StateError>> + Send + 'static {
        let name = name.to_owned();
        self.call(move |db| {
            db.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM credentials WHERE name = ?1"
            ))?
            .query_row([name], credential_from_row)
            .optional()
        })
    }

    pub(super) fn credentials_(
        &self,
    ) -> impl Future<Output = Result<Vec<CredentialRow>, StateError>> + Send + 'static {
        self.call(|db| {
            db.prepare_cached(&format!("SELECT {COLUMNS} FROM credentials ORDER BY name"))?
                .query_map([], credential_from_row)?
                .collect()
        })
    }

    pub(super) fn remove_credential_(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<bool, StateError>> + Send + 'static {
        let name = name.to_owned();
        self.call(move |db| {
            db.execute("DELETE FROM credentials WHERE name = ?1", [name])
                .map(|removed| removed > 0)
        })
    }
}
