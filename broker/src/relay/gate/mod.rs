//! Command control on terminal channels: at each Enter, the line about to run is read from
//! the screen (a vt100 emulator fed with the upstream's output, see [`screen`]) and from the
//! keystrokes (see [`keys`]), and checked against the command rules before the Enter is
//! let through.
//!
//! ```text
//! client keys ─▶ [uplink] ─▶ Gate::data ── edits pass at once ──────────────▶ upstream
//!                                       └─ Enter: wait for the echo, read the line,
//!                                          rules → run | ask y/N | hold for review |
//!                                                  discard (^C) | end the session
//! upstream output ─▶ [downlink] ─▶ Screen::feed (and on to the client)
//! ```
//!
//! Every line that runs is audited (`command`) and marked in the recording. The gate stays
//! out of the way in full-screen programs (alternate screen) and while the upstream does not
//! echo (password prompts), whose keystrokes are recorded as `[redacted]`.

mod ask;
mod discard;
pub mod keys;
pub mod screen;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use portcullis_config::CommandAction;
use portcullis_policy::CommandRule;
use portcullis_recorder::RecordingHandle;
use russh::{ChannelWriteHalf, client};
use tokio::sync::mpsc;

use super::flow::Flow;
use super::{Downlink, Uplink};
use crate::live::{EndReason, SessionShared};
use crate::metrics::Metrics;
use crate::services::Services;
use keys::{Key, KeyLine};
use screen::Screen;

/// How long the screen must be quiet, after reacting to the last key, before a line is read.
const ECHO_QUIET: Duration = Duration::from_millis(40);
/// The longest wait for the shell to react to the last key (a loaded machine is slow to
/// complete a Tab); a line the screen has not caught up with by then is not run unless the
/// keystrokes alone say what it is.
const ECHO_WAIT: Duration = Duration::from_secs(3);
/// For a line nothing was echoed for (a password prompt): how long to wait before deciding
/// that nothing will be.
const BLIND_WAIT: Duration = Duration::from_millis(150);
/// How long a terminal must be idle (nothing typed) before its emulator is parked.
const PARK_AFTER: Duration = Duration::from_secs(2);
/// What a line typed while the upstream was not echoing is recorded as.
const REDACTED: &[u8] = b"[redacted]";

/// What the gate needs from the uplink while it decides.
pub(super) struct GateIo<'a> {
    pub(super) upstream: &'a ChannelWriteHalf<client::Msg>,
    pub(super) queue: &'a mut mpsc::UnboundedReceiver<Uplink>,
    pub(super) flow: &'a Flow,
    pub(super) recording: Option<&'a RecordingHandle>,
    pub(super) record_input: bool,
    /// Messages taken off the queue while waiting that are not the gate's: the uplink
    /// handles them next, in order.
    pub(super) deferred: &'a mut VecDeque<Uplink>,
}

/// The upstream channel is gone, or the session is ending: stop relaying.
#[derive(Debug)]
pub(super) struct Stop;

/// The gate of one terminal channel.
pub(super) struct Gate {
    services: Arc<Services>,
    session: Arc<SessionShared>,
    channel: String,
    role: String,
    target: String,
    screen: Arc<Screen>,
    /// To show the bastion's words on the client's terminal, in order with the output.
    say: mpsc::Sender<Downlink>,
    keys: KeyLine,
    /// The cursor row before the cursor when the line's first key went up: the prompt.
    prompt: Option<String>,
    /// The last prompt seen on the main screen: a shell showing it in the alternate screen
    /// is still a shell (see [`Gate::full_screen_program`]).
    main_prompt: Option<String>,
    /// Output pieces seen when the line's first key went up (later ones may be its echo).
    line_mark: u64,
    /// The line's first key went up before the shell was ready for it: a command ran (the
    /// shell said so by switching bracketed paste off), the shell had not come back for a
    /// new line since the Enter before, or no prompt was on the cursor row. The keys wait in
    /// the terminal driver, which echoes them literally, for whoever reads next — bash's
    /// readline replays history and editing keys out of the screen's sight — so the screen
    /// cannot put the keystroke model right, and a line it cannot follow does not run.
    typeahead: bool,
    /// The output count when the last Enter went up.
    enter_mark: Option<u64>,
    /// How many lines the line editor had started when the last Enter went up, if one was
    /// reading then ([`Screen::line_editor_starts`]).
    editor_starts_at_enter: Option<u64>,
    /// A line was erased while a command ran, and the shell's next prompt was not seen
    /// clean: bash may show part of it there (keys it had already taken as a line of their
    /// own), to be erased before the user's next key.
    leftover: bool,
    /// When the last key went up, and the output count then.
    last_sent: Instant,
    last_sent_seq: u64,
    /// The last keys went to a full-screen program (see [`Gate::pass_full_screen`]).
    in_full_screen: bool,
    /// Keystrokes not recorded yet: they wait until the upstream is seen echoing.
    held: Vec<Bytes>,
    /// Their size (bounded by [`MAX_HELD`]).
    held_bytes: usize,
}

/// Keystrokes held for the echo at most; beyond that they are recorded as redacted.
const MAX_HELD: usize = 64 * 1024;

/// The line as read at Enter.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reading {
    /// What is audited and shown.
    line: String,
    /// Every version to check (screen and keystrokes).
    candidates: Vec<String>,
    /// The keystrokes and the screen disagree (or the keystrokes could not be followed).
    uncertain: bool,
}

/// What became of an Enter typed while a full-screen program had the terminal.
enum FullScreenLine {
    /// Sent on.
    Passes,
    /// Dropped: a rule stops the line.
    Stopped,
    /// A terminating rule ended the session.
    Ends,
}

/// What to do with a line.
enum Verdict {
    Run,
    /// Not run: the line is taken back from the shell (see [`discard`]).
    Discard,
    Stop,
}

impl Gate {
    pub(super) fn new(
        services: Arc<Services>,
        session: Arc<SessionShared>,
        channel: String,
        screen: Arc<Screen>,
        say: mpsc::Sender<Downlink>,
    ) -> Self {
        Self {
            role: session.role().unwrap_or_default().to_owned(),
            target: session.target().unwrap_or_default().to_owned(),
            services,
            session,
            channel,
            screen,
            say,
            keys: KeyLine::default(),
            prompt: None,
            main_prompt: None,
            line_mark: 0,
            typeahead: false,
            enter_mark: None,
            editor_starts_at_enter: None,
            leftover: false,
            last_sent: Instant::now(),
            last_sent_seq: 0,
            in_full_screen: false,
            held: Vec::new(),
            held_bytes: 0,
        }
    }

    /// The client's terminal was resized.
    pub(super) fn resize(&self, rows: u32, cols: u32) {
        self.screen.resize(rows, cols);
    }

    /// Client data on its way upstream.
    pub(super) async fn data(&mut self, data: Bytes, io: &mut GateIo<'_>) -> Result<(), Stop> {
        let mut next = Some(data);
        while let Some(data) = next.take() {
            next = self.pass(data, io).await?;
        }
        Ok(())
    }

    /// Whether the alternate screen belongs to a full-screen program (vim, less, top)
    /// rather than to a shell that was put there (`printf '\e[?1049h'`). Only the upstream's
    /// own output can say so, and two things in it say "a shell": it ran a command there
    /// (bracketed paste switched off, see [`Screen::alternate_by_program`]), or its prompt
    /// is on the cursor's row as it was on the main screen.
    fn full_screen_program(&self) -> bool {
        self.screen.alternate_by_program()
            && !self.main_prompt.as_ref().is_some_and(|prompt| {
                self.screen
                    .cursor_line()
                    .before_cursor
                    .starts_with(prompt.as_str())
            })
    }

    /// Lets `data` through key by key, deciding at each Enter. After a discarded line:
    /// the keys typed at the fresh prompt, to pass next.
    async fn pass(&mut self, data: Bytes, io: &mut GateIo<'_>) -> Result<Option<Bytes>, Stop> {
        self.erase_leftover(io).await?;
        if self.full_screen_program() {
            return self.pass_full_screen(data, io).await;
        }
        if std::mem::take(&mut self.in_full_screen) {
            // Back at the shell: keys typed in the program are not this line.
            self.keys.reset();
        }
        // A paste start is believed only while the shell has bracketed paste on.
        self.keys
            .set_paste_allowed(self.screen.line_editor() == Some(true));
        let mut start = 0;
        for at in 0..data.len() {
            if !self.keys.touched() {
                self.start_line();
            }
            if self.keys.needs_sync() && !self.typeahead {
                // Completion or history changed the line: hold the next keys until the
                // shell has shown the result, and continue the model from the screen.
                self.send(data.slice(start..at), io).await?;
                start = at;
                self.sync_keys().await;
            }
            match self.keys.feed(data[at]) {
                Key::Edit => {}
                Key::Cancel => {
                    // The shell drops the line; anything held was part of it.
                    self.flush_held(io, false).await;
                }
                Key::EditAndRun => {
                    self.send(data.slice(start..at), io).await?;
                    start = at + 1;
                    if self.edit_and_run_refused(io).await? {
                        return self.discard(io).await;
                    }
                    self.send(data.slice(at..=at), io).await?;
                }
                Key::Submit => {
                    self.send(data.slice(start..at), io).await?;
                    start = at + 1;
                    match self.decide(io).await? {
                        Verdict::Run => {
                            self.editor_starts_at_enter = (self.screen.line_editor() == Some(true))
                                .then(|| self.screen.line_editor_starts());
                            self.send(data.slice(at..=at), io).await?;
                            self.enter_mark = Some(self.screen.progress().0);
                        }
                        Verdict::Discard => return self.discard(io).await,
                        Verdict::Stop => return Err(Stop),
                    }
                    self.keys.reset();
                }
            }
        }
        if start < data.len() {
            self.send(data.slice(start..), io).await?;
        }
        Ok(None)
    }

    /// Keys for a full-screen program (vim, less, top): they are not command lines and pass
    /// as they come — except an Enter that ends a line a rule stops, unless the program reads
    /// its own lines. Keys typed now may be read by the shell later instead: a command that
    /// put the terminal on the alternate screen and keeps the shell busy
    /// (`printf '\e[?1049h'; sleep 9`) leaves them in the terminal driver, and the shell
    /// runs them when it comes back. So while nothing has turned bracketed paste on since the
    /// shell switched it off to run a command (a pager, top, or a command that is no program
    /// at all), at each Enter the keys typed since the last one and the cursor's line are
    /// checked: a line a stopping rule meets is not sent on (the Enter is dropped, the user
    /// told, the line audited as blocked; a terminating rule ends the session). A program
    /// that turned bracketed paste on (vim, nano) reads its own lines: those pass, audited as
    /// `unchecked` when a rule meets them (a command can print that switch too: this is a
    /// guardrail, see the README).
    async fn pass_full_screen(
        &mut self,
        data: Bytes,
        io: &mut GateIo<'_>,
    ) -> Result<Option<Bytes>, Stop> {
        if !self.in_full_screen {
            // What was typed at the shell before the program started is not this line.
            self.keys.reset();
            self.in_full_screen = true;
        }
        self.flush_held(io, false).await;
        let mut start = 0;
        for at in 0..data.len() {
            let byte = data[at];
            if !matches!(byte, b'\r' | b'\n' | 0x0f) {
                self.keys.feed(byte);
                continue;
            }
            self.send(data.slice(start..at), io).await?;
            start = at;
            match self.check_full_screen_line(io).await {
                FullScreenLine::Passes => {}
                FullScreenLine::Stopped => start = at + 1,
                FullScreenLine::Ends => return Err(Stop),
            }
            self.keys.reset();
        }
        if start < data.len() {
            self.send(data.slice(start..), io).await?;
        }
        Ok(None)
    }

    /// At an Enter while a full-screen program has the terminal: the rule the typed keys or
    /// the cursor's line meet, and what follows from it.
    async fn check_full_screen_line(&mut self, io: &GateIo<'_>) -> FullScreenLine {
        if self.screen.line_editor() == Some(true) {
            // A program that turned bracketed paste on reads its own lines (vim, nano): what
            // is typed there is its text, not a command; a line a rule meets is audited.
            self.settle().await;
            self.note_unchecked();
            return FullScreenLine::Passes;
        }
        self.settle().await;
        let mut readings = self.keys.reading().unwrap_or_default();
        readings.retain(|r| !r.trim().is_empty());
        let typed = readings.first().cloned();
        readings.extend(self.screen_readings());
        let Some((rule, met)) = self.rule_meeting(&readings) else {
            return FullScreenLine::Passes;
        };
        let reading = Reading {
            line: typed.unwrap_or_else(|| met.to_owned()),
            candidates: readings.clone(),
            uncertain: true,
        };
        match rule.action {
            CommandAction::Allow => FullScreenLine::Passes,
            CommandAction::Log => {
                self.audit(&reading, Some(&rule), rule.action, "unchecked");
                FullScreenLine::Passes
            }
            // Nobody can be asked inside a full-screen program: held lines are stopped too.
            CommandAction::Warn | CommandAction::Review | CommandAction::Deny => {
                self.blocked(io, &reading, &rule, "blocked").await;
                self.tell(&format!(
                    "Enter not sent: the line typed meets {} (a full-screen program or a running \
                     command has the terminal, and what is typed now may reach the shell)",
                    rule.describe()
                ))
                .await;
                FullScreenLine::Stopped
            }
            CommandAction::Terminate => {
                self.blocked(io, &reading, &rule, "terminated").await;
                self.session.control.end(EndReason::CommandRule {
                    rule: rule.name.clone(),
                    message: rule.message.clone().unwrap_or_default(),
                });
                FullScreenLine::Ends
            }
        }
    }

    /// The most severe command rule any of `readings` meets here, and the reading it met.
    fn rule_meeting(&self, readings: &[String]) -> Option<(CommandRule, String)> {
        self.services
            .command_rules
            .evaluate_readings(
                portcullis_config::RuleKind::Command,
                &self.role,
                &self.target,
                readings.iter().map(String::as_str),
            )
            .map(|(rule, met)| (rule.clone(), met.to_owned()))
    }

    /// In a program that reads its own lines: audits the cursor's line if a rule meets it
    /// (`outcome: unchecked`), with an alert for a rule that would have stopped it.
    fn note_unchecked(&self) {
        let readings = self.screen_readings();
        let Some((rule, met)) = self.rule_meeting(&readings) else {
            return;
        };
        if rule.action == CommandAction::Allow {
            return;
        }
        let reading = Reading {
            line: met.clone(),
            candidates: readings.clone(),
            uncertain: true,
        };
        self.audit(&reading, Some(&rule), rule.action, "unchecked");
        if matches!(rule.action, CommandAction::Deny | CommandAction::Terminate) {
            tracing::warn!(
                parent: &self.session.span,
                rule = %rule.name,
                line = %crate::text::Shown(&met),
                "ALERT: a line a rule stops was entered in a full-screen program (not checked there)"
            );
        }
    }

    /// Ctrl-X Ctrl-E would run whatever an editor saves, with no Enter for the gate to see.
    /// Where rules apply it is refused: Ctrl-G instead of Ctrl-E ends readline's prefix
    /// without doing anything, the user is told, and the line is discarded (true). Where
    /// only auditing is on, it passes, audited as unchecked (false).
    async fn edit_and_run_refused(&mut self, io: &mut GateIo<'_>) -> Result<bool, Stop> {
        let reading = self.reading();
        if !self
            .services
            .command_rules
            .any_for(&self.role, &self.target)
        {
            self.audit(&reading, None, CommandAction::Allow, "unchecked");
            return Ok(false);
        }
        self.send(Bytes::from_static(b"\x07"), io).await?;
        self.audit(&reading, None, CommandAction::Deny, "refused");
        self.tell("editing the command line in an editor (Ctrl-X Ctrl-E) is not available here: what the editor saves would run unchecked")
            .await;
        Ok(true)
    }

    fn start_line(&mut self) {
        let line = self.screen.cursor_line();
        let seq = self.screen.progress().0;
        self.typeahead = typed_ahead(
            LineEditor {
                reading: self.screen.line_editor(),
                starts: self.screen.line_editor_starts(),
                starts_at_enter: self.editor_starts_at_enter,
            },
            &line.before_cursor,
            self.enter_mark == Some(seq),
        );
        self.prompt = Some(line.before_cursor).filter(|p| !p.trim().is_empty());
        if !self.screen.alternate() {
            self.main_prompt = self.prompt.clone();
        }
        self.line_mark = seq;
    }

    fn echo_seen(&self) -> bool {
        self.screen.progress().0 > self.line_mark
    }

    /// Sends bytes upstream, recording them as input (held until the echo is seen).
    async fn send(&mut self, data: Bytes, io: &mut GateIo<'_>) -> Result<(), Stop> {
        if data.is_empty() {
            return Ok(());
        }
        if self.echo_seen() {
            self.flush_held(io, false).await;
            record_input(io, data.clone()).await;
        } else {
            self.held_bytes += data.len();
            self.held.push(data.clone());
            if self.held_bytes > MAX_HELD {
                // A long time typing without echo: whatever it is, it stays unrecorded.
                self.flush_held(io, true).await;
            }
        }
        self.last_sent = Instant::now();
        self.last_sent_seq = self.screen.progress().0;
        tokio::select! {
            result = io.upstream.data_bytes(data) => result.map_err(|_| Stop),
            () = self.session.control.ended() => Err(Stop),
        }
    }

    /// Records the held keystrokes, as typed or redacted.
    async fn flush_held(&mut self, io: &mut GateIo<'_>, redact: bool) {
        self.held_bytes = 0;
        let held = std::mem::take(&mut self.held);
        if held.is_empty() {
            return;
        }
        if redact {
            record_input(io, Bytes::from_static(REDACTED)).await;
        } else {
            for data in held {
                record_input(io, data).await;
            }
        }
    }

    /// Parks the screen's emulator once nothing has been typed for [`PARK_AFTER`]; never
    /// resolves while it cannot be parked (parked already, or under a full-screen program):
    /// an idle terminal sets no timer.
    pub(super) async fn park_when_idle(&self) {
        if !self.screen.is_parkable() {
            return std::future::pending().await;
        }
        tokio::time::sleep(PARK_AFTER).await;
        self.screen.park();
    }

    /// Waits until the screen shows the line: the shell has reacted to the last key sent and
    /// gone quiet. Returns whether it caught up (false: it did not react in time).
    async fn settle(&self) -> bool {
        let started = Instant::now();
        loop {
            let notified = self.screen.output.notified();
            let (seq, last_output) = self.screen.progress();
            let reacted = seq > self.last_sent_seq;
            if reacted
                && let Some(keys) = self.keys.reading()
                && let Some(last) = keys.last()
                && self.screen_readings().iter().any(|l| l == last.trim())
            {
                return true;
            }
            let now = Instant::now();
            let deadline = if self.echo_seen() {
                started + ECHO_WAIT
            } else {
                started + BLIND_WAIT
            };
            let quiet_until = last_output.map_or(now, |o| o + ECHO_QUIET);
            if reacted && now >= quiet_until {
                return true;
            }
            if now >= deadline {
                return reacted;
            }
            let wake = if reacted {
                quiet_until.min(deadline)
            } else {
                deadline
            };
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(wake.into()) => {}
                () = self.session.control.ended() => return reacted,
            }
        }
    }

    /// Waits for the shell to show what the last keys did, then takes the line and cursor
    /// from the screen as the keystroke model's new start.
    async fn sync_keys(&mut self) {
        if !self.settle().await || self.screen.line_editor() == Some(false) {
            // While a command runs the screen shows the terminal driver's echo, not what a
            // line editor will make of the keys.
            return;
        }
        let line = self.screen.cursor_line();
        let prompt_len = match &self.prompt {
            Some(prompt) if line.text.starts_with(prompt.as_str()) => prompt.chars().count(),
            _ => match ["$ ", "# ", "% ", "> "]
                .iter()
                .filter_map(|m| line.text.find(m).map(|at| at + m.len()))
                .min()
            {
                Some(at) => line.text[..at].chars().count(),
                None => return,
            },
        };
        let Some(cursor) = line.before_cursor.chars().count().checked_sub(prompt_len) else {
            return;
        };
        let command: String = line.text.chars().skip(prompt_len).collect();
        self.keys.resync(&command, cursor);
    }

    /// The command as the screen shows it: the cursor's line without its prompt (the prompt
    /// seen when the line began, or else up to the first `$ `, `# `, `% ` or `> `).
    fn screen_readings(&self) -> Vec<String> {
        let line = self.screen.cursor_line();
        let mut readings = Vec::new();
        if let Some(prompt) = &self.prompt
            && let Some(rest) = line.text.strip_prefix(prompt.as_str())
        {
            readings.push(rest.trim().to_owned());
        }
        let marker = ["$ ", "# ", "% ", "> "]
            .iter()
            .filter_map(|m| line.text.find(m).map(|at| at + m.len()))
            .min();
        if let Some(at) = marker {
            readings.push(line.text[at..].trim().to_owned());
        }
        if readings.is_empty() {
            readings.push(line.text.trim().to_owned());
        }
        readings.dedup();
        readings
    }

    fn reading(&self) -> Reading {
        let screen = self.screen_readings();
        let keys = self.keys.reading();
        let typed: Vec<String> = keys
            .iter()
            .flatten()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect();
        let uncertain = match (&keys, typed.last()) {
            (None, _) => true,
            (Some(_), Some(last)) => !screen.iter().any(|s| s == last),
            (Some(_), None) => screen.iter().any(|s| !s.is_empty()),
        };
        let line = if typed.len() > 1 {
            typed.join("\n")
        } else if self.typeahead
            && let Some(last) = typed.last()
        {
            // Typed before the shell was ready: the screen may show it mixed with the
            // output it was typed over; the keystrokes are the line.
            last.clone()
        } else {
            screen
                .first()
                .filter(|s| !s.is_empty())
                .cloned()
                .or_else(|| typed.last().cloned())
                .unwrap_or_default()
        };
        let mut candidates = screen;
        candidates.extend(typed);
        candidates.retain(|c| !c.is_empty());
        candidates.dedup();
        Reading {
            line,
            candidates,
            uncertain,
        }
    }

    /// At Enter: reads the line and applies the rules.
    async fn decide(&mut self, io: &mut GateIo<'_>) -> Result<Verdict, Stop> {
        let caught_up = self.settle().await;
        // An Enter with nothing typed before it runs whatever the shell already holds: keys
        // typed earlier, while a program had the terminal, that the shell has read since and
        // shows after its prompt. That is a line to read off the screen, not a blind one.
        let typed_nothing = self
            .keys
            .reading()
            .is_some_and(|lines| lines.iter().all(|line| line.trim().is_empty()));
        if !self.echo_seen() && !typed_nothing {
            // Typed blind (a password prompt): not a command; the keys are not kept, not
            // even in the debug log.
            tracing::debug!("line submitted without echo: passed, redacted");
            self.flush_held(io, true).await;
            return Ok(Verdict::Run);
        }
        tracing::debug!(reading = ?self.reading(), prompt = ?self.prompt, typeahead = self.typeahead, "line submitted");
        self.flush_held(io, false).await;
        let reading = self.reading();
        if self.keys.overflowed()
            && self
                .services
                .command_rules
                .any_for(&self.role, &self.target)
        {
            self.audit(&reading, None, CommandAction::Deny, "unreadable");
            self.tell(&format!(
                "this line is longer than the {} characters the bastion can check; it was not run",
                keys::MAX_LINE_CHARS
            ))
            .await;
            return Ok(Verdict::Discard);
        }
        if (!caught_up || self.typeahead || self.screen.line_editor() == Some(false))
            && self.keys.reading().is_none()
            && self
                .services
                .command_rules
                .any_for(&self.role, &self.target)
        {
            // Completion or history made the line, and the screen has not shown it yet, or
            // cannot be trusted to (typed ahead): what would run cannot be read, so it does
            // not run.
            self.audit(&reading, None, CommandAction::Deny, "unreadable");
            let why = if self.typeahead || self.screen.line_editor() == Some(false) {
                "it was typed while a command ran or before the shell was ready, and history or editing keys changed it"
            } else {
                "the terminal did not show it in time"
            };
            self.tell(&format!(
                "this line could not be read ({why}); it was not run — please type it again"
            ))
            .await;
            return Ok(Verdict::Discard);
        }
        if reading.candidates.is_empty() {
            return Ok(Verdict::Run);
        }
        let rules = &self.services.command_rules;
        let matched = rules.evaluate_readings(
            portcullis_config::RuleKind::Command,
            &self.role,
            &self.target,
            reading.candidates.iter().map(String::as_str),
        );
        let Some((rule, met)) = matched else {
            self.ran(io, &reading, None, CommandAction::Allow).await;
            return Ok(Verdict::Run);
        };
        let rule = rule.clone();
        // The reading the rule met is the one to audit and show: when the screen was garbled
        // (typeahead echoed before the prompt) it is the keystrokes' version.
        let reading = if reading.line.contains('\n') {
            reading
        } else {
            Reading {
                line: met.to_owned(),
                ..reading
            }
        };
        match rule.action {
            CommandAction::Allow | CommandAction::Log => {
                self.ran(io, &reading, Some(&rule), rule.action).await;
                Ok(Verdict::Run)
            }
            CommandAction::Warn => self.confirm(io, &reading, &rule).await,
            CommandAction::Review => self.review(io, &reading, &rule).await,
            CommandAction::Deny => {
                self.blocked(io, &reading, &rule, "blocked").await;
                self.tell(&format!("blocked by {}", rule.describe())).await;
                Ok(Verdict::Discard)
            }
            CommandAction::Terminate => {
                self.blocked(io, &reading, &rule, "terminated").await;
                self.session.control.end(EndReason::CommandRule {
                    rule: rule.name.clone(),
                    message: rule.message.clone().unwrap_or_default(),
                });
                Ok(Verdict::Stop)
            }
        }
    }

    /// A line that runs: audited and marked in the recording.
    async fn ran(
        &self,
        io: &GateIo<'_>,
        reading: &Reading,
        rule: Option<&CommandRule>,
        action: CommandAction,
    ) {
        self.audit(reading, rule, action, "ran");
        if let Some(recording) = io.recording {
            let _ = recording.marker(format!("$ {}", reading.line)).await;
        }
    }

    async fn blocked(&self, io: &GateIo<'_>, reading: &Reading, rule: &CommandRule, outcome: &str) {
        self.audit(reading, Some(rule), rule.action, outcome);
        Metrics::count(&self.services.metrics.commands_blocked_total);
        tracing::warn!(
            parent: &self.session.span,
            rule = %rule.name,
            line = %crate::text::Shown(&reading.line),
            outcome,
            "ALERT: command stopped by a rule"
        );
        super::verdict::raise_stopped(
            &self.services,
            &self.session,
            "command",
            &reading.line,
            Some(rule),
            rule.action == CommandAction::Terminate,
        );
        if let Some(recording) = io.recording {
            let _ = recording
                .marker(format!("{outcome} by rule {}: {}", rule.name, reading.line))
                .await;
        }
    }

    fn audit(
        &self,
        reading: &Reading,
        rule: Option<&CommandRule>,
        action: CommandAction,
        outcome: &str,
    ) {
        self.services.audit.record(
            self.session
                .audit("command")
                .with("channel", &self.channel)
                .with("role", &self.role)
                .with("kind", "line")
                .with("line", &reading.line)
                .with("rule", rule.map(|r| r.name.as_str()))
                .with("action", action.as_str())
                .with("outcome", outcome)
                .with("uncertain", reading.uncertain),
        );
    }

    /// Shows `text` from the bastion on the client's terminal.
    async fn tell(&self, text: &str) {
        let _ = self.say.send(Downlink::Say(text.to_owned())).await;
    }

    /// The next client keystrokes, while the gate waits; other messages are deferred.
    async fn next_keys(&self, io: &mut GateIo<'_>) -> Option<Bytes> {
        loop {
            let message = tokio::select! {
                message = io.queue.recv() => message?,
                () = self.session.control.ended() => return None,
            };
            match message {
                Uplink::Data(data) => {
                    io.flow.drained(data.len());
                    return Some(data);
                }
                Uplink::Close | Uplink::Eof => {
                    io.deferred.push_back(message);
                    return None;
                }
                other => io.deferred.push_back(other),
            }
        }
    }
}

/// What the shell's bracketed-paste switches said about its line editor when a line's
/// first key went up.
struct LineEditor {
    /// [`Screen::line_editor`].
    reading: Option<bool>,
    /// [`Screen::line_editor_starts`].
    starts: u64,
    /// `starts` when the last Enter went up, if the line editor was reading then.
    starts_at_enter: Option<u64>,
}

/// Whether a line's first key went up before the shell was ready for it (see
/// [`Gate::typeahead`]). The shell's own switches are trusted first: what a command prints
/// (a fake prompt) cannot make keys typed while it runs readable. Shells that never switch
/// bracketed paste are judged by the cursor row: no prompt on it, or no output at all since
/// the Enter before (`no_answer_yet`).
fn typed_ahead(editor: LineEditor, before_cursor: &str, no_answer_yet: bool) -> bool {
    let editor_away = match editor.reading {
        // A command runs.
        Some(false) => true,
        // The line editor has not come back for a new line since the Enter.
        Some(true) => editor.starts_at_enter == Some(editor.starts),
        None => false,
    };
    editor_away || before_cursor.trim().is_empty() || no_answer_yet
}

async fn record_input(io: &GateIo<'_>, data: Bytes) {
    if io.record_input
        && let Some(recording) = io.recording
    {
        let _ = recording.input(data).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn editor(reading: Option<bool>, starts: u64, starts_at_enter: Option<u64>) -> LineEditor {
        LineEditor {
            reading,
            starts,
            starts_at_enter,
        }
    }

    #[test]
    fn keys_are_typed_ahead_until_the_line_editor_is_back_whatever_the_screen_shows() {
        let prompt = "root@vm:~# ";
        // At bash's fresh prompt.
        assert!(!typed_ahead(editor(Some(true), 3, Some(2)), prompt, false));
        // A command runs, and printed what looks like a prompt.
        assert!(typed_ahead(editor(Some(false), 3, Some(3)), prompt, false));
        // bash has not taken the Enter yet: still the old line on the screen, and some
        // late output of it arrived after the Enter went up.
        assert!(typed_ahead(
            editor(Some(true), 3, Some(3)),
            "root@vm:~# ls -l",
            false
        ));
        // A shell that never switches bracketed paste: the cursor row decides.
        assert!(!typed_ahead(editor(None, 0, None), "$ ", false));
        assert!(typed_ahead(editor(None, 0, None), "  ", false));
        assert!(typed_ahead(editor(None, 0, None), "$ ls", true));
        // The first line of a session with bash (no Enter seen yet).
        assert!(!typed_ahead(editor(Some(true), 1, None), prompt, false));
    }
}
