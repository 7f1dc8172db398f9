//! Getting the exact bytes of one stream back out of a framed recording
//! (`portcullis recordings cat`): only from a file that verifies, or — when asked to
//! anyway — only the part of it that does.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::chain::ChainKey;
use crate::framed::{self, FrameKind, Stream};
use crate::verify::{Verdict, VerifyError, check_file, check_file_visiting, is_framed};

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// The recording's verdict.
    pub verdict: Verdict,
    /// Bytes of the stream written.
    pub bytes: u64,
    /// Frames vouched for (the header not counted): what was read.
    pub intact_frames: usize,
    /// The time of the last frame read, since the recording started.
    pub intact_until: Duration,
}

/// Why nothing (or not everything) was written.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// Only framed recordings hold exact bytes.
    #[error(
        "{0} is a terminal recording (asciicast): play it, or get it whole; only recordings of channels without a terminal hold exact bytes per stream"
    )]
    NotFramed(PathBuf),
    /// The recording does not verify, and `force` was not given.
    #[error(
        "the recording does not verify ({0}); nothing written (--force writes the part that verifies)"
    )]
    NotIntact(Verdict),
    /// It could not be read.
    #[error(transparent)]
    Read(#[from] VerifyError),
    /// A frame that verified does not decode: written with the key by something other than
    /// this recorder.
    #[error("frame {frame} verifies but does not decode: {error}")]
    Frame {
        /// 1-based, the header not counted.
        frame: usize,
        /// What is wrong with it.
        error: framed::FrameError,
    },
    /// Writing the output failed.
    #[error("cannot write the output: {0}")]
    Write(io::Error),
}

/// Writes the bytes of `stream` from the framed recording at `path` to `out`. A recording
/// that does not verify is refused, unless `force`: then what comes before the first frame
/// that cannot be vouched for is written, and [`Extracted`] says how far that is.
pub fn extract(
    path: &Path,
    key: &ChainKey,
    stream: Stream,
    force: bool,
    out: &mut impl Write,
) -> Result<Extracted, ExtractError> {
    let mut bytes = 0u64;
    let mut extracted = each_verified_frame(path, key, force, |frame| {
        if frame.kind == FrameKind::Data(stream) {
            out.write_all(&frame.data).map_err(ExtractError::Write)?;
            bytes += frame.data.len() as u64;
        }
        Ok(())
    })?;
    out.flush().map_err(ExtractError::Write)?;
    extracted.bytes = bytes;
    Ok(extracted)
}

/// One stream of a framed recording, in a [`Survey`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSurvey {
    /// Which.
    pub stream: Stream,
    /// Its length.
    pub bytes: u64,
    /// Its first bytes (at most the preview length asked for).
    pub head: Vec<u8>,
}

/// What a framed recording holds, stream by stream (of the part that verifies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Survey {
    /// The recording's verdict.
    pub verdict: Verdict,
    /// Every stream, stdout, stderr, stdin, empty ones included.
    pub streams: Vec<StreamSurvey>,
    /// The time of the last frame read, since the recording started.
    pub length: Duration,
    /// Marker frames (what started and ended the channel, the file operations of an sftp
    /// channel…), in order: their times and text; at most [`MAX_MARKERS`].
    pub markers: Vec<(Duration, String)>,
    /// Markers past [`MAX_MARKERS`], counted.
    pub more_markers: u64,
}

/// Markers a [`Survey`] lists at most.
pub const MAX_MARKERS: usize = 10_000;

/// Reads the part of a framed recording that verifies, and says how long each stream is,
/// with its first `preview` bytes.
pub fn survey(path: &Path, key: &ChainKey, preview: usize) -> Result<Survey, ExtractError> {
    let mut streams: Vec<StreamSurvey> = [Stream::Stdout, Stream::Stderr, Stream::Stdin]
        .into_iter()
        .map(|stream| StreamSurvey {
            stream,
            bytes: 0,
            head: Vec::new(),
        })
        .collect();
    let mut markers = Vec::new();
    let mut more_markers = 0;
    let extracted = each_verified_frame(path, key, true, |frame| {
        if frame.kind == FrameKind::Marker {
            if markers.len() < MAX_MARKERS {
                markers.push((frame.at, String::from_utf8_lossy(&frame.data).into_owned()));
            } else {
                more_markers += 1;
            }
        }
        if let FrameKind::Data(stream) = frame.kind
            && let Some(survey) = streams.iter_mut().find(|s| s.stream == stream)
        {
            survey.bytes += frame.data.len() as u64;
            let room = preview.saturating_sub(survey.head.len());
            survey
                .head
                .extend_from_slice(&frame.data[..room.min(frame.data.len())]);
        }
        Ok(())
    })?;
    Ok(Survey {
        verdict: extracted.verdict,
        streams,
        length: extracted.intact_until,
        markers,
        more_markers,
    })
}

/// Hands each frame of the framed recording at `path` that verifies to `visit`, in order, as
/// it is checked (one pass). Refused when the recording does not verify, unless `force`:
/// only then is it checked first, so that nothing is visited of a recording that is refused.
fn each_verified_frame(
    path: &Path,
    key: &ChainKey,
    force: bool,
    mut visit: impl FnMut(&framed::Frame) -> Result<(), ExtractError>,
) -> Result<Extracted, ExtractError> {
    if !is_framed(path) {
        return Err(ExtractError::NotFramed(path.to_owned()));
    }
    if !force {
        let (verdict, _) = check_file(path, key)?;
        if !verdict.is_intact() {
            return Err(ExtractError::NotIntact(verdict));
        }
    }
    let mut failure = None;
    let mut index = 0;
    let mut intact_until = Duration::ZERO;
    let mut stop = |error: ExtractError| {
        failure = Some(error);
        io::Error::other("stopped")
    };
    let checked = check_file_visiting(path, key, &mut |unit| {
        index += 1;
        // The header line is the first unit.
        if index == 1 {
            return Ok(());
        }
        let frame = framed::decode_frame(unit).map_err(|error| {
            stop(ExtractError::Frame {
                frame: index - 1,
                error,
            })
        })?;
        intact_until = frame.at;
        visit(&frame).map_err(&mut stop)
    });
    if let Some(error) = failure {
        return Err(error);
    }
    let (verdict, units) = checked?;
    Ok(Extracted {
        verdict,
        bytes: 0,
        intact_frames: units.saturating_sub(1),
        intact_until,
    })
}
