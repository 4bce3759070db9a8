//! The lab's account: what our analysis of the two captures says about the
//! transfer, beside what the other witnesses say (issue 10, "The lab"):
//!
//! ```text
//!   our retransmissions in A's capture   =  A's kernel TcpRetransSegs
//!   A→B segments missing at B            =  R's nft drop counters
//!   bytes reassembled from A's, B's      =  sha256 of what B's application read
//!   our flags                            ~  tshark's, each difference explained
//!   the blackhole's RTO episode          :  waits that double
//! ```
//!
//! [`build`] is the core: it takes a finished [`LabRun`] and the analysis of
//! each capture ([`CaptureView`], made by [`view`] from the pipeline's
//! reports) and decides each line; it reads no file. [`command`] is the
//! driver behind `tcp-watch lab`: it runs the lab, runs the pipeline over
//! both captures, asks tshark when it is installed ([`tshark`]), prints the
//! account and removes the captures unless asked to keep them.
//!
//! Every comparison says exactly which two numbers it compares, and a line
//! that does not close says why, so that a failure is a finding and not a
//! puzzle.

use std::collections::HashMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde::Serialize;

use crate::analysis::{RetransmissionCounts, RetransmissionKind, RtoEpisode};
use crate::capture;
use crate::error::Error;
use crate::lab::netns::{A_ADDR, B_ADDR};
use crate::lab::{KernelCounters, LabConfig, LabRun, RouterDrops};
use crate::packet;
use crate::pipeline::{self, DirectionOut, Holes, Options, StreamReport};
use crate::reassembly::Dir;

/// Version of the `tcp-watch lab --json` layout: a field removed or changed
/// in meaning bumps it; fields added do not.
pub const LAB_SCHEMA: u32 = 1;

/// The range a doubling timer's ratio must fall in (Linux doubles exactly;
/// the measured wait also holds the timer's slack and the path's delay).
pub const DOUBLING: (f64, f64) = (1.6, 2.5);

/// One comparison's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Whether the two sides agree.
    pub closes: bool,
    /// `closes`, or `DOES NOT CLOSE: ` and why.
    pub verdict: String,
}

impl Verdict {
    pub(crate) fn closes() -> Verdict {
        Verdict {
            closes: true,
            verdict: "closes".into(),
        }
    }

    pub(crate) fn open(why: impl Into<String>) -> Verdict {
        Verdict {
            closes: false,
            verdict: format!("DOES NOT CLOSE: {}", why.into()),
        }
    }

    /// Closes when every reason is absent.
    fn from_reasons(reasons: Vec<String>) -> Verdict {
        if reasons.is_empty() {
            Verdict::closes()
        } else {
            Verdict::open(reasons.join("; "))
        }
    }
}

/// The A→B direction of the transfer's stream in one capture, as the
/// pipeline analysed it (counts only: the event records stay in the
/// pipeline's report).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CaptureView {
    /// The capture file.
    pub path: PathBuf,
    /// Frames read.
    pub frames: u64,
    /// TCP streams in it (the transfer's, normally alone).
    pub streams: u64,
    /// The transfer's stream id in this capture.
    pub stream: Option<u64>,
    /// A→B segments, pure ACKs included.
    pub segments: u64,
    /// A→B segments with data, SYN or FIN.
    pub data_segments: u64,
    /// Distinct A→B payload bytes seen.
    pub bytes: u64,
    /// A→B retransmissions by cause.
    pub retransmissions: RetransmissionCounts,
    /// A→B retransmission-timeout episodes.
    pub rto_episodes: Vec<RtoEpisode>,
    /// A→B out-of-order segments.
    pub out_of_order: u64,
    /// Holes in A→B data at this capture point.
    pub holes: Holes,
    /// Duplicate ACKs B sent.
    pub duplicate_acks: u64,
    /// ACKs B sent for A→B data the capture never showed (capture loss).
    pub acked_unseen: u64,
    /// SACK blocks B sent.
    pub sack_blocks: u64,
    /// D-SACK blocks B sent.
    pub dsack_blocks: u64,
    /// Gaps the reassembler declared in A→B.
    pub gaps: u64,
    /// Bytes in them.
    pub gap_bytes: u64,
    /// Bytes of the extracted A→B file.
    pub extracted_bytes: u64,
    /// sha256 of the extracted A→B file.
    pub sha256: Option<String>,
    /// Event records the analysis did not keep (lists are capped): the
    /// frame lists below then miss some.
    pub records_dropped: u64,
    /// A→B retransmissions: frame and our class (for tshark's line).
    #[serde(skip)]
    pub retransmission_frames: Vec<(u64, RetransmissionKind)>,
    /// A→B out-of-order frames.
    #[serde(skip)]
    pub out_of_order_frames: Vec<u64>,
    /// A→B frames after a jump in sequence numbers (a hole opened).
    #[serde(skip)]
    pub hole_frames: Vec<u64>,
    /// The initial RTT of the handshake at this capture point, ms.
    pub initial_rtt_ms: Option<f64>,
    /// Spurious retransmissions (among the records) by the class they had
    /// before a D-SACK reported them: `[rto, fast, sack, tlp]`.
    pub spurious_were: [u64; 4],
}

/// Picks the transfer's stream from a capture's reports (the A→B stream
/// with the most data) and keeps its A→B counts.
pub fn view(path: &Path, frames: u64, reports: &[StreamReport]) -> CaptureView {
    let mut out = CaptureView {
        path: path.to_path_buf(),
        frames,
        streams: reports.len() as u64,
        ..CaptureView::default()
    };
    let best = reports
        .iter()
        .filter_map(|r| a_to_b(r).map(|d| (r, d)))
        .max_by_key(|(_, d)| d.analysis.bytes);
    if let Some((r, d)) = best {
        let x = &d.analysis;
        let back = &b_to_a(r).analysis;
        out.stream = Some(r.id);
        out.segments = x.segments;
        out.data_segments = x.data_segments;
        out.bytes = x.bytes;
        out.retransmissions = x.retransmissions;
        out.rto_episodes = x.rto_episodes.clone();
        out.out_of_order = x.out_of_order;
        out.holes = d.holes;
        out.duplicate_acks = back.duplicate_acks;
        out.acked_unseen = back.acked_unseen;
        out.sack_blocks = back.sack_blocks;
        out.dsack_blocks = back.dsack_blocks;
        out.gaps = d.reassembly.gaps_total;
        out.gap_bytes = d.reassembly.gap_bytes;
        out.extracted_bytes = d.reassembly.file_bytes;
        out.sha256 = d.reassembly.sha256.clone();
        out.records_dropped = x.records_dropped + back.records_dropped;
        out.retransmission_frames = x
            .events
            .retransmissions
            .iter()
            .map(|e| (e.frame, e.kind))
            .collect();
        out.out_of_order_frames = x.events.out_of_order.iter().map(|e| e.frame).collect();
        out.hole_frames = x
            .events
            .lost_segments
            .iter()
            .filter(|h| !h.acked_unseen)
            .map(|h| h.frame)
            .collect();
        out.initial_rtt_ms = r.handshake.initial_rtt_ms;
        for e in &x.events.retransmissions {
            let slot = match e.classified_before {
                Some(RetransmissionKind::Rto) => 0,
                Some(RetransmissionKind::Fast) => 1,
                Some(RetransmissionKind::Sack) => 2,
                Some(RetransmissionKind::Tlp) => 3,
                _ => continue,
            };
            out.spurious_were[slot] += 1;
        }
    }
    out
}

/// The A→B direction of `r`, when `r` is a stream between A and B.
fn a_to_b(r: &StreamReport) -> Option<&DirectionOut> {
    let (a, b) = (IpAddr::V4(A_ADDR), IpAddr::V4(B_ADDR));
    match (r.client.ip(), r.server.ip()) {
        (c, s) if (c, s) == (a, b) => Some(r.directions.get(Dir::ClientToServer)),
        (c, s) if (c, s) == (b, a) => Some(r.directions.get(Dir::ServerToClient)),
        _ => None,
    }
}

/// The other direction of a stream [`a_to_b`] accepted.
fn b_to_a(r: &StreamReport) -> &DirectionOut {
    if r.client.ip() == IpAddr::V4(A_ADDR) {
        r.directions.get(Dir::ServerToClient)
    } else {
        r.directions.get(Dir::ClientToServer)
    }
}

/// A→B segments of A's capture that B's capture lacks, matched as a
/// multiset of `(seq, payload length, flags)`: which copy of a repeated
/// segment was dropped does not matter, the bytes are the same.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Missing {
    /// Segments in A's capture and not in B's.
    pub segments: u64,
    /// Of those, segments carrying data.
    pub data_segments: u64,
    /// Their payload bytes.
    pub payload_bytes: u64,
    /// Distinct data segments missing (a segment dropped twice, first
    /// copy and retransmission, once).
    pub distinct_data_segments: u64,
    /// Their payload bytes: the sequence space B never saw in order, which
    /// B's holes cover but for drops at the tail (resent before anything
    /// above them arrived, so no jump).
    pub distinct_payload_bytes: u64,
    /// Segments in B's capture and not in A's (should be none).
    pub unexpected_at_b: u64,
    /// Segments B's capture shows out of A's order ([`reordered`]).
    pub reordered_at_b: u64,
}

/// Key of one A→B segment for [`missing`]: seq, payload length, flags.
pub type SegmentKey = (u32, u32, u8);

/// The A→B segments of one capture by [`SegmentKey`]. Sized by the lab's
/// own transfer (a few thousand segments), never by a field of a packet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Segments {
    /// How many times each key was seen.
    pub counts: HashMap<SegmentKey, u64>,
    /// The key of each frame.
    pub by_frame: HashMap<u64, SegmentKey>,
    /// The keys in capture order.
    pub order: Vec<SegmentKey>,
    /// B→A segments whose ACK is below one B sent before them: ACKs the
    /// path reordered, stale on arrival.
    pub stale_acks_from_b: u64,
}

/// Reads the A→B segments of the capture at `path`.
pub fn segments(path: &Path) -> Result<Segments, Error> {
    let mut reader = capture::open_path(path)?;
    let from = IpAddr::V4(A_ADDR);
    let mut out = Segments::default();
    let mut highest_ack: Option<u32> = None;
    packet::for_each_segment(&mut reader, |s| {
        if s.key.src.ip() != from && s.flags.contains(crate::segment::TcpFlags::ACK) {
            // Sequence numbers compare modulo 2^32 (RFC 9293 §3.4).
            match highest_ack {
                Some(h) if (s.ack.wrapping_sub(h) as i32) < 0 => out.stale_acks_from_b += 1,
                _ => highest_ack = Some(s.ack),
            }
        }
        if s.key.src.ip() == from {
            let key = (s.seq, s.payload_len, s.flags.0);
            *out.counts.entry(key).or_insert(0) += 1;
            out.by_frame.insert(s.frame, key);
            out.order.push(key);
        }
    })?;
    Ok(out)
}

/// A→B segments that B's capture shows out of A's order: the path
/// reordered them between the two capture points. Each of B's segments is
/// matched to the first copy A sent after the copy matched before (an
/// earlier copy left unmatched was dropped); when there is none, to A's
/// earliest unmatched copy, and that one came out of order.
pub fn reordered(a: &Segments, b: &Segments) -> u64 {
    let mut copies: HashMap<SegmentKey, Vec<usize>> = HashMap::new();
    for (i, k) in a.order.iter().enumerate() {
        copies.entry(*k).or_default().push(i);
    }
    let mut last: Option<usize> = None;
    let mut out_of_order = 0;
    for k in &b.order {
        let Some(left) = copies.get_mut(k) else {
            continue;
        };
        if left.is_empty() {
            continue;
        }
        let after = last.map_or(0, |l| left.partition_point(|&p| p < l));
        if after < left.len() {
            last = Some(left.remove(after));
        } else {
            left.remove(0);
            out_of_order += 1;
        }
    }
    out_of_order
}

/// What `at_a` holds that `at_b` does not (and the reverse, counted apart).
pub fn missing(at_a: &HashMap<SegmentKey, u64>, at_b: &HashMap<SegmentKey, u64>) -> Missing {
    let mut m = Missing::default();
    for (key, &n) in at_a {
        let lacking = n.saturating_sub(at_b.get(key).copied().unwrap_or(0));
        m.segments += lacking;
        if key.1 > 0 && lacking > 0 {
            m.data_segments += lacking;
            m.payload_bytes += lacking * u64::from(key.1);
            m.distinct_data_segments += 1;
            m.distinct_payload_bytes += u64::from(key.1);
        }
    }
    for (key, &n) in at_b {
        m.unexpected_at_b += n.saturating_sub(at_a.get(key).copied().unwrap_or(0));
    }
    m
}

/// Line 1: retransmitted segments in A's capture against A's kernel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetransmissionLine {
    /// Our A→B retransmissions in A's capture, by cause.
    pub ours: RetransmissionCounts,
    /// `TcpRetransSegs` delta.
    pub kernel_retrans_segs: u64,
    /// The kernel's split (and the rest of its counters).
    pub kernel: KernelCounters,
    /// Whether A's capture is complete (the comparison's premise).
    pub a_complete: bool,
    /// How the kernel's split relates to ours.
    pub mapping: Vec<String>,
    /// The outcome.
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// Line 2: what R dropped against what B's capture lacks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DropLine {
    /// R's counters.
    pub router: RouterDrops,
    /// R's A→B drops (loss + blackhole A→B + tbf).
    pub router_a_to_b: u64,
    /// A→B segments in A's capture (our analysis).
    pub segments_at_a: u64,
    /// A→B segments in B's capture (our analysis).
    pub segments_at_b: u64,
    /// `segments_at_a - segments_at_b`.
    pub missing_segments: u64,
    /// The missing segments matched one by one (seq, length, flags).
    pub matched: Missing,
    /// Holes in A→B data at B (a run of consecutive drops is one hole).
    pub holes_at_b: Holes,
    /// Holes in A→B data at A (should be none: A sees all it sends).
    pub holes_at_a: Holes,
    /// What is compared, in words.
    pub compared: Vec<String>,
    /// The outcome.
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// Line 3: the bytes B's application read against the bytes extracted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BytesLine {
    /// Bytes B's application read.
    pub received: u64,
    /// Their sha256.
    pub receiver_sha256: String,
    /// sha256 of what A's application wrote.
    pub sender_sha256: String,
    /// Bytes extracted from A's capture (A→B).
    pub from_a: u64,
    /// Their sha256.
    pub from_a_sha256: Option<String>,
    /// Gaps in A→B reassembled from A's capture.
    pub gaps_a: u64,
    /// Bytes extracted from B's capture (A→B).
    pub from_b: u64,
    /// Their sha256.
    pub from_b_sha256: Option<String>,
    /// Gaps in A→B reassembled from B's capture.
    pub gaps_b: u64,
    /// The outcome.
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// The RTO episodes of A's capture, and the blackhole's backoff.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RtoLine {
    /// The episodes (A→B, A's capture).
    pub episodes: Vec<RtoEpisode>,
    /// Whether the run had a blackhole (then one episode must back off).
    pub blackhole: bool,
    /// The episode with the most attempts.
    pub longest: Option<usize>,
    /// The outcome (for a run without a blackhole: closes, nothing asked).
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// The run's figures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Figures {
    /// Connect to close, seconds.
    pub duration_s: f64,
    /// Payload bytes sent.
    pub bytes: u64,
    /// Payload over the duration, Mbit/s.
    pub goodput_mbit_s: f64,
    /// R's loss rule, as a fraction.
    pub loss_configured: f64,
    /// R's random-loss drops over A→B data segments R saw.
    pub loss_observed: f64,
    /// The blackhole, seconds.
    pub blackhole_s: f64,
}

/// The whole account.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Account {
    /// A's capture, analysed.
    pub capture_a: CaptureView,
    /// B's capture, analysed.
    pub capture_b: CaptureView,
    /// Line 1.
    pub retransmissions: RetransmissionLine,
    /// Line 2.
    pub drops: DropLine,
    /// Line 3.
    pub bytes: BytesLine,
    /// Line 4: tshark's flags beside ours.
    pub tshark: tshark::TsharkLine,
    /// RTO episodes and the backoff.
    pub rto: RtoLine,
    /// The run's figures.
    pub figures: Figures,
    /// Every line closes (tshark's line is a comparison, not a closure:
    /// its differences are explained, not required to vanish).
    pub closes: bool,
}

/// How the kernel's split maps to our classes (the counters do not count
/// the same things, so they are printed together, not equated).
fn mapping(k: &KernelCounters, ours: &RetransmissionCounts, were: [u64; 4]) -> Vec<String> {
    vec![
        format!(
            "TCPTimeouts {} counts timer firings, one per RTO whatever it resends; our rto {} \
             counts segments resent by the timer and in the slow start after it",
            k.timeouts, ours.rto
        ),
        format!(
            "TCPFastRetrans {} counts segments resent in fast recovery, SACK-driven or not; our \
             fast {} + sack {} = {} split them by what triggered each",
            k.fast_retrans,
            ours.fast,
            ours.sack,
            ours.fast + ours.sack
        ),
        format!(
            "TCPSackRecovery {} counts recovery episodes entered with SACK, not segments",
            k.sack_recovery
        ),
        format!(
            "TCPLossProbes {} counts probes sent, new data or a resent tail; our tlp {} + {} \
             probes a D-SACK later showed spurious count only the resent ones",
            k.loss_probes, ours.tlp, were[3]
        ),
        format!(
            "TCPDSACKRecv {} D-SACKs received, TCPLostRetransmit {}; our spurious {} are \
             retransmissions of bytes already ACKed or reported by D-SACK (before that: rto {}, \
             fast {}, sack {}, tlp {})",
            k.dsack_recv, k.lost_retransmit, ours.spurious, were[0], were[1], were[2], were[3]
        ),
    ]
}

/// Decides every line of the account (the core: no I/O).
pub fn build(
    run: &LabRun,
    a: CaptureView,
    b: CaptureView,
    matched: Missing,
    tshark: tshark::TsharkLine,
) -> Account {
    let ours = a.retransmissions;
    let k = run.kernel;
    let retransmissions = RetransmissionLine {
        ours,
        kernel_retrans_segs: k.retrans_segs,
        kernel: k,
        a_complete: run.check.a_complete,
        mapping: mapping(&k, &ours, a.spurious_were),
        verdict: if !run.check.a_complete {
            Verdict::open(format!(
                "A's capture is not complete (it holds {} segments from A, A's kernel sent \
                 OutSegs + RetransSegs = {}; tcpdump dropped {}), so a difference could be \
                 the capture's",
                run.check.seen_at_a, run.check.sent_by_a, run.capture_a.stats.dropped_by_kernel
            ))
        } else if a.stream.is_none() {
            Verdict::open("the transfer's stream is not in A's capture")
        } else if ours.total != k.retrans_segs {
            Verdict::open(format!(
                "we count {} retransmitted segments, the kernel {}",
                ours.total, k.retrans_segs
            ))
        } else {
            Verdict::closes()
        },
    };

    let r_ab = run.router.a_to_b();
    let missing_segments = a.segments.saturating_sub(b.segments);
    let mut why = Vec::new();
    if a.segments < b.segments {
        why.push(format!(
            "B's capture holds more A→B segments ({}) than A's ({})",
            b.segments, a.segments
        ));
    }
    if missing_segments != r_ab {
        why.push(format!(
            "{missing_segments} A→B segments are in A's capture and not in B's, R dropped {r_ab}"
        ));
    }
    if matched.segments != missing_segments || matched.unexpected_at_b != 0 {
        why.push(format!(
            "matching segment by segment finds {} missing at B and {} at B that A never sent",
            matched.segments, matched.unexpected_at_b
        ));
    }
    if b.acked_unseen != 0 {
        why.push(format!(
            "B ACKed {} times data its own capture never showed (capture loss at B)",
            b.acked_unseen
        ));
    }
    if a.holes.count != 0 {
        why.push(format!(
            "A's capture has {} holes in what A sent",
            a.holes.count
        ));
    }
    if b.holes.unfilled != 0 {
        why.push(format!("{} holes at B were never filled", b.holes.unfilled));
    }
    let holes_exceed = b.holes.count > matched.distinct_data_segments
        || b.holes.bytes > matched.distinct_payload_bytes;
    if holes_exceed && matched.reordered_at_b == 0 {
        why.push(format!(
            "B's holes ({} holes, {} B) exceed the distinct dropped data ({} segments, {} B)",
            b.holes.count,
            b.holes.bytes,
            matched.distinct_data_segments,
            matched.distinct_payload_bytes
        ));
    }
    let drops = DropLine {
        router: run.router,
        router_a_to_b: r_ab,
        segments_at_a: a.segments,
        segments_at_b: b.segments,
        missing_segments,
        matched,
        holes_at_b: b.holes,
        holes_at_a: a.holes,
        compared: vec![
            format!(
                "R's A→B drops (loss {} + blackhole {} + tbf {} = {r_ab}) against A→B segments \
                 in A's capture minus in B's ({} - {} = {missing_segments}), and against the \
                 same matched by (seq, length, flags): {} segments, {} with data, {} payload bytes",
                run.router.loss,
                run.router.blackhole_a_to_b,
                run.router.tbf,
                a.segments,
                b.segments,
                matched.segments,
                matched.data_segments,
                matched.payload_bytes
            ),
            format!(
                "B's holes ({} holes, {} B, {} filled) against the distinct segments dropped ({}, \
                 {} B; {} drops were of a segment already dropped once): consecutive drops make \
                 one hole, so holes <= segments; the bytes are equal{}",
                b.holes.count,
                b.holes.bytes,
                b.holes.filled,
                matched.distinct_data_segments,
                matched.distinct_payload_bytes,
                matched.data_segments - matched.distinct_data_segments,
                if b.holes.bytes == matched.distinct_payload_bytes {
                    " (as here)".to_string()
                } else if holes_exceed {
                    format!(
                        "; here B's capture shows {} segments out of A's order: the path \
                         reordered them, and a hole that reordering opens closes with no drop, \
                         so the holes' bytes are not compared",
                        matched.reordered_at_b
                    )
                } else {
                    format!(
                        " unless a drop was at the tail, resent before anything above it \
                         arrived, which makes no jump: {} B here",
                        matched.distinct_payload_bytes
                            - b.holes.bytes.min(matched.distinct_payload_bytes)
                    )
                }
            ),
        ],
        verdict: Verdict::from_reasons(why),
    };

    let t = &run.transfer;
    let mut why = Vec::new();
    if t.receiver_sha256 != t.sender_sha256 || t.bytes_received != t.bytes_sent {
        why.push(format!(
            "B read {} bytes, A wrote {}; their sha256 differ",
            t.bytes_received, t.bytes_sent
        ));
    }
    for (name, v) in [("A", &a), ("B", &b)] {
        if v.sha256.as_deref() != Some(t.receiver_sha256.as_str()) {
            why.push(format!(
                "the {} bytes extracted from {name}'s capture are not what B read ({} bytes)",
                v.extracted_bytes, t.bytes_received
            ));
        }
        if v.gaps != 0 {
            why.push(format!(
                "{name}'s capture left {} gaps ({} B): capture loss",
                v.gaps, v.gap_bytes
            ));
        }
    }
    let bytes = BytesLine {
        received: t.bytes_received,
        receiver_sha256: t.receiver_sha256.clone(),
        sender_sha256: t.sender_sha256.clone(),
        from_a: a.extracted_bytes,
        from_a_sha256: a.sha256.clone(),
        gaps_a: a.gaps,
        from_b: b.extracted_bytes,
        from_b_sha256: b.sha256.clone(),
        gaps_b: b.gaps,
        verdict: Verdict::from_reasons(why),
    };

    let rto = rto_line(&a.rto_episodes, run.blackhole_s > 0.0);
    let data_at_r = a.data_segments.max(1);
    let figures = Figures {
        duration_s: t.duration_s,
        bytes: t.bytes_sent,
        goodput_mbit_s: t.bytes_sent as f64 * 8.0 / 1e6 / t.duration_s.max(1e-9),
        loss_configured: f64::from(run.loss_per_mille) / f64::from(super::LOSS_SCALE),
        loss_observed: run.router.loss as f64 / data_at_r as f64,
        blackhole_s: run.blackhole_s,
    };
    let closes = retransmissions.verdict.closes
        && drops.verdict.closes
        && bytes.verdict.closes
        && rto.verdict.closes;
    Account {
        capture_a: a,
        capture_b: b,
        retransmissions,
        drops,
        bytes,
        tshark,
        rto,
        figures,
        closes,
    }
}

/// Whether `e`'s waits double from the second on: every ratio but the
/// first (the first wait runs from the last transmission, not from the
/// timer's start, and may follow a tail-loss probe) within [`DOUBLING`].
pub fn doubles(e: &RtoEpisode) -> bool {
    e.attempts >= 3
        && e.ratios
            .iter()
            .skip(1)
            .all(|r| (DOUBLING.0..=DOUBLING.1).contains(r))
}

fn rto_line(episodes: &[RtoEpisode], blackhole: bool) -> RtoLine {
    let longest = episodes
        .iter()
        .enumerate()
        .max_by_key(|(_, e)| e.attempts)
        .map(|(i, _)| i);
    let verdict = match (blackhole, longest.map(|i| &episodes[i])) {
        (false, _) => Verdict::closes(),
        (true, None) => Verdict::open("a blackhole, and no RTO episode in A's capture"),
        (true, Some(e)) if doubles(e) => Verdict::closes(),
        (true, Some(e)) => Verdict::open(format!(
            "the longest RTO episode ({} attempts, ratios {}) does not double from the second \
             wait on (each between {} and {}, three attempts at least)",
            e.attempts,
            list(&e.ratios, 2),
            DOUBLING.0,
            DOUBLING.1
        )),
    };
    RtoLine {
        episodes: episodes.to_vec(),
        blackhole,
        longest,
        verdict,
    }
}

fn list(xs: &[f64], decimals: usize) -> String {
    let v: Vec<String> = xs.iter().map(|x| format!("{x:.decimals$}")).collect();
    v.join(", ")
}

/// Runs the pipeline over one capture, extracting into `extract`, and
/// keeps the transfer's view.
pub fn analyse(path: &Path, extract: &Path) -> Result<CaptureView, Error> {
    let mut reader = capture::open_path(path)?;
    let options = Options {
        extract: Some(extract.to_path_buf()),
        ..Options::default()
    };
    let stop = AtomicBool::new(false);
    let mut reports = Vec::new();
    let summary = pipeline::run(
        0,
        &mut reader,
        &options,
        &stop,
        &mut |r| {
            reports.push(r);
            Ok(())
        },
        &mut |_| {},
    )?;
    Ok(view(path, summary.capture.frames, &reports))
}

/// Runs the lab, analyses both captures and decides the account (what
/// [`command`] prints). The captures stay in `config.dir` when it is set;
/// otherwise they go in a temporary directory, removed before returning.
pub fn run_and_account(config: &LabConfig) -> Result<(LabRun, Account), Error> {
    let temporary = config.dir.is_none();
    let dir = match &config.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("tcp-watch-lab-account-{}", std::process::id())),
    };
    let config = LabConfig {
        dir: Some(dir.clone()),
        ..config.clone()
    };
    let result = (|| {
        let run = super::run(&config)?;
        let a = analyse(&run.capture_a.path, &dir.join("extract-a"))?;
        let b = analyse(&run.capture_b.path, &dir.join("extract-b"))?;
        let (seg_a, seg_b) = (
            segments(&run.capture_a.path)?,
            segments(&run.capture_b.path)?,
        );
        let matched = Missing {
            reordered_at_b: reordered(&seg_a, &seg_b),
            ..missing(&seg_a.counts, &seg_b.counts)
        };
        let tshark = tshark::compare(&run, [&a, &b], [&seg_a, &seg_b]);
        let account = build(&run, a, b, matched, tshark);
        Ok((run, account))
    })();
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

/// The lab's settings as the document gives them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigOut {
    /// Fraction of A→B data segments R drops.
    pub loss: f64,
    /// R's rate limit.
    pub rate: Option<String>,
    /// The blackhole, seconds.
    pub blackhole_s: Option<f64>,
    /// SACK in A and B.
    pub sack: bool,
    /// Bytes A sends.
    pub bytes: u64,
    /// Seed of the payload.
    pub seed: u64,
    /// Where the captures were kept (`None`: removed).
    pub keep: Option<PathBuf>,
}

/// The `tcp-watch lab --json` document (schema [`LAB_SCHEMA`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Document<'a> {
    /// `tcp-watch`.
    pub program: &'static str,
    /// The crate's version.
    pub version: &'static str,
    /// [`LAB_SCHEMA`].
    pub schema: u32,
    /// `lab` (the `analyze` document has no such field).
    pub kind: &'static str,
    /// The settings.
    pub config: ConfigOut,
    /// What the lab measured.
    pub run: &'a LabRun,
    /// The account.
    pub account: &'a Account,
}

/// The `--json` document of one run.
pub fn document<'a>(config: &LabConfig, run: &'a LabRun, account: &'a Account) -> Document<'a> {
    Document {
        program: "tcp-watch",
        version: env!("CARGO_PKG_VERSION"),
        schema: LAB_SCHEMA,
        kind: "lab",
        config: ConfigOut {
            loss: config.loss,
            rate: config.rate.clone(),
            blackhole_s: config.blackhole.map(|d| d.as_secs_f64()),
            sack: config.sack,
            bytes: config.bytes,
            seed: config.seed,
            keep: config.dir.clone(),
        },
        run,
        account,
    }
}

/// Runs the lab with `config`, prints the account (text, or one JSON
/// document with `json`), and returns whether every comparison closed.
pub fn command(config: &LabConfig, json: bool) -> Result<bool, Error> {
    if let Some(why) = super::unavailable(config) {
        return Err(Error::Settings(format!("tcp-watch lab: {why}")));
    }
    let (run, account) = run_and_account(config)?;
    let stdout_error = |source| Error::Io {
        path: "standard output".into(),
        source,
    };
    let mut out = std::io::stdout().lock();
    if json {
        let doc = document(config, &run, &account);
        serde_json::to_writer(&mut out, &doc).map_err(|e| stdout_error(e.into()))?;
        writeln!(out).map_err(stdout_error)?;
    } else {
        for line in text(&run, &account) {
            writeln!(out, "{line}").map_err(stdout_error)?;
        }
        if config.dir.is_some() {
            writeln!(
                out,
                "captures kept: {} and {}",
                run.capture_a.path.display(),
                run.capture_b.path.display()
            )
            .map_err(stdout_error)?;
        }
    }
    out.flush().map_err(stdout_error)?;
    Ok(account.closes)
}

/// A row of the side-by-side table.
fn row(what: &str, ours: impl std::fmt::Display, theirs: impl std::fmt::Display) -> String {
    format!("  {what:<34} {ours:>16}   {theirs:>16}")
}

/// The account as text: a side-by-side table per line, a verdict each.
pub fn text(run: &LabRun, acc: &Account) -> Vec<String> {
    let f = &acc.figures;
    let mut l = vec![
        format!(
            "lab: {} bytes A→B in {:.2} s ({:.1} Mbit/s); R drops {:.1} % of A's data segments \
             at random (observed {:.2} %){}{}; SACK {}",
            f.bytes,
            f.duration_s,
            f.goodput_mbit_s,
            f.loss_configured * 100.0,
            f.loss_observed * 100.0,
            if f.blackhole_s > 0.0 {
                format!(", blackhole {:.1} s", f.blackhole_s)
            } else {
                String::new()
            },
            run.rate
                .as_ref()
                .map(|r| format!(", rate {r}"))
                .unwrap_or_default(),
            if run.sack { "on" } else { "off" },
        ),
        format!(
            "captures: A's {} frames ({} from A; kernel sent {}; complete: {}), B's {} frames \
             ({} from A; complete: {})",
            acc.capture_a.frames,
            run.check.seen_at_a,
            run.check.sent_by_a,
            yes(run.check.a_complete),
            acc.capture_b.frames,
            run.check.seen_at_b,
            yes(run.check.b_complete),
        ),
        String::new(),
    ];
    let r = &acc.retransmissions;
    let (o, k) = (&r.ours, &r.kernel);
    l.push(format!(
        "1. retransmitted segments: ours in A's capture | A's kernel: {}",
        r.verdict.verdict
    ));
    l.push(row("", "tcp-watch", "kernel (nstat)"));
    l.push(row("total  | TcpRetransSegs", o.total, k.retrans_segs));
    l.push(row("rto    | TCPTimeouts (firings)", o.rto, k.timeouts));
    l.push(row(
        "fast + sack | TCPFastRetrans",
        format!("{} + {}", o.fast, o.sack),
        k.fast_retrans,
    ));
    l.push(row(
        "       | TCPSackRecovery (episodes)",
        "",
        k.sack_recovery,
    ));
    l.push(row("tlp    | TCPLossProbes", o.tlp, k.loss_probes));
    l.push(row("spurious | TCPDSACKRecv", o.spurious, k.dsack_recv));
    l.push(row("       | TCPLostRetransmit", "", k.lost_retransmit));
    for m in &r.mapping {
        l.push(format!("     {m}"));
    }
    l.push(String::new());

    let d = &acc.drops;
    l.push(format!(
        "2. packets R dropped | A→B segments missing at B: {}",
        d.verdict.verdict
    ));
    l.push(row("", "captures", "R (nft, tc)"));
    l.push(row(
        "missing at B (A's - B's segments)",
        format!(
            "{} - {} = {}",
            d.segments_at_a, d.segments_at_b, d.missing_segments
        ),
        d.router_a_to_b,
    ));
    l.push(row(
        "  matched by (seq, len, flags)",
        d.matched.segments,
        format!(
            "loss {} + hole {} + tbf {}",
            d.router.loss, d.router.blackhole_a_to_b, d.router.tbf
        ),
    ));
    l.push(row(
        "  with data, payload bytes",
        format!("{}, {} B", d.matched.data_segments, d.matched.payload_bytes),
        "",
    ));
    l.push(row(
        "  distinct segments, bytes",
        format!(
            "{}, {} B",
            d.matched.distinct_data_segments, d.matched.distinct_payload_bytes
        ),
        "",
    ));
    l.push(row(
        "holes at B (count, bytes)",
        format!("{}, {} B", d.holes_at_b.count, d.holes_at_b.bytes),
        format!(
            "<= {}, {} B",
            d.matched.distinct_data_segments, d.matched.distinct_payload_bytes
        ),
    ));
    l.push(row(
        "  filled, unfilled",
        format!("{}, {}", d.holes_at_b.filled, d.holes_at_b.unfilled),
        "all filled",
    ));
    l.push(row(
        "  out of A's order at B (reordered)",
        d.matched.reordered_at_b,
        "",
    ));
    l.push(row(
        "B→A dropped by the blackhole",
        "",
        d.router.blackhole_b_to_a,
    ));
    for c in &d.compared {
        l.push(format!("     {c}"));
    }
    l.push(String::new());

    let b = &acc.bytes;
    l.push(format!(
        "3. bytes B's application read | extracted from the captures: {}",
        b.verdict.verdict
    ));
    let short = |s: Option<&str>| s.map_or("-".to_string(), |s| s[..s.len().min(16)].to_string());
    l.push(row("", "bytes", "sha256"));
    l.push(row(
        "read by B",
        b.received,
        short(Some(&b.receiver_sha256)),
    ));
    l.push(row(
        format!("from A's capture ({} gaps)", b.gaps_a).as_str(),
        b.from_a,
        short(b.from_a_sha256.as_deref()),
    ));
    l.push(row(
        format!("from B's capture ({} gaps)", b.gaps_b).as_str(),
        b.from_b,
        short(b.from_b_sha256.as_deref()),
    ));
    l.push(String::new());

    l.extend(acc.tshark.text());
    l.push(String::new());

    let rto = &acc.rto;
    l.push(format!(
        "5. RTO episodes in A's capture: {}{}",
        rto.episodes.len(),
        if rto.blackhole {
            format!(" (blackhole: one must back off): {}", rto.verdict.verdict)
        } else {
            String::new()
        }
    ));
    for (i, e) in rto.episodes.iter().enumerate() {
        l.push(format!(
            "   {}seq {} offset {}: {} attempts, waits {} s, ratios {}{}",
            if Some(i) == rto.longest { "* " } else { "  " },
            e.seq,
            e.offset,
            e.attempts,
            list(&e.intervals_s, 3),
            list(&e.ratios, 2),
            e.recovered_frame
                .map(|f| format!(", recovered at frame {f}"))
                .unwrap_or_default()
        ));
    }
    l.push(String::new());
    l.push(if acc.closes {
        "the account closes".to_string()
    } else {
        "the account DOES NOT CLOSE (see the lines above)".to_string()
    });
    l
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "NO" }
}

pub mod tshark {
    //! Line 4 of the account: tshark's expert flags on the same two
    //! captures, frame by frame beside ours, each difference grouped by the
    //! pair of labels and explained by the rule behind it (tshark 4.0's
    //! `packet-tcp.c`, our `analysis`). A pair no rule explains is said to
    //! be unexplained: that is a finding, not a failure of the transfer.
    //!
    //! tshark runs once per capture with one field per flag (`-T fields`),
    //! so the frame numbers (1-based in both tools) can be matched.

    use std::collections::{BTreeMap, HashMap, HashSet};
    use std::path::Path;
    use std::process::Command;

    use serde::Serialize;

    use super::{CaptureView, SegmentKey, Segments, Verdict};
    use crate::analysis::{MAX_RECORDS, RetransmissionKind};
    use crate::lab::LabRun;
    use crate::lab::netns::A_ADDR;

    /// The flags asked of tshark, after `frame.number` and `ip.src`.
    const FIELDS: [&str; 8] = [
        "tcp.analysis.retransmission",
        "tcp.analysis.fast_retransmission",
        "tcp.analysis.spurious_retransmission",
        "tcp.analysis.out_of_order",
        "tcp.analysis.lost_segment",
        "tcp.analysis.duplicate_ack",
        "tcp.analysis.ack_lost_segment",
        "tcp.analysis.window_update",
    ];

    /// Example frames kept per difference.
    const EXAMPLES: usize = 8;

    /// tshark's flags on one frame.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct FrameFlags {
        /// `tcp.analysis.retransmission`.
        pub retransmission: bool,
        /// `tcp.analysis.fast_retransmission`.
        pub fast: bool,
        /// `tcp.analysis.spurious_retransmission`.
        pub spurious: bool,
        /// `tcp.analysis.out_of_order`.
        pub out_of_order: bool,
        /// `tcp.analysis.lost_segment` ("previous segment not captured").
        pub lost_segment: bool,
        /// `tcp.analysis.duplicate_ack`.
        pub duplicate_ack: bool,
        /// `tcp.analysis.ack_lost_segment` ("ACKed unseen segment").
        pub ack_lost_segment: bool,
        /// `tcp.analysis.window_update`.
        pub window_update: bool,
        /// The ACK number (absolute), when the ACK flag is set.
        pub ack: Option<u32>,
    }

    impl FrameFlags {
        /// The one label tshark's retransmission analysis gives the frame.
        fn label(self) -> &'static str {
            if self.spurious {
                "spurious"
            } else if self.fast {
                "fast"
            } else if self.retransmission {
                "retransmission"
            } else if self.out_of_order {
                "out_of_order"
            } else {
                "none"
            }
        }
    }

    /// One line of `tshark -T fields` output: frame, source address, flags.
    pub fn parse_line(line: &str) -> Option<(u64, String, FrameFlags)> {
        let mut cols = line.split('\t');
        let frame = cols.next()?.trim().parse().ok()?;
        let src = cols.next()?.trim().to_string();
        let mut set = [false; FIELDS.len()];
        for v in set.iter_mut() {
            *v = !cols.next().unwrap_or("").trim().is_empty();
        }
        let ack = cols.next().and_then(|a| a.trim().parse().ok());
        let [
            retransmission,
            fast,
            spurious,
            out_of_order,
            lost_segment,
            duplicate_ack,
            ack_lost_segment,
            window_update,
        ] = set;
        Some((
            frame,
            src,
            FrameFlags {
                retransmission,
                fast,
                spurious,
                out_of_order,
                lost_segment,
                duplicate_ack,
                ack_lost_segment,
                window_update,
                ack,
            },
        ))
    }

    /// Runs tshark on `path`: every flagged frame with its source.
    fn flags(path: &Path) -> Result<Vec<(u64, String, FrameFlags)>, String> {
        let mut cmd = Command::new("tshark");
        cmd.arg("-r")
            .arg(path)
            .args(["-n", "-o", "tcp.relative_sequence_numbers:FALSE"])
            .args(["-Y", "tcp.analysis.flags", "-T", "fields"])
            .args(["-e", "frame.number", "-e", "ip.src"]);
        for f in FIELDS {
            cmd.args(["-e", f]);
        }
        cmd.args(["-e", "tcp.ack"]);
        let out = cmd.output().map_err(|e| format!("tshark: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "tshark -r {}: {}: {}",
                path.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(parse_line)
            .collect())
    }

    /// tshark's version line, or why it is not there.
    fn version() -> Result<String, String> {
        let out = Command::new("tshark")
            .arg("--version")
            .output()
            .map_err(|e| format!("tshark is not installed ({e}): Debian package tshark"))?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("tshark")
            .to_string())
    }

    /// Counts by tshark on one capture (A→B frames, and B's ACKs).
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
    pub struct TsharkCounts {
        /// A→B frames flagged retransmission, fast or spurious.
        pub retransmissions: u64,
        /// Of those, fast retransmissions.
        pub fast: u64,
        /// Of those, spurious.
        pub spurious: u64,
        /// A→B frames flagged out-of-order.
        pub out_of_order: u64,
        /// A→B frames flagged "previous segment not captured".
        pub lost_segments: u64,
        /// B's duplicate ACKs.
        pub duplicate_acks: u64,
        /// Of those, ACKs of everything A had sent: nothing outstanding.
        pub duplicate_acks_idle: u64,
        /// B's window updates.
        pub window_updates: u64,
        /// B's "ACKed unseen segment".
        pub acked_unseen: u64,
    }

    /// Our counts, named as tshark's.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
    pub struct OurCounts {
        /// A→B retransmissions (every class).
        pub retransmissions: u64,
        /// Of those, fast.
        pub fast: u64,
        /// Of those, SACK-driven.
        pub sack: u64,
        /// Of those, after a timeout.
        pub rto: u64,
        /// Of those, tail-loss probes.
        pub tlp: u64,
        /// Of those, spurious.
        pub spurious: u64,
        /// A→B out-of-order.
        pub out_of_order: u64,
        /// Holes (jumps in A→B sequence numbers).
        pub lost_segments: u64,
        /// B's duplicate ACKs.
        pub duplicate_acks: u64,
        /// B's ACKs of data never seen.
        pub acked_unseen: u64,
    }

    /// A group of frames the two tools label differently, or one count.
    #[derive(Debug, Clone, PartialEq, Serialize)]
    pub struct Difference {
        /// Our label (or count).
        pub ours: String,
        /// tshark's.
        pub tshark: String,
        /// Both call the frames retransmissions, only the class differs.
        pub same_class: bool,
        /// Frames in the group.
        pub frames: u64,
        /// The first few of them.
        pub examples: Vec<u64>,
        /// Whether a known rule explains it.
        pub explained: bool,
        /// The rule, or what is not understood.
        pub why: String,
    }

    /// One capture, both tools.
    #[derive(Debug, Clone, PartialEq, Serialize)]
    pub struct Side {
        /// `A` or `B`.
        pub capture: &'static str,
        /// tshark's counts.
        pub tshark: TsharkCounts,
        /// Ours.
        pub ours: OurCounts,
        /// Frames both label alike (same retransmission class, or both
        /// out-of-order).
        pub agree: u64,
        /// Frames both call retransmissions, whatever the class.
        pub both_retransmissions: u64,
        /// Frames are compared one by one up to this one: past it one of
        /// our event lists was full ([`MAX_RECORDS`]); counts stay exact.
        pub compared_up_to_frame: Option<u64>,
        /// The rest, grouped.
        pub differences: Vec<Difference>,
    }

    /// Line 4.
    #[derive(Debug, Clone, PartialEq, Serialize)]
    pub struct TsharkLine {
        /// tshark's version line.
        pub version: Option<String>,
        /// Why tshark was not compared, when it was not.
        pub skipped: Option<String>,
        /// A's capture, then B's.
        pub sides: Vec<Side>,
        /// Closes when every difference is explained.
        #[serde(flatten)]
        pub verdict: Verdict,
    }

    fn our_label(kind: RetransmissionKind) -> &'static str {
        match kind {
            RetransmissionKind::Rto => "rto",
            RetransmissionKind::Fast => "fast",
            RetransmissionKind::Sack => "sack",
            RetransmissionKind::Tlp => "tlp",
            RetransmissionKind::Spurious => "spurious",
        }
    }

    fn is_retransmission(label: &str) -> bool {
        !matches!(label, "none" | "out_of_order")
    }

    /// What the context of a side knows for the explanations.
    struct Context<'a> {
        capture: &'static str,
        ours: &'a CaptureView,
        /// A's segments, to tell at B whether a frame was sent twice.
        at_a: &'a Segments,
        here: &'a Segments,
        /// A→B frames of this capture with the highest sequence number
        /// sent up to them (SYN and FIN included), in frame order.
        highest: Vec<(u64, u32)>,
    }

    /// [`Context::highest`] of `segments`.
    fn highest_by_frame(segments: &Segments) -> Vec<(u64, u32)> {
        let mut frames: Vec<(u64, SegmentKey)> =
            segments.by_frame.iter().map(|(&f, &k)| (f, k)).collect();
        frames.sort_unstable();
        let mut highest: Option<u32> = None;
        frames
            .into_iter()
            .map(|(f, (seq, len, flags))| {
                let end = seq
                    .wrapping_add(len)
                    .wrapping_add(u32::from(flags & 0x03 != 0));
                // Sequence numbers compare modulo 2^32 (RFC 9293 §3.4).
                let h = match highest {
                    Some(h) if (end.wrapping_sub(h) as i32) <= 0 => h,
                    _ => end,
                };
                highest = Some(h);
                (f, h)
            })
            .collect()
    }

    impl Context<'_> {
        /// Whether `ack` (in B's frame `frame`) acknowledges everything A
        /// had sent before the frame.
        fn nothing_outstanding(&self, frame: u64, ack: u32) -> bool {
            let i = self.highest.partition_point(|&(f, _)| f < frame);
            i > 0 && (ack.wrapping_sub(self.highest[i - 1].1) as i32) >= 0
        }

        /// Of `frames` (of this capture), how many carry bytes A sent more
        /// than once (same seq and length, whatever the flags: a resent
        /// tail may gain PSH).
        fn sent_twice(&self, frames: &[u64]) -> usize {
            let mut by_range: HashMap<(u32, u32), u64> = HashMap::new();
            for (&(seq, len, _), &n) in &self.at_a.counts {
                *by_range.entry((seq, len)).or_insert(0) += n;
            }
            frames
                .iter()
                .filter_map(|f| self.here.by_frame.get(f))
                .filter(|&&(seq, len, _)| by_range.get(&(seq, len)).copied().unwrap_or(0) >= 2)
                .count()
        }
    }

    /// Why the two tools label a frame differently, when a rule says.
    fn explain(cx: &Context<'_>, ours: &str, theirs: &str, frames: &[u64]) -> Option<String> {
        let at_a = cx.capture == "A";
        let copies = if at_a {
            String::new()
        } else {
            format!(
                " (A's capture holds two copies or more of {} of these {})",
                cx.sent_twice(frames),
                frames.len()
            )
        };
        Some(match (ours, theirs) {
            ("rto" | "tlp", "retransmission") => format!(
                "tshark has no timeout or tail-loss-probe class: what the timer or a probe sent is \
                 a plain retransmission for it{copies}"
            ),
            ("sack", "retransmission") => format!(
                "tshark's fast retransmission must start at the ACK number that two or more \
                 duplicate ACKs repeat, within 20 ms of the last; the other holes of a SACK \
                 recovery start elsewhere, so it calls them plain retransmissions; we call them \
                 sack because B's SACK blocks showed data above them{copies}"
            ),
            ("fast", "retransmission") => format!(
                "tshark saw fewer than two duplicate ACKs of this ACK number within 20 ms before \
                 it (it calls a repeated ACK whose window changed a window update); we count \
                 those that carry SACK news, as RFC 6675 does, and a partial-ACK retransmission \
                 of the same recovery (NewReno){copies}"
            ),
            ("sack" | "rto" | "tlp", "fast") => format!(
                "it starts at the ACK number of B's duplicate ACKs, so tshark says fast; we call \
                 fast only the first retransmission a duplicate-ACK run triggers, and classify \
                 the rest by what drove them ({ours}){copies}"
            ),
            ("spurious", "retransmission" | "fast") => format!(
                "tshark calls a retransmission spurious only when the ACK had passed all of it \
                 before it was sent; we also take B's D-SACK saying it arrived twice{copies}"
            ),
            (o, "out_of_order") if is_retransmission(o) => format!(
                "tshark calls a segment below the highest sequence number out-of-order when it \
                 comes within its threshold (the first RTT, 3 ms when unknown) of the highest \
                 segment, and tests this before retransmission, without asking whether the \
                 capture saw these bytes before; {}",
                if at_a {
                    "A's capture holds the earlier copy: these are retransmissions".to_string()
                } else {
                    format!("we saw B ask for them (duplicate ACKs, SACK){copies}")
                }
            ),
            ("out_of_order", t) if is_retransmission(t) && !at_a => format!(
                "at B the first copy never reached the capture, so a late segment and a resent \
                 one look alike; we call a hole filled within one initial RTT ({}) of its opening \
                 out-of-order (a sender cannot learn of a loss faster), tshark calls it {t} \
                 because B's duplicate ACKs asked for it{copies}: where A sent it twice tshark is \
                 right and our rule is wrong (under load the path's round trip is shorter than \
                 the handshake's, which took the slow path)",
                cx.ours
                    .initial_rtt_ms
                    .map_or("unknown".to_string(), |ms| format!("{ms:.3} ms"))
            ),
            _ => return None,
        })
    }

    /// Compares one capture's labels.
    fn side(cx: &Context<'_>, tshark: &[(u64, String, FrameFlags)]) -> Side {
        let a = A_ADDR.to_string();
        let mut t = TsharkCounts::default();
        let mut theirs: HashMap<u64, &'static str> = HashMap::new();
        let mut their_holes = Vec::new();
        for (frame, src, f) in tshark {
            if *src == a {
                let label = f.label();
                if is_retransmission(label) {
                    t.retransmissions += 1;
                }
                t.fast += u64::from(f.fast);
                t.spurious += u64::from(f.spurious);
                t.out_of_order += u64::from(label == "out_of_order");
                if f.lost_segment {
                    t.lost_segments += 1;
                    their_holes.push(*frame);
                }
                if label != "none" {
                    theirs.insert(*frame, label);
                }
            } else {
                t.duplicate_acks += u64::from(f.duplicate_ack);
                if f.duplicate_ack && f.ack.is_some_and(|ack| cx.nothing_outstanding(*frame, ack)) {
                    t.duplicate_acks_idle += 1;
                }
                t.window_updates += u64::from(f.window_update);
                t.acked_unseen += u64::from(f.ack_lost_segment);
            }
        }
        let v = cx.ours;
        let r = v.retransmissions;
        let ours_counts = OurCounts {
            retransmissions: r.total,
            fast: r.fast,
            sack: r.sack,
            rto: r.rto,
            tlp: r.tlp,
            spurious: r.spurious,
            out_of_order: v.out_of_order,
            lost_segments: v.holes.count,
            duplicate_acks: v.duplicate_acks,
            acked_unseen: v.acked_unseen,
        };
        let mut ours: HashMap<u64, &'static str> = v
            .retransmission_frames
            .iter()
            .map(|&(f, k)| (f, our_label(k)))
            .collect();
        for &f in &v.out_of_order_frames {
            ours.entry(f).or_insert("out_of_order");
        }
        // Our event lists stop at MAX_RECORDS: past the last frame of a full
        // list, a frame we did not record cannot be told from one we did
        // not flag.
        let horizon = [
            (
                v.retransmission_frames.len(),
                v.retransmission_frames.last().map(|x| x.0),
            ),
            (
                v.out_of_order_frames.len(),
                v.out_of_order_frames.last().copied(),
            ),
            (v.hole_frames.len(), v.hole_frames.last().copied()),
        ]
        .into_iter()
        .filter(|&(n, _)| n >= MAX_RECORDS)
        .filter_map(|(_, last)| last)
        .min();
        let seen = |f: &u64| horizon.is_none_or(|h| *f <= h);
        let frames: HashSet<u64> = ours
            .keys()
            .chain(theirs.keys())
            .copied()
            .filter(seen)
            .collect();
        let mut groups: BTreeMap<(&str, &str), Vec<u64>> = BTreeMap::new();
        let mut agree = 0;
        for f in frames {
            let o = ours.get(&f).copied().unwrap_or("none");
            let th = theirs.get(&f).copied().unwrap_or("none");
            if o == th {
                agree += 1;
            } else {
                groups.entry((o, th)).or_default().push(f);
            }
        }
        let mut differences: Vec<Difference> = groups
            .into_iter()
            .map(|((o, th), mut frames)| {
                frames.sort_unstable();
                let why = explain(cx, o, th, &frames);
                Difference {
                    ours: o.to_string(),
                    tshark: th.to_string(),
                    same_class: is_retransmission(o) && is_retransmission(th),
                    frames: frames.len() as u64,
                    examples: frames.iter().take(EXAMPLES).copied().collect(),
                    explained: why.is_some(),
                    why: why.unwrap_or_else(|| "not explained".into()),
                }
            })
            .collect();
        // Holes: the frame after each jump, in both tools.
        let mine: HashSet<u64> = v.hole_frames.iter().copied().collect();
        let only_tshark: Vec<u64> = their_holes
            .iter()
            .filter(|f| seen(f) && !mine.contains(f))
            .copied()
            .collect();
        let their_set: HashSet<u64> = their_holes.iter().copied().collect();
        let mut only_ours: Vec<u64> = mine
            .iter()
            .filter(|f| !their_set.contains(f))
            .copied()
            .collect();
        only_ours.sort_unstable();
        if !only_tshark.is_empty() || !only_ours.is_empty() {
            differences.push(Difference {
                ours: format!("{} holes", v.holes.count),
                same_class: false,
                tshark: format!("{} previous segment not captured", t.lost_segments),
                frames: (only_tshark.len() + only_ours.len()) as u64,
                examples: only_ours
                    .iter()
                    .chain(&only_tshark)
                    .take(EXAMPLES)
                    .copied()
                    .collect(),
                explained: false,
                why: format!(
                    "frames only we flag {:?}, only tshark {:?}",
                    &only_ours[..only_ours.len().min(EXAMPLES)],
                    &only_tshark[..only_tshark.len().min(EXAMPLES)]
                ),
            });
        }
        if ours_counts.duplicate_acks != t.duplicate_acks {
            // Our count excludes tshark's repeated ACKs with nothing
            // outstanding and may include its window updates.
            let (o, d) = (ours_counts.duplicate_acks, t.duplicate_acks);
            let stale = cx.here.stale_acks_from_b;
            let low = d.saturating_sub(t.duplicate_acks_idle + stale);
            let high = d + t.window_updates + stale;
            let within = (low..=high).contains(&o);
            differences.push(Difference {
                ours: format!("{o} duplicate ACKs"),
                same_class: false,
                tshark: format!(
                    "{d} duplicate ACKs ({} with nothing outstanding; {stale} of B's ACKs \
                     arrived stale), {} window updates",
                    t.duplicate_acks_idle, t.window_updates
                ),
                frames: o.abs_diff(d),
                examples: Vec::new(),
                explained: within,
                why: if within {
                    "tshark counts a repeated ACK even when it acknowledges everything A sent \
                     (B answering retransmissions still in flight after the last ACK), RFC \
                     5681 §2 and we need data outstanding; tshark compares each ACK with the one \
                     just before it, we with the highest, so an old ACK the path reordered behind \
                     a newer one is a duplicate for tshark (not for us) and the next repeat of \
                     the newer one is a duplicate for us (not for tshark); and when B's receive window changes \
                     while it repeats an ACK, tshark calls the ACK a window update, we count it \
                     when it carries new SACK blocks, as RFC 6675 and Linux do"
                        .into()
                } else {
                    format!(
                        "ours {o} is outside tshark's {d} less its {} with nothing outstanding \
                         and at most {stale} stale ACKs, or plus at most its {} window updates \
                         and {stale} repeats after a stale ACK",
                        t.duplicate_acks_idle, t.window_updates
                    )
                },
            });
        }
        if ours_counts.acked_unseen != t.acked_unseen {
            differences.push(Difference {
                ours: format!("{} ACKed unseen", ours_counts.acked_unseen),
                same_class: false,
                tshark: format!("{} ACKed unseen segment", t.acked_unseen),
                frames: ours_counts.acked_unseen.abs_diff(t.acked_unseen),
                examples: Vec::new(),
                explained: false,
                why: "not explained".into(),
            });
        }
        let both_retransmissions = ours
            .iter()
            .filter(|(f, o)| {
                seen(f)
                    && is_retransmission(o)
                    && theirs.get(f).is_some_and(|t| is_retransmission(t))
            })
            .count() as u64;
        Side {
            capture: cx.capture,
            tshark: t,
            ours: ours_counts,
            agree,
            both_retransmissions,
            compared_up_to_frame: horizon,
            differences,
        }
    }

    /// Runs tshark on both captures and compares (skipped, saying why,
    /// when tshark is missing or fails).
    pub fn compare(run: &LabRun, views: [&CaptureView; 2], segments: [&Segments; 2]) -> TsharkLine {
        let skipped = |why: String| TsharkLine {
            version: None,
            skipped: Some(why),
            sides: Vec::new(),
            verdict: Verdict::closes(),
        };
        let version = match version() {
            Ok(v) => v,
            Err(why) => return skipped(why),
        };
        let mut sides = Vec::new();
        for (i, (name, path)) in [("A", &run.capture_a.path), ("B", &run.capture_b.path)]
            .into_iter()
            .enumerate()
        {
            let frames = match flags(path) {
                Ok(f) => f,
                Err(why) => return skipped(why),
            };
            let cx = Context {
                capture: name,
                ours: views[i],
                at_a: segments[0],
                here: segments[i],
                highest: highest_by_frame(segments[i]),
            };
            sides.push(side(&cx, &frames));
        }
        let unexplained: Vec<String> = sides
            .iter()
            .flat_map(|s| {
                s.differences.iter().filter(|d| !d.explained).map(move |d| {
                    format!(
                        "at {}: ours {} / tshark {} ({} frames)",
                        s.capture, d.ours, d.tshark, d.frames
                    )
                })
            })
            .collect();
        let verdict = if unexplained.is_empty() {
            Verdict {
                closes: true,
                verdict: "every difference explained".into(),
            }
        } else {
            Verdict::open(format!("unexplained: {}", unexplained.join("; ")))
        };
        TsharkLine {
            version: Some(version),
            skipped: None,
            sides,
            verdict,
        }
    }

    impl TsharkLine {
        /// The line as text.
        pub fn text(&self) -> Vec<String> {
            let mut l = Vec::new();
            if let Some(why) = &self.skipped {
                l.push(format!("4. tshark's flags: not compared: {why}"));
                return l;
            }
            l.push(format!(
                "4. tshark's flags on the same captures ({}): {}",
                self.version
                    .as_deref()
                    .unwrap_or("tshark")
                    .trim_end_matches('.'),
                self.verdict.verdict
            ));
            for s in &self.sides {
                let (o, t) = (&s.ours, &s.tshark);
                l.push(super::row(
                    &format!("{}'s capture", s.capture),
                    "tcp-watch",
                    "tshark",
                ));
                l.push(super::row(
                    "retransmissions",
                    format!(
                        "{} (fast {}, sack {}, rto {}, tlp {}, spurious {})",
                        o.retransmissions, o.fast, o.sack, o.rto, o.tlp, o.spurious
                    ),
                    format!(
                        "{} (fast {}, spurious {})",
                        t.retransmissions, t.fast, t.spurious
                    ),
                ));
                l.push(super::row("out-of-order", o.out_of_order, t.out_of_order));
                l.push(super::row(
                    "holes | previous segment not captured",
                    o.lost_segments,
                    t.lost_segments,
                ));
                l.push(super::row(
                    "duplicate ACKs (from B)",
                    o.duplicate_acks,
                    format!(
                        "{} (+{} window updates)",
                        t.duplicate_acks, t.window_updates
                    ),
                ));
                l.push(super::row("ACKed unseen", o.acked_unseen, t.acked_unseen));
                l.push(format!(
                    "     {} frames labelled alike; {} frames both call retransmissions \
                     (whatever the class){}",
                    s.agree,
                    s.both_retransmissions,
                    s.compared_up_to_frame
                        .map(|f| format!(
                            "; frame by frame up to frame {f} (our event records stop at \
                             {MAX_RECORDS} per list; the counts above are exact)"
                        ))
                        .unwrap_or_default()
                ));
                for d in &s.differences {
                    l.push(format!(
                        "     ours {} / tshark {}{}: {} frames{}: {}{}",
                        d.ours,
                        d.tshark,
                        if d.same_class { " (class only)" } else { "" },
                        d.frames,
                        if d.examples.is_empty() {
                            String::new()
                        } else {
                            format!(" (e.g. {:?})", d.examples)
                        },
                        if d.explained { "" } else { "UNEXPLAINED: " },
                        d.why
                    ));
                }
            }
            l
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::lab::{Capture, CaptureCheck, CaptureStats, Transfer};

    const SHA: &str = "ab12";

    fn capture(from_a: u64) -> Capture {
        Capture {
            path: "x.pcap".into(),
            interface: "a0".into(),
            stats: CaptureStats::default(),
            tcp_from_a: from_a,
            tcp_from_b: 50,
            tcp_from_a_by_tcpdump: None,
            pid: 1,
        }
    }

    /// A run of 100 segments from A (3 retransmitted), 2 of them dropped
    /// by R, and the views of two captures that agree with it.
    fn closing() -> (LabRun, CaptureView, CaptureView, Missing) {
        let run = LabRun {
            namespaces: vec![],
            loss_per_mille: 20,
            sack: true,
            blackhole_s: 0.0,
            rate: None,
            capture_a: capture(100),
            capture_b: capture(98),
            kernel: KernelCounters {
                out_segs: 97,
                retrans_segs: 3,
                fast_retrans: 3,
                ..KernelCounters::default()
            },
            router: RouterDrops {
                loss: 2,
                ..RouterDrops::default()
            },
            transfer: Transfer {
                bytes_sent: 1000,
                bytes_received: 1000,
                sender_sha256: SHA.into(),
                receiver_sha256: SHA.into(),
                duration_s: 0.5,
            },
            check: CaptureCheck {
                sent_by_a: 100,
                seen_at_a: 100,
                seen_at_b: 98,
                a_complete: true,
                b_complete: true,
            },
        };
        let view = |segments, holes| CaptureView {
            stream: Some(0),
            segments,
            data_segments: segments,
            retransmissions: RetransmissionCounts {
                total: 3,
                fast: 2,
                sack: 1,
                ..RetransmissionCounts::default()
            },
            holes,
            extracted_bytes: 1000,
            sha256: Some(SHA.into()),
            ..CaptureView::default()
        };
        let a = view(100, Holes::default());
        let b = view(
            98,
            Holes {
                count: 1,
                bytes: 2896,
                filled: 1,
                unfilled: 0,
            },
        );
        let missing = Missing {
            segments: 2,
            data_segments: 2,
            payload_bytes: 2896,
            distinct_data_segments: 2,
            distinct_payload_bytes: 2896,
            unexpected_at_b: 0,
            reordered_at_b: 0,
        };
        (run, a, b, missing)
    }

    fn no_tshark() -> tshark::TsharkLine {
        tshark::TsharkLine {
            version: None,
            skipped: Some("not installed".into()),
            sides: vec![],
            verdict: Verdict::closes(),
        }
    }

    #[test]
    fn an_agreeing_run_closes_on_every_line() {
        let (run, a, b, m) = closing();
        let acc = build(&run, a, b, m, no_tshark());
        assert!(acc.closes, "{acc:#?}");
        assert_eq!(acc.drops.missing_segments, 2);
        let text = text(&run, &acc).join("\n");
        assert!(text.contains("the account closes"), "{text}");
        assert!(!text.contains("DOES NOT CLOSE"), "{text}");
    }

    #[test]
    fn each_disagreement_opens_its_own_line_and_says_why() {
        let (run, mut a, b, m) = closing();
        a.retransmissions.total = 4;
        let acc = build(&run, a, b.clone(), m, no_tshark());
        assert!(!acc.closes && !acc.retransmissions.verdict.closes);
        assert!(acc.drops.verdict.closes && acc.bytes.verdict.closes);
        assert!(
            acc.retransmissions.verdict.verdict.contains("we count 4")
                && acc.retransmissions.verdict.verdict.contains("the kernel 3"),
            "{}",
            acc.retransmissions.verdict.verdict
        );

        // An incomplete capture at A: no verdict on the counts, said so.
        let (mut run, a, b, m) = closing();
        run.check.a_complete = false;
        let acc = build(&run, a, b, m, no_tshark());
        assert!(
            acc.retransmissions
                .verdict
                .verdict
                .contains("A's capture is not complete"),
            "{}",
            acc.retransmissions.verdict.verdict
        );

        // R dropped one more than B's capture misses.
        let (mut run, a, b, m) = closing();
        run.router.loss = 3;
        let acc = build(&run, a, b, m, no_tshark());
        assert!(!acc.drops.verdict.closes);
        assert!(acc.drops.verdict.verdict.contains("R dropped 3"));

        // A gap in B's reassembly: capture loss, and a different sha256.
        let (run, a, mut b, m) = closing();
        b.gaps = 1;
        b.gap_bytes = 100;
        b.sha256 = Some("other".into());
        let acc = build(&run, a, b, m, no_tshark());
        assert!(!acc.bytes.verdict.closes);
        let v = &acc.bytes.verdict.verdict;
        assert!(
            v.contains("B's capture left 1 gaps") && v.contains("extracted from B"),
            "{v}"
        );

        // More hole bytes at B than R dropped cannot be, unless the path
        // reordered segments (a hole then closes with no drop).
        let (run, a, mut b, mut m) = closing();
        b.holes.bytes = 5000;
        let acc = build(&run, a.clone(), b.clone(), m, no_tshark());
        assert!(!acc.drops.verdict.closes);
        m.reordered_at_b = 3;
        let acc = build(&run, a, b, m, no_tshark());
        assert!(acc.drops.verdict.closes, "{:?}", acc.drops.verdict);
        assert!(acc.drops.compared[1].contains("3 segments out of A's order"));
    }

    fn keys(order: &[u32]) -> Segments {
        let order: Vec<SegmentKey> = order.iter().map(|&s| (s, 10, 0x10)).collect();
        let mut out = Segments::default();
        for (i, k) in order.iter().enumerate() {
            *out.counts.entry(*k).or_insert(0) += 1;
            out.by_frame.insert(i as u64 + 1, *k);
        }
        out.order = order;
        out
    }

    #[test]
    fn reordering_is_told_from_drops_and_retransmissions() {
        // 20 dropped, resent after 40: in order at B.
        let a = keys(&[10, 20, 30, 40, 20, 50]);
        assert_eq!(reordered(&a, &keys(&[10, 30, 40, 20, 50])), 0);
        // Nothing dropped, 30 overtaken by 40.
        assert_eq!(reordered(&a, &keys(&[10, 20, 40, 30, 20, 50])), 1);
        // Dropped twice, the third copy arrives: in order.
        let a = keys(&[10, 20, 30, 20, 40, 20]);
        assert_eq!(reordered(&a, &keys(&[10, 30, 40, 20])), 0);
    }

    fn episode(intervals: &[f64]) -> RtoEpisode {
        RtoEpisode {
            seq: 1,
            offset: 0,
            attempts: intervals.len() as u32,
            intervals_s: intervals.to_vec(),
            ratios: intervals.windows(2).map(|w| w[1] / w[0]).collect(),
            frames: vec![],
            recovered_frame: Some(9),
        }
    }

    #[test]
    fn a_blackhole_needs_one_episode_that_doubles_from_the_second_wait() {
        // The first wait may be short (it runs from the last send).
        assert!(doubles(&episode(&[0.05, 0.4, 0.8, 1.6])));
        assert!(doubles(&episode(&[0.2, 0.4, 0.8])));
        assert!(!doubles(&episode(&[0.2, 0.4])));
        assert!(!doubles(&episode(&[0.2, 0.4, 0.4])));
        assert!(!doubles(&episode(&[0.2, 0.4, 1.6])));
        let (mut run, mut a, b, m) = closing();
        run.blackhole_s = 1.2;
        let acc = build(&run, a.clone(), b.clone(), m, no_tshark());
        assert!(!acc.rto.verdict.closes, "no episode at all");
        a.rto_episodes = vec![episode(&[0.2]), episode(&[0.21, 0.42, 0.85])];
        let acc = build(&run, a.clone(), b.clone(), m, no_tshark());
        assert!(acc.rto.verdict.closes, "{:?}", acc.rto.verdict);
        assert_eq!(acc.rto.longest, Some(1));
        a.rto_episodes = vec![episode(&[0.2, 0.2, 0.2])];
        let acc = build(&run, a, b, m, no_tshark());
        assert!(acc.rto.verdict.verdict.contains("does not double"));
    }

    #[test]
    fn missing_segments_are_matched_as_a_multiset() {
        let a: HashMap<SegmentKey, u64> = [
            ((1, 100, 0x10), 2),
            ((101, 100, 0x10), 1),
            ((201, 0, 0x11), 1),
        ]
        .into();
        let b: HashMap<SegmentKey, u64> = [((1, 100, 0x10), 1), ((201, 0, 0x11), 1)].into();
        let m = missing(&a, &b);
        assert_eq!(m.segments, 2);
        assert_eq!(m.data_segments, 2);
        assert_eq!(m.payload_bytes, 200);
        assert_eq!(m.distinct_data_segments, 2);
        assert_eq!(m.unexpected_at_b, 0);
        let b2: HashMap<SegmentKey, u64> = [((9, 1, 0x10), 1)].into();
        assert_eq!(missing(&a, &b2).unexpected_at_b, 1);
        // The first copy and its retransmission both dropped: one hole's
        // worth of distinct bytes.
        let a3: HashMap<SegmentKey, u64> = [((1, 100, 0x10), 3)].into();
        let b3: HashMap<SegmentKey, u64> = [((1, 100, 0x10), 1)].into();
        let m3 = missing(&a3, &b3);
        assert_eq!((m3.data_segments, m3.distinct_data_segments), (2, 1));
        assert_eq!(m3.distinct_payload_bytes, 100);
    }

    #[test]
    fn tshark_field_lines_are_read_by_position() {
        let (frame, src, f) = tshark::parse_line("75\t198.18.0.1\t1\t1\t\t\t\t\t\t").unwrap();
        assert_eq!((frame, src.as_str()), (75, "198.18.0.1"));
        assert!(f.retransmission && f.fast && !f.out_of_order && !f.duplicate_ack);
        let (_, _, f) = tshark::parse_line("68\t198.19.0.2\t\t\t\t\t\t1,1\t\t").unwrap();
        assert!(f.duplicate_ack && !f.retransmission);
        let (_, _, f) = tshark::parse_line("9\t198.19.0.2\t\t\t\t\t\t\t\t1").unwrap();
        assert!(f.window_update);
        assert!(tshark::parse_line("").is_none());
        assert!(tshark::parse_line("x\t1.2.3.4").is_none());
    }
}
