//! Reading the audit log as it grows, for those who follow it (the shared store's copy,
//! the forwarders): only complete lines, from a byte offset, a batch at a time, so memory
//! stays bounded however far behind a reader is.

use std::io::{self, BufRead, Seek, SeekFrom};
use std::path::Path;

/// The byte offset after the first `lines` lines.
pub fn offset_after(path: &Path, lines: u64) -> io::Result<u64> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut reader = io::BufReader::new(file);
    let mut offset = 0;
    let mut line = Vec::new();
    for _ in 0..lines {
        line.clear();
        let read = reader.read_until(b'\n', &mut line)?;
        if read == 0 || line.last() != Some(&b'\n') {
            break;
        }
        offset += read as u64;
    }
    Ok(offset)
}

/// Up to `max` complete lines from `offset` (a line still being written is left for next
/// time), and the offset after them.
pub fn read_lines(path: &Path, offset: u64, max: usize) -> io::Result<(Vec<String>, u64)> {
    let lines = read_lines_with_ends(path, offset, max)?;
    let next = lines.last().map_or(offset, |(_, end)| *end);
    Ok((lines.into_iter().map(|(text, _)| text).collect(), next))
}

/// Up to `max` complete lines from `offset`, each with the offset just after it (where a
/// reader that has dealt with it goes on from).
pub fn read_lines_with_ends(
    path: &Path,
    offset: u64,
    max: usize,
) -> io::Result<Vec<(String, u64)>> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = io::BufReader::new(file);
    let mut lines = Vec::new();
    let mut next = offset;
    let mut line = Vec::new();
    while lines.len() < max {
        line.clear();
        let read = reader.read_until(b'\n', &mut line)?;
        if read == 0 || line.last() != Some(&b'\n') {
            break;
        }
        next += read as u64;
        line.pop();
        lines.push((String::from_utf8_lossy(&line).into_owned(), next));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_complete_lines_are_read_and_offsets_follow_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, "{\"a\":1}\n{\"b\":2}\n{\"c\":").unwrap();
        let (lines, next) = read_lines(&path, 0, 10).unwrap();
        assert_eq!(lines, ["{\"a\":1}", "{\"b\":2}"]);
        assert_eq!(next, 16);
        assert_eq!(offset_after(&path, 1).unwrap(), 8);
        assert_eq!(offset_after(&path, 5).unwrap(), 16);
        let (lines, next) = read_lines(&path, 8, 1).unwrap();
        assert_eq!((lines.len(), next), (1, 16));
        assert_eq!(read_lines(&path, 16, 10).unwrap(), (Vec::new(), 16));
        let ends: Vec<u64> = read_lines_with_ends(&path, 0, 10)
            .unwrap()
            .into_iter()
            .map(|(_, end)| end)
            .collect();
        assert_eq!(ends, [8, 16]);
    }
}
