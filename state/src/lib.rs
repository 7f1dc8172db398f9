//! portcullis state: everything the bastion keeps between requests and across restarts,
//! behind one seam, [`StateStore`] — and the only SQL in the workspace.
//!
//! ```text
//! broker: access (locks, requests, grants), vault, credentials (TOTP, throttle),
//!         the session index, evidence anchors
//!            │ async calls                         ▲ Change (after each commit)
//!            ▼                                     │
//!       dyn StateStore ──▶ SqliteStore: one thread owns the connection (state.db)
//!                      └─▶ PostgresStore: a pool on a runtime of its own; shared by every
//!                          node, changes logged and followed (LISTEN/NOTIFY + re-read)
//! ```
//!
//! * [`records`]: what is stored, in the policy crate's vocabulary where it has one
//!   (`Lock`, `Request`, `Grant`) and in this crate's otherwise.
//! * [`feed`]: [`Change`], what sessions and waiting logins subscribe to instead of polling.
//! * [`sqlite`]: the embedded backend; versioned migrations; times are Unix milliseconds.
//! * [`postgres`]: the shared backend, for several nodes; the same contract.
//! * [`StateError`]: what failed, for logs (never for API answers).
//!
//! Every method returns a boxed future so the store can be shared as `Arc<dyn StateStore>`.
//! Neither store needs the caller's tokio runtime to make progress (SQLite's own thread, and
//! PostgreSQL's own runtime, run the statements), so synchronous code can wait for either
//! with `futures::executor::block_on`.

pub mod error;
pub mod feed;
pub mod postgres;
pub mod records;
mod rows;
pub mod sqlite;

use std::time::SystemTime;

use futures::FutureExt;
use futures::future::BoxFuture;
use portcullis_policy::{Lock, Request, RequestState};
use tokio::sync::broadcast;

pub use error::StateError;
pub use feed::Change;
pub use postgres::{PostgresSettings, PostgresStore, SslMode};
pub use records::{
    Anchor, AuditLine, AuditPage, CredentialRow, GrantRecord, LiveTicket, LostNode, NewGrant,
    NodeBeat, NodeRecord, SessionEnd, SessionProgress, SessionRecord, SharedAuditLine, Usage,
};
pub use sqlite::SqliteStore;

/// What every store method returns.
pub type StateFuture<'a, T> = BoxFuture<'a, Result<T, StateError>>;

/// The state seam. Writes that others must hear of publish a [`Change`] once committed.
pub trait StateStore: Send + Sync + std::fmt::Debug {
    /// Changes from now on (a receiver that lags too far gets `Lagged` and should re-read).
    fn changes(&self) -> broadcast::Receiver<Change>;

    /// Where the state lives, in words, for messages ("state database /var/lib/…/state.db").
    fn location(&self) -> String;

    /// Whether the store was reachable when last tried (a database's connection up); a
    /// store in this process always is.
    fn reachable(&self) -> bool {
        true
    }

    /// The node this store speaks for when several share it; `None` for a store only one
    /// node uses.
    fn node(&self) -> Option<&str> {
        None
    }

    // --- locks ---------------------------------------------------------------------------
    /// Places (or replaces) a lock. Publishes [`Change::LockPlaced`].
    fn place_lock(&self, lock: Lock) -> StateFuture<'_, ()>;
    /// Lifts a user's lock; false if there was none. Publishes [`Change::LockLifted`].
    fn lift_lock(&self, user: &str) -> StateFuture<'_, bool>;
    /// The user's lock, if one holds at `now`.
    fn active_lock(&self, user: &str, now: SystemTime) -> StateFuture<'_, Option<Lock>>;
    /// Every lock that holds at `now`, by user name.
    fn active_locks(&self, now: SystemTime) -> StateFuture<'_, Vec<Lock>>;

    // --- just-in-time requests ---------------------------------------------------------
    /// Records a new pending request; its id is assigned here. Publishes
    /// [`Change::RequestCreated`].
    fn insert_request(&self, request: Request) -> StateFuture<'_, Request>;
    /// A request by id, with its approvals.
    fn request(&self, id: u64) -> StateFuture<'_, Option<Request>>;
    /// Requests still pending, oldest first.
    fn pending_requests(&self) -> StateFuture<'_, Vec<Request>>;
    /// The newest `limit` requests in any state, newest first.
    fn recent_requests(&self, limit: usize) -> StateFuture<'_, Vec<Request>>;
    /// Adds `approver`'s approval; false if they had approved it already.
    fn add_approval(
        &self,
        id: u64,
        approver: &str,
        comment: Option<&str>,
        at: SystemTime,
    ) -> StateFuture<'_, bool>;
    /// Moves a pending request to `state`; false if it was no longer pending (someone else
    /// decided first). Publishes [`Change::RequestDecided`].
    fn settle_request(&self, id: u64, state: RequestState) -> StateFuture<'_, bool>;

    // --- grants ----------------------------------------------------------------------------
    /// Records a grant. Publishes [`Change::GrantActivated`].
    fn insert_grant(&self, grant: NewGrant) -> StateFuture<'_, GrantRecord>;
    /// A grant by id.
    fn grant(&self, id: u64) -> StateFuture<'_, Option<GrantRecord>>;
    /// Grants whose end has not been recorded yet (active, or expired and not yet closed).
    fn live_grants(&self) -> StateFuture<'_, Vec<GrantRecord>>;
    /// The newest `limit` grants, newest first.
    fn recent_grants(&self, limit: usize) -> StateFuture<'_, Vec<GrantRecord>>;
    /// Revokes a live grant; false if it had ended already. Publishes
    /// [`Change::GrantEnded`].
    fn revoke_grant(
        &self,
        id: u64,
        by: &str,
        reason: &str,
        at: SystemTime,
    ) -> StateFuture<'_, bool>;
    /// Records that an expired grant has ended; false if that was recorded already (by
    /// another pass, or another node). Publishes [`Change::GrantEnded`].
    fn close_expired_grant(&self, id: u64) -> StateFuture<'_, bool>;
    /// Records that security has looked at a break-glass grant.
    fn acknowledge_grant(&self, id: u64, by: &str, at: SystemTime) -> StateFuture<'_, bool>;
    /// For each (user, role, target) ever activated: how often and when last.
    fn usage(&self) -> StateFuture<'_, Vec<Usage>>;
    /// Break-glass grants nobody has acknowledged yet, oldest first.
    fn unacknowledged_break_glass(&self) -> StateFuture<'_, Vec<GrantRecord>>;

    // --- the vault's rows ------------------------------------------------------------------
    /// The data key, wrapped by the master key, if one was made.
    fn wrapped_data_key(&self) -> StateFuture<'_, Option<Vec<u8>>>;
    /// Stores `wrapped` as the data key unless one exists; returns the one that is stored
    /// (two first starts racing agree on one key).
    fn init_wrapped_data_key(&self, wrapped: Vec<u8>, at: SystemTime) -> StateFuture<'_, Vec<u8>>;
    /// Replaces the wrapped data key with `new` if it is still `expected` (a master-key
    /// rotation's commit); false if it was not.
    fn replace_wrapped_data_key(&self, expected: Vec<u8>, new: Vec<u8>) -> StateFuture<'_, bool>;
    /// Stores a sealed credential; with `replace` false, false if the name is taken.
    fn put_credential(&self, row: CredentialRow, replace: bool) -> StateFuture<'_, bool>;
    /// A sealed credential by name.
    fn credential(&self, name: &str) -> StateFuture<'_, Option<CredentialRow>>;
    /// Every credential, by name.
    fn credentials(&self) -> StateFuture<'_, Vec<CredentialRow>>;
    /// Removes a credential; false if there was none.
    fn remove_credential(&self, name: &str) -> StateFuture<'_, bool>;

    // --- TOTP ------------------------------------------------------------------------------
    /// Accepts TOTP `step` for `user` if it is newer than the last one accepted (atomically:
    /// two logins racing with the same code cannot both win).
    fn accept_totp_step(&self, user: &str, step: u64) -> StateFuture<'_, bool>;

    // --- guess throttle --------------------------------------------------------------------
    /// Reserves a slot on every one of `keys` unless one of them already counts `limit`
    /// failures (or slots) newer than `since`: then that key is the answer. A slot counts as
    /// a failure at `at` until [`StateStore::release_guess`] gives it back, so parallel
    /// verifications never exceed the limit, and a slot whose verification never finished
    /// (a crash, a dropped connection) stays a failure. Forgets failures no newer than
    /// `since`.
    fn reserve_guess(
        &self,
        keys: Vec<String>,
        limit: u32,
        since: SystemTime,
        at: SystemTime,
    ) -> StateFuture<'_, Result<u64, String>>;
    /// Gives a reserved slot back (the secret was right).
    fn release_guess(&self, slot: u64) -> StateFuture<'_, ()>;
    /// Counts a failure at `at` on every one of `keys`, keeping only the newest `limit` of
    /// each (the older ones no longer decide anything). Forgets failures no newer than
    /// `since`.
    fn record_guess_failures(
        &self,
        keys: Vec<String>,
        limit: u32,
        since: SystemTime,
        at: SystemTime,
    ) -> StateFuture<'_, ()>;
    /// The first of `keys` that counts `limit` failures (or slots) newer than `since`.
    fn full_guess_key(
        &self,
        keys: Vec<String>,
        limit: u32,
        since: SystemTime,
    ) -> StateFuture<'_, Option<String>>;

    // --- the session index -------------------------------------------------------------
    /// Records a session that has just started (its `ended` is ignored).
    fn open_session(&self, session: SessionRecord) -> StateFuture<'_, ()>;
    /// Records how a session ended; false if it was not open (unknown, or ended already).
    fn close_session(&self, id: &str, end: SessionEnd) -> StateFuture<'_, bool>;
    /// Sessions not ended, oldest first.
    fn open_sessions(&self) -> StateFuture<'_, Vec<SessionRecord>>;
    /// A session by id, open or ended.
    fn session(&self, id: &str) -> StateFuture<'_, Option<SessionRecord>>;
    /// Asks for a live session to be ended. Publishes [`Change::KillRequested`] (nothing is
    /// stored: a session that is not running has nothing to end).
    fn request_kill(&self, session: &str, by: &str, reason: &str) -> StateFuture<'_, ()>;

    // --- nodes ----------------------------------------------------------------------------
    /// Says this node is alive (and how far its sessions have got). A store only one node
    /// uses has nobody to tell.
    fn heartbeat(&self, beat: NodeBeat) -> StateFuture<'_, ()> {
        let _ = beat;
        futures::future::ready(Ok(())).boxed()
    }
    /// Finds the other nodes whose last heartbeat is older than `lease` (by the store's
    /// clock) and ends their open sessions as `node_lost` — once: of nodes asking together,
    /// one gets each lost node.
    fn claim_lost_nodes(&self, lease: std::time::Duration) -> StateFuture<'_, Vec<LostNode>> {
        let _ = lease;
        futures::future::ready(Ok(Vec::new())).boxed()
    }
    /// The nodes sharing the store, by name.
    fn nodes(&self) -> StateFuture<'_, Vec<NodeRecord>> {
        futures::future::ready(Ok(Vec::new())).boxed()
    }

    // --- live-view tickets (shared stores; one node keeps its own in memory) ---------------
    /// Stores a ticket (and forgets expired ones).
    fn put_ticket(&self, ticket: LiveTicket) -> StateFuture<'_, ()> {
        let _ = ticket;
        futures::future::ready(Err(StateError::Settings(
            "live-view tickets are kept in the store only when nodes share it".into(),
        )))
        .boxed()
    }
    /// Takes a ticket out by its hash: it is used once, whoever asks first.
    fn take_ticket(&self, hash: &str) -> StateFuture<'_, Option<LiveTicket>> {
        let _ = hash;
        futures::future::ready(Err(StateError::Settings(
            "live-view tickets are kept in the store only when nodes share it".into(),
        )))
        .boxed()
    }

    // --- the shared audit copy -------------------------------------------------------------
    /// How many lines of this node's audit log the store holds (a store only one node uses
    /// keeps none: its log is searched where it is).
    fn audit_lines_held(&self) -> StateFuture<'_, u64> {
        futures::future::ready(Ok(0)).boxed()
    }
    /// Copies lines of this node's audit log in (lines held already are left as they are).
    fn hold_audit_lines(&self, lines: Vec<AuditLine>) -> StateFuture<'_, ()> {
        let _ = lines;
        futures::future::ready(Ok(())).boxed()
    }
    /// Every node's lines that pass `page`'s filters, newest first.
    fn audit_page(&self, page: AuditPage) -> StateFuture<'_, Vec<SharedAuditLine>> {
        let _ = page;
        futures::future::ready(Ok(Vec::new())).boxed()
    }

    // --- evidence anchors ---------------------------------------------------------------
    /// The anchor called `name`.
    fn anchor(&self, name: &str) -> StateFuture<'_, Option<Anchor>>;
    /// Sets (or moves) the anchor called `name`.
    fn set_anchor(&self, name: &str, anchor: Anchor) -> StateFuture<'_, ()>;
    /// The anchors whose names start with `prefix` (taken literally), by name.
    fn anchors_named(&self, prefix: &str) -> StateFuture<'_, Vec<(String, Anchor)>>;
}
