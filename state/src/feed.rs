//! The change feed: what the store tells its subscribers after a write commits. Live sessions
//! re-check their authorization on lock and grant changes; a login waiting for an approval
//! wakes on its request's decision. With one node the feed is in-process; with several it
//! carries what other nodes wrote (the store's job, not the subscribers').

use portcullis_policy::RequestState;

/// How many changes a slow subscriber may fall behind before it is told it lagged (and
/// should re-read what it cares about).
pub const FEED_CAPACITY: usize = 1024;

/// One change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A user was locked.
    LockPlaced {
        /// Who.
        user: String,
    },
    /// A user's lock was lifted.
    LockLifted {
        /// Who.
        user: String,
    },
    /// A request was made.
    RequestCreated {
        /// Its id.
        id: u64,
    },
    /// A request was approved, denied, withdrawn or lapsed.
    RequestDecided {
        /// Its id.
        id: u64,
        /// What became of it.
        state: RequestState,
    },
    /// A grant started.
    GrantActivated {
        /// Its id.
        id: u64,
        /// Whose.
        user: String,
    },
    /// A grant ended before its time (revoked) or was closed after it (expired).
    GrantEnded {
        /// Its id.
        id: u64,
        /// Whose.
        user: String,
        /// Revoked (true) or expired.
        revoked: bool,
    },
    /// An operator asked for a live session to be ended (whichever node runs it ends it).
    KillRequested {
        /// The session's id.
        session: String,
        /// The operator.
        by: String,
        /// Their reason.
        reason: String,
    },
}
