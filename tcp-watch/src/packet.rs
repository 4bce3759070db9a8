//! Packet decoding: one captured [`Frame`] to zero or one TCP [`Segment`],
//! through the link layer, IPv4/IPv6 (with fragment reassembly) and TCP.
//!
//! Followed: the tcpdump.org `LINKTYPE_*` registry (Ethernet with IEEE
//! 802.1Q/802.1ad tags and RFC 3032 MPLS labels, Linux cooked SLL and SLL2, BSD NULL/LOOP, PPP, raw
//! IP),
//! RFC 791 and RFC 815 (IPv4, fragments), RFC 8200 (IPv6, extension headers,
//! fragments), RFC 9293 §3.1 (TCP header), RFC 9293 §3.2 (MSS), RFC 7323
//! (window scale, timestamps), RFC 2018 (SACK).
//!
//! The payload length is the IP header's, never the frame's: Ethernet
//! padding is not data, and a frame cut by the snap length gives a segment
//! whose `payload` is shorter than `payload_len`. Nothing here panics or
//! allocates by a packet field: what is wrong with a packet is counted by
//! kind ([`Malformed`], in [`DecodeStats`]) and the packet skipped. Fragment
//! reassembly holds at most [`FRAG_MAX_DATAGRAMS`] datagrams and
//! [`FRAG_MAX_BYTES`] bytes, and forgets a datagram [`FRAG_TIMEOUT_NS`] of
//! capture time after its first fragment (Linux's `ipfrag_time`).

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::capture::{CaptureReader, CaptureStats, Frame, LinkType};
use crate::error::Error;
use crate::segment::{FlowKey, MAX_SACK_BLOCKS, Segment, TcpFlags, TcpOptions, Timestamp};

/// Datagrams held incomplete at most; the oldest is dropped for a new one.
pub const FRAG_MAX_DATAGRAMS: usize = 64;
/// Bytes of fragments held at most over all datagrams.
pub const FRAG_MAX_BYTES: usize = 4 << 20;
/// Fragments held per datagram at most.
pub const FRAG_MAX_PIECES: usize = 128;
/// Capture time after which an incomplete datagram is dropped (30 s).
pub const FRAG_TIMEOUT_NS: u64 = 30_000_000_000;
/// Largest IP datagram: a 16-bit length.
const MAX_DATAGRAM: usize = 65_535;
/// VLAN tags followed at most.
const MAX_VLAN_TAGS: usize = 8;
/// MPLS labels followed at most.
const MAX_MPLS_LABELS: usize = 8;
/// IPv6 extension headers followed at most.
const MAX_EXTENSION_HEADERS: usize = 16;

/// What can be wrong with one packet. Each kind is counted in
/// [`DecodeStats::malformed`]; the packet is skipped (unless said).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Malformed {
    /// The interface's link type is not one this decoder reads.
    UnknownLinkType,
    /// The frame is shorter than its link-layer header.
    LinkTruncated,
    /// The IP version nibble is not the one the link layer announced.
    BadIpVersion,
    /// The frame ends inside the IPv4/IPv6 fixed header.
    IpTruncated,
    /// IPv4 header length below 5 words or past the packet.
    BadIhl,
    /// IP total/payload length shorter than the headers, or longer than the
    /// frame was on the wire.
    BadTotalLength,
    /// IPv6 extension header chain cut or too long.
    BadExtensionHeader,
    /// Fragment with offset + length past 65535, or a non-final fragment
    /// whose length is not a multiple of 8.
    BadFragment,
    /// Fragment cut by the snap length: its bytes cannot be reassembled.
    FragmentNotCaptured,
    /// TCP header shorter than 20 bytes in the packet.
    TcpTruncated,
    /// TCP data offset below 5 words or past the IP payload.
    BadTcpDataOffset,
    /// The snap length cut the TCP header (its options): the segment cannot
    /// be decoded.
    TcpHeaderNotCaptured,
    /// A TCP option whose length is below 2, runs past the header, or does
    /// not fit its kind. The segment is kept with the options before it.
    BadTcpOption,
}

impl Malformed {
    /// Every kind, in report order.
    pub const ALL: [Malformed; 13] = [
        Malformed::UnknownLinkType,
        Malformed::LinkTruncated,
        Malformed::BadIpVersion,
        Malformed::IpTruncated,
        Malformed::BadIhl,
        Malformed::BadTotalLength,
        Malformed::BadExtensionHeader,
        Malformed::BadFragment,
        Malformed::FragmentNotCaptured,
        Malformed::TcpTruncated,
        Malformed::BadTcpDataOffset,
        Malformed::TcpHeaderNotCaptured,
        Malformed::BadTcpOption,
    ];

    /// A stable name for reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Malformed::UnknownLinkType => "unknown_link_type",
            Malformed::LinkTruncated => "link_truncated",
            Malformed::BadIpVersion => "bad_ip_version",
            Malformed::IpTruncated => "ip_truncated",
            Malformed::BadIhl => "bad_ihl",
            Malformed::BadTotalLength => "bad_total_length",
            Malformed::BadExtensionHeader => "bad_extension_header",
            Malformed::BadFragment => "bad_fragment",
            Malformed::FragmentNotCaptured => "fragment_not_captured",
            Malformed::TcpTruncated => "tcp_truncated",
            Malformed::BadTcpDataOffset => "bad_tcp_data_offset",
            Malformed::TcpHeaderNotCaptured => "tcp_header_not_captured",
            Malformed::BadTcpOption => "bad_tcp_option",
        }
    }

    fn index(self) -> usize {
        Malformed::ALL.iter().position(|&k| k == self).unwrap_or(0)
    }
}

/// Counts of everything the decoder saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecodeStats {
    /// Frames given to the decoder.
    pub frames: u64,
    /// TCP segments produced.
    pub segments: u64,
    /// Segments whose payload the snap length cut (`payload.len() <
    /// payload_len`).
    pub snap_cut: u64,
    /// Frames that are not IP (ARP, LLDP...) or IP that is not TCP.
    pub non_tcp: u64,
    /// Frames with bytes after the IP datagram (Ethernet padding, trailers):
    /// ignored, not data.
    pub trailing_bytes: u64,
    /// IP packets whose total length is more than the frame held on the
    /// wire (tcpdump's "truncated-ip"): kept, with the bytes missing counted
    /// as not captured.
    pub ip_longer_than_frame: u64,
    /// IPv4 packets with total length 0 (segmentation offload at the
    /// capture point): the captured length is used instead.
    pub zero_ip_length: u64,
    /// IP fragments seen.
    pub fragments: u64,
    /// Datagrams reassembled from fragments.
    pub reassembled: u64,
    /// Fragment bytes already held that arrived again (the first copy is
    /// kept).
    pub fragment_overlaps: u64,
    /// Of those, overlaps whose bytes differ.
    pub fragment_conflicts: u64,
    /// Incomplete datagrams dropped because the capture time passed
    /// [`FRAG_TIMEOUT_NS`].
    pub fragments_timed_out: u64,
    /// Incomplete datagrams dropped by the caps on datagrams, bytes or
    /// pieces.
    pub fragments_dropped_cap: u64,
    /// Incomplete datagrams left at the end of the capture.
    pub fragments_incomplete_at_end: u64,
    /// Malformed packets by kind, indexed as [`Malformed::ALL`].
    pub malformed: [u64; Malformed::ALL.len()],
    /// What the capture reader met (filled by [`for_each_segment`]).
    pub capture: CaptureStats,
}

impl DecodeStats {
    /// How many packets had this problem.
    pub fn malformed(&self, kind: Malformed) -> u64 {
        self.malformed[kind.index()]
    }

    /// Malformed packets of every kind.
    pub fn malformed_total(&self) -> u64 {
        self.malformed.iter().sum()
    }

    /// Every count with a stable name (decoder, malformed kinds, then the
    /// capture reader's, prefixed `capture.`), for reports and JSON.
    pub fn named_counts(&self) -> Vec<(&'static str, u64)> {
        let c = &self.capture;
        let mut v = vec![
            ("frames", self.frames),
            ("segments", self.segments),
            ("snap_cut", self.snap_cut),
            ("non_tcp", self.non_tcp),
            ("trailing_bytes", self.trailing_bytes),
            ("ip_longer_than_frame", self.ip_longer_than_frame),
            ("zero_ip_length", self.zero_ip_length),
            ("fragments", self.fragments),
            ("reassembled", self.reassembled),
            ("fragment_overlaps", self.fragment_overlaps),
            ("fragment_conflicts", self.fragment_conflicts),
            ("fragments_timed_out", self.fragments_timed_out),
            ("fragments_dropped_cap", self.fragments_dropped_cap),
            (
                "fragments_incomplete_at_end",
                self.fragments_incomplete_at_end,
            ),
        ];
        v.extend(
            Malformed::ALL
                .iter()
                .map(|&k| (k.name(), self.malformed(k))),
        );
        v.extend([
            ("capture.frames", c.frames),
            ("capture.skipped_frames", c.skipped_frames),
            ("capture.truncated", c.truncated),
            ("capture.corrupt", c.corrupt),
            ("capture.oversize_blocks", c.oversize_blocks),
            ("capture.other_blocks", c.other_blocks),
            ("capture.zero_snaplen", c.zero_snaplen),
            ("capture.huge_snaplen", c.huge_snaplen),
            ("capture.caplen_over_snaplen", c.caplen_over_snaplen),
            ("capture.too_many_interfaces", c.too_many_interfaces),
            ("capture.unknown_interface", c.unknown_interface),
            ("capture.sections", c.sections),
        ]);
        v
    }

    fn count(&mut self, kind: Malformed) {
        self.malformed[kind.index()] += 1;
    }
}

/// The IP layer of a packet, as the TCP decoder needs it.
struct Ip<'a> {
    src: IpAddr,
    dst: IpAddr,
    /// The L4 bytes captured (at most the IP payload length); `None`: the
    /// datagram just reassembled, in [`Decoder::done`].
    l4: Option<&'a [u8]>,
    /// The L4 length the IP header declares.
    l4_len: usize,
}

/// A datagram being reassembled.
struct Pending {
    key: FragKey,
    first_ts: Timestamp,
    /// L4 bytes so far (grown as fragments arrive; at most 65535).
    data: Vec<u8>,
    /// Byte ranges `[start, end)` received, sorted, not overlapping.
    have: Vec<(usize, usize)>,
    /// Length of the L4 payload, known once the last fragment came.
    total: Option<usize>,
    pieces: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FragKey {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    protocol: u8,
}

/// Decodes frames into segments, keeping the fragment reassembly state and
/// the counts. Sans-IO: time is each frame's timestamp.
#[derive(Default)]
pub struct Decoder {
    stats: DecodeStats,
    pending: Vec<Pending>,
    held_bytes: usize,
    /// The last reassembled datagram's L4 bytes (a segment borrows them).
    done: Vec<u8>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("stats", &self.stats)
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl Decoder {
    /// A decoder with nothing held.
    pub fn new() -> Self {
        Decoder::default()
    }

    /// The counts so far.
    pub fn stats(&self) -> DecodeStats {
        self.stats
    }

    /// Ends the capture: incomplete datagrams are counted and dropped.
    pub fn finish(&mut self) -> DecodeStats {
        self.stats.fragments_incomplete_at_end += self.pending.len() as u64;
        self.pending.clear();
        self.held_bytes = 0;
        self.stats
    }

    /// Decodes one frame: `Some` when it carries a TCP segment (a complete
    /// one, or the last fragment of a datagram that completes).
    pub fn decode<'a>(&'a mut self, frame: &Frame<'a>) -> Option<Segment<'a>> {
        self.stats.frames += 1;
        self.expire(frame.ts);
        let (ethertype, l3) = self.link(frame)?;
        // What the wire carried after the link header bounds the IP length.
        let link_len = frame.captured.len() - l3.len();
        let wire_l3 = (frame.original_len as usize)
            .saturating_sub(link_len)
            .max(l3.len());
        let ip = match ethertype {
            Ethertype::Ipv4 => self.ipv4(frame.ts, l3, wire_l3)?,
            Ethertype::Ipv6 => self.ipv6(frame.ts, l3, wire_l3)?,
            Ethertype::ByVersion => match l3.first().map(|b| b >> 4) {
                Some(4) => self.ipv4(frame.ts, l3, wire_l3)?,
                Some(6) => self.ipv6(frame.ts, l3, wire_l3)?,
                Some(_) => {
                    self.stats.count(Malformed::BadIpVersion);
                    return None;
                }
                None => {
                    self.stats.count(Malformed::IpTruncated);
                    return None;
                }
            },
            Ethertype::Other => {
                self.stats.non_tcp += 1;
                return None;
            }
        };
        let l4 = ip.l4.unwrap_or(&self.done);
        let seg = tcp(&mut self.stats, frame, &ip, l4)?;
        self.stats.segments += 1;
        if seg.payload.len() < seg.payload_len as usize {
            self.stats.snap_cut += 1;
        }
        Some(seg)
    }

    /// Strips the link-layer header: what the network layer is, and its
    /// bytes.
    fn link<'f>(&mut self, frame: &Frame<'f>) -> Option<(Ethertype, &'f [u8])> {
        let b = frame.captured;
        let short = |stats: &mut DecodeStats| {
            stats.count(Malformed::LinkTruncated);
            None
        };
        match frame.linktype {
            LinkType::ETHERNET => {
                if b.len() < 14 {
                    return short(&mut self.stats);
                }
                let mut ethertype = u16::from_be_bytes([b[12], b[13]]);
                let mut at = 14;
                let mut tags = 0;
                // 802.1Q, 802.1ad (QinQ outer) and the pre-standard 0x9100.
                while matches!(ethertype, 0x8100 | 0x88a8 | 0x9100) && tags < MAX_VLAN_TAGS {
                    if b.len() < at + 4 {
                        return short(&mut self.stats);
                    }
                    ethertype = u16::from_be_bytes([b[at + 2], b[at + 3]]);
                    at += 4;
                    tags += 1;
                }
                if matches!(ethertype, 0x8847 | 0x8848) {
                    // RFC 3032 label stack: 4-byte entries until the
                    // bottom-of-stack bit; then IP, told by its version.
                    for _ in 0..MAX_MPLS_LABELS {
                        let Some(entry) = b.get(at..at + 4) else {
                            return short(&mut self.stats);
                        };
                        at += 4;
                        if entry[2] & 1 == 1 {
                            return Some((Ethertype::ByVersion, &b[at..]));
                        }
                    }
                    self.stats.non_tcp += 1;
                    return None;
                }
                Some((Ethertype::from(ethertype), &b[at..]))
            }
            LinkType::PPP => {
                // RFC 1661/1662: optional address and control bytes, then a
                // protocol field of one byte when compressed (odd first byte).
                let b = b.strip_prefix(&[0xff, 0x03]).unwrap_or(b);
                let (protocol, rest) = match b {
                    [p, rest @ ..] if p & 1 == 1 => (u16::from(*p), rest),
                    [h, l, rest @ ..] => (u16::from_be_bytes([*h, *l]), rest),
                    _ => return short(&mut self.stats),
                };
                let ethertype = match protocol {
                    0x21 => Ethertype::Ipv4,
                    0x57 => Ethertype::Ipv6,
                    _ => Ethertype::Other,
                };
                Some((ethertype, rest))
            }
            LinkType::LINUX_SLL => {
                if b.len() < 16 {
                    return short(&mut self.stats);
                }
                Some((
                    Ethertype::from(u16::from_be_bytes([b[14], b[15]])),
                    &b[16..],
                ))
            }
            LinkType::LINUX_SLL2 => {
                if b.len() < 20 {
                    return short(&mut self.stats);
                }
                Some((Ethertype::from(u16::from_be_bytes([b[0], b[1]])), &b[20..]))
            }
            LinkType::NULL | LinkType::LOOP => {
                if b.len() < 4 {
                    return short(&mut self.stats);
                }
                // The family is in the capturing host's byte order (NULL)
                // or network order (LOOP); a value fits in one byte, so
                // whichever end is non-zero says which order was used.
                let le = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                let be = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                let family = if le < 256 { le } else { be };
                let ethertype = match family {
                    2 => Ethertype::Ipv4,
                    // AF_INET6: NetBSD/OpenBSD 24, FreeBSD 28, macOS 30,
                    // Linux 10.
                    10 | 24 | 28 | 30 => Ethertype::Ipv6,
                    _ => Ethertype::Other,
                };
                Some((ethertype, &b[4..]))
            }
            // DLT_RAW is 12 on most BSDs and 14 on OpenBSD in pcap files
            // written there.
            LinkType::RAW | LinkType(12) | LinkType(14) => Some((Ethertype::ByVersion, b)),
            LinkType::IPV4 => Some((Ethertype::Ipv4, b)),
            LinkType::IPV6 => Some((Ethertype::Ipv6, b)),
            _ => {
                self.stats.count(Malformed::UnknownLinkType);
                None
            }
        }
    }

    /// Counts an IP length (`total`) beyond what the wire carried, or short
    /// of what the frame holds (`held`: padding, trailers).
    fn note_lengths(&mut self, total: usize, wire: usize, held: usize) {
        if total > wire {
            self.stats.ip_longer_than_frame += 1;
        }
        if held > total {
            self.stats.trailing_bytes += 1;
        }
    }

    /// RFC 791 header. `wire` is the IP bytes the wire carried.
    fn ipv4<'f>(&mut self, ts: Timestamp, b: &'f [u8], wire: usize) -> Option<Ip<'f>> {
        if b.len() < 20 {
            self.stats.count(Malformed::IpTruncated);
            return None;
        }
        if b[0] >> 4 != 4 {
            self.stats.count(Malformed::BadIpVersion);
            return None;
        }
        let ihl = usize::from(b[0] & 0x0f) * 4;
        if ihl < 20 || ihl > b.len() {
            self.stats.count(Malformed::BadIhl);
            return None;
        }
        let mut total = usize::from(u16::from_be_bytes([b[2], b[3]]));
        if total == 0 && wire > ihl {
            // TSO: the NIC fills the length in later; the capture holds the
            // whole super-segment.
            self.stats.zero_ip_length += 1;
            total = wire;
        }
        if total < ihl {
            self.stats.count(Malformed::BadTotalLength);
            return None;
        }
        self.note_lengths(total, wire, b.len());
        let protocol = b[9];
        let src = IpAddr::V4(Ipv4Addr::new(b[12], b[13], b[14], b[15]));
        let dst = IpAddr::V4(Ipv4Addr::new(b[16], b[17], b[18], b[19]));
        let flags_off = u16::from_be_bytes([b[6], b[7]]);
        let more = flags_off & 0x2000 != 0;
        let offset = usize::from(flags_off & 0x1fff) * 8;
        let l4 = &b[ihl..b.len().min(total)];
        let l4_len = total - ihl;
        if more || offset != 0 {
            let key = FragKey {
                src,
                dst,
                id: u32::from(u16::from_be_bytes([b[4], b[5]])),
                protocol,
            };
            if protocol != 6 {
                self.stats.non_tcp += 1;
                return None;
            }
            let whole = l4.len() == l4_len;
            return self.fragment(ts, key, offset, more, l4, whole, l4_len);
        }
        if protocol != 6 {
            self.stats.non_tcp += 1;
            return None;
        }
        Some(Ip {
            src,
            dst,
            l4: Some(l4),
            l4_len,
        })
    }

    /// RFC 8200 header and extension-header chain.
    fn ipv6<'f>(&mut self, ts: Timestamp, b: &'f [u8], wire: usize) -> Option<Ip<'f>> {
        if b.len() < 40 {
            self.stats.count(Malformed::IpTruncated);
            return None;
        }
        if b[0] >> 4 != 6 {
            self.stats.count(Malformed::BadIpVersion);
            return None;
        }
        let payload = usize::from(u16::from_be_bytes([b[4], b[5]]));
        let total = 40 + payload;
        // A jumbogram (payload length 0, RFC 2675) is not followed.
        if payload == 0 && b[6] != 59 {
            self.stats.count(Malformed::BadTotalLength);
            return None;
        }
        self.note_lengths(total, wire, b.len());
        let mut src = [0u8; 16];
        src.copy_from_slice(&b[8..24]);
        let mut dst = [0u8; 16];
        dst.copy_from_slice(&b[24..40]);
        let (src, dst) = (
            IpAddr::V6(Ipv6Addr::from(src)),
            IpAddr::V6(Ipv6Addr::from(dst)),
        );
        let b = &b[..b.len().min(total)];
        let mut next = b[6];
        let mut at = 40;
        let mut fragment: Option<(usize, bool, u32)> = None;
        for _ in 0..MAX_EXTENSION_HEADERS {
            match next {
                // Hop-by-hop, routing, destination options, and (RFC 8200
                // §4.4) the fragment header.
                0 | 43 | 60 | 44 | 51 => {
                    if b.len() < at + 8 {
                        if b.len() < total {
                            self.stats.count(Malformed::TcpHeaderNotCaptured);
                        } else {
                            self.stats.count(Malformed::BadExtensionHeader);
                        }
                        return None;
                    }
                    let len = match next {
                        44 => 8,
                        // AH counts 4-byte words, minus 2 (RFC 4302).
                        51 => (usize::from(b[at + 1]) + 2) * 4,
                        _ => (usize::from(b[at + 1]) + 1) * 8,
                    };
                    if next == 44 {
                        let fo = u16::from_be_bytes([b[at + 2], b[at + 3]]);
                        let id = u32::from_be_bytes([b[at + 4], b[at + 5], b[at + 6], b[at + 7]]);
                        fragment = Some((usize::from(fo >> 3) * 8, fo & 1 != 0, id));
                    }
                    if at + len > total {
                        self.stats.count(Malformed::BadExtensionHeader);
                        return None;
                    }
                    next = b[at];
                    at += len;
                }
                _ => break,
            }
        }
        if matches!(next, 0 | 43 | 60 | 44 | 51) {
            self.stats.count(Malformed::BadExtensionHeader);
            return None;
        }
        if next != 6 {
            self.stats.non_tcp += 1;
            return None;
        }
        let l4 = b.get(at..).unwrap_or(&[]);
        let l4_len = total - at;
        match fragment {
            Some((offset, more, id)) if more || offset != 0 => {
                let key = FragKey {
                    src,
                    dst,
                    id,
                    protocol: 6,
                };
                let whole = l4.len() == l4_len;
                self.fragment(ts, key, offset, more, l4, whole, l4_len)
            }
            // An atomic fragment (offset 0, no more): the packet itself.
            _ => Some(Ip {
                src,
                dst,
                l4: Some(l4),
                l4_len,
            }),
        }
    }

    /// Drops datagrams whose first fragment is older than the timeout.
    fn expire(&mut self, now: Timestamp) {
        if self.pending.is_empty() {
            return;
        }
        let before = self.pending.len();
        let held = &mut self.held_bytes;
        self.pending.retain(|p| {
            let keep = now.0.saturating_sub(p.first_ts.0) <= FRAG_TIMEOUT_NS;
            if !keep {
                *held -= p.data.len();
            }
            keep
        });
        self.stats.fragments_timed_out += (before - self.pending.len()) as u64;
    }

    /// Forgets datagram `i`, counted as dropped by a cap.
    fn drop_pending(&mut self, i: usize) {
        self.forget(i);
        self.stats.fragments_dropped_cap += 1;
    }

    fn forget(&mut self, i: usize) {
        let p = self.pending.swap_remove(i);
        self.held_bytes -= p.data.len();
    }

    /// Adds one fragment (RFC 815 hole list, first copy wins); returns the
    /// datagram when it completes.
    #[allow(clippy::too_many_arguments)]
    fn fragment<'f>(
        &mut self,
        ts: Timestamp,
        key: FragKey,
        offset: usize,
        more: bool,
        bytes: &[u8],
        whole: bool,
        len: usize,
    ) -> Option<Ip<'f>> {
        self.stats.fragments += 1;
        let end = offset + len;
        if end > MAX_DATAGRAM || (more && len % 8 != 0) {
            self.stats.count(Malformed::BadFragment);
            return None;
        }
        if !whole {
            self.stats.count(Malformed::FragmentNotCaptured);
            return None;
        }
        if !self.pending.iter().any(|p| p.key == key) {
            if self.pending.len() >= FRAG_MAX_DATAGRAMS {
                self.drop_oldest_except(None);
            }
            self.pending.push(Pending {
                key,
                first_ts: ts,
                data: Vec::new(),
                have: Vec::new(),
                total: None,
                pieces: 0,
            });
        }
        loop {
            let i = self.pending.iter().position(|p| p.key == key)?;
            let grow = end.saturating_sub(self.pending[i].data.len());
            if self.held_bytes + grow <= FRAG_MAX_BYTES {
                return self.add_piece(i, offset, more, bytes, len);
            }
            if !self.drop_oldest_except(Some(key)) {
                self.drop_pending(i);
                return None;
            }
        }
    }

    /// Drops the datagram with the oldest first fragment, other than
    /// `keep`. Returns `false` when there is none.
    fn drop_oldest_except(&mut self, keep: Option<FragKey>) -> bool {
        let victim = (0..self.pending.len())
            .filter(|&j| Some(self.pending[j].key) != keep)
            .min_by_key(|&j| self.pending[j].first_ts);
        match victim {
            Some(j) => {
                self.drop_pending(j);
                true
            }
            None => false,
        }
    }

    fn add_piece<'f>(
        &mut self,
        i: usize,
        offset: usize,
        more: bool,
        bytes: &[u8],
        len: usize,
    ) -> Option<Ip<'f>> {
        let end = offset + len;
        let p = &mut self.pending[i];
        p.pieces += 1;
        if p.pieces > FRAG_MAX_PIECES
            || (!more && p.total.is_some_and(|t| t != end))
            || p.total.is_some_and(|t| end > t)
            || (!more && p.have.last().is_some_and(|&(_, e)| e > end))
        {
            // Too many pieces, or fragments that disagree on where the
            // datagram ends: not reassemblable.
            if p.pieces > FRAG_MAX_PIECES {
                self.drop_pending(i);
            } else {
                self.forget(i);
                self.stats.count(Malformed::BadFragment);
            }
            return None;
        }
        if !more {
            p.total = Some(end);
        }
        if p.data.len() < end {
            self.held_bytes += end - p.data.len();
            p.data.resize(end, 0);
        }
        // Copy only the parts not held yet; count overlaps and conflicts.
        let mut cursor = offset;
        let mut overlapped = false;
        let mut conflict = false;
        for &(s, e) in &p.have {
            if e <= cursor || s >= end {
                continue;
            }
            if s > cursor {
                p.data[cursor..s].copy_from_slice(&bytes[cursor - offset..s - offset]);
            }
            let (os, oe) = (s.max(cursor), e.min(end));
            overlapped = true;
            if p.data[os..oe] != bytes[os - offset..oe - offset] {
                conflict = true;
            }
            cursor = e.max(cursor);
            if cursor >= end {
                break;
            }
        }
        if cursor < end {
            p.data[cursor..end].copy_from_slice(&bytes[cursor - offset..]);
        }
        self.stats.fragment_overlaps += u64::from(overlapped);
        self.stats.fragment_conflicts += u64::from(conflict);
        insert_range(&mut p.have, offset, end);
        let complete = p.total.is_some_and(|t| p.have == [(0, t)]);
        if !complete {
            return None;
        }
        let p = self.pending.swap_remove(i);
        self.held_bytes -= p.data.len();
        self.stats.reassembled += 1;
        self.done = p.data;
        Some(Ip {
            src: p.key.src,
            dst: p.key.dst,
            l4: None,
            l4_len: self.done.len(),
        })
    }
}

/// Adds `[s, e)` to sorted disjoint ranges, merging what touches.
fn insert_range(have: &mut Vec<(usize, usize)>, s: usize, e: usize) {
    let (mut s, mut e) = (s, e);
    let mut out = Vec::with_capacity(have.len() + 1);
    for &(a, b) in have.iter() {
        if b < s || a > e {
            out.push((a, b));
        } else {
            s = s.min(a);
            e = e.max(b);
        }
    }
    out.push((s, e));
    out.sort_unstable();
    *have = out;
}

/// The network layer a link header announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ethertype {
    Ipv4,
    Ipv6,
    /// Raw IP: the version nibble says.
    ByVersion,
    Other,
}

impl From<u16> for Ethertype {
    fn from(v: u16) -> Self {
        match v {
            0x0800 => Ethertype::Ipv4,
            0x86dd => Ethertype::Ipv6,
            _ => Ethertype::Other,
        }
    }
}

/// RFC 9293 §3.1 header and its options.
fn tcp<'a>(
    stats: &mut DecodeStats,
    frame: &Frame<'_>,
    ip: &Ip<'_>,
    b: &'a [u8],
) -> Option<Segment<'a>> {
    if ip.l4_len < 20 {
        stats.count(Malformed::TcpTruncated);
        return None;
    }
    if b.len() < 20 {
        stats.count(Malformed::TcpHeaderNotCaptured);
        return None;
    }
    let doff = usize::from(b[12] >> 4) * 4;
    if doff < 20 || doff > ip.l4_len {
        stats.count(Malformed::BadTcpDataOffset);
        return None;
    }
    if doff > b.len() {
        stats.count(Malformed::TcpHeaderNotCaptured);
        return None;
    }
    let (options, bad_option) = tcp_options(&b[20..doff]);
    if bad_option {
        stats.count(Malformed::BadTcpOption);
    }
    let port = |at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
    let word = |at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    Some(Segment {
        frame: frame.number,
        ts: frame.ts,
        key: FlowKey {
            src: SocketAddr::new(ip.src, port(0)),
            dst: SocketAddr::new(ip.dst, port(2)),
        },
        seq: word(4),
        ack: word(8),
        flags: TcpFlags(b[13]),
        window: port(14),
        options,
        payload_len: (ip.l4_len - doff) as u32,
        payload: &b[doff..],
    })
}

/// Decodes TCP options; the flag says whether one was malformed (decoding
/// stops at a length that cannot be followed, skips a known kind with the
/// wrong length).
pub fn tcp_options(mut b: &[u8]) -> (TcpOptions, bool) {
    let mut o = TcpOptions::default();
    let mut bad = false;
    while let Some(&kind) = b.first() {
        match kind {
            0 => break,
            1 => {
                b = &b[1..];
                continue;
            }
            _ => {}
        }
        let Some(&len) = b.get(1) else {
            bad = true;
            break;
        };
        let len = usize::from(len);
        if len < 2 || len > b.len() {
            bad = true;
            break;
        }
        let v = &b[2..len];
        match (kind, v.len()) {
            (2, 2) => o.mss = Some(u16::from_be_bytes([v[0], v[1]])),
            (3, 1) => o.window_scale = Some(v[0]),
            (4, 0) => o.sack_permitted = true,
            (5, n) if n % 8 == 0 && n / 8 <= MAX_SACK_BLOCKS => {
                for (i, blk) in v.chunks_exact(8).enumerate() {
                    let l = u32::from_be_bytes([blk[0], blk[1], blk[2], blk[3]]);
                    let r = u32::from_be_bytes([blk[4], blk[5], blk[6], blk[7]]);
                    o.sack[i] = (l, r);
                }
                o.sack_len = (n / 8) as u8;
            }
            (8, 8) => {
                let w = |at: usize| u32::from_be_bytes([v[at], v[at + 1], v[at + 2], v[at + 3]]);
                o.timestamps = Some((w(0), w(4)));
            }
            (2..=5 | 8, _) => bad = true,
            _ => {}
        }
        b = &b[len..];
    }
    (o, bad)
}

/// Reads every frame of `reader`, decodes it, and calls `visit` with each
/// TCP segment (in capture order). Returns the counts, including the
/// reader's; `Err` only when the input cannot be read.
pub fn for_each_segment<R: Read>(
    reader: &mut CaptureReader<R>,
    mut visit: impl FnMut(&Segment<'_>),
) -> Result<DecodeStats, Error> {
    let mut decoder = Decoder::new();
    while let Some(frame) = reader.next_frame()? {
        if let Some(seg) = decoder.decode(&frame) {
            visit(&seg);
        }
    }
    let mut stats = decoder.finish();
    stats.capture = reader.stats();
    Ok(stats)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn options_of_every_kind() {
        let bytes = [
            2, 4, 0x05, 0xb4, // MSS 1460
            1, 3, 3, 7, // NOP, WS 7
            4, 2, // SACK permitted
            8, 10, 0, 0, 0, 1, 0, 0, 0, 2, // TS 1, 2
            5, 18, 0, 0, 0, 10, 0, 0, 0, 20, 0, 0, 0, 30, 0, 0, 0, 40, // 2 SACK blocks
            0,
        ];
        let (o, bad) = tcp_options(&bytes);
        assert!(!bad);
        assert_eq!(o.mss, Some(1460));
        assert_eq!(o.window_scale, Some(7));
        assert!(o.sack_permitted);
        assert_eq!(o.timestamps, Some((1, 2)));
        assert_eq!(o.sack_blocks(), &[(10, 20), (30, 40)]);
    }

    #[test]
    fn option_lengths_that_overflow_are_counted() {
        assert!(tcp_options(&[2, 40, 0, 0]).1);
        assert!(tcp_options(&[8, 0]).1);
        assert!(tcp_options(&[8]).1);
        assert!(tcp_options(&[5, 42]).1);
        assert!(tcp_options(&[2, 3, 0]).1);
        // Five SACK blocks cannot fit; the length is followed, not trusted.
        let mut five = vec![5, 42];
        five.extend([0u8; 40]);
        let (o, bad) = tcp_options(&five);
        assert!(bad);
        assert_eq!(o.sack_len, 0);
        // Unknown kinds are skipped by their length.
        let (o, bad) = tcp_options(&[30, 4, 9, 9, 3, 3, 2]);
        assert!(!bad);
        assert_eq!(o.window_scale, Some(2));
    }

    #[test]
    fn every_count_has_a_unique_name() {
        let mut stats = DecodeStats::default();
        stats.count(Malformed::BadIhl);
        let names = stats.named_counts();
        let mut unique: Vec<_> = names.iter().map(|(n, _)| *n).collect();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        assert!(names.contains(&("bad_ihl", 1)));
        assert_eq!(stats.malformed_total(), 1);
    }

    #[test]
    fn ranges_merge() {
        let mut h = Vec::new();
        insert_range(&mut h, 8, 16);
        insert_range(&mut h, 24, 32);
        assert_eq!(h, [(8, 16), (24, 32)]);
        insert_range(&mut h, 0, 8);
        insert_range(&mut h, 16, 24);
        assert_eq!(h, [(0, 32)]);
    }
}
