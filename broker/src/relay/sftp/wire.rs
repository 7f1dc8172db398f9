//! SFTP (version 3, draft-ietf-secsh-filexfer-02, as OpenSSH speaks it) on the wire: packets
//! cut out of a channel's byte stream, and the fields of those the audit needs.
//!
//! Everything here reads untrusted bytes: every length is checked against what is there, a
//! packet larger than any client or server sends is not buffered (the direction is given
//! up as unparseable instead), and nothing panics.

use bytes::{Buf, Bytes, BytesMut};

/// The largest packet kept whole. OpenSSH sends at most 256 KiB of data per packet, and
/// refuses packets over 256 KiB; other implementations stay below that.
pub const MAX_PACKET: usize = 256 * 1024 + 1024;

/// Cuts packets (`u32 length | type | payload`) out of one direction's bytes.
#[derive(Debug, Default)]
pub struct Packets {
    buffer: BytesMut,
    /// A packet announced a length no implementation sends: nothing after it can be found.
    lost: bool,
}

/// What [`Packets::cut`] did with the bytes it was given.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Cutting {
    /// The packets kept, as raw bytes (length prefix included), consecutive ones in one
    /// piece; complete packets only, in order.
    pub kept: Vec<Bytes>,
    /// The stream cannot be followed any more, and why (said once; nothing after the
    /// packet that lost it is kept, then or later).
    pub lost: Option<String>,
}

impl Packets {
    /// Adds bytes and hands each packet they complete to `visit` (its type and payload),
    /// which says whether to keep it. With `keep_bytes`, the kept packets' bytes are
    /// returned (to forward them); without, only `visit` sees them.
    pub fn cut(
        &mut self,
        data: &[u8],
        keep_bytes: bool,
        mut visit: impl FnMut(u8, &[u8]) -> bool,
    ) -> Cutting {
        let mut cutting = Cutting::default();
        if self.lost {
            return cutting;
        }
        self.buffer.extend_from_slice(data);
        // Bytes at the front of the buffer that are whole packets, kept, not yet split off:
        // consecutive kept packets leave in one piece.
        let mut run = 0;
        while self.buffer.len() - run >= 4 {
            let at = &self.buffer[run..];
            let length = u32::from_be_bytes([at[0], at[1], at[2], at[3]]) as usize;
            if length == 0 || length > MAX_PACKET {
                // The whole packets before it are kept; nothing after it can be.
                self.take(run, keep_bytes, &mut cutting);
                self.lost = true;
                self.buffer = BytesMut::new();
                cutting.lost = Some(format!(
                    "a packet of {length} bytes (at most {MAX_PACKET} are expected)"
                ));
                return cutting;
            }
            if at.len() < 4 + length {
                break;
            }
            if visit(at[4], &at[5..4 + length]) {
                run += 4 + length;
            } else {
                self.take(run, keep_bytes, &mut cutting);
                self.buffer.advance(4 + length);
                run = 0;
            }
        }
        self.take(run, keep_bytes, &mut cutting);
        cutting
    }

    /// Takes the first `run` bytes off the buffer, into `cutting` if they are kept.
    fn take(&mut self, run: usize, keep_bytes: bool, cutting: &mut Cutting) {
        if run == 0 {
            return;
        }
        if keep_bytes {
            // Split off, not copied: the bytes were copied once, into the buffer.
            cutting.kept.push(self.buffer.split_to(run).freeze());
        } else {
            self.buffer.advance(run);
        }
    }

    /// Bytes of a packet begun but not yet complete (0: the stream is between packets, or
    /// cannot be followed).
    pub fn partial(&self) -> usize {
        self.buffer.len()
    }
}

/// Reads the fields of a payload in order; `None` once anything is missing.
pub struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    /// The fields of `payload`.
    pub fn new(payload: &'a [u8]) -> Self {
        Self { rest: payload }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.rest.len() < n {
            return None;
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Some(taken)
    }

    /// A `uint32`.
    pub fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A `uint64`.
    pub fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        let mut array = [0u8; 8];
        array.copy_from_slice(b);
        Some(u64::from_be_bytes(array))
    }

    /// A `string` (bytes with a length).
    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        let length = self.u32()? as usize;
        self.take(length)
    }

    /// A `string` holding a path or name, as text (invalid UTF-8 shown replaced).
    pub fn text(&mut self) -> Option<String> {
        Some(String::from_utf8_lossy(self.bytes()?).into_owned())
    }

    /// Attributes (flags, then the fields they announce): the permissions, if given.
    pub fn attributes(&mut self) -> Option<Attributes> {
        let flags = self.u32()?;
        let mut attributes = Attributes::default();
        if flags & 0x1 != 0 {
            attributes.size = Some(self.u64()?);
        }
        if flags & 0x2 != 0 {
            attributes.owner = Some((self.u32()?, self.u32()?));
        }
        if flags & 0x4 != 0 {
            attributes.permissions = Some(self.u32()?);
        }
        if flags & 0x8 != 0 {
            attributes.times = Some((self.u32()?, self.u32()?));
        }
        Some(attributes)
    }
}

/// The attributes a request sets.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Attributes {
    /// Size (truncate to).
    pub size: Option<u64>,
    /// uid, gid.
    pub owner: Option<(u32, u32)>,
    /// Mode bits.
    pub permissions: Option<u32>,
    /// atime, mtime.
    pub times: Option<(u32, u32)>,
}

impl Attributes {
    /// What is set, as audit fields want it (`mode=0644 uid=0 gid=0 size=0 times`).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(mode) = self.permissions {
            parts.push(format!("mode={:04o}", mode & 0o7777));
        }
        if let Some((uid, gid)) = self.owner {
            parts.push(format!("uid={uid} gid={gid}"));
        }
        if let Some(size) = self.size {
            parts.push(format!("size={size}"));
        }
        if self.times.is_some() {
            parts.push("times".into());
        }
        parts.join(" ")
    }
}

/// Encoders for tests: what a client or server would put on the wire.
#[cfg(test)]
pub mod encode {
    /// A `string`: length, then the bytes.
    pub fn string(text: &[u8]) -> Vec<u8> {
        let mut out = (text.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(text);
        out
    }

    /// A request's payload: its id, then the fields.
    pub fn with_id(id: u32, parts: &[&[u8]]) -> Vec<u8> {
        let mut out = id.to_be_bytes().to_vec();
        for part in parts {
            out.extend_from_slice(part);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
        out.push(kind);
        out.extend_from_slice(payload);
        out
    }

    /// Packets as `visit` saw them (type, payload), and the bytes kept.
    type Seen = (Vec<(u8, Vec<u8>)>, Vec<u8>);

    /// Cuts `stream` in two at every point; returns what `visit` saw and what was kept.
    fn cut_everywhere(stream: &[u8], keep: impl Fn(u8) -> bool) -> Vec<Seen> {
        (0..stream.len())
            .map(|split| {
                let mut packets = Packets::default();
                let mut seen = Vec::new();
                let mut kept = Vec::new();
                for part in [&stream[..split], &stream[split..]] {
                    let cutting = packets.cut(part, true, |kind, payload| {
                        seen.push((kind, payload.to_vec()));
                        keep(kind)
                    });
                    assert_eq!(cutting.lost, None);
                    kept.extend(cutting.kept.iter().flat_map(|b| b.to_vec()));
                }
                assert_eq!(packets.partial(), 0);
                (seen, kept)
            })
            .collect()
    }

    #[test]
    fn packets_are_cut_whatever_the_chunks() {
        let mut stream = packet(1, &3u32.to_be_bytes());
        stream.extend(packet(17, b"abc"));
        for (seen, kept) in cut_everywhere(&stream, |_| true) {
            assert_eq!(
                seen,
                [(1, 3u32.to_be_bytes().to_vec()), (17, b"abc".to_vec())]
            );
            assert_eq!(kept, stream);
        }
    }

    #[test]
    fn a_packet_not_kept_is_cut_out_and_the_rest_goes_on_unchanged() {
        let first = packet(3, b"open-this");
        let refused = packet(13, b"remove-that");
        let last = packet(4, b"close");
        let stream = [first.clone(), refused, last.clone()].concat();
        for (seen, kept) in cut_everywhere(&stream, |kind| kind != 13) {
            assert_eq!(seen.len(), 3);
            assert_eq!(kept, [first.clone(), last.clone()].concat());
        }
    }

    #[test]
    fn a_partial_packet_is_held_and_counted() {
        let whole = packet(3, b"abc");
        let mut packets = Packets::default();
        let cutting = packets.cut(&whole[..5], true, |_, _| true);
        assert!(cutting.kept.is_empty());
        assert_eq!(packets.partial(), 5);
        let cutting = packets.cut(&whole[5..], true, |_, _| true);
        assert_eq!(cutting.kept, [Bytes::from(whole)]);
        assert_eq!(packets.partial(), 0);
    }

    #[test]
    fn a_huge_or_empty_length_is_given_up_once_and_never_buffered() {
        for length in [u32::MAX, (MAX_PACKET + 1) as u32, 0] {
            let mut packets = Packets::default();
            let mut stream = packet(4, b"fine");
            stream.extend(length.to_be_bytes());
            let cutting = packets.cut(&stream, true, |_, _| true);
            assert!(cutting.lost.is_some(), "{length}");
            assert_eq!(cutting.kept, [Bytes::from(packet(4, b"fine"))]);
            let cutting = packets.cut(&[0u8; 4096], true, |_, _| true);
            assert_eq!(cutting, Cutting::default());
            assert!(packets.buffer.is_empty());
            assert_eq!(packets.partial(), 0);
        }
    }

    #[test]
    fn fields_never_read_past_the_end() {
        let mut fields = Fields::new(&[0, 0, 0, 9, b'a']);
        assert_eq!(fields.bytes(), None);
        let mut fields = Fields::new(&[0, 0, 0, 1]);
        assert_eq!(fields.u32(), Some(1));
        assert_eq!(fields.u64(), None);
        // Attributes announcing more than there is.
        let mut fields = Fields::new(&[0, 0, 0, 0x0f, 0, 0]);
        assert_eq!(fields.attributes(), None);
        let mut mode = 4u32.to_be_bytes().to_vec();
        mode.extend(0o100644u32.to_be_bytes());
        let attributes = Fields::new(&mode).attributes().unwrap();
        assert_eq!(attributes.describe(), "mode=0644");
    }
}
