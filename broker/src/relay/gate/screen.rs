//! The client's terminal as the upstream drew it: a vt100 emulator fed with the channel's
//! output, read when a line is about to run.
//!
//! The downlink only appends output to a bounded buffer (and notes switches to and from the
//! alternate screen, which is a cheap scan for ESC); the emulator parses it when someone
//! asks. A flood of output (`cat` of a large file) therefore costs a copy, not a parse, and
//! only its tail — which is all a screen can show — is parsed at the next Enter.
//!
//! The emulator is made at the first read, and parked when the terminal goes idle (the
//! uplink calls [`Screen::park`]): its screen kept as the escape sequences that redraw it (a
//! prompt's worth of bytes), not as its grid of cells (32 bytes a cell, 61 KiB for 80 × 24,
//! held by every idle terminal). The next read redraws it on a fresh emulator. While lines
//! are being typed it stays: a read is then an incremental parse, not a redraw.

use std::collections::VecDeque;
use std::num::NonZeroU16;
use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::Notify;

/// Output kept unparsed at most; older output cannot be on the screen any more.
const MAX_PENDING: usize = 256 * 1024;
/// The emulator's largest size. The client chooses its terminal's size (up to 65535 × 65535
/// in the protocol) and the emulator allocates every cell of it, twice (main and alternate
/// screen, 32 bytes a cell): clamped, the worst case is 2.5 MB per terminal. The real size
/// still goes upstream; a line wider than this is read as wrapped, which the keystroke model
/// cross-checks.
pub const MAX_COLS: u16 = 400;
/// See [`MAX_COLS`].
pub const MAX_ROWS: u16 = 100;

/// Shared by the downlink (writes output) and the uplink's gate (reads the screen).
#[derive(Debug)]
pub struct Screen {
    state: Mutex<State>,
    /// Woken on every piece of output.
    pub output: Notify,
}

struct State {
    /// The emulator while it is in use; `None` while parked.
    parser: Option<vt100::Parser>,
    /// The parked screen: what redraws it on a fresh emulator (contents, cursor, modes).
    parked: Vec<u8>,
    pending: VecDeque<u8>,
    /// `pending` lost its beginning: parse its tail on a fresh emulator.
    truncated: bool,
    alternate: AlternateScan,
    /// Output pieces so far.
    seq: u64,
    last_output: Option<Instant>,
    size: (NonZeroU16, NonZeroU16),
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("pending", &self.pending.len())
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// A line of the screen around the cursor.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CursorLine {
    /// The logical line the cursor is on (wrapped rows joined), without trailing blanks.
    pub text: String,
    /// How much of `text` lies before the cursor.
    pub before_cursor: String,
}

/// A client's dimension for the emulator: `fallback` for zero, at most `max`.
fn dimension(value: u32, fallback: u16, max: u16) -> NonZeroU16 {
    let clamped = u16::try_from(value).unwrap_or(u16::MAX).min(max);
    NonZeroU16::new(clamped)
        .or(NonZeroU16::new(fallback))
        .unwrap_or(NonZeroU16::MIN)
}

impl Screen {
    /// A screen of `rows` × `cols` (the client's pty).
    pub fn new(rows: u32, cols: u32) -> Self {
        let size = (dimension(rows, 24, MAX_ROWS), dimension(cols, 80, MAX_COLS));
        Self {
            state: Mutex::new(State {
                parser: None,
                parked: Vec::new(),
                pending: VecDeque::new(),
                truncated: false,
                alternate: AlternateScan::default(),
                seq: 0,
                last_output: None,
                size,
            }),
            output: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Output from the upstream, on its way to the client.
    pub fn feed(&self, bytes: &[u8]) {
        {
            let mut state = self.state();
            state.alternate.scan(bytes);
            state.append(bytes);
            state.seq += 1;
            state.last_output = Some(Instant::now());
        }
        self.output.notify_waiters();
    }

    /// Words of the bastion's own shown on the terminal (a refusal, a warning): the screen
    /// must show them where the client does, but they are not the upstream's reaction to
    /// anything, so they do not count as output.
    pub fn feed_own(&self, bytes: &[u8]) {
        self.state().append(bytes);
    }

    /// The client's terminal was resized.
    pub fn resize(&self, rows: u32, cols: u32) {
        let mut state = self.state();
        state.size = (dimension(rows, 24, MAX_ROWS), dimension(cols, 80, MAX_COLS));
        let (rows, cols) = state.size;
        state.parse().screen_mut().set_size(rows, cols);
    }

    /// Whether the emulator is made (not parked).
    pub fn is_live(&self) -> bool {
        self.state().parser.is_some()
    }

    /// Whether [`Screen::park`] would park it: it is made, and the main screen shows (a
    /// redraw carries only the screen that shows, and under a full-screen program the main
    /// screen's lines must survive for when it exits).
    pub fn is_parkable(&self) -> bool {
        let state = self.state();
        state
            .parser
            .as_ref()
            .is_some_and(|p| !p.screen().alternate_screen())
            && !state.alternate.on
    }

    /// Parks the emulator until the next read (see the module's documentation), unless the
    /// alternate screen shows.
    pub fn park(&self) {
        if self.is_parkable() {
            self.state().park();
        }
    }

    /// Output pieces seen so far, and when the last arrived.
    pub fn progress(&self) -> (u64, Option<Instant>) {
        let state = self.state();
        (state.seq, state.last_output)
    }

    /// Whether a full-screen program (vim, less, top) has the alternate screen.
    pub fn alternate(&self) -> bool {
        self.state().alternate.on
    }

    /// Whether the alternate screen is on and nothing since it came on says a shell runs
    /// commands there: a shell switches bracketed paste off to run each command, a
    /// full-screen program leaves it as it is until it exits.
    pub fn alternate_by_program(&self) -> bool {
        let scan = &self.state().alternate;
        scan.on && !scan.shell_seen
    }

    /// Whether a line editor is reading a line now, as far as the output tells: `Some(true)`
    /// while bracketed paste is on, `Some(false)` while it is off (a command runs), `None`
    /// when the shell never switched it.
    pub fn line_editor(&self) -> Option<bool> {
        self.state().alternate.paste
    }

    /// How many lines a line editor has started reading (switched bracketed paste on) so far:
    /// unchanged since an Enter, the shell has not come back for the next line yet.
    pub fn line_editor_starts(&self) -> u64 {
        self.state().alternate.paste_starts
    }

    /// The logical line under the cursor.
    pub fn cursor_line(&self) -> CursorLine {
        Self::read_cursor_line(self.state().parse().screen())
    }

    fn read_cursor_line(screen: &vt100::Screen) -> CursorLine {
        let (row, col) = screen.cursor_position();
        let (_, cols) = screen.size();
        let cols = cols.get();
        let mut first = row;
        while first > 0 && screen.row_wrapped(first - 1) {
            first -= 1;
        }
        let mut last = row;
        let (rows, _) = screen.size();
        while last + 1 < rows.get() && screen.row_wrapped(last) {
            last += 1;
        }
        let mut text = String::new();
        let mut before_cursor = String::new();
        for r in first..=last {
            let full = row_text(screen, r, cols);
            if r < row {
                before_cursor.push_str(&full);
            } else if r == row {
                before_cursor.push_str(&row_text(screen, r, col.min(cols)));
            }
            text.push_str(&full);
        }
        CursorLine {
            text: text.trim_end().to_owned(),
            before_cursor,
        }
    }
}

/// The first `width` columns of `row` as text, as vt100's `Screen::rows` gives them (blanks
/// between contents as spaces, none at the end, a wide character once) — for one row, from
/// its cells: `rows` makes a string of every row above it first, and a read happens at every
/// piece of output while a line is being settled.
fn row_text(screen: &vt100::Screen, row: u16, width: u16) -> String {
    let mut text = String::new();
    let mut blanks = 0;
    let mut col = 0;
    while col < width {
        let Some(cell) = screen.cell(row, col) else {
            break;
        };
        if cell.has_contents() {
            text.extend(std::iter::repeat_n(' ', blanks));
            blanks = 0;
            text.push_str(cell.contents());
            // The second half of a wide character holds nothing of its own.
            col += if cell.is_wide() { 2 } else { 1 };
        } else {
            blanks += 1;
            col += 1;
        }
    }
    text
}

impl State {
    /// Queues bytes for the emulator, keeping only the last `MAX_PENDING` of a flood.
    fn append(&mut self, bytes: &[u8]) {
        if bytes.len() >= MAX_PENDING {
            self.pending.clear();
            self.pending.extend(&bytes[bytes.len() - MAX_PENDING..]);
            self.truncated = true;
        } else {
            let excess = (self.pending.len() + bytes.len()).saturating_sub(MAX_PENDING);
            if excess > 0 {
                self.pending.drain(..excess);
                self.truncated = true;
            }
            self.pending.extend(bytes);
        }
    }

    /// Brings the emulator up to date with the pending output, unparking it first.
    fn parse(&mut self) -> &mut vt100::Parser {
        let (rows, cols) = self.size;
        let parked = std::mem::take(&mut self.parked);
        let alternate = self.alternate.on;
        let truncated = std::mem::take(&mut self.truncated);
        if truncated {
            // The pending output lost its beginning: only its tail can be on the screen, so
            // the emulator (or its parked screen) is stale.
            self.parser = None;
        }
        let parser = self.parser.get_or_insert_with(|| {
            let mut parser = vt100::Parser::new(rows, cols, 0);
            if truncated {
                if alternate {
                    parser.process(b"\x1b[?1049h");
                }
            } else {
                // Parked only while the main screen showed: the redraw is the main screen's,
                // and a switch to the alternate screen since then is in the pending output.
                parser.process(&parked);
            }
            parser
        });
        let (front, back) = self.pending.as_slices();
        parser.process(front);
        parser.process(back);
        self.pending.clear();
        parser
    }

    /// Parks the emulator: keeps what redraws its screen and frees its grid, and gives back
    /// what a flood made the pending buffer grow to.
    fn park(&mut self) {
        if let Some(parser) = self.parser.take() {
            self.parked = parser.screen().state_formatted().into_bytes();
        }
        // Empty after the parse: nothing of a flood's size stays held by an idle terminal.
        self.pending.shrink_to_fit();
    }
}

/// Follows switches to and from the alternate screen (`CSI ? 1049 h/l`, also 1047 and 47)
/// and of bracketed paste (`CSI ? 2004 h/l`) across pieces of output, by looking only at
/// escape sequences.
#[derive(Debug, Default)]
struct AlternateScan {
    on: bool,
    /// Bracketed paste as last switched: bash (5.1 and later), zsh and fish turn it on while
    /// their line editor reads a line and off while a command runs; `None` until seen.
    paste: Option<bool>,
    /// How many times bracketed paste was switched on: each is a line editor starting to
    /// read a new line.
    paste_starts: u64,
    /// Bracketed paste was switched off while the alternate screen stayed on: a shell ran
    /// a command there. Cleared each time the alternate screen comes on.
    shell_seen: bool,
    /// An escape sequence cut off at the end of the last piece.
    carry: Vec<u8>,
}

impl AlternateScan {
    const LONGEST: usize = 8; // "\x1b[?1049h"

    fn scan(&mut self, bytes: &[u8]) {
        if !self.carry.is_empty() {
            let take = bytes.len().min(Self::LONGEST);
            let mut joined = std::mem::take(&mut self.carry);
            joined.extend_from_slice(&bytes[..take]);
            // Only sequences that start in the carried part are looked at here.
            let starts = joined.len() - take;
            for at in memchr::memchr_iter(0x1b, &joined[..starts]) {
                self.sequence(&joined[at..]);
            }
        }
        for at in memchr::memchr_iter(0x1b, bytes) {
            let rest = &bytes[at..];
            if rest.len() < Self::LONGEST && !self.sequence(rest) {
                self.carry = rest.to_vec();
            } else {
                self.sequence(rest);
            }
        }
    }

    /// Applies the sequence at the start of `text`; false if `text` may be its cut-off start.
    fn sequence(&mut self, text: &[u8]) -> bool {
        for (code, on) in [
            (&b"\x1b[?1049h"[..], true),
            (b"\x1b[?1049l", false),
            (b"\x1b[?1047h", true),
            (b"\x1b[?1047l", false),
            (b"\x1b[?47h", true),
            (b"\x1b[?47l", false),
        ] {
            if text.starts_with(code) {
                if on && !self.on {
                    self.shell_seen = false;
                }
                self.on = on;
                return true;
            }
        }
        for (code, on) in [(&b"\x1b[?2004h"[..], true), (b"\x1b[?2004l", false)] {
            if text.starts_with(code) {
                self.paste = Some(on);
                self.paste_starts += u64::from(on);
                if !on && self.on {
                    self.shell_seen = true;
                }
                return true;
            }
        }
        let prefix_of_one = [
            &b"\x1b[?1049h"[..],
            b"\x1b[?1047h",
            b"\x1b[?47h",
            b"\x1b[?2004h",
        ]
        .iter()
        .any(|code| {
            let n = text.len().min(code.len());
            text[..n] == code[..n] && text.len() < code.len()
        }) || text.len() < 2;
        !prefix_of_one
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line a never-parked emulator shows, for comparison.
    fn unparked_line(rows: u32, cols: u32, output: &[u8]) -> CursorLine {
        let mut parser = vt100::Parser::new(
            dimension(rows, 24, MAX_ROWS),
            dimension(cols, 80, MAX_COLS),
            0,
        );
        parser.process(output);
        Screen::read_cursor_line(parser.screen())
    }

    #[test]
    fn a_parked_screen_reads_as_if_it_had_never_been_parked() {
        // Prompts in colour, typing, line editing (cursor left, erase to the end, insert),
        // a line wider than the terminal, a cursor left in the pending-wrap column, the
        // alternate screen and back, bracketed paste, a wide character.
        let pieces: &[&[u8]] = &[
            b"\x1b[?2004h\x1b[01;32mroot@vm\x1b[00m:\x1b[01;34m~\x1b[00m# ",
            b"ls -la /et",
            b"c\x08\x08\x08\x1b[K",
            b"\x1b[1@X",
            b"\r\n\x1b[?2004ltotal 0\r\n\x1b[?2004hroot@vm:~# ",
            &[b'y'; 130],
            b"\r\nroot@vm:~# 1234567890123456789012345678901234567890123456789012345678901234567890123456789",
            b"0",
            b"\x1b[?1049h\x1b[Hvim screen",
            b"\x1b[?1049l\r\nroot@vm:~# caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 ok",
        ];
        let screen = Screen::new(24, 80);
        let mut so_far = Vec::new();
        for piece in pieces {
            screen.feed(piece);
            so_far.extend_from_slice(piece);
            let line = screen.cursor_line();
            assert!(screen.is_live());
            let on_alternate = screen.alternate();
            screen.park();
            // Never parked while the alternate screen shows: the main screen must survive.
            assert_eq!(screen.is_live(), on_alternate, "after {piece:?}");
            assert_eq!(line, unparked_line(24, 80, &so_far), "after {piece:?}");
            // Each row read from its cells is what vt100 makes of it, at every width.
            let mut parser =
                vt100::Parser::new(dimension(24, 24, MAX_ROWS), dimension(80, 80, MAX_COLS), 0);
            parser.process(&so_far);
            let reference = parser.screen();
            for width in [0, 1, 5, 79, 80] {
                for (row, expected) in reference.rows(0, width).enumerate() {
                    assert_eq!(
                        row_text(reference, row as u16, width),
                        expected,
                        "row {row} width {width}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_line_under_the_cursor_with_its_prompt() {
        let screen = Screen::new(24, 80);
        screen.feed(b"last output\r\nroot@vm:~# ls -la");
        assert_eq!(
            screen.cursor_line(),
            CursorLine {
                text: "root@vm:~# ls -la".into(),
                before_cursor: "root@vm:~# ls -la".into()
            }
        );
        // The cursor moved back into the line (readline redraws with BS).
        screen.feed(b"\x08\x08\x08");
        let line = screen.cursor_line();
        assert_eq!(line.text, "root@vm:~# ls -la");
        assert_eq!(line.before_cursor, "root@vm:~# ls ");
    }

    #[test]
    fn a_huge_terminal_is_clamped_for_the_emulator() {
        let screen = Screen::new(65535, 65535);
        assert_eq!(
            screen.state().size,
            (
                NonZeroU16::new(MAX_ROWS).unwrap(),
                NonZeroU16::new(MAX_COLS).unwrap()
            )
        );
        screen.resize(u32::MAX, 0);
        let (rows, cols) = screen.state().parse().screen().size();
        assert_eq!((rows.get(), cols.get()), (MAX_ROWS, 80));
        screen.feed(b"$ echo hi");
        assert_eq!(screen.cursor_line().text, "$ echo hi");
    }

    #[test]
    fn wrapped_lines_are_joined() {
        let screen = Screen::new(5, 10);
        screen.feed(b"$ echo 0123456789abcdef");
        assert_eq!(screen.cursor_line().text, "$ echo 0123456789abcdef");
    }

    #[test]
    fn a_flood_is_kept_only_by_its_tail() {
        let screen = Screen::new(24, 80);
        let flood = "line of output\r\n".repeat(100_000);
        screen.feed(flood.as_bytes());
        screen.feed(b"$ whoami");
        assert_eq!(screen.cursor_line().text, "$ whoami");
        assert!(screen.state().pending.is_empty());
    }

    #[test]
    fn the_alternate_screen_is_followed_even_across_pieces_and_floods() {
        let screen = Screen::new(24, 80);
        screen.feed(b"$ vim\r\n\x1b[?10");
        screen.feed(b"49h\x1b[H~ text");
        assert!(screen.alternate());
        screen.feed("x".repeat(MAX_PENDING * 2).as_bytes());
        assert!(screen.alternate());
        screen.cursor_line();
        assert!(screen.state().parse().screen().alternate_screen());
        screen.feed(b"\x1b[?1049l$ ");
        assert!(!screen.alternate());
        screen.feed(b"\x1b[?47h");
        assert!(screen.alternate());
    }

    #[test]
    fn a_shell_running_commands_in_the_alternate_screen_is_told_from_a_program() {
        let screen = Screen::new(24, 80);
        // vim: alternate screen and bracketed paste on, nothing switched off until it exits.
        screen.feed(b"\x1b[?2004l\x1b[?1049h\x1b[?1h\x1b=\x1b[?2004h~\r\n~");
        assert!(screen.alternate_by_program());
        screen.feed(b"\x1b[?2004l\x1b[?1049l\x1b[?2004hroot@vm:~# ");
        assert!(!screen.alternate());
        // printf '\e[?1049h' at bash: the next command switches bracketed paste off.
        screen.feed(b"\x1b[?2004l\r\x1b[?1049h\x1b[?2004hroot@vm:~# ");
        assert!(screen.alternate_by_program());
        screen.feed(b"ls\r\n\x1b[?2004l\rfile\r\n\x1b[?2004hroot@vm:~# ");
        assert!(screen.alternate() && !screen.alternate_by_program());
        // A program entering the alternate screen anew is a program again.
        screen.feed(b"\x1b[?1049l\x1b[?1049h");
        assert!(screen.alternate_by_program());
    }

    #[test]
    fn the_line_editor_is_known_by_bracketed_paste() {
        let screen = Screen::new(24, 80);
        assert_eq!(screen.line_editor(), None);
        screen.feed(b"\x1b[?2004hroot@vm:~# ");
        assert_eq!(screen.line_editor(), Some(true));
        assert_eq!(screen.line_editor_starts(), 1);
        screen.feed(b"sleep 9\r\n\x1b[?20");
        screen.feed(b"04l\r");
        assert_eq!(screen.line_editor(), Some(false));
        // Our own words do not change what the shell said.
        screen.feed_own(b"\x1b[?2004h");
        assert_eq!(screen.line_editor(), Some(false));
        assert_eq!(screen.line_editor_starts(), 1);
        screen.feed(b"\x1b[?2004hroot@vm:~# ");
        assert_eq!(screen.line_editor_starts(), 2);
    }
}
