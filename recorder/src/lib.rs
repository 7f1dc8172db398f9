//! portcullis recordings: asciicast v2 files that `asciinema play` plays (terminals), framed
//! files of exact bytes per stream (every other channel), each with an HMAC chain that makes
//! any edit detectable.
//!
//! ```text
//! RecordingHandle ──bounded queue──▶ writer (blocking pool) ▶ <id>.cast | <id>.rec  + .hmac
//!                                                        │
//! verify::verify_file(path, key) ◀───────────────────────┤ Intact | Unfinalized | Tampered
//! extract::extract(path, key, stream) ◀──────────────────┘ the exact bytes of the part that verifies
//! ```
//!
//! * [`asciicast`]: the terminal format (header, events) and UTF-8 chunk carrying.
//! * [`framed`]: the exact-bytes format (header line, LZ4 frames) and its unit reader.
//! * [`chain`]: the HMAC chain, also used by the broker's audit log.
//! * [`writer`]: the per-recording writer (a thread of its own: file I/O never runs on the
//!   async workers), generic over the format's encoding, and its handle; event times come
//!   from a [`TimeSource`] (the bastion passes its clock's).
//! * [`verify`]: reading back and checking, line by line or frame by frame.
//! * [`extract`]: a framed recording's streams, from the part that verifies.
//!
//! Knows nothing of SSH; uses tokio only for its queue and the flush tick.

pub mod asciicast;
pub mod chain;
pub mod extract;
pub mod framed;
pub mod recover;
pub mod verify;
pub mod writer;

pub use asciicast::{Header, SessionFacts};
pub use chain::{Chain, ChainKey};
pub use verify::{Verdict, verify_file};
pub use writer::{
    OutputBatch, RecordingError, RecordingHandle, RecordingOptions, Subscription, Summary,
    TimeSource, start, start_framed,
};
