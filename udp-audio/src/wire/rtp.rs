//! RTP fixed header, CSRC list, header extension and padding (RFC 3550 §5.1, §5.3.1).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |V=2|P|X|  CC   |M|     PT      |       sequence number         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                           timestamp                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           synchronization source (SSRC) identifier            |
//! +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
//! |            contributing source (CSRC) identifiers             |
//! |                             ....                              |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  defined by profile (X=1)     |           length (words)      |
//! |                        header extension                       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 payload  ...  | padding ... | padding count   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! [`RtpPacket::new_checked`] validates a datagram once; after that no accessor can panic.
//! [`RtpHeader`] is the owned representation: [`RtpHeader::parse`] reads it from a checked
//! packet and [`RtpHeader::emit`] writes header, payload and padding into a buffer.

use crate::error::{Error, ParseError, Result};

/// Length of the fixed header.
pub const HEADER_LEN: usize = 12;
/// The only RTP version there is.
pub const VERSION: u8 = 2;
/// Most CSRCs a header can carry (4-bit CC field).
pub const MAX_CSRCS: usize = 15;

mod field {
    use std::ops::Range;
    pub(super) const FLAGS: usize = 0;
    pub(super) const MARKER_PT: usize = 1;
    pub(super) const SEQUENCE: Range<usize> = 2..4;
    pub(super) const TIMESTAMP: Range<usize> = 4..8;
    pub(super) const SSRC: Range<usize> = 8..12;
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// A validated view of one RTP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    buf: &'a [u8],
    /// End of CSRC list and extension: start of the payload.
    payload_start: usize,
    /// Start of padding (== buf.len() when there is none).
    payload_end: usize,
}

impl<'a> RtpPacket<'a> {
    /// Validates `buf` as an RTP datagram.
    ///
    /// Checks, in order: the fixed header is present, the version is 2, the CSRC list fits,
    /// the extension head and its declared length fit, and (with P set) the padding count is at
    /// least 1 and no longer than what follows the header. Each failure is its own
    /// [`Error`] variant.
    pub fn new_checked(buf: &'a [u8]) -> std::result::Result<Self, ParseError> {
        let len = buf.len();
        if len < HEADER_LEN {
            return Err(ParseError::Truncated {
                len,
                needed: HEADER_LEN,
            });
        }
        let version = buf[field::FLAGS] >> 6;
        if version != VERSION {
            return Err(ParseError::WrongVersion { version });
        }
        let count = buf[field::FLAGS] & 0x0f;
        let mut end = HEADER_LEN + 4 * usize::from(count);
        if end > len {
            return Err(ParseError::CsrcBeyondDatagram {
                count,
                needed: end,
                len,
            });
        }
        if buf[field::FLAGS] & 0x10 != 0 {
            if end + 4 > len {
                return Err(ParseError::ExtensionBeyondDatagram {
                    words: 0,
                    needed: end + 4,
                    len,
                });
            }
            let words = be16(&buf[end + 2..end + 4]);
            let needed = end + 4 + 4 * usize::from(words);
            if needed > len {
                return Err(ParseError::ExtensionBeyondDatagram { words, needed, len });
            }
            end = needed;
        }
        let mut payload_end = len;
        if buf[field::FLAGS] & 0x20 != 0 {
            let padding = buf[len - 1];
            let available = len - end;
            if padding == 0 || usize::from(padding) > available {
                return Err(ParseError::BadPadding { padding, available });
            }
            payload_end = len - usize::from(padding);
        }
        Ok(RtpPacket {
            buf,
            payload_start: end,
            payload_end,
        })
    }

    /// The P bit.
    pub fn has_padding(&self) -> bool {
        self.buf[field::FLAGS] & 0x20 != 0
    }
    /// The X bit.
    pub fn has_extension(&self) -> bool {
        self.buf[field::FLAGS] & 0x10 != 0
    }
    /// The M bit (for audio: first packet of a talkspurt).
    pub fn marker(&self) -> bool {
        self.buf[field::MARKER_PT] & 0x80 != 0
    }
    /// The 7-bit payload type.
    pub fn payload_type(&self) -> u8 {
        self.buf[field::MARKER_PT] & 0x7f
    }
    /// The 16-bit sequence number.
    pub fn sequence(&self) -> u16 {
        be16(&self.buf[field::SEQUENCE])
    }
    /// The 32-bit timestamp (sampling clock; for L16 one tick per sample frame).
    pub fn timestamp(&self) -> u32 {
        be32(&self.buf[field::TIMESTAMP])
    }
    /// The synchronization source.
    pub fn ssrc(&self) -> u32 {
        be32(&self.buf[field::SSRC])
    }
    /// The contributing sources, in order.
    pub fn csrcs(&self) -> impl Iterator<Item = u32> + 'a {
        let count = usize::from(self.buf[field::FLAGS] & 0x0f);
        self.buf[HEADER_LEN..HEADER_LEN + 4 * count]
            .chunks_exact(4)
            .map(be32)
    }
    /// The header extension: profile-defined 16 bits and the extension data.
    pub fn extension(&self) -> Option<(u16, &'a [u8])> {
        if !self.has_extension() {
            return None;
        }
        let start = HEADER_LEN + 4 * usize::from(self.buf[field::FLAGS] & 0x0f);
        let profile = be16(&self.buf[start..start + 2]);
        Some((profile, &self.buf[start + 4..self.payload_start]))
    }
    /// The payload, without header, extension and padding.
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.payload_start..self.payload_end]
    }
    /// Padding bytes at the end (0 when P is clear).
    pub fn padding_len(&self) -> usize {
        self.buf.len() - self.payload_end
    }
}

/// A header extension (RFC 3550 §5.3.1). `data` must be a whole number of 32-bit words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// The 16 profile-defined bits.
    pub profile: u16,
    /// Extension contents, a multiple of 4 bytes, at most 65535 words.
    pub data: Vec<u8>,
}

/// The owned representation of an RTP header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RtpHeader {
    /// M bit.
    pub marker: bool,
    /// Payload type, 0..=127.
    pub payload_type: u8,
    /// Sequence number.
    pub sequence: u16,
    /// Timestamp.
    pub timestamp: u32,
    /// Synchronization source.
    pub ssrc: u32,
    /// Contributing sources, at most [`MAX_CSRCS`].
    pub csrcs: Vec<u32>,
    /// Optional header extension.
    pub extension: Option<Extension>,
}

impl RtpHeader {
    /// Reads the header fields of a checked packet.
    pub fn parse(packet: &RtpPacket<'_>) -> Self {
        RtpHeader {
            marker: packet.marker(),
            payload_type: packet.payload_type(),
            sequence: packet.sequence(),
            timestamp: packet.timestamp(),
            ssrc: packet.ssrc(),
            csrcs: packet.csrcs().collect(),
            extension: packet.extension().map(|(profile, data)| Extension {
                profile,
                data: data.to_vec(),
            }),
        }
    }

    /// Bytes the header (with CSRCs and extension) occupies.
    pub fn len(&self) -> usize {
        HEADER_LEN + 4 * self.csrcs.len() + self.extension.as_ref().map_or(0, |e| 4 + e.data.len())
    }

    /// Always false: a header has at least 12 bytes. Present for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Appends header, `payload` and `padding` padding bytes (0 for none; the last padding
    /// byte holds the count, as RFC 3550 requires) to `out`.
    ///
    /// Fails when the payload type exceeds 127, there are more than 15 CSRCs, or the
    /// extension is not a whole number of words or longer than 65535 words.
    pub fn emit(&self, payload: &[u8], padding: u8, out: &mut Vec<u8>) -> Result<()> {
        if self.payload_type > 0x7f {
            return Err(Error::BadHeader {
                reason: "payload type above 127",
            });
        }
        if self.csrcs.len() > MAX_CSRCS {
            return Err(Error::BadHeader {
                reason: "more than 15 CSRCs",
            });
        }
        if let Some(ext) = &self.extension {
            if ext.data.len() % 4 != 0 || ext.data.len() / 4 > usize::from(u16::MAX) {
                return Err(Error::BadHeader {
                    reason: "extension is not a whole number of words up to 65535",
                });
            }
        }
        let flags = (VERSION << 6)
            | if padding > 0 { 0x20 } else { 0 }
            | if self.extension.is_some() { 0x10 } else { 0 }
            | self.csrcs.len() as u8;
        out.reserve(self.len() + payload.len() + usize::from(padding));
        out.push(flags);
        out.push(if self.marker { 0x80 } else { 0 } | self.payload_type);
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        for csrc in &self.csrcs {
            out.extend_from_slice(&csrc.to_be_bytes());
        }
        if let Some(ext) = &self.extension {
            out.extend_from_slice(&ext.profile.to_be_bytes());
            out.extend_from_slice(&((ext.data.len() / 4) as u16).to_be_bytes());
            out.extend_from_slice(&ext.data);
        }
        out.extend_from_slice(payload);
        if padding > 0 {
            out.extend(std::iter::repeat_n(0, usize::from(padding) - 1));
            out.push(padding);
        }
        Ok(())
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use proptest::prelude::*;

    // V=2, no P/X, CC=0, M=1, PT=11, seq 0x1234, ts 0xdeadbeef, ssrc 0x01020304, payload ab cd
    static SIMPLE: [u8; 14] = [
        0x80, 0x8b, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04, 0xab, 0xcd,
    ];

    // P, X, CC=2; ext profile 0xbede, 1 word; payload 0x11 0x22; 3 bytes padding
    static FULL: [u8; 37] = [
        0xb2, 0x60, 0xff, 0xff, 0x00, 0x00, 0x00, 0x10, 0xca, 0xfe, 0xba, 0xbe, // fixed
        0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, // CSRCs
        0xbe, 0xde, 0x00, 0x01, 0x10, 0x20, 0x30, 0x40, // extension
        0x11, 0x22, 0x33, 0x44, 0x55, 0x66, // payload
        0x00, 0x00, 0x03, // padding
    ];

    fn simple_header() -> RtpHeader {
        RtpHeader {
            marker: true,
            payload_type: 11,
            sequence: 0x1234,
            timestamp: 0xdead_beef,
            ssrc: 0x0102_0304,
            ..RtpHeader::default()
        }
    }

    fn full_header() -> RtpHeader {
        RtpHeader {
            marker: false,
            payload_type: 96,
            sequence: 0xffff,
            timestamp: 16,
            ssrc: 0xcafe_babe,
            csrcs: vec![1, 2],
            extension: Some(Extension {
                profile: 0xbede,
                data: vec![0x10, 0x20, 0x30, 0x40],
            }),
        }
    }

    #[test]
    fn parse_simple() {
        let p = RtpPacket::new_checked(&SIMPLE).unwrap();
        assert!(p.marker());
        assert!(!p.has_padding() && !p.has_extension());
        assert_eq!(p.payload_type(), 11);
        assert_eq!(p.sequence(), 0x1234);
        assert_eq!(p.timestamp(), 0xdead_beef);
        assert_eq!(p.ssrc(), 0x0102_0304);
        assert_eq!(p.payload(), &[0xab, 0xcd]);
        assert_eq!(RtpHeader::parse(&p), simple_header());
    }

    #[test]
    fn emit_simple() {
        let mut out = Vec::new();
        simple_header().emit(&[0xab, 0xcd], 0, &mut out).unwrap();
        assert_eq!(out, SIMPLE);
    }

    #[test]
    fn parse_full() {
        let p = RtpPacket::new_checked(&FULL).unwrap();
        assert_eq!(p.csrcs().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(p.extension(), Some((0xbede, &[0x10, 0x20, 0x30, 0x40][..])));
        assert_eq!(p.payload(), &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66]);
        assert_eq!(p.padding_len(), 3);
        assert_eq!(RtpHeader::parse(&p), full_header());
    }

    #[test]
    fn emit_full() {
        let mut out = Vec::new();
        let h = full_header();
        h.emit(&[0x11, 0x22, 0x33, 0x44, 0x55, 0x66], 3, &mut out)
            .unwrap();
        assert_eq!(out, FULL);
        assert_eq!(h.len(), 28);
    }

    #[test]
    fn truncated() {
        assert_eq!(
            RtpPacket::new_checked(&SIMPLE[..11]),
            Err(ParseError::Truncated {
                len: 11,
                needed: 12
            })
        );
        assert!(matches!(
            RtpPacket::new_checked(&[]),
            Err(ParseError::Truncated { len: 0, .. })
        ));
    }

    #[test]
    fn wrong_version() {
        let mut b = SIMPLE;
        b[0] = 0x40;
        assert_eq!(
            RtpPacket::new_checked(&b),
            Err(ParseError::WrongVersion { version: 1 })
        );
        b[0] = 0x00;
        assert_eq!(
            RtpPacket::new_checked(&b),
            Err(ParseError::WrongVersion { version: 0 })
        );
    }

    #[test]
    fn csrc_beyond() {
        let mut b = SIMPLE;
        b[0] = 0x81; // CC=1 needs 16 bytes, have 14
        assert_eq!(
            RtpPacket::new_checked(&b),
            Err(ParseError::CsrcBeyondDatagram {
                count: 1,
                needed: 16,
                len: 14
            })
        );
    }

    #[test]
    fn extension_beyond() {
        // Extension head missing entirely.
        let mut b = SIMPLE;
        b[0] = 0x90;
        assert_eq!(
            RtpPacket::new_checked(&b),
            Err(ParseError::ExtensionBeyondDatagram {
                words: 0,
                needed: 16,
                len: 14
            })
        );
        // Declared length runs past the end.
        let mut b = FULL.to_vec();
        b[23] = 9;
        assert_eq!(
            RtpPacket::new_checked(&b),
            Err(ParseError::ExtensionBeyondDatagram {
                words: 9,
                needed: 60,
                len: 37
            })
        );
    }

    #[test]
    fn bad_padding() {
        let mut b = FULL.to_vec();
        *b.last_mut().unwrap() = 10; // only 9 bytes follow the header
        assert_eq!(
            RtpPacket::new_checked(&b),
            Err(ParseError::BadPadding {
                padding: 10,
                available: 9
            })
        );
        *b.last_mut().unwrap() = 0;
        assert_eq!(
            RtpPacket::new_checked(&b),
            Err(ParseError::BadPadding {
                padding: 0,
                available: 9
            })
        );
        // Padding may eat the whole payload.
        *b.last_mut().unwrap() = 9;
        assert_eq!(RtpPacket::new_checked(&b).unwrap().payload(), &[] as &[u8]);
    }

    #[test]
    fn emit_rejects_bad_headers() {
        let mut out = Vec::new();
        let mut h = simple_header();
        h.payload_type = 128;
        assert!(matches!(
            h.emit(&[], 0, &mut out),
            Err(Error::BadHeader { .. })
        ));
        let mut h = simple_header();
        h.csrcs = vec![0; 16];
        assert!(matches!(
            h.emit(&[], 0, &mut out),
            Err(Error::BadHeader { .. })
        ));
        let mut h = simple_header();
        h.extension = Some(Extension {
            profile: 0,
            data: vec![1, 2, 3],
        });
        assert!(matches!(
            h.emit(&[], 0, &mut out),
            Err(Error::BadHeader { .. })
        ));
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(buf in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(p) = RtpPacket::new_checked(&buf) {
                let h = RtpHeader::parse(&p);
                prop_assert!(h.len() + p.payload().len() + p.padding_len() == buf.len());
                // What parses re-emits to the same bytes, up to padding contents.
                let mut out = Vec::new();
                h.emit(p.payload(), p.padding_len() as u8, &mut out).unwrap();
                prop_assert_eq!(out.len(), buf.len());
                let keep = buf.len() - p.padding_len();
                prop_assert_eq!(&out[..keep], &buf[..keep]);
            }
        }

        #[test]
        fn emit_then_parse_round_trips(
            marker in any::<bool>(), pt in 0u8..128, seq in any::<u16>(), ts in any::<u32>(),
            ssrc in any::<u32>(), csrcs in proptest::collection::vec(any::<u32>(), 0..=15),
            ext in proptest::option::of((any::<u16>(), proptest::collection::vec(any::<u8>(), 0..4usize).prop_map(|w| { let mut v = w; v.resize(v.len() * 4, 7); v }))),
            payload in proptest::collection::vec(any::<u8>(), 0..64), padding in any::<u8>(),
        ) {
            let h = RtpHeader {
                marker, payload_type: pt, sequence: seq, timestamp: ts, ssrc, csrcs,
                extension: ext.map(|(profile, data)| Extension { profile, data }),
            };
            let mut out = Vec::new();
            h.emit(&payload, padding, &mut out).unwrap();
            let p = RtpPacket::new_checked(&out).unwrap();
            prop_assert_eq!(RtpHeader::parse(&p), h);
            prop_assert_eq!(p.payload(), &payload[..]);
            prop_assert_eq!(p.padding_len(), usize::from(padding));
        }
    }
}
