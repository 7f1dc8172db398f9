//! The recording writer: one thread per recording, fed through a bounded queue.
//!
//! ```text
//! relay ──RecordingHandle::output/input/resize/marker──▶ [bounded queue] ──▶ writer thread
//!                                                                        ├─▶ <id>.cast       (asciicast v2)
//!                                                                        └─▶ <id>.cast.hmac  (one tag per line, then `end <seal>`)
//! ```
//!
//! * The queue is bounded: when the disk is slower than the session, the relay waits rather
//!   than memory growing. Nothing is dropped.
//! * File writes, flushes and the final fsync run on the recording's own thread, never on the
//!   async runtime's workers: a slow disk stalls this recording's queue, not other sessions.
//! * Both files are flushed at least every `flush_interval` (1 s): a small task on the
//!   runtime sends the thread a tick (holding only a weak sender, so it never keeps the
//!   recording open), and the thread also flushes when a busy queue kept ticks out. A crash
//!   loses at most that much. Tags are written only after the lines they cover have been flushed, so after
//!   a crash the integrity file is never ahead of the recording.
//! * Consecutive output chunks waiting in the queue are merged into one event (up to
//!   `coalesce_bytes`), which keeps bulk output cheap without changing what plays back.
//! * A write error stops the thread and is reported through [`RecordingHandle::failed`]; the
//!   broker decides whether the session may continue unrecorded.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::MissedTickBehavior;

use crate::asciicast::{EventKind, Header, Utf8Carry, begin_event, end_event, push_json_str};
use crate::chain::{Chain, ChainKey};

/// First line of every integrity file.
pub const MAC_MAGIC: &str = "portcullis-recording-hmac v1";

/// Where a recording's event times come from: a monotonic reading (the bastion passes its
/// clock's, so a test's manual clock stamps recordings too).
#[derive(Clone)]
pub struct TimeSource(Arc<dyn Fn() -> Instant + Send + Sync>);

impl TimeSource {
    /// Times from `now`.
    pub fn new(now: impl Fn() -> Instant + Send + Sync + 'static) -> Self {
        Self(Arc::new(now))
    }

    fn now(&self) -> Instant {
        (self.0)()
    }
}

impl Default for TimeSource {
    /// The machine's monotonic clock.
    fn default() -> Self {
        Self::new(Instant::now)
    }
}

impl std::fmt::Debug for TimeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TimeSource")
    }
}

/// Tuning for a recording.
#[derive(Debug, Clone)]
pub struct RecordingOptions {
    /// Longest time written data may sit in memory.
    pub flush_interval: Duration,
    /// Events that may wait in the queue before the relay is made to wait.
    pub queue_capacity: usize,
    /// Largest merged output event.
    pub coalesce_bytes: usize,
    /// Where event times come from.
    pub time: TimeSource,
}

impl Default for RecordingOptions {
    fn default() -> Self {
        Self {
            flush_interval: Duration::from_secs(1),
            queue_capacity: 256,
            coalesce_bytes: 256 * 1024,
            time: TimeSource::default(),
        }
    }
}

/// What went wrong with a recording.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RecordingError {
    /// The files could not be created.
    #[error("cannot create recording {path}: {message}")]
    Create {
        /// The .cast file.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
    /// Writing failed part-way.
    #[error("cannot write recording {path}: {message}")]
    Write {
        /// The .cast file.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
    /// The writer is gone: it failed earlier or the recording was finished.
    #[error("the recording is closed")]
    Closed,
}

/// What a finished recording amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The recording id (file stem).
    pub id: String,
    /// The .cast file.
    pub path: PathBuf,
    /// Lines written, header included.
    pub lines: u64,
    /// Output bytes recorded.
    pub output_bytes: u64,
    /// Input bytes recorded.
    pub input_bytes: u64,
    /// The closing tag, hex; the audit log keeps it so the file can be matched later.
    pub seal: String,
}

enum Command {
    Event {
        at: Duration,
        kind: EventKind,
        data: Vec<Bytes>,
    },
    Finish {
        at: Duration,
        reason: String,
        done: oneshot::Sender<Result<Summary, RecordingError>>,
    },
    Subscribe {
        reply: oneshot::Sender<Result<Subscription, RecordingError>>,
    },
    /// Time to flush what is buffered (from the ticker).
    Tick,
}

/// Live lines for watchers: how many a slow watcher may fall behind before it skips.
const LIVE_BACKLOG: usize = 1024;

/// A watcher's view of a recording: the lines already on disk, then the live ones.
#[derive(Debug)]
pub struct Subscription {
    /// The .cast file.
    pub path: PathBuf,
    /// How many lines (header included) the file holds up to the subscription; every later
    /// line arrives through `live`.
    pub lines_on_disk: u64,
    /// Lines written from now on, in order. Closed when the recording ends. A watcher that
    /// falls more than a thousand lines behind gets `Lagged` and has missed some.
    pub live: broadcast::Receiver<Arc<str>>,
}

/// Output a relay has shown but not yet handed to the writer (see
/// [`RecordingHandle::buffer_output`]).
#[derive(Debug, Default)]
pub struct OutputBatch {
    at: Duration,
    chunks: Vec<Bytes>,
    bytes: usize,
}

impl OutputBatch {
    /// Whether it holds anything.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }
}

/// Output bytes a batch collects before it is handed over regardless.
pub const BATCH_BYTES: usize = 256 * 1024;
/// Age at which a batch is handed over at the next chunk, however small it is.
pub const BATCH_MAX_AGE: Duration = Duration::from_millis(250);

/// The integrity file that goes with a recording.
pub fn mac_path(cast: &Path) -> PathBuf {
    let mut name = cast.as_os_str().to_owned();
    name.push(".hmac");
    PathBuf::from(name)
}

/// A live recording. Cheap to clone: the relay's two directions each hold one.
#[derive(Clone)]
pub struct RecordingHandle {
    id: Arc<str>,
    path: Arc<Path>,
    tx: mpsc::Sender<Command>,
    started: Instant,
    time: TimeSource,
    failure: watch::Receiver<Option<Arc<str>>>,
}

impl std::fmt::Debug for RecordingHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingHandle")
            .field("id", &self.id)
            .finish()
    }
}

/// Creates `<dir>/<id>.cast` and its integrity file, writes the header and starts the
/// writer task. Must be called inside a tokio runtime.
pub fn start(
    dir: &Path,
    id: &str,
    header: &Header,
    key: &ChainKey,
    options: RecordingOptions,
) -> Result<RecordingHandle, RecordingError> {
    let path = dir.join(format!("{id}.cast"));
    let create_error = |e: io::Error| RecordingError::Create {
        path: path.clone(),
        message: e.to_string(),
    };
    let mut writer = Writer {
        cast: BufWriter::with_capacity(128 * 1024, create_new(&path).map_err(create_error)?),
        mac: BufWriter::new(create_new(&mac_path(&path)).map_err(create_error)?),
        chain: Chain::start(key, id.as_bytes()),
        pending_tags: String::new(),
        line: Vec::with_capacity(4096),
        line_start: 0,
        last_at: Duration::ZERO,
        live: broadcast::channel(LIVE_BACKLOG).0,
        output_carry: Utf8Carry::default(),
        input_carry: Utf8Carry::default(),
        lines: 0,
        output_bytes: 0,
        input_bytes: 0,
        dirty: false,
    };
    let header_line = serde_json::to_vec(header).map_err(|e| RecordingError::Create {
        path: path.clone(),
        message: e.to_string(),
    })?;
    writer.line = header_line;
    writeln!(writer.mac, "{MAC_MAGIC} {id}")
        .and_then(|()| writer.commit_line())
        .and_then(|()| writer.flush())
        .map_err(create_error)?;

    let (tx, rx) = mpsc::channel(options.queue_capacity.max(1));
    let (failure_tx, failure) = watch::channel(None);
    let started = options.time.now();
    let handle = RecordingHandle {
        id: id.into(),
        path: path.as_path().into(),
        tx,
        started,
        time: options.time.clone(),
        failure,
    };
    tokio::spawn(tick(handle.tx.downgrade(), options.flush_interval));
    let thread_path = path.clone();
    let thread_id = id.to_owned();
    std::thread::Builder::new()
        .name("recorder".into())
        .spawn(move || {
            run(
                writer,
                rx,
                failure_tx,
                options,
                started,
                thread_id,
                thread_path,
            )
        })
        .map_err(create_error)?;
    Ok(handle)
}

/// Asks the writer thread to flush every `interval` for as long as the recording is open.
async fn tick(writer: mpsc::WeakSender<Command>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(writer) = writer.upgrade() else {
            return;
        };
        // A full queue means the thread is busy and flushes on its own clock.
        if let Err(mpsc::error::TrySendError::Closed(_)) = writer.try_send(Command::Tick) {
            return;
        }
    }
}

fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

impl RecordingHandle {
    /// The recording id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The .cast file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Terminal output (stdout and stderr alike). Waits while the queue is full.
    pub async fn output(&self, data: Bytes) -> Result<(), RecordingError> {
        self.event(EventKind::Output, data).await
    }

    /// Keystrokes.
    pub async fn input(&self, data: Bytes) -> Result<(), RecordingError> {
        self.event(EventKind::Input, data).await
    }

    /// The terminal was resized.
    pub async fn resize(&self, cols: u32, rows: u32) -> Result<(), RecordingError> {
        self.event(EventKind::Resize, Bytes::from(format!("{cols}x{rows}")))
            .await
    }

    /// A labelled point in time (session start, a command, ...).
    pub async fn marker(&self, label: impl Into<String>) -> Result<(), RecordingError> {
        self.event(EventKind::Marker, Bytes::from(label.into()))
            .await
    }

    /// Time since the recording started.
    fn elapsed(&self) -> Duration {
        self.time.now().saturating_duration_since(self.started)
    }

    async fn event(&self, kind: EventKind, data: Bytes) -> Result<(), RecordingError> {
        let at = self.elapsed();
        self.tx
            .send(Command::Event {
                at,
                kind,
                data: vec![data],
            })
            .await
            .map_err(|_| RecordingError::Closed)
    }

    /// Adds output to `batch` (stamped now if it is the first) and hands the batch to the
    /// writer once it holds [`BATCH_BYTES`] or is [`BATCH_MAX_AGE`] old. A relay under load
    /// calls this per chunk and [`RecordingHandle::flush_output`] when it goes idle: one
    /// wake-up of the writer per batch instead of per chunk.
    pub async fn buffer_output(
        &self,
        batch: &mut OutputBatch,
        data: Bytes,
    ) -> Result<(), RecordingError> {
        let now = self.elapsed();
        if batch.chunks.is_empty() {
            batch.at = now;
        }
        batch.bytes += data.len();
        batch.chunks.push(data);
        if batch.bytes >= BATCH_BYTES || now.saturating_sub(batch.at) >= BATCH_MAX_AGE {
            self.flush_output(batch).await
        } else {
            Ok(())
        }
    }

    /// Hands whatever `batch` holds to the writer.
    pub async fn flush_output(&self, batch: &mut OutputBatch) -> Result<(), RecordingError> {
        if batch.chunks.is_empty() {
            return Ok(());
        }
        let data = std::mem::take(&mut batch.chunks);
        batch.bytes = 0;
        self.tx
            .send(Command::Event {
                at: batch.at,
                kind: EventKind::Output,
                data,
            })
            .await
            .map_err(|_| RecordingError::Closed)
    }

    /// Writes an end marker (`end: <reason>`) and the seal, and closes the files. Only the
    /// first call does anything; later ones get [`RecordingError::Closed`].
    pub async fn finish(&self, reason: impl Into<String>) -> Result<Summary, RecordingError> {
        let (done, result) = oneshot::channel();
        self.tx
            .send(Command::Finish {
                at: self.elapsed(),
                reason: reason.into(),
                done,
            })
            .await
            .map_err(|_| RecordingError::Closed)?;
        result.await.map_err(|_| RecordingError::Closed)?
    }

    /// Subscribes to the recording as it is written: the writer first flushes, so the file
    /// holds exactly `lines_on_disk` lines and every later one comes through `live`.
    pub async fn subscribe(&self) -> Result<Subscription, RecordingError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Command::Subscribe { reply })
            .await
            .map_err(|_| RecordingError::Closed)?;
        answer.await.map_err(|_| RecordingError::Closed)?
    }

    /// Whether the writer has failed (checked before relaying anything new).
    pub fn has_failed(&self) -> bool {
        self.failure.borrow().is_some()
    }

    /// Resolves with the error message if the writer fails; never resolves otherwise.
    pub async fn failed(&self) -> Arc<str> {
        let mut failure = self.failure.clone();
        loop {
            if let Some(message) = failure.borrow_and_update().clone() {
                return message;
            }
            if failure.changed().await.is_err() {
                if let Some(message) = failure.borrow().clone() {
                    return message;
                }
                return std::future::pending().await;
            }
        }
    }
}

struct Writer {
    cast: BufWriter<File>,
    mac: BufWriter<File>,
    chain: Chain,
    /// Tags of lines not yet flushed to the .cast file; written after it is.
    pending_tags: String,
    line: Vec<u8>,
    /// Where the open event's data starts in `line`.
    line_start: usize,
    /// The time of the last event written.
    last_at: Duration,
    /// Lines as they are written, for watchers.
    live: broadcast::Sender<Arc<str>>,
    output_carry: Utf8Carry,
    input_carry: Utf8Carry,
    lines: u64,
    output_bytes: u64,
    input_bytes: u64,
    dirty: bool,
}

/// Tags held in memory before a flush is forced, so the integrity file keeps up under
/// heavy output.
const MAX_PENDING_TAGS: usize = 4096;

impl Writer {
    fn commit_line(&mut self) -> io::Result<()> {
        let tag = self.chain.append(&self.line);
        self.cast.write_all(&self.line)?;
        self.cast.write_all(b"\n")?;
        if self.live.receiver_count() > 0 {
            // Events are JSON, which is UTF-8.
            let line: Arc<str> = String::from_utf8_lossy(&self.line).into();
            let _ = self.live.send(line);
        }
        self.pending_tags.push_str(&hex::encode(tag));
        self.pending_tags.push('\n');
        self.lines += 1;
        self.dirty = true;
        if self.pending_tags.len() >= MAX_PENDING_TAGS * 65 {
            self.flush()?;
        }
        Ok(())
    }

    fn event(&mut self, at: Duration, kind: EventKind, data: &[u8]) -> io::Result<()> {
        self.begin(at, kind);
        self.push(kind, data);
        self.end()
    }

    /// Starts an event line; [`Writer::push`] adds data, [`Writer::end`] commits it.
    fn begin(&mut self, at: Duration, kind: EventKind) {
        // The two directions stamp their events independently and may arrive a little out
        // of order; players need times that never go backwards.
        let at = at.max(self.last_at);
        self.last_at = at;
        self.line.clear();
        begin_event(at.as_secs_f64(), kind, &mut self.line);
        self.line_start = self.line.len();
    }

    /// Adds data to the open event, escaped straight into the line (no intermediate copy).
    fn push(&mut self, kind: EventKind, data: &[u8]) {
        let line = &mut self.line;
        match kind {
            EventKind::Output => {
                self.output_bytes += data.len() as u64;
                self.output_carry
                    .feed_into(data, |text| push_json_str(line, text));
            }
            EventKind::Input => {
                self.input_bytes += data.len() as u64;
                self.input_carry
                    .feed_into(data, |text| push_json_str(line, text));
            }
            EventKind::Resize | EventKind::Marker => {
                push_json_str(line, &String::from_utf8_lossy(data));
            }
        }
    }

    /// Commits the open event, unless it is empty (all of it an incomplete character).
    fn end(&mut self) -> io::Result<()> {
        if self.line.len() == self.line_start {
            return Ok(());
        }
        end_event(&mut self.line);
        self.commit_line()
    }

    /// Recording first, then the tags that cover it.
    fn flush(&mut self) -> io::Result<()> {
        self.cast.flush()?;
        self.mac.write_all(self.pending_tags.as_bytes())?;
        self.pending_tags.clear();
        self.mac.flush()?;
        self.dirty = false;
        Ok(())
    }

    fn finish(&mut self, at: Duration, reason: &str, id: &str, path: &Path) -> io::Result<Summary> {
        for (kind, rest) in [
            (EventKind::Output, self.output_carry.flush()),
            (EventKind::Input, self.input_carry.flush()),
        ] {
            if !rest.is_empty() {
                self.begin(at, kind);
                push_json_str(&mut self.line, &rest);
                self.end()?;
            }
        }
        self.event(at, EventKind::Marker, format!("end: {reason}").as_bytes())?;
        self.flush()?;
        let seal = hex::encode(self.chain.seal());
        writeln!(self.mac, "end {seal}")?;
        self.mac.flush()?;
        self.cast.get_ref().sync_all()?;
        self.mac.get_ref().sync_all()?;
        Ok(Summary {
            id: id.to_owned(),
            path: path.to_owned(),
            lines: self.lines,
            output_bytes: self.output_bytes,
            input_bytes: self.input_bytes,
            seal,
        })
    }
}

/// The writer thread: takes commands until the recording is finished or fails.
fn run(
    mut writer: Writer,
    mut rx: mpsc::Receiver<Command>,
    failure: watch::Sender<Option<Arc<str>>>,
    options: RecordingOptions,
    started: Instant,
    id: String,
    path: PathBuf,
) {
    let mut held: Option<Command> = None;
    // Real time, not the session clock: this bounds what a crash can lose.
    let mut flushed_at = Instant::now();

    let fail = |error: io::Error, rx: &mut mpsc::Receiver<Command>| {
        let message: Arc<str> = RecordingError::Write {
            path: path.clone(),
            message: error.to_string(),
        }
        .to_string()
        .into();
        let _ = failure.send(Some(message));
        rx.close();
    };

    loop {
        let command = match held.take() {
            Some(command) => Some(command),
            None => rx.blocking_recv(),
        };
        if writer.dirty
            && (matches!(command, Some(Command::Tick))
                || flushed_at.elapsed() >= options.flush_interval)
        {
            if let Err(e) = writer.flush() {
                fail(e, &mut rx);
                return;
            }
            flushed_at = Instant::now();
        }
        let result = match command {
            Some(Command::Tick) => Ok(()),
            Some(Command::Event {
                at,
                kind: kind @ (EventKind::Output | EventKind::Input),
                data,
            }) => {
                // Merge chunks of the same kind already waiting into one event.
                writer.begin(at, kind);
                let mut merged = 0;
                for chunk in &data {
                    writer.push(kind, chunk);
                    merged += chunk.len();
                }
                while merged < options.coalesce_bytes {
                    match rx.try_recv() {
                        Ok(Command::Event {
                            kind: next_kind,
                            data,
                            ..
                        }) if next_kind == kind => {
                            for chunk in &data {
                                writer.push(kind, chunk);
                                merged += chunk.len();
                            }
                        }
                        Ok(other) => {
                            held = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                writer.end()
            }
            Some(Command::Event { at, kind, data }) => {
                writer.begin(at, kind);
                for chunk in &data {
                    writer.push(kind, chunk);
                }
                writer.end()
            }
            Some(Command::Subscribe { reply }) => {
                let subscription = writer.flush().map(|()| Subscription {
                    path: path.clone(),
                    lines_on_disk: writer.lines,
                    live: writer.live.subscribe(),
                });
                let result = subscription.map_err(|e| RecordingError::Write {
                    path: path.clone(),
                    message: e.to_string(),
                });
                let failed = result.is_err();
                let _ = reply.send(result);
                if failed {
                    // Reported to the session by the next write as well; stop here.
                    let _ = failure.send(Some("cannot flush the recording".into()));
                    rx.close();
                    return;
                }
                Ok(())
            }
            Some(Command::Finish { at, reason, done }) => {
                let result =
                    writer
                        .finish(at, &reason, &id, &path)
                        .map_err(|e| RecordingError::Write {
                            path: path.clone(),
                            message: e.to_string(),
                        });
                if let Err(e) = &result {
                    let _ = failure.send(Some(e.to_string().into()));
                }
                let _ = done.send(result);
                return;
            }
            None => {
                // Every handle was dropped without finish(): still close the file properly.
                if let Err(e) = writer.finish(
                    options.time.now().saturating_duration_since(started),
                    "recording closed",
                    &id,
                    &path,
                ) {
                    fail(e, &mut rx);
                }
                return;
            }
        };
        if let Err(e) = result {
            fail(e, &mut rx);
            return;
        }
    }
}
