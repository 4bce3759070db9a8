//! RTCP (RFC 3550 §6): the sender report (§6.4.1, no report blocks) and BYE (§6.6) the sender
//! sends to the RTCP port (RTP port + 1) when its stream ends, so that a receiver such as
//! ffmpeg ends its input at once instead of waiting for a timeout.
//!
//! As for RTP ([`crate::wire::rtp`]): [`RtcpPacket`] is a checked view of one packet of a
//! compound datagram (never panics on short input), [`SenderReport`] and [`Bye`] are the
//! owned representations that parse from a view and emit into a buffer.

use crate::error::ParseError;

/// The result of parsing RTCP.
pub type Result<T> = std::result::Result<T, ParseError>;

/// Payload type of a sender report.
pub const PT_SR: u8 = 200;
/// Payload type of a BYE.
pub const PT_BYE: u8 = 203;
/// Bytes of the common RTCP header (V, P, count, PT, length).
pub const HEADER_LEN: usize = 4;
/// Bytes of a sender report without report blocks: header, SSRC and the 20-byte sender info.
pub const SR_LEN: usize = 28;

fn truncated(what: &'static str, len: usize, needed: usize) -> ParseError {
    ParseError::RtcpTruncated { what, len, needed }
}

/// A checked view of the first RTCP packet in `buf` (a compound datagram holds several).
#[derive(Debug, Clone, Copy)]
pub struct RtcpPacket<'a> {
    buf: &'a [u8],
}

impl<'a> RtcpPacket<'a> {
    /// Checks the common header: 4 bytes at least, version 2, and a length field that fits in
    /// `buf`. The view covers that packet only; [`RtcpPacket::rest`] is what follows it.
    pub fn new_checked(buf: &'a [u8]) -> Result<Self> {
        if buf.len() < HEADER_LEN {
            return Err(truncated("RTCP header", buf.len(), HEADER_LEN));
        }
        let version = buf[0] >> 6;
        if version != 2 {
            return Err(ParseError::WrongVersion { version });
        }
        let needed = (usize::from(u16::from_be_bytes([buf[2], buf[3]])) + 1) * 4;
        if buf.len() < needed {
            return Err(truncated("RTCP packet", buf.len(), needed));
        }
        Ok(RtcpPacket {
            buf: &buf[..needed],
        })
    }

    /// The count field (report count of an SR, source count of a BYE).
    pub fn count(&self) -> u8 {
        self.buf[0] & 0x1f
    }

    /// The padding bit.
    pub fn padding(&self) -> bool {
        self.buf[0] & 0x20 != 0
    }

    /// The packet type (200 = SR, 203 = BYE, ...).
    pub fn packet_type(&self) -> u8 {
        self.buf[1]
    }

    /// The whole packet, header included, as its length field says.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// The bytes after the common header.
    pub fn body(&self) -> &'a [u8] {
        &self.buf[HEADER_LEN..]
    }
}

/// Splits a compound datagram into its packets' views; the first malformed packet ends the
/// iteration with its error.
pub fn packets(mut buf: &[u8]) -> impl Iterator<Item = Result<RtcpPacket<'_>>> {
    std::iter::from_fn(move || {
        if buf.is_empty() {
            return None;
        }
        match RtcpPacket::new_checked(buf) {
            Ok(p) => {
                buf = &buf[p.as_bytes().len()..];
                Some(Ok(p))
            }
            Err(e) => {
                buf = &[];
                Some(Err(e))
            }
        }
    })
}

fn word(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A sender report without report blocks (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderReport {
    /// The sender's SSRC.
    pub ssrc: u32,
    /// Wall-clock time in NTP format (seconds since 1900 in the high 32 bits), passed in by
    /// the driver: this type never reads a clock.
    pub ntp: u64,
    /// The RTP timestamp of the same instant.
    pub rtp_timestamp: u32,
    /// Packets sent.
    pub packets: u32,
    /// Payload octets sent.
    pub octets: u32,
}

impl SenderReport {
    /// Reads the report from a view whose type is SR (report blocks, if any, are skipped).
    pub fn parse(p: &RtcpPacket<'_>) -> Result<Self> {
        if p.packet_type() != PT_SR {
            return Err(ParseError::RtcpType {
                expected: PT_SR,
                found: p.packet_type(),
            });
        }
        let b = p.as_bytes();
        if b.len() < SR_LEN {
            return Err(truncated("RTCP sender report", b.len(), SR_LEN));
        }
        Ok(SenderReport {
            ssrc: word(b, 4),
            ntp: (u64::from(word(b, 8)) << 32) | u64::from(word(b, 12)),
            rtp_timestamp: word(b, 16),
            packets: word(b, 20),
            octets: word(b, 24),
        })
    }

    /// Appends the 28-byte packet to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        // V=2, P=0, RC=0, PT=200, length 6 (words - 1).
        out.extend_from_slice(&[0x80, PT_SR, 0, 6]);
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(&self.ntp.to_be_bytes());
        out.extend_from_slice(&self.rtp_timestamp.to_be_bytes());
        out.extend_from_slice(&self.packets.to_be_bytes());
        out.extend_from_slice(&self.octets.to_be_bytes());
    }
}

/// A BYE for one source (RFC 3550 §6.6), without a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bye {
    /// The source leaving.
    pub ssrc: u32,
}

impl Bye {
    /// Reads the first SSRC of a view whose type is BYE.
    pub fn parse(p: &RtcpPacket<'_>) -> Result<Self> {
        if p.packet_type() != PT_BYE {
            return Err(ParseError::RtcpType {
                expected: PT_BYE,
                found: p.packet_type(),
            });
        }
        let b = p.as_bytes();
        if p.count() == 0 || b.len() < 8 {
            return Err(truncated("RTCP BYE", b.len(), 8));
        }
        Ok(Bye { ssrc: word(b, 4) })
    }

    /// Appends the 8-byte packet to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        // V=2, P=0, SC=1, PT=203, length 1.
        out.extend_from_slice(&[0x81, PT_BYE, 0, 1]);
        out.extend_from_slice(&self.ssrc.to_be_bytes());
    }
}

/// The compound packet the sender ends its stream with: `sr` followed by a BYE for its SSRC.
pub fn sr_bye(sr: &SenderReport) -> Vec<u8> {
    let mut v = Vec::with_capacity(SR_LEN + 8);
    sr.emit(&mut v);
    Bye { ssrc: sr.ssrc }.emit(&mut v);
    v
}

/// Reads a compound packet of an SR followed by a BYE, as [`sr_bye`] writes it.
pub fn parse_sr_bye(buf: &[u8]) -> Result<(SenderReport, Bye)> {
    let mut it = packets(buf);
    let mut next = || {
        it.next()
            .unwrap_or(Err(truncated("RTCP header", 0, HEADER_LEN)))
    };
    let sr = SenderReport::parse(&next()?)?;
    let bye = Bye::parse(&next()?)?;
    Ok((sr, bye))
}

#[cfg(test)]
mod test {
    use super::*;

    fn sample() -> SenderReport {
        SenderReport {
            ssrc: 0xabcd_ef01,
            ntp: 0x0102_0304_0506_0708,
            rtp_timestamp: 77,
            packets: 5,
            octets: 640,
        }
    }

    #[test]
    fn sender_report_and_bye_round_trip() {
        let v = sr_bye(&sample());
        assert_eq!(v.len(), 36);
        let (sr, bye) = parse_sr_bye(&v).unwrap();
        assert_eq!(sr, sample());
        assert_eq!(bye.ssrc, 0xabcd_ef01);
        let views: Vec<_> = packets(&v).map(Result::unwrap).collect();
        assert_eq!(views.len(), 2);
        assert_eq!(
            (
                views[0].packet_type(),
                views[0].count(),
                views[0].as_bytes().len()
            ),
            (PT_SR, 0, 28)
        );
        assert_eq!((views[1].packet_type(), views[1].count()), (PT_BYE, 1));
        assert!(!views[0].padding());
        assert_eq!(views[0].body().len(), 24);
    }

    #[test]
    fn the_bytes_are_those_of_rfc_3550() {
        let v = sr_bye(&sample());
        assert_eq!(&v[..4], &[0x80, 200, 0, 6]);
        assert_eq!(&v[8..16], &0x0102_0304_0506_0708u64.to_be_bytes());
        assert_eq!(&v[16..20], &77u32.to_be_bytes());
        assert_eq!(&v[28..32], &[0x81, 203, 0, 1]);
        assert_eq!(&v[32..36], &0xabcd_ef01u32.to_be_bytes());
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let v = sr_bye(&sample());
        for n in 0..v.len() {
            assert!(parse_sr_bye(&v[..n]).is_err(), "{n} bytes parsed");
            for p in packets(&v[..n]).flatten() {
                let _ = (SenderReport::parse(&p), Bye::parse(&p));
            }
        }
        assert!(matches!(
            RtcpPacket::new_checked(&v[..3]),
            Err(ParseError::RtcpTruncated {
                len: 3,
                needed: 4,
                ..
            })
        ));
        assert!(matches!(
            RtcpPacket::new_checked(&v[..27]),
            Err(ParseError::RtcpTruncated {
                len: 27,
                needed: 28,
                ..
            })
        ));
    }

    #[test]
    fn wrong_version_and_wrong_type_are_refused() {
        let mut v = sr_bye(&sample());
        let bye = RtcpPacket::new_checked(&v[28..]).unwrap();
        assert!(matches!(
            SenderReport::parse(&bye),
            Err(ParseError::RtcpType {
                expected: 200,
                found: 203
            })
        ));
        v[0] = 0x40;
        assert!(matches!(
            RtcpPacket::new_checked(&v),
            Err(ParseError::WrongVersion { version: 1 })
        ));
    }
}
