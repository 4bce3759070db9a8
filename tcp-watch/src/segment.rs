//! One TCP segment as the cores see it: what the capture showed of it,
//! decoded, with its frame number and capture timestamp.
//!
//! [`crate::packet`] produces these from captured frames; [`crate::reassembly`]
//! and [`crate::analysis`] consume them. A segment borrows its payload from
//! the frame buffer: nothing is copied per packet.

use std::net::SocketAddr;

/// Capture time in nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Seconds since the epoch, as a float (for reports).
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }

    /// `self - earlier` in seconds (negative when the capture's clock went
    /// back).
    pub fn secs_since(self, earlier: Timestamp) -> f64 {
        (self.0 as i128 - earlier.0 as i128) as f64 / 1e9
    }
}

/// TCP header flags (RFC 9293 §3.1, RFC 3168 for ECE/CWR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No more data from the sender.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// Synchronise sequence numbers.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// Reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// Push function.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// The acknowledgment field is significant.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// The urgent pointer is significant.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECN echo.
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// Congestion window reduced.
    pub const CWR: TcpFlags = TcpFlags(0x80);

    /// Whether every flag of `other` is set.
    pub fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

/// Most SACK blocks one segment carries (40 option bytes: 4 blocks).
pub const MAX_SACK_BLOCKS: usize = 4;

/// The TCP options the analysis uses (RFC 9293 MSS, RFC 7323 window scale
/// and timestamps, RFC 2018 SACK).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpOptions {
    /// Maximum segment size (SYN only).
    pub mss: Option<u16>,
    /// Window scale shift (SYN only).
    pub window_scale: Option<u8>,
    /// SACK permitted (SYN only).
    pub sack_permitted: bool,
    /// SACK blocks `(left, right)`: sequence numbers, right edge exclusive.
    pub sack: [(u32, u32); MAX_SACK_BLOCKS],
    /// How many of [`sack`](TcpOptions::sack) are used.
    pub sack_len: u8,
    /// Timestamps `(TSval, TSecr)`.
    pub timestamps: Option<(u32, u32)>,
}

impl TcpOptions {
    /// The SACK blocks carried.
    pub fn sack_blocks(&self) -> &[(u32, u32)] {
        &self.sack[..usize::from(self.sack_len).min(MAX_SACK_BLOCKS)]
    }
}

/// The endpoints of a segment, from its sender's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// Sender address and port.
    pub src: SocketAddr,
    /// Receiver address and port.
    pub dst: SocketAddr,
}

impl FlowKey {
    /// The same connection seen from the other side.
    pub fn reversed(self) -> FlowKey {
        FlowKey {
            src: self.dst,
            dst: self.src,
        }
    }
}

/// One decoded TCP segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment<'a> {
    /// Frame number in the capture, from 1 (as Wireshark counts).
    pub frame: u64,
    /// Capture timestamp.
    pub ts: Timestamp,
    /// Sender and receiver.
    pub key: FlowKey,
    /// Sequence number of the first payload byte (of the SYN when set).
    pub seq: u32,
    /// Acknowledgment number (meaningful with [`TcpFlags::ACK`]).
    pub ack: u32,
    /// Header flags.
    pub flags: TcpFlags,
    /// Window field as sent (not scaled).
    pub window: u16,
    /// Decoded options.
    pub options: TcpOptions,
    /// Payload length the IP header declares: what the sender sent.
    pub payload_len: u32,
    /// The payload bytes the capture holds: shorter than `payload_len` when
    /// the frame was cut by the snap length (the rest is "not captured",
    /// never invented).
    pub payload: &'a [u8],
}

impl Segment<'_> {
    /// Sequence space the segment occupies: payload, plus one each for SYN
    /// and FIN (RFC 9293 §3.4).
    pub fn seq_len(&self) -> u32 {
        self.payload_len
            .wrapping_add(u32::from(self.flags.contains(TcpFlags::SYN)))
            .wrapping_add(u32::from(self.flags.contains(TcpFlags::FIN)))
    }

    /// Payload bytes the capture did not hold.
    pub fn not_captured(&self) -> u32 {
        self.payload_len
            .saturating_sub(u32::try_from(self.payload.len()).unwrap_or(u32::MAX))
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn syn_and_fin_take_one_sequence_number_each() {
        let key = FlowKey {
            src: "10.0.0.1:1".parse().unwrap(),
            dst: "10.0.0.2:2".parse().unwrap(),
        };
        let mut s = Segment {
            frame: 1,
            ts: Timestamp(0),
            key,
            seq: u32::MAX,
            ack: 0,
            flags: TcpFlags::SYN,
            window: 0,
            options: TcpOptions::default(),
            payload_len: 0,
            payload: &[],
        };
        assert_eq!(s.seq_len(), 1);
        s.flags = TcpFlags::FIN | TcpFlags::ACK;
        s.payload_len = 10;
        s.payload = b"abc";
        assert_eq!(s.seq_len(), 11);
        assert_eq!(s.not_captured(), 7);
        assert_eq!(key.reversed().reversed(), key);
    }
}

/// A fast, non-cryptographic hasher for the per-packet maps (flow table,
/// streams, extraction files). Their keys are addresses, ports and stream
/// ids taken from the capture; the maps are bounded in size, so a crafted
/// collision can slow a lookup but not grow memory. SipHash, the standard
/// library's default, was 4 % of a run's time.
#[derive(Debug, Clone, Copy, Default)]
pub struct FastHasher(u64);

impl std::hash::Hasher for FastHasher {
    fn finish(&self) -> u64 {
        // A final mix, so that the low bits a table uses depend on every
        // input bit.
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }

    fn write_u16(&mut self, v: u16) {
        self.write_u64(u64::from(v));
    }

    fn write_u8(&mut self, v: u8) {
        self.write_u64(u64::from(v));
    }

    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
}

/// A `HashMap` with [`FastHasher`].
pub type FastMap<K, V> = std::collections::HashMap<K, V, std::hash::BuildHasherDefault<FastHasher>>;
