//! Activation inside the ssh login: `ssh -p 2222 alice+db01@bastion` without an active
//! grant asks, on the user's own terminal, for the reason, the duration and (if the role
//! wants it) a TOTP code; then access starts at once, or the login waits for the approval
//! of the request it made. Once granted, the channel is connected upstream and its
//! terminal, environment and shell (or command) are replayed there, so the user simply
//! lands on the target.
//!
//! Why the terminal and not SSH keyboard-interactive authentication: OpenSSH offers
//! keyboard-interactive after a partial success only to clients that may prompt, and a
//! `BatchMode` client then fails with nothing but "Permission denied" — the user would never
//! learn what to do. Authenticating first and asking on the channel lets every client be
//! told: a terminal gets the questions, a command without one gets the exact `request`
//! command to run.

use std::sync::Arc;
use std::time::Duration;

use portcullis_policy::{Eligibility, RequestState};
use russh::ChannelId;
use russh::server::{self, Msg};
use russh::{ChannelWriteHalf, client};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::route::{self, PendingActivation};
use super::{EndReason, SessionShared};
use crate::access::AccessError;
use crate::access::jit::{self as jit_ops, Activated, Answers, left};
use crate::bastion::console::{Abort, ClientEvent, Console, PtyParams};
use crate::bastion::menu::{Origin, clock, state_in_words};
use crate::relay::{self, Start, StartOutcome};
use crate::services::Services;

/// How long each question waits for an answer.
const QUESTION_TIMEOUT: Duration = Duration::from_secs(300);
/// Wrong answers allowed per question before the activation is abandoned.
const ATTEMPTS: usize = 3;

/// Who approves, in words.
fn approval_in_words(eligibility: &Eligibility) -> String {
    if eligibility.break_glass {
        "break-glass: access starts at once; security is alerted and will review it".into()
    } else if eligibility.approvals == 0 {
        "access starts as soon as you answer".into()
    } else {
        format!(
            "{} approval{} by {} needed",
            eligibility.approvals,
            if eligibility.approvals == 1 { "" } else { "s" },
            eligibility.approvers.join(", ")
        )
    }
}

/// The message for a channel that cannot hold the dialog (no terminal): what to run.
pub async fn instructions(
    services: &Services,
    user: &str,
    origin: &Origin,
    eligibility: &Eligibility,
) -> String {
    let target = &eligibility.target;
    if let Ok(Some(request)) = jit_ops::pending_request(services, user, target).await {
        return format!(
            "{target} needs an activation: your request #{} is waiting for approval by {}; \
             connect again once it is approved",
            request.id,
            eligibility.approvers.join(", ")
        );
    }
    let mut command = format!(
        "{} request {target} --for {} --reason \"…\"",
        origin.ssh(user),
        humantime::format_duration(eligibility.default_duration)
    );
    if eligibility.require_mfa {
        command.push_str(" --code CODE");
    }
    let mut text = format!(
        "{target} needs an activation first (role {}; {}).\nRequest it with:\n  {command}\n",
        eligibility.role,
        approval_in_words(eligibility)
    );
    if let Some(pattern) = &eligibility.reason_pattern {
        text.push_str(&format!("The reason must match {}.\n", pattern.as_str()));
    }
    text.push_str("then connect again (on a terminal, connecting asks these questions itself).");
    text
}

/// Everything the dialog needs.
pub struct Dialog {
    /// The broker.
    pub services: Arc<Services>,
    /// The session.
    pub session: Arc<SessionShared>,
    /// What is being activated.
    pub pending: Arc<PendingActivation>,
    /// The channel, in conversation (its terminal is replayed upstream later).
    pub console: Console,
    /// For messages once the writer belongs to the relay.
    pub handle: server::Handle,
    /// The channel.
    pub id: ChannelId,
    /// Environment the client sent.
    pub env: Vec<(String, String)>,
    /// The shell or command to start on the target.
    pub start: Start,
}

/// How the dialog ended without access.
struct Ended {
    message: Option<String>,
}

impl Ended {
    fn saying(message: impl Into<String>) -> Self {
        Self {
            message: Some(message.into()),
        }
    }

    fn from_abort(abort: Abort) -> Self {
        match abort {
            Abort::Interrupted | Abort::EndOfInput => Self::saying("activation cancelled"),
            Abort::TimedOut => Self::saying(format!(
                "no answer within {}; activation cancelled",
                humantime::format_duration(QUESTION_TIMEOUT)
            )),
            // The client left, or the session is ending and says why itself.
            Abort::Gone | Abort::Ending => Self { message: None },
        }
    }
}

/// Runs the activation on the channel, then relays it to the target.
pub async fn run(dialog: Dialog) {
    let Dialog {
        services,
        session,
        pending,
        mut console,
        handle,
        id,
        env,
        start,
    } = dialog;
    let user = session.user().unwrap_or_default().to_owned();
    let from = session.client.ip();
    let outcome = activate(&services, &user, &pending.eligibility, from, &mut console).await;
    if let Err(ended) = outcome {
        pending.release();
        if let Some(message) = ended.message {
            console.say(&message).await;
        }
        console.close(1).await;
        return;
    }
    let connected = connect(&services, &session, &pending).await;
    pending.release();
    let upstream_channel = match connected {
        Ok(channel) => channel,
        Err(message) => {
            console.say(&message).await;
            console.close(1).await;
            return;
        }
    };
    let (writer, input, pty) = console.into_parts();
    relay(
        services,
        session,
        writer,
        input,
        handle,
        id,
        pty,
        env,
        start,
        upstream_channel,
    )
    .await;
}

/// Asks the questions and activates; returns once access is granted.
async fn activate(
    services: &Services,
    user: &str,
    eligibility: &Eligibility,
    from: std::net::IpAddr,
    console: &mut Console,
) -> Result<(), Ended> {
    let target = &eligibility.target;
    let now = services.clock.now();
    let failed =
        |error: portcullis_state::StateError| Ended::saying(AccessError::from(error).to_string());
    if jit_ops::active_grants(services, user, now)
        .await
        .map_err(failed)?
        .iter()
        .any(|g| &g.target == target)
    {
        // Activated elsewhere since this login was routed.
        return Ok(());
    }
    if let Some(request) = jit_ops::pending_request(services, user, target)
        .await
        .map_err(failed)?
    {
        console
            .say(&format!(
                "your request #{} for {target} is already open",
                request.id
            ))
            .await;
        return wait_for_approval(services, user, request.id, eligibility, console).await;
    }
    // Not now or not from here: said before any question is asked (a break-glass role goes
    // on, and its override is audited once, when it activates).
    if !eligibility.break_glass {
        jit_ops::refuse_outside_conditions(services, user, eligibility, now, from, "ssh-login")
            .map_err(|refused| Ended::saying(refused.to_string()))?;
    }
    console
        .say(&format!(
            "{target} is just-in-time access (role {}; {}).",
            eligibility.role,
            approval_in_words(eligibility)
        ))
        .await;
    let mut answers = Answers {
        reason: ask_reason(eligibility, console).await?,
        duration: Some(ask_duration(eligibility, console).await?),
        code: None,
    };
    let mut attempts = 0;
    let activated = loop {
        if eligibility.require_mfa {
            answers.code = Some(
                console
                    .ask("Verification code: ", QUESTION_TIMEOUT)
                    .await
                    .map_err(Ended::from_abort)?,
            );
        }
        match jit_ops::activate(services, user, target, &answers, "ssh-login", from).await {
            Ok(activated) => break activated,
            Err(AccessError::WrongCode | AccessError::CodeReused | AccessError::CodeRequired)
                if attempts + 1 < ATTEMPTS =>
            {
                attempts += 1;
                console
                    .say("wrong or already used verification code; try again")
                    .await;
            }
            Err(AccessError::AlreadyActive { .. }) => return Ok(()),
            Err(error) => return Err(Ended::saying(error.to_string())),
        }
    };
    match activated {
        Activated::Granted(record) => {
            let text = format!(
                "access to {target} granted until {} ({}; grant #{})",
                clock(record.grant.expires_at),
                left(record.grant.expires_at, services.clock.now()),
                record.grant.id
            );
            console.say(&text).await;
            if record.break_glass {
                console
                    .say("this break-glass activation has been reported to security")
                    .await;
            }
            Ok(())
        }
        Activated::Requested(request) => {
            wait_for_approval(services, user, request.id, eligibility, console).await
        }
    }
}

async fn ask_reason(eligibility: &Eligibility, console: &mut Console) -> Result<String, Ended> {
    let prompt = match (&eligibility.reason_pattern, eligibility.require_reason) {
        (Some(pattern), _) => format!("Reason (must match {}): ", pattern.as_str()),
        (None, true) => "Reason: ".to_owned(),
        (None, false) => "Reason (optional): ".to_owned(),
    };
    for _ in 0..ATTEMPTS {
        let reason = console
            .ask(&prompt, QUESTION_TIMEOUT)
            .await
            .map_err(Ended::from_abort)?;
        // The duration is checked on its own question; here only the reason counts.
        match eligibility.validate(&reason, Some(eligibility.default_duration)) {
            Ok(_) => return Ok(reason),
            Err(error) => console.say(&format!("{error}; try again")).await,
        }
    }
    Err(Ended::saying(
        "no acceptable reason given; activation cancelled",
    ))
}

async fn ask_duration(eligibility: &Eligibility, console: &mut Console) -> Result<Duration, Ended> {
    let prompt = format!(
        "Duration [{}, at most {}]: ",
        humantime::format_duration(eligibility.default_duration),
        humantime::format_duration(eligibility.max_duration)
    );
    for _ in 0..ATTEMPTS {
        let answer = console
            .ask(&prompt, QUESTION_TIMEOUT)
            .await
            .map_err(Ended::from_abort)?;
        let duration = if answer.is_empty() {
            eligibility.default_duration
        } else {
            match humantime::parse_duration(&answer) {
                Ok(duration) => duration,
                Err(_) => {
                    console
                        .say(&format!(
                            "{answer:?} is not a duration (say 30m, 1h, 2h30m); try again"
                        ))
                        .await;
                    continue;
                }
            }
        };
        if duration.is_zero() || duration > eligibility.max_duration {
            console
                .say(&format!(
                    "choose more than zero and at most {}; try again",
                    humantime::format_duration(eligibility.max_duration)
                ))
                .await;
            continue;
        }
        return Ok(duration);
    }
    Err(Ended::saying(
        "no acceptable duration given; activation cancelled",
    ))
}

/// Waits (up to `approval_wait`) for request `id` to be decided — wherever it is decided:
/// the change feed brings the decision. Ctrl-C withdraws it.
async fn wait_for_approval(
    services: &Services,
    user: &str,
    id: u64,
    eligibility: &Eligibility,
    console: &mut Console,
) -> Result<(), Ended> {
    let wait = services.config.access.approval_wait;
    // Armed before the user is told: the patience counts from what they read.
    let mut deadline = services.clock.sleep(wait);
    console
        .say(&format!(
            "waiting for approval of request #{id} by {}… (up to {}; Ctrl-C withdraws the request)",
            eligibility.approvers.join(", "),
            humantime::format_duration(wait)
        ))
        .await;
    let decided = jit_ops::decided(services, id);
    tokio::pin!(decided);
    let state = tokio::select! {
        state = &mut decided => state.map_err(|error| Ended::saying(error.to_string()))?,
        abort = console.interrupted() => {
            if matches!(abort, Abort::Interrupted | Abort::EndOfInput) {
                return Err(match jit_ops::cancel(services, id, user).await {
                    Ok(_) => Ended::saying(format!("request #{id} withdrawn")),
                    Err(error) => Ended::saying(error.to_string()),
                });
            }
            return Err(Ended::from_abort(abort));
        }
        () = &mut deadline => {
            let lapses = jit_ops::request(services, id)
                .await
                .map(|r| clock(r.expires_at))
                .unwrap_or_default();
            return Err(Ended::saying(format!(
                "no decision on request #{id} within {}; it stays open until {lapses} — \
                 connect again once it is approved",
                humantime::format_duration(wait)
            )));
        }
    };
    match state {
        RequestState::Approved { grant } => {
            let granted = match grant {
                Some(grant) => jit_ops::grant(services, grant)
                    .await
                    .map(|g| {
                        format!(
                            " until {} (grant #{})",
                            clock(g.grant.expires_at),
                            g.grant.id
                        )
                    })
                    .unwrap_or_default(),
                None => String::new(),
            };
            console
                .say(&format!("request #{id} approved; access granted{granted}"))
                .await;
            Ok(())
        }
        other => Err(Ended::saying(state_in_words(id, &other))),
    }
}

/// Checks the new grant with the policy, starts the session on it and opens the upstream
/// channel. The error is the user's message.
async fn connect(
    services: &Arc<Services>,
    session: &Arc<SessionShared>,
    pending: &PendingActivation,
) -> Result<russh::Channel<client::Msg>, String> {
    let user = session.user().unwrap_or_default();
    let target = &pending.eligibility.target;
    let now = services.clock.now();
    let authorized = super::authorize::target(services, user, target, now)
        .await
        .map_err(|e| AccessError::from(e).to_string())?
        .map_err(|denied| format!("no access to {target}: {denied}"))?;
    let mut target_route = route::authorize(services, session, authorized.clone())?;
    // The dialog runs on a terminal, and the session it opens is that terminal.
    target_route.connect_for(true);
    let upstream = target_route.upstream().await?;
    let channel = upstream
        .open_session_channel()
        .await
        .map_err(|e| format!("cannot open a channel on {target}: {e}"))?;
    let _ = pending.activated.set((authorized, upstream));
    Ok(channel)
}

/// Relays the channel to the target: replays the terminal, environment and start request,
/// then passes the client's events on until the channel closes.
#[allow(clippy::too_many_arguments)]
async fn relay(
    services: Arc<Services>,
    session: Arc<SessionShared>,
    writer: ChannelWriteHalf<Msg>,
    mut input: mpsc::Receiver<ClientEvent>,
    handle: server::Handle,
    id: ChannelId,
    pty: PtyParams,
    env: Vec<(String, String)>,
    start: Start,
    upstream: russh::Channel<client::Msg>,
) {
    let mut relay = relay::open_relay(
        services.clone(),
        session.clone(),
        writer,
        handle.clone(),
        upstream,
    );
    replay(&mut relay, Some(&pty), &env).await;
    let refusal = match relay.start(&services, &session, start).await {
        StartOutcome::Relayed(true) => None,
        StartOutcome::Relayed(false) => {
            Some(("the target refused to start the session".to_owned(), 1))
        }
        StartOutcome::Refused { message, status } => Some((message, status)),
    };
    if let Some((message, status)) = refusal {
        let _ = handle
            .data(id, crate::bastion::notice::message(&message, true).bytes)
            .await;
        let _ = handle.exit_status_request(id, status).await;
        relay.close().await;
        return;
    }
    while let Some(event) = input.recv().await {
        match event {
            ClientEvent::Data(data) => {
                if relay.data(&data).await.is_err() {
                    session
                        .control
                        .end(EndReason::Overflow(crate::relay::flow::HARD_CAP));
                    return;
                }
            }
            ClientEvent::Eof => relay.eof().await,
            ClientEvent::Close => {
                relay.close().await;
                return;
            }
            ClientEvent::WindowChange {
                cols,
                rows,
                pix_width,
                pix_height,
            } => relay.window_change(cols, rows, pix_width, pix_height).await,
            ClientEvent::Signal(signal) => relay.signal(signal).await,
        }
    }
    relay.close().await;
}

/// Replays on a new upstream channel the terminal and environment the client asked for
/// before it was connected.
pub(super) async fn replay(
    relay: &mut relay::ChannelRelay,
    pty: Option<&PtyParams>,
    env: &[(String, String)],
) {
    if let Some(pty) = pty
        && !relay
            .pty(
                &pty.term,
                pty.cols,
                pty.rows,
                pty.pix_width,
                pty.pix_height,
                &pty.modes,
            )
            .await
    {
        tracing::warn!("the target refused the terminal");
    }
    for (name, value) in env {
        relay.env(name, value).await;
    }
}

/// Spawns the dialog as one of the session's tasks; `done` is cancelled when it ends (the
/// channel is closed by then).
pub fn spawn(dialog: Dialog, done: tokio_util::sync::CancellationToken) {
    let session = dialog.session.clone();
    session.tasks.spawn(
        async move {
            run(dialog).await;
            done.cancel();
        }
        .instrument(session.span.clone()),
    );
}
