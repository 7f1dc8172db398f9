//! Just-in-time access: eligibility, activation, approval, grants and their end.
//!
//! A role with `access = "eligible"` makes its members *eligible*; reaching a target then
//! takes a [`Grant`], which an activation creates at once (self-activation, break-glass) or
//! once enough approvals arrive. Every rule here is a pure function of its inputs and `now`.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

pub use portcullis_config::conditions::{Hours, Network};

use regex::Regex;

/// What an eligible role asks of an activation.
#[derive(Debug, Clone)]
pub struct Eligibility {
    /// The role that makes the user eligible.
    pub role: String,
    /// The target asked for.
    pub target: String,
    /// The longest activation.
    pub max_duration: Duration,
    /// The duration offered when none is given.
    pub default_duration: Duration,
    /// Whether a justification is required.
    pub require_reason: bool,
    /// A pattern the justification must match.
    pub reason_pattern: Option<Regex>,
    /// Approvals needed (0: self-activation).
    pub approvals: u32,
    /// Roles whose members may approve.
    pub approvers: Vec<String>,
    /// Whether a fresh TOTP code is asked for.
    pub require_mfa: bool,
    /// Self-activation without approval, alerted and queued for review.
    pub break_glass: bool,
    /// When and from where activation is allowed.
    pub conditions: Conditions,
}

/// When and from where a role may be activated (nothing set: always, from anywhere).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conditions {
    /// The weekly window.
    pub hours: Option<Hours>,
    /// Address blocks the request may come from (empty: any).
    pub networks: Vec<Network>,
}

/// Which condition an activation did not meet. The text is for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConditionFailed {
    /// Outside the window.
    Hours {
        /// The window, with its zone.
        window: String,
        /// The time there now.
        now: String,
    },
    /// From elsewhere.
    Network {
        /// The allowed blocks.
        allowed: Vec<String>,
        /// Where the request came from.
        from: IpAddr,
    },
}

impl ConditionFailed {
    /// A short code for the audit.
    pub fn code(&self) -> &'static str {
        match self {
            ConditionFailed::Hours { .. } => "activation_hours",
            ConditionFailed::Network { .. } => "activation_networks",
        }
    }
}

impl std::fmt::Display for ConditionFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConditionFailed::Hours { window, now } => write!(
                f,
                "activation is allowed only {window}, and it is {now} there now"
            ),
            ConditionFailed::Network { allowed, from } => write!(
                f,
                "activation is allowed only from {}, and this request comes from {}",
                allowed.join(", "),
                from.to_canonical()
            ),
        }
    }
}

impl Conditions {
    /// Whether an activation asked for at `now` from `from` meets them; the first condition
    /// it does not meet otherwise.
    pub fn check(&self, now: SystemTime, from: IpAddr) -> Result<(), ConditionFailed> {
        if !self.networks.is_empty() && !self.networks.iter().any(|n| n.contains(from)) {
            return Err(ConditionFailed::Network {
                allowed: self.networks.iter().map(ToString::to_string).collect(),
                from,
            });
        }
        if let Some(hours) = &self.hours
            && !hours.contains(now)
        {
            return Err(ConditionFailed::Hours {
                window: hours.describe().to_owned(),
                now: hours.local_time(now),
            });
        }
        Ok(())
    }
}

impl PartialEq for Eligibility {
    fn eq(&self, other: &Self) -> bool {
        self.role == other.role
            && self.target == other.target
            && self.max_duration == other.max_duration
            && self.default_duration == other.default_duration
            && self.require_reason == other.require_reason
            && self.reason_pattern.as_ref().map(Regex::as_str)
                == other.reason_pattern.as_ref().map(Regex::as_str)
            && self.approvals == other.approvals
            && self.approvers == other.approvers
            && self.require_mfa == other.require_mfa
            && self.break_glass == other.break_glass
            && self.conditions == other.conditions
    }
}

impl Eq for Eligibility {}

/// How an activation proceeds once its answers are valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivationPath {
    /// A grant starts now.
    Immediate,
    /// A grant starts now, and security is alerted and must acknowledge it.
    BreakGlass,
    /// A request waits for this many approvals.
    Approval(u32),
}

/// Why an activation's answers are not acceptable. The text is for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActivationError {
    /// No justification was given.
    ReasonRequired,
    /// The justification does not match the role's pattern.
    ReasonMismatch {
        /// The pattern.
        pattern: String,
    },
    /// More time than the role allows.
    TooLong {
        /// The maximum.
        max: Duration,
    },
    /// A zero duration.
    NoTime,
}

impl std::fmt::Display for ActivationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ActivationError::ReasonRequired => f.write_str("a reason is required"),
            ActivationError::ReasonMismatch { pattern } => {
                write!(f, "the reason must match {pattern}")
            }
            ActivationError::TooLong { max } => write!(
                f,
                "at most {} may be asked for",
                humantime::format_duration(*max)
            ),
            ActivationError::NoTime => f.write_str("the duration must be longer than zero"),
        }
    }
}

impl Eligibility {
    /// Checks a justification and a duration (`None`: the default); returns the duration.
    pub fn validate(
        &self,
        reason: &str,
        duration: Option<Duration>,
    ) -> Result<Duration, ActivationError> {
        let reason = reason.trim();
        if reason.is_empty() && (self.require_reason || self.reason_pattern.is_some()) {
            return Err(ActivationError::ReasonRequired);
        }
        if let Some(pattern) = &self.reason_pattern
            && !pattern.is_match(reason)
        {
            return Err(ActivationError::ReasonMismatch {
                pattern: pattern.as_str().to_owned(),
            });
        }
        let duration = duration.unwrap_or(self.default_duration);
        if duration.is_zero() {
            return Err(ActivationError::NoTime);
        }
        if duration > self.max_duration {
            return Err(ActivationError::TooLong {
                max: self.max_duration,
            });
        }
        Ok(duration)
    }

    /// Whether the activation needs approvals, and how many.
    pub fn path(&self) -> ActivationPath {
        if self.break_glass {
            ActivationPath::BreakGlass
        } else if self.approvals == 0 {
            ActivationPath::Immediate
        } else {
            ActivationPath::Approval(self.approvals)
        }
    }
}

/// Activated access to one target for a bounded time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Its number.
    pub id: u64,
    /// Whose.
    pub user: String,
    /// For which target.
    pub target: String,
    /// Through which role.
    pub role: String,
    /// When it began (the approval, for approved requests).
    pub starts_at: SystemTime,
    /// When it ends on its own.
    pub expires_at: SystemTime,
    /// When it was revoked, if it was.
    pub revoked_at: Option<SystemTime>,
}

impl Grant {
    /// Whether it gives access at `now`; it ends at the exact instant of `expires_at`.
    pub fn is_active(&self, now: SystemTime) -> bool {
        self.revoked_at.is_none() && self.starts_at <= now && now < self.expires_at
    }

    /// When live sessions should be warned: each of `before` ahead of the end, if still to come.
    pub fn warnings(&self, before: &[Duration], now: SystemTime) -> Vec<SystemTime> {
        let mut times: Vec<SystemTime> = before
            .iter()
            .filter_map(|ahead| self.expires_at.checked_sub(*ahead))
            .filter(|at| *at > now)
            .collect();
        times.sort();
        times
    }
}

/// Where a request stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestState {
    /// Waiting for approvals.
    Pending,
    /// Approved; for an access request, the grant it became.
    Approved {
        /// The grant (none for a command request).
        grant: Option<u64>,
    },
    /// Denied.
    Denied {
        /// By whom.
        by: String,
        /// Why.
        reason: String,
    },
    /// Nobody decided in time.
    Expired,
    /// The requester withdrew it.
    Cancelled,
}

/// What is asked for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RequestKind {
    /// Access to a target for a time (an activation).
    #[default]
    Access,
    /// One command line, held in a live session by a `review` rule.
    Command {
        /// The line.
        line: String,
        /// The rule that held it.
        rule: String,
        /// The session it waits in.
        session: String,
    },
}

/// A request for access or for a command line, as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Its number (`#17`).
    pub id: u64,
    /// Who asks.
    pub user: String,
    /// For which target.
    pub target: String,
    /// Through which role.
    pub role: String,
    /// Their justification.
    pub reason: String,
    /// For how long, counted from approval.
    pub duration: Duration,
    /// When it was made.
    pub created_at: SystemTime,
    /// When it lapses if nobody decides.
    pub expires_at: SystemTime,
    /// Approvals needed.
    pub needed: u32,
    /// Who has approved so far.
    pub approved_by: Vec<String>,
    /// Where it stands.
    pub state: RequestState,
    /// Access or a command line.
    pub kind: RequestKind,
    /// Roles whose members may approve it (empty on requests recorded before this was kept:
    /// then the role's approvers).
    pub approvers: Vec<String>,
}

/// Who is reviewing: a user over ssh (role rules apply) or an admin API token (its scope is
/// the permission; it still may not approve a request made under its own name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reviewer<'a> {
    /// A bastion user.
    User(&'a str),
    /// An admin API token, by name.
    Token(&'a str),
}

impl Reviewer<'_> {
    /// The name recorded.
    pub fn name(&self) -> &str {
        match self {
            Reviewer::User(name) | Reviewer::Token(name) => name,
        }
    }
}

/// Why someone may not approve (or deny) a request. The text is for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewRefused {
    /// Requesters never approve their own.
    OwnRequest,
    /// Not a member of an approving role.
    NotAnApprover {
        /// The roles that may.
        approvers: Vec<String>,
    },
    /// Already approved by them.
    AlreadyApproved,
    /// No longer pending.
    NotPending,
    /// Past its time.
    Expired,
}

impl std::fmt::Display for ReviewRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReviewRefused::OwnRequest => f.write_str("nobody may approve their own request"),
            ReviewRefused::NotAnApprover { approvers } => write!(
                f,
                "only members of {} may review this request",
                approvers.join(", ")
            ),
            ReviewRefused::AlreadyApproved => f.write_str("you have already approved it"),
            ReviewRefused::NotPending => f.write_str("it is no longer pending"),
            ReviewRefused::Expired => f.write_str("it has expired"),
        }
    }
}

impl Request {
    /// Whether it is still open at `now`; it lapses at the exact instant of `expires_at`.
    pub fn is_open(&self, now: SystemTime) -> bool {
        self.state == RequestState::Pending && now < self.expires_at
    }

    /// Whether one more approval completes it.
    pub fn completes_with_one_more(&self) -> bool {
        self.approved_by.len() as u32 + 1 >= self.needed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn eligibility() -> Eligibility {
        Eligibility {
            role: "db-admins".into(),
            target: "db01".into(),
            max_duration: Duration::from_secs(4 * 3600),
            default_duration: Duration::from_secs(3600),
            require_reason: true,
            reason_pattern: Some(Regex::new("^(INC|CHG)-[0-9]+").unwrap()),
            approvals: 1,
            approvers: vec!["secops".into()],
            require_mfa: false,
            break_glass: false,
            conditions: Conditions::default(),
        }
    }

    #[test]
    fn conditions_name_the_one_that_failed() {
        use crate::clock::{Clock, ManualClock};
        let clock = ManualClock::new(at(1_796_601_600 + 9 * 3600)); // Mon 2026-12-07 09:00 UTC
        let conditions = Conditions {
            hours: Some(Hours::parse("Mon-Fri 08:00-18:00", Some("Europe/Berlin")).unwrap()),
            networks: vec![Network::parse("10.0.0.0/8").unwrap()],
        };
        let inside: IpAddr = "10.1.2.3".parse().unwrap();
        let outside: IpAddr = "127.0.0.2".parse().unwrap();
        assert_eq!(conditions.check(clock.now(), inside), Ok(()));
        let elsewhere = conditions.check(clock.now(), outside).unwrap_err();
        assert_eq!(elsewhere.code(), "activation_networks");
        assert_eq!(
            elsewhere.to_string(),
            "activation is allowed only from 10.0.0.0/8, and this request comes from 127.0.0.2"
        );
        // Mon 17:30 UTC is 18:30 in Berlin.
        clock.advance(Duration::from_secs(8 * 3600 + 30 * 60));
        let late = conditions.check(clock.now(), inside).unwrap_err();
        assert_eq!(late.code(), "activation_hours");
        assert_eq!(
            late.to_string(),
            "activation is allowed only Mon-Fri 08:00-18:00 (Europe/Berlin), and it is Mon 18:30 there now"
        );
        assert_eq!(Conditions::default().check(clock.now(), outside), Ok(()));
    }

    #[test]
    fn reasons_must_be_given_and_match() {
        let e = eligibility();
        assert_eq!(e.validate("", None), Err(ActivationError::ReasonRequired));
        assert_eq!(
            e.validate("   ", None),
            Err(ActivationError::ReasonRequired)
        );
        assert!(matches!(
            e.validate("fixing stuff", None),
            Err(ActivationError::ReasonMismatch { .. })
        ));
        assert_eq!(
            e.validate("INC-42 disk full", None),
            Ok(Duration::from_secs(3600))
        );
        assert_eq!(e.validate("CHG-7", None), Ok(Duration::from_secs(3600)));
        let free = Eligibility {
            require_reason: false,
            reason_pattern: None,
            ..eligibility()
        };
        assert_eq!(free.validate("", None), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn durations_are_bounded() {
        let e = eligibility();
        assert_eq!(
            e.validate("INC-1", Some(Duration::from_secs(4 * 3600))),
            Ok(Duration::from_secs(4 * 3600))
        );
        assert_eq!(
            e.validate("INC-1", Some(Duration::from_secs(4 * 3600 + 1))),
            Err(ActivationError::TooLong {
                max: Duration::from_secs(4 * 3600)
            })
        );
        assert_eq!(
            e.validate("INC-1", Some(Duration::ZERO)),
            Err(ActivationError::NoTime)
        );
        assert_eq!(
            e.validate("INC-1", Some(Duration::from_secs(3))),
            Ok(Duration::from_secs(3))
        );
    }

    #[test]
    fn the_path_follows_approvals_and_break_glass() {
        assert_eq!(eligibility().path(), ActivationPath::Approval(1));
        assert_eq!(
            Eligibility {
                approvals: 2,
                ..eligibility()
            }
            .path(),
            ActivationPath::Approval(2)
        );
        assert_eq!(
            Eligibility {
                approvals: 0,
                ..eligibility()
            }
            .path(),
            ActivationPath::Immediate
        );
        assert_eq!(
            Eligibility {
                break_glass: true,
                ..eligibility()
            }
            .path(),
            ActivationPath::BreakGlass
        );
    }

    fn grant(starts: u64, ends: u64) -> Grant {
        Grant {
            id: 1,
            user: "alice".into(),
            target: "db01".into(),
            role: "db-admins".into(),
            starts_at: at(starts),
            expires_at: at(ends),
            revoked_at: None,
        }
    }

    #[test]
    fn grants_end_at_the_exact_instant_and_when_revoked() {
        let g = grant(100, 200);
        assert!(!g.is_active(at(99)));
        assert!(g.is_active(at(100)));
        assert!(g.is_active(at(199)));
        assert!(!g.is_active(at(200)), "expires at the exact instant");
        let revoked = Grant {
            revoked_at: Some(at(150)),
            ..g
        };
        assert!(!revoked.is_active(at(120)));
    }

    #[test]
    fn warnings_come_before_the_end_and_only_in_the_future() {
        let g = grant(0, 1000);
        let before = [Duration::from_secs(300), Duration::from_secs(60)];
        assert_eq!(g.warnings(&before, at(0)), vec![at(700), at(940)]);
        assert_eq!(g.warnings(&before, at(800)), vec![at(940)]);
        assert!(g.warnings(&before, at(990)).is_empty());
        let short = grant(0, 3);
        assert!(
            short.warnings(&before, at(0)).is_empty(),
            "a 3 s grant has no 1-minute warning"
        );
    }

    fn request() -> Request {
        Request {
            id: 17,
            user: "alice".into(),
            target: "db01".into(),
            role: "db-admins".into(),
            reason: "INC-1".into(),
            duration: Duration::from_secs(3600),
            created_at: at(0),
            expires_at: at(3600),
            needed: 2,
            approved_by: vec![],
            state: RequestState::Pending,
            kind: RequestKind::Access,
            approvers: vec!["secops".into()],
        }
    }

    #[test]
    fn requests_lapse_at_the_exact_instant() {
        let r = request();
        assert!(r.is_open(at(3599)));
        assert!(!r.is_open(at(3600)));
        let denied = Request {
            state: RequestState::Denied {
                by: "bob".into(),
                reason: "no".into(),
            },
            ..request()
        };
        assert!(!denied.is_open(at(1)));
    }

    #[test]
    fn thresholds_count_distinct_approvals() {
        let mut r = request();
        assert!(!r.completes_with_one_more());
        r.approved_by.push("bob".into());
        assert!(r.completes_with_one_more());
    }
}
