//! Alerts: the things someone must look at now, as `alert` events in the audit log.
//!
//! An alert is an ordinary audit event named `alert`, so it is chained and anchored like any
//! other and reaches a SIEM or an on-call tool through any forwarder whose `events` take
//! `alert` (see `forward`). It names what happened (`alert`), how bad it is (`severity`,
//! syslog's words, which the syslog forwarder uses as the message's severity) and says it
//! in a sentence (`message`); the event that caused it sits beside it in the log. The
//! bastion's own log keeps its `ALERT:` lines where they were.
//!
//! ```json
//! {"time":"…","event":"alert","alert":"command_blocked","severity":"warning",
//!  "message":"alice: a command was stopped by rule no-rm on web01","user":"alice",…}
//! ```

use crate::audit::AuditEvent;

/// The audit event every alert is.
pub const EVENT: &str = "alert";

/// How urgent an alert is: syslog's severities (RFC 5424), the ones an alert can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Evidence or a trust anchor is in doubt: act now.
    Critical,
    /// Something failed that protects the system (a recording, a rule ended a session).
    Error,
    /// Policy did its job, but someone should know (a blocked command, a lock).
    Warning,
}

impl Severity {
    /// The word in the event.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::Error => "error",
            Self::Warning => "warning",
        }
    }

    /// The severity an event's word names, if it names one.
    pub fn parse(word: &str) -> Option<Self> {
        [Self::Critical, Self::Error, Self::Warning]
            .into_iter()
            .find(|severity| severity.as_str() == word)
    }

    /// Its code in a syslog priority (RFC 5424, table 2).
    pub fn syslog_code(self) -> u8 {
        match self {
            Self::Critical => 2,
            Self::Error => 3,
            Self::Warning => 4,
        }
    }
}

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alert {
    /// A break-glass activation: access without approval, to be reviewed.
    BreakGlass,
    /// A break-glass activation outside the role's hours or networks.
    BreakGlassOutsideConditions,
    /// A rule stopped a command line or file operation.
    CommandBlocked,
    /// A rule stopped a command line and ended the session.
    CommandTerminated,
    /// A user was locked out.
    UserLocked,
    /// An upstream showed a host key other than the pinned one.
    HostKeyMismatch,
    /// A source or user reached the limit of failed logins.
    LoginFailures,
    /// Too many wrong activation codes.
    ActivationCodeFailures,
    /// A recording could not be written.
    RecordingFailed,
    /// A recording or the audit log does not verify.
    EvidenceTampered,
    /// A forwarder has more undelivered events than its `max_lag`.
    ForwarderBehind,
    /// A credential could not be rotated (the old one still works).
    RotationFailed,
    /// After a rotation, the old key still gets in somewhere.
    OldCredentialStillAccepted,
    /// Another node stopped sending heartbeats; its sessions were recorded as ended.
    NodeLost,
}

impl Alert {
    /// Its name in the event (`alert` field).
    pub fn name(self) -> &'static str {
        match self {
            Self::BreakGlass => "break_glass",
            Self::BreakGlassOutsideConditions => "break_glass_outside_conditions",
            Self::CommandBlocked => "command_blocked",
            Self::CommandTerminated => "command_terminated",
            Self::UserLocked => "user_locked",
            Self::HostKeyMismatch => "host_key_mismatch",
            Self::LoginFailures => "login_failures",
            Self::ActivationCodeFailures => "activation_code_failures",
            Self::RecordingFailed => "recording_failed",
            Self::EvidenceTampered => "evidence_tampered",
            Self::ForwarderBehind => "forwarder_behind",
            Self::RotationFailed => "rotation_failed",
            Self::OldCredentialStillAccepted => "old_credential_still_accepted",
            Self::NodeLost => "node_lost",
        }
    }

    /// How urgent it is.
    pub fn severity(self) -> Severity {
        match self {
            Self::HostKeyMismatch
            | Self::EvidenceTampered
            | Self::BreakGlassOutsideConditions
            | Self::OldCredentialStillAccepted => Severity::Critical,
            Self::BreakGlass
            | Self::CommandTerminated
            | Self::RecordingFailed
            | Self::RotationFailed
            | Self::NodeLost => Severity::Error,
            Self::CommandBlocked
            | Self::UserLocked
            | Self::LoginFailures
            | Self::ActivationCodeFailures
            | Self::ForwarderBehind => Severity::Warning,
        }
    }

    /// The `alert` event, saying `message`.
    pub fn event(self, message: impl Into<String>) -> AuditEvent {
        self.on(AuditEvent::new(EVENT), message)
    }

    /// The `alert` event on top of a session's `audit(EVENT)`, so it names the session,
    /// user and target.
    pub fn on(self, base: AuditEvent, message: impl Into<String>) -> AuditEvent {
        debug_assert_eq!(base.kind(), EVENT);
        base.with("alert", self.name())
            .with("severity", self.severity().as_str())
            .with("message", message.into())
    }
}

/// The alert that `evidence` (`audit_log`, `recording`, `left_event`) was found altered.
pub fn tampered(evidence: &str, message: impl Into<String>) -> AuditEvent {
    Alert::EvidenceTampered
        .event(message)
        .with("evidence", evidence)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_names_itself_its_severity_and_says_what_happened() {
        let event = Alert::HostKeyMismatch.on(
            AuditEvent::new(EVENT).with("target", "web01"),
            "web01 changed its key",
        );
        let (kind, fields) = event.into_parts();
        assert_eq!(kind, "alert");
        assert_eq!(fields["alert"], "host_key_mismatch");
        assert_eq!(fields["severity"], "critical");
        assert_eq!(fields["message"], "web01 changed its key");
        assert_eq!(fields["target"], "web01");
    }
}
