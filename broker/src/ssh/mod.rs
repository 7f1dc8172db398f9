//! The front door: portcullis as an SSH server for the admins' stock `ssh` clients.
//!
//! * [`FrontHandler`]: the russh `Handler`, a thin adapter: authentication questions go to
//!   [`auth::Authenticator`]; everything about the session (routing, channels, requests,
//!   data) becomes an [`Event`] for the session's owner ([`crate::session::owner`]), with a
//!   oneshot reply where SSH wants an answer, answered before the callback returns.
//! * [`connection`]: one connection's lifetime, from accept to `session.end`.
//! * [`config`]: the SSH server settings.

pub mod auth;
pub mod config;
pub mod connection;

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use russh::keys::Certificate;
use russh::server::{self, Auth, ChannelOpenHandle, Msg, Response, Session};
use russh::{Channel, ChannelId, ChannelOpenFailure, MethodKind, MethodSet, Pty, Sig};
use tokio::sync::{mpsc, oneshot};

use crate::bastion::console::PtyParams;
use crate::bastion::notice;
use crate::live::{Identity, SessionShared};
use crate::relay::Start;
use crate::services::Services;
use crate::session::events::{Event, StartReply};
use crate::session::login;
use auth::{Authenticated, Authenticator, KbdPrompts, Step};

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

/// The russh handler for one client connection: authentication here, everything else an
/// event for the session's owner.
pub struct FrontHandler {
    services: Arc<Services>,
    session: Arc<SessionShared>,
    auth: Authenticator,
    kbd_prompts: Option<KbdPrompts>,
    accepted: Option<(login::Login, Authenticated)>,
    events: mpsc::Sender<Event>,
}

impl FrontHandler {
    /// A handler for a newly accepted connection whose owner reads `events`.
    pub fn new(
        services: Arc<Services>,
        session: Arc<SessionShared>,
        events: mpsc::Sender<Event>,
    ) -> Self {
        Self {
            auth: Authenticator::new(services.clone(), session.clone()),
            services,
            session,
            kbd_prompts: None,
            accepted: None,
            events,
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

    /// Hands an event to the owner; false if the session is ending (the event is dropped:
    /// nothing waits on a connection that is going away).
    async fn tell(&self, event: Event) -> bool {
        tokio::select! {
            sent = self.events.send(event) => sent.is_ok(),
            () = self.session.control.ended() => false,
        }
    }

    /// Hands an event to the owner and waits for its answer (`None`: the session is ending).
    async fn ask<T>(&self, event: impl FnOnce(oneshot::Sender<T>) -> Event) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        if !self.tell(event(reply)).await {
            return None;
        }
        tokio::select! {
            answer = answer => answer.ok(),
            () = self.session.control.ended() => None,
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

    /// A shell, exec or subsystem request, answered as the owner says.
    async fn start(
        &mut self,
        channel: ChannelId,
        start: Start,
        problem: Option<String>,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        let reply = self
            .ask(|reply| Event::Start {
                channel,
                start,
                problem,
                reply,
            })
            .await;
        match reply {
            Some(StartReply::Relayed(true) | StartReply::Serving) => {
                session.channel_success(channel)
            }
            Some(StartReply::Answer { text, status }) => {
                session.channel_success(channel)?;
                Self::finish_local(session, channel, text, status)
            }
            Some(StartReply::Relayed(false) | StartReply::Failed) | None => {
                session.channel_failure(channel)
            }
        }
    }

    /// Refuses a forwarding request (it would carry traffic past the recorder), audited here:
    /// the refusal needs nothing of the session's state, and is on record before the client
    /// hears it.
    async fn forwarding(&self, kind: &'static str, detail: Option<String>) {
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

    /// Shown before the login when the state store is out of reach: every check needs it,
    /// so logins are refused, and the client is told why instead of a bare "denied".
    async fn authentication_banner(&mut self) -> Result<Option<String>, Self::Error> {
        Ok((!self.services.state.reachable()).then(|| {
            "portcullis: the bastion cannot reach its state database; logins are refused until it is back (sessions already open go on)\r\n".to_owned()
        }))
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        let login = login::parse(user);
        let step = self
            .auth
            .publickey_offered(&login.user, offer.public_key)
            .await;
        Ok(self.answer(user, step))
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let login = login::parse(user);
        let step = self.auth.publickey(&login.user, key.public_key).await;
        Ok(self.answer(user, step))
    }

    async fn auth_openssh_certificate(
        &mut self,
        user: &str,
        certificate: &Certificate,
    ) -> Result<Auth, Self::Error> {
        let login = login::parse(user);
        let target = match &login.destination {
            login::Destination::Target(target) => Some(target.as_str()),
            login::Destination::Menu | login::Destination::Malformed(_) => None,
        };
        let step = self
            .auth
            .certificate(&login.user, target, certificate)
            .await;
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
            return Ok(
                match self.auth.keyboard_interactive_prompts(&login.user).await {
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
                },
            );
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
        // No session without an audit trail: if its start cannot be written, it does not
        // start (the log line says why; the user is told the bastion cannot record it).
        if self
            .services
            .audit
            .record_required(
                self.session
                    .audit("session.start")
                    .with("method", who.method),
            )
            .is_err()
        {
            session.disconnect(
                russh::Disconnect::ServiceNotAvailable,
                "portcullis: the bastion cannot write its audit log, and no session starts without an audit trail; try again later or tell its operators",
                "en",
            )?;
            return Ok(());
        }
        let handle = session.handle();
        self.ask(|done| Event::LoggedIn {
            login,
            handle,
            done,
        })
        .await;
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let answer = self
            .ask(|reply| Event::ChannelOpen { channel, reply })
            .await
            .unwrap_or(Err(ChannelOpenFailure::AdministrativelyProhibited));
        match answer {
            Ok(()) => reply.accept().await,
            Err(failure) => reply.reject(failure).await,
        }
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
        self.forwarding(
            "direct-tcpip",
            Some(format!("{host_to_connect}:{port_to_connect}")),
        )
        .await;
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
        self.forwarding("direct-streamlocal", Some(socket_path.to_owned()))
            .await;
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
        self.forwarding("tcpip-forward", Some(format!("{address}:{port}")))
            .await;
        Ok(false)
    }

    async fn streamlocal_forward(
        &mut self,
        socket_path: &str,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        self.forwarding("streamlocal-forward", Some(socket_path.to_owned()))
            .await;
        Ok(false)
    }

    async fn agent_request(
        &mut self,
        _channel: ChannelId,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        self.forwarding("agent", None).await;
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
        self.forwarding("x11", None).await;
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
        let params = PtyParams {
            term: term.to_owned(),
            cols: col_width,
            rows: row_height,
            pix_width,
            pix_height,
            modes: modes.to_vec(),
        };
        let granted = self
            .ask(|reply| Event::Pty {
                channel,
                params,
                reply,
            })
            .await
            .unwrap_or(false);
        if granted {
            session.channel_success(channel)
        } else {
            session.channel_failure(channel)
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
        self.tell(Event::Env {
            channel,
            name: variable_name.to_owned(),
            value: variable_value.to_owned(),
        })
        .await;
        session.channel_success(channel)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.start(channel, Start::Shell, None, session).await
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let command = String::from_utf8_lossy(data).into_owned();
        let problem = crate::text::command_problem(data);
        self.start(channel, Start::Exec(command), problem, session)
            .await
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let problem = crate::text::command_problem(name.as_bytes());
        self.start(channel, Start::Subsystem(name.to_owned()), problem, session)
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
        self.tell(Event::WindowChange {
            channel,
            size: (col_width, row_height, pix_width, pix_height),
        })
        .await;
        Ok(())
    }

    async fn signal(
        &mut self,
        channel: ChannelId,
        signal: Sig,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.tell(Event::Signal { channel, signal }).await;
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Waiting for the owner's "room" is the flow control: the client's connection pauses
        // here while its input cannot be taken (see `relay::flow`).
        let data = Bytes::copy_from_slice(data);
        self.ask(|room| Event::Data {
            channel,
            data,
            room,
        })
        .await;
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.tell(Event::Eof { channel }).await;
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.tell(Event::Close { channel }).await;
        Ok(())
    }
}
