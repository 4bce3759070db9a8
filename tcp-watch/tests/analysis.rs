//! The analysis core on synthetic connections: segments built here, with
//! the capture timestamps each test chooses, so every classification rule
//! (RFC 6298 timeouts, RFC 5681 fast retransmit, RFC 6675 SACK recovery,
//! RFC 8985 tail-loss probes, RFC 2883 D-SACK) is checked against a case
//! that could fail. Each connection is also written to a pcap file (by the
//! writers in `common`) and read back through the capture reader and the
//! decoder: the report from the capture must be the same, so every
//! classification holds on a real capture file too.

mod common;

use proptest::prelude::*;
use std::net::SocketAddr;
use tcp_watch::analysis::{Analyzer, ConnectionAnalyzer, ConnectionReport, RetransmissionKind};
use tcp_watch::{FlowKey, Segment, TcpFlags, TcpOptions, Timestamp};

static ZEROS: [u8; 4096] = [0; 4096];

const SYN: TcpFlags = TcpFlags::SYN;
const ACK: TcpFlags = TcpFlags::ACK;
const WIN: u16 = 4000;

fn client() -> SocketAddr {
    "10.0.0.1:40000".parse().unwrap()
}
fn server() -> SocketAddr {
    "10.0.0.2:80".parse().unwrap()
}

/// A connection written segment by segment; frames count from 1.
struct Trace {
    segs: Vec<Segment<'static>>,
}

impl Trace {
    fn new() -> Self {
        Trace { segs: Vec::new() }
    }

    /// Adds a segment; returns its frame number.
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        from_client: bool,
        t_ms: f64,
        seq: u32,
        ack: u32,
        flags: TcpFlags,
        len: u32,
        window: u16,
        options: TcpOptions,
    ) -> u64 {
        let key = if from_client {
            FlowKey {
                src: client(),
                dst: server(),
            }
        } else {
            FlowKey {
                src: server(),
                dst: client(),
            }
        };
        let frame = self.segs.len() as u64 + 1;
        self.segs.push(Segment {
            frame,
            ts: Timestamp((t_ms * 1e6) as u64),
            key,
            seq,
            ack,
            flags,
            window,
            options,
            payload_len: len,
            payload: &ZEROS[..len as usize],
        });
        frame
    }

    /// Client data (with ACK of the server's first byte of data).
    fn c(&mut self, t_ms: f64, seq: u32, len: u32) -> u64 {
        self.add(
            true,
            t_ms,
            seq,
            S_ISN + 1,
            ACK,
            len,
            WIN,
            TcpOptions::default(),
        )
    }

    /// Server pure ACK.
    fn s_ack(&mut self, t_ms: f64, ack: u32) -> u64 {
        self.add(
            false,
            t_ms,
            S_ISN + 1,
            ack,
            ACK,
            0,
            WIN,
            TcpOptions::default(),
        )
    }

    /// Server pure ACK with SACK blocks.
    fn s_sack(&mut self, t_ms: f64, ack: u32, blocks: &[(u32, u32)]) -> u64 {
        let mut o = TcpOptions::default();
        for (i, b) in blocks.iter().enumerate() {
            o.sack[i] = *b;
        }
        o.sack_len = blocks.len() as u8;
        self.add(false, t_ms, S_ISN + 1, ack, ACK, 0, WIN, o)
    }

    /// SYN at 0, SYN-ACK at `rtt/2`, ACK at `rtt` (a capture in the middle).
    fn handshake(&mut self, c_isn: u32, rtt_ms: f64) {
        let syn_opts = TcpOptions {
            mss: Some(1460),
            window_scale: Some(0),
            sack_permitted: true,
            ..TcpOptions::default()
        };
        self.add(true, 0.0, c_isn, 0, SYN, 0, 65535, syn_opts);
        self.add(
            false,
            rtt_ms / 2.0,
            S_ISN,
            c_isn.wrapping_add(1),
            SYN | ACK,
            0,
            65535,
            syn_opts,
        );
        self.add(
            true,
            rtt_ms,
            c_isn.wrapping_add(1),
            S_ISN + 1,
            ACK,
            0,
            WIN,
            TcpOptions::default(),
        );
    }

    fn analyze(&self) -> ConnectionReport {
        let mut a = ConnectionAnalyzer::new(0);
        for s in &self.segs {
            a.push(s);
        }
        let direct = a.report();
        assert_eq!(
            self.analyze_capture(),
            direct,
            "the report from the written capture differs"
        );
        direct
    }

    /// The same segments written as an Ethernet pcap, read back and analysed.
    fn analyze_capture(&self) -> ConnectionReport {
        let recs: Vec<common::Rec> = self
            .segs
            .iter()
            .map(|s| {
                let tcp = common::Tcp {
                    src: s.key.src,
                    dst: s.key.dst,
                    seq: s.seq,
                    ack: s.ack,
                    flags: s.flags.0,
                    window: s.window,
                    options: option_bytes(&s.options),
                    payload: s.payload.to_vec(),
                };
                common::Rec::new(s.ts.0, common::ethernet(&tcp.ip(), &[]))
            })
            .collect();
        let file = common::pcap(common::ETHERNET, 65535, true, false, &recs);
        let mut reader =
            tcp_watch::capture::CaptureReader::new("written", std::io::Cursor::new(file)).unwrap();
        let mut a = ConnectionAnalyzer::new(0);
        let stats = tcp_watch::packet::for_each_segment(&mut reader, |seg| a.push(seg)).unwrap();
        assert_eq!(stats.segments, self.segs.len() as u64);
        a.report()
    }
}

const C_ISN: u32 = 1000;
const S_ISN: u32 = 5000;

#[test]
fn handshake_options_and_initial_rtt() {
    let mut t = Trace::new();
    t.handshake(C_ISN, 20.0);
    let r = t.analyze();
    let h = r.handshake;
    assert_eq!((r.client, r.server), (client(), server()));
    assert!(r.start_known);
    assert_eq!(h.client.isn, Some(C_ISN));
    assert_eq!(h.server.isn, Some(S_ISN));
    assert_eq!(h.client.mss, Some(1460));
    assert!(h.sack && h.window_scaling);
    assert_eq!(h.ack_frame, Some(3));
    assert!((h.initial_rtt_ms.unwrap() - 20.0).abs() < 1e-6);
    assert!((h.syn_to_syn_ack_ms.unwrap() - 10.0).abs() < 1e-6);
    assert_eq!(r.client_to_server.retransmissions.total, 0);
}

#[test]
fn rto_with_doubling_backoff() {
    let mut t = Trace::new();
    t.handshake(C_ISN, 20.0);
    let first = t.c(100.0, 1001, 1000);
    t.c(100.5, 2001, 1000);
    t.c(101.0, 3001, 1000);
    // No ACK: the timer fires 0.2 s after the last transmission, then
    // doubles: 0.4 s, 0.8 s.
    let a1 = t.c(301.0, 1001, 1000);
    let a2 = t.c(701.0, 1001, 1000);
    let a3 = t.c(1501.0, 1001, 1000);
    let back = t.s_ack(1521.0, 2001);
    let r = t.analyze();
    let d = &r.client_to_server;
    assert_eq!(d.retransmissions.total, 3);
    assert_eq!(d.retransmissions.rto, 3, "{:?}", d.events.retransmissions);
    assert_eq!(d.rto_episodes.len(), 1);
    let ep = &d.rto_episodes[0];
    assert_eq!((ep.seq, ep.attempts), (1001, 3));
    assert_eq!(ep.frames, vec![a1, a2, a3]);
    let want = [0.2, 0.4, 0.8];
    for (got, want) in ep.intervals_s.iter().zip(want) {
        assert!((got - want).abs() < 1e-6, "{:?}", ep.intervals_s);
    }
    assert!(
        ep.ratios.iter().all(|r| (r - 2.0).abs() < 1e-6),
        "{:?}",
        ep.ratios
    );
    assert_eq!(ep.recovered_frame, Some(back));
    assert_eq!(d.events.retransmissions[0].repeats_frame, Some(first));
    assert_eq!(d.events.retransmissions[2].repeats_frame, Some(a2));
    assert_eq!(d.out_of_order, 0);
}

#[test]
fn fast_retransmit_after_three_duplicate_acks() {
    let mut t = Trace::new();
    t.handshake(C_ISN, 20.0);
    let mut frames = Vec::new();
    for i in 0..5u32 {
        frames.push(t.c(100.0 + f64::from(i), 1001 + i * 1000, 1000));
    }
    let orig_ack = t.s_ack(120.0, 2001);
    let d1 = t.s_ack(122.0, 2001);
    let d2 = t.s_ack(123.0, 2001);
    let d3 = t.s_ack(124.0, 2001);
    let rx = t.c(124.1, 2001, 1000);
    let done = t.s_ack(145.0, 6001);
    let r = t.analyze();
    let c2s = &r.client_to_server;
    assert_eq!(c2s.retransmissions.total, 1);
    assert_eq!(
        c2s.retransmissions.fast, 1,
        "{:?}",
        c2s.events.retransmissions
    );
    let rec = &c2s.events.retransmissions[0];
    assert_eq!((rec.frame, rec.duplicate_acks), (rx, 3));
    assert_eq!(rec.repeats_frame, Some(frames[1]));
    let s2c = &r.server_to_client;
    assert_eq!(s2c.duplicate_acks, 3);
    let run = &s2c.events.duplicate_ack_runs[0];
    assert_eq!(run.ack, 2001);
    assert_eq!(run.original_frame, Some(orig_ack));
    assert_eq!(run.frames, vec![d1, d2, d3]);
    assert_eq!(run.retransmission_frame, Some(rx));
    assert_eq!(run.ended_frame, Some(done));
    // Karn: the ACK covering the resent segment gives no sample; the first
    // ACK does (120 - 100 ms).
    assert_eq!(c2s.rtt_ms.samples, 1);
    assert!((c2s.rtt_ms.min.unwrap() - 20.0).abs() < 1e-6);
}

#[test]
fn a_syn_sent_again_does_not_make_later_resends_timeouts() {
    let mut t = Trace::new();
    let syn_opts = TcpOptions {
        mss: Some(1460),
        sack_permitted: true,
        ..TcpOptions::default()
    };
    t.add(true, 0.0, C_ISN, 0, SYN, 0, 65535, syn_opts);
    let syn_again = t.add(true, 1000.0, C_ISN, 0, SYN, 0, 65535, syn_opts);
    t.add(
        false,
        1010.0,
        S_ISN,
        C_ISN + 1,
        SYN | ACK,
        0,
        65535,
        syn_opts,
    );
    t.add(
        true,
        1020.0,
        C_ISN + 1,
        S_ISN + 1,
        ACK,
        0,
        WIN,
        TcpOptions::default(),
    );
    for i in 0..5u32 {
        t.c(1100.0 + f64::from(i), 1001 + i * 1000, 1000);
    }
    // The first data segment is lost: the receiver's ACKs never advance
    // past the SYN-ACK's before the resend.
    t.s_ack(1120.0, 1001);
    for k in 0..3 {
        t.s_ack(1122.0 + f64::from(k), 1001);
    }
    let rx = t.c(1124.1, 1001, 1000);
    t.s_ack(1145.0, 6001);
    let c2s = t.analyze().client_to_server;
    let kinds: Vec<_> = c2s
        .events
        .retransmissions
        .iter()
        .map(|r| (r.frame, r.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            (syn_again, RetransmissionKind::Rto),
            (rx, RetransmissionKind::Fast)
        ]
    );
    assert_eq!(c2s.rto_episodes.len(), 1);
    assert!(c2s.rto_episodes[0].recovered_frame.is_some());
}

#[test]
fn a_syn_ack_in_another_sequence_space_is_a_jump_not_a_resend() {
    // An evasion trace's shape: the server side sends a RST and a FIN at
    // seq 0, then a SYN-ACK with another ISN.
    let mut t = Trace::new();
    let o = TcpOptions::default();
    t.add(true, 0.0, C_ISN, 0, SYN, 0, 65535, o);
    t.add(false, 1.0, 0, C_ISN + 1, TcpFlags::RST | ACK, 0, 0, o);
    t.add(false, 2.0, 0, C_ISN + 1, TcpFlags::FIN | ACK, 0, 0, o);
    let syn_ack = t.add(false, 3.0, 26_175, C_ISN + 1, SYN | ACK, 0, 65535, o);
    let s2c = t.analyze().server_to_client;
    assert_eq!(
        s2c.retransmissions.total, 0,
        "{:?}",
        s2c.events.retransmissions
    );
    assert_eq!(s2c.lost_segments, 1);
    assert_eq!(s2c.events.lost_segments[0].frame, syn_ack);
}

#[test]
fn sack_recovery_of_two_holes() {
    let mut t = Trace::new();
    t.handshake(C_ISN, 20.0);
    for i in 0..6u32 {
        t.c(100.0 + f64::from(i), 1001 + i * 1000, 1000);
    }
    // Segments 2001 and 4001 were lost after the capture point.
    t.s_ack(120.0, 2001);
    t.s_sack(122.0, 2001, &[(3001, 4001)]);
    t.s_sack(124.0, 2001, &[(5001, 6001), (3001, 4001)]);
    t.s_sack(125.0, 2001, &[(5001, 7001), (3001, 4001)]);
    let r1 = t.c(125.1, 2001, 1000);
    let r2 = t.c(125.2, 4001, 1000);
    t.s_sack(146.0, 4001, &[(5001, 7001)]);
    t.s_ack(147.0, 7001);
    let r = t.analyze();
    let d = &r.client_to_server;
    assert_eq!(d.retransmissions.total, 2);
    let kinds: Vec<_> = d
        .events
        .retransmissions
        .iter()
        .map(|x| (x.frame, x.kind))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (r1, RetransmissionKind::Fast),
            (r2, RetransmissionKind::Sack)
        ]
    );
    assert_eq!(d.retransmissions.sack, 1);
    let s2c = &r.server_to_client;
    assert_eq!(s2c.duplicate_acks, 3);
    assert_eq!(s2c.sack_blocks, 6);
    assert_eq!(s2c.events.sack.len(), 4);
    assert_eq!(
        s2c.events.duplicate_ack_runs[0].sack,
        vec![(5001, 7001), (3001, 4001)]
    );
    assert_eq!(
        s2c.events.duplicate_ack_runs[0].retransmission_frame,
        Some(r1)
    );
}

#[test]
fn tail_loss_probe() {
    let mut t = Trace::new();
    t.handshake(C_ISN, 20.0);
    t.c(100.0, 1001, 1000);
    t.c(101.0, 2001, 1000);
    let last = t.c(102.0, 3001, 1000);
    t.s_ack(121.0, 2001);
    // The tail (2001.., 3001..) is lost; no duplicate ACK comes. The probe
    // resends the last segment about two round trips later.
    let probe = t.c(162.0, 3001, 1000);
    let r = t.analyze();
    let d = &r.client_to_server;
    assert_eq!(d.retransmissions.total, 1);
    assert_eq!(d.retransmissions.tlp, 1, "{:?}", d.events.retransmissions);
    assert_eq!(d.events.retransmissions[0].frame, probe);
    assert_eq!(d.events.retransmissions[0].repeats_frame, Some(last));
    assert!(d.rto_episodes.is_empty());
}

#[test]
fn tlp_then_timeout() {
    let mut t = Trace::new();
    t.handshake(C_ISN, 20.0);
    t.c(100.0, 1001, 1000);
    t.c(101.0, 2001, 1000);
    t.c(140.0, 2001, 1000); // probe
    t.c(340.0, 1001, 1000); // the timer, 0.2 s after the probe
    t.c(740.0, 1001, 1000);
    let r = t.analyze();
    let d = &r.client_to_server;
    assert_eq!((d.retransmissions.tlp, d.retransmissions.rto), (1, 2));
    assert_eq!(d.rto_episodes[0].attempts, 2);
    assert!((d.rto_episodes[0].intervals_s[0] - 0.2).abs() < 1e-6);
}

#[test]
fn spurious_by_cumulative_ack() {
    let mut t = Trace::new();
    t.handshake(C_ISN, 20.0);
    t.c(100.0, 1001, 1000);
    t.c(101.0, 2001, 1000);
    t.s_ack(120.0, 3001);
    t.c(130.0, 1001, 1000);
    let r = t.analyze();
    let d = &r.client_to_server;
    assert_eq!(
        (d.retransmissions.total, d.retransmissions.spurious),
        (1, 1)
    );
}

#[test]
fn spurious_by_dsack() {
    let mut t = Trace::new();
    t.handshake(C_ISN, 20.0);
    t.c(100.0, 1001, 1000);
    // The ACK was only late: the timer resends, and the receiver reports
    // the second copy as a duplicate (RFC 2883 §4.1).
    let rx = t.c(300.0, 1001, 1000);
    t.s_ack(305.0, 2001);
    let dsack = t.s_sack(306.0, 2001, &[(1001, 2001)]);
    let r = t.analyze();
    let d = &r.client_to_server;
    assert_eq!(d.retransmissions.total, 1);
    assert_eq!((d.retransmissions.rto, d.retransmissions.spurious), (0, 1));
    let rec = &d.events.retransmissions[0];
    assert_eq!(rec.frame, rx);
    assert_eq!(rec.kind, RetransmissionKind::Spurious);
    assert_eq!(rec.classified_before, Some(RetransmissionKind::Rto));
    assert_eq!(rec.dsack_frame, Some(dsack));
    assert_eq!(r.server_to_client.dsack_blocks, 1);
    assert_eq!(r.server_to_client.dsack_unmatched, 0);
    // The D-SACK with no retransmission to match: duplication on the path.
    assert_eq!(r.server_to_client.duplicate_acks, 0);
}

#[test]
fn out_of_order_is_not_retransmission_and_back() {
    // A capture next to the receiver: holes are data not yet arrived.
    let mut t = Trace::new();
    t.handshake(C_ISN, 20.0);
    t.c(100.0, 1001, 1000);
    let above = t.c(101.0, 3001, 1000);
    // Reordered: arrives 0.5 ms after the segment above it.
    let late = t.c(101.5, 2001, 1000);
    t.s_ack(101.6, 4001);
    // Lost before the capture point and resent after the receiver's
    // duplicate ACKs: the hole fills a round trip later.
    t.c(102.0, 4001, 1000);
    t.c(103.0, 6001, 1000);
    t.s_ack(103.1, 5001);
    t.s_sack(103.2, 5001, &[(6001, 7001)]);
    t.s_sack(103.3, 5001, &[(6001, 7001)]);
    t.s_sack(103.4, 5001, &[(6001, 7001)]);
    let resent = t.c(124.0, 5001, 1000);
    // A copy of seen data soon after the highest: Wireshark's
    // "out-of-order"; here a retransmission.
    let again = t.c(124.5, 1001, 1000);
    let r = t.analyze();
    let d = &r.client_to_server;
    assert_eq!(d.out_of_order, 1);
    assert_eq!(d.events.out_of_order[0].frame, late);
    assert_eq!(d.events.out_of_order[0].after_frame, above);
    assert_eq!(d.retransmissions.total, 2, "{:?}", d.events.retransmissions);
    assert_eq!(d.events.retransmissions[0].frame, resent);
    assert_eq!(d.events.retransmissions[0].repeats_frame, None);
    assert_eq!(d.events.retransmissions[0].kind, RetransmissionKind::Fast);
    assert_eq!(d.events.retransmissions[1].frame, again);
    assert_eq!(
        d.events.retransmissions[1].kind,
        RetransmissionKind::Spurious
    );
    assert_eq!(d.lost_segments, 2);
    let lost = &d.events.lost_segments;
    assert_eq!(lost[0].filled_by, Some("out_of_order"));
    assert_eq!(lost[1].filled_by, Some("retransmission"));
    assert_eq!(lost[1].filled_frame, Some(resent));
    assert_eq!(d.bytes, 6000);
}

#[test]
fn copies_made_by_the_capture_are_not_retransmissions() {
    let mut t = Trace::new();
    t.handshake(C_ISN, 20.0);
    t.c(100.0, 1001, 1000);
    t.c(100.0, 1001, 1000);
    t.s_ack(120.0, 2001);
    t.s_ack(120.0, 2001);
    let r = t.analyze();
    assert_eq!(r.client_to_server.retransmissions.total, 0);
    assert_eq!(r.client_to_server.capture_duplicates, 1);
    assert_eq!(r.server_to_client.duplicate_acks, 0);
    assert_eq!(r.server_to_client.capture_duplicates, 1);
    assert_eq!(r.client_to_server.bytes, 1000);
}

#[test]
fn lost_segment_never_filled_and_acked_unseen() {
    let mut t = Trace::new();
    t.handshake(C_ISN, 20.0);
    let before = t.c(100.0, 1001, 1000);
    let after = t.c(101.0, 3001, 1000);
    let ack = t.s_ack(121.0, 5001);
    let r = t.analyze();
    let d = &r.client_to_server;
    assert_eq!(d.lost_segments, 2);
    assert_eq!(d.lost_bytes, 2000);
    let l = &d.events.lost_segments[0];
    assert_eq!(
        (l.seq, l.len, l.frame, l.previous_frame),
        (2001, 1000, after, Some(before))
    );
    assert_eq!(l.filled_by, None);
    assert!(d.events.lost_segments[1].acked_unseen);
    assert_eq!(r.server_to_client.acked_unseen, 1);
    assert_eq!(r.server_to_client.events.acked_unseen[0].frame, ack);
    assert_eq!(r.server_to_client.events.acked_unseen[0].unseen, 1000);
}

#[test]
fn zero_window_probe_versus_keep_alive() {
    let mut t = Trace::new();
    t.handshake(C_ISN, 20.0);
    t.c(100.0, 1001, 1000);
    let zw = t.add(
        false,
        120.0,
        S_ISN + 1,
        2001,
        ACK,
        0,
        0,
        TcpOptions::default(),
    );
    // Linux probes a zero window with seq = next - 1 and no data.
    let p1 = t.c(320.0, 2000, 0);
    t.add(
        false,
        321.0,
        S_ISN + 1,
        2001,
        ACK,
        0,
        0,
        TcpOptions::default(),
    );
    let p2 = t.c(720.0, 2000, 0);
    t.add(
        false,
        721.0,
        S_ISN + 1,
        2001,
        ACK,
        0,
        0,
        TcpOptions::default(),
    );
    let open = t.s_ack(920.0, 2001);
    // Much later, the same segment with the window open is a keep-alive,
    // and so is its one-byte form.
    let ka = t.c(60_000.0, 2000, 0);
    let ka1 = t.c(120_000.0, 2000, 1);
    let r = t.analyze();
    let s2c = &r.server_to_client;
    assert_eq!(s2c.zero_windows, 1);
    assert_eq!(s2c.zero_window_segments, 3);
    let z = &s2c.events.zero_windows[0];
    assert_eq!((z.frame, z.probes, z.reopened_frame), (zw, 2, Some(open)));
    assert_eq!(z.probe_frames, vec![p1, p2]);
    assert!((z.duration_s - 0.8).abs() < 1e-6);
    assert_eq!(s2c.duplicate_acks, 0);
    let c2s = &r.client_to_server;
    assert_eq!(c2s.zero_window_probes, 2);
    assert_eq!(c2s.keep_alives, 2);
    assert_eq!(c2s.events.keep_alives, vec![ka, ka1]);
    assert_eq!(c2s.retransmissions.total, 0);
}

#[test]
fn window_full_uses_the_receivers_scale() {
    let mut t = Trace::new();
    let syn = |ws| TcpOptions {
        window_scale: Some(ws),
        ..TcpOptions::default()
    };
    t.add(true, 0.0, C_ISN, 0, SYN, 0, 65535, syn(0));
    t.add(false, 10.0, S_ISN, C_ISN + 1, SYN | ACK, 0, 65535, syn(4));
    t.add(
        true,
        20.0,
        C_ISN + 1,
        S_ISN + 1,
        ACK,
        0,
        WIN,
        TcpOptions::default(),
    );
    // The server's window field 250 means 250 << 4 = 4000 bytes.
    t.add(
        false,
        21.0,
        S_ISN + 1,
        C_ISN + 1,
        ACK,
        0,
        250,
        TcpOptions::default(),
    );
    t.c(30.0, 1001, 3000);
    let full = t.c(31.0, 4001, 1000);
    let r = t.analyze();
    assert_eq!(r.client_to_server.window_full, 1);
    assert_eq!(r.client_to_server.events.window_full, vec![full]);
}

#[test]
fn rtt_samples_follow_karns_rule() {
    let mut t = Trace::new();
    t.handshake(C_ISN, 20.0);
    t.c(100.0, 1001, 1000);
    t.s_ack(130.0, 2001); // 30 ms
    t.c(200.0, 2001, 1000);
    t.c(400.0, 2001, 1000); // timeout
    t.s_ack(420.0, 3001); // ambiguous: no sample
    t.c(500.0, 3001, 1000);
    t.s_ack(510.0, 4001); // 10 ms
    let r = t.analyze();
    let rtt = r.client_to_server.rtt_ms;
    assert_eq!(rtt.samples, 2);
    assert!((rtt.min.unwrap() - 10.0).abs() < 1e-6);
    assert!((rtt.median.unwrap() - 10.0).abs() < 1e-6);
    assert!((rtt.p95.unwrap() - 30.0).abs() < 1e-6);
}

#[test]
fn rtt_by_timestamps_survives_retransmission() {
    let ts = |v: u32, e: u32| TcpOptions {
        timestamps: Some((v, e)),
        ..TcpOptions::default()
    };
    let mut t = Trace::new();
    t.handshake(C_ISN, 20.0);
    t.add(true, 100.0, 1001, S_ISN + 1, ACK, 1000, WIN, ts(10, 1));
    t.add(true, 300.0, 1001, S_ISN + 1, ACK, 1000, WIN, ts(30, 1));
    // The ACK echoes the retransmission's TSval: 15 ms, unambiguous.
    t.add(false, 315.0, S_ISN + 1, 2001, ACK, 0, WIN, ts(2, 30));
    let r = t.analyze();
    let rtt = r.client_to_server.rtt_ms;
    assert_eq!(rtt.samples, 1);
    assert!((rtt.min.unwrap() - 15.0).abs() < 1e-6);
}

#[test]
fn sequence_numbers_wrap_at_two_to_the_32() {
    let isn = u32::MAX - 1500;
    let mut t = Trace::new();
    t.handshake(isn, 20.0);
    let seq = |off: u32| isn.wrapping_add(1).wrapping_add(off);
    for i in 0..4u32 {
        t.c(100.0 + f64::from(i), seq(i * 1000), 1000);
    }
    t.s_ack(120.0, seq(1000));
    t.s_ack(121.0, seq(1000));
    t.s_ack(122.0, seq(1000));
    t.s_ack(123.0, seq(1000));
    t.c(123.5, seq(1000), 1000);
    t.s_ack(144.0, seq(4000));
    let r = t.analyze();
    let d = &r.client_to_server;
    assert_eq!(d.bytes, 4000);
    assert_eq!((d.lost_segments, d.out_of_order), (0, 0));
    assert_eq!((d.retransmissions.total, d.retransmissions.fast), (1, 1));
    assert_eq!(d.events.retransmissions[0].seq, seq(1000));
    assert_eq!(d.events.retransmissions[0].offset, 1001);
    assert_eq!(r.server_to_client.duplicate_acks, 3);
}

#[test]
fn analyzer_splits_connections_and_reused_ports() {
    let mut a = Analyzer::new();
    let mut t = Trace::new();
    t.handshake(C_ISN, 20.0);
    t.c(100.0, 1001, 1000);
    // Same port pair, new ISN: a new connection.
    t.handshake(90_000, 20.0);
    for s in &t.segs {
        a.push(s);
    }
    let other = Segment {
        key: FlowKey {
            src: "10.0.0.9:1".parse().unwrap(),
            dst: server(),
        },
        ..t.segs[0]
    };
    a.push(&other);
    let reports = a.finish();
    assert_eq!(reports.len(), 3);
    assert_eq!(reports[0].client_to_server.bytes, 1000);
    assert_eq!(reports[1].handshake.client.isn, Some(90_000));
    assert_eq!(reports[2].client.port(), 1);
}

fn segment_strategy() -> impl Strategy<Value = (bool, u32, u32, u32, u8, u16, u16, u8, u32, u32)> {
    (
        any::<bool>(),
        0u32..50_000,                            // time step, µs
        prop_oneof![0u32..20_000, any::<u32>()], // seq near the ISN, or anywhere
        prop_oneof![0u32..20_000, any::<u32>()], // ack
        any::<u8>(),                             // flags
        0u16..3000,                              // payload length
        any::<u16>(),                            // window
        0u8..=4,                                 // SACK blocks
        any::<u32>(),                            // SACK left (relative)
        any::<u32>(),                            // timestamps
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn arbitrary_segments_never_panic(segs in proptest::collection::vec(segment_strategy(), 0..200)) {
        let mut a = ConnectionAnalyzer::new(0);
        let mut all = Analyzer::new();
        let mut now = 0u64;
        for (i, &(dir, dt, seq, ack, flags, len, window, nsack, sack_l, tsv)) in segs.iter().enumerate() {
            now += u64::from(dt) * 1000;
            let key = if dir { FlowKey { src: client(), dst: server() } } else { FlowKey { src: server(), dst: client() } };
            let mut options = TcpOptions::default();
            for b in 0..usize::from(nsack) {
                let l = sack_l.wrapping_add(b as u32 * 1500);
                options.sack[b] = (l, l.wrapping_add(u32::from(len)));
            }
            options.sack_len = nsack;
            options.timestamps = (tsv % 3 != 0).then_some((tsv, tsv / 2));
            options.window_scale = Some(flags % 20);
            let seg = Segment {
                frame: i as u64 + 1,
                ts: Timestamp(now),
                key,
                seq,
                ack,
                flags: TcpFlags(flags),
                window,
                options,
                payload_len: u32::from(len),
                payload: &ZEROS[..usize::from(len).min(ZEROS.len())],
            };
            a.push(&seg);
            all.push(&seg);
        }
        let r = a.report();
        for d in [&r.client_to_server, &r.server_to_client] {
            let c = d.retransmissions;
            prop_assert_eq!(c.total, c.rto + c.fast + c.sack + c.tlp + c.spurious);
            prop_assert!(d.events.retransmissions.len() as u64 <= c.total);
        }
        let _ = all.finish();
    }
}

/// TCP option bytes for `o` (RFC 9293 MSS, RFC 7323 WS and TS, RFC 2018).
fn option_bytes(o: &TcpOptions) -> Vec<u8> {
    let mut b = Vec::new();
    if let Some(mss) = o.mss {
        b.extend([2, 4]);
        b.extend(mss.to_be_bytes());
    }
    if let Some(ws) = o.window_scale {
        b.extend([1, 3, 3, ws]);
    }
    if o.sack_permitted {
        b.extend([1, 1, 4, 2]);
    }
    if let Some((val, ecr)) = o.timestamps {
        b.extend([1, 1, 8, 10]);
        b.extend(val.to_be_bytes());
        b.extend(ecr.to_be_bytes());
    }
    let blocks = o.sack_blocks();
    if !blocks.is_empty() {
        b.extend([1, 1, 5, 2 + 8 * blocks.len() as u8]);
        for (l, r) in blocks {
            b.extend(l.to_be_bytes());
            b.extend(r.to_be_bytes());
        }
    }
    b
}
