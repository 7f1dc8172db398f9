//! Discarding a line the rules stopped, so that nothing of it runs and the session goes on:
//! how depends on who reads the line now — the shell's line editor (Ctrl-C, a fresh prompt)
//! or the terminal driver while a command runs (its line kill, no signal) — and on bash's
//! ways of losing track (a swallowed Ctrl-C, keys it had already taken as a line).

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::screen::CursorLine;
use super::{ECHO_QUIET, Gate, GateIo, Stop};

/// After a blocked line, client input is dropped until the shell shows a fresh prompt (the
/// user cannot have seen it before: it is the rest of a paste, or typed ahead of the
/// refusal), but never longer than this.
const DISCARD_AFTER_BLOCK: Duration = Duration::from_secs(3);
/// bash can swallow a SIGINT that lands while readline is busy with typeahead: it echoes
/// `^C`, keeps reading, shows no prompt, and the old line may still be in its buffer. A
/// second one, landing in a blocking read, is handled properly. It is sent when the cursor
/// still sits on the `^C` row this long after the shell's last output.
const SWALLOWED_INTERRUPT: Duration = Duration::from_millis(400);
/// At most this many Ctrl-C for one discarded line.
const INTERRUPTS: u32 = 3;
/// After a line erased while a command runs: how long to drop input (the rest of a paste,
/// keys typed before the refusal could be seen) and watch for the shell's next prompt.
const ERASE_WATCH: Duration = Duration::from_millis(400);
/// The longest wait for the shell to redraw after the bastion's own keys.
const REDRAW_WAIT: Duration = Duration::from_millis(500);

impl Gate {
    /// Drops the typed line upstream, and whatever the client sent after it (the rest of a
    /// paste, keys typed ahead of the refusal). Keys that arrive once the shell is ready
    /// again were typed at its fresh prompt: they are returned, to pass.
    pub(super) async fn discard(&mut self, io: &mut GateIo<'_>) -> Result<Option<Bytes>, Stop> {
        self.keys.reset();
        let redact = !self.echo_seen();
        self.flush_held(io, redact).await;
        if self.screen.line_editor() == Some(true) {
            self.interrupt_line(io).await
        } else {
            self.erase_typeahead(io).await
        }
    }

    /// No line editor is reading: a command runs, and the line waits in the terminal
    /// driver's buffer for whoever reads next. Ctrl-E Ctrl-U erases it there (the driver's
    /// line kill; a line editor that does not announce itself reads end-of-line, kill to
    /// start) without a signal: the running program is left alone.
    async fn erase_typeahead(&mut self, io: &mut GateIo<'_>) -> Result<Option<Bytes>, Stop> {
        self.send_control(io, b"\x05\x15").await?;
        // bash may already have taken the keys for its next line without having shown its
        // prompt yet: then they come back at that prompt, and are erased there (its line
        // editor reads Ctrl-E Ctrl-U too).
        let until = tokio::time::Instant::now() + ERASE_WATCH;
        let mut erased_at_prompt = false;
        loop {
            let shown = self.screen.output.notified();
            // A clean prompt counts once the shell has gone quiet: bash writes its prompt
            // and what it brings back of the keys in separate pieces.
            let mut quiet_at = None;
            if self.screen.line_editor() == Some(true) {
                let line = self.screen.cursor_line();
                if self.at_prompt(&line) {
                    let last = self.screen.progress().1.map(|t| t + ECHO_QUIET);
                    match last.filter(|t| *t > Instant::now()) {
                        None => return Ok(None),
                        Some(t) => quiet_at = Some(tokio::time::Instant::from_std(t)),
                    }
                } else if !erased_at_prompt {
                    tracing::debug!("erasing what came back of a discarded line at the prompt");
                    erased_at_prompt = true;
                    self.send_control(io, b"\x05\x15").await?;
                    continue;
                }
            }
            let quiet = async {
                match quiet_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = shown => {}
                () = quiet => {}
                keys = self.next_keys(io) => {
                    let Some(keys) = keys else { return Ok(None) };
                    if self.screen.line_editor() == Some(true)
                        && self.at_prompt(&self.screen.cursor_line())
                    {
                        return Ok(Some(keys));
                    }
                    tracing::debug!(bytes = keys.len(), "input dropped after a discarded line");
                }
                () = tokio::time::sleep_until(until) => {
                    self.leftover = true;
                    return Ok(None);
                }
            }
        }
    }

    /// Before the user's next key: erases what came back of a discarded line at the
    /// shell's prompt (see `leftover`).
    pub(super) async fn erase_leftover(&mut self, io: &mut GateIo<'_>) -> Result<(), Stop> {
        if !self.leftover || self.screen.line_editor() != Some(true) {
            return Ok(());
        }
        self.leftover = false;
        if !self.keys.touched() && !self.at_prompt(&self.screen.cursor_line()) {
            tracing::debug!("erasing what came back of a discarded line");
            let since = self.screen.progress().0;
            self.send_control(io, b"\x05\x15").await?;
            self.await_redraw(since).await;
        }
        Ok(())
    }

    /// Waits (briefly) for the shell to redraw after keys of the bastion's own.
    async fn await_redraw(&self, since: u64) {
        let deadline = tokio::time::Instant::now() + REDRAW_WAIT;
        loop {
            let shown = self.screen.output.notified();
            let (seq, last_output) = self.screen.progress();
            let quiet_from = last_output.map(|t| tokio::time::Instant::from_std(t + ECHO_QUIET));
            if seq > since && quiet_from.is_some_and(|t| t <= tokio::time::Instant::now()) {
                return;
            }
            let wake = match quiet_from {
                Some(t) if seq > since => t.min(deadline),
                _ => deadline,
            };
            tokio::select! {
                () = shown => {}
                () = tokio::time::sleep_until(wake) => {
                    if tokio::time::Instant::now() >= deadline {
                        return;
                    }
                }
            }
        }
    }

    /// Sends control keys of the bastion's own upstream.
    async fn send_control(&self, io: &GateIo<'_>, keys: &'static [u8]) -> Result<(), Stop> {
        tokio::select! {
            result = io.upstream.data_bytes(Bytes::from_static(keys)) => result.map_err(|_| Stop),
            () = self.session.control.ended() => Err(Stop),
        }
    }

    /// A line editor is reading (bash, zsh, fish): Ctrl-C makes it drop the line and show
    /// a fresh prompt; input is dropped until that prompt is on screen.
    async fn interrupt_line(&mut self, io: &mut GateIo<'_>) -> Result<Option<Bytes>, Stop> {
        let blocked_line = self.screen.cursor_line();
        let deadline = Instant::now() + DISCARD_AFTER_BLOCK;
        let mut interrupts = 0;
        // The output count when the last Ctrl-C went up.
        let mut interrupted_at: Option<u64> = None;
        loop {
            let shown = self.screen.output.notified();
            if self.fresh_prompt(&blocked_line) {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                tracing::debug!("no fresh prompt after a discarded line");
                break;
            }
            let (seq, last_output) = self.screen.progress();
            let answered = interrupted_at.is_some_and(|at| seq > at);
            let quiet_from = last_output.map(|t| t + SWALLOWED_INTERRUPT);
            let swallowed = answered
                && quiet_from.is_some_and(|t| now >= t)
                && self
                    .screen
                    .cursor_line()
                    .text
                    .trim_start()
                    .starts_with("^C");
            if interrupted_at.is_none() || (swallowed && interrupts < INTERRUPTS) {
                if interrupts > 0 {
                    tracing::debug!("the shell swallowed the interrupt: sending it again");
                }
                interrupts += 1;
                interrupted_at = Some(seq);
                self.send_control(io, b"\x03").await?;
                continue;
            }
            let wake = match quiet_from {
                Some(t) if answered && interrupts < INTERRUPTS => t.min(deadline),
                _ => deadline,
            };
            tokio::select! {
                () = shown => {}
                () = tokio::time::sleep_until(wake.into()) => {}
                keys = self.next_keys(io) => {
                    // None: the client or the session is going away, nothing to protect.
                    let Some(keys) = keys else { return Ok(None) };
                    if self.fresh_prompt(&blocked_line) {
                        return Ok(Some(keys));
                    }
                    tracing::debug!("input dropped after a discarded line");
                }
            }
        }
        Ok(None)
    }

    /// The cursor is at the end of what looks like a prompt, on another line than the one
    /// that was blocked.
    fn fresh_prompt(&self, blocked_line: &CursorLine) -> bool {
        let line = self.screen.cursor_line();
        &line != blocked_line && self.at_prompt(&line)
    }

    /// `line` is a prompt with nothing typed after it, and the cursor at its end.
    fn at_prompt(&self, line: &CursorLine) -> bool {
        let before = line.before_cursor.trim_end();
        before == line.text.trim_end()
            && (before.ends_with(['$', '#', '%', '>'])
                || self
                    .prompt
                    .as_deref()
                    .is_some_and(|p| !p.trim().is_empty() && before == p.trim_end()))
    }
}
