//! Reading recordings back and checking them against their integrity file.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::asciicast::{Header, SessionFacts};
use crate::chain::{Chain, ChainKey, parse_tag, tags_equal};
use crate::framed;
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
    Ok(check_file(cast, key)?.0)
}

/// [`verify_file`], and how many units (header included) are vouched for.
pub(crate) fn check_file(cast: &Path, key: &ChainKey) -> Result<(Verdict, usize), VerifyError> {
    check_file_visiting(cast, key, &mut |_| Ok(()))
}

/// [`check_file`], handing each unit that checks out to `visit` as it is read (in the same
/// pass: what is visited is what was verified). A visitor error stops the check and comes
/// back as a read error.
pub(crate) fn check_file_visiting(
    cast: &Path,
    key: &ChainKey,
    visit: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<(Verdict, usize), VerifyError> {
    let read_error = |source| VerifyError::Read {
        path: cast.to_owned(),
        source,
    };
    let mac_text = match fs::read_to_string(mac_path(cast)) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok((tampered(0, "the integrity file (.hmac) is missing"), 0));
        }
        Err(source) => {
            return Err(VerifyError::Read {
                path: mac_path(cast),
                source,
            });
        }
    };
    // Units of a recording put in another's place are not handed out (the verdict says so).
    let named = cast.file_stem().map(|stem| stem.to_string_lossy());
    let recorded = mac_text
        .lines()
        .next()
        .and_then(|first| first.strip_prefix(MAC_MAGIC))
        .map(str::trim);
    let misplaced =
        matches!((&named, recorded), (Some(named), Some(recorded)) if named != recorded);
    let mut no_visit = |_: &[u8]| Ok(());
    let visit: &mut dyn FnMut(&[u8]) -> io::Result<()> =
        if misplaced { &mut no_visit } else { visit };
    let (verdict, units) = if is_framed(cast) {
        let file = fs::File::open(cast).map_err(read_error)?;
        let mut units = framed::UnitReader::new(io::BufReader::with_capacity(256 * 1024, file));
        let units = std::iter::from_fn(|| match units.next_unit() {
            Ok(framed::Unit::Whole(unit)) => Some(Ok(Piece::Unit(unit))),
            Ok(framed::Unit::Fragment) => Some(Ok(Piece::Fragment)),
            Ok(framed::Unit::End) => None,
            Err(e) => Some(Err(e)),
        });
        check_units(units, &mac_text, key, Noun::Frame, visit).map_err(read_error)?
    } else {
        let bytes = fs::read(cast).map_err(read_error)?;
        check_lines(&bytes, &mac_text, key, visit).map_err(read_error)?
    };
    if let (true, Some(named), Some(recorded)) = (misplaced, named, recorded)
        && !matches!(verdict, Verdict::Tampered { .. })
    {
        return Ok((
            tampered(
                0,
                format!(
                    "these files hold recording {recorded}, not {named}: they were put in its place"
                ),
            ),
            0,
        ));
    }
    Ok((verdict, units))
}

fn tampered(line: usize, reason: impl Into<String>) -> Verdict {
    Verdict::Tampered {
        line,
        reason: reason.into(),
    }
}

/// Whether `path` is a framed recording (see [`crate::framed`]) rather than asciicast.
pub fn is_framed(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == framed::EXTENSION)
}

/// A piece of a recording file as the checker sees it.
pub(crate) enum Piece {
    /// A complete unit (a line of asciicast, the header line or a frame of a framed file).
    Unit(Vec<u8>),
    /// The file ends inside a unit.
    Fragment,
}

/// What a recording's units are called in verdicts.
#[derive(Clone, Copy)]
pub(crate) enum Noun {
    Line,
    Frame,
}

impl Noun {
    fn one(self) -> &'static str {
        match self {
            Noun::Line => "line",
            Noun::Frame => "frame",
        }
    }
}

/// The check itself, on an asciicast recording already read.
pub fn verify_bytes(cast: &[u8], mac: &str, key: &ChainKey) -> Verdict {
    match check_lines(cast, mac, key, &mut |_| Ok(())) {
        Ok((verdict, _)) => verdict,
        // The pieces come from memory and nothing visits them: this cannot fail.
        Err(e) => tampered(0, e.to_string()),
    }
}

fn check_lines(
    cast: &[u8],
    mac: &str,
    key: &ChainKey,
    visit: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<(Verdict, usize)> {
    // Complete lines (ending in '\n'); a trailing fragment is an interrupted write.
    let mut lines: Vec<&[u8]> = cast.split(|&b| b == b'\n').collect();
    let fragment = lines.pop().filter(|last| !last.is_empty());
    let pieces = lines
        .into_iter()
        .map(|line| Ok(Piece::Unit(line.to_vec())))
        .chain(fragment.map(|_| Ok(Piece::Fragment)));
    check_units(pieces, mac, key, Noun::Line, visit)
}

/// Checks the units of a recording against its integrity file's text, handing each one that
/// checks out to `visit`. Returns the verdict and how many units (header included) are
/// vouched for: everything before the first that differs, or that has no tag yet.
pub(crate) fn check_units(
    pieces: impl Iterator<Item = io::Result<Piece>>,
    mac: &str,
    key: &ChainKey,
    noun: Noun,
    visit: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<(Verdict, usize)> {
    let mut mac_lines = mac.lines();
    let Some(id) = mac_lines
        .next()
        .and_then(|first| first.strip_prefix(MAC_MAGIC))
        .map(str::trim)
    else {
        return Ok((
            tampered(0, "the integrity file does not start with its header"),
            0,
        ));
    };
    let mut tags = Vec::new();
    let mut seal = None;
    for line in mac_lines {
        if let Some(rest) = line.strip_prefix("end ") {
            match parse_tag(rest) {
                Some(tag) if seal.is_none() => seal = Some(tag),
                _ => {
                    return Ok((
                        tampered(0, "the integrity file's end line is malformed or repeated"),
                        0,
                    ));
                }
            }
        } else if seal.is_some() {
            return Ok((
                tampered(0, "the integrity file continues after its end line"),
                0,
            ));
        } else {
            match parse_tag(line) {
                Some(tag) => tags.push(tag),
                None => return Ok((tampered(0, "the integrity file has a malformed tag"), 0)),
            }
        }
    }

    let one = noun.one();
    let mut chain = Chain::start(key, id.as_bytes());
    let mut units = 0;
    let mut unverified = 0;
    for piece in pieces {
        let unit = match piece? {
            Piece::Unit(unit) => unit,
            Piece::Fragment => {
                unverified += 1;
                break;
            }
        };
        let Some(expected) = tags.get(units) else {
            unverified += 1;
            continue;
        };
        if !tags_equal(&chain.append(&unit), expected) {
            return Ok((
                tampered(
                    units + 1,
                    format!("this {one} differs from what was recorded"),
                ),
                units,
            ));
        }
        if units == 0 && header_names(&unit).is_some_and(|named| named != id) {
            return Ok((tampered(1, "the header names a different recording"), 0));
        }
        visit(&unit)?;
        units += 1;
    }
    if tags.len() > units {
        return Ok((
            tampered(
                units + 1,
                format!(
                    "{} {one}s are missing from the end of the recording",
                    tags.len() - units
                ),
            ),
            units,
        ));
    }
    let verdict = match seal {
        Some(seal) if unverified == 0 && tags_equal(&chain.seal(), &seal) => Verdict::Intact {
            lines: tags.len(),
            seal: hex::encode(seal),
        },
        Some(_) if unverified > 0 => tampered(
            tags.len() + 1,
            format!("{one}s were added after the recording was sealed"),
        ),
        Some(_) => tampered(
            0,
            "the seal does not match: the end of the recording was changed",
        ),
        None => Verdict::Unfinalized {
            verified_lines: tags.len(),
            unverified_lines: unverified,
        },
    };
    Ok((verdict, units))
}

/// The recording id a header unit names, if it parses as one.
fn header_names(unit: &[u8]) -> Option<String> {
    if let Some(header) = framed::FramedHeader::from_line(unit) {
        return Some(header.portcullis.recording);
    }
    let header: Header = serde_json::from_slice(unit).ok()?;
    header.portcullis.map(|facts| facts.recording)
}

/// What a recording's header says, whichever its format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingInfo {
    /// Unix time it started.
    pub timestamp: u64,
    /// Who, what and where.
    pub facts: Option<SessionFacts>,
    /// A terminal's (asciicast) rather than a channel's exact bytes (framed).
    pub terminal: bool,
}

/// Reads the header of the recording at `path` (asciicast or framed).
pub fn read_info(path: &Path) -> io::Result<RecordingInfo> {
    if is_framed(path) {
        let file = fs::File::open(path)?;
        let mut units = framed::UnitReader::new(io::BufReader::new(file));
        let header = match units.next_unit()? {
            framed::Unit::Whole(line) => framed::FramedHeader::from_line(&line),
            framed::Unit::Fragment | framed::Unit::End => None,
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no framed recording header"))?;
        return Ok(RecordingInfo {
            timestamp: header.timestamp,
            facts: Some(header.portcullis),
            terminal: false,
        });
    }
    let header = read_header(path)?;
    Ok(RecordingInfo {
        timestamp: header.timestamp,
        facts: header.portcullis,
        terminal: true,
    })
}

/// The header of an asciicast recording.
pub fn read_header(cast: &Path) -> io::Result<Header> {
    use std::io::BufRead;
    let file = fs::File::open(cast)?;
    let mut first = String::new();
    io::BufReader::new(file).read_line(&mut first)?;
    serde_json::from_str(&first).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}
