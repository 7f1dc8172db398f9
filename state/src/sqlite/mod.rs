//! The embedded backend: SQLite in `data/state.db`.
//!
//! One thread owns the connection and runs statements in the order they are asked for; the
//! async methods hand it a job and wait for its answer. So no statement ever runs on a tokio
//! worker, nothing needs a lock around the connection, and the store works from any thread
//! (a job is sent when the method is called; the future only waits for its answer).
//!
//! * [`migrations`]: the schema, versioned with `PRAGMA user_version`.
//! * [`access`]: locks, requests, approvals and grants.
//! * [`vault`]: the wrapped data key and sealed credentials.
//! * [`guesses`]: the guess throttle's failures and reserved slots.
//! * [`sessions`]: the session index.

mod access;
mod guesses;
mod migrations;
mod sessions;
mod vault;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use futures::FutureExt;
use portcullis_policy::{Lock, Request, RequestState};
use rusqlite::Connection;
use tokio::sync::{broadcast, oneshot};

use crate::feed::FEED_CAPACITY;
use crate::{
    Anchor, Change, CredentialRow, GrantRecord, NewGrant, SessionEnd, SessionRecord, StateError,
    StateFuture, StateStore, Usage,
};

pub(crate) use crate::rows::{from_ms, to_ms};

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// The SQLite state store.
pub struct SqliteStore {
    path: PathBuf,
    jobs: mpsc::Sender<Job>,
    feed: broadcast::Sender<Change>,
    /// The connection's thread, joined on drop: once the store is gone, the database file
    /// is closed (checkpointed) and another process or store may take it over.
    worker: Option<std::thread::JoinHandle<()>>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the queue ends the thread once the jobs already asked for have run.
        drop(std::mem::replace(&mut self.jobs, mpsc::channel().0));
        if let Some(worker) = self.worker.take()
            && worker.thread().id() != std::thread::current().id()
        {
            let _ = worker.join();
        }
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating if needed, readable by its owner only) and migrates the database,
    /// and starts the thread that owns it.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let sqlite = |source| StateError::Sqlite {
            path: path.to_owned(),
            source,
        };
        make_private(path).map_err(|source| StateError::Private {
            path: path.to_owned(),
            source,
        })?;
        let mut connection = Connection::open(path).map_err(sqlite)?;
        connection
            .busy_timeout(Duration::from_secs(5))
            .map_err(sqlite)?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(sqlite)?;
        // With WAL, NORMAL survives a crash of the process and costs no fsync per commit
        // (the audit anchor moves with every line).
        connection
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(sqlite)?;
        connection
            .pragma_update(None, "foreign_keys", "ON")
            .map_err(sqlite)?;
        migrations::apply(&mut connection, path)?;
        let (jobs, queue) = mpsc::channel::<Job>();
        let worker = std::thread::Builder::new()
            .name("portcullis-state".into())
            .spawn(move || {
                // Ends when the store (the only sender) is dropped.
                for job in queue {
                    job(&mut connection);
                }
            })
            .map_err(|source| StateError::Private {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            path: path.to_owned(),
            jobs,
            feed: broadcast::channel(FEED_CAPACITY).0,
            worker: Some(worker),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `work` on the connection's thread; the job is queued now, the future waits for
    /// its answer.
    pub(crate) fn call<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> impl Future<Output = Result<T, StateError>> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        let sent = self.jobs.send(Box::new(move |connection| {
            let _ = reply.send(work(connection));
        }));
        let path = self.path.clone();
        async move {
            sent.map_err(|_| StateError::Stopped)?;
            answer
                .await
                .map_err(|_| StateError::Stopped)?
                .map_err(|source| StateError::Sqlite { path, source })
        }
    }

    /// Like [`SqliteStore::call`], then publishes `change(&answer)` if it gives one.
    pub(crate) fn call_and_publish<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
        change: impl FnOnce(&T) -> Option<Change> + Send + 'static,
    ) -> impl Future<Output = Result<T, StateError>> + Send + 'static {
        let done = self.call(work);
        let feed = self.feed.clone();
        async move {
            let answer = done.await?;
            if let Some(change) = change(&answer) {
                // Nobody listening is fine.
                let _ = feed.send(change);
            }
            Ok(answer)
        }
    }
}

/// Creates the database file readable by its owner only (SQLite gives its -wal and -shm
/// files the database's mode), and takes group and other access away from files an older
/// version left open.
fn make_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = PathBuf::from(name);
        match std::fs::metadata(&file) {
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl StateStore for SqliteStore {
    fn changes(&self) -> broadcast::Receiver<Change> {
        self.feed.subscribe()
    }

    fn location(&self) -> String {
        format!("state database {}", self.path.display())
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
        self.requests_where("1 = 1 ORDER BY id DESC LIMIT ?1", Some(limit))
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
        self.grants_where("end_audited = 0 ORDER BY id", None)
            .boxed()
    }
    fn recent_grants(&self, limit: usize) -> StateFuture<'_, Vec<GrantRecord>> {
        self.grants_where("1 = 1 ORDER BY id DESC LIMIT ?1", Some(limit))
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
        self.grants_where(
            "break_glass = 1 AND acknowledged_at IS NULL ORDER BY id",
            None,
        )
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
        // One process: the feed is the whole way there.
        let _ = self.feed.send(Change::KillRequested {
            session: session.to_owned(),
            by: by.to_owned(),
            reason: reason.to_owned(),
        });
        futures::future::ready(Ok(())).boxed()
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

    fn accept_totp_step(&self, user: &str, step: u64) -> StateFuture<'_, bool> {
        let user = user.to_owned();
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        self.call(move |db| {
            db.execute(
                "INSERT INTO totp_steps (user, step) VALUES (?1, ?2)
                 ON CONFLICT(user) DO UPDATE SET step = excluded.step
                 WHERE excluded.step > totp_steps.step",
                rusqlite::params![user, step],
            )
            .map(|changed| changed == 1)
        })
        .boxed()
    }

    fn anchor(&self, name: &str) -> StateFuture<'_, Option<Anchor>> {
        let name = name.to_owned();
        self.call(move |db| {
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
        .boxed()
    }

    fn anchors_named(&self, prefix: &str) -> StateFuture<'_, Vec<(String, Anchor)>> {
        let prefix = prefix.to_owned();
        self.call(move |db| {
            let mut statement = db.prepare_cached(
                "SELECT name, count, tag, sealed FROM anchors
                 WHERE substr(name, 1, length(?1)) = ?1 ORDER BY name",
            )?;
            statement
                .query_map([prefix], |row| {
                    Ok((
                        row.get(0)?,
                        Anchor {
                            count: u64::try_from(row.get::<_, i64>(1)?).unwrap_or_default(),
                            tag: row.get(2)?,
                            sealed: row.get::<_, i64>(3)? != 0,
                        },
                    ))
                })?
                .collect()
        })
        .boxed()
    }

    fn set_anchor(&self, name: &str, anchor: Anchor) -> StateFuture<'_, ()> {
        let name = name.to_owned();
        self.call(move |db| {
            db.prepare_cached(
                "INSERT INTO anchors (name, count, tag, sealed, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(name) DO UPDATE SET count = excluded.count, tag = excluded.tag,
                     sealed = excluded.sealed, updated_at = excluded.updated_at",
            )?
            .execute(rusqlite::params![
                name,
                i64::try_from(anchor.count).unwrap_or(i64::MAX),
                anchor.tag,
                i64::from(anchor.sealed),
                to_ms(SystemTime::now())
            ])
            .map(|_| ())
        })
        .boxed()
    }
}
