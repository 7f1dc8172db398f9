//! Text from one party on its way to someone else's terminal or log: a reason typed by a
//! requester shown to an approver, a command shown in `audit search`, a user name in a log
//! line. Control characters (C0, DEL, C1), bidirectional overrides and invisible characters
//! are shown as escapes, never as themselves, so nobody can move a cursor, recolour a
//! screen, forge a log line or make text read differently from what it is.
//!
//! Also the check of what a client asks the upstream to run: exactly what the rules see.

use std::borrow::Cow;
use std::fmt;

/// Whether `c` must not reach a terminal or a log as itself.
fn is_hazard(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{061C}'                 // Arabic letter mark
            | '\u{180E}'               // Mongolian vowel separator
            | '\u{200B}'..='\u{200F}'  // zero-width space, joiners, LRM, RLM
            | '\u{2028}' | '\u{2029}'  // line and paragraph separators
            | '\u{202A}'..='\u{202E}'  // bidi embeddings and overrides
            | '\u{2060}'..='\u{2064}'  // word joiner, invisible operators
            | '\u{2066}'..='\u{2069}'  // bidi isolates
            | '\u{FEFF}'               // zero-width no-break space
        )
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{1b}' => out.push_str("\\e"),
        c if (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
        c => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
    }
}

fn escape_where(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(|c| is_hazard(c) && !keep(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_hazard(c) && !keep(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `text` as one line: every hazard escaped, line ends included (`\n`).
pub fn one_line(text: &str) -> Cow<'_, str> {
    escape_where(text, |_| false)
}

/// `text` as lines: hazards escaped, but line ends and tabs kept (for the bastion's own
/// multi-line output, where fields were already made [`one_line`]).
pub fn lines(text: &str) -> Cow<'_, str> {
    escape_where(text, |c| c == '\n' || c == '\t')
}

/// Displays a string as [`one_line`]: for format strings and log fields
/// (`tracing::info!(user = %Shown(user), …)`).
#[derive(Debug, Clone, Copy)]
pub struct Shown<'a>(pub &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&one_line(self.0))
    }
}

/// Why a command (or subsystem name) a client sent cannot be run, if it cannot: the rules
/// must check exactly what the upstream will run, and sshd cuts a command at a NUL byte
/// (`touch /tmp/x\0` runs as `touch /tmp/x`) while a pattern anchored at the end sees more.
/// Tabs and line ends are fine (scripts passed as one argument have them).
pub fn command_problem(bytes: &[u8]) -> Option<String> {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => {
            return Some(format!(
                "it is not valid UTF-8 (at byte {}), so the command rules could not read it",
                error.valid_up_to()
            ));
        }
    };
    let (at, c) = text
        .char_indices()
        .find(|&(_, c)| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))?;
    let mut shown = String::new();
    push_escaped(&mut shown, c);
    Some(format!(
        "it contains the control character {shown} at byte {at}, which no SSH client sends in a command"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_bidi_and_invisibles_are_escaped() {
        assert_eq!(one_line("plain text, ümlaut"), "plain text, ümlaut");
        assert!(matches!(one_line("plain"), Cow::Borrowed(_)));
        assert_eq!(
            one_line("INC-1\u{1b}[2K\r\u{1b}[1Aalice → web02"),
            "INC-1\\e[2K\\r\\e[1Aalice → web02"
        );
        assert_eq!(one_line("a\nb\tc\u{7f}\u{9b}"), "a\\nb\\tc\\x7f\\x9b");
        assert_eq!(
            one_line("evil\u{202e}fdp.exe\u{200b}"),
            "evil\\u{202e}fdp.exe\\u{200b}"
        );
        assert_eq!(lines("a\nb\tc\u{1b}[31m"), "a\nb\tc\\e[31m");
        assert_eq!(
            format!("{}", Shown("bob\n2026 INFO forged")),
            "bob\\n2026 INFO forged"
        );
    }

    #[test]
    fn commands_with_nul_or_controls_or_bad_utf8_are_refused() {
        assert_eq!(command_problem(b"ls -la"), None);
        assert_eq!(
            command_problem(b"for i in 1 2\ndo echo $i\ndone\r\n\t"),
            None
        );
        assert_eq!(command_problem("echo zürich".as_bytes()), None);
        let nul = command_problem(b"touch /tmp/s\0").unwrap();
        assert!(nul.contains("\\x00 at byte 12"), "{nul}");
        assert!(command_problem(b"ls \x1b[2J").unwrap().contains("\\e"));
        assert!(command_problem(b"ls \xff").unwrap().contains("UTF-8"));
    }
}
