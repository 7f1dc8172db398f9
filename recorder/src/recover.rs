//! Sealing what a crashed bastion left open.
//!
//! A recording whose bastion was killed has no end marker and no seal: it verifies as
//! "not finalized", its lines after the last flush unvouched for. At its next start the
//! bastion seals it here, so every recording ends up either sealed or flagged:
//!
//! * the units the chain vouches for stay as they are;
//! * the trailing units it does not vouch for (written after the last flush of tags) are
//!   moved, byte for byte, to `<file>.unverified` beside it — kept for an investigator,
//!   never passed off as verified;
//! * an end marker saying why (`end: bastion crashed …`) is chained on, and the seal written.
//!
//! A recording that does not verify (changed while the bastion was down) is left exactly as
//! it is: sealing it would launder the change.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::asciicast::{EventKind, encode_event};
use crate::chain::{Chain, ChainKey};
use crate::framed::{self, FrameKind};
use crate::verify::{Verdict, check_file_visiting, is_framed};
use crate::writer::{MAC_MAGIC, mac_path};

/// What [`seal_abandoned`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovered {
    /// It was sealed already: nothing to do.
    AlreadySealed,
    /// It is sealed now.
    Sealed {
        /// Units it holds now, header and end marker included.
        lines: usize,
        /// Trailing units moved to [`unverified_path`] (0: none).
        set_aside: usize,
        /// Its seal, hex.
        seal: String,
    },
    /// It does not verify: left untouched.
    Tampered(Verdict),
}

/// Where the units a crashed recording could not vouch for are kept.
pub fn unverified_path(recording: &Path) -> PathBuf {
    let mut name = recording.as_os_str().to_owned();
    name.push(".unverified");
    PathBuf::from(name)
}

/// Seals the recording at `path`, left open by a bastion that stopped without finishing
/// it, with an end marker giving `reason` (see the module's documentation).
pub fn seal_abandoned(path: &Path, key: &ChainKey, reason: &str) -> io::Result<Recovered> {
    let mac = mac_path(path);
    drop_torn_tag(&mac)?;
    let id = fs::read_to_string(&mac)?
        .lines()
        .next()
        .and_then(|first| first.strip_prefix(MAC_MAGIC))
        .map(|id| id.trim().to_owned())
        .unwrap_or_default();
    let framed = is_framed(path);
    // The chain, the length and the last time of what verifies, from the same pass that
    // verifies it.
    let mut chain = Chain::start(key, id.as_bytes());
    let mut kept: u64 = 0;
    let mut last_at = Duration::ZERO;
    let mut units = 0usize;
    let (verdict, _) = check_file_visiting(path, key, &mut |unit| {
        chain.append(unit);
        let header = units == 0;
        kept += unit.len() as u64 + u64::from(header || !framed);
        if !header {
            last_at = unit_time(unit, framed).unwrap_or(last_at).max(last_at);
        }
        units += 1;
        Ok(())
    })
    .map_err(|e| io::Error::other(e.to_string()))?;
    let set_aside = match verdict {
        Verdict::Intact { .. } => return Ok(Recovered::AlreadySealed),
        Verdict::Tampered { .. } => return Ok(Recovered::Tampered(verdict)),
        Verdict::Unfinalized {
            unverified_lines, ..
        } => unverified_lines,
    };

    let mut data = OpenOptions::new().read(true).write(true).open(path)?;
    let length = data.metadata()?.len();
    if length > kept {
        let mut tail = Vec::new();
        data.seek(SeekFrom::Start(kept))?;
        data.read_to_end(&mut tail)?;
        let mut aside = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(unverified_path(path))?;
        aside.write_all(&tail)?;
        aside.sync_all()?;
        data.set_len(kept)?;
    }
    data.seek(SeekFrom::End(0))?;

    let mut marker = Vec::new();
    let text = format!("end: {reason}");
    if framed {
        framed::encode_frame(
            FrameKind::of_event(EventKind::Marker),
            last_at,
            text.as_bytes(),
            &mut marker,
        );
    } else {
        encode_event(last_at.as_secs_f64(), EventKind::Marker, &text, &mut marker);
    }
    let tag = chain.append(&marker);
    if !framed {
        marker.push(b'\n');
    }
    data.write_all(&marker)?;
    data.sync_all()?;
    let seal = hex::encode(chain.seal());
    let mut tags = OpenOptions::new().append(true).open(&mac)?;
    writeln!(tags, "{}\nend {seal}", hex::encode(tag))?;
    tags.sync_all()?;
    Ok(Recovered::Sealed {
        lines: units + 1,
        set_aside,
        seal,
    })
}

/// When a unit (not the header) happened.
fn unit_time(unit: &[u8], framed: bool) -> Option<Duration> {
    if framed {
        return framed::decode_frame(unit).ok().map(|frame| frame.at);
    }
    let (seconds, _, _): (f64, serde_json::Value, serde_json::Value) =
        serde_json::from_slice(unit).ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// A tag line cut short by the crash vouches for nothing: it is dropped, so what is before
/// it can be checked.
fn drop_torn_tag(mac: &Path) -> io::Result<()> {
    let text = fs::read(mac)?;
    if text.is_empty() || text.ends_with(b"\n") {
        return Ok(());
    }
    let whole = text
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |at| at + 1);
    OpenOptions::new()
        .write(true)
        .open(mac)?
        .set_len(whole as u64)
}

/// Whether the recording at `path` was never sealed (its integrity file has no end line):
/// reads only the integrity file's last bytes.
pub fn is_unsealed(path: &Path) -> io::Result<bool> {
    let mut file = fs::File::open(mac_path(path))?;
    let length = file.metadata()?.len();
    file.seek(SeekFrom::Start(length.saturating_sub(80)))?;
    let mut tail = String::new();
    file.read_to_string(&mut tail)?;
    let last = tail
        .trim_end_matches('\n')
        .rsplit('\n')
        .next()
        .unwrap_or("");
    Ok(!last.starts_with("end "))
}
