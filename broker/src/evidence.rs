//! Checking a recording as evidence: its own integrity chain (the recorder's verify), and
//! then that it is the recording the bastion sealed under its id — by the anchor in the
//! state database and by the seal the audit log kept at the channel's end. Cutting the end
//! off both files, or copying another genuine recording over them, passes the chain check
//! alone; it does not pass this.

use std::fs::File;
use std::io::{self, BufRead};
use std::path::Path;

use portcullis_recorder::verify::VerifyError;
use portcullis_recorder::{ChainKey, Verdict, verify_file};

use portcullis_state::{StateError, StateStore};

use crate::anchors;

/// Why a recording could not be checked at all.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// The recording could not be read.
    #[error(transparent)]
    Recording(#[from] VerifyError),
    /// Its anchor could not be read.
    #[error(transparent)]
    Anchor(#[from] StateError),
    /// The audit log could not be read.
    #[error("cannot read the audit log: {0}")]
    Audit(io::Error),
}

/// Verifies `cast` (the recording's id is its file name) against its integrity file, its
/// anchor and the audit log.
pub fn verify_recording(
    cast: &Path,
    key: &ChainKey,
    state: &dyn StateStore,
    audit_log: &Path,
) -> Result<Verdict, EvidenceError> {
    let verdict = verify_file(cast, key)?;
    if matches!(verdict, Verdict::Tampered { .. }) {
        return Ok(verdict);
    }
    let id = cast
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let anchor = anchors::get(state, &anchors::recording(&id))?.filter(|a| a.sealed);
    let audited = audited_seal(audit_log, &id).map_err(EvidenceError::Audit)?;
    let tampered = |reason: String| Verdict::Tampered { line: 0, reason };
    Ok(match (&verdict, anchor, audited) {
        (Verdict::Unfinalized { .. }, Some(anchor), _) => tampered(format!(
            "its end was cut off: the bastion sealed it with {} lines, and it ends unsealed",
            anchor.count
        )),
        (Verdict::Unfinalized { .. }, None, Some(_)) => tampered(
            "its end was cut off: the audit log holds its seal, and it ends unsealed".into(),
        ),
        (Verdict::Intact { lines, seal }, Some(anchor), _)
            if anchor.tag != *seal || anchor.count != *lines as u64 =>
        {
            tampered(format!(
                "this is not the recording sealed as {id}: the bastion sealed {} lines with another seal",
                anchor.count
            ))
        }
        (Verdict::Intact { seal, .. }, _, Some(audited)) if audited != *seal => tampered(format!(
            "this is not the recording sealed as {id}: the audit log holds another seal"
        )),
        _ => verdict,
    })
}

/// The seal the audit log kept for recording `id` at its channel's end, if any. Reads the
/// log line by line, parsing only lines that mention the id.
fn audited_seal(audit_log: &Path, id: &str) -> io::Result<Option<String>> {
    let file = match File::open(audit_log) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let quoted = format!("\"{id}\"");
    for line in io::BufReader::new(file).lines() {
        let line = line?;
        if !line.contains(&quoted) || !line.contains("\"channel.end\"") {
            continue;
        }
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if event["event"] == "channel.end"
            && event["recording"] == id
            && let Some(seal) = event["recording_seal"].as_str()
        {
            return Ok(Some(seal.to_owned()));
        }
    }
    Ok(None)
}
