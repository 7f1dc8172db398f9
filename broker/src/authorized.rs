//! Policy's yes, bound to the target it opens.
//!
//! [`Authorized`] pairs the policy's [`Authorization`] with the directory's entry for the
//! very target it names (address, upstream login, credential, pinned host key), resolved
//! once at the decision. Everything after the decision (the audit line, the upstream
//! connection) reads the target from here, so nothing looks it up again and nothing can
//! connect to a target other than the one policy allowed.

use portcullis_policy::Authorization;

use crate::directory::{Directory, TargetEntry};

/// An authorization and its resolved target. Only [`Authorized::resolve`] makes one, and
/// only from an [`Authorization`], which only the policy check makes.
#[derive(Debug, Clone)]
pub struct Authorized {
    authorization: Authorization,
    target: TargetEntry,
}

impl Authorized {
    /// Binds `authorization` to its target's entry in `directory`; `None` when the directory
    /// has no such target (policy and directory come from one config, so this means a bug or
    /// a reload between the two, and the caller refuses).
    pub fn resolve(authorization: Authorization, directory: &Directory) -> Option<Self> {
        let target = directory.target(authorization.target())?.clone();
        Some(Self {
            authorization,
            target,
        })
    }

    /// The policy decision: role, grant, expiry, idle timeout.
    pub fn decision(&self) -> &Authorization {
        &self.authorization
    }

    /// The target it opens, as the upstream side needs it.
    pub fn target(&self) -> &TargetEntry {
        &self.target
    }
}
