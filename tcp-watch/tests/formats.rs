//! Every capture format and link type the input layer reads, on captures
//! written by the tests (`tests/common`), decoded back to the exact
//! segments; bad input of every kind counted, never a panic.

mod common;

use std::io::Read;

use common::*;
use proptest::prelude::*;
use tcp_watch::capture::{CaptureReader, LinkType};
use tcp_watch::packet::{DecodeStats, Decoder, Malformed, for_each_segment};
use tcp_watch::{Error, Segment, Timestamp};

/// A decoded segment, owned, to compare with what was written.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    frame: u64,
    ts: u64,
    src: String,
    dst: String,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    payload_len: u32,
    payload: Vec<u8>,
}

impl Seen {
    fn of(s: &Segment<'_>) -> Seen {
        Seen {
            frame: s.frame,
            ts: s.ts.0,
            src: s.key.src.to_string(),
            dst: s.key.dst.to_string(),
            seq: s.seq,
            ack: s.ack,
            flags: s.flags.0,
            window: s.window,
            payload_len: s.payload_len,
            payload: s.payload.to_vec(),
        }
    }

    fn expected(frame: u64, ts: u64, t: &Tcp) -> Seen {
        Seen {
            frame,
            ts,
            src: t.src.to_string(),
            dst: t.dst.to_string(),
            seq: t.seq,
            ack: t.ack,
            flags: t.flags,
            window: t.window,
            payload_len: t.payload.len() as u32,
            payload: t.payload.clone(),
        }
    }
}

fn read_all(bytes: &[u8]) -> (Vec<Seen>, DecodeStats) {
    let mut r = CaptureReader::new("test.cap", bytes).unwrap();
    let mut seen = Vec::new();
    let stats = for_each_segment(&mut r, |s| seen.push(Seen::of(s))).unwrap();
    (seen, stats)
}

fn segments() -> Vec<Tcp> {
    let mut syn = Tcp::data("10.0.0.1:40000", "10.0.0.2:80", 0xffff_fff0, b"");
    syn.flags = SYN;
    syn.ack = 0;
    syn.options = vec![2, 4, 0x05, 0xb4, 1, 3, 3, 7, 4, 2];
    vec![
        syn,
        Tcp::data("10.0.0.2:80", "10.0.0.1:40000", 7, b"hello, world"),
        Tcp::data("[2001:db8::1]:5000", "[2001:db8::2]:443", 1, &[0xab; 300]),
        Tcp::data("[fe80::1]:1", "[fe80::2]:2", u32::MAX, b"x"),
    ]
}

const T0: u64 = 1_700_000_000_123_456_789;

/// Timestamps of frame `i`, as a microsecond file can hold them.
fn ts(i: usize, nanos: bool) -> u64 {
    let t = T0 + i as u64 * 1_000_001_001;
    if nanos { t } else { t / 1000 * 1000 }
}

#[test]
fn pcap_micro_and_nano_in_both_byte_orders() {
    for nanos in [false, true] {
        for big_endian in [false, true] {
            let segs = segments();
            let recs: Vec<Rec> = segs
                .iter()
                .enumerate()
                .map(|(i, t)| Rec::new(ts(i, true), ethernet(&t.ip(), &[])))
                .collect();
            let file = pcap(ETHERNET, 65535, nanos, big_endian, &recs);
            let (seen, stats) = read_all(&file);
            let want: Vec<Seen> = segs
                .iter()
                .enumerate()
                .map(|(i, t)| Seen::expected(i as u64 + 1, ts(i, nanos), t))
                .collect();
            assert_eq!(seen, want, "nanos {nanos} big-endian {big_endian}");
            assert_eq!(stats.segments, 4);
            assert_eq!(stats.capture.truncated, 0);
            assert_eq!(stats.malformed_total(), 0);
        }
    }
}

/// Every link type, IPv4 and IPv6, each in its own pcap file.
#[test]
fn every_link_type() {
    type Wrap = fn(&[u8]) -> Vec<u8>;
    let cases: Vec<(&str, u16, Wrap, bool)> = vec![
        ("ethernet", ETHERNET, |ip| ethernet(ip, &[]), true),
        ("802.1Q", ETHERNET, |ip| ethernet(ip, &[42]), true),
        ("QinQ", ETHERNET, |ip| ethernet(ip, &[100, 200]), true),
        ("MPLS", ETHERNET, |ip| ethernet_mpls(ip, 1), true),
        ("MPLS x3", ETHERNET, |ip| ethernet_mpls(ip, 3), true),
        ("SLL", SLL, sll, true),
        ("SLL2", SLL2, sll2, true),
        ("PPP", PPP, ppp, true),
        ("raw", RAW, |ip| ip.to_vec(), true),
        ("raw DLT 12", 12, |ip| ip.to_vec(), true),
        ("NULL le AF_INET", NULL, |ip| null(ip, 2, false), false),
        ("NULL be AF_INET", NULL, |ip| null(ip, 2, true), false),
        ("LOOP AF_INET", LOOP, |ip| null(ip, 2, true), false),
        ("IPV4", IPV4, |ip| ip.to_vec(), false),
    ];
    let v6_cases: Vec<(&str, u16, Wrap)> = vec![
        ("NULL le AF_INET6 BSD", NULL, |ip| null(ip, 24, false)),
        ("NULL be AF_INET6 FreeBSD", NULL, |ip| null(ip, 28, true)),
        ("NULL le AF_INET6 macOS", NULL, |ip| null(ip, 30, false)),
        ("NULL le AF_INET6 Linux", NULL, |ip| null(ip, 10, false)),
        ("LOOP AF_INET6", LOOP, |ip| null(ip, 24, true)),
        ("IPV6", IPV6, |ip| ip.to_vec()),
    ];
    let segs = segments();
    let (v4, v6): (Vec<&Tcp>, Vec<&Tcp>) = segs.iter().partition(|t| t.src.is_ipv4());
    let check = |name: &str, linktype: u16, wrap: Wrap, list: &[&Tcp]| {
        let recs: Vec<Rec> = list
            .iter()
            .enumerate()
            .map(|(i, t)| Rec::new(ts(i, true), wrap(&t.ip())))
            .collect();
        let (seen, stats) = read_all(&pcap(linktype, 65535, true, false, &recs));
        let want: Vec<Seen> = list
            .iter()
            .enumerate()
            .map(|(i, t)| Seen::expected(i as u64 + 1, ts(i, true), t))
            .collect();
        assert_eq!(seen, want, "{name}");
        assert_eq!(stats.malformed_total(), 0, "{name}");
    };
    for (name, linktype, wrap, both) in cases {
        check(name, linktype, wrap, &v4);
        if both {
            check(name, linktype, wrap, &v6);
        }
    }
    for (name, linktype, wrap) in v6_cases {
        check(name, linktype, wrap, &v6);
    }
}

#[test]
fn tcp_options_are_decoded() {
    let mut t = Tcp::data("10.0.0.1:1", "10.0.0.2:2", 5, b"");
    t.options = vec![
        2, 4, 0x23, 0x28, // MSS 9000
        3, 3, 14, // WS 14
        4, 2, // SACK permitted
        8, 10, 0, 0, 0, 9, 0xff, 0xff, 0xff, 0xff, // TS 9, u32::MAX
    ];
    let mut sack = Tcp::data("10.0.0.2:2", "10.0.0.1:1", 5, b"");
    sack.options = vec![1, 1, 5, 34];
    for i in 0..4u32 {
        sack.options.extend((i * 100).to_be_bytes());
        sack.options.extend((i * 100 + 50).to_be_bytes());
    }
    let file = pcap(
        RAW,
        65535,
        false,
        false,
        &[Rec::new(0, t.ip()), Rec::new(1000, sack.ip())],
    );
    let mut r = CaptureReader::new("opts", &file[..]).unwrap();
    let mut opts = Vec::new();
    for_each_segment(&mut r, |s| opts.push(s.options)).unwrap();
    assert_eq!(opts[0].mss, Some(9000));
    assert_eq!(opts[0].window_scale, Some(14));
    assert!(opts[0].sack_permitted);
    assert_eq!(opts[0].timestamps, Some((9, u32::MAX)));
    assert_eq!(opts[0].sack_len, 0);
    assert_eq!(
        opts[1].sack_blocks(),
        &[(0, 50), (100, 150), (200, 250), (300, 350)]
    );
    assert_eq!(opts[1].mss, None);
}

/// pcapng: two sections of opposite byte order, interfaces with different
/// link types, snap lengths, `if_tsresol` (decimal and binary) and
/// `if_tsoffset`, blocks the reader skips.
#[test]
fn pcapng_sections_and_interfaces() {
    let segs = segments();
    let v4 = &segs[1];
    let v6 = &segs[2];
    let mut ng = PcapNg::new();
    ng.section(false)
        .interface(Iface::new(ETHERNET))
        .interface(Iface {
            tsresol: Some(9),
            ..Iface::new(RAW)
        })
        .interface(Iface {
            tsresol: Some(0x80 | 30),
            tsoffset: Some(1_600_000_000),
            ..Iface::new(SLL)
        });
    ng.packet(&Rec::new(T0 / 1000 * 1000, ethernet(&v4.ip(), &[7])).on(0))
        .packet(&Rec::new(T0 + 1, v6.ip()).on(1))
        .other_block()
        .packet(&Rec::new(T0 + 2_000_000_000, sll(&v4.ip())).on(2));
    ng.section(true)
        .interface(Iface {
            snaplen: 80,
            tsresol: Some(3),
            ..Iface::new(SLL2)
        })
        .packet(&Rec::cut(T0 / 1_000_000 * 1_000_000, sll2(&v6.ip()), 80).on(0));
    let (seen, stats) = read_all(&ng.bytes());
    assert_eq!(seen.len(), 4, "{stats:?}");
    assert_eq!(seen[0], Seen::expected(1, T0 / 1000 * 1000, v4));
    assert_eq!(seen[1], Seen::expected(2, T0 + 1, v6));
    // 2^-30 s units: within a nanosecond of the time written.
    assert!(
        seen[2].ts.abs_diff(T0 + 2_000_000_000) <= 1,
        "{}",
        seen[2].ts
    );
    assert_eq!(
        Seen {
            ts: 0,
            ..seen[2].clone()
        },
        Seen {
            ts: 0,
            ..Seen::expected(3, 0, v4)
        }
    );
    // Cut by the 80-byte snap length: 80 - 20 (SLL2) - 40 (IPv6) - 20 (TCP).
    assert_eq!(seen[3].ts, T0 / 1_000_000 * 1_000_000);
    assert_eq!(seen[3].payload_len, 300);
    assert_eq!(seen[3].payload, vec![0xab; 0]);
    assert_eq!(stats.snap_cut, 1);
    assert_eq!(stats.capture.sections, 2);
    assert_eq!(stats.capture.other_blocks, 1);
    assert_eq!(stats.malformed_total(), 0);
}

#[test]
fn frames_carry_their_interface_link_type() {
    let t = &segments()[1];
    let mut ng = PcapNg::new();
    ng.section(false)
        .interface(Iface::new(ETHERNET))
        .interface(Iface::new(IPV4));
    ng.packet(&Rec::new(1000, ethernet(&t.ip(), &[])).on(0))
        .packet(&Rec::new(2000, t.ip()).on(1))
        .packet(&Rec::new(3000, t.ip()).on(5)); // no such interface
    let bytes = ng.bytes();
    let mut r = CaptureReader::new("ng", &bytes[..]).unwrap();
    let mut got = Vec::new();
    while let Some(f) = r.next_frame().unwrap() {
        got.push((f.number, f.linktype, f.ts, f.original_len));
    }
    let len = t.ip().len() as u32;
    assert_eq!(
        got,
        [
            (1, LinkType::ETHERNET, Timestamp(1000), len + 14),
            (2, LinkType::IPV4, Timestamp(2000), len)
        ]
    );
    assert_eq!(r.stats().unknown_interface, 1);
    assert_eq!(r.stats().skipped_frames, 1);
}

/// A reader that hands out one byte per call (as a pipe may), to exercise
/// refilling at every boundary.
struct Dribble<'a>(&'a [u8]);

impl Read for Dribble<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match (self.0.split_first(), buf.first_mut()) {
            (Some((b, rest)), Some(out)) => {
                *out = *b;
                self.0 = rest;
                Ok(1)
            }
            _ => Ok(0),
        }
    }
}

#[test]
fn streaming_reads_one_byte_at_a_time() {
    let segs = segments();
    let recs: Vec<Rec> = segs.iter().map(|t| Rec::new(T0, sll(&t.ip()))).collect();
    let mut ng = PcapNg::new();
    ng.section(true).interface(Iface::new(SLL));
    for r in &recs {
        ng.packet(r);
    }
    for file in [pcap(SLL, 65535, false, true, &recs), ng.bytes()] {
        let (whole, _) = read_all(&file);
        let mut r = CaptureReader::new("pipe", Dribble(&file)).unwrap();
        let mut seen = Vec::new();
        for_each_segment(&mut r, |s| seen.push(Seen::of(s))).unwrap();
        assert_eq!(seen.len(), 4);
        assert_eq!(seen, whole);
    }
}

#[test]
fn payload_comes_from_the_ip_length_not_the_frame() {
    let t = Tcp::data("10.0.0.1:1", "10.0.0.2:2", 1, b"ok");
    let mut ack = Tcp::data("10.0.0.2:2", "10.0.0.1:1", 1, b"");
    ack.flags = ACK;
    let recs = [
        Rec::new(0, ethernet_padded(&t.ip())),
        Rec::new(1, ethernet_padded(&ack.ip())),
    ];
    assert_eq!(recs[0].data.len(), 60);
    let (seen, stats) = read_all(&pcap(ETHERNET, 65535, false, false, &recs));
    assert_eq!(seen[0].payload, b"ok");
    assert_eq!(seen[0].payload_len, 2);
    assert_eq!(seen[1].payload_len, 0);
    assert!(seen[1].payload.is_empty());
    assert_eq!(stats.trailing_bytes, 2);
    assert_eq!(stats.snap_cut, 0);
}

#[test]
fn frames_cut_by_the_snap_length() {
    let t = Tcp::data("10.0.0.1:1", "10.0.0.2:2", 1, &[7u8; 1000]);
    let frame = ethernet(&t.ip(), &[]);
    let recs = [
        Rec::cut(0, frame.clone(), 96), // 42 payload bytes kept
        Rec::cut(1, frame.clone(), 54), // headers only
        Rec::cut(2, frame.clone(), 40), // inside the TCP header
        Rec::cut(3, frame.clone(), 20), // inside the IP header
    ];
    let (seen, stats) = read_all(&pcap(ETHERNET, 96, false, false, &recs));
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].payload_len, 1000);
    assert_eq!(seen[0].payload, vec![7u8; 42]);
    assert_eq!(seen[1].payload_len, 1000);
    assert!(seen[1].payload.is_empty());
    assert_eq!(stats.snap_cut, 2);
    assert_eq!(stats.malformed(Malformed::TcpHeaderNotCaptured), 1);
    assert_eq!(stats.malformed(Malformed::IpTruncated), 1);
}

/// The TCP segment (header + payload) used by the fragment tests.
fn big_tcp() -> (Tcp, Vec<u8>) {
    let payload: Vec<u8> = (0..2000u32).map(|i| (i % 251) as u8).collect();
    let t = Tcp::data("192.0.2.1:1234", "192.0.2.2:80", 42, &payload);
    let l4 = t.bytes();
    (t, l4)
}

const A4: [u8; 4] = [192, 0, 2, 1];
const B4: [u8; 4] = [192, 0, 2, 2];

fn frag_file(frags: &[Vec<u8>], gap_ns: u64) -> Vec<u8> {
    let recs: Vec<Rec> = frags
        .iter()
        .enumerate()
        .map(|(i, f)| Rec::new(i as u64 * gap_ns, ethernet(f, &[])))
        .collect();
    pcap(ETHERNET, 65535, true, false, &recs)
}

#[test]
fn ipv4_fragments_in_order_and_reversed() {
    let (t, l4) = big_tcp();
    let frags = ipv4_fragments(A4, B4, 77, &l4, 512);
    assert_eq!(frags.len(), 4);
    let (seen, stats) = read_all(&frag_file(&frags, 1000));
    assert_eq!(seen, [Seen::expected(4, 3000, &t)]);
    assert_eq!((stats.fragments, stats.reassembled), (4, 1));
    let mut rev = frags.clone();
    rev.reverse();
    let (seen, stats) = read_all(&frag_file(&rev, 1000));
    assert_eq!(seen, [Seen::expected(4, 3000, &t)]);
    assert_eq!(stats.reassembled, 1);
    assert_eq!(stats.fragments_incomplete_at_end, 0);
}

#[test]
fn ipv6_fragments_in_order_and_reversed() {
    let payload = vec![0x5a; 1500];
    let t = Tcp::data("[2001:db8::1]:9", "[2001:db8::2]:10", 3, &payload);
    let (a, b) = (
        [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
    );
    let frags = ipv6_fragments(a, b, 0xdead_beef, &t.bytes(), 600);
    assert_eq!(frags.len(), 3);
    for order in [frags.clone(), frags.iter().rev().cloned().collect()] {
        let (seen, stats) = read_all(&frag_file(&order, 10));
        assert_eq!(seen, [Seen::expected(3, 20, &t)]);
        assert_eq!(stats.reassembled, 1);
    }
}

#[test]
fn overlapping_and_duplicate_fragments_keep_the_first_copy() {
    let (t, l4) = big_tcp();
    let mut frags = ipv4_fragments(A4, B4, 5, &l4, 512);
    // A duplicate of the first piece, and a conflicting copy of bytes
    // 256..768 sent before the real second piece.
    let dup = frags[0].clone();
    let mut evil = l4[256..768].to_vec();
    evil.iter_mut().for_each(|b| *b ^= 0xff);
    let evil = ipv4_fragment(A4, B4, 6, 5, 256, true, &evil);
    frags.insert(1, dup);
    frags.insert(2, evil);
    let (seen, stats) = read_all(&frag_file(&frags, 1));
    // First copy wins: bytes 256..512 from the first fragment, 512..768
    // from the conflicting one (which came before the real second piece).
    let mut want = l4.clone();
    for b in &mut want[512..768] {
        *b ^= 0xff;
    }
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].payload, want[20..].to_vec());
    assert_eq!(seen[0].seq, t.seq);
    assert_eq!(stats.fragment_overlaps, 3);
    assert_eq!(stats.fragment_conflicts, 2);
}

#[test]
fn incomplete_and_expired_fragments_are_counted() {
    let (_, l4) = big_tcp();
    let mut frags = ipv4_fragments(A4, B4, 9, &l4, 512);
    frags.remove(2);
    let (seen, stats) = read_all(&frag_file(&frags, 1));
    assert!(seen.is_empty());
    assert_eq!(stats.fragments_incomplete_at_end, 1);
    // The missing piece comes 31 s of capture time later: too late.
    let mut late = ipv4_fragments(A4, B4, 9, &l4, 512);
    let last = late.remove(2);
    late.push(last);
    let (seen, stats) = read_all(&frag_file(&late, 10_500_000_000));
    assert!(seen.is_empty());
    assert_eq!(stats.fragments_timed_out, 1);
    assert_eq!(stats.fragments_incomplete_at_end, 1);
}

#[test]
fn fragment_memory_is_capped() {
    let (_, l4) = big_tcp();
    // 100 datagrams, each missing its last piece: at most 64 held.
    let frags: Vec<Vec<u8>> = (0..100u16)
        .map(|id| ipv4_fragments(A4, B4, id, &l4, 512).remove(0))
        .collect();
    let (_, stats) = read_all(&frag_file(&frags, 1));
    assert_eq!(stats.fragments_dropped_cap, 36);
    assert_eq!(stats.fragments_incomplete_at_end, 64);
}

#[test]
fn non_tcp_is_counted_and_skipped() {
    let udp = ipv4(A4, B4, 17, 1, &[0u8; 8]);
    let mut arp = vec![0xff; 12];
    arp.extend([0x08, 0x06]);
    arp.extend([0u8; 28]);
    let icmp6 = ipv6([0; 16], [0; 16], 58, &[0u8; 8]);
    let recs = [
        Rec::new(0, ethernet(&udp, &[])),
        Rec::new(0, arp),
        Rec::new(0, ethernet(&icmp6, &[])),
    ];
    let (seen, stats) = read_all(&pcap(ETHERNET, 65535, false, false, &recs));
    assert!(seen.is_empty());
    assert_eq!(stats.non_tcp, 3);
    assert_eq!(stats.malformed_total(), 0);
}

fn with_byte(mut v: Vec<u8>, at: usize, b: u8) -> Vec<u8> {
    v[at] = b;
    v
}

#[test]
fn malformed_packets_of_every_kind_are_counted() {
    let t = Tcp::data("10.0.0.1:1", "10.0.0.2:2", 1, b"data");
    let ip = t.ip();
    let (a6, b6) = ([1u8; 16], [2u8; 16]);
    let cases: Vec<(Malformed, u16, Vec<u8>)> = vec![
        (Malformed::UnknownLinkType, 147, ip.clone()),
        (Malformed::LinkTruncated, ETHERNET, vec![0; 10]),
        (Malformed::LinkTruncated, SLL2, vec![0; 19]),
        (Malformed::BadIpVersion, RAW, with_byte(ip.clone(), 0, 0x55)),
        (
            Malformed::BadIpVersion,
            IPV4,
            with_byte(ip.clone(), 0, 0x65),
        ),
        (Malformed::IpTruncated, RAW, ip[..12].to_vec()),
        (Malformed::BadIhl, RAW, with_byte(ip.clone(), 0, 0x44)),
        (Malformed::BadIhl, RAW, with_byte(ip.clone(), 0, 0x4f)),
        (
            Malformed::BadTotalLength,
            RAW,
            with_byte(with_byte(ip.clone(), 2, 0), 3, 19),
        ),
        (
            Malformed::BadExtensionHeader,
            RAW,
            ipv6(a6, b6, 0, &[6, 0, 0, 0]),
        ),
        (
            Malformed::BadExtensionHeader,
            RAW,
            ipv6(a6, b6, 60, &[6, 9, 0, 0, 0, 0, 0, 0]),
        ),
        (
            Malformed::BadFragment,
            RAW,
            ipv4_fragment(A4, B4, 6, 1, 65528, false, &[0; 16]),
        ),
        (
            Malformed::BadFragment,
            RAW,
            ipv4_fragment(A4, B4, 6, 1, 0, true, &[0; 20 + 5]),
        ),
        (Malformed::TcpTruncated, RAW, ipv4(A4, B4, 6, 1, &[0; 12])),
        (
            Malformed::BadTcpDataOffset,
            RAW,
            with_byte(ip.clone(), 32, 0x40),
        ),
        (
            Malformed::BadTcpDataOffset,
            RAW,
            with_byte(ip.clone(), 32, 0xf0),
        ),
        (Malformed::BadTcpOption, RAW, {
            let mut o = t.clone();
            o.options = vec![2, 40, 0, 0];
            o.ip()
        }),
    ];
    for (kind, linktype, data) in cases {
        let file = pcap(linktype, 65535, false, false, &[Rec::new(0, data)]);
        let (seen, stats) = read_all(&file);
        assert_eq!(stats.malformed(kind), 1, "{kind:?}: {stats:?}");
        assert_eq!(stats.malformed_total(), 1, "{kind:?}: {stats:?}");
        // A bad option keeps the segment; every other kind drops it.
        assert_eq!(
            seen.len(),
            usize::from(kind == Malformed::BadTcpOption),
            "{kind:?}"
        );
    }
    // A fragment the snap length cut cannot be reassembled.
    let frag = ipv4_fragment(A4, B4, 6, 1, 0, true, &[0; 64]);
    let (_, stats) = read_all(&pcap(RAW, 65535, false, false, &[Rec::cut(0, frag, 50)]));
    assert_eq!(stats.malformed(Malformed::FragmentNotCaptured), 1);
}

#[test]
fn an_ip_length_beyond_the_wire_frame_is_kept_as_not_captured() {
    let t = Tcp::data("10.0.0.1:1", "10.0.0.2:2", 1, &[1u8; 100]);
    let mut ip = t.ip();
    ip.truncate(ip.len() - 30);
    let (seen, stats) = read_all(&pcap(RAW, 65535, false, false, &[Rec::new(0, ip)]));
    assert_eq!(seen[0].payload_len, 100);
    assert_eq!(seen[0].payload.len(), 70);
    assert_eq!(stats.ip_longer_than_frame, 1);
}

#[test]
fn zero_and_huge_snap_lengths_are_counted() {
    let t = Tcp::data("10.0.0.1:1", "10.0.0.2:2", 1, b"x");
    for (snaplen, zero, huge) in [(0, 1, 0), (u32::MAX, 0, 1), (65535, 0, 0)] {
        let (seen, stats) = read_all(&pcap(RAW, snaplen, false, false, &[Rec::new(0, t.ip())]));
        assert_eq!(seen.len(), 1);
        assert_eq!(
            (stats.capture.zero_snaplen, stats.capture.huge_snaplen),
            (zero, huge)
        );
    }
}

#[test]
fn truncated_files_end_with_a_count_at_every_cut() {
    let segs = segments();
    let recs: Vec<Rec> = segs
        .iter()
        .map(|t| Rec::new(T0, ethernet(&t.ip(), &[])))
        .collect();
    let mut ng = PcapNg::new();
    ng.section(false).interface(Iface::new(ETHERNET));
    for r in &recs {
        ng.packet(r);
    }
    for (file, ng) in [
        (pcap(ETHERNET, 65535, false, false, &recs), false),
        (ng.bytes(), true),
    ] {
        // Where records (blocks) end: a cut there is a clean end.
        let mut ends = Vec::new();
        let mut at = if ng { 0 } else { 24 };
        ends.push(at);
        while at < file.len() {
            let len =
                u32::from_le_bytes(file[at + if ng { 4 } else { 8 }..][..4].try_into().unwrap());
            at += if ng { len as usize } else { 16 + len as usize };
            ends.push(at);
        }
        for cut in 0..file.len() {
            let part = &file[..cut];
            let mut r = match CaptureReader::new("cut", part) {
                Ok(r) => r,
                Err(Error::Capture { what, reason }) => {
                    assert_eq!(what, "cut");
                    assert!(cut < if ng { 12 } else { 4 }, "cut {cut}: {reason}");
                    continue;
                }
                Err(e) => panic!("{e}"),
            };
            let mut n = 0;
            let stats = for_each_segment(&mut r, |_| n += 1).unwrap();
            assert!(n < 4, "cut at {cut}");
            let clean = ends.contains(&cut);
            assert_eq!(stats.capture.truncated, u64::from(!clean), "cut at {cut}");
            assert_eq!(stats.capture.corrupt, 0, "cut at {cut}");
        }
        let (seen, stats) = read_all(&file);
        assert_eq!((seen.len(), stats.capture.truncated), (4, 0));
    }
}

#[test]
fn garbage_and_corruption() {
    let e = CaptureReader::new("junk.bin", &b"GIF89a........................"[..]).unwrap_err();
    assert!(
        matches!(&e, Error::Capture { what, .. } if what == "junk.bin"),
        "{e}"
    );
    assert!(e.to_string().contains("expected pcap"), "{e}");
    // A pcap record claiming 4 GiB: the framing is lost, the read stops.
    let t = Tcp::data("10.0.0.1:1", "10.0.0.2:2", 1, b"x");
    let mut file = pcap(
        RAW,
        65535,
        false,
        false,
        &[Rec::new(0, t.ip()), Rec::new(0, t.ip())],
    );
    let second = 24 + 16 + t.ip().len();
    file[second + 8..second + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    let (seen, stats) = read_all(&file);
    assert_eq!((seen.len(), stats.capture.corrupt), (1, 1));
    // A pcapng block length that is not a multiple of 4.
    let mut ng = PcapNg::new();
    ng.section(false)
        .interface(Iface::new(RAW))
        .packet(&Rec::new(0, t.ip()));
    let mut bytes = ng.bytes();
    let at = bytes.len() - 4;
    bytes[at] ^= 1;
    let (seen, stats) = read_all(&bytes);
    assert_eq!((seen.len(), stats.capture.corrupt), (0, 1));
}

#[test]
fn oversize_pcapng_blocks_are_skipped_unheld() {
    let t = Tcp::data("10.0.0.1:1", "10.0.0.2:2", 1, b"after");
    let mut ng = PcapNg::new();
    ng.section(false).interface(Iface::new(RAW));
    ng.packet(&Rec::new(0, vec![0x45; 2 << 20]));
    ng.packet(&Rec::new(0, t.ip()));
    let (seen, stats) = read_all(&ng.bytes());
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].frame, 2);
    assert_eq!(seen[0].payload, b"after");
    assert_eq!(stats.capture.oversize_blocks, 1);
}

fn decode_bytes(linktype: u16, data: &[u8]) -> DecodeStats {
    let file = pcap(linktype, 65535, false, false, &[Rec::new(0, data.to_vec())]);
    let mut r = CaptureReader::new("prop", &file[..]).unwrap();
    let mut d = Decoder::new();
    while let Some(f) = r.next_frame().unwrap() {
        if let Some(s) = d.decode(&f) {
            assert!(s.payload.len() <= s.payload_len as usize);
        }
    }
    d.finish()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_frames_never_panic(
        linktype in prop::sample::select(vec![NULL, ETHERNET, PPP, RAW, LOOP, SLL, IPV4, IPV6, SLL2, 147]),
        data in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let stats = decode_bytes(linktype, &data);
        prop_assert_eq!(stats.frames, 1);
    }

    #[test]
    fn mutated_packets_never_panic(
        at in 0usize..120,
        byte in any::<u8>(),
        cut in 0usize..160,
    ) {
        let mut t = Tcp::data("10.0.0.1:1", "10.0.0.2:2", 1, &[3u8; 64]);
        t.options = vec![2, 4, 5, 0xb4, 5, 10, 0, 0, 0, 1, 0, 0, 0, 2];
        let mut ip = t.ip();
        let n = ip.len();
        ip[at % n] = byte;
        ip.truncate(cut.max(1));
        decode_bytes(RAW, &ip);
        let v6 = Tcp::data("[::1]:1", "[::2]:2", 1, &[3u8; 64]).ip();
        let mut v6 = v6;
        let n = v6.len();
        v6[at % n] = byte;
        decode_bytes(RAW, &v6);
    }

    /// Any cutting of a datagram into fragments, sent in any order with
    /// duplicates, reassembles to exactly the original segment.
    #[test]
    fn fragments_in_any_order_reassemble(
        words in 1usize..40,
        order in Just((0..16usize).collect::<Vec<_>>()).prop_shuffle(),
        dups in prop::collection::vec(0usize..16, 0..4),
        v6 in any::<bool>(),
    ) {
        let payload: Vec<u8> = (0..700u32).map(|i| (i * 7) as u8).collect();
        let t = if v6 {
            Tcp::data("[2001:db8::1]:7", "[2001:db8::2]:8", 1, &payload)
        } else {
            Tcp::data("192.0.2.1:7", "192.0.2.2:8", 1, &payload)
        };
        let piece = words * 8;
        let frags = if v6 {
            ipv6_fragments([1; 16], [2; 16], 3, &t.bytes(), piece)
        } else {
            ipv4_fragments(A4, B4, 3, &t.bytes(), piece)
        };
        let mut sent: Vec<Vec<u8>> = order
            .iter()
            .filter(|&&i| i < frags.len())
            .map(|&i| frags[i].clone())
            .collect();
        // Pieces past the 16th come last, in order.
        sent.extend(frags.iter().skip(16).cloned());
        for d in dups {
            if let Some(f) = frags.get(d) {
                sent.insert(d % sent.len(), f.clone());
            }
        }
        let (seen, stats) = read_all(&frag_file(&sent, 1));
        prop_assert_eq!(seen.len(), 1, "{:?}", stats);
        prop_assert_eq!(&seen[0].payload, &payload);
        prop_assert_eq!(stats.fragment_conflicts, 0);
        // A duplicate arriving after the datagram completed starts a new
        // one, left incomplete (as a receiver would).
        prop_assert!(stats.fragments_incomplete_at_end <= 1);
    }

    /// Fragments with arbitrary offsets, lengths and flags never panic and
    /// never yield a segment longer than a datagram.
    #[test]
    fn arbitrary_fragments_never_panic(
        frags in prop::collection::vec((0usize..8200, 0usize..300, any::<bool>(), 0u16..3), 1..30),
    ) {
        let recs: Vec<Rec> = frags
            .iter()
            .enumerate()
            .map(|(i, &(off, len, more, id))| {
                let body = vec![i as u8; len];
                Rec::new(i as u64, ipv4_fragment(A4, B4, 6, id, off * 8, more, &body))
            })
            .collect();
        let (seen, _) = read_all(&pcap(RAW, 65535, false, false, &recs));
        for s in seen {
            prop_assert!(s.payload.len() <= 65535);
        }
    }

    #[test]
    fn arbitrary_capture_files_never_panic(
        head in prop::sample::select(vec![
            vec![0xd4, 0xc3, 0xb2, 0xa1], vec![0xa1, 0xb2, 0xc3, 0xd4],
            vec![0x4d, 0x3c, 0xb2, 0xa1], vec![0x0a, 0x0d, 0x0d, 0x0a],
            vec![],
        ]),
        body in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut file = head;
        file.extend(body);
        if let Ok(mut r) = CaptureReader::new("prop", &file[..]) {
            for_each_segment(&mut r, |_| {}).unwrap();
        }
    }
}

#[test]
fn ipv4_options_and_ipv6_extension_headers_are_skipped() {
    let t = Tcp::data("10.0.0.1:1", "10.0.0.2:2", 9, b"behind options");
    // IPv4 with 8 bytes of options (NOP NOP NOP EOL, padding): IHL 7.
    let plain = t.ip();
    let mut v4 = vec![0x47];
    v4.extend(&plain[1..20]);
    v4[2..4].copy_from_slice(&((plain.len() + 8) as u16).to_be_bytes());
    v4.extend([1, 1, 1, 0, 0, 0, 0, 0]);
    v4.extend(&plain[20..]);
    // IPv6: hop-by-hop (8 bytes), destination options (16 bytes), an
    // atomic fragment header, then TCP.
    let t6 = Tcp::data("[2001:db8::1]:1", "[2001:db8::2]:2", 9, b"behind headers");
    let mut ext = vec![60, 0, 1, 4, 0, 0, 0, 0];
    ext.extend([44, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    ext.extend(ipv6_fragment_payload(6, 0, false, 7, &t6.bytes()));
    let (a, b) = match (t6.src.ip(), t6.dst.ip()) {
        (std::net::IpAddr::V6(a), std::net::IpAddr::V6(b)) => (a.octets(), b.octets()),
        _ => unreachable!(),
    };
    let v6 = ipv6(a, b, 0, &ext);
    let recs = [Rec::new(0, v4), Rec::new(1000, v6)];
    let (seen, stats) = read_all(&pcap(RAW, 65535, false, false, &recs));
    assert_eq!(
        seen,
        [Seen::expected(1, 0, &t), Seen::expected(2, 1000, &t6)]
    );
    assert_eq!(stats.malformed_total(), 0);
    assert_eq!(stats.fragments, 0, "an atomic fragment is not held");
}

#[test]
fn simple_and_obsolete_packet_blocks() {
    let t = Tcp::data("10.0.0.1:1", "10.0.0.2:2", 9, &[4u8; 100]);
    let ip = t.ip();
    let mut ng = PcapNg::new();
    ng.section(false).interface(Iface {
        snaplen: 60,
        ..Iface::new(RAW)
    });
    // Simple Packet Block: original length, then the bytes kept (the snap
    // length of interface 0 cuts them).
    let mut spb = (ip.len() as u32).to_le_bytes().to_vec();
    spb.extend(&ip[..60]);
    ng.packet(&Rec::cut(7_000_000_000, ip.clone(), 60));
    ng.block(3, &spb);
    // Obsolete Packet Block: interface (u16), drops (u16), timestamp,
    // lengths.
    let mut opb = vec![0, 0, 0, 0];
    opb.extend(0u32.to_le_bytes());
    opb.extend(5_000_000u32.to_le_bytes());
    opb.extend(60u32.to_le_bytes());
    opb.extend((ip.len() as u32).to_le_bytes());
    opb.extend(&ip[..60]);
    ng.block(2, &opb);
    let (seen, stats) = read_all(&ng.bytes());
    assert_eq!(seen.len(), 3, "{stats:?}");
    // The simple packet has no timestamp of its own: it keeps the last one.
    assert_eq!((seen[1].frame, seen[1].ts), (2, 7_000_000_000));
    assert_eq!((seen[2].frame, seen[2].ts), (3, 5_000_000_000));
    for s in &seen {
        assert_eq!(s.payload_len, 100);
        assert_eq!(s.payload, vec![4u8; 20]);
    }
}

#[test]
fn files_by_path_and_missing_files() {
    let t = Tcp::data("10.0.0.1:1", "10.0.0.2:2", 9, b"on disk");
    let path = std::env::temp_dir().join(format!("tcp-watch-formats-{}.pcap", std::process::id()));
    std::fs::write(
        &path,
        pcap(RAW, 65535, false, false, &[Rec::new(0, t.ip())]),
    )
    .unwrap();
    let mut r = tcp_watch::capture::open_path(&path).unwrap();
    let mut n = 0;
    for_each_segment(&mut r, |s| {
        assert_eq!(s.payload, b"on disk");
        n += 1
    })
    .unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(n, 1);
    let e = tcp_watch::capture::open_path(&path).unwrap_err();
    assert!(matches!(&e, Error::Io { path: p, .. } if *p == path), "{e}");
}

#[test]
fn fragments_disagreeing_on_the_end_are_malformed() {
    let (_, l4) = big_tcp();
    let frags = ipv4_fragments(A4, B4, 4, &l4, 512);
    // A second "last" fragment ending elsewhere than the first.
    let other_end = ipv4_fragment(A4, B4, 6, 4, 1024, false, &[0; 64]);
    let sent = [frags[3].clone(), other_end, frags[0].clone()];
    let (seen, stats) = read_all(&frag_file(&sent, 1));
    assert!(seen.is_empty());
    assert_eq!(stats.malformed(Malformed::BadFragment), 1);
    assert_eq!(stats.fragments_dropped_cap, 0);
    // The datagram was forgotten; the first piece starts a new one.
    assert_eq!(stats.fragments_incomplete_at_end, 1);
}
