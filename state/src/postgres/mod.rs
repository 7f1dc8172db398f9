//! The shared backend: PostgreSQL, for several bastion nodes.
//!
//! * Client: tokio-postgres (the async PostgreSQL client the Rust ecosystem builds on, kept
//!   by the rust-postgres project; pure Rust, no libpq), pooled by deadpool-postgres; TLS
//!   over rustls with libpq's `sslmode` words ([`tls`], [`settings`]).
//! * The store owns a small tokio runtime of its own: its connections are driven there, so
//!   callers on any thread — the audit log's synchronous anchor updates included — can wait
//!   for an answer with `futures::executor::block_on`, as they can with SQLite.
//! * Writes that others must hear of also append to the `changes` table in the same
//!   transaction and `NOTIFY`; every node follows that log ([`changes`]).
//! * [`schema`]: versioned migrations, applied at start under an advisory lock.
//! * [`access`], [`vault`], [`guesses`], [`sessions`]: the statements, as in the SQLite
//!   backend; atomic checks that SQLite gets from its single writer are row locks,
//!   `ON CONFLICT` and advisory locks here.

mod access;
mod audit;
mod changes;
mod guesses;
mod nodes;
mod schema;
mod sessions;
pub mod settings;
mod tls;
mod vault;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use futures::FutureExt;
use portcullis_policy::{Lock, Request, RequestState};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::broadcast;
use tokio_postgres::NoTls;

pub use settings::{PostgresSettings, SslMode};

use crate::feed::FEED_CAPACITY;
use crate::{
    Anchor, AuditLine, AuditPage, Change, CredentialRow, GrantRecord, LiveTicket, LostNode,
    NewGrant, NodeBeat, NodeRecord, SessionEnd, SessionRecord, SharedAuditLine, StateError,
    StateFuture, StateStore, Usage,
};

pub(crate) use crate::rows::{from_ms, id_of, sql_id, to_ms};

/// How connections are encrypted.
#[derive(Clone)]
pub(crate) enum Tls {
    Plain,
    Rustls(tls::Connector),
}

/// The PostgreSQL state store.
pub struct PostgresStore {
    pool: Pool,
    /// Drives the pool's connections and the change follower; shut down on drop.
    runtime: Option<Runtime>,
    handle: Handle,
    feed: broadcast::Sender<Change>,
    /// Who wrote a change: this store (node name and a per-process instance), so the
    /// follower does not announce this store's own changes twice.
    origin: Arc<str>,
    node: String,
    location: String,
    /// Whether the follower's connection is up: the first to know the database is gone.
    connected: Arc<std::sync::atomic::AtomicBool>,
    /// Whether this store has sent a heartbeat yet (the first says when the node started).
    beaten: std::sync::atomic::AtomicBool,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // Never blocks (the store may be dropped on an async worker).
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("location", &self.location)
            .field("node", &self.node)
            .finish()
    }
}

/// What a failed connection attempt means to an operator.
pub(crate) fn connect_error(location: &str, error: &tokio_postgres::Error) -> StateError {
    use tokio_postgres::error::SqlState;
    let location = location.to_owned();
    if let Some(db) = error.as_db_error() {
        let detail = db.message().to_owned();
        let code = db.code();
        return if *code == SqlState::CANNOT_CONNECT_NOW || *code == SqlState::TOO_MANY_CONNECTIONS {
            StateError::Unreachable { location, detail }
        } else {
            StateError::Rejected { location, detail }
        };
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return StateError::Rejected {
                location,
                detail: format!("TLS: {tls}"),
            };
        }
        source = cause.source();
    }
    let detail = error.to_string();
    if detail.contains("TLS") || detail.contains("tls") {
        return StateError::Rejected { location, detail };
    }
    let detail = match std::error::Error::source(error) {
        Some(cause) => format!("{detail}: {cause}"),
        None => detail,
    };
    StateError::Unreachable { location, detail }
}

/// What a failed statement means: the database gone (unavailable) or the statement.
pub(crate) fn query_error(location: &str, error: tokio_postgres::Error) -> StateError {
    let io = std::error::Error::source(&error).is_some_and(|cause| cause.is::<std::io::Error>());
    if error.is_closed() || io {
        StateError::Unreachable {
            location: location.to_owned(),
            detail: error.to_string(),
        }
    } else {
        StateError::Postgres {
            location: location.to_owned(),
            source: error,
        }
    }
}

fn pool_error(location: &str, error: deadpool_postgres::PoolError) -> StateError {
    use deadpool_postgres::PoolError;
    match error {
        PoolError::Backend(error) => connect_error(location, &error),
        PoolError::Closed => StateError::Stopped,
        other => StateError::Unreachable {
            location: location.to_owned(),
            detail: other.to_string(),
        },
    }
}

impl PostgresStore {
    /// Connects, checks the credentials, migrates, and starts following other nodes'
    /// changes. Fails with [`StateError::Unreachable`], [`StateError::Rejected`],
    /// [`StateError::Settings`] or [`StateError::TooNew`] for an operator to act on.
    pub async fn open(settings: PostgresSettings) -> Result<Self, StateError> {
        let resolved = settings::resolve(&settings)?;
        let location = resolved.location.clone();
        let mut config = resolved.config.clone();
        let tls = match resolved.ssl_mode {
            SslMode::Disable => {
                config.ssl_mode(tokio_postgres::config::SslMode::Disable);
                Tls::Plain
            }
            SslMode::Prefer => {
                config.ssl_mode(tokio_postgres::config::SslMode::Prefer);
                Tls::Rustls(tls::Connector::new(&resolved)?)
            }
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
                Tls::Rustls(tls::Connector::new(&resolved)?)
            }
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("portcullis-state")
            .enable_all()
            .build()
            .map_err(|e| StateError::Settings(format!("cannot start the state store: {e}")))?;
        let handle = runtime.handle().clone();
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &tls {
            Tls::Plain => Manager::from_config(config.clone(), NoTls, manager_config),
            Tls::Rustls(connector) => {
                Manager::from_config(config.clone(), connector.clone(), manager_config)
            }
        };
        let pool = {
            // The pool's timers need the store's runtime.
            let _entered = handle.enter();
            Pool::builder(manager)
                .max_size(settings.pool_size.max(2))
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .wait_timeout(Some(settings.connect_timeout))
                .create_timeout(Some(settings.connect_timeout))
                .recycle_timeout(Some(settings.connect_timeout))
                .build()
                .map_err(|e| StateError::Settings(format!("state database pool: {e}")))?
        };
        let origin: Arc<str> = Arc::from(format!(
            "{}/{}/{}",
            settings.node,
            std::process::id(),
            instance_number()
        ));
        let (feed, _) = broadcast::channel(FEED_CAPACITY);
        let started = {
            let pool = pool.clone();
            let location = location.clone();
            let node = settings.node.clone();
            handle.spawn(async move {
                let mut db = pool.get().await.map_err(|e| pool_error(&location, e))?;
                schema::apply(&mut db, &location, &node).await?;
                changes::newest(&**db)
                    .await
                    .map_err(|e| query_error(&location, e))
            })
        };
        let cursor = match started.await {
            Ok(Ok(cursor)) => cursor,
            Ok(Err(error)) => {
                runtime.shutdown_background();
                return Err(error);
            }
            Err(_) => {
                runtime.shutdown_background();
                return Err(StateError::Stopped);
            }
        };
        let connected = Arc::new(std::sync::atomic::AtomicBool::new(true));
        handle.spawn(changes::follow(changes::Follower {
            connected: connected.clone(),
            config,
            tls,
            origin: origin.clone(),
            feed: feed.clone(),
            cursor,
            resync_every: settings.resync_every,
            location: location.clone(),
        }));
        Ok(Self {
            pool,
            runtime: Some(runtime),
            handle,
            feed,
            origin,
            node: settings.node,
            location,
            beaten: std::sync::atomic::AtomicBool::new(false),
            connected,
        })
    }

    /// Runs `work` with a pooled connection on the store's runtime. The work starts now;
    /// the future only waits for its answer (dropping it does not undo the work).
    pub(crate) fn call<T, F, Fut>(
        &self,
        work: F,
    ) -> impl Future<Output = Result<T, StateError>> + Send + 'static
    where
        T: Send + 'static,
        F: FnOnce(Object) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, tokio_postgres::Error>> + Send + 'static,
    {
        let pool = self.pool.clone();
        let location = self.location.clone();
        let connected = self.connected.clone();
        let task = self.handle.spawn(async move {
            let db = pool.get().await.map_err(|e| pool_error(&location, e));
            let answer = match db {
                Ok(db) => work(db).await.map_err(|e| query_error(&location, e)),
                Err(error) => Err(error),
            };
            // Known at once, not only when the follower notices.
            match &answer {
                Err(error) if error.is_unavailable() => {
                    connected.store(false, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(_) => connected.store(true, std::sync::atomic::Ordering::Relaxed),
                Err(_) => {}
            }
            answer
        });
        async move { task.await.map_err(|_| StateError::Stopped)? }
    }

    /// Like [`PostgresStore::call`] for a write that may change what others see: `work`
    /// gets this store's origin to log its change with (see [`changes::record`]), and the
    /// change it returns is announced here once committed.
    pub(crate) fn call_and_publish<T, F, Fut>(
        &self,
        work: F,
    ) -> impl Future<Output = Result<T, StateError>> + Send + 'static
    where
        T: Send + 'static,
        F: FnOnce(Object, Arc<str>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(T, Option<Change>), tokio_postgres::Error>> + Send + 'static,
    {
        let origin = self.origin.clone();
        let feed = self.feed.clone();
        let done = self.call(move |db| work(db, origin));
        async move {
            let (answer, change) = done.await?;
            if let Some(change) = change {
                // Nobody listening is fine.
                let _ = feed.send(change);
            }
            Ok(answer)
        }
    }
}

/// Tells apart stores opened by one process (tests open several).
fn instance_number() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl StateStore for PostgresStore {
    fn changes(&self) -> broadcast::Receiver<Change> {
        self.feed.subscribe()
    }

    fn location(&self) -> String {
        format!("state database {}", self.location)
    }

    fn node(&self) -> Option<&str> {
        Some(&self.node)
    }

    fn reachable(&self) -> bool {
        self.connected.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn place_lock(&self, lock: Lock) -> StateFuture<'_, ()> {
        self.place_lock_(lock).boxed()
    }
    fn lift_lock(&self, user: &str) -> StateFuture<'_, bool> {
        self.lift_lock_(user).boxed()
    }
    fn active_lock(&self, user: &str, now: SystemTime) -> StateFuture<'_, Option<Lock>> {
        self.active_lock_(user, now).boxed()
    }
    fn active_locks(&self, now: SystemTime) -> StateFuture<'_, Vec<Lock>> {
        self.active_locks_(now).boxed()
    }

    fn insert_request(&self, request: Request) -> StateFuture<'_, Request> {
        self.insert_request_(request).boxed()
    }
    fn request(&self, id: u64) -> StateFuture<'_, Option<Request>> {
        self.request_(id).boxed()
    }
    fn pending_requests(&self) -> StateFuture<'_, Vec<Request>> {
        self.requests_where("state = 'pending' ORDER BY id", None)
            .boxed()
    }
    fn recent_requests(&self, limit: usize) -> StateFuture<'_, Vec<Request>> {
        self.requests_where("true ORDER BY id DESC LIMIT $1", Some(limit))
            .boxed()
    }
    fn add_approval(
        &self,
        id: u64,
        approver: &str,
        comment: Option<&str>,
        at: SystemTime,
    ) -> StateFuture<'_, bool> {
        self.add_approval_(id, approver, comment, at).boxed()
    }
    fn settle_request(&self, id: u64, state: RequestState) -> StateFuture<'_, bool> {
        self.settle_request_(id, state).boxed()
    }

    fn insert_grant(&self, grant: NewGrant) -> StateFuture<'_, GrantRecord> {
        self.insert_grant_(grant).boxed()
    }
    fn grant(&self, id: u64) -> StateFuture<'_, Option<GrantRecord>> {
        self.grant_(id).boxed()
    }
    fn live_grants(&self) -> StateFuture<'_, Vec<GrantRecord>> {
        self.grants_where("NOT end_audited ORDER BY id", None)
            .boxed()
    }
    fn recent_grants(&self, limit: usize) -> StateFuture<'_, Vec<GrantRecord>> {
        self.grants_where("true ORDER BY id DESC LIMIT $1", Some(limit))
            .boxed()
    }
    fn revoke_grant(
        &self,
        id: u64,
        by: &str,
        reason: &str,
        at: SystemTime,
    ) -> StateFuture<'_, bool> {
        self.revoke_grant_(id, by, reason, at).boxed()
    }
    fn close_expired_grant(&self, id: u64) -> StateFuture<'_, bool> {
        self.close_expired_grant_(id).boxed()
    }
    fn acknowledge_grant(&self, id: u64, by: &str, at: SystemTime) -> StateFuture<'_, bool> {
        self.acknowledge_grant_(id, by, at).boxed()
    }
    fn usage(&self) -> StateFuture<'_, Vec<Usage>> {
        self.usage_().boxed()
    }
    fn unacknowledged_break_glass(&self) -> StateFuture<'_, Vec<GrantRecord>> {
        self.grants_where("break_glass AND acknowledged_at IS NULL ORDER BY id", None)
            .boxed()
    }

    fn wrapped_data_key(&self) -> StateFuture<'_, Option<Vec<u8>>> {
        self.wrapped_data_key_().boxed()
    }
    fn init_wrapped_data_key(&self, wrapped: Vec<u8>, at: SystemTime) -> StateFuture<'_, Vec<u8>> {
        self.init_wrapped_data_key_(wrapped, at).boxed()
    }
    fn replace_wrapped_data_key(&self, expected: Vec<u8>, new: Vec<u8>) -> StateFuture<'_, bool> {
        self.replace_wrapped_data_key_(expected, new).boxed()
    }
    fn put_credential(&self, row: CredentialRow, replace: bool) -> StateFuture<'_, bool> {
        self.put_credential_(row, replace).boxed()
    }
    fn credential(&self, name: &str) -> StateFuture<'_, Option<CredentialRow>> {
        self.credential_(name).boxed()
    }
    fn credentials(&self) -> StateFuture<'_, Vec<CredentialRow>> {
        self.credentials_().boxed()
    }
    fn remove_credential(&self, name: &str) -> StateFuture<'_, bool> {
        self.remove_credential_(name).boxed()
    }

    fn accept_totp_step(&self, user: &str, step: u64) -> StateFuture<'_, bool> {
        let user = user.to_owned();
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        self.call(move |db| async move {
            // One statement: of two nodes racing with the same code, one updates the row.
            let statement = db
                .prepare_cached(
                    "INSERT INTO totp_steps (user_name, step) VALUES ($1, $2)
                     ON CONFLICT (user_name) DO UPDATE SET step = excluded.step
                     WHERE excluded.step > totp_steps.step",
                )
                .await?;
            Ok(db.execute(&statement, &[&user, &step]).await? == 1)
        })
        .boxed()
    }

    fn reserve_guess(
        &self,
        keys: Vec<String>,
        limit: u32,
        since: SystemTime,
        at: SystemTime,
    ) -> StateFuture<'_, Result<u64, String>> {
        self.reserve_guess_(keys, limit, since, at).boxed()
    }
    fn release_guess(&self, slot: u64) -> StateFuture<'_, ()> {
        self.release_guess_(slot).boxed()
    }
    fn record_guess_failures(
        &self,
        keys: Vec<String>,
        limit: u32,
        since: SystemTime,
        at: SystemTime,
    ) -> StateFuture<'_, ()> {
        self.record_guess_failures_(keys, limit, since, at).boxed()
    }
    fn full_guess_key(
        &self,
        keys: Vec<String>,
        limit: u32,
        since: SystemTime,
    ) -> StateFuture<'_, Option<String>> {
        self.full_guess_key_(keys, limit, since).boxed()
    }

    fn open_session(&self, session: SessionRecord) -> StateFuture<'_, ()> {
        self.open_session_(session).boxed()
    }
    fn close_session(&self, id: &str, end: SessionEnd) -> StateFuture<'_, bool> {
        self.close_session_(id, end).boxed()
    }
    fn open_sessions(&self) -> StateFuture<'_, Vec<SessionRecord>> {
        self.open_sessions_().boxed()
    }
    fn session(&self, id: &str) -> StateFuture<'_, Option<SessionRecord>> {
        self.session_(id).boxed()
    }

    fn request_kill(&self, session: &str, by: &str, reason: &str) -> StateFuture<'_, ()> {
        // Logged like any change: the node running the session hears of it and ends it.
        let change = Change::KillRequested {
            session: session.to_owned(),
            by: by.to_owned(),
            reason: reason.to_owned(),
        };
        self.call_and_publish(move |mut db, origin| async move {
            let transaction = db.transaction().await?;
            changes::record(&*transaction, &origin, &change).await?;
            transaction.commit().await?;
            Ok(((), Some(change)))
        })
        .boxed()
    }

    fn put_ticket(&self, ticket: LiveTicket) -> StateFuture<'_, ()> {
        self.call(move |mut db| async move {
            let transaction = db.transaction().await?;
            transaction
                .execute(
                    "DELETE FROM live_tickets WHERE expires_at < $1",
                    &[&to_ms(SystemTime::now())],
                )
                .await?;
            transaction
                .execute(
                    "INSERT INTO live_tickets (hash, session, holder, scopes, expires_at)
                     VALUES ($1, $2, $3, $4, $5)",
                    &[
                        &ticket.hash,
                        &ticket.session,
                        &ticket.holder,
                        &ticket.scopes,
                        &to_ms(ticket.expires),
                    ],
                )
                .await?;
            transaction.commit().await
        })
        .boxed()
    }
    fn take_ticket(&self, hash: &str) -> StateFuture<'_, Option<LiveTicket>> {
        let hash = hash.to_owned();
        self.call(move |db| async move {
            // DELETE … RETURNING: of two nodes redeeming at once, one gets it.
            Ok(db
                .query_opt(
                    "DELETE FROM live_tickets WHERE hash = $1 RETURNING *",
                    &[&hash],
                )
                .await?
                .map(|row| LiveTicket {
                    hash: row.get("hash"),
                    session: row.get("session"),
                    holder: row.get("holder"),
                    scopes: row.get("scopes"),
                    expires: from_ms(row.get("expires_at")),
                }))
        })
        .boxed()
    }

    fn audit_lines_held(&self) -> StateFuture<'_, u64> {
        self.audit_lines_held_().boxed()
    }
    fn hold_audit_lines(&self, lines: Vec<AuditLine>) -> StateFuture<'_, ()> {
        self.hold_audit_lines_(lines).boxed()
    }
    fn audit_page(&self, page: AuditPage) -> StateFuture<'_, Vec<SharedAuditLine>> {
        self.audit_page_(page).boxed()
    }

    fn heartbeat(&self, beat: NodeBeat) -> StateFuture<'_, ()> {
        self.heartbeat_(beat).boxed()
    }
    fn claim_lost_nodes(&self, lease: Duration) -> StateFuture<'_, Vec<LostNode>> {
        self.claim_lost_nodes_(lease).boxed()
    }
    fn nodes(&self) -> StateFuture<'_, Vec<NodeRecord>> {
        self.nodes_().boxed()
    }

    fn anchor(&self, name: &str) -> StateFuture<'_, Option<Anchor>> {
        let name = name.to_owned();
        self.call(move |db| async move {
            let statement = db
                .prepare_cached("SELECT count, tag, sealed FROM anchors WHERE name = $1")
                .await?;
            Ok(db.query_opt(&statement, &[&name]).await?.map(|row| Anchor {
                count: id_of(row.get(0)),
                tag: row.get(1),
                sealed: row.get(2),
            }))
        })
        .boxed()
    }

    fn anchors_named(&self, prefix: &str) -> StateFuture<'_, Vec<(String, Anchor)>> {
        let prefix = prefix.to_owned();
        self.call(move |db| async move {
            Ok(db
                .query(
                    "SELECT name, count, tag, sealed FROM anchors
                     WHERE starts_with(name, $1) ORDER BY name",
                    &[&prefix],
                )
                .await?
                .iter()
                .map(|row| {
                    (
                        row.get(0),
                        Anchor {
                            count: id_of(row.get(1)),
                            tag: row.get(2),
                            sealed: row.get(3),
                        },
                    )
                })
                .collect())
        })
        .boxed()
    }

    fn set_anchor(&self, name: &str, anchor: Anchor) -> StateFuture<'_, ()> {
        let name = name.to_owned();
        self.call(move |db| async move {
            let statement = db
                .prepare_cached(
                    "INSERT INTO anchors (name, count, tag, sealed, updated_at) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (name) DO UPDATE SET count = excluded.count, tag = excluded.tag,
                         sealed = excluded.sealed, updated_at = excluded.updated_at",
                )
                .await?;
            db.execute(
                &statement,
                &[
                    &name,
                    &sql_id(anchor.count),
                    &anchor.tag,
                    &anchor.sealed,
                    &to_ms(SystemTime::now()),
                ],
            )
            .await
            .map(|_| ())
        })
        .boxed()
    }
}
