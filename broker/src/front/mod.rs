//! The front door: portcullis as an SSH server for the admins' stock `ssh` clients.
//!
//! * [`FrontHandler`]: the russh `Handler`, a thin adapter: authentication questions go to
//!   [`auth::Authenticator`], routing to [`crate::session::route`], channel traffic to
//!   [`crate::session::channel`]. Its state is the connection's [`Route`] and its channels.
//! * [`login`]: `USER+TARGET` parsing.
//! * [`throttle`], [`totp`], [`password`]: the pieces of authentication.

pub mod auth;
pub mod login;
pub mod password;
pub mod throttle;
pub mod totp;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use russh::keys::Certificate;
use russh::server::{self, Auth, ChannelOpenHandle, Msg, Response, Session};
use russh::{
    Channel, ChannelId, ChannelOpenFailure, ChannelWriteHalf, MethodKind, MethodSet, Pty, Sig,
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::server::Broker;
use crate::session::channel::{self, ChannelRelay, Start, StartOutcome};
use crate::session::route::{self, Route};
use crate::session::{EndReason, Identity, SessionShared, menu, notice, spectator};
use crate::watch::Follower;
use auth::{Authenticated, Authenticator, KbdPrompts, Step};

/// A channel of this connection.
enum Slot {
    /// Relayed to an upstream channel.
    Relay(ChannelRelay),
    /// Answered by the bastion itself.
    Local(LocalChannel),
}

/// A channel the bastion answers itself: the menu (`message: None`) or a refusal.
struct LocalChannel {
    pty: bool,
    message: Option<String>,
    /// For streaming answers (`watch`); taken when one starts.
    writer: Option<ChannelWriteHalf<Msg>>,
    /// Stops a running `watch`.
    watching: Option<CancellationToken>,
}

impl LocalChannel {
    fn new(channel: Channel<Msg>, message: Option<String>) -> Self {
        let (_, writer) = channel.split();
        Self {
            pty: false,
            message,
            writer: Some(writer),
            watching: None,
        }
    }
}

/// The russh handler for one client connection.
pub struct FrontHandler {
    broker: Arc<Broker>,
    session: Arc<SessionShared>,
    auth: Authenticator,
    kbd_prompts: Option<KbdPrompts>,
    accepted: Option<(login::Login, Authenticated)>,
    route: Route,
    channels: HashMap<ChannelId, Slot>,
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
    pub fn new(broker: Arc<Broker>, session: Arc<SessionShared>) -> Self {
        Self {
            auth: Authenticator::new(broker.clone(), session.clone()),
            broker,
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
                match relay.start(&self.broker, &self.session, start).await {
                    StartOutcome::Relayed(true) => session.channel_success(id),
                    StartOutcome::Relayed(false) => session.channel_failure(id),
                    StartOutcome::Refused(message) => {
                        let pty = relay.has_pty();
                        session.channel_success(id)?;
                        Self::finish_local(session, id, notice::message(&message, pty), 1)
                    }
                }
            }
            Some(Slot::Local(local)) => {
                let pty = local.pty;
                session.channel_success(id)?;
                let command = match (&local.message, &start) {
                    (Some(message), _) => {
                        return Self::finish_local(session, id, notice::message(message, pty), 1);
                    }
                    (None, Start::Subsystem(name)) => {
                        let text = format!(
                            "the bastion itself has no {name} subsystem; log in as USER+TARGET"
                        );
                        return Self::finish_local(session, id, notice::message(&text, pty), 1);
                    }
                    (None, Start::Exec(command)) => menu::parse(Some(command)),
                    (None, Start::Shell) => menu::parse(None),
                };
                let user = self.session.user().unwrap_or_default().to_owned();
                if let menu::MenuCommand::Watch(watched) = &command {
                    return match self.start_watch(&user, watched, id).await {
                        Ok(()) => Ok(()),
                        Err(message) => {
                            Self::finish_local(session, id, notice::message(&message, pty), 1)
                        }
                    };
                }
                let reply = menu::respond(&self.broker, &user, &command);
                Self::finish_local(session, id, notice::output(&reply.text, pty), reply.status)
            }
            None => session.channel_failure(id),
        }
    }

    /// `watch ID`: streams another live session onto this channel. The error is for the user.
    async fn start_watch(
        &mut self,
        user: &str,
        watched: &str,
        id: ChannelId,
    ) -> Result<(), String> {
        if !self.broker.policy.may_watch(user) {
            return Err("you may not watch sessions (no role of yours has can_watch)".into());
        }
        let target = self
            .broker
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
        self.broker.audit.record(
            target
                .audit("session.watched")
                .with("by", format!("ssh:{user}"))
                .with("watcher_session", &self.session.id),
        );
        let pty = local.pty;
        let span = self.session.span.clone();
        self.session.tasks.spawn(
            spectator::run(follower, writer, pty, target, self.session.clone(), stop)
                .instrument(span),
        );
        Ok(())
    }

    fn deny_forwarding(&self, kind: &str, detail: Option<String>) {
        self.broker.audit.record(
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

    async fn auth_succeeded(&mut self, _session: &mut Session) -> Result<(), Self::Error> {
        let Some((login, who)) = self.accepted.take() else {
            return Err(russh::Error::NotAuthenticated);
        };
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
        self.broker.audit.record(
            self.session
                .audit("auth.success")
                .with("method", who.method),
        );
        self.broker.audit.record(
            self.session
                .audit("session.start")
                .with("method", who.method),
        );
        self.broker.registry.register(self.session.clone());
        crate::metrics::Metrics::count(&self.broker.metrics.sessions_total);
        self.route = route::decide(&self.broker, &self.session, &login);
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let id = channel.id();
        let slot = match &mut self.route {
            Route::Pending => {
                reply
                    .reject(ChannelOpenFailure::AdministrativelyProhibited)
                    .await;
                return Ok(());
            }
            Route::Menu { .. } => Slot::Local(LocalChannel::new(channel, None)),
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
                        self.broker.clone(),
                        self.session.clone(),
                        channel,
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
                local.pty = true;
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
        if let Some(Slot::Relay(relay)) = self.channels.get(&channel) {
            relay.env(variable_name, variable_value).await;
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
        self.start(channel, Start::Exec(command), session).await
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.start(channel, Start::Subsystem(name.to_owned()), session)
            .await
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
        if let Some(Slot::Relay(relay)) = self.channels.get(&channel) {
            relay
                .window_change(col_width, row_height, pix_width, pix_height)
                .await;
        }
        Ok(())
    }

    async fn signal(
        &mut self,
        channel: ChannelId,
        signal: Sig,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(Slot::Relay(relay)) = self.channels.get(&channel) {
            relay.signal(signal).await;
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
                self.session.control.end(EndReason::Overflow);
            }
            // A watcher's keys: q or Ctrl-C leaves, anything else is ignored (read-only).
            Some(Slot::Local(LocalChannel {
                watching: Some(stop),
                ..
            })) if data.iter().any(|&b| b == b'q' || b == 0x03) => stop.cancel(),
            _ => {}
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(Slot::Relay(relay)) = self.channels.get(&channel) {
            relay.eof().await;
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
            Some(Slot::Local(LocalChannel {
                watching: Some(stop),
                ..
            })) => stop.cancel(),
            _ => {}
        }
        Ok(())
    }
}
