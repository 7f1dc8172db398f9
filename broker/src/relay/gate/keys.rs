//! The line being typed, as the keystrokes say: a model of a shell's line editor (readline's
//! emacs keys) that knows when it can no longer follow. Printable text, Backspace, Delete,
//! cursor keys, Home/End, Ctrl-A/E/B/F/U/K/W and bracketed pastes are modelled; Tab
//! completion, history (arrows, Ctrl-R/P/N), yanking and other escapes make the reading
//! *uncertain*: the screen then has the last word.
//!
//! Every byte a line editor may take as "run the line" is a [`Key::Submit`]: Enter (CR or
//! LF) and Ctrl-O (bash's operate-and-get-next, zsh's accept-line-and-down-history),
//! including when it interrupts an unfinished escape sequence — a control byte always ends
//! one, as it does for readline. A bracketed paste is only believed while the shell has
//! bracketed paste on (`ESC [ 200 ~` typed at `sh` is just noise, and its Enters run
//! lines), and the line model is bounded in size.

/// What a byte did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// Part of the line (or an editing key).
    Edit,
    /// Enter, or another key that runs the line.
    Submit,
    /// Ctrl-C: the shell drops the line.
    Cancel,
    /// Ctrl-X Ctrl-E: readline's edit-and-execute-command, which runs whatever is saved in
    /// an editor, past any Enter the gate could see.
    EditAndRun,
}

/// The most characters the model keeps for a line (pasted lines included); a longer one
/// cannot be followed and is marked so ([`KeyLine::overflowed`]).
pub const MAX_LINE_CHARS: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Escape {
    #[default]
    None,
    Start,
    /// `ESC [` parameters so far.
    Csi(u16),
    Ss3,
}

/// The keystroke model of the current line.
#[derive(Debug, Default)]
pub struct KeyLine {
    /// Lines completed inside a bracketed paste (the shell keeps them in one buffer).
    pasted: Vec<String>,
    line: Vec<char>,
    cursor: usize,
    uncertain: bool,
    escape: Escape,
    in_paste: bool,
    /// Whether the shell has bracketed paste on now (a paste start is believed only then).
    paste_allowed: bool,
    /// The last byte was Ctrl-X (readline's prefix key).
    after_ctrl_x: bool,
    /// The start of a UTF-8 character split across packets.
    partial: Vec<u8>,
    /// Anything typed since the line began.
    touched: bool,
    /// More was typed than the model keeps.
    overflowed: bool,
    /// Characters kept in `line` and `pasted`.
    chars: usize,
}

impl KeyLine {
    /// Says whether the shell has bracketed paste on (its output says so).
    pub fn set_paste_allowed(&mut self, allowed: bool) {
        self.paste_allowed = allowed;
    }

    /// Takes one byte from the client.
    pub fn feed(&mut self, byte: u8) -> Key {
        self.touched = true;
        let after_ctrl_x = std::mem::take(&mut self.after_ctrl_x);
        match self.escape {
            Escape::None => {}
            // A control byte (or DEL) ends any escape sequence and counts as itself.
            _ if byte < 0x20 || byte == 0x7f => {
                self.escape = Escape::None;
                self.uncertain = true;
            }
            Escape::Start => {
                self.escape = match byte {
                    b'[' => Escape::Csi(0),
                    b'O' => Escape::Ss3,
                    _ => {
                        // Meta-key editing (M-b, M-d, …): not followed.
                        self.uncertain = true;
                        Escape::None
                    }
                };
                return Key::Edit;
            }
            Escape::Csi(param) => {
                match byte {
                    b'0'..=b'9' => {
                        self.escape = Escape::Csi(
                            param
                                .saturating_mul(10)
                                .saturating_add(u16::from(byte - b'0')),
                        );
                        return Key::Edit;
                    }
                    // Other parameter and intermediate bytes (`;`, `?`, `<`, space, …).
                    0x20..=0x3f => {
                        self.escape = Escape::Csi(0);
                        return Key::Edit;
                    }
                    0x40..=0x7e => {
                        self.escape = Escape::None;
                        self.csi(param, byte);
                        return Key::Edit;
                    }
                    // Anything else ends the sequence and counts as itself.
                    _ => {
                        self.escape = Escape::None;
                        self.uncertain = true;
                    }
                }
            }
            Escape::Ss3 => {
                self.escape = Escape::None;
                self.cursor_key(byte);
                return Key::Edit;
            }
        }
        match byte {
            b'\r' | b'\n' if self.in_paste => {
                let line: String = std::mem::take(&mut self.line).into_iter().collect();
                self.pasted.push(line);
                self.cursor = 0;
            }
            b'\r' | b'\n' | 0x0f => return Key::Submit,
            0x03 => {
                self.reset();
                return Key::Cancel;
            }
            0x05 if after_ctrl_x => {
                self.uncertain = true;
                return Key::EditAndRun;
            }
            0x18 => {
                self.after_ctrl_x = true;
                self.uncertain = true;
            }
            0x1b => self.escape = Escape::Start,
            0x7f | 0x08 => {
                if self.cursor > 0 {
                    self.cursor -= 1;
                    self.line.remove(self.cursor);
                }
            }
            0x01 => self.cursor = 0,
            0x05 => self.cursor = self.line.len(),
            0x02 => self.cursor = self.cursor.saturating_sub(1),
            0x06 => self.cursor = (self.cursor + 1).min(self.line.len()),
            0x04 => {
                if self.cursor < self.line.len() {
                    self.line.remove(self.cursor);
                }
            }
            0x15 => {
                self.line.drain(..self.cursor);
                self.cursor = 0;
            }
            0x0b => self.line.truncate(self.cursor),
            0x17 => {
                // Back over spaces, then over the word (unix-word-rubout).
                let mut start = self.cursor;
                while start > 0 && self.line[start - 1] == ' ' {
                    start -= 1;
                }
                while start > 0 && self.line[start - 1] != ' ' {
                    start -= 1;
                }
                self.line.drain(start..self.cursor);
                self.cursor = start;
            }
            // Ctrl-L redraws; the line is unchanged.
            0x0c => {}
            0x00..=0x1f => self.uncertain = true,
            _ => self.text(byte),
        }
        Key::Edit
    }

    fn text(&mut self, byte: u8) {
        self.partial.push(byte);
        match std::str::from_utf8(&self.partial) {
            Ok(text) => {
                let count = text.chars().count();
                if self.chars + count > MAX_LINE_CHARS {
                    self.overflowed = true;
                    self.uncertain = true;
                } else {
                    for c in text.chars() {
                        self.line.insert(self.cursor, c);
                        self.cursor += 1;
                    }
                    self.chars += count;
                }
                self.partial.clear();
            }
            Err(e) if e.error_len().is_none() && self.partial.len() < 4 => {}
            Err(_) => {
                self.partial.clear();
                self.uncertain = true;
            }
        }
    }

    fn csi(&mut self, param: u16, last: u8) {
        match (param, last) {
            (200, b'~') if self.paste_allowed => self.in_paste = true,
            (201, b'~') => self.in_paste = false,
            (3, b'~') => {
                if self.cursor < self.line.len() {
                    self.line.remove(self.cursor);
                }
            }
            (1 | 7, b'~') => self.cursor = 0,
            (4 | 8, b'~') => self.cursor = self.line.len(),
            (_, byte) => self.cursor_key(byte),
        }
    }

    fn cursor_key(&mut self, byte: u8) {
        match byte {
            b'D' => self.cursor = self.cursor.saturating_sub(1),
            b'C' => self.cursor = (self.cursor + 1).min(self.line.len()),
            b'H' => self.cursor = 0,
            b'F' => self.cursor = self.line.len(),
            // Up and Down recall history; anything else is beyond this model.
            _ => self.uncertain = true,
        }
    }

    /// The lines the shell would run now (more than one after a bracketed paste), if this
    /// model could follow every key.
    pub fn reading(&self) -> Option<Vec<String>> {
        if self.uncertain || self.escape != Escape::None {
            return None;
        }
        let mut lines = self.pasted.clone();
        lines.push(self.line.iter().collect());
        Some(lines)
    }

    /// Whether more was typed than the model keeps (the line is too long to check).
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Whether the model lost track (completion, history…) and may be put right from the
    /// screen now: between keys, outside a paste.
    pub fn needs_sync(&self) -> bool {
        self.uncertain
            && !self.overflowed
            && self.escape == Escape::None
            && !self.in_paste
            && self.partial.is_empty()
            && self.pasted.is_empty()
    }

    /// Puts the model right from what the screen shows: the line and the cursor in it.
    pub fn resync(&mut self, line: &str, cursor: usize) {
        self.line = line.chars().take(MAX_LINE_CHARS).collect();
        while self.line.len() < cursor.min(MAX_LINE_CHARS) {
            self.line.push(' ');
        }
        self.chars = self.line.len();
        self.cursor = cursor.min(self.line.len());
        self.uncertain = false;
    }

    /// Whether anything was typed on this line yet.
    pub fn touched(&self) -> bool {
        self.touched
    }

    /// A new line starts (after Enter, Ctrl-C, or a discarded line).
    pub fn reset(&mut self) {
        let paste_allowed = self.paste_allowed;
        *self = Self::default();
        self.paste_allowed = paste_allowed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(bytes: &[u8]) -> (Option<Vec<String>>, Vec<Key>) {
        typed_with(bytes, true)
    }

    /// What `bytes` did, with the shell's bracketed paste on or off.
    fn typed_with(bytes: &[u8], paste_on: bool) -> (Option<Vec<String>>, Vec<Key>) {
        let mut line = KeyLine::default();
        line.set_paste_allowed(paste_on);
        let keys: Vec<Key> = bytes
            .iter()
            .map(|&b| line.feed(b))
            .filter(|k| *k != Key::Edit)
            .collect();
        (line.reading(), keys)
    }

    fn one(text: &str) -> Option<Vec<String>> {
        Some(vec![text.to_owned()])
    }

    #[test]
    fn plain_typing_and_enter() {
        assert_eq!(typed(b"ls -la\r"), (one("ls -la"), vec![Key::Submit]));
    }

    #[test]
    fn editing_keys_are_followed() {
        assert_eq!(typed(b"touch forbiddex\x7fn").0, one("touch forbidden"));
        // Insert in the middle with the cursor keys.
        assert_eq!(
            typed(b"tuch x\x1b[D\x1b[D\x1b[D\x1b[D\x1b[Do").0,
            one("touch x")
        );
        assert_eq!(typed(b"rm x\x01sudo \x05 y").0, one("sudo rm x y"));
        assert_eq!(typed(b"junk\x15echo hi").0, one("echo hi"));
        assert_eq!(typed(b"echo one two\x17three").0, one("echo one three"));
        assert_eq!(typed(b"abc\x1b[D\x1b[D\x0b").0, one("a"));
        assert_eq!(typed(b"abc\x1b[H\x1b[3~").0, one("bc"));
        assert_eq!(typed(b"ab\x1bOH>\x1bOF<").0, one(">ab<"));
        assert_eq!(typed("zürich".as_bytes()).0, one("zürich"));
    }

    #[test]
    fn history_completion_and_meta_keys_make_it_uncertain() {
        assert_eq!(typed(b"\x1b[A").0, None);
        assert_eq!(typed(b"tou\t").0, None);
        assert_eq!(typed(b"\x12rm").0, None);
        assert_eq!(typed(b"echo a\x1bb").0, None);
    }

    #[test]
    fn the_screen_puts_an_uncertain_line_right() {
        let mut line = KeyLine::default();
        for &b in b"ls /tmp\x1b[A" {
            line.feed(b);
        }
        assert!(line.needs_sync());
        // The shell recalled "ls /etc"; the cursor is at its end.
        line.resync("ls /etc", 7);
        for &b in b"\x01\x1b[3~\x1b[3~touch" {
            line.feed(b);
        }
        assert_eq!(line.reading(), one("touch /etc"));
        line.resync("x", 3);
        assert_eq!(line.reading(), one("x  "));
    }

    #[test]
    fn ctrl_c_starts_over() {
        let (reading, keys) = typed(b"touch forbidden\x03ls");
        assert_eq!(reading, one("ls"));
        assert_eq!(keys, vec![Key::Cancel]);
    }

    #[test]
    fn a_bracketed_paste_keeps_its_lines_until_enter() {
        let (reading, keys) = typed(b"\x1b[200~ls\rtouch x\r\x1b[201~");
        assert_eq!(
            reading,
            Some(vec!["ls".to_owned(), "touch x".to_owned(), String::new()])
        );
        assert!(keys.is_empty(), "no Enter inside the paste");
        let (_, keys) = typed(b"\x1b[200~ls\x1b[201~\r");
        assert_eq!(keys, vec![Key::Submit]);
    }

    #[test]
    fn every_key_that_runs_a_line_is_a_submit() {
        // Ctrl-O: bash's operate-and-get-next runs the line without an Enter.
        assert_eq!(typed(b"touch x\x0f").1, vec![Key::Submit]);
        // An Enter inside an unfinished escape sequence is still an Enter.
        for sequence in [
            &b"\x1b[?"[..],
            b"\x1b[;",
            b"\x1b[",
            b"\x1b[12",
            b"\x1bO",
            b"\x1b",
        ] {
            let mut bytes = b"touch x".to_vec();
            bytes.extend_from_slice(sequence);
            bytes.push(b'\r');
            assert_eq!(typed(&bytes).1, vec![Key::Submit], "{sequence:?}");
        }
        // A complete sequence still does its job.
        assert_eq!(typed(b"ab\x1b[1;5D\x1b[?25hc").1, vec![]);
    }

    #[test]
    fn a_paste_start_is_believed_only_while_the_shell_has_bracketed_paste_on() {
        // At sh (no bracketed paste), `ESC [ 200 ~` is noise and the Enter runs the line.
        let (_, keys) = typed_with(b"\x1b[200~touch x\rls\r", false);
        assert_eq!(keys, vec![Key::Submit, Key::Submit]);
        let (_, keys) = typed_with(b"\x1b[200~touch x\rls\r", true);
        assert!(keys.is_empty());
    }

    #[test]
    fn ctrl_x_ctrl_e_is_seen_and_a_huge_line_overflows() {
        assert_eq!(typed(b"ls\x18\x05").1, vec![Key::EditAndRun]);
        assert_eq!(typed(b"ls\x05").1, vec![]);
        let mut line = KeyLine::default();
        for _ in 0..(MAX_LINE_CHARS + 10) {
            line.feed(b'a');
        }
        assert!(line.overflowed());
        assert_eq!(line.reading(), None);
        assert_eq!(line.line.len(), MAX_LINE_CHARS);
    }
}
