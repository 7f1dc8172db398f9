//! The session's owner: one task per connection that holds all of its state — its
//! [`Phase`] (authenticating, authorized with a [`Route`], relaying to a connected upstream,
//! closing) and its channels (relayed, or answered by the bastion) — and acts on the front
//! door's [`Event`]s one at a time. At login it indexes the session and starts its
//! [`guard`], which re-runs the policy check on every change that matters to the session
//! and ends it on a kill. Closing is `SessionControl::end` (anyone may ask, the first
//! reason wins); the owner then closes its phase, and once the connection task has said
//! goodbye to the client, [`super::finish`]es the session from that state.
//!
//! ```text
//! russh callbacks ──Event (bounded)──▶ Owner::run ──▶ route / relay / bastion apps
//! state change feed ──▶ guard::run ──▶ SessionControl::end (locked, grant ended, killed)
//! SessionControl ended ──▶ Owner: Phase::Closing ──(connection over)──▶ finish
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use russh::server::{Handle, Msg};
use russh::{Channel, ChannelId, ChannelOpenFailure, ChannelWriteHalf, Sig};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::events::{Event, StartReply};
use super::login::Login;
use super::phase::Phase;
use super::route::{self, Route};
use super::{activation, guard};
use crate::bastion::console::{ClientEvent, Console, PtyParams};
use crate::bastion::menu::Origin;
use crate::bastion::{menu, notice, prompt, spectator};
use crate::live::{EndReason, SessionShared};
use crate::relay::{self, ChannelRelay, Start, StartOutcome};
use crate::services::Services;
use crate::watch::Follower;

/// Session channels one connection may have open at once (sshd's MaxSessions default):
/// each may hold a terminal emulator, so their number is bounded like their size.
const MAX_CHANNELS: usize = 10;
/// Environment variables kept per channel at most (more are dropped).
const MAX_ENV: usize = 64;

/// A channel of this connection.
enum Slot {
    /// Relayed to an upstream channel.
    Relay(ChannelRelay),
    /// Answered by the bastion itself.
    Local(LocalChannel),
}

impl Slot {
    /// Whether the bastion has closed the channel (russh then never reports the client's
    /// answering close, so this is how its slot is known to be free).
    fn is_closed(&self) -> bool {
        match self {
            Slot::Relay(relay) => relay.is_closed(),
            Slot::Local(local) => local.done.is_cancelled(),
        }
    }
}

/// A channel the bastion answers itself: the menu, an activation (`message: None`) or a
/// refusal; or a channel of a certificate target waiting for its start (`deferred`), which
/// then becomes a relay.
struct LocalChannel {
    /// Relayed once it starts: its terminal and environment are replayed upstream then.
    deferred: bool,
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
    /// Cancelled once the bastion has closed the channel.
    done: CancellationToken,
}

impl LocalChannel {
    fn new(channel: Channel<Msg>, message: Option<String>) -> Self {
        let (_, writer) = channel.split();
        Self {
            deferred: false,
            pty: None,
            env: Vec::new(),
            message,
            writer: Some(writer),
            watching: None,
            input: None,
            done: CancellationToken::new(),
        }
    }

    /// Starts a conversation on this channel: takes its writer, and from now on passes the
    /// client's events to the returned console.
    fn converse(&mut self, session: &Arc<SessionShared>) -> Option<Console> {
        let writer = self.writer.take()?;
        let (tx, rx) = mpsc::channel(crate::bastion::console::EVENT_QUEUE);
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

    /// An answer given at once: the channel is closed by the front door right after.
    fn answer(&self, text: notice::Text, status: u32) -> StartReply {
        self.done.cancel();
        StartReply::Answer { text, status }
    }
}

/// The owner of one connection's session.
pub struct Owner {
    services: Arc<Services>,
    session: Arc<SessionShared>,
    phase: Phase,
    channels: HashMap<ChannelId, Slot>,
}

impl Owner {
    /// The owner of `session`, which has not logged in yet.
    pub fn new(services: Arc<Services>, session: Arc<SessionShared>) -> Self {
        Self {
            services,
            session,
            phase: Phase::Authenticating,
            channels: HashMap::new(),
        }
    }

    /// Acts on events until the front door is gone or the session is ending; then, once the
    /// connection task has said goodbye to the client (`connection_over`), finishes the
    /// session.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<Event>,
        connection_over: CancellationToken,
    ) {
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => self.on_event(event).await,
                    // The front door is gone: the client's connection is over.
                    None => {
                        self.session.control.end(EndReason::ClientClosed);
                        break;
                    }
                },
                () = self.session.control.ended() => break,
            }
        }
        drop(events);
        let reason = self
            .session
            .control
            .reason()
            .unwrap_or(EndReason::ClientClosed);
        tracing::debug!(%reason, "closing");
        let closing = self.phase.close(reason);
        // The channels go now: their tasks end once their queues close, which the
        // connection task's drain waits for.
        self.channels.clear();
        connection_over.cancelled().await;
        super::finish::finish(&self.services, &self.session, closing).await;
    }

    async fn on_event(&mut self, event: Event) {
        match event {
            Event::LoggedIn {
                login,
                handle,
                done,
            } => {
                self.logged_in(&login, handle).await;
                let _ = done.send(());
            }
            Event::ChannelOpen { channel, reply } => {
                let answer = self.open(channel).await;
                let _ = reply.send(answer);
            }
            Event::Pty {
                channel,
                params,
                reply,
            } => {
                let _ = reply.send(self.pty(channel, params).await);
            }
            Event::Env {
                channel,
                name,
                value,
            } => self.env(channel, name, value).await,
            Event::Start {
                channel,
                start,
                problem,
                reply,
            } => {
                let answer = match problem {
                    Some(problem) => self.refuse_start(channel, &start, &problem),
                    None => self.start(channel, start).await,
                };
                let _ = reply.send(answer);
            }
            Event::WindowChange { channel, size } => self.window_change(channel, size).await,
            Event::Signal { channel, signal } => self.signal(channel, signal).await,
            Event::Data {
                channel,
                data,
                room,
            } => {
                self.data(channel, data).await;
                let _ = room.send(());
            }
            Event::Eof { channel } => self.eof(channel).await,
            Event::Close { channel } => self.close(channel).await,
        }
    }

    /// Routes the authenticated connection (the policy decides) and registers it as live.
    async fn logged_in(&mut self, login: &Login, handle: Handle) {
        if !matches!(self.phase, Phase::Authenticating) {
            tracing::warn!(parent: &self.session.span, "a second login on one connection ignored");
            return;
        }
        self.services.registry.register(self.session.clone());
        super::index::opened(&self.services, &self.session).await;
        crate::metrics::Metrics::count(&self.services.metrics.sessions_total);
        // Subscribed before the decision, so a change made while deciding is not missed.
        let changes = self.services.state.changes();
        let route = route::decide(&self.services, &self.session, login).await;
        self.phase = Phase::Authorized { handle, route };
        // Even a refused session has one: it can be killed like any other.
        self.session.tasks.spawn(
            guard::run(self.services.clone(), self.session.clone(), changes)
                .instrument(self.session.span.clone()),
        );
    }

    /// Moves an authorized target on to relaying once its upstream is connected (waiting for
    /// the connection that started at login), and an activation once one of the channels
    /// has made it.
    async fn advance(&mut self) {
        let Phase::Authorized { handle, route } = &mut self.phase else {
            return;
        };
        let connected = match route {
            Route::Target(target) => match target.upstream().await {
                Ok(upstream) => Some((target.authorized.clone(), upstream)),
                Err(_) => None,
            },
            Route::Activation(pending) => pending.activated.get().cloned(),
            Route::Menu { .. } | Route::Refused { .. } => None,
        };
        if let Some((authorized, upstream)) = connected {
            self.phase = Phase::Relaying {
                handle: handle.clone(),
                authorized: Box::new(authorized),
                upstream,
            };
        }
    }

    /// How the client reached the bastion, for commands it is told to run.
    fn origin(&self) -> Origin {
        let local = self
            .session
            .local
            .get()
            .copied()
            .or_else(|| self.services.listening.get().copied())
            .unwrap_or(self.services.config.server.listen);
        Origin {
            host: local.ip().to_string(),
            port: local.port(),
            command: self.services.config.server.connect_command.clone(),
            client: self.session.client.ip(),
        }
    }

    async fn open(&mut self, channel: Channel<Msg>) -> Result<(), ChannelOpenFailure> {
        let id = channel.id();
        self.channels.retain(|_, slot| !slot.is_closed());
        if self.channels.len() >= MAX_CHANNELS {
            tracing::info!(parent: &self.session.span, "channel refused: {MAX_CHANNELS} are open already");
            return Err(ChannelOpenFailure::ResourceShortage);
        }
        self.advance().await;
        let slot = match &self.phase {
            Phase::Authenticating | Phase::Closing(_) => {
                return Err(ChannelOpenFailure::AdministrativelyProhibited);
            }
            Phase::Authorized {
                route: Route::Menu { .. } | Route::Activation(_),
                ..
            } => Slot::Local(LocalChannel::new(channel, None)),
            Phase::Authorized {
                route: Route::Refused { message },
                ..
            } => Slot::Local(LocalChannel::new(channel, Some(message.clone()))),
            // A certificate target: the login waits for this channel's start.
            Phase::Authorized {
                route: Route::Target(target),
                ..
            } if target.waits_for_start() => {
                let mut local = LocalChannel::new(channel, None);
                local.deferred = true;
                Slot::Local(local)
            }
            // The upstream could not be reached: the channel says why.
            Phase::Authorized {
                route: Route::Target(target),
                ..
            } => {
                let message = target
                    .failure()
                    .unwrap_or("internal error: upstream still connecting")
                    .to_owned();
                Slot::Local(LocalChannel::new(channel, Some(message)))
            }
            Phase::Relaying {
                handle,
                authorized,
                upstream,
            } => match upstream.open_session_channel().await {
                Ok(upstream_channel) => Slot::Relay(relay::open_relay(
                    self.services.clone(),
                    self.session.clone(),
                    channel.split().1,
                    handle.clone(),
                    upstream_channel,
                )),
                Err(e) => Slot::Local(LocalChannel::new(
                    channel,
                    Some(format!(
                        "cannot open a channel on {}: {e}",
                        authorized.target().name
                    )),
                )),
            },
        };
        self.channels.insert(id, slot);
        Ok(())
    }

    async fn pty(&mut self, channel: ChannelId, params: PtyParams) -> bool {
        match self.channels.get_mut(&channel) {
            Some(Slot::Relay(relay)) => {
                relay
                    .pty(
                        &params.term,
                        params.cols,
                        params.rows,
                        params.pix_width,
                        params.pix_height,
                        &params.modes,
                    )
                    .await
            }
            Some(Slot::Local(local)) => {
                local.pty = Some(params);
                true
            }
            None => false,
        }
    }

    async fn env(&mut self, channel: ChannelId, name: String, value: String) {
        match self.channels.get_mut(&channel) {
            Some(Slot::Relay(relay)) => relay.env(&name, &value).await,
            Some(Slot::Local(local)) if local.env.len() < MAX_ENV => local.env.push((name, value)),
            _ => {}
        }
    }

    /// A shell, exec or subsystem request.
    async fn start(&mut self, id: ChannelId, start: Start) -> StartReply {
        if matches!(self.channels.get(&id), Some(Slot::Local(local)) if local.deferred) {
            return self.start_deferred(id, start).await;
        }
        let origin = self.origin();
        match self.channels.get_mut(&id) {
            Some(Slot::Relay(relay)) => {
                match relay.start(&self.services, &self.session, start).await {
                    StartOutcome::Relayed(granted) => StartReply::Relayed(granted),
                    StartOutcome::Refused { message, status } => StartReply::Answer {
                        text: notice::message(&message, relay.has_pty()),
                        status,
                    },
                }
            }
            Some(Slot::Local(local)) => {
                let pty = local.pty.is_some();
                if let Some(message) = &local.message {
                    return local.answer(notice::message(message, pty), 1);
                }
                let user = self.session.user().unwrap_or_default().to_owned();
                let Phase::Authorized {
                    route: Route::Activation(pending),
                    handle,
                } = &self.phase
                else {
                    return self.start_menu(id, start, &user, origin).await;
                };
                let pending = pending.clone();
                let service = self
                    .services
                    .directory
                    .user(&user)
                    .is_some_and(|u| u.service);
                let text = match (&start, pty) {
                    // A service is never prompted: it asks through the API.
                    _ if service => format!(
                        "{} needs an activation first; a service asks for it through the admin \
                         API (POST /api/v1/requests, or `portcullis checkout {}`) and logs in \
                         with the certificate it checks out",
                        pending.eligibility.target, pending.eligibility.target
                    ),
                    (Start::Shell | Start::Exec(_), true) if pending.claim() => {
                        let env = std::mem::take(&mut local.env);
                        let Some(console) = local.converse(&self.session) else {
                            return StartReply::Failed;
                        };
                        let done = local.done.clone();
                        activation::spawn(
                            activation::Dialog {
                                services: self.services.clone(),
                                session: self.session.clone(),
                                pending,
                                console,
                                handle: handle.clone(),
                                id,
                                env,
                                start,
                            },
                            done,
                        );
                        return StartReply::Serving;
                    }
                    (Start::Shell | Start::Exec(_), true) => {
                        "an activation is already running on another channel of this connection"
                            .to_owned()
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
                local.answer(notice::message(&text, pty), 1)
            }
            None => StartReply::Failed,
        }
    }

    /// The start of a channel that waited for it (a certificate target): logs in upstream
    /// for a terminal session or not (unless an earlier channel did), opens the upstream
    /// channel, replays the terminal and environment there, and relays from now on.
    async fn start_deferred(&mut self, id: ChannelId, start: Start) -> StartReply {
        let Some(Slot::Local(local)) = self.channels.get(&id) else {
            return StartReply::Failed;
        };
        let pty = local.pty.clone();
        if let Phase::Authorized {
            route: Route::Target(target),
            ..
        } = &mut self.phase
        {
            target.connect_for(pty.is_some());
        }
        self.advance().await;
        let connected = match &self.phase {
            Phase::Relaying {
                handle,
                authorized,
                upstream,
            } => upstream
                .open_session_channel()
                .await
                .map(|channel| (handle.clone(), channel))
                .map_err(|e| format!("cannot open a channel on {}: {e}", authorized.target().name)),
            Phase::Authorized {
                route: Route::Target(target),
                ..
            } => Err(target
                .failure()
                .unwrap_or("internal error: upstream not connected")
                .to_owned()),
            _ => Err("internal error: the session has no target".to_owned()),
        };
        let Some(Slot::Local(local)) = self.channels.get_mut(&id) else {
            return StartReply::Failed;
        };
        let (handle, upstream_channel) = match connected {
            Ok(connected) => connected,
            Err(message) => return local.answer(notice::message(&message, pty.is_some()), 1),
        };
        let Some(writer) = local.writer.take() else {
            return StartReply::Failed;
        };
        let env = std::mem::take(&mut local.env);
        let mut relay = relay::open_relay(
            self.services.clone(),
            self.session.clone(),
            writer,
            handle,
            upstream_channel,
        );
        activation::replay(&mut relay, pty.as_ref(), &env).await;
        let outcome = relay.start(&self.services, &self.session, start).await;
        let has_pty = relay.has_pty();
        self.channels.insert(id, Slot::Relay(relay));
        match outcome {
            StartOutcome::Relayed(granted) => StartReply::Relayed(granted),
            StartOutcome::Refused { message, status } => StartReply::Answer {
                text: notice::message(&message, has_pty),
                status,
            },
        }
    }

    /// A shell, command or subsystem on a login without a target.
    async fn start_menu(
        &mut self,
        id: ChannelId,
        start: Start,
        user: &str,
        origin: Origin,
    ) -> StartReply {
        let Some(Slot::Local(local)) = self.channels.get_mut(&id) else {
            return StartReply::Failed;
        };
        let pty = local.pty.is_some();
        let command = match start {
            Start::Subsystem(name) => {
                let text =
                    format!("the bastion itself has no {name} subsystem; log in as USER+TARGET");
                return local.answer(notice::message(&text, pty), 1);
            }
            Start::Shell if pty => {
                let Some(console) = local.converse(&self.session) else {
                    return StartReply::Failed;
                };
                let done = local.done.clone();
                let span = self.session.span.clone();
                let services = self.services.clone();
                let user = user.to_owned();
                self.session.tasks.spawn(
                    async move {
                        prompt::run(services, user, origin, console).await;
                        done.cancel();
                    }
                    .instrument(span),
                );
                return StartReply::Serving;
            }
            Start::Shell => Ok(menu::Command::Targets),
            Start::Exec(line) => menu::parse(&line),
        };
        let command = match command {
            Ok(command) => command,
            Err(message) => return local.answer(notice::message(&message, pty), 2),
        };
        if let menu::Command::Watch(watched) = &command {
            return match self.start_watch(user, watched, id).await {
                Ok(()) => StartReply::Serving,
                Err(message) => match self.channels.get(&id) {
                    Some(Slot::Local(local)) => local.answer(notice::message(&message, pty), 1),
                    _ => StartReply::Failed,
                },
            };
        }
        let reply = menu::run(&self.services, user, &origin, &command).await;
        let text = if reply.is_error() {
            notice::message(&reply.text, pty)
        } else {
            notice::output(&reply.text, pty)
        };
        match self.channels.get(&id) {
            Some(Slot::Local(local)) => local.answer(text, reply.status),
            _ => StartReply::Failed,
        }
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
        let done = local.done.clone();
        let span = self.session.span.clone();
        let watcher = self.session.clone();
        self.session.tasks.spawn(
            async move {
                spectator::run(follower, writer, pty, target, watcher, stop).await;
                done.cancel();
            }
            .instrument(span),
        );
        Ok(())
    }

    /// Refuses a command or subsystem the bastion cannot check as the upstream would run it
    /// (a NUL byte, a control character, invalid UTF-8): audited, told, never relayed.
    fn refuse_start(&mut self, id: ChannelId, start: &Start, problem: &str) -> StartReply {
        let pty = match self.channels.get(&id) {
            Some(Slot::Relay(relay)) => relay.has_pty(),
            Some(Slot::Local(local)) => local.pty.is_some(),
            None => return StartReply::Failed,
        };
        let (kind, line) = match start {
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
        if let Some(Slot::Local(local)) = self.channels.get(&id) {
            local.done.cancel();
        }
        StartReply::Answer {
            text: notice::message(&format!("not run: {problem}"), pty),
            status: relay::BLOCKED_STATUS,
        }
    }

    async fn window_change(&self, channel: ChannelId, size: (u32, u32, u32, u32)) {
        let (cols, rows, pix_width, pix_height) = size;
        match self.channels.get(&channel) {
            Some(Slot::Relay(relay)) => {
                relay.window_change(cols, rows, pix_width, pix_height).await
            }
            Some(Slot::Local(local)) => {
                local
                    .pass(ClientEvent::WindowChange {
                        cols,
                        rows,
                        pix_width,
                        pix_height,
                    })
                    .await
            }
            None => {}
        }
    }

    async fn signal(&self, channel: ChannelId, signal: Sig) {
        match self.channels.get(&channel) {
            Some(Slot::Relay(relay)) => relay.signal(signal).await,
            Some(Slot::Local(local)) => local.pass(ClientEvent::Signal(signal)).await,
            None => {}
        }
    }

    async fn data(&self, channel: ChannelId, data: Bytes) {
        match self.channels.get(&channel) {
            Some(Slot::Relay(relay)) if relay.data(&data).await.is_err() => {
                tracing::warn!(parent: &self.session.span, "client queued too much input without reading its output");
                self.session
                    .control
                    .end(EndReason::Overflow(relay::flow::HARD_CAP));
            }
            // A watcher's keys: q or Ctrl-C leaves, anything else is ignored (read-only).
            Some(Slot::Local(LocalChannel {
                watching: Some(stop),
                ..
            })) if data.iter().any(|&b| b == b'q' || b == 0x03) => stop.cancel(),
            Some(Slot::Local(local)) => local.pass(ClientEvent::Data(data)).await,
            _ => {}
        }
    }

    async fn eof(&self, channel: ChannelId) {
        match self.channels.get(&channel) {
            Some(Slot::Relay(relay)) => relay.eof().await,
            Some(Slot::Local(local)) => local.pass(ClientEvent::Eof).await,
            None => {}
        }
    }

    async fn close(&mut self, channel: ChannelId) {
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
    }
}
