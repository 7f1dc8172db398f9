//! Words from the bastion itself on the client's terminal: `portcullis: <message>`.
//!
//! On a PTY the message goes to stdout with CRLF line ends (the terminal is in raw mode
//! and stderr is merged anyway); without one it goes to stderr so it never mixes with the
//! command's own output that a script may be capturing.

use bytes::Bytes;

/// Extended-data type code for stderr (RFC 4254 §5.2).
pub const STDERR: u32 = 1;

/// Where a piece of text goes and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    /// `Some(STDERR)` for stderr, `None` for stdout.
    pub ext: Option<u32>,
    /// The bytes to send.
    pub bytes: Bytes,
}

/// A bastion message, prefixed with `portcullis: `. Control characters in it (from text
/// another party typed) are shown escaped, never sent to the terminal as themselves.
pub fn message(text: &str, pty: bool) -> Text {
    let text = crate::text::lines(text);
    if pty {
        Text {
            ext: None,
            bytes: Bytes::from(format!("\r\nportcullis: {text}\r\n")),
        }
    } else {
        Text {
            ext: Some(STDERR),
            bytes: Bytes::from(format!("portcullis: {text}\n")),
        }
    }
}

/// Plain output (the menu's), with line ends fixed for a PTY and control characters
/// escaped.
pub fn output(text: &str, pty: bool) -> Text {
    let text = crate::text::lines(text);
    let bytes = if pty {
        text.replace('\n', "\r\n")
    } else {
        text.into_owned()
    };
    Text {
        ext: None,
        bytes: Bytes::from(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pty_and_plain_forms() {
        let on_pty = message("no access to web01: there is no such target", true);
        assert_eq!(on_pty.ext, None);
        assert_eq!(
            &on_pty.bytes[..],
            b"\r\nportcullis: no access to web01: there is no such target\r\n"
        );
        let plain = message("x", false);
        assert_eq!(plain.ext, Some(STDERR));
        assert_eq!(&plain.bytes[..], b"portcullis: x\n");
        assert_eq!(&output("a\nb\n", true).bytes[..], b"a\r\nb\r\n");
        assert_eq!(
            &message("killed: \u{1b}[2Jbye", false).bytes[..],
            b"portcullis: killed: \\e[2Jbye\n"
        );
    }
}
