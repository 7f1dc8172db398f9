//! The recording writer: one per recording, fed through a bounded queue, working on the
//! runtime's blocking pool whenever commands wait.
//!
//! ```text
//! relay ──RecordingHandle::output/error_output/input/resize/marker──▶ [bounded queue] ──▶ writer (blocking pool)
//!                                              ├─▶ <id>.cast (asciicast v2) or <id>.rec (framed, see crate::framed)
//!                                              └─▶ <id>.….hmac (one tag per line or frame, then `end <seal>`)
//! ```
//!
//! * The queue is bounded: when the disk is slower than the session, the relay waits rather
//!   than memory growing. Nothing is dropped.
//! * File writes, flushes and the final fsync run on the blocking pool, never on the
//!   async runtime's workers: a slow disk stalls this recording's queue, not other sessions.
//! * Both files are flushed at least every `flush_interval` (1 s) after a write: the writer
//!   waits for its next command no longer than that while it holds unflushed data (and not
//!   at all otherwise: an idle recording costs no wake-ups), flushes when a busy queue
//!   kept it from waiting, and after every 256 KiB written. A crash (or a full disk) leaves at most that much
//!   unvouched for. Tags are written only after the units they cover have been flushed, so
//!   after a crash the integrity file is never ahead of the recording.
//! * Consecutive output chunks waiting in the queue are merged into one event (up to
//!   `coalesce_bytes`), which keeps bulk output cheap without changing what plays back.
//! * A write error stops the writer and is reported through [`RecordingHandle::failed`]; the
//!   broker decides whether the session may continue unrecorded.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::asciicast::{EventKind, Header, Utf8Carry, begin_event, end_event, push_json_str};
use crate::chain::{Chain, ChainKey};
use crate::framed::{self, FrameKind, FramedHeader};

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
    /// Time to flush what is buffered (the flush interval has passed).
    Tick,
}

/// Live lines for watchers: how many a slow watcher may fall behind before it skips.
const LIVE_BACKLOG: usize = 1024;
/// The data file's write buffer. Small: one is held per live recording, mostly idle; bulk
/// output arrives in units larger than this, which go to the file without copying.
const DATA_BUFFER: usize = 16 * 1024;

/// A watcher's view of a recording: the lines already on disk, then the live ones.
#[derive(Debug)]
pub struct Subscription {
    /// The recording file.
    pub path: PathBuf,
    /// A line to show before any other: the asciicast header of a recording that is not
    /// asciicast (then nothing is read from the file, and only what comes from now on is
    /// shown).
    pub first: Option<Arc<str>>,
    /// How many lines (header included) the file holds up to the subscription, to read from
    /// it first; every later line arrives through `live`.
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
/// writer. Must be called inside a tokio runtime.
pub fn start(
    dir: &Path,
    id: &str,
    header: &Header,
    key: &ChainKey,
    options: RecordingOptions,
) -> Result<RecordingHandle, RecordingError> {
    let path = dir.join(format!("{id}.cast"));
    let header_line = serde_json::to_vec(header).map_err(|e| RecordingError::Create {
        path: path.clone(),
        message: e.to_string(),
    })?;
    spawn(
        path,
        id,
        &header_line,
        None,
        CastEncoding::default(),
        key,
        options,
    )
}

/// Creates `<dir>/<id>.rec` (see [`crate::framed`]) and its integrity file, writes the
/// header and starts the writer: a byte-faithful recording for a channel without a
/// terminal. Must be called inside a tokio runtime.
pub fn start_framed(
    dir: &Path,
    id: &str,
    header: &FramedHeader,
    key: &ChainKey,
    options: RecordingOptions,
) -> Result<RecordingHandle, RecordingError> {
    let path = dir.join(format!("{id}.{}", framed::EXTENSION));
    // Watchers see the output as a terminal would (from when they join).
    let watch_header = serde_json::to_string(&Header {
        version: 2,
        width: 80,
        height: 24,
        timestamp: header.timestamp,
        title: Some(format!(
            "{} → {}: {} (no terminal)",
            header.portcullis.user,
            header.portcullis.target,
            header
                .portcullis
                .command
                .as_deref()
                .unwrap_or(&header.portcullis.kind)
        )),
        env: Default::default(),
        portcullis: Some(header.portcullis.clone()),
    })
    .ok()
    .map(Arc::from);
    spawn(
        path,
        id,
        &header.to_line(),
        watch_header,
        FramedEncoding::default(),
        key,
        options,
    )
}

fn spawn<E: Encoding>(
    path: PathBuf,
    id: &str,
    header_line: &[u8],
    watch_header: Option<Arc<str>>,
    encoding: E,
    key: &ChainKey,
    options: RecordingOptions,
) -> Result<RecordingHandle, RecordingError> {
    let create_error = |e: io::Error| RecordingError::Create {
        path: path.clone(),
        message: e.to_string(),
    };
    let mut writer = Writer {
        files: Files {
            data: BufWriter::with_capacity(DATA_BUFFER, create_new(&path).map_err(create_error)?),
            mac: create_new(&mac_path(&path)).map_err(create_error)?,
            chain: Chain::start(key, id.as_bytes()),
            pending_tags: String::new(),
            live: None,
            lines: 0,
            dirty: false,
            unflushed: 0,
        },
        encoding,
        watch_header,
        last_at: Duration::ZERO,
        output_bytes: 0,
        input_bytes: 0,
    };
    writer
        .files
        .mac
        .write_all(format!("{MAC_MAGIC} {id}\n").as_bytes())
        .and_then(|()| writer.files.commit_header::<E>(header_line))
        .and_then(|()| writer.files.flush())
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
    tokio::spawn(drive(Worker {
        writer,
        rx,
        failure: failure_tx,
        options,
        started,
        id: id.to_owned(),
        path,
        held: None,
        flushed_at: Instant::now(),
    }));
    Ok(handle)
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

    /// A channel's standard error (a framed recording keeps it apart; asciicast merges it
    /// into the output).
    pub async fn error_output(&self, data: Bytes) -> Result<(), RecordingError> {
        self.event(EventKind::ErrorOutput, data).await
    }

    /// Keystrokes, or what the client sent on a channel without a terminal.
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

/// How events become the units a recording file is made of — lines of asciicast, or frames
/// (see [`crate::framed`]) — each of which the integrity chain covers.
pub(crate) trait Encoding: Send + 'static {
    /// What follows each unit in the file.
    const SEPARATOR: &'static [u8];
    /// Whether units are text lines a live watcher can be sent.
    const LIVE: bool;
    /// Starts an event.
    fn begin(&mut self, at: Duration, kind: EventKind);
    /// Adds data to the open event.
    fn push(&mut self, kind: EventKind, data: &[u8]);
    /// Completes the open event: hands each unit it makes to `emit` (none when it holds
    /// nothing).
    fn end(&mut self, emit: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<()>;
    /// What is held back at the end (a character split across chunks), as events to write.
    fn leftovers(&mut self) -> Vec<(EventKind, Vec<u8>)>;
    /// Gives back the memory a burst of output made its buffers grow to.
    fn trim(&mut self);
    /// For a format whose units are not asciicast lines: the event just ended as one, for
    /// live watchers (output only).
    fn live_line(&self) -> Option<Vec<u8>> {
        None
    }
}

/// Asciicast v2: one JSON line per event, data escaped straight into the line.
#[derive(Default)]
struct CastEncoding {
    line: Vec<u8>,
    /// Where the open event's data starts in `line`.
    line_start: usize,
    output_carry: Utf8Carry,
    input_carry: Utf8Carry,
}

impl Encoding for CastEncoding {
    const SEPARATOR: &'static [u8] = b"\n";
    const LIVE: bool = true;

    fn begin(&mut self, at: Duration, kind: EventKind) {
        self.line.clear();
        begin_event(at.as_secs_f64(), kind, &mut self.line);
        self.line_start = self.line.len();
    }

    fn push(&mut self, kind: EventKind, data: &[u8]) {
        let line = &mut self.line;
        match kind {
            EventKind::Output | EventKind::ErrorOutput => self
                .output_carry
                .feed_into(data, |text| push_json_str(line, text)),
            EventKind::Input => self
                .input_carry
                .feed_into(data, |text| push_json_str(line, text)),
            EventKind::Resize | EventKind::Marker => {
                push_json_str(line, &String::from_utf8_lossy(data));
            }
        }
    }

    fn end(&mut self, emit: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        // Empty: all of it an incomplete character.
        if self.line.len() == self.line_start {
            return Ok(());
        }
        end_event(&mut self.line);
        emit(&self.line)
    }

    fn leftovers(&mut self) -> Vec<(EventKind, Vec<u8>)> {
        [
            (EventKind::Output, self.output_carry.flush()),
            (EventKind::Input, self.input_carry.flush()),
        ]
        .into_iter()
        .filter(|(_, rest)| !rest.is_empty())
        .map(|(kind, rest)| (kind, rest.into_bytes()))
        .collect()
    }

    fn trim(&mut self) {
        shrink(&mut self.line);
    }
}

/// Frames of exact bytes (see [`crate::framed`]).
#[derive(Default)]
struct FramedEncoding {
    kind: Option<EventKind>,
    at: Duration,
    raw: Vec<u8>,
    frame: Vec<u8>,
}

impl Encoding for FramedEncoding {
    const SEPARATOR: &'static [u8] = b"";
    const LIVE: bool = false;

    fn begin(&mut self, at: Duration, kind: EventKind) {
        self.kind = Some(kind);
        self.at = at;
        self.raw.clear();
    }

    fn push(&mut self, _kind: EventKind, data: &[u8]) {
        self.raw.extend_from_slice(data);
    }

    fn end(&mut self, emit: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        let Some(kind) = self.kind else {
            return Ok(());
        };
        for piece in self.raw.chunks(framed::FRAME_RAW_MAX) {
            self.frame.clear();
            framed::encode_frame(FrameKind::of_event(kind), self.at, piece, &mut self.frame);
            emit(&self.frame)?;
        }
        Ok(())
    }

    fn leftovers(&mut self) -> Vec<(EventKind, Vec<u8>)> {
        Vec::new()
    }

    fn trim(&mut self) {
        shrink(&mut self.raw);
        shrink(&mut self.frame);
    }

    fn live_line(&self) -> Option<Vec<u8>> {
        if !matches!(self.kind, Some(EventKind::Output | EventKind::ErrorOutput)) {
            return None;
        }
        let mut line = Vec::with_capacity(self.raw.len() + 32);
        begin_event(self.at.as_secs_f64(), EventKind::Output, &mut line);
        push_json_str(&mut line, &String::from_utf8_lossy(&self.raw));
        end_event(&mut line);
        Some(line)
    }
}

/// What a buffer keeps between bursts: enough for typing and prompts.
const KEPT_BUFFER: usize = 4096;

/// Lets a buffer that grew past what idle use needs go back to that.
fn shrink(buffer: &mut Vec<u8>) {
    if buffer.capacity() > 4 * KEPT_BUFFER {
        buffer.clear();
        buffer.shrink_to(KEPT_BUFFER);
    }
}

/// A recording's two files and the chain between them.
struct Files {
    data: BufWriter<File>,
    /// Written a whole flush's tags at a time (one write each), so it needs no buffer.
    mac: File,
    chain: Chain,
    /// Tags of units not yet flushed to the data file; written after it is.
    pending_tags: String,
    /// Lines as they are written, for watchers: made when the first one comes (its
    /// backlog is allocated whole, and most recordings are never watched).
    live: Option<broadcast::Sender<Arc<str>>>,
    /// Units written, header included.
    lines: u64,
    dirty: bool,
    /// Bytes written to the data file since the last flush.
    unflushed: usize,
}

impl Files {
    fn commit<E: Encoding>(&mut self, unit: &[u8]) -> io::Result<()> {
        self.commit_with(unit, E::SEPARATOR, E::LIVE)
    }

    /// The header: a line in either format.
    fn commit_header<E: Encoding>(&mut self, line: &[u8]) -> io::Result<()> {
        self.commit_with(line, b"\n", E::LIVE)
    }

    fn commit_with(&mut self, unit: &[u8], separator: &[u8], live: bool) -> io::Result<()> {
        let tag = self.chain.append(unit);
        self.data.write_all(unit)?;
        self.data.write_all(separator)?;
        if live && let Some(watchers) = self.watchers() {
            // Events are JSON, which is UTF-8.
            let line: Arc<str> = String::from_utf8_lossy(unit).into();
            let _ = watchers.send(line);
        }
        self.pending_tags.push_str(&hex::encode(tag));
        self.pending_tags.push('\n');
        self.lines += 1;
        self.dirty = true;
        self.unflushed += unit.len() + separator.len();
        if self.pending_tags.len() >= MAX_PENDING_TAGS * 65 || self.unflushed >= FLUSH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// The channel to watchers, if any watch now.
    fn watchers(&self) -> Option<&broadcast::Sender<Arc<str>>> {
        self.live.as_ref().filter(|live| live.receiver_count() > 0)
    }

    /// A new watcher's end of the live lines.
    fn watch(&mut self) -> broadcast::Receiver<Arc<str>> {
        self.live
            .get_or_insert_with(|| broadcast::channel(LIVE_BACKLOG).0)
            .subscribe()
    }

    /// Recording first, then the tags that cover it.
    fn flush(&mut self) -> io::Result<()> {
        self.data.flush()?;
        self.mac.write_all(self.pending_tags.as_bytes())?;
        self.pending_tags.clear();
        self.dirty = false;
        self.unflushed = 0;
        Ok(())
    }
}

struct Writer<E> {
    files: Files,
    encoding: E,
    /// For a format whose units are not asciicast lines: the asciicast header a live
    /// watcher is shown first.
    watch_header: Option<Arc<str>>,
    /// The time of the last event written.
    last_at: Duration,
    output_bytes: u64,
    input_bytes: u64,
}

/// Tags held in memory before a flush is forced, so the integrity file keeps up under
/// heavy output.
const MAX_PENDING_TAGS: usize = 4096;
/// Data written before a flush is forced: under bulk output (a backup through an exec
/// channel) a crash or a full disk leaves at most this much unvouched for, not a second's
/// worth of it.
const FLUSH_BYTES: usize = 256 * 1024;

impl<E: Encoding> Writer<E> {
    fn event(&mut self, at: Duration, kind: EventKind, data: &[u8]) -> io::Result<()> {
        self.begin(at, kind);
        self.push(kind, data);
        self.end()
    }

    /// Starts an event; [`Writer::push`] adds data, [`Writer::end`] commits it.
    fn begin(&mut self, at: Duration, kind: EventKind) {
        // The two directions stamp their events independently and may arrive a little out
        // of order; players need times that never go backwards.
        let at = at.max(self.last_at);
        self.last_at = at;
        self.encoding.begin(at, kind);
    }

    fn push(&mut self, kind: EventKind, data: &[u8]) {
        match kind {
            EventKind::Output | EventKind::ErrorOutput => self.output_bytes += data.len() as u64,
            EventKind::Input => self.input_bytes += data.len() as u64,
            EventKind::Resize | EventKind::Marker => {}
        }
        self.encoding.push(kind, data);
    }

    /// Commits the open event.
    fn end(&mut self) -> io::Result<()> {
        let files = &mut self.files;
        self.encoding.end(&mut |unit| files.commit::<E>(unit))?;
        if !E::LIVE
            && let Some(watchers) = self.files.watchers()
            && let Some(line) = self.encoding.live_line()
        {
            let _ = watchers.send(String::from_utf8_lossy(&line).into());
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.files.flush()
    }

    /// Gives back what a burst of output made the buffers grow to (called when quiet).
    fn trim(&mut self) {
        self.encoding.trim();
        if self.files.pending_tags.is_empty() && self.files.pending_tags.capacity() > KEPT_BUFFER {
            self.files.pending_tags.shrink_to(KEPT_BUFFER);
        }
    }

    fn finish(&mut self, at: Duration, reason: &str, id: &str, path: &Path) -> io::Result<Summary> {
        for (kind, rest) in self.encoding.leftovers() {
            self.begin(at, kind);
            self.encoding.push(kind, &rest);
            self.end()?;
        }
        self.event(at, EventKind::Marker, format!("end: {reason}").as_bytes())?;
        self.flush()?;
        let seal = hex::encode(self.files.chain.seal());
        self.files
            .mac
            .write_all(format!("end {seal}\n").as_bytes())?;
        self.files.data.get_ref().sync_all()?;
        self.files.mac.sync_all()?;
        Ok(Summary {
            id: id.to_owned(),
            path: path.to_owned(),
            lines: self.files.lines,
            output_bytes: self.output_bytes,
            input_bytes: self.input_bytes,
            seal,
        })
    }
}

/// A recording's writing side: its files and the queue it takes commands from. It holds no
/// thread of its own: [`drive`] hands it to the runtime's blocking pool whenever commands
/// wait, so an idle recording (most of a session's life) costs its buffers, not a thread.
struct Worker<E> {
    writer: Writer<E>,
    rx: mpsc::Receiver<Command>,
    failure: watch::Sender<Option<Arc<str>>>,
    options: RecordingOptions,
    started: Instant,
    id: String,
    path: PathBuf,
    /// A command taken while merging that was not for this event: handled next.
    held: Option<Command>,
    /// Real time, not the session clock: this bounds what a crash can lose.
    flushed_at: Instant,
}

/// Whether a worker has more to do after a batch.
enum Next {
    More,
    Done,
}

/// Waits (on the runtime, holding no thread) for commands, and works each batch off on the
/// blocking pool: file writes never run on the runtime's workers.
async fn drive<E: Encoding>(mut worker: Worker<E>) {
    loop {
        let first = match worker.held.take() {
            Some(command) => Some(command),
            // Written but not flushed: wait no longer than the flush interval allows.
            None if worker.writer.files.dirty => {
                let due = worker.flushed_at + worker.options.flush_interval;
                tokio::select! {
                    command = worker.rx.recv() => command,
                    () = tokio::time::sleep_until(due.into()) => Some(Command::Tick),
                }
            }
            // Nothing to flush: an idle recording costs no wake-ups.
            None => worker.rx.recv().await,
        };
        let batch = tokio::task::spawn_blocking(move || {
            let next = worker.work(first);
            (worker, next)
        })
        .await;
        match batch {
            Ok((back, Next::More)) => worker = back,
            // Done, or the batch panicked: dropping the queue tells every handle it is over.
            Ok((_, Next::Done)) | Err(_) => return,
        }
    }
}

impl<E: Encoding> Worker<E> {
    fn fail(&mut self, error: io::Error) -> Next {
        let message: Arc<str> = RecordingError::Write {
            path: self.path.clone(),
            message: error.to_string(),
        }
        .to_string()
        .into();
        let _ = self.failure.send(Some(message));
        self.rx.close();
        Next::Done
    }

    /// Handles `first` (`None`: every handle is gone) and then every command already
    /// queued, without waiting for more.
    fn work(&mut self, first: Option<Command>) -> Next {
        let mut command = first;
        loop {
            if let Some(next) = self.handle(command) {
                return next;
            }
            command = match self.held.take() {
                Some(command) => Some(command),
                None => match self.rx.try_recv() {
                    Ok(command) => Some(command),
                    Err(mpsc::error::TryRecvError::Empty) => return Next::More,
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                },
            };
        }
    }

    /// One command; `Some` when the worker stops or the batch ends with it.
    fn handle(&mut self, command: Option<Command>) -> Option<Next> {
        if self.writer.files.dirty
            && (matches!(command, Some(Command::Tick))
                || self.flushed_at.elapsed() >= self.options.flush_interval)
        {
            if let Err(e) = self.writer.flush() {
                return Some(self.fail(e));
            }
            self.flushed_at = Instant::now();
        }
        let result = match command {
            Some(Command::Tick) => {
                // A quiet moment: give back what a burst of output made the buffers grow to.
                self.writer.trim();
                Ok(())
            }
            Some(Command::Event {
                at,
                kind: kind @ (EventKind::Output | EventKind::ErrorOutput | EventKind::Input),
                data,
            }) => {
                // Merge chunks of the same kind already waiting into one event.
                self.writer.begin(at, kind);
                let mut merged = 0;
                for chunk in &data {
                    self.writer.push(kind, chunk);
                    merged += chunk.len();
                }
                while merged < self.options.coalesce_bytes {
                    match self.rx.try_recv() {
                        Ok(Command::Event {
                            kind: next_kind,
                            data,
                            ..
                        }) if next_kind == kind => {
                            for chunk in &data {
                                self.writer.push(kind, chunk);
                                merged += chunk.len();
                            }
                        }
                        Ok(other) => {
                            self.held = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                self.writer.end()
            }
            Some(Command::Event { at, kind, data }) => {
                self.writer.begin(at, kind);
                for chunk in &data {
                    self.writer.push(kind, chunk);
                }
                self.writer.end()
            }
            Some(Command::Subscribe { reply }) => {
                let writer = &mut self.writer;
                let subscription = writer.flush().map(|()| Subscription {
                    path: self.path.clone(),
                    first: writer.watch_header.clone(),
                    lines_on_disk: if writer.watch_header.is_some() {
                        0
                    } else {
                        writer.files.lines
                    },
                    live: writer.files.watch(),
                });
                let result = subscription.map_err(|e| RecordingError::Write {
                    path: self.path.clone(),
                    message: e.to_string(),
                });
                let failed = result.is_err();
                let _ = reply.send(result);
                if failed {
                    // Reported to the session by the next write as well; stop here.
                    let _ = self.failure.send(Some("cannot flush the recording".into()));
                    self.rx.close();
                    return Some(Next::Done);
                }
                Ok(())
            }
            Some(Command::Finish { at, reason, done }) => {
                let result = self
                    .writer
                    .finish(at, &reason, &self.id, &self.path)
                    .map_err(|e| RecordingError::Write {
                        path: self.path.clone(),
                        message: e.to_string(),
                    });
                if let Err(e) = &result {
                    let _ = self.failure.send(Some(e.to_string().into()));
                }
                let _ = done.send(result);
                return Some(Next::Done);
            }
            None => {
                // Every handle was dropped without finish(): still close the file properly.
                let at = self
                    .options
                    .time
                    .now()
                    .saturating_duration_since(self.started);
                let closed = self
                    .writer
                    .finish(at, "recording closed", &self.id, &self.path);
                if let Err(e) = closed {
                    self.fail(e);
                }
                return Some(Next::Done);
            }
        };
        match result {
            Ok(()) => None,
            Err(e) => Some(self.fail(e)),
        }
    }
}
