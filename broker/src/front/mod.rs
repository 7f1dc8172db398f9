//! The front door: portcullis as an SSH server for the admins' stock `ssh` clients.
//!
//! * [`FrontHandler`]: the russh `Handler`, a thin adapter: authentication questions go to
//!   [`auth::Authenticator`], routing to [`crate::session::route`], channel traffic to
//!   [`crate::session::channel`]. Its state is the connection's [`Route`] and its channels.
//! * [`connection`]: one connection's lifetime, from accept to `session.end`.
//! * [`config`]: the SSH server settings.

pub mod auth;
pub mod config;
pub mod connection;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use russh::keys::Certificate;
use russh::server::{self, Auth, ChannelOpenHandle, Msg, Response, Session};
use russh::{
    Channel, ChannelId, ChannelOpenFailure, ChannelWriteHalf, MethodKind, MethodSet, Pty, Sig,
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::services::Services;
use crate::session::channel::{self, ChannelRelay, Start, StartOutcome};
use crate::session::console::{ClientEvent, Console, EVENT_QUEUE, PtyParams};
use crate::session::login;
use crate::session::menu::Origin;
use crate::session::route::{self, Route, TargetRoute};
use crate::session::{
    EndReason, Identity, SessionShared, activation, menu, notice, prompt, spectator,
};
use crate::watch::Follower;
use auth::{Authenticated, Authenticator, KbdPrompts, Step};

/// A channel of this connection.
enum Slot {
    /// Relayed to an upstream channel.
    Relay(ChannelRelay),
    /// Answered by the bastion itself.
    Local(LocalChannel),
}

/// A channel the bastion answers itself: the menu, an activation (`message: None`) or a
/// refusal.
struct LocalChannel {
    pty: Option<PtyParams>,
    /// Environment sent by the client, replayed upstream after an activation.
    env: Vec<(String, String)>,
    message: Option<String>,
    /// For streaming answers and conversations; taken when one starts.
    writer: Option<ChannelWriteHalf<Msg>>,
    /// Stops a running `watch`.
    watching: Option<CancellationToken>,
    /// The client's events, for a conversation (activation, prompt) on this channel.
    input: Option<mpsc::Sender<ClientEvent>>,
}

/// Session channels one connection may have open at once (sshd's MaxSessions default):
/// each may hold a terminal emulator, so their number is bounded like their size.
const MAX_CHANNELS: usize = 10;
/// Environment variables kept per channel at most (more are dropped).
const MAX_ENV: usize = 64;
/// The longest environment value relayed (a locale name is a few dozen bytes).
const MAX_ENV_VALUE: usize = 1024;

/// Whether a client's `SetEnv`/`SendEnv` variable may reach the upstream: its name matches
/// `[server] accept_env` and its value is short and printable.
fn accepts_env(accepted: &[String], name: &str, value: &str) -> bool {
    accepted
        .iter()
        .any(|pattern| portcullis_config::glob::matches(pattern, name))
        && value.len() <= MAX_ENV_VALUE
        && !value.chars().any(char::is_control)
}

impl LocalChannel {
    fn new(channel: Channel<Msg>, message: Option<String>) -> Self {
        let (_, writer) = channel.split();
        Self {
            pty: None,
            env: Vec::new(),
            message,
            writer: Some(writer),
            watching: None,
            input: None,
        }
    }

    /// Starts a conversation on this channel: takes its writer, and from now on passes the
    /// client's events to the returned console.
    fn converse(&mut self, session: &Arc<SessionShared>) -> Option<Console> {
        let writer = self.writer.take()?;
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        self.input = Some(tx);
        let pty = self.pty.clone().unwrap_or_else(|| PtyParams {
            term: "dumb".into(),
            cols: 80,
            rows: 24,
            pix_width: 0,
            pix_height: 0,
            modes: Vec::new(),
        });
        Some(Console::new(writer, rx, session.clone(), pty))
    }

    /// Passes an event to the conversation, if one runs.
    async fn pass(&self, event: ClientEvent) {
        if let Some(input) = &self.input {
            let _ = input.send(event).await;
        }
    }
}

/// The russh handler for one client connection.
pub struct FrontHandler {
    services: Arc<Services>,
    session: Arc<SessionShared>,
    auth: Authenticator,
    kbd_prompts: Option<KbdPrompts>,
    accepted: Option<(login::Login, Authenticated)>,
    route: Route,
    channels: HashMap<ChannelId, Slot>,
}

/// How the client reached the bastion, for commands it is told to run.
fn origin_of(services: &Services, session: &SessionShared) -> Origin {
    let local = session
        .local
        .get()
        .copied()
        .or_else(|| services.listening.get().copied())
        .unwrap_or(services.config.server.listen);
    Origin {
        host: local.ip().to_string(),
        port: local.port(),
        command: services.config.server.connect_command.clone(),
    }
}

/// The methods offered to clients.
pub fn offered_methods() -> MethodSet {
    MethodSet::from(
        &[
            MethodKind::PublicKey,
            MethodKind::KeyboardInteractive,
            MethodKind::Password,
        ][..],
    )
}

impl FrontHandler {
    /// A handler for a newly accepted connection.
    pub fn new(services: Arc<Services>, session: Arc<SessionShared>) -> Self {
        Self {
            auth: Authenticator::new(services.clone(), session.clone()),
            services,
            session,
            kbd_prompts: None,
            accepted: None,
            route: Route::Pending,
            channels: HashMap::new(),
        }
    }

    fn answer(&mut self, raw_login: &str, step: Step) -> Auth {
        match step {
            Step::Continue(auth) => auth,
            Step::Refused => Auth::reject(),
            Step::Accepted(who) => {
                self.accepted = Some((login::parse(raw_login), who));
                Auth::Accept
            }
        }
    }

    /// Writes `text` and ends a channel the bastion answers itself.
    fn finish_local(
        session: &mut Session,
        id: ChannelId,
        text: notice::Text,
        status: u32,
    ) -> Result<(), russh::Error> {
        match text.ext {
            Some(ext) => session.extended_data(id, ext, text.bytes)?,
            None => session.data(id, text.bytes)?,
        }
        session.exit_status_request(id, status)?;
        session.eof(id)?;
        session.close(id)
    }

    /// A shell, exec or subsystem request.
    async fn start(
        &mut self,
        id: ChannelId,
        start: Start,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        match self.channels.get_mut(&id) {
            Some(Slot::Relay(relay)) => {
                match relay.start(&self.services, &self.session, start).await {
                    StartOutcome::Relayed(true) => session.channel_success(id),
                    StartOutcome::Relayed(false) => session.channel_failure(id),
                    StartOutcome::Refused { message, status } => {
                        let pty = relay.has_pty();
                        session.channel_success(id)?;
                        Self::finish_local(session, id, notice::message(&message, pty), status)
                    }
                }
            }
            Some(Slot::Local(local)) => {
                let pty = local.pty.is_some();
                session.channel_success(id)?;
                if let Some(message) = &local.message {
                    return Self::finish_local(session, id, notice::message(message, pty), 1);
                }
                let user = self.session.user().unwrap_or_default().to_owned();
                let origin = origin_of(&self.services, &self.session);
                match &self.route {
                    Route::Activation(pending) => {
                        let pending = pending.clone();
                        let handle = session.handle();
                        let text = match (&start, pty) {
                            (Start::Shell | Start::Exec(_), true) if pending.claim() => {
                                let env = std::mem::take(&mut local.env);
                                let Some(console) = local.converse(&self.session) else {
                                    return session.channel_failure(id);
                                };
                                activation::spawn(activation::Dialog {
                                    services: self.services.clone(),
                                    session: self.session.clone(),
                                    pending,
                                    console,
                                    handle,
                                    id,
                                    env,
                                    start,
                                });
                                return Ok(());
                            }
                            (Start::Shell | Start::Exec(_), true) => {
                                "an activation is already running on another channel of this connection".to_owned()
                            }
                            _ => {
                                activation::instructions(
                                    &self.services,
                                    &user,
                                    &origin,
                                    &pending.eligibility,
                                )
                                .await
                            }
                        };
                        Self::finish_local(session, id, notice::message(&text, pty), 1)
                    }
                    _ => self.start_menu(id, start, session, &user, origin).await,
                }
            }
            None => session.channel_failure(id),
        }
    }

    /// A shell, command or subsystem on a login without a target.
    async fn start_menu(
        &mut self,
        id: ChannelId,
        start: Start,
        session: &mut Session,
        user: &str,
        origin: Origin,
    ) -> Result<(), russh::Error> {
        let Some(Slot::Local(local)) = self.channels.get_mut(&id) else {
            return session.channel_failure(id);
        };
        let pty = local.pty.is_some();
        let command = match start {
            Start::Subsystem(name) => {
                let text =
                    format!("the bastion itself has no {name} subsystem; log in as USER+TARGET");
                return Self::finish_local(session, id, notice::message(&text, pty), 1);
            }
            Start::Shell if pty => {
                let Some(console) = local.converse(&self.session) else {
                    return session.channel_failure(id);
                };
                let span = self.session.span.clone();
                self.session.tasks.spawn(
                    prompt::run(self.services.clone(), user.to_owned(), origin, console)
                        .instrument(span),
                );
                return Ok(());
            }
            Start::Shell => Ok(menu::Command::Targets),
            Start::Exec(line) => menu::parse(&line),
        };
        let command = match command {
            Ok(command) => command,
            Err(message) => {
                return Self::finish_local(session, id, notice::message(&message, pty), 2);
            }
        };
        if let menu::Command::Watch(watched) = &command {
            return match self.start_watch(user, watched, id).await {
                Ok(()) => Ok(()),
                Err(message) => Self::finish_local(session, id, notice::message(&message, pty), 1),
            };
        }
        let reply = menu::run(&self.services, user, &origin, &command).await;
        let text = if reply.is_error() {
            notice::message(&reply.text, pty)
        } else {
            notice::output(&reply.text, pty)
        };
        Self::finish_local(session, id, text, reply.status)
    }

    /// `watch ID`: streams another live session onto this channel. The error is for the user.
    async fn start_watch(
        &mut self,
        user: &str,
        watched: &str,
        id: ChannelId,
    ) -> Result<(), String> {
        if !self.services.policy.may_watch(user) {
            return Err("you may not watch sessions (no role of yours has can_watch)".into());
        }
        let target = self
            .services
            .registry
            .find(watched)
            .ok_or_else(|| format!("no live session {watched}"))?;
        let follower = Follower::start(&target).await.map_err(|e| e.to_string())?;
        let Some(Slot::Local(local)) = self.channels.get_mut(&id) else {
            return Err("the channel is gone".into());
        };
        let writer = local
            .writer
            .take()
            .ok_or("this channel is already in use")?;
        let stop = CancellationToken::new();
        local.watching = Some(stop.clone());
        self.services.audit.record(
            target
                .audit("session.watched")
                .with("by", format!("ssh:{user}"))
                .with("watcher_session", &self.session.id),
        );
        let pty = local.pty.is_some();
        let span = self.session.span.clone();
        self.session.tasks.spawn(
            spectator::run(follower, writer, pty, target, self.session.clone(), stop)
                .instrument(span),
        );
        Ok(())
    }

    /// Refuses a command or subsystem the bastion cannot check as the upstream would run it
    /// (a NUL byte, a control character, invalid UTF-8): audited, told, never relayed.
    fn refuse_start(
        &mut self,
        id: ChannelId,
        start: Start,
        problem: &str,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        let pty = match self.channels.get(&id) {
            Some(Slot::Relay(relay)) => relay.has_pty(),
            Some(Slot::Local(local)) => local.pty.is_some(),
            None => return session.channel_failure(id),
        };
        let (kind, line) = match &start {
            Start::Exec(command) => ("exec", command.as_str()),
            Start::Subsystem(name) => ("subsystem", name.as_str()),
            Start::Shell => ("shell", ""),
        };
        self.services.audit.record(
            self.session
                .audit("command")
                .with("channel", id.to_string())
                .with("kind", kind)
                .with("line", line)
                .with("action", "deny")
                .with("outcome", "refused")
                .with("reason", problem),
        );
        tracing::warn!(parent: &self.session.span, kind, line = %crate::text::Shown(line), problem, "malformed command refused");
        session.channel_success(id)?;
        let text = format!("not run: {problem}");
        Self::finish_local(
            session,
            id,
            notice::message(&text, pty),
            channel::BLOCKED_STATUS,
        )
    }

    fn deny_forwarding(&self, kind: &str, detail: Option<String>) {
        self.services.audit.record(
            self.session
                .audit("forwarding.denied")
                .with("kind", kind)
                .with("detail", detail),
        );
        tracing::info!(parent: &self.session.span, kind, "forwarding refused");
    }
}

impl server::Handler for FrontHandler {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        let login = login::parse(user);
        let step = self.auth.publickey_offered(&login.user, offer.public_key);
        Ok(self.answer(user, step))
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let login = login::parse(user);
        let step = self.auth.publickey(&login.user, key.public_key);
        Ok(self.answer(user, step))
    }

    async fn auth_openssh_certificate(
        &mut self,
        user: &str,
        certificate: &Certificate,
    ) -> Result<Auth, Self::Error> {
        let login = login::parse(user);
        let step = self.auth.certificate(&login.user, certificate);
        Ok(self.answer(user, step))
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let login = login::parse(user);
        let step = self.auth.password(&login.user, password).await;
        Ok(self.answer(user, step))
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        let login = login::parse(user);
        let Some(response) = response else {
            return Ok(match self.auth.keyboard_interactive_prompts(&login.user) {
                Ok(prompts) => {
                    self.kbd_prompts = Some(prompts);
                    let mut list = vec![(Cow::Borrowed("Password: "), false)];
                    if prompts == KbdPrompts::PasswordAndCode {
                        list.push((Cow::Borrowed("Verification code: "), true));
                    }
                    Auth::Partial {
                        name: Cow::Borrowed("portcullis"),
                        instructions: Cow::Borrowed(""),
                        prompts: Cow::Owned(list),
                    }
                }
                Err(step) => self.answer(user, step),
            });
        };
        let Some(prompts) = self.kbd_prompts.take() else {
            return Ok(Auth::reject());
        };
        let answers: Vec<String> = response
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .collect();
        let step = self
            .auth
            .keyboard_interactive_answers(&login.user, prompts, answers)
            .await;
        Ok(self.answer(user, step))
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        let Some((login, who)) = self.accepted.take() else {
            return Err(russh::Error::NotAuthenticated);
        };
        // The pre-login slot is traded for a session permit: logged-in sessions have their
        // own budget, which connections that never log in cannot touch.
        let Some(permit) = self.services.admission.session_permit() else {
            tracing::warn!(parent: &self.session.span, user = %who.user, "session limit reached; login refused");
            session.disconnect(
                russh::Disconnect::TooManyConnections,
                "portcullis: the bastion is serving as many sessions as it may (server.max_connections); try again later",
                "en",
            )?;
            return Ok(());
        };
        self.session.admitted(permit);
        let target = match &login.destination {
            login::Destination::Target(target) => Some(target.clone()),
            _ => None,
        };
        let _ = self.session.identity.set(Identity {
            user: who.user.clone(),
            target,
            method: who.method.to_owned(),
        });
        self.session.span.record("user", who.user.as_str());
        if let Some(target) = self.session.target() {
            self.session.span.record("target", target);
        }
        self.services.audit.record(
            self.session
                .audit("auth.success")
                .with("method", who.method),
        );
        self.services.audit.record(
            self.session
                .audit("session.start")
                .with("method", who.method),
        );
        self.services.registry.register(self.session.clone());
        crate::metrics::Metrics::count(&self.services.metrics.sessions_total);
        self.route = route::decide(&self.services, &self.session, &login).await;
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let id = channel.id();
        // russh forgets a channel the bastion closed first, and never reports the client's
        // answering close: such slots are dropped here (russh knows no packet size for them).
        self.channels
            .retain(|open, _| session.max_packet_size(open) > 0);
        if self.channels.len() >= MAX_CHANNELS {
            tracing::info!(parent: &self.session.span, "channel refused: {MAX_CHANNELS} are open already");
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        }
        // Once a channel's activation has connected, later channels go straight there.
        if let Route::Activation(pending) = &self.route
            && let Some((authorization, upstream)) = pending.activated.get()
        {
            self.route = Route::Target(TargetRoute::ready(authorization.clone(), upstream.clone()));
        }
        let slot = match &mut self.route {
            Route::Pending => {
                reply
                    .reject(ChannelOpenFailure::AdministrativelyProhibited)
                    .await;
                return Ok(());
            }
            Route::Menu { .. } | Route::Activation(_) => {
                Slot::Local(LocalChannel::new(channel, None))
            }
            Route::Refused { message } => {
                Slot::Local(LocalChannel::new(channel, Some(message.clone())))
            }
            Route::Target(target) => {
                let opened = match target.upstream().await {
                    Ok(upstream) => upstream.open_session_channel().await.map_err(|e| {
                        format!(
                            "cannot open a channel on {}: {e}",
                            target.authorization.target()
                        )
                    }),
                    Err(message) => Err(message),
                };
                match opened {
                    Ok(upstream_channel) => Slot::Relay(channel::open_relay(
                        self.services.clone(),
                        self.session.clone(),
                        channel.split().1,
                        session.handle(),
                        upstream_channel,
                    )),
                    Err(message) => Slot::Local(LocalChannel::new(channel, Some(message))),
                }
            }
        };
        self.channels.insert(id, slot);
        reply.accept().await;
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.deny_forwarding(
            "direct-tcpip",
            Some(format!("{host_to_connect}:{port_to_connect}")),
        );
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.deny_forwarding("direct-streamlocal", Some(socket_path.to_owned()));
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        self.deny_forwarding("tcpip-forward", Some(format!("{address}:{port}")));
        Ok(false)
    }

    async fn streamlocal_forward(
        &mut self,
        socket_path: &str,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        self.deny_forwarding("streamlocal-forward", Some(socket_path.to_owned()));
        Ok(false)
    }

    async fn agent_request(
        &mut self,
        _channel: ChannelId,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        self.deny_forwarding("agent", None);
        Ok(false)
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.deny_forwarding("x11", None);
        session.channel_failure(channel)
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        col_width: u32,
        row_height: u32,
        pix_width: u32,
        pix_height: u32,
        modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.channels.get_mut(&channel) {
            Some(Slot::Relay(relay)) => {
                if relay
                    .pty(term, col_width, row_height, pix_width, pix_height, modes)
                    .await
                {
                    session.channel_success(channel)
                } else {
                    session.channel_failure(channel)
                }
            }
            Some(Slot::Local(local)) => {
                local.pty = Some(PtyParams {
                    term: term.to_owned(),
                    cols: col_width,
                    rows: row_height,
                    pix_width,
                    pix_height,
                    modes: modes.to_vec(),
                });
                session.channel_success(channel)
            }
            None => session.channel_failure(channel),
        }
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        variable_name: &str,
        variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if !accepts_env(
            &self.services.config.server.accept_env,
            variable_name,
            variable_value,
        ) {
            tracing::info!(
                parent: &self.session.span,
                name = %crate::text::Shown(variable_name),
                "environment variable not accepted (see [server] accept_env)"
            );
            return session.channel_failure(channel);
        }
        match self.channels.get_mut(&channel) {
            Some(Slot::Relay(relay)) => relay.env(variable_name, variable_value).await,
            Some(Slot::Local(local)) if local.env.len() < MAX_ENV => local
                .env
                .push((variable_name.to_owned(), variable_value.to_owned())),
            _ => {}
        }
        session.channel_success(channel)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.start(channel, Start::Shell, session).await
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let command = String::from_utf8_lossy(data).into_owned();
        if let Some(problem) = crate::text::command_problem(data) {
            return self.refuse_start(channel, Start::Exec(command), &problem, session);
        }
        self.start(channel, Start::Exec(command), session).await
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let start = Start::Subsystem(name.to_owned());
        if let Some(problem) = crate::text::command_problem(name.as_bytes()) {
            return self.refuse_start(channel, start, &problem, session);
        }
        self.start(channel, start, session).await
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        col_width: u32,
        row_height: u32,
        pix_width: u32,
        pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.channels.get(&channel) {
            Some(Slot::Relay(relay)) => {
                relay
                    .window_change(col_width, row_height, pix_width, pix_height)
                    .await
            }
            Some(Slot::Local(local)) => {
                local
                    .pass(ClientEvent::WindowChange {
                        cols: col_width,
                        rows: row_height,
                        pix_width,
                        pix_height,
                    })
                    .await
            }
            None => {}
        }
        Ok(())
    }

    async fn signal(
        &mut self,
        channel: ChannelId,
        signal: Sig,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.channels.get(&channel) {
            Some(Slot::Relay(relay)) => relay.signal(signal).await,
            Some(Slot::Local(local)) => local.pass(ClientEvent::Signal(signal)).await,
            None => {}
        }
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.channels.get(&channel) {
            Some(Slot::Relay(relay)) if relay.data(data).await.is_err() => {
                tracing::warn!(parent: &self.session.span, "client queued too much input without reading its output");
                self.session
                    .control
                    .end(EndReason::Overflow(crate::session::channel::flow::HARD_CAP));
            }
            // A watcher's keys: q or Ctrl-C leaves, anything else is ignored (read-only).
            Some(Slot::Local(LocalChannel {
                watching: Some(stop),
                ..
            })) if data.iter().any(|&b| b == b'q' || b == 0x03) => stop.cancel(),
            Some(Slot::Local(local)) => {
                local
                    .pass(ClientEvent::Data(Bytes::copy_from_slice(data)))
                    .await
            }
            _ => {}
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.channels.get(&channel) {
            Some(Slot::Relay(relay)) => relay.eof().await,
            Some(Slot::Local(local)) => local.pass(ClientEvent::Eof).await,
            None => {}
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.channels.remove(&channel) {
            Some(Slot::Relay(relay)) => relay.close().await,
            Some(Slot::Local(local)) => {
                if let Some(stop) = &local.watching {
                    stop.cancel();
                }
                local.pass(ClientEvent::Close).await;
            }
            None => {}
        }
        Ok(())
    }
}
