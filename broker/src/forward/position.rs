//! Where a forwarder has got to in this node's audit log, kept beside the log
//! (`<data_dir>/forward/<name>.position`) so a restart resumes there.
//!
//! The position names the last delivered line by its id (its chain tag), not only by its
//! offset: a log that was replaced or cut since (`audit verify` says how) no longer has
//! that line there, and the forwarder then sends the whole log again rather than skip
//! events — receivers drop what they already have by id.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How far back from a position its last line is looked for (longer lines are not
/// recognised, and the log is then sent again from its start).
const LAST_LINE_WINDOW: u64 = 1 << 20;

/// A place in the audit log: after `lines` lines, at byte `offset`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Lines before it.
    pub lines: u64,
    /// Bytes before it.
    pub offset: u64,
    /// The `mac` of the line just before it (empty at the start).
    pub last_mac: String,
}

/// The file a forwarder's position lives in.
pub fn file(data_dir: &Path, forwarder: &str) -> PathBuf {
    data_dir
        .join("forward")
        .join(format!("{forwarder}.position"))
}

/// The position stored in `file`, if there is one.
pub fn load(file: &Path) -> io::Result<Option<Position>> {
    match std::fs::read(file) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Stores `position` in `file`: written aside, flushed to disk, then renamed over the old
/// one, so a crash leaves the old position or the new one, never half of either.
pub fn save(file: &Path, position: &Position) -> io::Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let aside = file.with_extension("position.new");
    let mut out = std::fs::File::create(&aside)?;
    out.write_all(&serde_json::to_vec(position).map_err(io::Error::other)?)?;
    out.sync_all()?;
    std::fs::rename(&aside, file)
}

/// Whether the log at `log` still ends its first `position.lines` lines at
/// `position.offset` with the line `position.last_mac` names.
pub fn still_holds(log: &Path, position: &Position) -> io::Result<bool> {
    if position.lines == 0 {
        return Ok(position.offset == 0);
    }
    let mut file = match std::fs::File::open(log) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if file.metadata()?.len() < position.offset || position.offset == 0 {
        return Ok(false);
    }
    let start = position.offset.saturating_sub(LAST_LINE_WINDOW);
    file.seek(SeekFrom::Start(start))?;
    let mut window = vec![0; usize::try_from(position.offset - start).unwrap_or(0)];
    file.read_exact(&mut window)?;
    let Some(body) = window.strip_suffix(b"\n") else {
        return Ok(false);
    };
    let line = match body.iter().rposition(|&b| b == b'\n') {
        Some(at) => &body[at + 1..],
        None if start == 0 => body,
        None => return Ok(false),
    };
    let ending = format!(",\"mac\":\"{}\"}}", position.last_mac);
    Ok(!position.last_mac.is_empty() && line.ends_with(ending.as_bytes()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_position_survives_a_restart_and_is_checked_against_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.jsonl");
        std::fs::write(&log, "{\"a\":1,\"mac\":\"aa\"}\n{\"b\":2,\"mac\":\"bb\"}\n").unwrap();
        let at = Position {
            lines: 2,
            offset: 38,
            last_mac: "bb".into(),
        };
        let stored = file(dir.path(), "siem");
        assert_eq!(load(&stored).unwrap(), None);
        save(&stored, &at).unwrap();
        assert_eq!(load(&stored).unwrap(), Some(at.clone()));
        assert!(still_holds(&log, &at).unwrap());
        let first = Position {
            lines: 1,
            offset: 19,
            last_mac: "aa".into(),
        };
        assert!(still_holds(&log, &first).unwrap());
        // Another line there, an offset inside a line, a log cut short: not the same log.
        assert!(
            !still_holds(
                &log,
                &Position {
                    last_mac: "aa".into(),
                    ..at.clone()
                }
            )
            .unwrap()
        );
        assert!(
            !still_holds(
                &log,
                &Position {
                    offset: 30,
                    ..at.clone()
                }
            )
            .unwrap()
        );
        std::fs::write(&log, "{\"a\":1,\"mac\":\"aa\"}\n").unwrap();
        assert!(!still_holds(&log, &at).unwrap());
        assert!(still_holds(&log, &Position::default()).unwrap());
    }
}
