//! portcullis recordings: asciicast v2 files that `asciinema play` plays, with an HMAC chain
//! that makes any edit detectable.
//!
//! ```text
//! RecordingHandle ──bounded queue──▶ writer thread ▶ <id>.cast + <id>.cast.hmac
//!                                                        │
//! verify::verify_file(cast, key) ◀───────────────────────┘ Intact | Unfinalized | Tampered
//! ```
//!
//! * [`asciicast`]: the file format (header, events) and UTF-8 chunk carrying.
//! * [`chain`]: the HMAC chain, also used by the broker's audit log.
//! * [`writer`]: the per-recording writer (a thread of its own: file I/O never runs on the
//!   async workers) and its handle; event times come from a [`TimeSource`] (the bastion
//!   passes its clock's).
//! * [`verify`]: reading back and checking.
//!
//! Knows nothing of SSH; uses tokio only for its queue and the flush tick.

pub mod asciicast;
pub mod chain;
pub mod verify;
pub mod writer;

pub use asciicast::{Header, SessionFacts};
pub use chain::{Chain, ChainKey};
pub use verify::{Verdict, verify_file};
pub use writer::{
    OutputBatch, RecordingError, RecordingHandle, RecordingOptions, Subscription, Summary,
    TimeSource, start,
};
