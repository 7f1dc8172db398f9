//! Reading recordings back and checking them against their integrity file.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::asciicast::Header;
use crate::chain::{Chain, ChainKey, parse_tag, tags_equal};
use crate::writer::{MAC_MAGIC, mac_path};

/// The outcome of checking a recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every line is as written and the recording was closed properly.
    Intact {
        /// Lines checked, header included.
        lines: usize,
        /// Its seal, hex: what the audit log and the anchor keep of it.
        seal: String,
    },
    /// What is there is authentic, but the recording was never closed (the broker stopped
    /// abruptly); lines after the last flush cannot be vouched for.
    Unfinalized {
        /// Lines that check out.
        verified_lines: usize,
        /// Lines at the end with no tag yet.
        unverified_lines: usize,
    },
    /// The recording or its integrity file was changed.
    Tampered {
        /// 1-based line of the .cast file where the first difference is (0: the file as a whole).
        line: usize,
        /// What was found.
        reason: String,
    },
}

impl Verdict {
    /// Only an intact, finalized recording passes.
    pub fn is_intact(&self) -> bool {
        matches!(self, Verdict::Intact { .. })
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Intact { lines, .. } => write!(f, "intact: {lines} lines, sealed"),
            Verdict::Unfinalized {
                verified_lines,
                unverified_lines,
            } => write!(
                f,
                "not finalized: {verified_lines} lines intact, {unverified_lines} trailing lines unverified (the broker stopped before closing it)"
            ),
            Verdict::Tampered { line: 0, reason } => write!(f, "TAMPERED: {reason}"),
            Verdict::Tampered { line, reason } => write!(f, "TAMPERED at line {line}: {reason}"),
        }
    }
}

/// Why a recording could not be checked at all.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
}

/// Checks `cast` against `<cast>.hmac` with `key`, and that the pair is the recording its
/// file name says (a genuine recording copied over another one's files is not that one).
pub fn verify_file(cast: &Path, key: &ChainKey) -> Result<Verdict, VerifyError> {
    let read = |path: &Path| {
        fs::read(path).map_err(|source| VerifyError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let cast_bytes = read(cast)?;
    let mac_text = match fs::read_to_string(mac_path(cast)) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(tampered(0, "the integrity file (.cast.hmac) is missing"));
        }
        Err(source) => {
            return Err(VerifyError::Read {
                path: mac_path(cast),
                source,
            });
        }
    };
    let verdict = verify_bytes(&cast_bytes, &mac_text, key);
    let named = cast.file_stem().map(|stem| stem.to_string_lossy());
    let recorded = mac_text
        .lines()
        .next()
        .and_then(|first| first.strip_prefix(MAC_MAGIC))
        .map(str::trim);
    if let (Some(named), Some(recorded)) = (named, recorded)
        && !matches!(verdict, Verdict::Tampered { .. })
        && named != recorded
    {
        return Ok(tampered(
            0,
            format!(
                "these files hold recording {recorded}, not {named}: they were put in its place"
            ),
        ));
    }
    Ok(verdict)
}

fn tampered(line: usize, reason: impl Into<String>) -> Verdict {
    Verdict::Tampered {
        line,
        reason: reason.into(),
    }
}

/// The check itself, on contents already read.
pub fn verify_bytes(cast: &[u8], mac: &str, key: &ChainKey) -> Verdict {
    let mut mac_lines = mac.lines();
    let Some(id) = mac_lines
        .next()
        .and_then(|first| first.strip_prefix(MAC_MAGIC))
        .map(str::trim)
    else {
        return tampered(0, "the integrity file does not start with its header");
    };
    let mut tags = Vec::new();
    let mut seal = None;
    for line in mac_lines {
        if let Some(rest) = line.strip_prefix("end ") {
            match parse_tag(rest) {
                Some(tag) if seal.is_none() => seal = Some(tag),
                _ => return tampered(0, "the integrity file's end line is malformed or repeated"),
            }
        } else if seal.is_some() {
            return tampered(0, "the integrity file continues after its end line");
        } else {
            match parse_tag(line) {
                Some(tag) => tags.push(tag),
                None => return tampered(0, "the integrity file has a malformed tag"),
            }
        }
    }

    // Complete lines (ending in '\n'); a trailing fragment is an interrupted write.
    let mut lines: Vec<&[u8]> = cast.split(|&b| b == b'\n').collect();
    let fragment = lines.pop().filter(|last| !last.is_empty());

    let mut chain = Chain::start(key, id.as_bytes());
    for (i, (line, expected)) in lines.iter().zip(tags.iter()).enumerate() {
        if !tags_equal(&chain.append(line), expected) {
            return tampered(i + 1, "this line differs from what was recorded");
        }
    }
    if tags.len() > lines.len() {
        return tampered(
            lines.len() + 1,
            format!(
                "{} lines are missing from the end of the recording",
                tags.len() - lines.len()
            ),
        );
    }
    if let Some(header) = lines
        .first()
        .and_then(|l| serde_json::from_slice::<Header>(l).ok())
        && let Some(facts) = header.portcullis
        && facts.recording != id
    {
        return tampered(1, "the header names a different recording");
    }
    let unverified = lines.len() - tags.len() + usize::from(fragment.is_some());
    match seal {
        Some(seal) if unverified == 0 && tags_equal(&chain.seal(), &seal) => Verdict::Intact {
            lines: tags.len(),
            seal: hex::encode(seal),
        },
        Some(_) if unverified > 0 => tampered(
            tags.len() + 1,
            "lines were added after the recording was sealed",
        ),
        Some(_) => tampered(
            0,
            "the seal does not match: the end of the recording was changed",
        ),
        None => Verdict::Unfinalized {
            verified_lines: tags.len(),
            unverified_lines: unverified,
        },
    }
}

/// The header of a recording.
pub fn read_header(cast: &Path) -> io::Result<Header> {
    use std::io::BufRead;
    let file = fs::File::open(cast)?;
    let mut first = String::new();
    io::BufReader::new(file).read_line(&mut first)?;
    serde_json::from_str(&first).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}
