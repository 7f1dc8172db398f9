//! The rules that ask before a line runs: `warn` (the user confirms y/N) and `review` (a
//! second person approves, through the just-in-time request machinery).

use std::time::Duration;

use portcullis_policy::{CommandRule, RequestState};

use super::{Gate, GateIo, Reading, Stop, Verdict};

/// How long a warned user has to answer y/N.
const CONFIRM_WAIT: Duration = Duration::from_secs(60);

impl Gate {
    /// `warn`: asks y/N; runs the line on y.
    pub(super) async fn confirm(
        &mut self,
        io: &mut GateIo<'_>,
        reading: &Reading,
        rule: &CommandRule,
    ) -> Result<Verdict, Stop> {
        self.tell(&format!("{} — run it anyway? [y/N]", rule.describe()))
            .await;
        let answer = tokio::time::timeout(CONFIRM_WAIT, self.next_keys(io))
            .await
            .ok()
            .flatten();
        let yes = answer
            .as_ref()
            .and_then(|keys| keys.first())
            .is_some_and(|b| b.eq_ignore_ascii_case(&b'y'));
        if yes {
            self.tell("confirmed; running it").await;
            self.audit(reading, Some(rule), rule.action, "confirmed");
            self.ran(io, reading, Some(rule), rule.action).await;
            Ok(Verdict::Run)
        } else {
            self.tell("not run").await;
            self.audit(reading, Some(rule), rule.action, "declined");
            Ok(Verdict::Discard)
        }
    }

    /// `review`: holds the line until an approver decides (Ctrl-C withdraws it).
    pub(super) async fn review(
        &mut self,
        io: &mut GateIo<'_>,
        reading: &Reading,
        rule: &CommandRule,
    ) -> Result<Verdict, Stop> {
        let approvers = if rule.approvers.is_empty() {
            self.services.policy.approvers_of(&self.role)
        } else {
            rule.approvers.clone()
        };
        let wait = self.services.config.access.approval_wait;
        let user = self.session.user().unwrap_or_default().to_owned();
        let request = match crate::access::jit::hold_command(
            &self.services,
            &self.session.id,
            &user,
            &self.target,
            &self.role,
            &reading.line,
            &rule.name,
            approvers.clone(),
            wait,
        )
        .await
        {
            Ok(request) => request,
            Err(error) => {
                tracing::error!(%error, "cannot hold a command for review");
                self.tell(&format!(
                    "{} needs approval, but the request could not be recorded; not run",
                    rule.describe()
                ))
                .await;
                return Ok(Verdict::Discard);
            }
        };
        let id = request.id;
        self.services.audit.record(
            self.session
                .audit("request.created")
                .with("request", id)
                .with("kind", "command")
                .with("line", &reading.line)
                .with("rule", &rule.name)
                .with("approvers", &approvers),
        );
        self.tell(&format!(
            "{} — request #{id} waits for approval by {}… (Ctrl-C withdraws it)",
            rule.describe(),
            approvers.join(", ")
        ))
        .await;
        let decided = crate::access::jit::decided(&self.services, id);
        tokio::pin!(decided);
        let deadline = tokio::time::sleep(wait);
        tokio::pin!(deadline);
        let state = loop {
            tokio::select! {
                state = &mut decided => {
                    break state.unwrap_or(RequestState::Expired);
                }
                keys = self.next_keys(io) => {
                    let interrupted = keys.as_ref().is_none_or(|k| k.contains(&0x03));
                    if interrupted {
                        let _ = crate::access::jit::cancel(&self.services, id, &user).await;
                        break RequestState::Cancelled;
                    }
                }
                () = &mut deadline => {
                    let _ = crate::access::jit::cancel(&self.services, id, &user).await;
                    break RequestState::Expired;
                }
                () = self.session.control.ended() => return Err(Stop),
            }
        };
        match state {
            RequestState::Approved { .. } => {
                self.tell(&format!("request #{id} approved; running it"))
                    .await;
                self.ran(io, reading, Some(rule), rule.action).await;
                Ok(Verdict::Run)
            }
            RequestState::Denied { by, reason } => {
                self.tell(&format!(
                    "request #{id} denied by {}: {}; not run",
                    crate::text::Shown(&by),
                    crate::text::Shown(&reason)
                ))
                .await;
                self.audit(reading, Some(rule), rule.action, "denied");
                Ok(Verdict::Discard)
            }
            _ => {
                self.tell(&format!("request #{id} was not approved; not run"))
                    .await;
                self.audit(reading, Some(rule), rule.action, "not approved");
                Ok(Verdict::Discard)
            }
        }
    }
}
