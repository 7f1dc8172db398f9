//! The one policy check of a session: may this user reach this target now, with the locks
//! and grants the state store holds? Routing asks it at login, an activation asks it once
//! its grant exists, and a live session asks it again whenever the change feed says
//! something that matters to it changed.

use std::time::SystemTime;

use portcullis_policy::Denied;
use portcullis_state::StateError;

use crate::access::{jit, locks};
use crate::authorized::Authorized;
use crate::services::Services;

/// The policy's verdict with its target resolved, or the state store's failure (then
/// nothing is allowed).
pub type Verdict = Result<Result<Authorized, Denied>, StateError>;

/// May `user` reach `target` at `now`? A yes carries the target's directory entry, so
/// nothing looks it up again.
pub async fn target(services: &Services, user: &str, target: &str, now: SystemTime) -> Verdict {
    let lock = locks::active(services, user, now).await?;
    let grants = jit::active_grants(services, user, now).await?;
    let verdict = services
        .policy
        .check(user, target, lock.as_ref(), &grants, now);
    Ok(verdict.and_then(|authorization| {
        Authorized::resolve(authorization, &services.directory).ok_or(Denied::UnknownTarget)
    }))
}

/// May `user` use the bastion at all at `now` (their own menu, a login without a target)?
pub async fn login(
    services: &Services,
    user: &str,
    now: SystemTime,
) -> Result<Result<(), Denied>, StateError> {
    let lock = locks::active(services, user, now).await?;
    Ok(services.policy.check_login(user, lock.as_ref(), now))
}
