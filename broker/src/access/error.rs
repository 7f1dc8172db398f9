//! Why an access operation was refused or failed. The text is for the person who asked; a
//! state store failure is logged in full and shown as a plain sentence.

use portcullis_policy::{ActivationError, Denied, ReviewRefused};
use portcullis_state::StateError;

/// An access operation's refusal.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// Standing access already covers it.
    #[error("{0} is open to you already (standing access); no activation is needed")]
    Standing(String),
    /// No eligible role covers it (or it does not exist).
    #[error("you cannot activate {target}: {denied}")]
    NotEligible {
        /// The target.
        target: String,
        /// Why.
        denied: Denied,
    },
    /// A grant for it is active already.
    #[error("you already have grant #{grant} for {target}, {left} left")]
    AlreadyActive {
        /// The target.
        target: String,
        /// The grant.
        grant: u64,
        /// Time left, for people.
        left: String,
    },
    /// A request for it is waiting already.
    #[error("your request #{request} for {target} is already waiting for approval")]
    AlreadyRequested {
        /// The target.
        target: String,
        /// The request.
        request: u64,
    },
    /// The answers do not satisfy the role.
    #[error("{0}")]
    Invalid(ActivationError),
    /// Not now, or not from here: the role's activation conditions.
    #[error("you cannot activate {target} now: {failed}")]
    Condition {
        /// The target.
        target: String,
        /// Which condition, in words.
        failed: portcullis_policy::ConditionFailed,
    },
    /// The role wants a fresh TOTP code and none was given.
    #[error("a verification code from your authenticator is required")]
    CodeRequired,
    /// The code is wrong.
    #[error("wrong verification code")]
    WrongCode,
    /// The code was used before.
    #[error("that verification code was already used; wait for the next one")]
    CodeReused,
    /// Too many wrong codes lately.
    #[error(
        "too many wrong verification codes; activation with a code is refused for a while (security has been alerted)"
    )]
    CodeThrottled,
    /// A reason is required for this action.
    #[error("a reason is required")]
    NoReason,
    /// No such request.
    #[error("no request #{0}")]
    NoSuchRequest(u64),
    /// No such grant.
    #[error("no grant #{0}")]
    NoSuchGrant(u64),
    /// The reviewer may not review it.
    #[error("you may not review request #{id}: {refused}")]
    Refused {
        /// The request.
        id: u64,
        /// Why not.
        refused: ReviewRefused,
    },
    /// Someone else's.
    #[error("#{0} is not yours")]
    NotYours(u64),
    /// Already over.
    #[error("grant #{0} has already ended")]
    Ended(u64),
    /// Only break-glass grants are acknowledged.
    #[error("grant #{0} was not a break-glass activation")]
    NotBreakGlass(u64),
    /// No configured user has that name.
    #[error("no user named {0:?}")]
    NoSuchUser(String),
    /// No lock for that user.
    #[error("{0} is not locked")]
    NotLocked(String),
    /// The state store failed.
    #[error("the state store failed: {0}")]
    State(#[from] StateError),
}
