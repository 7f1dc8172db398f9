//! Who may reach which target, now.
//!
//! [`Policy::check`] is the single door to an upstream: it returns either an
//! [`Authorization`] (which nothing outside this crate can construct) or a [`Denied`] value
//! saying why not. Time comes in as an argument, so tests drive the clock.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::time::{Duration, SystemTime};

use portcullis_config::{Access, Config};
use regex::Regex;

use crate::glob;
use crate::jit::{Conditions, Eligibility, Grant, Hours, Network, Request, ReviewRefused};

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
    max_duration: Duration,
    default_duration: Duration,
    require_reason: bool,
    reason_pattern: Option<Regex>,
    approvals: u32,
    approvers: Vec<String>,
    require_mfa: bool,
    break_glass: bool,
    conditions: Conditions,
}

impl RoleRule {
    fn covers(&self, user: &str, target: &str) -> bool {
        self.members.contains(user) && self.patterns.iter().any(|p| glob::matches(p, target))
    }

    fn eligibility(&self, target: &str) -> Eligibility {
        Eligibility {
            role: self.name.clone(),
            target: target.to_owned(),
            max_duration: self.max_duration,
            default_duration: self.default_duration,
            require_reason: self.require_reason,
            reason_pattern: self.reason_pattern.clone(),
            approvals: self.approvals,
            approvers: self.approvers.clone(),
            require_mfa: self.require_mfa,
            break_glass: self.break_glass,
            conditions: self.conditions.clone(),
        }
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
    grant: Option<u64>,
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

    /// The grant it rests on, for eligible access.
    pub fn grant(&self) -> Option<u64> {
        self.grant
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
    /// The user is eligible but has no active grant: an activation is needed.
    NeedsActivation(Box<Eligibility>),
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
            Denied::NeedsActivation(e) => {
                return write!(f, "it needs an activation (role {})", e.role);
            }
            Denied::Locked { by, reason } => {
                return write!(f, "your account is locked by {by}: {reason}");
            }
        })
    }
}

/// A role's or command rule's settings could not be turned into rules.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what} {name}: {message}")]
pub struct PolicyError {
    /// "role" or "command rule".
    pub(crate) what: &'static str,
    pub(crate) name: String,
    pub(crate) message: String,
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
    /// For eligible access: the active grant, if there is one.
    pub grant: Option<Grant>,
}

impl Policy {
    /// Builds the rules from a validated config (validation has checked the patterns; an
    /// invalid one here is reported rather than trusted).
    pub fn new(config: &Config) -> Result<Self, PolicyError> {
        let mut roles = Vec::with_capacity(config.roles.len());
        for role in &config.roles {
            let reason_pattern = role
                .reason_pattern
                .as_deref()
                .map(Regex::new)
                .transpose()
                .map_err(|e| PolicyError {
                    what: "role",
                    name: role.name.clone(),
                    message: e.to_string(),
                })?;
            let max_duration = role.max_duration.unwrap_or(Duration::from_secs(3600));
            let invalid = |message: String| PolicyError {
                what: "role",
                name: role.name.clone(),
                message,
            };
            let conditions = Conditions {
                hours: role
                    .activation_hours
                    .as_deref()
                    .map(|hours| Hours::parse(hours, role.timezone.as_deref()))
                    .transpose()
                    .map_err(invalid)?,
                networks: role
                    .activation_networks
                    .iter()
                    .map(|n| Network::parse(n))
                    .collect::<Result<_, _>>()
                    .map_err(invalid)?,
            };
            roles.push(RoleRule {
                name: role.name.clone(),
                members: role.members.iter().cloned().collect(),
                patterns: role.targets.clone(),
                access: role.access,
                idle_timeout: role.idle_timeout,
                can_watch: role.can_watch,
                max_duration,
                default_duration: role.default_duration.unwrap_or(max_duration),
                require_reason: role.require_reason,
                reason_pattern,
                approvals: role.approvals,
                approvers: role.approvers.clone(),
                require_mfa: role.require_mfa,
                break_glass: role.break_glass,
                conditions,
            });
        }
        Ok(Self {
            users: config.users.iter().map(|u| u.name.clone()).collect(),
            targets: config.targets.iter().map(|t| t.name.clone()).collect(),
            roles,
        })
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

    /// May `user` reach `target` at `now`? A lock refuses everything. A standing role
    /// covering the pair allows it; otherwise an eligible role does, if one of `grants` is
    /// active for the pair; otherwise the user must activate first.
    pub fn check(
        &self,
        user: &str,
        target: &str,
        lock: Option<&Lock>,
        grants: &[Grant],
        now: SystemTime,
    ) -> Result<Authorization, Denied> {
        self.check_login(user, lock, now)?;
        if !self.targets.contains(target) {
            return Err(Denied::UnknownTarget);
        }
        let covering = || self.roles.iter().filter(|role| role.covers(user, target));
        if let Some(role) = covering().find(|role| role.access == Access::Standing) {
            return Ok(self.authorize(user, target, role, now, None));
        }
        let eligible = covering()
            .find(|role| role.access == Access::Eligible)
            .ok_or(Denied::NoRole)?;
        let grant = grants.iter().find(|grant| {
            grant.user == user
                && grant.target == target
                && grant.is_active(now)
                && covering().any(|role| role.name == grant.role)
        });
        match grant {
            Some(grant) => {
                let role = covering()
                    .find(|role| role.name == grant.role)
                    .unwrap_or(eligible);
                Ok(self.authorize(user, target, role, now, Some(grant)))
            }
            None => Err(Denied::NeedsActivation(Box::new(
                eligible.eligibility(target),
            ))),
        }
    }

    fn authorize(
        &self,
        user: &str,
        target: &str,
        role: &RoleRule,
        now: SystemTime,
        grant: Option<&Grant>,
    ) -> Authorization {
        Authorization {
            user: user.to_owned(),
            target: target.to_owned(),
            role: role.name.clone(),
            access: role.access,
            decided_at: now,
            expires_at: grant.map(|g| g.expires_at),
            idle_timeout: role.idle_timeout,
            grant: grant.map(|g| g.id),
        }
    }

    /// What activating `target` would ask of `user`, if they are eligible for it (and not
    /// already covered by standing access).
    pub fn eligibility(&self, user: &str, target: &str) -> Option<Eligibility> {
        if !self.targets.contains(target) {
            return None;
        }
        let mut covering = self.roles.iter().filter(|role| role.covers(user, target));
        if covering.clone().any(|role| role.access == Access::Standing) {
            return None;
        }
        covering
            .find(|role| role.access == Access::Eligible)
            .map(|role| role.eligibility(target))
    }

    /// May `reviewer` approve or deny `request` at `now`?
    pub fn may_review(
        &self,
        reviewer: &str,
        request: &Request,
        now: SystemTime,
    ) -> Result<(), ReviewRefused> {
        if request.state != crate::jit::RequestState::Pending {
            return Err(ReviewRefused::NotPending);
        }
        if !request.is_open(now) {
            return Err(ReviewRefused::Expired);
        }
        if reviewer == request.user {
            return Err(ReviewRefused::OwnRequest);
        }
        let approvers = if request.approvers.is_empty() {
            self.approvers_of(&request.role)
        } else {
            request.approvers.clone()
        };
        let member = self
            .roles
            .iter()
            .any(|role| approvers.contains(&role.name) && role.members.contains(reviewer));
        if !member {
            return Err(ReviewRefused::NotAnApprover { approvers });
        }
        if request.approved_by.iter().any(|a| a == reviewer) {
            return Err(ReviewRefused::AlreadyApproved);
        }
        Ok(())
    }

    /// May `reviewer` — a user (role rules) or an API token (its scope already checked) —
    /// decide `request` at `now`?
    pub fn may_decide(
        &self,
        reviewer: crate::jit::Reviewer<'_>,
        request: &Request,
        now: SystemTime,
    ) -> Result<(), ReviewRefused> {
        use crate::jit::Reviewer;
        match reviewer {
            Reviewer::User(name) => self.may_review(name, request, now),
            Reviewer::Token(name) if name == request.user => Err(ReviewRefused::OwnRequest),
            Reviewer::Token(_) if request.state != crate::jit::RequestState::Pending => {
                Err(ReviewRefused::NotPending)
            }
            Reviewer::Token(_) if !request.is_open(now) => Err(ReviewRefused::Expired),
            Reviewer::Token(name) if request.approved_by.iter().any(|a| a == name) => {
                Err(ReviewRefused::AlreadyApproved)
            }
            Reviewer::Token(_) => Ok(()),
        }
    }

    /// The roles whose members approve for `role` (its `approvers`).
    pub fn approvers_of(&self, role: &str) -> Vec<String> {
        self.roles
            .iter()
            .find(|r| r.name == role)
            .map(|r| r.approvers.clone())
            .unwrap_or_default()
    }

    /// Whether `user` may watch other people's live sessions (a role with `can_watch`).
    pub fn may_watch(&self, user: &str) -> bool {
        self.roles
            .iter()
            .any(|role| role.can_watch && role.members.contains(user))
    }

    /// Every target `user` may reach, standing or eligible (with the active grant, if
    /// any), sorted by name.
    pub fn reachable(&self, user: &str, grants: &[Grant], now: SystemTime) -> Vec<Reachable> {
        self.targets
            .iter()
            .filter_map(|target| {
                let mut covering = self.roles.iter().filter(|role| role.covers(user, target));
                let role = covering
                    .clone()
                    .find(|role| role.access == Access::Standing)
                    .or_else(|| covering.next())?;
                let grant = (role.access == Access::Eligible)
                    .then(|| {
                        grants
                            .iter()
                            .find(|g| g.user == user && &g.target == target && g.is_active(now))
                            .cloned()
                    })
                    .flatten();
                Some(Reachable {
                    target: target.clone(),
                    role: role.name.clone(),
                    access: role.access,
                    grant,
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
        let policy = Policy::new(&config()).unwrap();
        let authz = policy
            .check("alice", "web02", None, &[], at(1000))
            .expect("allowed");
        assert_eq!(authz.user(), "alice");
        assert_eq!(authz.target(), "web02");
        assert_eq!(authz.role(), "web-admins");
        assert_eq!(authz.decided_at(), at(1000));
        assert_eq!(authz.expires_at(), None);
    }

    #[test]
    fn the_first_covering_role_decides() {
        let policy = Policy::new(&config()).unwrap();
        assert_eq!(
            policy
                .check("alice", "db01", None, &[], at(0))
                .expect("allowed")
                .role(),
            "dba"
        );
    }

    #[test]
    fn refusals_say_why() {
        let policy = Policy::new(&config()).unwrap();
        assert_eq!(
            policy.check("mallory", "web01", None, &[], at(0)),
            Err(Denied::UnknownUser)
        );
        assert_eq!(
            policy.check("alice", "web99", None, &[], at(0)),
            Err(Denied::UnknownTarget)
        );
        assert_eq!(
            policy.check("bob", "web01", None, &[], at(0)),
            Err(Denied::NoRole)
        );
        assert_eq!(
            policy.check("carol", "db01", None, &[], at(0)),
            Err(Denied::NoRole)
        );
    }

    #[test]
    fn a_glob_never_invents_a_target() {
        // "everything" covers "*", yet an unknown name stays unknown.
        let policy = Policy::new(&config()).unwrap();
        assert_eq!(
            policy.check("alice", "../etc", None, &[], at(0)),
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
        let policy = Policy::new(&config()).unwrap();
        let forever = lock(None);
        let denied = policy
            .check("alice", "web01", Some(&forever), &[], at(1_000_000))
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
                .check("alice", "web01", Some(&timed), &[], at(499))
                .is_err()
        );
        assert!(
            policy
                .check("alice", "web01", Some(&timed), &[], at(500))
                .is_ok(),
            "lifts at the exact instant"
        );
        // Another user's lock is not alice's.
        let bobs = Lock {
            user: "bob".into(),
            ..lock(None)
        };
        assert!(
            policy
                .check("alice", "web01", Some(&bobs), &[], at(200))
                .is_ok()
        );
    }

    #[test]
    fn roles_carry_idle_timeouts_and_watch_rights() {
        let mut config = config();
        config.roles[0].idle_timeout = Some(Duration::from_secs(900));
        config.roles[1].can_watch = true;
        let policy = Policy::new(&config).unwrap();
        let authz = policy.check("alice", "web01", None, &[], at(0)).unwrap();
        assert_eq!(authz.idle_timeout(), Some(Duration::from_secs(900)));
        assert_eq!(
            policy
                .check("alice", "db01", None, &[], at(0))
                .unwrap()
                .idle_timeout(),
            None
        );
        assert!(policy.may_watch("bob"));
        assert!(policy.may_watch("alice"));
        assert!(!policy.may_watch("carol"));
    }

    fn jit_config() -> Config {
        let mut config = config();
        config.users.push(UserConfig {
            name: "dave".into(),
            ..Default::default()
        });
        config.targets.push(TargetConfig {
            name: "db02".into(),
            ..Default::default()
        });
        config.roles.push(RoleConfig {
            name: "db-admins".into(),
            members: vec!["carol".into(), "alice".into()],
            targets: vec!["db*".into()],
            access: Access::Eligible,
            max_duration: Some(Duration::from_secs(4 * 3600)),
            default_duration: Some(Duration::from_secs(3600)),
            require_reason: true,
            reason_pattern: Some("^INC-[0-9]+".into()),
            approvals: 1,
            approvers: vec!["secops".into()],
            ..Default::default()
        });
        config.roles.push(RoleConfig {
            name: "secops".into(),
            members: vec!["bob".into(), "carol".into()],
            targets: vec!["web01".into()],
            ..Default::default()
        });
        config
    }

    fn grant(user: &str, target: &str, role: &str, from: u64, to: u64) -> Grant {
        Grant {
            id: 7,
            user: user.into(),
            target: target.into(),
            role: role.into(),
            starts_at: at(from),
            expires_at: at(to),
            revoked_at: None,
        }
    }

    #[test]
    fn eligible_access_needs_an_active_grant() {
        let policy = Policy::new(&jit_config()).unwrap();
        match policy.check("carol", "db02", None, &[], at(10)) {
            Err(Denied::NeedsActivation(e)) => {
                assert_eq!(e.role, "db-admins");
                assert_eq!(e.target, "db02");
                assert_eq!(e.approvals, 1);
            }
            other => panic!("{other:?}"),
        }
        let grants = [grant("carol", "db02", "db-admins", 5, 100)];
        let authz = policy
            .check("carol", "db02", None, &grants, at(10))
            .unwrap();
        assert_eq!(authz.grant(), Some(7));
        assert_eq!(authz.expires_at(), Some(at(100)));
        assert_eq!(authz.access(), Access::Eligible);
        // The grant is for db02 only, and ends at its instant.
        assert!(matches!(
            policy.check("carol", "db01", None, &grants, at(10)),
            Err(Denied::NeedsActivation(_))
        ));
        assert!(matches!(
            policy.check("carol", "db02", None, &grants, at(100)),
            Err(Denied::NeedsActivation(_))
        ));
        // Someone else's grant is not carol's.
        let bobs = [grant("bob", "db02", "db-admins", 5, 100)];
        assert!(policy.check("carol", "db02", None, &bobs, at(10)).is_err());
        // A lock beats a grant.
        let lock = Lock {
            user: "carol".into(),
            reason: "r".into(),
            by: "s".into(),
            since: at(0),
            until: None,
        };
        assert!(matches!(
            policy.check("carol", "db02", Some(&lock), &grants, at(10)),
            Err(Denied::Locked { .. })
        ));
    }

    #[test]
    fn standing_access_wins_over_eligibility() {
        // alice has standing access to db01 through "dba" and is eligible through "db-admins".
        let policy = Policy::new(&jit_config()).unwrap();
        let authz = policy.check("alice", "db01", None, &[], at(0)).unwrap();
        assert_eq!(authz.role(), "dba");
        assert_eq!(authz.grant(), None);
        assert!(policy.eligibility("alice", "db01").is_none());
        assert!(policy.eligibility("carol", "db01").is_some());
        assert!(policy.eligibility("dave", "db01").is_none());
    }

    fn pending(user: &str) -> Request {
        Request {
            id: 17,
            user: user.into(),
            target: "db01".into(),
            role: "db-admins".into(),
            reason: "INC-1".into(),
            duration: Duration::from_secs(3600),
            created_at: at(0),
            expires_at: at(3600),
            needed: 1,
            approved_by: vec![],
            state: crate::jit::RequestState::Pending,
            kind: crate::jit::RequestKind::Access,
            approvers: Vec::new(),
        }
    }

    #[test]
    fn only_approvers_other_than_the_requester_review() {
        let policy = Policy::new(&jit_config()).unwrap();
        assert_eq!(policy.may_review("bob", &pending("alice"), at(10)), Ok(()));
        // carol is in secops but it is her own request.
        assert_eq!(
            policy.may_review("carol", &pending("carol"), at(10)),
            Err(ReviewRefused::OwnRequest)
        );
        assert_eq!(
            policy.may_review("carol", &pending("alice"), at(10)),
            Ok(())
        );
        assert!(matches!(
            policy.may_review("dave", &pending("alice"), at(10)),
            Err(ReviewRefused::NotAnApprover { .. })
        ));
        assert_eq!(
            policy.may_review("bob", &pending("alice"), at(3600)),
            Err(ReviewRefused::Expired)
        );
        let approved = Request {
            approved_by: vec!["bob".into()],
            ..pending("alice")
        };
        assert_eq!(
            policy.may_review("bob", &approved, at(10)),
            Err(ReviewRefused::AlreadyApproved)
        );
        let denied = Request {
            state: crate::jit::RequestState::Denied {
                by: "bob".into(),
                reason: "no".into(),
            },
            ..pending("alice")
        };
        assert_eq!(
            policy.may_review("carol", &denied, at(10)),
            Err(ReviewRefused::NotPending)
        );
    }

    #[test]
    fn reachable_shows_eligibility_and_active_grants() {
        let policy = Policy::new(&jit_config()).unwrap();
        let grants = [grant("carol", "db02", "db-admins", 0, 100)];
        let carol = policy.reachable("carol", &grants, at(50));
        let db02 = carol.iter().find(|r| r.target == "db02").unwrap();
        assert_eq!(db02.access, Access::Eligible);
        assert_eq!(db02.grant.as_ref().map(|g| g.id), Some(7));
        let db01 = carol.iter().find(|r| r.target == "db01").unwrap();
        assert!(db01.grant.is_none());
        assert_eq!(
            policy
                .reachable("carol", &grants, at(100))
                .iter()
                .filter(|r| r.grant.is_some())
                .count(),
            0
        );
    }

    #[test]
    fn reachable_lists_each_target_once_with_its_deciding_role() {
        let policy = Policy::new(&config()).unwrap();
        let names: Vec<(String, String)> = policy
            .reachable("alice", &[], at(0))
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
        assert_eq!(policy.reachable("bob", &[], at(0)).len(), 1);
        assert!(policy.reachable("carol", &[], at(0)).is_empty());
        assert!(policy.reachable("nobody", &[], at(0)).is_empty());
    }

    #[test]
    fn exhaustive_over_small_worlds() {
        // Every user × target pair agrees between check() and reachable().
        let policy = Policy::new(&config()).unwrap();
        for user in ["alice", "bob", "carol", "mallory"] {
            let reachable: Vec<String> = policy
                .reachable(user, &[], at(0))
                .into_iter()
                .map(|r| r.target)
                .collect();
            for target in ["web01", "web02", "db01", "nope"] {
                let allowed = policy.check(user, target, None, &[], at(5)).is_ok();
                assert_eq!(
                    allowed,
                    reachable.iter().any(|t| t == target),
                    "{user} → {target}"
                );
            }
        }
    }
}
