//! What a rule decided about a line checked outside a terminal — an exec command or
//! subsystem name at channel start, a file operation in an sftp channel — carried out the
//! same way wherever it was checked: audited as a `command` event and, when the line is
//! stopped, counted, raised as an ALERT and, for `terminate`, the end of the session.

use portcullis_config::CommandAction;
use portcullis_policy::CommandRule;

use crate::alerts::{self, Alert};
use crate::live::{EndReason, SessionShared};
use crate::services::Services;
use crate::text::Shown;

/// One decision.
pub(super) struct Verdict<'a> {
    /// The channel it was made on.
    pub channel: &'a str,
    /// What the line is: `exec`, `subsystem`, `sftp`.
    pub kind: &'a str,
    /// The line as checked.
    pub line: &'a str,
    /// The rule that decided, if one did.
    pub rule: Option<&'a CommandRule>,
    /// What was done.
    pub action: CommandAction,
    /// Whether the line was stopped.
    pub stopped: bool,
    /// Whether the line could not be read exactly (a refusal without a rule).
    pub uncertain: bool,
    /// The words for the ALERT: `command`, `file operation`.
    pub what: &'a str,
}

impl Verdict<'_> {
    /// Audits it and, when the line was stopped, counts it, raises the ALERT and ends the
    /// session for `terminate`.
    pub(super) fn carry_out(&self, services: &Services, session: &SessionShared) {
        let outcome = match (self.stopped, self.action) {
            (false, _) => "ran",
            (true, CommandAction::Terminate) => "terminated",
            (true, _) => "blocked",
        };
        services.audit.record(
            session
                .audit("command")
                .with("channel", self.channel)
                .with("role", session.role().unwrap_or_default())
                .with("kind", self.kind)
                .with("line", self.line)
                .with("rule", self.rule.map(|r| r.name.as_str()))
                .with("action", self.action.as_str())
                .with("outcome", outcome)
                .with("uncertain", self.uncertain),
        );
        if !self.stopped {
            return;
        }
        crate::metrics::Metrics::count(&services.metrics.commands_blocked_total);
        tracing::warn!(
            parent: &session.span,
            line = %crate::text::Shown(self.line),
            rule = self.rule.map(|r| r.name.as_str()),
            "ALERT: {} stopped by a rule",
            self.what
        );
        raise_stopped(
            services,
            session,
            self.what,
            self.line,
            self.rule,
            self.action == CommandAction::Terminate,
        );
        if let (Some(rule), CommandAction::Terminate) = (self.rule, self.action) {
            session.control.end(EndReason::CommandRule {
                rule: rule.name.clone(),
                message: rule.message.clone().unwrap_or_default(),
            });
        }
    }
}

/// The `alert` event for a line a rule stopped (`what`: `command`, `file operation`), and
/// for one that ended the session too.
pub(super) fn raise_stopped(
    services: &Services,
    session: &SessionShared,
    what: &str,
    line: &str,
    rule: Option<&CommandRule>,
    terminated: bool,
) {
    let (alert, done) = if terminated {
        (Alert::CommandTerminated, "stopped and the session ended")
    } else {
        (Alert::CommandBlocked, "stopped")
    };
    let rule_name = rule.map_or("(no rule: it could not be read exactly)", |r| {
        r.name.as_str()
    });
    let message = format!(
        "{}: a {what} on {} was {done} by rule {}",
        Shown(session.user().unwrap_or("-")),
        Shown(session.target().unwrap_or("-")),
        Shown(rule_name)
    );
    services.audit.record(
        alert
            .on(session.audit(alerts::EVENT), message)
            .with("line", line)
            .with("rule", rule.map(|r| r.name.as_str())),
    );
}
