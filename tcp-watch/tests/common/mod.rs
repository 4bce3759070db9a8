//! Capture writers for the integration tests: TCP/IP packets built byte by
//! byte, wrapped in every link type the decoder reads, written as pcap (with
//! `pcap-file`) or pcapng (hand-written SHB, IDB and EPB blocks, either
//! byte order, several interfaces and sections).
//!
//! Every capture a test uses is made here, by these writers.

#![allow(dead_code, unreachable_pub)]

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter, RawPcapPacket};
use pcap_file::{DataLink, Endianness, TsResolution};

/// Link types, as numbers (the tcpdump.org registry).
pub const NULL: u16 = 0;
pub const ETHERNET: u16 = 1;
pub const PPP: u16 = 9;
pub const RAW: u16 = 101;
pub const LOOP: u16 = 108;
pub const SLL: u16 = 113;
pub const IPV4: u16 = 228;
pub const IPV6: u16 = 229;
pub const SLL2: u16 = 276;

/// TCP flag bits.
pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

/// One TCP segment to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tcp {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// Raw option bytes (padded to 4 by [`Tcp::header`]).
    pub options: Vec<u8>,
    pub payload: Vec<u8>,
}

impl Tcp {
    /// A data segment `src -> dst` with ACK|PSH.
    pub fn data(src: &str, dst: &str, seq: u32, payload: &[u8]) -> Tcp {
        Tcp {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            seq,
            ack: 1000,
            flags: ACK | PSH,
            window: 65535,
            options: Vec::new(),
            payload: payload.to_vec(),
        }
    }

    /// The TCP header (with options, padded with NOPs... and EOL) and payload.
    pub fn bytes(&self) -> Vec<u8> {
        let mut opts = self.options.clone();
        while opts.len() % 4 != 0 {
            opts.push(0);
        }
        let doff = (20 + opts.len()) / 4;
        let mut b = Vec::new();
        b.extend(self.src.port().to_be_bytes());
        b.extend(self.dst.port().to_be_bytes());
        b.extend(self.seq.to_be_bytes());
        b.extend(self.ack.to_be_bytes());
        b.push((doff as u8) << 4);
        b.push(self.flags);
        b.extend(self.window.to_be_bytes());
        b.extend([0, 0, 0, 0]); // checksum (not checked), urgent pointer
        b.extend(opts);
        b.extend(&self.payload);
        b
    }

    /// The IP packet carrying it (IPv4 or IPv6 by the addresses).
    pub fn ip(&self) -> Vec<u8> {
        match (self.src.ip(), self.dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                ipv4(s.octets(), d.octets(), 6, 0x1234, &self.bytes())
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => ipv6(s.octets(), d.octets(), 6, &self.bytes()),
            _ => panic!("mixed address families"),
        }
    }
}

/// An IPv4 packet (RFC 791), unfragmented, DF set.
pub fn ipv4(src: [u8; 4], dst: [u8; 4], protocol: u8, id: u16, l4: &[u8]) -> Vec<u8> {
    ipv4_fragment(src, dst, protocol, id, 0, false, l4)
}

/// One IPv4 fragment: `offset` in bytes (a multiple of 8), `more` = MF.
pub fn ipv4_fragment(
    src: [u8; 4],
    dst: [u8; 4],
    protocol: u8,
    id: u16,
    offset: usize,
    more: bool,
    l4: &[u8],
) -> Vec<u8> {
    let total = (20 + l4.len()) as u16;
    let mut b = vec![0x45, 0];
    b.extend(total.to_be_bytes());
    b.extend(id.to_be_bytes());
    let mut fo = (offset / 8) as u16;
    if more {
        fo |= 0x2000;
    }
    if offset == 0 && !more {
        fo |= 0x4000; // DF
    }
    b.extend(fo.to_be_bytes());
    b.extend([64, protocol, 0, 0]);
    b.extend(src);
    b.extend(dst);
    b.extend(l4);
    b
}

/// An IPv6 packet (RFC 8200) with `next` as its next header and
/// `after_fixed` (extension headers, then L4) as payload.
pub fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, after_fixed: &[u8]) -> Vec<u8> {
    let mut b = vec![0x60, 0, 0, 0];
    b.extend((after_fixed.len() as u16).to_be_bytes());
    b.extend([next, 64]);
    b.extend(src);
    b.extend(dst);
    b.extend(after_fixed);
    b
}

/// An IPv6 fragment header (8 bytes) followed by the piece.
pub fn ipv6_fragment_payload(
    next: u8,
    offset: usize,
    more: bool,
    id: u32,
    piece: &[u8],
) -> Vec<u8> {
    let mut b = vec![next, 0];
    b.extend((((offset / 8) as u16) << 3 | u16::from(more)).to_be_bytes());
    b.extend(id.to_be_bytes());
    b.extend(piece);
    b
}

/// Splits `l4` into IPv4 fragments of `piece` bytes (a multiple of 8).
pub fn ipv4_fragments(
    src: [u8; 4],
    dst: [u8; 4],
    id: u16,
    l4: &[u8],
    piece: usize,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < l4.len() {
        let end = (at + piece).min(l4.len());
        out.push(ipv4_fragment(
            src,
            dst,
            6,
            id,
            at,
            end < l4.len(),
            &l4[at..end],
        ));
        at = end;
    }
    out
}

/// Splits `l4` into IPv6 fragments of `piece` bytes (a multiple of 8).
pub fn ipv6_fragments(
    src: [u8; 16],
    dst: [u8; 16],
    id: u32,
    l4: &[u8],
    piece: usize,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < l4.len() {
        let end = (at + piece).min(l4.len());
        let fh = ipv6_fragment_payload(6, at, end < l4.len(), id, &l4[at..end]);
        out.push(ipv6(src, dst, 44, &fh));
        at = end;
    }
    out
}

/// Ethernet II with the given VLAN tags (outermost first: 0x88a8 for the
/// first of two, as QinQ does), for an IP packet.
pub fn ethernet(ip: &[u8], vlans: &[u16]) -> Vec<u8> {
    let mut b = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    for (i, vid) in vlans.iter().enumerate() {
        let tpid: u16 = if i == 0 && vlans.len() > 1 {
            0x88a8
        } else {
            0x8100
        };
        b.extend(tpid.to_be_bytes());
        b.extend(vid.to_be_bytes());
    }
    b.extend(ethertype_of(ip).to_be_bytes());
    b.extend(ip);
    b
}

/// Ethernet carrying an MPLS label stack of `labels` entries (RFC 3032).
pub fn ethernet_mpls(ip: &[u8], labels: usize) -> Vec<u8> {
    let mut b = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x88, 0x47];
    for i in 0..labels {
        let bottom = u8::from(i + 1 == labels);
        b.extend([0, 0x10 * (i as u8 + 1), bottom, 64]);
    }
    b.extend(ip);
    b
}

/// Ethernet padded to the 60-byte minimum with non-zero junk (so that
/// taking padding for data would show).
pub fn ethernet_padded(ip: &[u8]) -> Vec<u8> {
    let mut b = ethernet(ip, &[]);
    while b.len() < 60 {
        b.push(0xee);
    }
    b
}

fn ethertype_of(ip: &[u8]) -> u16 {
    if ip.first().map(|v| v >> 4) == Some(6) {
        0x86dd
    } else {
        0x0800
    }
}

/// Linux cooked capture v1 (16-byte header).
pub fn sll(ip: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0];
    b.extend(ethertype_of(ip).to_be_bytes());
    b.extend(ip);
    b
}

/// Linux cooked capture v2 (20-byte header).
pub fn sll2(ip: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(ethertype_of(ip).to_be_bytes());
    b.extend([0, 0]); // reserved
    b.extend(3u32.to_be_bytes()); // interface index
    b.extend([0, 1, 0, 6]); // ARPHRD_ETHER, PACKET_HOST, address length
    b.extend([2, 0, 0, 0, 0, 1, 0, 0]);
    b.extend(ip);
    b
}

/// BSD loopback: the address family as 4 bytes in the given order.
pub fn null(ip: &[u8], family: u32, big_endian: bool) -> Vec<u8> {
    let mut b = if big_endian {
        family.to_be_bytes().to_vec()
    } else {
        family.to_le_bytes().to_vec()
    };
    b.extend(ip);
    b
}

/// PPP with HDLC address/control bytes.
pub fn ppp(ip: &[u8]) -> Vec<u8> {
    let protocol: u16 = if ethertype_of(ip) == 0x86dd {
        0x57
    } else {
        0x21
    };
    let mut b = vec![0xff, 0x03];
    b.extend(protocol.to_be_bytes());
    b.extend(ip);
    b
}

/// One frame to write: timestamp (ns since the epoch), the bytes captured,
/// and the length on the wire.
#[derive(Debug, Clone)]
pub struct Rec {
    pub ts_ns: u64,
    pub data: Vec<u8>,
    pub orig_len: u32,
    /// pcapng: the interface index.
    pub iface: u32,
}

impl Rec {
    /// A whole frame.
    pub fn new(ts_ns: u64, data: Vec<u8>) -> Rec {
        let orig_len = data.len() as u32;
        Rec {
            ts_ns,
            data,
            orig_len,
            iface: 0,
        }
    }

    /// The frame cut to `snap` bytes.
    pub fn cut(ts_ns: u64, data: Vec<u8>, snap: usize) -> Rec {
        let orig_len = data.len() as u32;
        let mut data = data;
        data.truncate(snap);
        Rec {
            ts_ns,
            data,
            orig_len,
            iface: 0,
        }
    }

    pub fn on(mut self, iface: u32) -> Rec {
        self.iface = iface;
        self
    }
}

/// A pcap file written by `pcap-file`.
pub fn pcap(linktype: u16, snaplen: u32, nanos: bool, big_endian: bool, recs: &[Rec]) -> Vec<u8> {
    let header = PcapHeader {
        version_major: 2,
        version_minor: 4,
        ts_correction: 0,
        ts_accuracy: 0,
        snaplen,
        datalink: DataLink::from(u32::from(linktype)),
        ts_resolution: if nanos {
            TsResolution::NanoSecond
        } else {
            TsResolution::MicroSecond
        },
        endianness: if big_endian {
            Endianness::Big
        } else {
            Endianness::Little
        },
    };
    let mut w = PcapWriter::with_header(Vec::new(), header).unwrap();
    for r in recs {
        let ts = Duration::from_nanos(r.ts_ns);
        if r.data.len() as u32 <= snaplen && r.data.len() as u32 <= r.orig_len {
            w.write_packet(&PcapPacket::new(ts, r.orig_len, &r.data))
                .unwrap();
        } else {
            // pcap-file refuses records longer than the snap length; the
            // tests need them too.
            let frac = if nanos {
                ts.subsec_nanos()
            } else {
                ts.subsec_micros()
            };
            w.write_raw_packet(&RawPcapPacket {
                ts_sec: ts.as_secs() as u32,
                ts_frac: frac,
                incl_len: r.data.len() as u32,
                orig_len: r.orig_len,
                data: Cow::Borrowed(&r.data),
            })
            .unwrap();
        }
    }
    w.into_writer()
}

/// A pcapng interface description.
#[derive(Debug, Clone, Copy)]
pub struct Iface {
    pub linktype: u16,
    pub snaplen: u32,
    /// `if_tsresol` (None: the default, microseconds).
    pub tsresol: Option<u8>,
    /// `if_tsoffset` in seconds.
    pub tsoffset: Option<i64>,
}

impl Iface {
    pub fn new(linktype: u16) -> Iface {
        Iface {
            linktype,
            snaplen: 65535,
            tsresol: None,
            tsoffset: None,
        }
    }
}

/// A hand-written pcapng writer: sections, interfaces, enhanced packets.
#[derive(Debug, Default)]
pub struct PcapNg {
    pub out: Vec<u8>,
    big_endian: bool,
    ifaces: Vec<Iface>,
}

impl PcapNg {
    pub fn new() -> PcapNg {
        PcapNg::default()
    }

    fn u16(&self, v: u16) -> [u8; 2] {
        if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn u32(&self, v: u32) -> [u8; 4] {
        if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    /// Appends a block: type, total length, body (padded), total length.
    pub fn block(&mut self, block_type: u32, body: &[u8]) {
        let mut body = body.to_vec();
        while body.len() % 4 != 0 {
            body.push(0);
        }
        let total = (12 + body.len()) as u32;
        let (t, l) = (self.u32(block_type), self.u32(total));
        self.out.extend(t);
        self.out.extend(l);
        self.out.extend(body);
        self.out.extend(l);
    }

    /// Starts a section in the given byte order (its interfaces start over).
    pub fn section(&mut self, big_endian: bool) -> &mut Self {
        self.big_endian = big_endian;
        self.ifaces.clear();
        let mut body = Vec::new();
        body.extend(self.u32(0x1a2b_3c4d));
        body.extend(self.u16(1));
        body.extend(self.u16(0));
        body.extend([0xff; 8]); // section length unknown
        self.block(0x0a0d_0d0a, &body);
        self
    }

    /// Describes an interface; its index is the count before it.
    pub fn interface(&mut self, iface: Iface) -> &mut Self {
        let mut body = Vec::new();
        body.extend(self.u16(iface.linktype));
        body.extend(self.u16(0));
        body.extend(self.u32(iface.snaplen));
        // An option this reader ignores, to show options are walked.
        body.extend(self.u16(2)); // if_name
        body.extend(self.u16(3));
        body.extend(b"lo\0\0");
        if let Some(r) = iface.tsresol {
            body.extend(self.u16(9));
            body.extend(self.u16(1));
            body.extend([r, 0, 0, 0]);
        }
        if let Some(off) = iface.tsoffset {
            body.extend(self.u16(14));
            body.extend(self.u16(8));
            let v = off as u64;
            body.extend(if self.big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            });
        }
        body.extend([0, 0, 0, 0]); // opt_endofopt
        self.block(1, &body);
        self.ifaces.push(iface);
        self
    }

    /// A timestamp in the interface's units (without its offset).
    fn units(&self, iface: u32, ts_ns: u64) -> u64 {
        let Some(i) = self.ifaces.get(iface as usize) else {
            return ts_ns / 1000;
        };
        let offset_ns = i.tsoffset.unwrap_or(0) as i128 * 1_000_000_000;
        let ns = (i128::from(ts_ns) - offset_ns) as u128;
        match i.tsresol.unwrap_or(6) {
            r if r & 0x80 != 0 => ((ns << (r & 0x7f)) / 1_000_000_000) as u64,
            r if r <= 9 => (ns / 10u128.pow(9 - u32::from(r))) as u64,
            r => (ns * 10u128.pow(u32::from(r) - 9)) as u64,
        }
    }

    /// An enhanced packet block.
    pub fn packet(&mut self, r: &Rec) -> &mut Self {
        let units = self.units(r.iface, r.ts_ns);
        let mut body = Vec::new();
        body.extend(self.u32(r.iface));
        body.extend(self.u32((units >> 32) as u32));
        body.extend(self.u32(units as u32));
        body.extend(self.u32(r.data.len() as u32));
        body.extend(self.u32(r.orig_len));
        body.extend(&r.data);
        self.block(6, &body);
        self
    }

    /// A block of a type the reader skips (interface statistics).
    pub fn other_block(&mut self) -> &mut Self {
        let mut body = Vec::new();
        body.extend(self.u32(0));
        body.extend([0u8; 8]);
        self.block(5, &body);
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.out.clone()
    }
}
