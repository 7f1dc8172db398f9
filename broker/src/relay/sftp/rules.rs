//! File rules (`[[command_rules]]` with `kind = "sftp"`): the lines a client's request is
//! checked as — `write /etc/sudoers`, `remove /var/log/auth.log` — and the answer a refused
//! request gets instead of reaching the server.
//!
//! Paths are checked the way the server will use them: cut at the first NUL (the server's C
//! strings end there), relative ones joined to the directory the server resolves them from,
//! `.` and `..` folded and repeated slashes merged, so `/etc//./x/../sudoers` and
//! `../../etc/sudoers` are both `/etc/sudoers`. What a path holds on the server (symbolic
//! links already there) is not known here; an operation that makes a link is checked as a
//! write of both ends, so a rule on `write PATH` also stops links to and from PATH.

use bytes::{BufMut, Bytes, BytesMut};

use super::wire::Fields;

/// SSH_FX_PERMISSION_DENIED.
pub const PERMISSION_DENIED: u32 = 3;

/// How a client's request reads to the file rules.
#[derive(Debug, PartialEq, Eq)]
pub enum Reading {
    /// Not a file operation the rules look at (reads and writes on an open handle, stat,
    /// directory reads…), or not a request at all.
    Unchecked,
    /// The lines to check, for request `id`.
    Lines { id: u32, lines: Vec<String> },
    /// An operation the rules look at whose path cannot be known: refused, as it cannot
    /// be checked.
    Unreadable {
        id: u32,
        op: &'static str,
        why: &'static str,
    },
}

/// Reads a request (type and payload) into the lines the rules check. `home` is where
/// relative paths start (once the server has said); `handle_path` names an open handle's
/// file.
pub fn read_request<'h>(
    kind: u8,
    payload: &[u8],
    home: Option<&str>,
    handle_path: impl Fn(&[u8]) -> Option<&'h str>,
) -> Reading {
    let mut f = Fields::new(payload);
    // Without an id nothing can be answered, and the server can do nothing with it either.
    let Some(id) = f.u32() else {
        return Reading::Unchecked;
    };
    let op = match operation(kind, &mut f) {
        Some(op) => op,
        None => return Reading::Unchecked,
    };
    let unreadable = |op: &'static str, why: &'static str| Reading::Unreadable { id, op, why };
    let path_of = |path: Option<&[u8]>, op: &'static str| match path {
        None => Err(unreadable(op, "the request is cut short")),
        Some(path) => resolve(path, home).map_err(|why| unreadable(op, why)),
    };
    let lines = match op {
        Operation::Open => {
            let Some(path) = f.bytes() else {
                return unreadable("open", "the request is cut short");
            };
            let Some(flags) = f.u32() else {
                return unreadable("open", "the request is cut short");
            };
            let path = match path_of(Some(path), "open") {
                Ok(path) => path,
                Err(refused) => return refused,
            };
            // Write, append, create or truncate: the file changes. No flag at all opens
            // for reading (OpenSSH's server treats it so).
            let writes = flags & (0x02 | 0x04 | 0x08 | 0x10) != 0;
            let reads = flags & 0x01 != 0 || !writes;
            let mut lines = Vec::new();
            if reads {
                lines.push(format!("read {path}"));
            }
            if writes {
                lines.push(format!("write {path}"));
            }
            lines
        }
        Operation::OnePath(op) => match path_of(f.bytes(), op) {
            Ok(path) => vec![format!("{op} {path}")],
            Err(refused) => return refused,
        },
        Operation::OnHandle(op) => {
            let Some(path) = f.bytes().and_then(&handle_path) else {
                // An unknown handle: the server refuses it itself.
                return Reading::Unchecked;
            };
            vec![format!("{op} {path}")]
        }
        Operation::Rename => {
            let (from, to) = match (path_of(f.bytes(), "rename"), path_of(f.bytes(), "rename")) {
                (Ok(from), Ok(to)) => (from, to),
                (Err(refused), _) | (_, Err(refused)) => return refused,
            };
            // The destination's content is replaced: a write of it.
            vec![
                format!("rename {from}"),
                format!("rename {to}"),
                format!("write {to}"),
            ]
        }
        Operation::Link {
            op,
            target_from_link,
        } => {
            // OpenSSH sends the target first, then the link's own path.
            let target = f.bytes();
            let link = match path_of(f.bytes(), op) {
                Ok(link) => link,
                Err(refused) => return refused,
            };
            // A symbolic link's relative target starts from the link's directory.
            let base = if target_from_link {
                Some(parent(&link))
            } else {
                home.map(str::to_owned)
            };
            let target = match target {
                None => return unreadable(op, "the request is cut short"),
                Some(target) => match resolve(target, base.as_deref()) {
                    Ok(target) => target,
                    Err(why) => return unreadable(op, why),
                },
            };
            vec![
                format!("{op} {link}"),
                format!("{op} {target}"),
                format!("write {link}"),
                format!("write {target}"),
            ]
        }
    };
    Reading::Lines { id, lines }
}

/// The operations the rules look at, and how their paths are laid out.
enum Operation {
    Open,
    /// One path: `remove`, `mkdir`, `rmdir`, `setstat`, `list`.
    OnePath(&'static str),
    /// An open handle, named by its path: `setstat`.
    OnHandle(&'static str),
    /// From, to.
    Rename,
    /// Target, link: `symlink` (a relative target starts from the link's directory) or
    /// `link` (a hard link).
    Link {
        op: &'static str,
        target_from_link: bool,
    },
}

/// Which operation a request of `kind` is; for extended requests, reads the extension's
/// name off `f`.
fn operation(kind: u8, f: &mut Fields<'_>) -> Option<Operation> {
    Some(match kind {
        3 => Operation::Open,
        9 => Operation::OnePath("setstat"),
        10 => Operation::OnHandle("setstat"),
        11 => Operation::OnePath("list"),
        13 => Operation::OnePath("remove"),
        14 => Operation::OnePath("mkdir"),
        15 => Operation::OnePath("rmdir"),
        18 => Operation::Rename,
        20 => Operation::Link {
            op: "symlink",
            target_from_link: true,
        },
        200 => match f.bytes()? {
            b"posix-rename@openssh.com" => Operation::Rename,
            b"lsetstat@openssh.com" => Operation::OnePath("setstat"),
            b"hardlink@openssh.com" => Operation::Link {
                op: "link",
                target_from_link: false,
            },
            _ => return None,
        },
        _ => return None,
    })
}

/// A path as the server will use it: up to its first NUL, relative ones from `home`,
/// `.`/`..`/`//` folded. `Err` says why it cannot be known.
pub fn resolve(raw: &[u8], home: Option<&str>) -> Result<String, &'static str> {
    let raw = raw.split(|&b| b == 0).next().unwrap_or_default();
    let text = String::from_utf8_lossy(raw);
    let joined = if text.starts_with('/') {
        text.into_owned()
    } else {
        match home {
            Some(home) => format!("{home}/{text}"),
            None => {
                return Err("a relative path, before the server said where relative paths start");
            }
        }
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// The directory holding `path` (absolute, folded).
fn parent(path: &str) -> String {
    match path.rfind('/') {
        Some(0) | None => "/".to_owned(),
        Some(at) => path[..at].to_owned(),
    }
}

/// A STATUS packet answering request `id` with `code` and `message`.
pub fn status(id: u32, code: u32, message: &str) -> Bytes {
    let language = b"en";
    let length = 1 + 4 + 4 + 4 + message.len() + 4 + language.len();
    let mut packet = BytesMut::with_capacity(4 + length);
    packet.put_u32(length as u32);
    packet.put_u8(101);
    packet.put_u32(id);
    packet.put_u32(code);
    packet.put_u32(message.len() as u32);
    packet.put_slice(message.as_bytes());
    packet.put_u32(language.len() as u32);
    packet.put_slice(language);
    packet.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::sftp::wire::Packets;

    use crate::relay::sftp::wire::encode::{string, with_id as payload};

    fn lines(kind: u8, payload: &[u8], home: Option<&str>) -> Reading {
        read_request(kind, payload, home, |handle| {
            (handle == b"h1").then_some("/etc/sudoers")
        })
    }

    fn expect(reading: Reading, want: &[&str]) {
        match reading {
            Reading::Lines { lines, .. } => assert_eq!(lines, want),
            other => panic!("expected lines, got {other:?}"),
        }
    }

    #[test]
    fn paths_are_read_as_the_server_will_use_them() {
        assert_eq!(
            resolve(b"/etc//./x/../sudoers", None),
            Ok("/etc/sudoers".into())
        );
        assert_eq!(
            resolve(b"../../etc/sudoers", Some("/home/al")),
            Ok("/etc/sudoers".into())
        );
        assert_eq!(resolve(b"/../../etc/", None), Ok("/etc".into()));
        // The server's C strings end at the first NUL.
        assert_eq!(
            resolve(b"/etc/sudoers\0.txt", None),
            Ok("/etc/sudoers".into())
        );
        assert_eq!(resolve(b"notes", Some("/root")), Ok("/root/notes".into()));
        assert!(resolve(b"notes", None).is_err());
        assert_eq!(resolve(b"", Some("/root")), Ok("/root".into()));
    }

    #[test]
    fn each_operation_reads_as_its_lines() {
        let open = |flags: u32| payload(1, &[&string(b"/etc/sudoers"), &flags.to_be_bytes()]);
        expect(lines(3, &open(0x01), None), &["read /etc/sudoers"]);
        expect(lines(3, &open(0), None), &["read /etc/sudoers"]);
        expect(lines(3, &open(0x1a), None), &["write /etc/sudoers"]);
        expect(
            lines(3, &open(0x03), None),
            &["read /etc/sudoers", "write /etc/sudoers"],
        );
        expect(
            lines(13, &payload(2, &[&string(b"log/auth.log")]), Some("/var")),
            &["remove /var/log/auth.log"],
        );
        expect(
            lines(
                18,
                &payload(3, &[&string(b"/tmp/x"), &string(b"/etc/sudoers")]),
                None,
            ),
            &["rename /tmp/x", "rename /etc/sudoers", "write /etc/sudoers"],
        );
        // A symbolic link's relative target is read from the link's directory.
        expect(
            lines(
                20,
                &payload(4, &[&string(b"../etc/sudoers"), &string(b"/tmp/s")]),
                None,
            ),
            &[
                "symlink /tmp/s",
                "symlink /etc/sudoers",
                "write /tmp/s",
                "write /etc/sudoers",
            ],
        );
        let mut extended = string(b"hardlink@openssh.com");
        extended.extend(string(b"/etc/sudoers"));
        extended.extend(string(b"/tmp/h"));
        expect(
            lines(200, &payload(5, &[&extended]), None),
            &[
                "link /tmp/h",
                "link /etc/sudoers",
                "write /tmp/h",
                "write /etc/sudoers",
            ],
        );
        expect(
            lines(
                10,
                &payload(6, &[&string(b"h1"), &0u32.to_be_bytes()]),
                None,
            ),
            &["setstat /etc/sudoers"],
        );
        expect(
            lines(11, &payload(7, &[&string(b"/root")]), None),
            &["list /root"],
        );
        // Reads, writes and stat on handles or paths are not operations the rules see.
        assert_eq!(
            lines(5, &payload(8, &[&string(b"h1")]), None),
            Reading::Unchecked
        );
        assert_eq!(
            lines(17, &payload(8, &[&string(b"/etc")]), None),
            Reading::Unchecked
        );
        assert_eq!(lines(13, &[0, 0], None), Reading::Unchecked);
    }

    #[test]
    fn an_operation_whose_path_cannot_be_known_is_unreadable() {
        for (kind, body) in [
            (13u8, payload(9, &[&[0, 0, 0, 40, b'/']])),
            (3, payload(9, &[&string(b"/etc/sudoers")])),
            (18, payload(9, &[&string(b"/tmp/x")])),
            (13, payload(9, &[&string(b"relative")])),
        ] {
            assert!(
                matches!(lines(kind, &body, None), Reading::Unreadable { id: 9, .. }),
                "{kind} {body:?}"
            );
        }
    }

    #[test]
    fn garbage_of_every_type_never_panics() {
        let mut x: u32 = 99;
        let mut next = || {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        };
        for kind in 0..=255u8 {
            for len in [0usize, 3, 4, 5, 8, 9, 13, 40, 300] {
                let mut body: Vec<u8> = (0..len).map(|_| next()).collect();
                // Some with a plausible string length right after the id.
                if len >= 8 && kind % 2 == 0 {
                    body[4..8].copy_from_slice(&((len - 8) as u32).to_be_bytes());
                }
                for home in [None, Some("/root")] {
                    let _ = read_request(kind, &body, home, |_| Some("/x"));
                }
            }
        }
    }

    #[test]
    fn the_refusal_is_a_status_packet_a_client_reads() {
        let packet = status(42, PERMISSION_DENIED, "blocked by rule sudoers");
        let mut packets = Packets::default();
        let mut seen = Vec::new();
        let cutting = packets.cut(&packet, false, |kind, payload| {
            seen.push((kind, payload.to_vec()));
            true
        });
        assert_eq!(cutting.lost, None);
        assert_eq!(packets.partial(), 0);
        let (kind, body) = &seen[0];
        assert_eq!(*kind, 101);
        let mut f = Fields::new(body);
        assert_eq!(f.u32(), Some(42));
        assert_eq!(f.u32(), Some(PERMISSION_DENIED));
        assert_eq!(f.text().as_deref(), Some("blocked by rule sudoers"));
        assert_eq!(f.text().as_deref(), Some("en"));
    }
}
