//! Flows and stream reassembly, sans-IO: [`Segment`]s in (with their
//! capture timestamps), stream events out through a [`StreamSink`].
//!
//! What it owns:
//! - the flow table: both directions of one connection in one stream keyed
//!   by the 4-tuple, the client being the side that sent the first SYN (or,
//!   with no SYN captured, the first side seen); a port pair reused with a
//!   new SYN of another ISN starts a new stream. Stream ids count from 0 in
//!   order of first appearance;
//! - per direction, sequence numbers unwrapped into 64-bit offsets (Zeek's
//!   relative sequence space: offset 0 is ISN + 1, RFC 9293 §3.4; with no
//!   SYN, the first captured byte, and the stream says its start is
//!   unknown), so streams past 4 GiB and across the 2^32 wrap reassemble
//!   exactly;
//! - out-of-order data held and delivered in order, once; overlaps with
//!   different bytes resolved by an [`OverlapPolicy`] and every one
//!   reported ([`Conflict`]);
//! - holes, never zero-filled: the data after a hole continues at its own
//!   offset and a [`Gap`] says where the hole is and why ([`GapCause`]);
//! - bounded memory ([`Config`]): a per-direction and a global cap on held
//!   bytes, an idle timeout by capture time.
//!
//! # When a hole becomes a gap
//! - As soon as the peer acknowledges past it while data waits after it
//!   ([`GapCause::NotCapturedButAcked`]: the receiver had the bytes, the
//!   capture did not; Zeek's "content gap" rule).
//! - When a cap forces held data out ([`GapCause::MemoryCap`]).
//! - When the part of a frame cut by the snap length comes up for delivery
//!   ([`GapCause::SnapLength`]); a later full copy of those bytes, held
//!   before then, replaces the placeholder.
//! - When the stream ends (both FINs delivered, RST, idle timeout, port
//!   reuse, end of capture): what was acknowledged is capture loss, the rest
//!   [`GapCause::NeverSentOrAcked`].
//!
//! # Overlaps
//! The policy applies to bytes still held out of order. Bytes already
//! delivered are not held (memory grows only with out-of-order data), so a
//! later copy of them is dropped and counted in [`Stats::old_bytes`], not
//! compared.

mod direction;

use std::net::SocketAddr;

use crate::segment::{FastMap, FlowKey, Segment, TcpFlags, Timestamp};
use direction::{Arrival, Direction, unwrap};

/// Direction of a segment within its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dir {
    /// From the side that opened the connection.
    ClientToServer,
    /// From the side that accepted it.
    ServerToClient,
}

impl Dir {
    /// 0 for client to server, 1 for server to client.
    pub fn index(self) -> usize {
        match self {
            Dir::ClientToServer => 0,
            Dir::ServerToClient => 1,
        }
    }

    fn other(self) -> Dir {
        match self {
            Dir::ClientToServer => Dir::ServerToClient,
            Dir::ServerToClient => Dir::ClientToServer,
        }
    }
}

/// Which copy wins when two segments carry different bytes for the same
/// offsets while both are held. The OS-style policies follow Suricata's
/// `stream.reassembly` `host-os-policy` (after Novak and Sturges,
/// "Target-Based TCP Stream Reassembly", 2007): they reproduce what that
/// receiver's stack would have kept, so the extracted bytes are what its
/// application read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverlapPolicy {
    /// The copy held first stays (Suricata `first`, Windows-like).
    #[default]
    First,
    /// The later copy replaces it (Suricata `last`; what tcpflow does).
    Last,
    /// BSD: the held copy stays unless the arriving segment starts before
    /// it (Suricata `bsd`).
    Bsd,
    /// Linux: the arriving segment wins when it starts before the held one,
    /// or starts at the same offset and ends after it (Suricata `linux`).
    Linux,
}

impl OverlapPolicy {
    /// Whether the arriving segment's bytes replace the held ones, given
    /// both segments' `(start, end)` offsets.
    fn arriving_wins(self, held: (u64, u64), arriving: (u64, u64)) -> bool {
        match self {
            OverlapPolicy::First => false,
            OverlapPolicy::Last => true,
            OverlapPolicy::Bsd => arriving.0 < held.0,
            OverlapPolicy::Linux => {
                arriving.0 < held.0 || (arriving.0 == held.0 && arriving.1 > held.1)
            }
        }
    }
}

/// Limits and policies of a [`Reassembler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Overlap resolution.
    pub policy: OverlapPolicy,
    /// Most bytes one direction holds out of order (plus 64 bytes per held
    /// piece); past it the lowest hole is declared a [`GapCause::MemoryCap`]
    /// gap and what follows it is delivered.
    pub direction_cap: usize,
    /// Most bytes all streams hold together; past it the direction holding
    /// the most is flushed the same way, until under the cap.
    pub global_cap: usize,
    /// A stream with no segment for this long (capture time, nanoseconds)
    /// is closed ([`CloseReason::IdleTimeout`]).
    pub idle_timeout_ns: u64,
    /// Data or ACKs further than this from the next expected offset are
    /// ignored and counted ([`Stats::out_of_window`]): TCP's window is at
    /// most 2^30 bytes (RFC 7323 §2.3), so anything further is another
    /// connection or garbage, such as a sequence number jump of 2^31.
    pub window_limit: u64,
    /// Most streams in the table (ended ones kept to recognise their late
    /// segments included). A new stream that finds it full first forgets
    /// the ended ones, then closes the least recently active eighth
    /// ([`CloseReason::Evicted`]): the table's memory is bounded whatever
    /// the capture, and the cost of making room is spread over many new
    /// streams.
    pub max_streams: usize,
    /// Most streams ended by FIN or RST kept in the table to recognise
    /// their late segments (a last ACK, a FIN sent again); past it the one
    /// that ended longest ago is forgotten. Bounds the table by what is
    /// open, not by how many streams the capture held.
    pub max_closed: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            policy: OverlapPolicy::First,
            direction_cap: 8 << 20,
            global_cap: 32 << 20,
            idle_timeout_ns: 300_000_000_000,
            window_limit: 1 << 30,
            max_streams: 1 << 16,
            max_closed: 256,
        }
    }
}

/// Why a hole was declared a gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GapCause {
    /// The peer acknowledged these bytes, so they were sent and received:
    /// the capture lost them.
    NotCapturedButAcked = 0,
    /// Never seen, never acknowledged: not sent, or the capture or the flow
    /// ended first.
    NeverSentOrAcked = 1,
    /// Sent (the IP length says so) but cut from the frame by the snap
    /// length.
    SnapLength = 2,
    /// Out-of-order data was flushed past this hole by a memory cap.
    MemoryCap = 3,
}

impl GapCause {
    /// Every cause, in the order of [`Stats::gaps`].
    pub const ALL: [GapCause; 4] = [
        GapCause::NotCapturedButAcked,
        GapCause::NeverSentOrAcked,
        GapCause::SnapLength,
        GapCause::MemoryCap,
    ];
}

/// A hole in one direction's bytes: the data after it continues at
/// `offset + len`, nothing is filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// Stream id.
    pub stream: u64,
    /// Direction.
    pub dir: Dir,
    /// Stream offset of the first missing byte.
    pub offset: u64,
    /// Missing bytes.
    pub len: u64,
    /// Sequence number of the first missing byte.
    pub seq: u32,
    /// Sequence number after the last missing byte.
    pub seq_end: u32,
    /// Frame of the last data delivered before the hole.
    pub frame_before: Option<u64>,
    /// Frame of the data right after the hole, when held.
    pub frame_after: Option<u64>,
    /// For [`GapCause::NotCapturedButAcked`]: the peer's frame whose ACK
    /// went furthest.
    pub acked_by_frame: Option<u64>,
    /// Why.
    pub cause: GapCause,
}

/// One copy in a [`Conflict`]: the segment that carried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    /// Stream offset of the segment's first byte.
    pub offset: u64,
    /// The segment's length.
    pub len: u64,
    /// Its frame.
    pub frame: u64,
}

/// Which copy a conflict kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// The copy held first.
    Held,
    /// The copy that arrived later.
    Arriving,
}

/// Two segments carried different bytes for the same offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conflict {
    /// Stream id.
    pub stream: u64,
    /// Direction.
    pub dir: Dir,
    /// First offset both copies cover.
    pub offset: u64,
    /// Bytes both cover.
    pub len: u64,
    /// The segment held first.
    pub held: Version,
    /// The segment that arrived with other bytes.
    pub arriving: Version,
    /// Which copy the policy kept.
    pub kept: Kept,
}

/// A new stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamInfo {
    /// Stream id, from 0 in order of first appearance.
    pub id: u64,
    /// The side that opened the connection (first SYN), or the first side
    /// seen when no SYN was captured.
    pub client: SocketAddr,
    /// The other side.
    pub server: SocketAddr,
    /// Its first frame.
    pub frame: u64,
    /// Its first frame's capture time.
    pub ts: Timestamp,
}

/// Why a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Both directions' data up to their FINs delivered.
    Fin,
    /// A reset.
    Rst,
    /// No segment for [`Config::idle_timeout_ns`].
    IdleTimeout,
    /// A new SYN with another ISN on the same port pair.
    PortReuse,
    /// [`Reassembler::finish`].
    EndOfCapture,
    /// The table was full ([`Config::max_streams`]) and this stream was
    /// among the least recently active.
    Evicted,
}

/// One direction of an ended stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DirSummary {
    /// Whether the SYN was captured: offset 0 is then ISN + 1; otherwise
    /// it is the first captured byte and the true start is unknown.
    pub start_known: bool,
    /// The ISN, when the SYN was captured.
    pub isn: Option<u32>,
    /// Sequence number of offset 0.
    pub base_seq: Option<u32>,
    /// Bytes delivered.
    pub bytes: u64,
    /// Gaps declared.
    pub gaps: u64,
    /// Bytes in them.
    pub gap_bytes: u64,
    /// Offset after the last byte delivered or gapped.
    pub end: u64,
    /// Whether a FIN was seen.
    pub fin: bool,
}

/// An ended stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamEnd {
    /// Stream id.
    pub id: u64,
    /// Why it ended.
    pub reason: CloseReason,
    /// Client to server, server to client.
    pub dirs: [DirSummary; 2],
}

/// What the reassembler tells its caller, in stream order per direction.
/// Offsets are per direction; all of a direction's data and gap events
/// together tile `[0, end)` exactly, in order.
pub trait StreamSink {
    /// A stream appeared.
    fn opened(&mut self, _stream: &StreamInfo) {}
    /// In-order bytes at `offset`.
    fn data(&mut self, stream: u64, dir: Dir, offset: u64, bytes: &[u8]);
    /// A hole declared.
    fn gap(&mut self, gap: &Gap);
    /// An overlap with different bytes.
    fn conflict(&mut self, _conflict: &Conflict) {}
    /// A stream ended: no more events for it.
    fn closed(&mut self, _end: &StreamEnd) {}
}

/// One event, as [`Vec<Event>`] records them (tests, small tools).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// [`StreamSink::opened`].
    Opened(StreamInfo),
    /// [`StreamSink::data`].
    Data {
        /// Stream id.
        stream: u64,
        /// Direction.
        dir: Dir,
        /// Offset of the first byte.
        offset: u64,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// [`StreamSink::gap`].
    Gap(Gap),
    /// [`StreamSink::conflict`].
    Conflict(Conflict),
    /// [`StreamSink::closed`].
    Closed(StreamEnd),
}

impl StreamSink for Vec<Event> {
    fn opened(&mut self, stream: &StreamInfo) {
        self.push(Event::Opened(*stream));
    }
    fn data(&mut self, stream: u64, dir: Dir, offset: u64, bytes: &[u8]) {
        self.push(Event::Data {
            stream,
            dir,
            offset,
            bytes: bytes.to_vec(),
        });
    }
    fn gap(&mut self, gap: &Gap) {
        self.push(Event::Gap(*gap));
    }
    fn conflict(&mut self, conflict: &Conflict) {
        self.push(Event::Conflict(*conflict));
    }
    fn closed(&mut self, end: &StreamEnd) {
        self.push(Event::Closed(*end));
    }
}

/// Counts over the whole run. Per-packet oddities are counted here, never
/// errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Segments taken.
    pub segments: u64,
    /// Streams opened.
    pub streams: u64,
    /// Bytes delivered.
    pub delivered_bytes: u64,
    /// Gaps declared, by [`GapCause`] (index: the cause's value).
    pub gaps: [u64; 4],
    /// Bytes in them, by cause.
    pub gap_bytes: [u64; 4],
    /// Overlaps with different bytes.
    pub conflicts: u64,
    /// Bytes that arrived for offsets already delivered, gapped or held
    /// with the same content (retransmissions, duplicates).
    pub old_bytes: u64,
    /// Bytes before offset 0 of a mid-stream pickup (dropped).
    pub before_start_bytes: u64,
    /// Segments whose data or ACK lay beyond [`Config::window_limit`].
    pub out_of_window: u64,
    /// Segments with data after their stream closed.
    pub after_close: u64,
    /// Times a cap flushed held data past a hole.
    pub cap_flushes: u64,
    /// Streams closed by the idle timeout.
    pub idle_closed: u64,
    /// Streams closed to make room in a full table.
    pub evicted: u64,
    /// Bytes held out of order now (plus per-piece overhead).
    pub held_bytes: usize,
    /// The most held after any segment, caps applied: at most
    /// [`Config::global_cap`]. (While one segment is inserted, the held
    /// total may pass the cap by that segment's bytes and pieces.)
    pub peak_held_bytes: usize,
}

/// What a direction's methods need from the reassembler.
struct Ctx<'a> {
    stream: u64,
    dir: Dir,
    cfg: &'a Config,
    stats: &'a mut Stats,
    sink: &'a mut dyn StreamSink,
}

/// One connection, both directions.
#[derive(Debug)]
struct Flow {
    id: u64,
    /// Client as source.
    client: FlowKey,
    dirs: [Direction; 2],
    last_ts: Timestamp,
    /// Ended: buffers released, kept so that late segments are counted
    /// rather than opening a mid-stream stream.
    closed: bool,
}

impl Flow {
    fn dir_of(&self, key: FlowKey) -> Dir {
        if key == self.client {
            Dir::ClientToServer
        } else {
            Dir::ServerToClient
        }
    }

    fn held(&self) -> usize {
        self.dirs[0].held + self.dirs[1].held
    }

    /// Flushes every hole, emits the summary, releases the buffers.
    fn close(
        &mut self,
        reason: CloseReason,
        cfg: &Config,
        stats: &mut Stats,
        sink: &mut dyn StreamSink,
    ) {
        if self.closed {
            return;
        }
        for dir in [Dir::ClientToServer, Dir::ServerToClient] {
            let mut ctx = Ctx {
                stream: self.id,
                dir,
                cfg,
                stats,
                sink,
            };
            self.dirs[dir.index()].close(&mut ctx);
        }
        let summary = |d: &Direction| DirSummary {
            start_known: d.isn.is_some(),
            isn: d.isn,
            base_seq: d.base,
            bytes: d.delivered,
            gaps: d.gaps,
            gap_bytes: d.gap_bytes,
            end: d.next,
            fin: d.fin.is_some(),
        };
        sink.closed(&StreamEnd {
            id: self.id,
            reason,
            dirs: [summary(&self.dirs[0]), summary(&self.dirs[1])],
        });
        if reason == CloseReason::IdleTimeout {
            stats.idle_closed += 1;
        }
        self.closed = true;
    }
}

/// Both endpoints in a fixed order: one key for both directions.
type CanonKey = (SocketAddr, SocketAddr);

fn canon(key: FlowKey) -> CanonKey {
    if key.src <= key.dst {
        (key.src, key.dst)
    } else {
        (key.dst, key.src)
    }
}

/// The flow table and every stream's reassembly.
///
/// Call [`segment`](Self::segment) for each segment in capture order,
/// [`finish`](Self::finish) at the end of the capture. Idle streams are
/// closed as capture time passes; [`advance`](Self::advance) does it
/// without a segment (a live capture's quiet second).
#[derive(Debug)]
pub struct Reassembler {
    cfg: Config,
    flows: FastMap<CanonKey, Flow>,
    next_id: u64,
    stats: Stats,
    next_sweep: u64,
    /// Streams ended by FIN or RST, oldest first (some may be gone).
    closed_order: std::collections::VecDeque<(CanonKey, u64)>,
}

impl Reassembler {
    /// An empty table.
    pub fn new(cfg: Config) -> Reassembler {
        Reassembler {
            cfg,
            flows: FastMap::default(),
            next_id: 0,
            stats: Stats::default(),
            next_sweep: 0,
            closed_order: Default::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Streams in the table: the open ones and the ended ones kept to
    /// recognise their late segments (at most [`Config::max_closed`]).
    pub fn tracked_streams(&self) -> usize {
        self.flows.len()
    }

    /// Streams in the table not yet ended.
    pub fn open_streams(&self) -> usize {
        self.flows.values().filter(|f| !f.closed).count()
    }

    /// Takes one segment; emits what it makes deliverable. Returns the
    /// stream and direction the segment belongs to (also for segments that
    /// were only counted: late, out of window), so that callers number
    /// streams as the reassembler does.
    pub fn segment(&mut self, seg: &Segment<'_>, sink: &mut dyn StreamSink) -> Option<(u64, Dir)> {
        self.stats.segments += 1;
        if seg.ts.0 >= self.next_sweep {
            self.advance(seg.ts, sink);
        }
        let key = canon(seg.key);
        let opening = seg.flags.contains(TcpFlags::SYN) && !seg.flags.contains(TcpFlags::ACK);
        let reuse = match self.flows.get(&key) {
            None => true,
            Some(flow) => {
                let d = &flow.dirs[flow.dir_of(seg.key).index()];
                opening
                    && match d.isn {
                        Some(isn) => isn != seg.seq,
                        None => flow.closed || d.base.is_some(),
                    }
            }
        };
        if reuse {
            if let Some(mut old) = self.flows.remove(&key) {
                old.close(CloseReason::PortReuse, &self.cfg, &mut self.stats, sink);
            }
            self.make_room(sink);
            let client = if seg.flags.contains(TcpFlags::SYN | TcpFlags::ACK) {
                seg.key.reversed()
            } else {
                seg.key
            };
            let flow = Flow {
                id: self.next_id,
                client,
                dirs: Default::default(),
                last_ts: seg.ts,
                closed: false,
            };
            self.next_id += 1;
            self.stats.streams += 1;
            sink.opened(&StreamInfo {
                id: flow.id,
                client: client.src,
                server: client.dst,
                frame: seg.frame,
                ts: seg.ts,
            });
            self.flows.insert(key, flow);
        }
        let flow = self.flows.get_mut(&key)?;
        flow.last_ts = seg.ts;
        let dir = flow.dir_of(seg.key);
        let place = Some((flow.id, dir));
        if flow.closed {
            if seg.payload_len > 0 {
                self.stats.after_close += 1;
            }
            return place;
        }
        let cfg = &self.cfg;
        let stats = &mut self.stats;
        let syn = seg.flags.contains(TcpFlags::SYN);
        let fin = seg.flags.contains(TcpFlags::FIN);
        {
            let d = &mut flow.dirs[dir.index()];
            if syn && d.base.is_none() {
                d.isn = Some(seg.seq);
                d.base = Some(seg.seq.wrapping_add(1));
            }
        }
        let data_seq = seg.seq.wrapping_add(u32::from(syn));
        if seg.payload_len > 0 || fin {
            let d = &mut flow.dirs[dir.index()];
            let base = *d.base.get_or_insert(data_seq);
            let next = d.reference() as i64;
            let offset = unwrap(base, d.reference(), data_seq);
            let end = offset + i64::from(seg.payload_len);
            if offset - next > cfg.window_limit as i64 || next - end > cfg.window_limit as i64 {
                stats.out_of_window += 1;
                return place;
            }
            let mut ctx = Ctx {
                stream: flow.id,
                dir,
                cfg,
                stats,
                sink,
            };
            if seg.payload_len > 0 {
                d.data(
                    &Arrival {
                        offset,
                        captured: seg.payload,
                        len: seg.payload_len,
                        frame: seg.frame,
                    },
                    &mut ctx,
                );
            }
            if fin && end >= 0 {
                d.set_fin(end as u64);
            }
        }
        if seg.flags.contains(TcpFlags::ACK) {
            let o = &mut flow.dirs[dir.other().index()];
            if let Some(base) = o.base {
                let off = unwrap(base, o.reference(), seg.ack);
                let next = o.reference() as i64;
                if (off - next).abs() > cfg.window_limit as i64 {
                    stats.out_of_window += 1;
                } else if off > 0 {
                    let mut ctx = Ctx {
                        stream: flow.id,
                        dir: dir.other(),
                        cfg,
                        stats,
                        sink,
                    };
                    o.ack(off as u64, seg.frame, &mut ctx);
                }
            }
        }
        let was_closed = flow.closed;
        if seg.flags.contains(TcpFlags::RST) {
            flow.close(CloseReason::Rst, cfg, stats, sink);
        } else if flow.dirs[0].finished() && flow.dirs[1].finished() {
            flow.close(CloseReason::Fin, cfg, stats, sink);
        }
        if flow.closed && !was_closed {
            let id = flow.id;
            self.forget_old_closed(key, id);
        }
        self.enforce_global_cap(sink);
        self.stats.peak_held_bytes = self.stats.peak_held_bytes.max(self.stats.held_bytes);
        place
    }

    /// Remembers that `key`'s stream `id` ended; past
    /// [`Config::max_closed`] ended streams, forgets the one that ended
    /// longest ago (its late segments then open a mid-stream pickup).
    fn forget_old_closed(&mut self, key: CanonKey, id: u64) {
        self.closed_order.push_back((key, id));
        while self.closed_order.len() > self.cfg.max_closed {
            let Some((k, old)) = self.closed_order.pop_front() else {
                break;
            };
            if self.flows.get(&k).is_some_and(|f| f.closed && f.id == old) {
                self.flows.remove(&k);
            }
        }
    }

    /// When the table is full: forgets ended streams, then closes the least
    /// recently active open ones until it is at most 7/8 full.
    fn make_room(&mut self, sink: &mut dyn StreamSink) {
        let max = self.cfg.max_streams.max(1);
        if self.flows.len() < max {
            return;
        }
        self.flows.retain(|_, f| !f.closed);
        let keep = max - max / 8 - 1;
        if self.flows.len() <= keep {
            return;
        }
        let mut by_age: Vec<(Timestamp, u64, CanonKey)> = self
            .flows
            .iter()
            .map(|(k, f)| (f.last_ts, f.id, *k))
            .collect();
        let evict = by_age.len() - keep;
        by_age.select_nth_unstable(evict - 1);
        let mut victims = by_age[..evict].to_vec();
        victims.sort_by_key(|v| v.1);
        for (_, _, key) in victims {
            if let Some(mut flow) = self.flows.remove(&key) {
                flow.close(CloseReason::Evicted, &self.cfg, &mut self.stats, sink);
                self.stats.evicted += 1;
            }
        }
    }

    /// Flushes the direction holding the most until all streams together
    /// hold at most [`Config::global_cap`].
    fn enforce_global_cap(&mut self, sink: &mut dyn StreamSink) {
        while self.stats.held_bytes > self.cfg.global_cap {
            let Some(flow) = self.flows.values_mut().max_by_key(|f| f.held()) else {
                return;
            };
            let dir = if flow.dirs[0].held >= flow.dirs[1].held {
                Dir::ClientToServer
            } else {
                Dir::ServerToClient
            };
            if flow.dirs[dir.index()].held == 0 {
                return;
            }
            self.stats.cap_flushes += 1;
            let mut ctx = Ctx {
                stream: flow.id,
                dir,
                cfg: &self.cfg,
                stats: &mut self.stats,
                sink,
            };
            flow.dirs[dir.index()].skip_hole(GapCause::MemoryCap, &mut ctx);
        }
    }

    /// Closes the streams idle for [`Config::idle_timeout_ns`] at capture
    /// time `now`, and forgets ended ones as old.
    pub fn advance(&mut self, now: Timestamp, sink: &mut dyn StreamSink) {
        let timeout = self.cfg.idle_timeout_ns;
        // A sweep costs one pass over the table: do it a few times per
        // timeout, not per segment.
        self.next_sweep = now.0.saturating_add((timeout / 8).max(1));
        let cfg = &self.cfg;
        let stats = &mut self.stats;
        self.flows.retain(|_, flow| {
            if now.0.saturating_sub(flow.last_ts.0) < timeout {
                return true;
            }
            flow.close(CloseReason::IdleTimeout, cfg, stats, sink);
            false
        });
    }

    /// End of capture: closes every stream still open, in id order.
    pub fn finish(&mut self, sink: &mut dyn StreamSink) {
        let mut flows: Vec<Flow> = self.flows.drain().map(|(_, f)| f).collect();
        flows.sort_by_key(|f| f.id);
        for mut flow in flows {
            flow.close(CloseReason::EndOfCapture, &self.cfg, &mut self.stats, sink);
        }
    }
}
