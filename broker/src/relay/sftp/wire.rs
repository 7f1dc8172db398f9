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

/// What [`Packets::push`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Cut {
    /// A whole packet: its type and payload.
    Packet(u8, Bytes),
    /// The stream cannot be followed any more (the bytes still pass; this is said once).
    Lost(String),
}

impl Packets {
    /// Adds bytes; returns the packets they complete.
    pub fn push(&mut self, data: &[u8]) -> Vec<Cut> {
        let mut cuts = Vec::new();
        if self.lost {
            return cuts;
        }
        self.buffer.extend_from_slice(data);
        while self.buffer.len() >= 4 {
            let length = u32::from_be_bytes([
                self.buffer[0],
                self.buffer[1],
                self.buffer[2],
                self.buffer[3],
            ]) as usize;
            if length == 0 || length > MAX_PACKET {
                self.lost = true;
                self.buffer = BytesMut::new();
                cuts.push(Cut::Lost(format!(
                    "a packet of {length} bytes (at most {MAX_PACKET} are expected)"
                )));
                return cuts;
            }
            if self.buffer.len() < 4 + length {
                break;
            }
            self.buffer.advance(4);
            // Split off, not copied: a 256 KiB write is copied once, into the buffer.
            let packet = self.buffer.split_to(length).freeze();
            cuts.push(Cut::Packet(packet[0], packet.slice(1..)));
        }
        cuts
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

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
        out.push(kind);
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn packets_are_cut_whatever_the_chunks() {
        let mut stream = packet(1, &3u32.to_be_bytes());
        stream.extend(packet(17, b"abc"));
        for split in 0..stream.len() {
            let mut packets = Packets::default();
            let mut cuts = packets.push(&stream[..split]);
            cuts.extend(packets.push(&stream[split..]));
            assert_eq!(
                cuts,
                [
                    Cut::Packet(1, Bytes::copy_from_slice(&3u32.to_be_bytes())),
                    Cut::Packet(17, Bytes::from_static(b"abc"))
                ]
            );
        }
    }

    #[test]
    fn a_huge_or_empty_length_is_given_up_once_and_never_buffered() {
        for length in [u32::MAX, (MAX_PACKET + 1) as u32, 0] {
            let mut packets = Packets::default();
            let cuts = packets.push(&length.to_be_bytes());
            assert!(matches!(cuts.as_slice(), [Cut::Lost(_)]), "{length}");
            assert!(packets.push(&[0u8; 4096]).is_empty());
            assert!(packets.buffer.is_empty());
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
