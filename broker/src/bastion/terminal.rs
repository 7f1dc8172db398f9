//! A line editor for the bastion's own dialogs on a client's terminal (the activation
//! questions, the command prompt). The client's terminal is in raw mode — it expects the
//! far end to echo — so the bastion echoes what is typed and handles Backspace, Ctrl-U,
//! Ctrl-C and Ctrl-D itself. Cursor keys and other escape sequences are ignored.

use std::collections::VecDeque;

/// The longest line kept; anything typed beyond it is dropped.
const MAX_LINE: usize = 1024;
/// Lines and keys waiting to be read at most; a client pasting megabytes of newlines at a
/// prompt that is not reading does not grow the bastion's memory (later ones are dropped).
const MAX_QUEUED: usize = 64;

/// What the user did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// A line, without its line end.
    Line(String),
    /// Ctrl-C.
    Interrupt,
    /// Ctrl-D on an empty line.
    EndOfInput,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Escape {
    #[default]
    None,
    /// After ESC.
    Start,
    /// Inside `ESC [ …` until its final byte.
    Csi,
    /// After `ESC O`: one more byte.
    Ss3,
}

/// Turns raw terminal input into lines, and says what to echo.
#[derive(Debug, Default)]
pub struct LineEditor {
    line: String,
    /// The start of a UTF-8 character split across packets.
    partial: Vec<u8>,
    escape: Escape,
    /// The previous byte was CR (so a following LF is the same line end).
    after_cr: bool,
    keys: VecDeque<Key>,
}

impl LineEditor {
    /// Takes typed bytes; returns what to echo to the terminal. Completed lines and keys
    /// are queued for [`LineEditor::next_key`].
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut echo = Vec::new();
        for &byte in bytes {
            let after_cr = std::mem::take(&mut self.after_cr);
            match self.escape {
                Escape::Start => {
                    self.escape = match byte {
                        b'[' => Escape::Csi,
                        b'O' => Escape::Ss3,
                        _ => Escape::None,
                    };
                    continue;
                }
                Escape::Csi => {
                    if (0x40..=0x7e).contains(&byte) {
                        self.escape = Escape::None;
                    }
                    continue;
                }
                Escape::Ss3 => {
                    self.escape = Escape::None;
                    continue;
                }
                Escape::None => {}
            }
            match byte {
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(&mut echo);
                }
                b'\n' if after_cr => {}
                b'\n' => self.end_line(&mut echo),
                0x7f | 0x08 => {
                    self.partial.clear();
                    if self.line.pop().is_some() {
                        echo.extend_from_slice(b"\x08 \x08");
                    }
                }
                0x15 => {
                    for _ in 0..self.line.chars().count() {
                        echo.extend_from_slice(b"\x08 \x08");
                    }
                    self.line.clear();
                }
                0x03 => {
                    self.line.clear();
                    self.partial.clear();
                    echo.extend_from_slice(b"^C\r\n");
                    self.queue(Key::Interrupt);
                }
                0x04 if self.line.is_empty() => {
                    echo.extend_from_slice(b"\r\n");
                    self.queue(Key::EndOfInput);
                }
                0x1b => self.escape = Escape::Start,
                b'\t' => self.push_text(" ", &mut echo),
                0x00..=0x1f => {}
                _ => {
                    self.partial.push(byte);
                    match std::str::from_utf8(&self.partial) {
                        Ok(text) => {
                            let text = text.to_owned();
                            self.partial.clear();
                            self.push_text(&text, &mut echo);
                        }
                        // Incomplete: wait for the rest (at most 4 bytes make a character).
                        Err(e) if e.error_len().is_none() && self.partial.len() < 4 => {}
                        Err(_) => self.partial.clear(),
                    }
                }
            }
        }
        echo
    }

    fn push_text(&mut self, text: &str, echo: &mut Vec<u8>) {
        if self.line.len() + text.len() <= MAX_LINE {
            self.line.push_str(text);
            echo.extend_from_slice(text.as_bytes());
        }
    }

    fn end_line(&mut self, echo: &mut Vec<u8>) {
        echo.extend_from_slice(b"\r\n");
        self.partial.clear();
        let line = std::mem::take(&mut self.line);
        self.queue(Key::Line(line));
    }

    fn queue(&mut self, key: Key) {
        if self.keys.len() < MAX_QUEUED {
            self.keys.push_back(key);
        }
    }

    /// The next completed line or key, if any.
    pub fn next_key(&mut self) -> Option<Key> {
        self.keys.pop_front()
    }

    /// Drops whatever was typed ahead (before a question whose answer must be fresh).
    pub fn discard_typed_ahead(&mut self) {
        self.keys.clear();
        self.line.clear();
        self.partial.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(editor: &mut LineEditor) -> Vec<Key> {
        std::iter::from_fn(|| editor.next_key()).collect()
    }

    #[test]
    fn lines_are_echoed_and_ended_by_cr_lf_or_crlf() {
        let mut e = LineEditor::default();
        assert_eq!(e.feed(b"INC-1"), b"INC-1");
        assert_eq!(e.feed(b"\r\n2h\n"), b"\r\n2h\r\n");
        assert_eq!(
            keys(&mut e),
            vec![Key::Line("INC-1".into()), Key::Line("2h".into())]
        );
    }

    #[test]
    fn editing_keys_work() {
        let mut e = LineEditor::default();
        let echo = e.feed(b"ab\x7fc\r");
        assert_eq!(echo, b"ab\x08 \x08c\r\n");
        e.feed(b"wrong\x15right\r");
        e.feed(b"\x7f\x7f\r");
        assert_eq!(
            keys(&mut e),
            vec![
                Key::Line("ac".into()),
                Key::Line("right".into()),
                Key::Line(String::new())
            ]
        );
    }

    #[test]
    fn ctrl_c_and_ctrl_d() {
        let mut e = LineEditor::default();
        e.feed(b"half\x03");
        e.feed(b"x\x04\x7f\x04");
        assert_eq!(keys(&mut e), vec![Key::Interrupt, Key::EndOfInput]);
    }

    #[test]
    fn escape_sequences_are_ignored_and_utf8_may_be_split() {
        let mut e = LineEditor::default();
        e.feed(b"a\x1b[A\x1b[1;5Cb\x1bOPc");
        let word = "zürich".as_bytes();
        e.feed(&word[..2]);
        e.feed(&word[2..]);
        e.feed(b"\x7f\r");
        assert_eq!(keys(&mut e), vec![Key::Line("abczüric".into())]);
    }

    #[test]
    fn lines_are_bounded() {
        let mut e = LineEditor::default();
        e.feed(&vec![b'x'; MAX_LINE + 100]);
        e.feed(b"\r");
        assert_eq!(keys(&mut e), vec![Key::Line("x".repeat(MAX_LINE))]);
    }
}
