//! Audit events left in the state store by the command line.
//!
//! `vault rekey`, `ca rotate` and `ca retire` run in their own process beside a serving
//! bastion, which alone writes the audit log (two writers would break its chain). So the
//! command leaves its event in the state store, sealed under the data key (a row nobody
//! without the master key can forge or alter), and a serving node moves it into its audit log
//! (`crate::cli_events`); with no node running, the next start does.

use std::time::{SystemTime, UNIX_EPOCH};

use portcullis_state::CredentialRow;

use super::{CredentialInfo, CredentialKind, Vault, VaultError, associated_data, seal};

/// Row names start with this (no operator entry can: `@` is not a name character).
const PREFIX: &str = "@event.";

/// The events the command line may leave.
pub const KNOWN: &[&str] = &[
    "vault.rekeyed",
    "ca.rotated",
    "ca.retired",
    "credential.rotated",
    "credential.rotation_failed",
    // A verify that found evidence tampered with (`alerts`).
    "alert",
];

/// A row that claims to be a left event and is not one (damaged, or written without the
/// data key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedEvent {
    /// The row.
    pub row: String,
}

impl std::fmt::Display for RejectedEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the left event {} is damaged or forged", self.row)
    }
}

/// An event read back from the store.
#[derive(Debug, Clone, PartialEq)]
pub struct LeftEvent {
    /// The row, to claim it by.
    pub row: String,
    /// One of [`KNOWN`].
    pub event: &'static str,
    /// When the command ran.
    pub at: SystemTime,
    /// Its fields.
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl Vault {
    /// Leaves `event` with `fields` for a serving node to audit.
    pub async fn leave_event(
        &self,
        event: &'static str,
        fields: serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), VaultError> {
        let at = SystemTime::now();
        let nanos = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
        let nonce = seal::random_key().map_err(|_| VaultError::Crypto)?;
        // Zero-padded time first (to the nanosecond: two events of one command never share
        // it), so rows sort in the order they were left.
        let row = format!("{PREFIX}{nanos:020}.{}", hex::encode(&nonce[..6]));
        let body = serde_json::json!({ "event": event, "fields": fields }).to_string();
        let info = CredentialInfo {
            name: row,
            kind: CredentialKind::AdminEvent,
            fingerprint: None,
            public_key: None,
            created_at: at,
        };
        self.put_unchecked(info, body.as_bytes(), false).await?;
        Ok(())
    }

    /// Every event left and not yet claimed, oldest first. A row that does not open (or names
    /// no known event) is reported as an error for that row, not skipped silently.
    pub async fn left_events(&self) -> Result<Vec<Result<LeftEvent, RejectedEvent>>, VaultError> {
        let rows: Vec<CredentialRow> = self
            .store
            .credentials()
            .await?
            .into_iter()
            .filter(|row| row.name.starts_with(PREFIX))
            .collect();
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            events.push(self.read_event(&row));
        }
        Ok(events)
    }

    /// Takes the event's row out of the store; false if another node took it first.
    pub async fn claim_event(&self, row: &str) -> Result<bool, VaultError> {
        Ok(self.store.remove_credential(row).await?)
    }

    fn read_event(&self, row: &CredentialRow) -> Result<LeftEvent, RejectedEvent> {
        let damaged = || RejectedEvent {
            row: row.name.clone(),
        };
        if row.kind != CredentialKind::AdminEvent.as_str() {
            return Err(damaged());
        }
        let plain = self
            .sealing
            .open(
                &row.sealed,
                &associated_data(&row.name, CredentialKind::AdminEvent),
            )
            .map_err(|_| damaged())?;
        let body: serde_json::Value = serde_json::from_slice(&plain).map_err(|_| damaged())?;
        let named = body["event"].as_str().unwrap_or_default();
        let event = KNOWN
            .iter()
            .find(|known| **known == named)
            .ok_or_else(damaged)?;
        let fields = body["fields"].as_object().cloned().unwrap_or_default();
        Ok(LeftEvent {
            row: row.name.clone(),
            event,
            at: row.created_at,
            fields,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use portcullis_state::StateStore;

    use super::*;

    #[tokio::test]
    async fn left_events_come_back_in_order_once_and_forgeries_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn StateStore> =
            Arc::new(portcullis_state::SqliteStore::open(&dir.path().join("state.db")).unwrap());
        let vault = Vault::open(store.clone(), &dir.path().join("master.key"), None)
            .await
            .unwrap();
        let mut fields = serde_json::Map::new();
        fields.insert("new_key_id".into(), "abcd".into());
        vault.leave_event("vault.rekeyed", fields).await.unwrap();
        vault
            .leave_event("ca.rotated", serde_json::Map::new())
            .await
            .unwrap();
        // Not an operator's entry.
        assert!(vault.list().await.unwrap().is_empty());

        let left = vault.left_events().await.unwrap();
        let events: Vec<&str> = left.iter().map(|e| e.as_ref().unwrap().event).collect();
        assert_eq!(events, ["vault.rekeyed", "ca.rotated"]);
        let first = left[0].as_ref().unwrap();
        assert_eq!(first.fields["new_key_id"], "abcd");
        assert!(vault.claim_event(&first.row).await.unwrap());
        assert!(
            !vault.claim_event(&first.row).await.unwrap(),
            "claimed once"
        );
        assert_eq!(vault.left_events().await.unwrap().len(), 1);

        // A row written without the data key does not pass for an event.
        store
            .put_credential(
                CredentialRow {
                    name: format!("{PREFIX}00000000000000000001.forged"),
                    kind: "admin-event".into(),
                    fingerprint: None,
                    public_key: None,
                    created_at: SystemTime::now(),
                    sealed: b"{\"event\":\"ca.rotated\"}".to_vec(),
                },
                false,
            )
            .await
            .unwrap();
        let left = vault.left_events().await.unwrap();
        assert!(
            left.iter()
                .any(|e| matches!(e, Err(r) if r.to_string().contains("damaged or forged"))),
            "{left:?}"
        );
    }
}
