//! The datagram header that `blast` writes and the sink checks.
//!
//! Every datagram starts with 32 bytes, big-endian; the rest of a data
//! datagram is its payload, `blast --size` bytes of padding:
//!
//! ```text
//!  0               4       5       6               8
//! +---------------+-------+-------+---------------+
//! | magic "BDm2"  | kind  | segs  | length (u16)  |
//! +---------------+-------+-------+---------------+
//! |            stream nonce (u64), the same in every datagram of a run  |
//! +---------------------------------------------------------------------+
//! |            seq (u64), or total sent for a sentinel                  |
//! +---------------------------------------------------------------------+
//! |            send time, ns since the Unix epoch (u64)                 |
//! +---------------------------------------------------------------------+
//! sentinel only (length 40):
//! |  copy index (u32)             |  copies (u32)                       |
//! ```
//!
//! `segs` (data only) is the number of datagrams in the GSO message this one
//! was sent in (0 or 1: sent alone); such a message carries the seqs
//! `m * segs .. (m + 1) * segs` (the stream's last may hold fewer), so a sink
//! whose kernel counts drops by coalesced message (`UDP_GRO`) can turn them
//! into datagrams ([`crate::account`]).
//!
//! `length` is the whole datagram's length: a datagram whose real length
//! differs (truncated, padded, someone else's traffic) is *foreign*. The
//! sentinel is sent (several copies) after the stream and a drain pause; it
//! carries the number of data datagrams the sender's kernel accepted.
//!
//! The nonce is drawn by the sender from the OS (`getrandom`) for each run.
//! With the sender's source address it names the stream: the sink takes a
//! sentinel only from the stream it counted ([`crate::account`]), so a
//! datagram from anyone else, or from an earlier run, cannot close or skew
//! the books. The nonce is not a secret from someone who can watch the
//! traffic; it keeps apart streams that do not see each other.

/// The first four bytes of every datagram.
pub const MAGIC: [u8; 4] = *b"BDm2";
/// Length of the header, the smallest data datagram.
pub const HEADER_LEN: usize = 32;
/// Length of a sentinel datagram.
pub const SENTINEL_LEN: usize = 40;

/// Serialises a stream nonce as it is printed for people: 16 hex digits
/// (a JSON number would lose the low bits of most nonces past 2^53).
pub fn serialize_nonce<S: serde::Serializer>(nonce: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{nonce:016x}"))
}

const KIND_DATA: u8 = 0;
const KIND_SENTINEL: u8 = 1;

mod field {
    use std::ops::Range;
    pub(super) const MAGIC: Range<usize> = 0..4;
    pub(super) const KIND: usize = 4;
    pub(super) const SEGS: usize = 5;
    pub(super) const LENGTH: Range<usize> = 6..8;
    pub(super) const NONCE: Range<usize> = 8..16;
    pub(super) const SEQ: Range<usize> = 16..24;
    pub(super) const SENT_NS: Range<usize> = 24..32;
    pub(super) const COPY: Range<usize> = 32..36;
    pub(super) const COPIES: Range<usize> = 36..40;
}

/// A datagram of ours, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datagram {
    /// One datagram of the stream.
    Data {
        /// The stream's nonce.
        nonce: u64,
        /// Sequence number, 0 for the first datagram.
        seq: u64,
        /// Send time, ns since the Unix epoch.
        sent_ns: u64,
    },
    /// The end-of-stream marker.
    Sentinel {
        /// The stream's nonce.
        nonce: u64,
        /// Data datagrams the sender's kernel accepted.
        total: u64,
        /// Which copy this is, 0-based.
        copy: u32,
        /// How many copies are sent.
        copies: u32,
    },
}

impl Datagram {
    /// The nonce of the stream the datagram claims to belong to.
    pub fn nonce(&self) -> u64 {
        match *self {
            Datagram::Data { nonce, .. } | Datagram::Sentinel { nonce, .. } => nonce,
        }
    }
}

/// Why a datagram is not one of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Foreign {
    /// Shorter than the header.
    TooShort {
        /// Bytes received.
        len: usize,
    },
    /// The magic bytes differ.
    BadMagic,
    /// The header's length is not the datagram's length.
    WrongLength {
        /// Length in the header.
        declared: usize,
        /// Length received.
        actual: usize,
    },
    /// A kind byte we do not know.
    UnknownKind(u8),
    /// A sentinel whose copy index is not below its number of copies.
    BadCopy {
        /// The copy index.
        copy: u32,
        /// The number of copies.
        copies: u32,
    },
}

impl std::fmt::Display for Foreign {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Foreign::TooShort { len } => {
                write!(f, "{len} bytes, shorter than the {HEADER_LEN}-byte header")
            }
            Foreign::BadMagic => f.write_str("not our magic bytes"),
            Foreign::WrongLength { declared, actual } => {
                write!(f, "its header says {declared} bytes, {actual} arrived")
            }
            Foreign::UnknownKind(k) => write!(f, "unknown kind {k}"),
            Foreign::BadCopy { copy, copies } => {
                write!(f, "sentinel copy {copy} of only {copies}")
            }
        }
    }
}

fn u64_at(b: &[u8], r: std::ops::Range<usize>) -> u64 {
    u64::from_be_bytes(b[r].try_into().expect("8 bytes"))
}

fn u32_at(b: &[u8], r: std::ops::Range<usize>) -> u32 {
    u32::from_be_bytes(b[r].try_into().expect("4 bytes"))
}

impl Datagram {
    /// Parses one received datagram (all of it).
    pub fn parse(bytes: &[u8]) -> Result<Datagram, Foreign> {
        if bytes.len() < HEADER_LEN {
            return Err(Foreign::TooShort { len: bytes.len() });
        }
        if bytes[field::MAGIC] != MAGIC {
            return Err(Foreign::BadMagic);
        }
        let declared = u16::from_be_bytes([bytes[6], bytes[7]]) as usize;
        if declared != bytes.len() {
            return Err(Foreign::WrongLength {
                declared,
                actual: bytes.len(),
            });
        }
        let nonce = u64_at(bytes, field::NONCE);
        match bytes[field::KIND] {
            KIND_DATA => Ok(Datagram::Data {
                nonce,
                seq: u64_at(bytes, field::SEQ),
                sent_ns: u64_at(bytes, field::SENT_NS),
            }),
            KIND_SENTINEL if bytes.len() == SENTINEL_LEN => {
                let (copy, copies) = (u32_at(bytes, field::COPY), u32_at(bytes, field::COPIES));
                if copy >= copies {
                    return Err(Foreign::BadCopy { copy, copies });
                }
                Ok(Datagram::Sentinel {
                    nonce,
                    total: u64_at(bytes, field::SEQ),
                    copy,
                    copies,
                })
            }
            KIND_SENTINEL => Err(Foreign::WrongLength {
                declared: SENTINEL_LEN,
                actual: bytes.len(),
            }),
            other => Err(Foreign::UnknownKind(other)),
        }
    }

    /// Writes a data header into the first [`HEADER_LEN`] bytes of `buf`;
    /// the datagram is all of `buf` (at most 65535 bytes, at least the header).
    pub fn emit_data(buf: &mut [u8], nonce: u64, seq: u64, sent_ns: u64) {
        emit_head(buf, KIND_DATA, nonce);
        buf[field::SEQ].copy_from_slice(&seq.to_be_bytes());
        buf[field::SENT_NS].copy_from_slice(&sent_ns.to_be_bytes());
    }

    /// Returns a sentinel datagram.
    pub fn sentinel(
        nonce: u64,
        total: u64,
        copy: u32,
        copies: u32,
        sent_ns: u64,
    ) -> [u8; SENTINEL_LEN] {
        let mut buf = [0u8; SENTINEL_LEN];
        emit_head(&mut buf, KIND_SENTINEL, nonce);
        buf[field::SEQ].copy_from_slice(&total.to_be_bytes());
        buf[field::SENT_NS].copy_from_slice(&sent_ns.to_be_bytes());
        buf[field::COPY].copy_from_slice(&copy.to_be_bytes());
        buf[field::COPIES].copy_from_slice(&copies.to_be_bytes());
        buf
    }
}

/// Sets the `segs` byte of a data datagram written by [`Datagram::emit_data`].
pub fn set_segments(buf: &mut [u8], segs: u8) {
    buf[field::SEGS] = segs;
}

/// The `segs` byte of a datagram (0 when shorter than the header).
pub fn segments_of(bytes: &[u8]) -> u8 {
    bytes.get(field::SEGS).copied().unwrap_or(0)
}

fn emit_head(buf: &mut [u8], kind: u8, nonce: u64) {
    assert!(
        (HEADER_LEN..=u16::MAX as usize).contains(&buf.len()),
        "datagram length {} outside the header's range",
        buf.len()
    );
    buf[field::MAGIC].copy_from_slice(&MAGIC);
    buf[field::KIND] = kind;
    buf[field::SEGS] = 0;
    let len = buf.len() as u16;
    buf[field::LENGTH].copy_from_slice(&len.to_be_bytes());
    buf[field::NONCE].copy_from_slice(&nonce.to_be_bytes());
}

#[cfg(test)]
mod test {
    use super::*;

    static DATA_32: [u8; 32] = [
        b'B', b'D', b'm', b'2', 0, 0, 0, 32, // head
        0, 0, 0, 0, 0xca, 0xfe, 0xf0, 0x0d, // nonce
        0, 0, 0, 0, 0, 0, 1, 2, // seq
        0, 0, 0, 0, 0, 0, 0, 9, // sent_ns
    ];

    #[test]
    fn data_both_ways() {
        assert_eq!(
            Datagram::parse(&DATA_32),
            Ok(Datagram::Data {
                nonce: 0xcafe_f00d,
                seq: 0x102,
                sent_ns: 9
            })
        );
        let mut buf = [0xffu8; 32];
        Datagram::emit_data(&mut buf, 0xcafe_f00d, 0x102, 9);
        assert_eq!(buf, DATA_32);
    }

    #[test]
    fn padded_data() {
        let mut buf = vec![0u8; 1400];
        Datagram::emit_data(&mut buf, 3, 7, 1);
        assert_eq!(
            Datagram::parse(&buf),
            Ok(Datagram::Data {
                nonce: 3,
                seq: 7,
                sent_ns: 1
            })
        );
        assert_eq!(
            Datagram::parse(&buf[..1000]),
            Err(Foreign::WrongLength {
                declared: 1400,
                actual: 1000
            })
        );
    }

    #[test]
    fn sentinel_both_ways() {
        let s = Datagram::sentinel(0x0102, 1000, 2, 5, 3);
        assert_eq!(&s[..8], b"BDm2\x01\x00\x00\x28");
        assert_eq!(&s[8..16], &[0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(&s[32..], &[0, 0, 0, 2, 0, 0, 0, 5]);
        let parsed = Datagram::parse(&s).unwrap();
        assert_eq!(
            parsed,
            Datagram::Sentinel {
                nonce: 0x0102,
                total: 1000,
                copy: 2,
                copies: 5
            }
        );
        assert_eq!(parsed.nonce(), 0x0102);
    }

    #[test]
    fn foreign() {
        assert_eq!(Datagram::parse(b"hi"), Err(Foreign::TooShort { len: 2 }));
        assert_eq!(Datagram::parse(&[0u8; 64]), Err(Foreign::BadMagic));
        let mut bad = DATA_32;
        bad[4] = 9;
        assert_eq!(Datagram::parse(&bad), Err(Foreign::UnknownKind(9)));
        let mut sentinel_short = DATA_32;
        sentinel_short[4] = 1;
        assert!(matches!(
            Datagram::parse(&sentinel_short),
            Err(Foreign::WrongLength { .. })
        ));
        let bad_copy = Datagram::sentinel(1, 10, 5, 5, 0);
        assert_eq!(
            Datagram::parse(&bad_copy),
            Err(Foreign::BadCopy { copy: 5, copies: 5 })
        );
    }
}
