//! The analyzer of one connection: both directions' segments in capture
//! order, classified as they come. See the parent module for the rules and
//! where they differ from Wireshark's.

use super::ranges::Ranges;
use super::report::{
    AckedUnseen, ConnectionReport, DirectionReport, DuplicateAckRun, Handshake, LostSegment,
    MAX_FRAMES_PER_RUN, MAX_RECORDS, OutOfOrder, Retransmission, RetransmissionKind, RtoEpisode,
    SackRecord, SynOptions, ZeroWindow,
};
use super::rtt::RttSamples;
use crate::segment::{Segment, TcpFlags, Timestamp};
use std::collections::VecDeque;
use std::net::SocketAddr;

/// Transmissions remembered per direction (for "the frame it repeats" and
/// RTT samples); older ones are forgotten.
const SENT_KEPT: usize = 4096;
/// Of those, transmissions already covered by the cumulative ACK kept.
const SENT_ACKED_KEPT: usize = 64;
/// Holes and SACK ranges kept per direction.
const RANGES_KEPT: usize = 512;
/// Recent retransmissions a D-SACK can still be matched with.
const RECENT_RETRANSMISSIONS: usize = 256;
/// TSvals remembered for RTT by timestamps.
const TSVALS_KEPT: usize = 512;
/// Linux's minimum RTO (`TCP_RTO_MIN`): a lone-segment tail resend sooner
/// than this is a probe, not a timeout.
const RTO_MIN_S: f64 = 0.2;
/// Wireshark's limit between a duplicate ACK and the retransmission it
/// triggers, at a capture next to the sender.
const REACT_MIN_S: f64 = 0.020;
/// Reordering threshold when no RTT is known (Wireshark's default).
const REORDER_DEFAULT_S: f64 = 0.003;

fn secs(later: Timestamp, earlier: Timestamp) -> f64 {
    later.secs_since(earlier)
}

fn push_bounded<T>(v: &mut Vec<T>, item: T, dropped: &mut u64) -> Option<usize> {
    if v.len() < MAX_RECORDS {
        v.push(item);
        Some(v.len() - 1)
    } else {
        *dropped += 1;
        None
    }
}

/// One transmission of a range of a direction's sequence space.
#[derive(Debug, Clone, Copy)]
struct Sent {
    start: i64,
    end: i64,
    frame: u64,
    ts: Timestamp,
    retransmitted: bool,
}

/// A range of sequence space the capture has not seen, below the highest
/// sequence number it has.
#[derive(Debug, Clone, Copy)]
struct Hole {
    opened: Timestamp,
    opened_frame: u64,
    record: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Recovery {
    None,
    /// ACK-driven recovery (fast retransmit / SACK) until this offset is ACKed.
    Ack(i64),
    /// Timeout recovery until this offset is ACKed.
    Rto(i64),
}

#[derive(Debug, Clone, Copy)]
struct Episode {
    offset: i64,
    last_attempt: Timestamp,
    record: usize,
}

#[derive(Debug, Clone, Copy)]
struct RecentRetx {
    start: i64,
    end: i64,
    kind: RetransmissionKind,
    record: Option<usize>,
}

/// What tells a copy made by the capture from a segment sent again: a
/// sender cannot resend within the same capture timestamp.
type Header = (Timestamp, u32, u32, u8, u32, u16);

/// One direction's sequence space as seen at the capture point, and what
/// the peer's ACKs say about it.
#[derive(Debug)]
struct Direction {
    /// Sequence number of offset 0.
    base: Option<u32>,
    /// One past the highest offset sent (the next expected).
    highest: i64,
    sent_anything: bool,
    last_frame: Option<u64>,
    last_tx: Option<Timestamp>,
    sent: VecDeque<Sent>,
    holes: Ranges<Hole>,
    /// The peer's cumulative ACK of this direction's data.
    acked: Option<i64>,
    ack_frame: Option<u64>,
    last_ack: Option<Timestamp>,
    last_ack_advance: Option<Timestamp>,
    /// The window the peer advertises for this direction's data, in bytes.
    window: Option<u64>,
    /// The unscaled window field of the peer's last ACK.
    window_field: Option<u16>,
    dupacks: u32,
    fast_done_in_run: bool,
    tlp_since_progress: bool,
    /// The peer's SACK scoreboard of this direction's data.
    scoreboard: Ranges<()>,
    recovery: Recovery,
    episode: Option<Episode>,
    recent: VecDeque<RecentRetx>,
    tsvals: VecDeque<(u32, Timestamp)>,
    rtt: RttSamples,
    /// Open duplicate-ACK run this direction sends (record index, if kept).
    dup_run: Option<Option<usize>>,
    /// Open zero-window episode this direction advertises.
    zero_window: Option<(Option<usize>, Timestamp)>,
    /// The last segment's header, to tell copies made by the capture.
    last_header: Option<Header>,
    report: DirectionReport,
}

impl Direction {
    fn new() -> Self {
        Direction {
            base: None,
            highest: 0,
            sent_anything: false,
            last_frame: None,
            last_tx: None,
            sent: VecDeque::new(),
            holes: Ranges::new(RANGES_KEPT),
            acked: None,
            ack_frame: None,
            last_ack: None,
            last_ack_advance: None,
            window: None,
            window_field: None,
            dupacks: 0,
            fast_done_in_run: false,
            tlp_since_progress: false,
            scoreboard: Ranges::new(RANGES_KEPT),
            recovery: Recovery::None,
            episode: None,
            recent: VecDeque::new(),
            tsvals: VecDeque::new(),
            rtt: RttSamples::default(),
            dup_run: None,
            zero_window: None,
            last_header: None,
            report: DirectionReport::default(),
        }
    }

    /// The 64-bit offset of `seq`: the nearest to the highest offset
    /// (RFC 9293 §3.4 comparisons are modulo 2^32 within 2^31).
    fn offset(&self, seq: u32) -> i64 {
        let base = self.base.unwrap_or(seq);
        let here = base.wrapping_add(self.highest as u32);
        self.highest
            .saturating_add(i64::from(seq.wrapping_sub(here) as i32))
    }

    fn seq(&self, offset: i64) -> u32 {
        self.base.unwrap_or(0).wrapping_add(offset as u32)
    }

    fn window_zero(&self) -> bool {
        self.window_field == Some(0)
    }
}

/// Analyzes one TCP connection, fed every segment of it in capture order.
///
/// Call [`push`](ConnectionAnalyzer::push) for each segment of either
/// direction, then [`report`](ConnectionAnalyzer::report). Nothing here
/// reads a clock: time is the segments' capture timestamps.
#[derive(Debug)]
pub struct ConnectionAnalyzer {
    id: u64,
    client: Option<SocketAddr>,
    server: Option<SocketAddr>,
    /// `[client_to_server, server_to_client]`.
    dirs: [Direction; 2],
    handshake: Handshake,
    syn_ts: Option<Timestamp>,
    syn_ack_ts: Option<Timestamp>,
    first: Option<(u64, Timestamp)>,
    last: Option<(u64, Timestamp)>,
}

impl Default for ConnectionAnalyzer {
    fn default() -> Self {
        Self::new(0)
    }
}

impl ConnectionAnalyzer {
    /// A connection with nothing seen yet; `id` is carried into the report.
    pub fn new(id: u64) -> Self {
        ConnectionAnalyzer {
            id,
            client: None,
            server: None,
            dirs: [Direction::new(), Direction::new()],
            handshake: Handshake::default(),
            syn_ts: None,
            syn_ack_ts: None,
            first: None,
            last: None,
        }
    }

    /// The client's ISN, once its SYN was seen (a new SYN with another ISN
    /// on the same port pair is another connection).
    pub fn client_isn(&self) -> Option<u32> {
        self.handshake.client.isn
    }

    /// Releases what only an open connection needs (the transmissions
    /// remembered for Karn's rule and for the copy a resend repeats, the
    /// timestamps awaiting an echo), keeping the last few: for a connection
    /// that has ended but may still see a late ACK or FIN. Counts and
    /// records are kept.
    pub fn compact(&mut self) {
        const KEEP: usize = 64;
        for d in &mut self.dirs {
            let excess = d.sent.len().saturating_sub(KEEP);
            d.sent.drain(..excess);
            d.sent.shrink_to_fit();
            d.tsvals.clear();
            d.tsvals.shrink_to_fit();
        }
    }

    /// Capture time of the last segment pushed.
    pub fn last_seen(&self) -> Option<Timestamp> {
        self.last.map(|(_, ts)| ts)
    }

    /// Feeds the next segment of the connection, in capture order.
    /// Segments of other connections are ignored.
    pub fn push(&mut self, seg: &Segment<'_>) {
        if self.client.is_none() {
            // A SYN-ACK first means its receiver is the client.
            let reply = seg.flags.contains(TcpFlags::SYN) && seg.flags.contains(TcpFlags::ACK);
            let (c, s) = if reply {
                (seg.key.dst, seg.key.src)
            } else {
                (seg.key.src, seg.key.dst)
            };
            self.client = Some(c);
            self.server = Some(s);
        }
        let d = if Some(seg.key.src) == self.client && Some(seg.key.dst) == self.server {
            0
        } else if Some(seg.key.src) == self.server && Some(seg.key.dst) == self.client {
            1
        } else {
            return;
        };
        if self.first.is_none() {
            self.first = Some((seg.frame, seg.ts));
        }
        self.last = Some((seg.frame, seg.ts));
        self.handshake_step(d, seg);

        let [c2s, s2c] = &mut self.dirs;
        let (me, peer) = if d == 0 { (c2s, s2c) } else { (s2c, c2s) };
        me.report.segments += 1;
        let header = (
            seg.ts,
            seg.seq,
            seg.ack,
            seg.flags.0,
            seg.payload_len,
            seg.window,
        );
        if me.last_header.replace(header) == Some(header) {
            me.report.capture_duplicates += 1;
            return;
        }
        me.report.not_captured_bytes += u64::from(seg.not_captured());
        if seg.flags.contains(TcpFlags::RST) {
            // A reset's numbers need not follow the stream (RFC 9293
            // §3.10.7.4); counting it is all that is safe.
            me.report.resets += 1;
            return;
        }
        let ctx = Context {
            path_rtt_s: self.handshake.initial_rtt_ms.map(|ms| ms / 1000.0),
            scale: self.handshake.window_scaling,
            // A window field is scaled by the shift its sender announced in
            // its own SYN (RFC 7323 §2.3).
            shift: if d == 0 {
                self.handshake.client.window_scale
            } else {
                self.handshake.server.window_scale
            },
        };
        if seg.flags.contains(TcpFlags::ACK) {
            on_ack(me, peer, seg, &ctx);
        }
        on_data(me, peer, seg, &ctx);
        if let Some(v) = seg.options.timestamps.map(|(tsval, _)| tsval) {
            if me.tsvals.back().is_none_or(|&(last, _)| last != v) {
                me.tsvals.push_back((v, seg.ts));
                if me.tsvals.len() > TSVALS_KEPT {
                    me.tsvals.pop_front();
                }
            }
        }
        me.last_frame = Some(seg.frame);
    }

    fn handshake_step(&mut self, d: usize, seg: &Segment<'_>) {
        let syn = seg.flags.contains(TcpFlags::SYN);
        let ack = seg.flags.contains(TcpFlags::ACK);
        let opts = |seg: &Segment<'_>| SynOptions {
            frame: Some(seg.frame),
            isn: Some(seg.seq),
            mss: seg.options.mss,
            window_scale: seg.options.window_scale.map(|s| s.min(14)),
            sack_permitted: seg.options.sack_permitted,
            timestamps: seg.options.timestamps.is_some(),
        };
        let h = &mut self.handshake;
        if syn && !ack && d == 0 && h.client.isn.is_none() {
            h.client = opts(seg);
            self.syn_ts = Some(seg.ts);
            // A SYN after this side sent in another sequence space (a forged
            // or reused connection) is a jump in that space, not a new base.
            if !self.dirs[0].sent_anything {
                self.dirs[0].base = Some(seg.seq);
            }
        } else if syn && ack && d == 1 && h.server.isn.is_none() {
            h.server = opts(seg);
            self.syn_ack_ts = Some(seg.ts);
            if !self.dirs[1].sent_anything {
                self.dirs[1].base = Some(seg.seq);
            }
            h.window_scaling = h.client.window_scale.is_some() && h.server.window_scale.is_some();
            h.sack = h.client.sack_permitted && h.server.sack_permitted;
            if let Some(t0) = self.syn_ts {
                h.syn_to_syn_ack_ms = Some(secs(seg.ts, t0) * 1e3);
            }
        } else if !syn
            && ack
            && d == 0
            && h.ack_frame.is_none()
            && h.server
                .isn
                .is_some_and(|isn| seg.ack == isn.wrapping_add(1))
        {
            h.ack_frame = Some(seg.frame);
            if let Some(t1) = self.syn_ack_ts {
                h.syn_ack_to_ack_ms = Some(secs(seg.ts, t1) * 1e3);
            }
            if let Some(t0) = self.syn_ts {
                h.initial_rtt_ms = Some(secs(seg.ts, t0) * 1e3);
            }
        }
    }

    /// The report so far (call after the last segment).
    pub fn report(&self) -> ConnectionReport {
        let unknown: SocketAddr = ([0, 0, 0, 0], 0).into();
        let (first_frame, t0) = self.first.unwrap_or((0, Timestamp(0)));
        let (last_frame, t1) = self.last.unwrap_or((0, Timestamp(0)));
        let dir = |d: &Direction| {
            let mut r = d.report.clone();
            r.rtt_ms.samples = d.rtt.count();
            r.rtt_ms.min = d.rtt.min();
            r.rtt_ms.median = d.rtt.quantile(0.5);
            r.rtt_ms.p95 = d.rtt.quantile(0.95);
            r.ranges_forgotten = d.holes.forgotten + d.scoreboard.forgotten;
            if let Some((Some(i), since)) = d.zero_window {
                if let Some(z) = r.events.zero_windows.get_mut(i) {
                    z.duration_s = secs(t1, since);
                }
            }
            r
        };
        ConnectionReport {
            id: self.id,
            client: self.client.unwrap_or(unknown),
            server: self.server.unwrap_or(unknown),
            start_known: self.handshake.client.isn.is_some() || self.handshake.server.isn.is_some(),
            first_frame,
            last_frame,
            duration_s: secs(t1, t0),
            handshake: self.handshake,
            client_to_server: dir(&self.dirs[0]),
            server_to_client: dir(&self.dirs[1]),
        }
    }
}

/// What the connection knows that one direction's rules need.
struct Context {
    /// Full round trip at the capture point, from the handshake.
    path_rtt_s: Option<f64>,
    /// Whether window scaling is in effect.
    scale: bool,
    /// The scale shift of the side sending the segment.
    shift: Option<u8>,
}

impl Context {
    /// Longest time between the ACK that tells a sender of a loss and the
    /// retransmission it causes, as the capture sees them: next to the
    /// sender almost nothing, next to the receiver one round trip.
    fn react_s(&self, me: &Direction) -> f64 {
        let rtt = self
            .path_rtt_s
            .or_else(|| me.rtt.min().map(|ms| ms / 1000.0))
            .unwrap_or(0.0);
        REACT_MIN_S.max(1.5 * rtt)
    }

    /// Longest delay after which a never-seen segment below the highest is
    /// still "reordered": a sender cannot learn of a loss and resend in
    /// less than one round trip.
    fn reorder_s(&self, me: &Direction) -> f64 {
        self.path_rtt_s
            .or_else(|| me.rtt.min().map(|ms| ms / 1000.0))
            .unwrap_or(REORDER_DEFAULT_S)
    }
}

/// `ackers` (the side sending `seg`) acknowledges `data` (the other side).
/// An ACK up to `ack` (frame `frame`) ends the timeout episode and the
/// recovery it covers.
fn end_recoveries(data: &mut Direction, ack: i64, frame: u64) {
    if let Some(ep) = data.episode {
        if ack > ep.offset {
            data.report.rto_episodes[ep.record].recovered_frame = Some(frame);
            data.episode = None;
        }
    }
    match data.recovery {
        Recovery::Ack(p) | Recovery::Rto(p) if ack >= p => data.recovery = Recovery::None,
        _ => {}
    }
}

fn on_ack(acker: &mut Direction, data: &mut Direction, seg: &Segment<'_>, ctx: &Context) {
    if data.base.is_none() {
        // Only the ACKs of this direction are in the capture so far.
        data.base = Some(seg.ack);
    }
    let ack = data.offset(seg.ack);
    let syn = seg.flags.contains(TcpFlags::SYN);
    let shift = if ctx.scale && !syn {
        ctx.shift.unwrap_or(0)
    } else {
        0
    };
    let window = u64::from(seg.window) << shift;
    let pure = seg.payload_len == 0 && !syn && !seg.flags.contains(TcpFlags::FIN);

    // SACK blocks (RFC 2018) and D-SACK (RFC 2883 §4).
    let blocks = seg.options.sack_blocks();
    if !blocks.is_empty() {
        let b0 = (data.offset(blocks[0].0), data.offset(blocks[0].1));
        let dsack = b0.1 <= ack
            || blocks
                .get(1)
                .map(|b| (data.offset(b.0), data.offset(b.1)))
                .is_some_and(|b1| b1.0 <= b0.0 && b0.1 <= b1.1);
        acker.report.sack_blocks += blocks.len() as u64;
        if dsack {
            acker.report.dsack_blocks += 1;
            if !dsack_match(data, b0.0, b0.1, seg.frame) {
                acker.report.dsack_unmatched += 1;
            }
        }
        for (i, &(l, r)) in blocks.iter().enumerate() {
            if dsack && i == 0 {
                continue;
            }
            let (l, r) = (data.offset(l), data.offset(r));
            // Only what lies above the ACK and within what was sent means
            // anything; a block past the highest seen is data not captured.
            let (l, r) = (l.max(ack), r.min(data.highest.max(ack)));
            data.scoreboard.insert(l, r, ());
        }
        let rec = SackRecord {
            frame: seg.frame,
            ack: seg.ack,
            blocks: blocks.to_vec(),
            dsack,
        };
        push_bounded(
            &mut acker.report.events.sack,
            rec,
            &mut acker.report.records_dropped,
        );
    }

    // ACKed unseen: the receiver had bytes the capture never showed.
    if data.sent_anything && ack > data.highest {
        let unseen = (ack - data.highest) as u64;
        acker.report.acked_unseen += 1;
        let rec = AckedUnseen {
            frame: seg.frame,
            ack: seg.ack,
            unseen,
        };
        push_bounded(
            &mut acker.report.events.acked_unseen,
            rec,
            &mut acker.report.records_dropped,
        );
        open_hole(data, data.highest, ack, seg, true);
        data.highest = ack;
    }

    match data.acked {
        None => {
            data.acked = Some(ack);
            data.last_ack_advance = Some(seg.ts);
            // The first ACK seen may already end a timeout recovery (a
            // SYN-ACK sent again, then ACKed): later resends start afresh.
            end_recoveries(data, ack, seg.frame);
        }
        Some(prev) if ack > prev => {
            rtt_sample(data, prev, ack, seg);
            data.acked = Some(ack);
            // Transmissions the ACK covers matter only to name the copy a
            // spurious resend repeats: the last few are enough, so memory
            // follows the data in flight, not the connection's length.
            let covered = data.sent.partition_point(|x| x.end <= ack);
            data.sent.drain(..covered.saturating_sub(SENT_ACKED_KEPT));
            data.last_ack_advance = Some(seg.ts);
            data.dupacks = 0;
            data.fast_done_in_run = false;
            data.tlp_since_progress = false;
            data.scoreboard.remove_below(ack);
            if let Some(Some(i)) = acker.dup_run.take() {
                acker.report.events.duplicate_ack_runs[i].ended_frame = Some(seg.frame);
            }
            end_recoveries(data, ack, seg.frame);
        }
        Some(prev)
            if ack == prev
                && pure
                && data.highest > ack
                && window != 0
                && (data.window == Some(window) || !blocks.is_empty()) =>
        {
            // RFC 5681 §2 duplicate ACK (a changed window is allowed when
            // the ACK carries SACK news, as RFC 6675 counts those).
            acker.report.duplicate_acks += 1;
            data.dupacks = data.dupacks.saturating_add(1);
            let sack: Vec<(u32, u32)> = blocks.to_vec();
            match acker.dup_run {
                Some(Some(i)) => {
                    let run = &mut acker.report.events.duplicate_ack_runs[i];
                    run.count += 1;
                    if run.frames.len() < MAX_FRAMES_PER_RUN {
                        run.frames.push(seg.frame);
                    }
                    run.sack = sack;
                }
                Some(None) => {}
                None => {
                    let run = DuplicateAckRun {
                        ack: seg.ack,
                        original_frame: data.ack_frame,
                        count: 1,
                        frames: vec![seg.frame],
                        sack,
                        retransmission_frame: None,
                        ended_frame: None,
                    };
                    let i = push_bounded(
                        &mut acker.report.events.duplicate_ack_runs,
                        run,
                        &mut acker.report.records_dropped,
                    );
                    acker.dup_run = Some(i);
                }
            }
        }
        _ => {}
    }
    if data.acked.is_some_and(|a| ack >= a) {
        data.ack_frame = if data.acked == Some(ack) && data.dupacks > 0 {
            data.ack_frame
        } else {
            Some(seg.frame)
        };
    }
    data.last_ack = Some(seg.ts);
    data.window = Some(window);
    data.window_field = Some(seg.window);

    // Zero window (RFC 9293 §3.8.6.1), counted on the side advertising it.
    if seg.window == 0 && !syn {
        acker.report.zero_window_segments += 1;
        match &mut acker.zero_window {
            Some((Some(i), _)) => acker.report.events.zero_windows[*i].segments += 1,
            Some((None, _)) => {}
            None => {
                acker.report.zero_windows += 1;
                let z = ZeroWindow {
                    frame: seg.frame,
                    segments: 1,
                    probes: 0,
                    probe_frames: Vec::new(),
                    reopened_frame: None,
                    duration_s: 0.0,
                };
                let i = push_bounded(
                    &mut acker.report.events.zero_windows,
                    z,
                    &mut acker.report.records_dropped,
                );
                acker.zero_window = Some((i, seg.ts));
            }
        }
    } else if let Some((i, since)) = acker.zero_window.take() {
        if let Some(z) = i.and_then(|i| acker.report.events.zero_windows.get_mut(i)) {
            z.reopened_frame = Some(seg.frame);
            z.duration_s = secs(seg.ts, since);
        }
    }
}

/// A D-SACK reported `[start, end)` received twice: the latest
/// retransmission of it was not needed. Returns whether one matched.
fn dsack_match(data: &mut Direction, start: i64, end: i64, frame: u64) -> bool {
    let Some(r) = data
        .recent
        .iter_mut()
        .rev()
        .find(|r| r.start < end && start < r.end && r.kind != RetransmissionKind::Spurious)
    else {
        return false;
    };
    let before = r.kind;
    r.kind = RetransmissionKind::Spurious;
    data.report
        .retransmissions
        .reclassify(before, RetransmissionKind::Spurious);
    if let Some(rec) = r
        .record
        .and_then(|i| data.report.events.retransmissions.get_mut(i))
    {
        rec.kind = RetransmissionKind::Spurious;
        rec.classified_before = Some(before);
        rec.dsack_frame = Some(frame);
    }
    true
}

/// An RTT sample for the ACK moving `data`'s cumulative ACK from `prev` to
/// `ack`: by timestamps when the ACK echoes a TSval this side sent
/// (RFC 7323 §4), else from the newest segment it covers, unless any
/// segment it covers was retransmitted (Karn, RFC 6298 §3).
fn rtt_sample(data: &mut Direction, prev: i64, ack: i64, seg: &Segment<'_>) {
    if let Some((_, tsecr)) = seg.options.timestamps {
        if let Some(i) = data.tsvals.iter().position(|&(v, _)| v == tsecr) {
            let sent = data.tsvals[i].1;
            data.tsvals.drain(..=i);
            data.rtt.add(secs(seg.ts, sent) * 1e3);
            return;
        }
        if tsecr != 0 && !data.tsvals.is_empty() {
            return;
        }
    }
    let covered = data
        .sent
        .iter()
        .rev()
        .skip_while(|s| s.end > ack)
        .take_while(|s| s.end > prev);
    let mut newest = None;
    for s in covered {
        if s.retransmitted {
            return;
        }
        newest.get_or_insert(s.ts);
    }
    if let Some(sent) = newest {
        data.rtt.add(secs(seg.ts, sent) * 1e3);
    }
}

fn open_hole(data: &mut Direction, start: i64, end: i64, seg: &Segment<'_>, acked_unseen: bool) {
    data.report.lost_segments += 1;
    data.report.lost_bytes += (end - start) as u64;
    let rec = LostSegment {
        frame: seg.frame,
        previous_frame: data.last_frame,
        seq: data.seq(start),
        len: (end - start) as u64,
        acked_unseen,
        filled_by: None,
        filled_frame: None,
    };
    let record = push_bounded(
        &mut data.report.events.lost_segments,
        rec,
        &mut data.report.records_dropped,
    );
    data.holes.insert(
        start,
        end,
        Hole {
            opened: seg.ts,
            opened_frame: seg.frame,
            record,
        },
    );
}

/// The sequence-space part of `seg`, sent by `me`.
fn on_data(me: &mut Direction, peer: &mut Direction, seg: &Segment<'_>, ctx: &Context) {
    let syn = seg.flags.contains(TcpFlags::SYN);
    let fin = seg.flags.contains(TcpFlags::FIN);
    if me.base.is_none() {
        me.base = Some(seg.seq);
    }
    let s = me.offset(seg.seq);
    let len = seg.seq_len();
    let e = s.saturating_add(i64::from(len));

    // Keep-alive and window probe (RFC 9293 §3.8.4, §3.8.6.1): one byte
    // below the next, or nothing; the peer's window says which it is.
    if me.sent_anything && s == me.highest - 1 && seg.payload_len <= 1 && !syn && !fin {
        if me.window_zero() {
            zero_window_probe(me, peer, seg);
        } else {
            me.report.keep_alives += 1;
            push_bounded(
                &mut me.report.events.keep_alives,
                seg.frame,
                &mut me.report.records_dropped,
            );
        }
        return;
    }
    if len == 0 {
        return;
    }
    me.report.data_segments += 1;
    if s == me.highest && seg.payload_len == 1 && me.window_zero() {
        zero_window_probe(me, peer, seg);
    }
    if !me.sent_anything {
        me.sent_anything = true;
        me.highest = s;
    }

    // Below the highest: bytes seen before, or holes never seen.
    let below_end = e.min(me.highest);
    let (mut repeated, mut filled) = (0i64, 0i64);
    let mut hole_age: Option<(f64, u64)> = None;
    if s < below_end {
        filled = me.holes.overlap(s, below_end);
        repeated = (below_end - s) - filled;
        if let Some(h) = me.holes.containing(s).or_else(|| {
            me.holes
                .spans()
                .iter()
                .find(|h| h.start < below_end && s < h.end)
        }) {
            hole_age = Some((secs(seg.ts, h.meta.opened), h.meta.opened_frame));
        }
    }
    let new_above = (e - me.highest.max(s)).max(0);

    let mut retransmitted = false;
    if repeated > 0 || (filled > 0 && hole_age.is_some_and(|(age, _)| age > ctx.reorder_s(me))) {
        retransmitted = true;
        retransmission(me, peer, seg, s, e, len, ctx);
    } else if filled > 0 {
        let (delay_s, after_frame) = hole_age.unwrap_or((0.0, seg.frame));
        me.report.out_of_order += 1;
        let rec = OutOfOrder {
            frame: seg.frame,
            seq: seg.seq,
            len,
            after_frame,
            delay_s,
        };
        push_bounded(
            &mut me.report.events.out_of_order,
            rec,
            &mut me.report.records_dropped,
        );
    }
    if filled > 0 {
        let how = if retransmitted {
            "retransmission"
        } else {
            "out_of_order"
        };
        let Direction { holes, report, .. } = me;
        holes.remove(s, below_end, |h, _, gone| {
            if gone {
                report.holes_filled += 1;
                if let Some(r) = h
                    .meta
                    .record
                    .and_then(|i| report.events.lost_segments.get_mut(i))
                {
                    r.filled_by = Some(how);
                    r.filled_frame = Some(seg.frame);
                }
            }
        });
    }
    if retransmitted || filled > 0 {
        record_sent(me, s, below_end, seg, retransmitted);
    }

    // Above the highest: new data, after a jump if the capture missed some.
    if s > me.highest {
        let from = me.highest;
        open_hole(me, from, s, seg, false);
    }
    if new_above > 0 {
        let from = me.highest.max(s);
        record_sent(me, from, e, seg, false);
        me.highest = e;
    }
    let flags_new = i64::from(syn && s >= 0 && new_above > 0 && s >= e - new_above)
        + i64::from(fin && new_above > 0);
    me.report.bytes += (new_above + filled - flags_new).max(0) as u64;

    // Window full: this segment ends exactly where the peer's window does.
    if seg.payload_len > 0 && (ctx.scale || me.window.is_some_and(|w| w < 65535)) {
        if let (Some(a), Some(w)) = (me.acked, me.window) {
            if w > 0 && e == a.saturating_add(w as i64) {
                me.report.window_full += 1;
                push_bounded(
                    &mut me.report.events.window_full,
                    seg.frame,
                    &mut me.report.records_dropped,
                );
            }
        }
    }
    me.last_tx = Some(seg.ts);
}

/// Remembers a transmission of `[start, end)` (sorted by start; marks
/// what it overlaps as retransmitted, for Karn's rule).
fn record_sent(me: &mut Direction, start: i64, end: i64, seg: &Segment<'_>, retransmitted: bool) {
    if start >= end {
        return;
    }
    // In-order data, the common case, goes at the back without a search.
    let at = if me.sent.back().is_none_or(|x| x.start < start) {
        me.sent.len()
    } else {
        me.sent.partition_point(|x| x.start < start)
    };
    me.sent.insert(
        at,
        Sent {
            start,
            end,
            frame: seg.frame,
            ts: seg.ts,
            retransmitted,
        },
    );
    if me.sent.len() > SENT_KEPT {
        me.sent.pop_front();
    }
}

/// `seg` (`[s, e)` of `me`'s sequence space) repeats data already sent:
/// classify it and record it.
#[allow(clippy::too_many_arguments)]
fn retransmission(
    me: &mut Direction,
    peer: &mut Direction,
    seg: &Segment<'_>,
    s: i64,
    e: i64,
    len: u32,
    ctx: &Context,
) {
    let quiet_since = match (me.last_tx, me.last_ack_advance) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let quiet_s = quiet_since.map_or(0.0, |t| secs(seg.ts, t));
    let since_ack = me.last_ack.map(|t| secs(seg.ts, t));
    let acked = me.acked;
    let mut episode_attempt: Option<f64> = None;
    let mut new_episode = false;

    let kind = if acked.is_some_and(|a| e <= a)
        || me.scoreboard.covers(s.max(acked.unwrap_or(s)), e)
    {
        RetransmissionKind::Spurious
    } else if let Recovery::Rto(_) = me.recovery {
        match me.episode {
            Some(ep) if s <= ep.offset && ep.offset < e => {
                episode_attempt = Some(secs(seg.ts, ep.last_attempt));
            }
            None if acked.is_some_and(|a| s <= a && a < e) && quiet_s > ctx.react_s(me) => {
                new_episode = true;
            }
            _ => {}
        }
        RetransmissionKind::Rto
    } else if since_ack.is_some_and(|t| t <= ctx.react_s(me))
        && (me.dupacks > 0 || !me.scoreboard.is_empty() || matches!(me.recovery, Recovery::Ack(_)))
    {
        let at_hole = acked.is_some_and(|a| s <= a && a < e);
        let kind = if at_hole && me.dupacks > 0 && !me.fast_done_in_run {
            me.fast_done_in_run = true;
            RetransmissionKind::Fast
        } else if !me.scoreboard.is_empty() {
            RetransmissionKind::Sack
        } else {
            RetransmissionKind::Fast
        };
        if me.recovery == Recovery::None {
            me.recovery = Recovery::Ack(me.highest);
        }
        kind
    } else if me.recovery == Recovery::None
        && me.dupacks == 0
        && me.scoreboard.is_empty()
        && e == me.highest
        && !me.tlp_since_progress
        && acked.is_some_and(|a| s > a || quiet_s < RTO_MIN_S)
    {
        me.tlp_since_progress = true;
        RetransmissionKind::Tlp
    } else {
        new_episode = true;
        me.recovery = Recovery::Rto(me.highest);
        RetransmissionKind::Rto
    };

    let repeats_frame = me
        .sent
        .iter()
        .filter(|x| x.start < e && s < x.end)
        .max_by_key(|x| (x.ts, x.frame))
        .map(|x| x.frame);
    for x in me.sent.iter_mut().filter(|x| x.start < e && s < x.end) {
        x.retransmitted = true;
    }
    me.report.retransmissions.add(kind);
    let rec = Retransmission {
        frame: seg.frame,
        ts_s: seg.ts.as_secs_f64(),
        seq: seg.seq,
        offset: s,
        len,
        kind,
        repeats_frame,
        duplicate_acks: me.dupacks,
        quiet_s,
        classified_before: None,
        dsack_frame: None,
    };
    let record = push_bounded(
        &mut me.report.events.retransmissions,
        rec,
        &mut me.report.records_dropped,
    );
    me.recent.push_back(RecentRetx {
        start: s,
        end: e,
        kind,
        record,
    });
    if me.recent.len() > RECENT_RETRANSMISSIONS {
        me.recent.pop_front();
    }

    if new_episode {
        // An episode is one sequence number timed out again and again;
        // each is kept whole (only its frame list is capped).
        let offset = acked.filter(|&a| s <= a && a < e).unwrap_or(s);
        if me.report.rto_episodes.len() < MAX_RECORDS {
            me.report.rto_episodes.push(RtoEpisode {
                seq: me.seq(offset),
                offset,
                attempts: 1,
                intervals_s: vec![quiet_s],
                ratios: Vec::new(),
                frames: vec![seg.frame],
                recovered_frame: None,
            });
            me.episode = Some(Episode {
                offset,
                last_attempt: seg.ts,
                record: me.report.rto_episodes.len() - 1,
            });
        } else {
            me.report.records_dropped += 1;
        }
    } else if let (Some(interval), Some(ep)) = (episode_attempt, me.episode.as_mut()) {
        ep.last_attempt = seg.ts;
        let r = &mut me.report.rto_episodes[ep.record];
        r.attempts += 1;
        if r.intervals_s.len() < MAX_FRAMES_PER_RUN {
            if let Some(&before) = r.intervals_s.last() {
                r.ratios
                    .push(if before > 0.0 { interval / before } else { 0.0 });
            }
            r.intervals_s.push(interval);
            r.frames.push(seg.frame);
        }
    }

    // Tie the retransmission to the duplicate-ACK run that caused it.
    if matches!(kind, RetransmissionKind::Fast | RetransmissionKind::Sack) {
        if let Some(Some(i)) = peer.dup_run {
            let run = &mut peer.report.events.duplicate_ack_runs[i];
            run.retransmission_frame.get_or_insert(seg.frame);
        }
    }
}

/// `me` probes the zero window `peer` advertises.
fn zero_window_probe(me: &mut Direction, peer: &mut Direction, seg: &Segment<'_>) {
    me.report.zero_window_probes += 1;
    if let Some((Some(i), _)) = peer.zero_window {
        if let Some(z) = peer.report.events.zero_windows.get_mut(i) {
            z.probes += 1;
            if z.probe_frames.len() < MAX_FRAMES_PER_RUN {
                z.probe_frames.push(seg.frame);
            }
        }
    }
}
