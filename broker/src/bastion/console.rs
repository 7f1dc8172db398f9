//! A conversation between the bastion and a user on one of their channels: the activation
//! questions and the command prompt. The handler passes the client's events on; the
//! console echoes typing (through [`LineEditor`]), asks questions and says things.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use russh::server::Msg;
use russh::{ChannelWriteHalf, Pty, Sig};
use tokio::sync::mpsc;

use super::terminal::{Key, LineEditor};
use crate::live::SessionShared;

/// How many client events may wait for the console (or the relay behind it).
pub const EVENT_QUEUE: usize = 64;

/// What the client did on a channel the bastion is answering itself.
#[derive(Debug)]
pub enum ClientEvent {
    /// Keystrokes or stdin.
    Data(Bytes),
    /// No more input.
    Eof,
    /// The client closed the channel.
    Close,
    /// The terminal was resized.
    WindowChange {
        /// Columns.
        cols: u32,
        /// Rows.
        rows: u32,
        /// Width in pixels.
        pix_width: u32,
        /// Height in pixels.
        pix_height: u32,
    },
    /// A signal for the (future) remote process.
    Signal(Sig),
}

/// The terminal the client asked for (replayed upstream once a target is reached).
#[derive(Debug, Clone)]
pub struct PtyParams {
    /// `TERM`.
    pub term: String,
    /// Columns.
    pub cols: u32,
    /// Rows.
    pub rows: u32,
    /// Width in pixels.
    pub pix_width: u32,
    /// Height in pixels.
    pub pix_height: u32,
    /// Terminal modes.
    pub modes: Vec<(Pty, u32)>,
}

/// Why a question got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abort {
    /// Ctrl-C.
    Interrupted,
    /// Ctrl-D on an empty line.
    EndOfInput,
    /// The client closed the channel or its input.
    Gone,
    /// The session is ending (kill, lock, shutdown).
    Ending,
    /// Nothing was typed for too long.
    TimedOut,
}

/// One channel, in conversation.
pub struct Console {
    writer: ChannelWriteHalf<Msg>,
    input: mpsc::Receiver<ClientEvent>,
    editor: LineEditor,
    session: Arc<SessionShared>,
    /// The terminal, kept up to date with resizes.
    pub pty: PtyParams,
}

impl Console {
    /// A console on `writer`, fed by `input`.
    pub fn new(
        writer: ChannelWriteHalf<Msg>,
        input: mpsc::Receiver<ClientEvent>,
        session: Arc<SessionShared>,
        pty: PtyParams,
    ) -> Self {
        Self {
            writer,
            input,
            editor: LineEditor::default(),
            session,
            pty,
        }
    }

    /// Writes `text`, with line ends as CRLF (the terminal is raw) and control characters
    /// escaped (text from other people passes through here). Gives up if the session ends
    /// while the client's window is full.
    pub async fn write(&self, text: &str) {
        let bytes = Bytes::from(crate::text::lines(text).replace('\n', "\r\n"));
        tokio::select! {
            _ = self.writer.data_bytes(bytes) => {}
            () = self.session.control.ended() => {}
        }
    }

    /// Says `text` from the bastion, on lines of its own: `portcullis: text`.
    pub async fn say(&self, text: &str) {
        self.write(&format!("portcullis: {text}\n")).await;
    }

    /// Shows `prompt` and returns the line typed (trimmed), within `patience`.
    pub async fn ask(&mut self, prompt: &str, patience: Duration) -> Result<String, Abort> {
        // Armed before the prompt is shown: the patience counts from what the user sees.
        let mut deadline = self.session.clock.sleep(patience);
        self.write(prompt).await;
        loop {
            match self.editor.next_key() {
                Some(Key::Line(line)) => return Ok(line.trim().to_owned()),
                Some(Key::Interrupt) => return Err(Abort::Interrupted),
                Some(Key::EndOfInput) => return Err(Abort::EndOfInput),
                None => {}
            }
            tokio::select! {
                event = self.input.recv() => self.take(event).await?,
                () = &mut deadline => {
                    self.write("\n").await;
                    return Err(Abort::TimedOut);
                }
                () = self.session.control.ended() => return Err(Abort::Ending),
            }
        }
    }

    /// Waits for Ctrl-C (or Ctrl-D) while something else is awaited; anything else typed
    /// is ignored. Returns why it stopped waiting.
    pub async fn interrupted(&mut self) -> Abort {
        loop {
            match self.editor.next_key() {
                Some(Key::Interrupt | Key::EndOfInput) => return Abort::Interrupted,
                Some(Key::Line(_)) => continue,
                None => {}
            }
            tokio::select! {
                event = self.input.recv() => {
                    if let Err(abort) = self.take_quietly(event) {
                        return abort;
                    }
                }
                () = self.session.control.ended() => return Abort::Ending,
            }
        }
    }

    /// Applies one client event; typed data is echoed.
    async fn take(&mut self, event: Option<ClientEvent>) -> Result<(), Abort> {
        if let Some(ClientEvent::Data(data)) = &event {
            self.session.touch_input();
            let echo = self.editor.feed(data);
            if !echo.is_empty() {
                tokio::select! {
                    _ = self.writer.data_bytes(Bytes::from(echo)) => {}
                    () = self.session.control.ended() => return Err(Abort::Ending),
                }
            }
            return Ok(());
        }
        self.take_quietly(event)
    }

    /// Applies one client event without echoing typed data.
    fn take_quietly(&mut self, event: Option<ClientEvent>) -> Result<(), Abort> {
        match event {
            Some(ClientEvent::Data(data)) => {
                self.editor.feed(&data);
                Ok(())
            }
            Some(ClientEvent::WindowChange {
                cols,
                rows,
                pix_width,
                pix_height,
            }) => {
                self.pty.cols = cols;
                self.pty.rows = rows;
                self.pty.pix_width = pix_width;
                self.pty.pix_height = pix_height;
                Ok(())
            }
            Some(ClientEvent::Signal(_)) => Ok(()),
            Some(ClientEvent::Eof | ClientEvent::Close) | None => Err(Abort::Gone),
        }
    }

    /// Ends the conversation: exit status, end of output, channel closed.
    pub async fn close(self, status: u32) {
        let finish = async {
            let _ = self.writer.exit_status(status).await;
            let _ = self.writer.eof().await;
            let _ = self.writer.close().await;
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), finish).await;
    }

    /// Hands the channel on (to a relay): its writer and the client's events.
    pub fn into_parts(
        self,
    ) -> (
        ChannelWriteHalf<Msg>,
        mpsc::Receiver<ClientEvent>,
        PtyParams,
    ) {
        (self.writer, self.input, self.pty)
    }
}
