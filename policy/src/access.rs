//! Who may reach which target, now.
//!
//! [`Policy::check`] is the single door to an upstream: it returns either an
//! [`Authorization`] (which nothing outside this crate can construct) or a [`Denied`] value
//! saying why not. Time comes in as an argument, so tests drive the clock.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::time::{Duration, SystemTime};

use portcullis_config::{Access, Config};

use crate::glob;

/// The access rules of one configuration, ready for decisions.
#[derive(Debug, Clone)]
pub struct Policy {
    users: HashSet<String>,
    targets: BTreeSet<String>,
    roles: Vec<RoleRule>,
}

#[derive(Debug, Clone)]
struct RoleRule {
    name: String,
    members: HashSet<String>,
    patterns: Vec<String>,
    access: Access,
    idle_timeout: Option<Duration>,
    can_watch: bool,
}

impl RoleRule {
    fn covers(&self, user: &str, target: &str) -> bool {
        self.members.contains(user) && self.patterns.iter().any(|p| glob::matches(p, target))
    }
}

/// Proof that `user` may reach `target` at the moment of the decision. Only
/// [`Policy::check`] makes one; the broker needs one to open an upstream connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    user: String,
    target: String,
    role: String,
    access: Access,
    decided_at: SystemTime,
    expires_at: Option<SystemTime>,
    idle_timeout: Option<Duration>,
}

impl Authorization {
    /// The user it was granted to.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The target it opens.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The role that granted it.
    pub fn role(&self) -> &str {
        &self.role
    }

    /// How the access was held.
    pub fn access(&self) -> Access {
        self.access
    }

    /// When the decision was made.
    pub fn decided_at(&self) -> SystemTime {
        self.decided_at
    }

    /// When access ends on its own; `None` for standing access.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// How long the session may go without input from the user.
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }
}

/// A user locked out by security: live sessions end, new logins are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    /// The locked user.
    pub user: String,
    /// Why, for the user and the audit log.
    pub reason: String,
    /// Who locked them (an API token's name).
    pub by: String,
    /// When.
    pub since: SystemTime,
    /// When it lifts by itself; `None`: until unlocked.
    pub until: Option<SystemTime>,
}

impl Lock {
    /// Whether the lock holds at `now`.
    pub fn is_active(&self, now: SystemTime) -> bool {
        self.until.is_none_or(|until| now < until)
    }
}

/// Why access was refused. A value, not an error: refusing is policy working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// The user is not in the configuration.
    UnknownUser,
    /// No target has this name.
    UnknownTarget,
    /// The target exists but no role of the user's covers it.
    NoRole,
    /// Security has locked the user.
    Locked {
        /// Who locked them.
        by: String,
        /// Why.
        reason: String,
    },
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Denied::UnknownUser => "unknown user",
            Denied::UnknownTarget => "there is no such target",
            Denied::NoRole => "none of your roles grants it",
            Denied::Locked { by, reason } => {
                return write!(f, "your account is locked by {by}: {reason}");
            }
        })
    }
}

/// A target a user may reach, for the bastion's own menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reachable {
    /// Target name.
    pub target: String,
    /// The first role (in config order) that covers it.
    pub role: String,
    /// How it is held.
    pub access: Access,
}

impl Policy {
    /// Builds the rules from a validated config.
    pub fn new(config: &Config) -> Self {
        Self {
            users: config.users.iter().map(|u| u.name.clone()).collect(),
            targets: config.targets.iter().map(|t| t.name.clone()).collect(),
            roles: config
                .roles
                .iter()
                .map(|role| RoleRule {
                    name: role.name.clone(),
                    members: role.members.iter().cloned().collect(),
                    patterns: role.targets.clone(),
                    access: role.access,
                    idle_timeout: role.idle_timeout,
                    can_watch: role.can_watch,
                })
                .collect(),
        }
    }

    /// Whether `user` may be logged in at all at `now`, given their lock (if any).
    pub fn check_login(
        &self,
        user: &str,
        lock: Option<&Lock>,
        now: SystemTime,
    ) -> Result<(), Denied> {
        if !self.users.contains(user) {
            return Err(Denied::UnknownUser);
        }
        match lock {
            Some(lock) if lock.user == user && lock.is_active(now) => Err(Denied::Locked {
                by: lock.by.clone(),
                reason: lock.reason.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// May `user` reach `target` at `now`? A lock refuses everything; otherwise roles are
    /// tried in config order and the first that covers the pair decides.
    pub fn check(
        &self,
        user: &str,
        target: &str,
        lock: Option<&Lock>,
        now: SystemTime,
    ) -> Result<Authorization, Denied> {
        self.check_login(user, lock, now)?;
        if !self.targets.contains(target) {
            return Err(Denied::UnknownTarget);
        }
        let role = self
            .roles
            .iter()
            .find(|role| role.covers(user, target))
            .ok_or(Denied::NoRole)?;
        Ok(match role.access {
            Access::Standing => Authorization {
                user: user.to_owned(),
                target: target.to_owned(),
                role: role.name.clone(),
                access: role.access,
                decided_at: now,
                expires_at: None,
                idle_timeout: role.idle_timeout,
            },
        })
    }

    /// Whether `user` may watch other people's live sessions (a role with `can_watch`).
    pub fn may_watch(&self, user: &str) -> bool {
        self.roles
            .iter()
            .any(|role| role.can_watch && role.members.contains(user))
    }

    /// Every target `user` may reach, sorted by name.
    pub fn reachable(&self, user: &str) -> Vec<Reachable> {
        self.targets
            .iter()
            .filter_map(|target| {
                let role = self.roles.iter().find(|role| role.covers(user, target))?;
                Some(Reachable {
                    target: target.clone(),
                    role: role.name.clone(),
                    access: role.access,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use portcullis_config::{RoleConfig, TargetConfig, UserConfig};

    use super::*;

    fn config() -> Config {
        let user = |name: &str| UserConfig {
            name: name.into(),
            ..Default::default()
        };
        let target = |name: &str| TargetConfig {
            name: name.into(),
            ..Default::default()
        };
        let role = |name: &str, members: &[&str], targets: &[&str]| RoleConfig {
            name: name.into(),
            members: members.iter().map(|m| (*m).into()).collect(),
            targets: targets.iter().map(|t| (*t).into()).collect(),
            access: Access::Standing,
            ..Default::default()
        };
        Config {
            users: vec![user("alice"), user("bob"), user("carol")],
            targets: vec![target("web01"), target("web02"), target("db01")],
            roles: vec![
                role("web-admins", &["alice"], &["web*"]),
                role("dba", &["bob", "alice"], &["db01"]),
                role("everything", &["alice"], &["*"]),
            ],
            ..Default::default()
        }
    }

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn standing_access_through_a_glob() {
        let policy = Policy::new(&config());
        let authz = policy
            .check("alice", "web02", None, at(1000))
            .expect("allowed");
        assert_eq!(authz.user(), "alice");
        assert_eq!(authz.target(), "web02");
        assert_eq!(authz.role(), "web-admins");
        assert_eq!(authz.decided_at(), at(1000));
        assert_eq!(authz.expires_at(), None);
    }

    #[test]
    fn the_first_covering_role_decides() {
        let policy = Policy::new(&config());
        assert_eq!(
            policy
                .check("alice", "db01", None, at(0))
                .expect("allowed")
                .role(),
            "dba"
        );
    }

    #[test]
    fn refusals_say_why() {
        let policy = Policy::new(&config());
        assert_eq!(
            policy.check("mallory", "web01", None, at(0)),
            Err(Denied::UnknownUser)
        );
        assert_eq!(
            policy.check("alice", "web99", None, at(0)),
            Err(Denied::UnknownTarget)
        );
        assert_eq!(
            policy.check("bob", "web01", None, at(0)),
            Err(Denied::NoRole)
        );
        assert_eq!(
            policy.check("carol", "db01", None, at(0)),
            Err(Denied::NoRole)
        );
    }

    #[test]
    fn a_glob_never_invents_a_target() {
        // "everything" covers "*", yet an unknown name stays unknown.
        let policy = Policy::new(&config());
        assert_eq!(
            policy.check("alice", "../etc", None, at(0)),
            Err(Denied::UnknownTarget)
        );
    }

    fn lock(until: Option<u64>) -> Lock {
        Lock {
            user: "alice".into(),
            reason: "laptop stolen".into(),
            by: "secops".into(),
            since: at(100),
            until: until.map(at),
        }
    }

    #[test]
    fn a_lock_refuses_everything_until_it_lifts() {
        let policy = Policy::new(&config());
        let forever = lock(None);
        let denied = policy
            .check("alice", "web01", Some(&forever), at(1_000_000))
            .unwrap_err();
        assert_eq!(
            denied.to_string(),
            "your account is locked by secops: laptop stolen"
        );
        assert!(
            policy
                .check_login("alice", Some(&forever), at(200))
                .is_err()
        );

        let timed = lock(Some(500));
        assert!(
            policy
                .check("alice", "web01", Some(&timed), at(499))
                .is_err()
        );
        assert!(
            policy
                .check("alice", "web01", Some(&timed), at(500))
                .is_ok(),
            "lifts at the exact instant"
        );
        // Another user's lock is not alice's.
        let bobs = Lock {
            user: "bob".into(),
            ..lock(None)
        };
        assert!(policy.check("alice", "web01", Some(&bobs), at(200)).is_ok());
    }

    #[test]
    fn roles_carry_idle_timeouts_and_watch_rights() {
        let mut config = config();
        config.roles[0].idle_timeout = Some(Duration::from_secs(900));
        config.roles[1].can_watch = true;
        let policy = Policy::new(&config);
        let authz = policy.check("alice", "web01", None, at(0)).unwrap();
        assert_eq!(authz.idle_timeout(), Some(Duration::from_secs(900)));
        assert_eq!(
            policy
                .check("alice", "db01", None, at(0))
                .unwrap()
                .idle_timeout(),
            None
        );
        assert!(policy.may_watch("bob"));
        assert!(policy.may_watch("alice"));
        assert!(!policy.may_watch("carol"));
    }

    #[test]
    fn reachable_lists_each_target_once_with_its_deciding_role() {
        let policy = Policy::new(&config());
        let names: Vec<(String, String)> = policy
            .reachable("alice")
            .into_iter()
            .map(|r| (r.target, r.role))
            .collect();
        assert_eq!(
            names,
            vec![
                ("db01".into(), "dba".into()),
                ("web01".into(), "web-admins".into()),
                ("web02".into(), "web-admins".into()),
            ]
        );
        assert_eq!(policy.reachable("bob").len(), 1);
        assert!(policy.reachable("carol").is_empty());
        assert!(policy.reachable("nobody").is_empty());
    }

    #[test]
    fn exhaustive_over_small_worlds() {
        // Every user × target pair agrees between check() and reachable().
        let policy = Policy::new(&config());
        for user in ["alice", "bob", "carol", "mallory"] {
            let reachable: Vec<String> = policy
                .reachable(user)
                .into_iter()
                .map(|r| r.target)
                .collect();
            for target in ["web01", "web02", "db01", "nope"] {
                let allowed = policy.check(user, target, None, at(5)).is_ok();
                assert_eq!(
                    allowed,
                    reachable.iter().any(|t| t == target),
                    "{user} → {target}"
                );
            }
        }
    }
}
