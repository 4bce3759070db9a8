//! The reassembler on synthetic segments: exact bytes and an exact gap log
//! under any reordering, duplication, overlap and loss (proptest), across
//! the 2^32 wrap and past 4 GiB; overlap policies; port reuse; mid-stream
//! pickup; snap length; memory caps; idle timeout.

use std::collections::BTreeMap;

use proptest::prelude::*;
use tcp_watch::reassembly::{
    CloseReason, Config, Dir, Event, GapCause, Kept, OverlapPolicy, Reassembler, StreamEnd,
};
use tcp_watch::{FlowKey, Segment, TcpFlags, TcpOptions, Timestamp};

const NONE: TcpFlags = TcpFlags(0);

fn client() -> FlowKey {
    FlowKey {
        src: "10.0.0.1:40000".parse().unwrap(),
        dst: "10.0.0.2:80".parse().unwrap(),
    }
}

/// Delivered bytes by offset.
type Delivered = BTreeMap<u64, Vec<u8>>;
/// A gap as (offset, len, cause).
type GapRow = (u64, u64, GapCause);

/// Feeds segments with frame numbers counted from 1 and one millisecond
/// between them.
struct Feed {
    r: Reassembler,
    ev: Vec<Event>,
    frame: u64,
    key: FlowKey,
    /// What `segment` returned for each segment sent.
    places: Vec<(u64, Dir)>,
}

impl Feed {
    fn new(cfg: Config) -> Feed {
        Feed {
            r: Reassembler::new(cfg),
            ev: Vec::new(),
            frame: 0,
            key: client(),
            places: Vec::new(),
        }
    }

    fn ts(&self) -> Timestamp {
        Timestamp(self.frame * 1_000_000)
    }

    /// One segment from the client (`c2s`) or the server, payload fully
    /// captured.
    fn send(&mut self, c2s: bool, seq: u32, ack: Option<u32>, flags: TcpFlags, payload: &[u8]) {
        self.send_cut(c2s, seq, ack, flags, payload, payload.len() as u32);
    }

    /// One segment whose IP length says `len` bytes while `payload` holds
    /// what the capture kept.
    fn send_cut(
        &mut self,
        c2s: bool,
        seq: u32,
        ack: Option<u32>,
        flags: TcpFlags,
        payload: &[u8],
        len: u32,
    ) {
        self.frame += 1;
        let key = if c2s { self.key } else { self.key.reversed() };
        let mut flags = flags;
        if ack.is_some() {
            flags = flags | TcpFlags::ACK;
        }
        let seg = Segment {
            frame: self.frame,
            ts: self.ts(),
            key,
            seq,
            ack: ack.unwrap_or(0),
            flags,
            window: 65535,
            options: TcpOptions::default(),
            payload_len: len,
            payload,
        };
        let place = self.r.segment(&seg, &mut self.ev);
        // Every segment is placed in a stream, in its own direction
        // (client = the first SYN's sender, or the first side seen).
        self.places
            .push(place.expect("every segment belongs to a stream"));
    }

    fn finish(&mut self) {
        self.r.finish(&mut self.ev);
        check_tiling(&self.ev);
    }

    /// Delivered bytes per offset, gaps as (offset, len, cause), of one
    /// stream and direction.
    fn stream(&self, stream: u64, dir: Dir) -> (Delivered, Vec<GapRow>) {
        let mut data = BTreeMap::new();
        let mut gaps = Vec::new();
        for e in &self.ev {
            match e {
                Event::Data {
                    stream: s,
                    dir: d,
                    offset,
                    bytes,
                } if *s == stream && *d == dir => {
                    data.insert(*offset, bytes.clone());
                }
                Event::Gap(g) if g.stream == stream && g.dir == dir => {
                    gaps.push((g.offset, g.len, g.cause));
                }
                _ => {}
            }
        }
        (data, gaps)
    }

    fn ends(&self) -> Vec<StreamEnd> {
        self.ev
            .iter()
            .filter_map(|e| match e {
                Event::Closed(end) => Some(*end),
                _ => None,
            })
            .collect()
    }
}

/// Every direction's data and gap events tile `[0, end)` in order, with
/// no overlap and no hole, and the closing summary agrees.
fn check_tiling(ev: &[Event]) {
    let mut next: BTreeMap<(u64, Dir), u64> = BTreeMap::new();
    for e in ev {
        let (key, offset, len) = match e {
            Event::Data {
                stream,
                dir,
                offset,
                bytes,
            } => ((*stream, *dir), *offset, bytes.len() as u64),
            Event::Gap(g) => ((g.stream, g.dir), g.offset, g.len),
            Event::Closed(end) => {
                for dir in [Dir::ClientToServer, Dir::ServerToClient] {
                    let at = next.get(&(end.id, dir)).copied().unwrap_or(0);
                    assert_eq!(end.dirs[dir.index()].end, at, "summary end of {dir:?}");
                }
                continue;
            }
            _ => continue,
        };
        assert!(len > 0, "empty event {e:?}");
        let at = next.entry(key).or_insert(0);
        assert_eq!(
            offset, *at,
            "event {e:?} does not start where the last ended"
        );
        *at += len;
    }
}

/// Merges adjacent or overlapping ranges.
fn merge(mut r: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    r.sort();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (a, b) in r {
        if a >= b {
            continue;
        }
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

fn complement(covered: &[(u64, u64)], end: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut pos = 0;
    for &(a, b) in covered {
        if a > pos {
            out.push((pos, a));
        }
        pos = pos.max(b);
    }
    if pos < end {
        out.push((pos, end));
    }
    out
}

/// A transfer plan: the bytes and the `(start, end)` ranges sent, in the
/// order sent.
#[derive(Debug, Clone)]
struct Plan {
    data: Vec<u8>,
    segments: Vec<(usize, usize)>,
}

/// Any bytes cut into segments, each lost, sent once or repeated, plus
/// overlapping copies of random ranges, all in any order.
fn plan() -> impl Strategy<Value = Plan> {
    (1usize..2000)
        .prop_flat_map(|n| {
            (
                proptest::collection::vec(any::<u8>(), n),
                proptest::collection::vec(1usize..200, 1..40),
                proptest::collection::vec(0u8..10, 40),
                proptest::collection::vec((0..n, 1usize..300), 0..8),
                proptest::collection::vec(any::<u32>(), 100),
            )
        })
        .prop_map(|(data, cuts, fate, extra, order)| {
            let n = data.len();
            let mut segments = Vec::new();
            let mut pos = 0;
            for (i, c) in cuts.iter().cycle().enumerate() {
                if pos >= n {
                    break;
                }
                let end = (pos + c).min(n);
                match fate[i % fate.len()] {
                    0 | 1 => {}                                     // lost
                    2 => segments.extend([(pos, end), (pos, end)]), // duplicated
                    _ => segments.push((pos, end)),
                }
                pos = end;
            }
            for (s, l) in extra {
                segments.push((s, (s + l).min(n)));
            }
            let mut keyed: Vec<(u32, (usize, usize))> = segments
                .into_iter()
                .zip(order.iter().cycle())
                .map(|(s, &k)| (k, s))
                .collect();
            keyed.sort_by_key(|(k, _)| *k);
            Plan {
                data,
                segments: keyed.into_iter().map(|(_, s)| s).collect(),
            }
        })
}

fn isn() -> impl Strategy<Value = u32> {
    prop_oneof![any::<u32>(), (u32::MAX - 2500)..=u32::MAX]
}

/// How far the peer's ACKs move the client's stream before the plan's
/// bytes: 0, or past 4 GiB in steps TCP could ACK.
const ACK_STEP: u64 = 1 << 29;

/// Runs a plan on the client's direction: SYN, then optional ACKs from the
/// server moving the base to `steps * ACK_STEP`, then the segments; no FIN.
fn run(plan: &Plan, isn: u32, steps: u64, cfg: Config) -> (Feed, u64) {
    let mut f = Feed::new(cfg);
    f.send(true, isn, None, TcpFlags::SYN, &[]);
    let base = steps * ACK_STEP;
    for k in 1..=steps {
        let ack = isn.wrapping_add(1).wrapping_add((k * ACK_STEP) as u32);
        f.send(false, 7, Some(ack), NONE, &[]);
    }
    for &(s, e) in &plan.segments {
        let seq = isn.wrapping_add(1).wrapping_add((base + s as u64) as u32);
        f.send(true, seq, None, NONE, &plan.data[s..e]);
    }
    f.finish();
    (f, base)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Exactly the covered bytes come out, at their offsets; the gap log is
    /// exactly the uncovered ranges; the ACKed prefix is capture loss, the
    /// rest never sent.
    #[test]
    fn reassembles_exactly_what_was_covered(plan in plan(), isn in isn(), far in any::<bool>()) {
        let steps = if far { 10 } else { 0 };
        let (f, base) = run(&plan, isn, steps, Config::default());
        let (data, gaps) = f.stream(0, Dir::ClientToServer);
        let covered = merge(plan.segments.iter().map(|&(s, e)| (base + s as u64, base + e as u64)).collect());
        let delivered = merge(data.iter().map(|(&o, b)| (o, o + b.len() as u64)).collect());
        prop_assert_eq!(&delivered, &covered);
        for (&o, b) in &data {
            let at = (o - base) as usize;
            prop_assert_eq!(&b[..], &plan.data[at..at + b.len()]);
        }
        // The ACKed prefix is a gap even when nothing follows it.
        let end = covered.last().map_or(base, |r| r.1);
        let gap_ranges = merge(gaps.iter().map(|&(o, l, _)| (o, o + l)).collect());
        prop_assert_eq!(gap_ranges, complement(&covered, end));
        for &(o, l, cause) in &gaps {
            if o < base {
                prop_assert_eq!(cause, GapCause::NotCapturedButAcked);
                prop_assert!(o + l <= base);
            } else {
                prop_assert_eq!(cause, GapCause::NeverSentOrAcked);
            }
        }
        prop_assert_eq!(f.r.stats().held_bytes, 0);
        prop_assert_eq!(f.r.stats().conflicts, 0);
    }

    /// Under tight caps the output still tiles the stream, every delivered
    /// byte is right, a covered byte is missing only behind a cap gap, and
    /// what is held stays near the cap.
    #[test]
    fn caps_flush_with_gaps_and_bound_memory(plan in plan(), isn in isn(), cap in 200usize..1500) {
        let cfg = Config { direction_cap: cap, global_cap: cap * 2, ..Config::default() };
        let (f, _) = run(&plan, isn, 0, cfg);
        let (data, gaps) = f.stream(0, Dir::ClientToServer);
        for (&o, b) in &data {
            let at = o as usize;
            prop_assert_eq!(&b[..], &plan.data[at..at + b.len()]);
        }
        let covered = merge(plan.segments.iter().map(|&(s, e)| (s as u64, e as u64)).collect());
        for &(o, l, cause) in &gaps {
            let hit = covered.iter().any(|&(a, b)| a < o + l && o < b);
            if hit {
                prop_assert_eq!(cause, GapCause::MemoryCap);
            }
        }
        prop_assert!(f.r.stats().peak_held_bytes <= cap);
        prop_assert_eq!(f.r.stats().held_bytes, 0);
    }

    /// Arbitrary segments (any flags, numbers, lengths, both directions,
    /// cut frames, sequence jumps of 2^31) never panic and every direction
    /// still tiles exactly.
    #[test]
    fn arbitrary_segments_never_break_the_tiling(
        segs in proptest::collection::vec(
            (any::<bool>(), any::<u32>(), any::<u32>(), any::<u8>(), 0usize..64, 0u32..80, 0u8..4),
            1..60),
        cap in 100usize..4000,
    ) {
        let cfg = Config { direction_cap: cap, global_cap: cap, idle_timeout_ns: 5_000_000, ..Config::default() };
        let mut f = Feed::new(cfg);
        let bytes = [0x5au8; 64];
        let mut seq = [1000u32, 5000u32];
        for (c2s, jump, ack, flags, cap_len, extra, mode) in segs {
            let d = usize::from(!c2s);
            // Mostly near the previous sequence number (so data lands in
            // the window), sometimes anywhere.
            let s = match mode {
                0 => jump,
                1 => seq[d].wrapping_add(1 << 31),
                _ => seq[d].wrapping_add(jump % 300).wrapping_sub(100),
            };
            seq[d] = s;
            let ack = if flags & 0x10 != 0 { Some(seq[1 - d].wrapping_add(ack % 400)) } else { None };
            let port_flags = TcpFlags(flags & !0x10);
            f.send_cut(c2s, s, ack, port_flags, &bytes[..cap_len], cap_len as u32 + extra);
        }
        f.finish();
        prop_assert_eq!(f.r.stats().held_bytes, 0);
    }
}

/// Handshake, data both ways, FINs: one stream, closed by FIN.
fn handshake(f: &mut Feed, c_isn: u32, s_isn: u32) {
    f.send(true, c_isn, None, TcpFlags::SYN, &[]);
    f.send(
        false,
        s_isn,
        Some(c_isn.wrapping_add(1)),
        TcpFlags::SYN,
        &[],
    );
    f.send(
        true,
        c_isn.wrapping_add(1),
        Some(s_isn.wrapping_add(1)),
        NONE,
        &[],
    );
}

#[test]
fn acked_hole_is_capture_loss_declared_at_once_with_its_frames() {
    let mut f = Feed::new(Config::default());
    let c = 1_000_000u32;
    let s = 9u32;
    handshake(&mut f, c, s);
    f.send(true, c + 1, Some(s + 1), NONE, &[b'a'; 100]); // frame 4
    // 100..200 never reaches the capture.
    f.send(true, c + 201, Some(s + 1), NONE, &[b'c'; 100]); // frame 5
    assert!(
        !f.ev.iter().any(|e| matches!(e, Event::Gap(_))),
        "no gap before the ACK"
    );
    f.send(false, s + 1, Some(c + 301), NONE, &[]); // frame 6
    let gap =
        f.ev.iter()
            .find_map(|e| match e {
                Event::Gap(g) => Some(*g),
                _ => None,
            })
            .expect("gap declared on the ACK");
    assert_eq!((gap.offset, gap.len), (100, 100));
    assert_eq!((gap.seq, gap.seq_end), (c + 101, c + 201));
    assert_eq!(gap.cause, GapCause::NotCapturedButAcked);
    assert_eq!(
        (gap.frame_before, gap.frame_after, gap.acked_by_frame),
        (Some(4), Some(5), Some(6))
    );
    let (data, _) = f.stream(0, Dir::ClientToServer);
    assert_eq!(
        data.keys().copied().collect::<Vec<_>>(),
        vec![0, 200],
        "the data after the hole continues"
    );
    // Both FINs, each ACKed: the stream closes by FIN with nothing else.
    f.send(true, c + 301, Some(s + 1), TcpFlags::FIN, &[]);
    f.send(false, s + 1, Some(c + 302), TcpFlags::FIN, &[]);
    f.send(true, c + 302, Some(s + 2), NONE, &[]);
    let ends = f.ends();
    assert_eq!(ends.len(), 1);
    assert_eq!(ends[0].reason, CloseReason::Fin);
    assert!(ends[0].dirs[0].start_known && ends[0].dirs[0].fin);
    assert_eq!(
        (
            ends[0].dirs[0].bytes,
            ends[0].dirs[0].gap_bytes,
            ends[0].dirs[0].end
        ),
        (200, 100, 300)
    );
    f.finish();
    assert_eq!(f.r.stats().gaps, [1, 0, 0, 0]);
}

#[test]
fn unacked_hole_waits_for_a_retransmission_and_delivers_once() {
    let mut f = Feed::new(Config::default());
    handshake(&mut f, 0, 0);
    f.send(true, 101, Some(1), NONE, b"world");
    f.send(true, 1, Some(1), NONE, &[b'x'; 100]);
    f.send(true, 1, Some(1), NONE, &[b'x'; 100]); // retransmission
    f.send(true, 101, Some(1), NONE, b"world"); // and again
    f.finish();
    let (data, gaps) = f.stream(0, Dir::ClientToServer);
    let all: Vec<u8> = data.values().flatten().copied().collect();
    assert_eq!(all.len(), 105);
    assert_eq!(&all[100..], b"world");
    assert!(gaps.is_empty());
    assert_eq!(f.r.stats().old_bytes, 105);
}

#[test]
fn lost_fin_acked_is_not_a_one_byte_gap_but_a_lost_data_tail_is() {
    let mut f = Feed::new(Config::default());
    handshake(&mut f, 50, 70);
    f.send(true, 51, Some(71), NONE, b"0123456789");
    // The FIN (seq 61) is not captured; the server ACKs it.
    f.send(false, 71, Some(62), NONE, &[]);
    // The server's own last 20 bytes are not captured but ACKed.
    f.send(false, 71, Some(61), NONE, b"abc");
    f.send(true, 62, Some(94), NONE, &[]);
    f.finish();
    let (_, gaps) = f.stream(0, Dir::ClientToServer);
    assert!(gaps.is_empty(), "{gaps:?}");
    let (_, gaps) = f.stream(0, Dir::ServerToClient);
    assert_eq!(gaps, vec![(3, 20, GapCause::NotCapturedButAcked)]);
}

#[test]
fn fin_after_a_hole_makes_the_hole_known_sent() {
    let mut f = Feed::new(Config::default());
    handshake(&mut f, 0, 0);
    f.send(true, 1, Some(1), NONE, b"abc");
    f.send(true, 8, Some(1), TcpFlags::FIN, b"hij");
    f.finish();
    let (_, gaps) = f.stream(0, Dir::ClientToServer);
    assert_eq!(gaps, vec![(3, 4, GapCause::NeverSentOrAcked)]);
    assert_eq!(f.ends()[0].reason, CloseReason::EndOfCapture);
}

/// Overlap scenarios: (held, arriving) as (start, len) over a hole at the
/// front, and which copy each policy keeps.
#[test]
fn overlap_policies_choose_as_documented_and_every_conflict_is_logged() {
    struct Case {
        held: (u32, usize),
        arriving: (u32, usize),
        // Arriving wins under First, Last, Bsd, Linux.
        wins: [bool; 4],
    }
    let cases = [
        // Same start, arriving longer: Linux takes it, BSD does not.
        Case {
            held: (10, 5),
            arriving: (10, 10),
            wins: [false, true, false, true],
        },
        // Arriving starts before.
        Case {
            held: (10, 5),
            arriving: (5, 10),
            wins: [false, true, true, true],
        },
        // Arriving inside, starting after.
        Case {
            held: (10, 10),
            arriving: (12, 3),
            wins: [false, true, false, false],
        },
    ];
    let policies = [
        OverlapPolicy::First,
        OverlapPolicy::Last,
        OverlapPolicy::Bsd,
        OverlapPolicy::Linux,
    ];
    for case in &cases {
        for (p, policy) in policies.iter().enumerate() {
            let mut f = Feed::new(Config {
                policy: *policy,
                ..Config::default()
            });
            handshake(&mut f, 0, 0);
            f.send(
                true,
                1 + case.held.0,
                Some(1),
                NONE,
                &vec![b'H'; case.held.1],
            ); // frame 4
            f.send(
                true,
                1 + case.arriving.0,
                Some(1),
                NONE,
                &vec![b'A'; case.arriving.1],
            ); // frame 5
            f.send(true, 1, Some(1), NONE, &[b'.'; 5]);
            f.finish();
            let (data, gaps) = f.stream(0, Dir::ClientToServer);
            let mut out = vec![b'?'; 20];
            for (o, b) in &data {
                out[*o as usize..*o as usize + b.len()].copy_from_slice(b);
            }
            let (h0, hl) = (case.held.0 as usize, case.held.1);
            let (a0, al) = (case.arriving.0 as usize, case.arriving.1);
            let (o0, o1) = (h0.max(a0), (h0 + hl).min(a0 + al));
            let want = if case.wins[p] { b'A' } else { b'H' };
            assert!(
                out[o0..o1].iter().all(|&b| b == want),
                "{policy:?}: {:?}",
                String::from_utf8_lossy(&out)
            );
            // Outside the overlap, each copy's own bytes.
            assert!(
                out[h0..h0 + hl]
                    .iter()
                    .enumerate()
                    .all(|(i, &b)| (h0 + i >= o0 && h0 + i < o1) || b == b'H')
            );
            let conflicts: Vec<_> =
                f.ev.iter()
                    .filter_map(|e| match e {
                        Event::Conflict(c) => Some(*c),
                        _ => None,
                    })
                    .collect();
            assert_eq!(conflicts.len(), 1, "{policy:?}");
            let c = conflicts[0];
            assert_eq!((c.offset, c.len), (o0 as u64, (o1 - o0) as u64));
            assert_eq!(
                (c.held.offset, c.held.len, c.held.frame),
                (h0 as u64, hl as u64, 4)
            );
            assert_eq!(
                (c.arriving.offset, c.arriving.len, c.arriving.frame),
                (a0 as u64, al as u64, 5)
            );
            assert_eq!(
                c.kept,
                if case.wins[p] {
                    Kept::Arriving
                } else {
                    Kept::Held
                }
            );
            let end = (h0 + hl).max(a0 + al);
            assert_eq!(
                gaps.iter().map(|g| g.1).sum::<u64>(),
                if a0 > 5 && h0 > 5 { 5 } else { 0 }
            );
            assert_eq!(f.ends()[0].dirs[0].end, end as u64);
        }
    }
}

#[test]
fn port_reuse_with_a_new_isn_opens_a_new_stream_a_repeated_syn_does_not() {
    let mut f = Feed::new(Config::default());
    handshake(&mut f, 100, 200);
    f.send(true, 100, None, TcpFlags::SYN, &[]); // SYN retransmitted: same ISN
    f.send(true, 101, Some(201), NONE, b"first");
    f.send(true, 106, Some(201), TcpFlags::FIN, &[]);
    f.send(false, 201, Some(107), TcpFlags::FIN, &[]);
    f.send(true, 107, Some(202), NONE, &[]);
    f.send(true, 106, Some(202), NONE, b"late!"); // after close: counted
    assert_eq!(f.r.stats().after_close, 1);
    // The same ports again, a new ISN, no FIN this time.
    handshake(&mut f, 5000, 6000);
    f.send(true, 5001, Some(6001), NONE, b"second");
    // Reused again while open.
    f.send(true, 9000, None, TcpFlags::SYN, &[]);
    f.send(true, 9001, None, NONE, b"third");
    f.finish();
    let ends = f.ends();
    let reasons: Vec<_> = ends.iter().map(|e| (e.id, e.reason)).collect();
    assert_eq!(
        reasons,
        vec![
            (0, CloseReason::Fin),
            (1, CloseReason::PortReuse),
            (2, CloseReason::EndOfCapture)
        ]
    );
    assert_eq!(
        f.stream(0, Dir::ClientToServer).0.values().next().unwrap(),
        b"first"
    );
    assert_eq!(
        f.stream(1, Dir::ClientToServer).0.values().next().unwrap(),
        b"second"
    );
    assert_eq!(
        f.stream(2, Dir::ClientToServer).0.values().next().unwrap(),
        b"third"
    );
    assert_eq!(ends[1].dirs[0].isn, Some(5000));
    // The late segment (frame 9) still names stream 0; the third SYN
    // (frame 14) and its data stream 2; the SYN-ACK (frame 11) goes server
    // to client.
    assert_eq!(f.places[8], (0, Dir::ClientToServer));
    assert_eq!(f.places[10], (1, Dir::ServerToClient));
    assert_eq!(&f.places[13..], &[(2, Dir::ClientToServer); 2]);
    assert_eq!(f.r.stats().streams, 3);
}

#[test]
fn mid_stream_pickup_starts_at_the_first_captured_byte_and_says_so() {
    let mut f = Feed::new(Config::default());
    // The server speaks first in the capture: it is the first side seen,
    // so it is the "client" of this stream.
    f.key = client().reversed();
    f.send(true, 0x7fff_fff0, Some(42), NONE, b"0123456789"); // offset 0
    f.send(false, 42, Some(0x7fff_fffa), NONE, b"ok");
    f.send(true, 0x7fff_ffe0, Some(44), NONE, &[b'z'; 20]); // 16 bytes before offset 0
    f.send(true, 0x7fff_fffa, Some(44), NONE, b"abc");
    f.finish();
    let opened =
        f.ev.iter()
            .find_map(|e| match e {
                Event::Opened(i) => Some(*i),
                _ => None,
            })
            .unwrap();
    assert_eq!(opened.client, client().dst);
    let (data, _) = f.stream(0, Dir::ClientToServer);
    let all: Vec<u8> = data.values().flatten().copied().collect();
    assert_eq!(all, b"0123456789abc");
    let end = f.ends()[0];
    assert!(!end.dirs[0].start_known && !end.dirs[1].start_known);
    assert_eq!(end.dirs[0].base_seq, Some(0x7fff_fff0));
    assert_eq!(f.r.stats().before_start_bytes, 16);
}

#[test]
fn syn_ack_seen_first_names_its_receiver_the_client() {
    let mut f = Feed::new(Config::default());
    f.send(false, 300, Some(11), TcpFlags::SYN, &[]);
    f.send(true, 11, Some(301), NONE, b"GET");
    f.finish();
    let Some(Event::Opened(info)) = f.ev.first() else {
        panic!("no open event")
    };
    assert_eq!(info.client, client().src);
    assert_eq!(
        f.stream(0, Dir::ClientToServer).0.values().next().unwrap(),
        b"GET"
    );
    assert!(f.ends()[0].dirs[1].start_known);
}

#[test]
fn snap_length_cut_is_a_gap_unless_a_full_copy_replaces_it() {
    let mut f = Feed::new(Config::default());
    handshake(&mut f, 0, 0);
    // In order, cut: 40 of 100 bytes captured.
    f.send_cut(true, 1, Some(1), NONE, &[b'a'; 40], 100);
    f.send(true, 101, Some(1), NONE, b"next");
    // Out of order, cut, then its full retransmission before delivery.
    f.send_cut(true, 205, Some(1), NONE, &[b'c'; 10], 50);
    f.send(true, 205, Some(1), NONE, &[b'c'; 50]);
    f.send(true, 105, Some(1), NONE, &[b'b'; 100]);
    f.finish();
    let (data, gaps) = f.stream(0, Dir::ClientToServer);
    assert_eq!(gaps, vec![(40, 60, GapCause::SnapLength)]);
    assert_eq!(
        data.values().map(|b| b.len()).sum::<usize>(),
        40 + 4 + 100 + 50
    );
    assert_eq!(f.r.stats().gap_bytes[GapCause::SnapLength as usize], 60);
}

#[test]
fn direction_cap_flushes_past_the_hole_and_counts_it() {
    let cfg = Config {
        direction_cap: 1000,
        ..Config::default()
    };
    let mut f = Feed::new(cfg);
    handshake(&mut f, 0, 0);
    // 0..100 lost; 100..1600 arrive in 100-byte segments.
    for k in 1..16u32 {
        f.send(true, 1 + k * 100, Some(1), NONE, &[k as u8; 100]);
    }
    let (_, gaps) = f.stream(0, Dir::ClientToServer);
    assert_eq!(
        gaps,
        vec![(0, 100, GapCause::MemoryCap)],
        "flushed before the end"
    );
    assert!(f.r.stats().peak_held_bytes <= 1000);
    // The lost bytes arrive now: too late, counted as old.
    f.send(true, 1, Some(1), NONE, &[0; 100]);
    f.finish();
    let (data, _) = f.stream(0, Dir::ClientToServer);
    assert_eq!(data.values().map(|b| b.len()).sum::<usize>(), 1500);
    assert_eq!(f.r.stats().cap_flushes, 1);
    assert_eq!(f.r.stats().old_bytes, 100);
}

#[test]
fn global_cap_flushes_the_stream_holding_most() {
    let cfg = Config {
        direction_cap: 1 << 20,
        global_cap: 2000,
        ..Config::default()
    };
    let mut f = Feed::new(cfg);
    handshake(&mut f, 0, 0);
    let other = FlowKey {
        src: "10.0.0.3:5555".parse().unwrap(),
        dst: client().dst,
    };
    // Stream 0 holds 1000 bytes behind a hole.
    f.send(true, 101, Some(1), NONE, &[1; 1000]);
    // Stream 1 holds 1500 behind its own hole: together over the cap.
    f.key = other;
    f.send(true, 0, None, NONE, b"x");
    f.send(true, 101, None, NONE, &[2; 1500]);
    let (_, gaps1) = f.stream(1, Dir::ClientToServer);
    assert_eq!(gaps1, vec![(1, 100, GapCause::MemoryCap)]);
    assert!(
        f.stream(0, Dir::ClientToServer).1.is_empty(),
        "the smaller holder keeps its data"
    );
    assert_eq!(f.r.stats().held_bytes, 1064);
    f.finish();
}

#[test]
fn idle_stream_is_closed_by_capture_time_with_its_holes_declared() {
    let cfg = Config {
        idle_timeout_ns: 1_000_000_000,
        ..Config::default()
    };
    let mut f = Feed::new(cfg);
    handshake(&mut f, 0, 0);
    f.send(true, 11, Some(1), NONE, b"after a hole");
    // Another flow's segments carry the clock forward.
    f.key = FlowKey {
        src: "10.0.0.9:1".parse().unwrap(),
        dst: client().dst,
    };
    f.frame = 2000; // 2 s later
    f.send(true, 1, None, NONE, b"tick");
    let ends = f.ends();
    assert_eq!(ends.len(), 1);
    assert_eq!((ends[0].id, ends[0].reason), (0, CloseReason::IdleTimeout));
    let (_, gaps) = f.stream(0, Dir::ClientToServer);
    assert_eq!(gaps, vec![(0, 10, GapCause::NeverSentOrAcked)]);
    assert_eq!(f.r.open_streams(), 1);
    // Without any segment, advance() does the same.
    f.r.advance(Timestamp(10_000_000_000), &mut f.ev);
    assert_eq!(f.r.open_streams(), 0);
    assert_eq!(f.r.stats().idle_closed, 2);
    f.finish();
}

#[test]
fn rst_closes_and_a_sequence_jump_of_2_31_is_counted_not_delivered() {
    let mut f = Feed::new(Config::default());
    handshake(&mut f, 0, 0);
    f.send(true, 1, Some(1), NONE, b"abc");
    f.send(true, 4u32.wrapping_add(1 << 31), Some(1), NONE, b"junk");
    assert_eq!(f.r.stats().out_of_window, 1);
    f.send(false, 1, Some(4), TcpFlags::RST, &[]);
    assert_eq!(f.ends()[0].reason, CloseReason::Rst);
    f.finish();
    let (data, gaps) = f.stream(0, Dir::ClientToServer);
    assert_eq!(data.values().flatten().copied().collect::<Vec<_>>(), b"abc");
    assert!(gaps.is_empty());
}

#[test]
fn wraps_and_runs_past_4_gib_in_order() {
    // 5 GiB of sequence space delivered in order, without holding it: the
    // same 64 KiB buffer repeated, starting 10 bytes before the wrap.
    let isn = u32::MAX - 10;
    let chunk = vec![7u8; 1 << 16];
    let n = (5u64 << 30) / chunk.len() as u64;
    let mut r = Reassembler::new(Config::default());
    let mut count = Counter::default();
    let key = client();
    let syn = Segment {
        frame: 1,
        ts: Timestamp(0),
        key,
        seq: isn,
        ack: 0,
        flags: TcpFlags::SYN,
        window: 0,
        options: TcpOptions::default(),
        payload_len: 0,
        payload: &[],
    };
    r.segment(&syn, &mut count);
    for k in 0..n {
        let seq = isn
            .wrapping_add(1)
            .wrapping_add((k * chunk.len() as u64) as u32);
        let seg = Segment {
            frame: k + 2,
            seq,
            payload_len: chunk.len() as u32,
            payload: &chunk,
            flags: NONE,
            ..syn
        };
        r.segment(&seg, &mut count);
    }
    r.finish(&mut count);
    assert_eq!(count.bytes, n * chunk.len() as u64);
    assert_eq!(count.next, n * chunk.len() as u64);
    assert_eq!(count.gaps, 0);
    assert_eq!(r.stats().peak_held_bytes, 0, "in-order data is never held");
}

/// Counts instead of copying (5 GiB would not fit a Vec).
#[derive(Default)]
struct Counter {
    bytes: u64,
    next: u64,
    gaps: u64,
}

impl tcp_watch::reassembly::StreamSink for Counter {
    fn data(&mut self, _: u64, _: Dir, offset: u64, bytes: &[u8]) {
        assert_eq!(offset, self.next);
        self.next += bytes.len() as u64;
        self.bytes += bytes.len() as u64;
    }
    fn gap(&mut self, _: &tcp_watch::reassembly::Gap) {
        self.gaps += 1;
    }
}

#[test]
fn full_table_forgets_ended_streams_then_evicts_the_least_recent() {
    let cfg = Config {
        max_streams: 16,
        ..Config::default()
    };
    let mut f = Feed::new(cfg);
    // Stream 0 ends by RST: a tombstone, forgotten first.
    handshake(&mut f, 0, 0);
    f.send(true, 1, Some(1), TcpFlags::RST, &[]);
    // Streams 1..=15 open on other ports, each with a held byte.
    for port in 1..=15u16 {
        f.key = FlowKey {
            src: format!("10.0.0.1:{port}").parse().unwrap(),
            dst: client().dst,
        };
        f.send(true, 100, None, TcpFlags::SYN, &[]);
        f.send(true, 105, None, NONE, b"x");
    }
    // Stream 1 speaks again: now the most recent.
    f.key = FlowKey {
        src: "10.0.0.1:1".parse().unwrap(),
        dst: client().dst,
    };
    f.send(true, 101, None, NONE, b"head");
    // A 17th stream: the table is full.
    f.key = FlowKey {
        src: "10.0.0.1:999".parse().unwrap(),
        dst: client().dst,
    };
    f.send(true, 7, None, TcpFlags::SYN, &[]);
    let evicted: Vec<u64> = f
        .ends()
        .iter()
        .filter(|e| e.reason == CloseReason::Evicted)
        .map(|e| e.id)
        .collect();
    // 16 in the table, 0 forgotten, 15 left: keep 16 - 2 - 1 = 13, so the
    // two least recent (2 and 3) go; 1 was refreshed.
    assert_eq!(evicted, vec![2, 3]);
    assert_eq!(f.r.stats().evicted, 2);
    assert_eq!(f.r.open_streams(), 14);
    // An evicted stream's hole was declared when it went.
    let (_, gaps) = f.stream(2, Dir::ClientToServer);
    assert_eq!(gaps, vec![(0, 4, GapCause::NeverSentOrAcked)]);
    f.finish();
}

#[test]
fn ended_streams_are_forgotten_past_max_closed_so_the_table_follows_open_ones() {
    let cfg = Config {
        max_closed: 8,
        ..Config::default()
    };
    let mut f = Feed::new(cfg);
    for i in 0..100u16 {
        f.key = FlowKey {
            src: format!("10.0.0.1:{}", 20_000 + i).parse().unwrap(),
            dst: "10.0.0.2:80".parse().unwrap(),
        };
        handshake(&mut f, 1000, 5000);
        f.send(true, 1001, Some(5001), TcpFlags::FIN, b"bye");
        f.send(false, 5001, Some(1005), TcpFlags::FIN, &[]);
        assert!(
            f.r.tracked_streams() <= 8 + 1,
            "{} streams tracked",
            f.r.tracked_streams()
        );
    }
    assert_eq!(f.r.open_streams(), 0);
    // A late segment of a forgotten stream is a new, mid-stream one; of a
    // remembered one, it is counted as late.
    let before = f.r.stats().streams;
    f.send(true, 1005, Some(5002), NONE, &[]);
    assert_eq!(f.r.stats().streams, before, "the last stream is remembered");
    f.key = FlowKey {
        src: "10.0.0.1:20000".parse().unwrap(),
        dst: "10.0.0.2:80".parse().unwrap(),
    };
    f.send(true, 1005, Some(5002), NONE, b"late");
    assert_eq!(f.r.stats().streams, before + 1, "the first was forgotten");
    f.finish();
}
