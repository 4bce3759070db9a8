//! What the analysis reports, per connection and direction: the counts the
//! `--json` schema of issue 10 requires (`bytes`, `segments`,
//! `retransmissions {total, rto, fast, sack, tlp, spurious}`,
//! `rto_episodes[] {seq, attempts, intervals_s[]}`, `duplicate_acks`,
//! `out_of_order`, `zero_windows`, `rtt_ms {min, median, p95}`) and the
//! per-event records that are their evidence, each with frame numbers.
//!
//! Sequence numbers in records are the absolute 32-bit numbers of the wire
//! (`seq`), with the 64-bit offset from the direction's first sequence
//! number beside them (`offset`; 0 is the SYN, or the first byte captured
//! when the SYN was not).
//!
//! Which direction an event belongs to: retransmissions, out-of-order data,
//! lost segments, RTO episodes, keep-alives, zero-window probes, window full
//! and RTT belong to the direction that *sent the data*; duplicate ACKs,
//! SACK blocks, D-SACKs, ACKed-unseen and zero-window episodes belong to the
//! direction that *sent the ACK or window* (as Wireshark flags the packet
//! that carries them), and name the frames of the other direction they
//! concern.

use serde::Serialize;
use std::net::SocketAddr;

/// Event records kept per list and direction; counts stay exact past it
/// ([`DirectionReport::records_dropped`] says how many were not kept).
pub const MAX_RECORDS: usize = 1024;

/// Frames kept per duplicate-ACK run and per RTO episode.
pub const MAX_FRAMES_PER_RUN: usize = 32;

/// Why a segment was sent again (or, for [`RetransmissionKind::Spurious`],
/// that it need not have been).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetransmissionKind {
    /// The retransmission timer fired (RFC 6298), or the sender is
    /// resending after it did (slow start from the timeout).
    Rto,
    /// Fast retransmit after duplicate ACKs (RFC 5681 §3.2), or a
    /// NewReno partial-ACK retransmission (RFC 6582) in that recovery.
    Fast,
    /// SACK-driven loss recovery (RFC 6675): a hole the receiver's SACK
    /// scoreboard shows while data above it is SACKed.
    Sack,
    /// Tail-loss probe (RFC 8985 §7): the last segment sent again after a
    /// quiet time with no duplicate ACK.
    Tlp,
    /// Every byte was already acknowledged (cumulatively or by SACK) when it
    /// was sent, or the receiver reported it as a duplicate by D-SACK
    /// (RFC 2883).
    Spurious,
}

/// Retransmitted segments by cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RetransmissionCounts {
    /// All retransmitted segments (the sum of the others).
    pub total: u64,
    /// [`RetransmissionKind::Rto`].
    pub rto: u64,
    /// [`RetransmissionKind::Fast`].
    pub fast: u64,
    /// [`RetransmissionKind::Sack`].
    pub sack: u64,
    /// [`RetransmissionKind::Tlp`].
    pub tlp: u64,
    /// [`RetransmissionKind::Spurious`].
    pub spurious: u64,
}

impl RetransmissionCounts {
    fn slot(&mut self, kind: RetransmissionKind) -> &mut u64 {
        match kind {
            RetransmissionKind::Rto => &mut self.rto,
            RetransmissionKind::Fast => &mut self.fast,
            RetransmissionKind::Sack => &mut self.sack,
            RetransmissionKind::Tlp => &mut self.tlp,
            RetransmissionKind::Spurious => &mut self.spurious,
        }
    }

    pub(crate) fn add(&mut self, kind: RetransmissionKind) {
        self.total += 1;
        *self.slot(kind) += 1;
    }

    /// Moves one segment from `from` to `to` (a D-SACK said it was spurious).
    pub(crate) fn reclassify(&mut self, from: RetransmissionKind, to: RetransmissionKind) {
        let f = self.slot(from);
        *f = f.saturating_sub(1);
        *self.slot(to) += 1;
    }

    /// The count for one kind.
    pub fn get(&self, kind: RetransmissionKind) -> u64 {
        let mut c = *self;
        *c.slot(kind)
    }
}

/// One retransmitted segment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Retransmission {
    /// The frame carrying it.
    pub frame: u64,
    /// Its capture time, seconds since the epoch.
    pub ts_s: f64,
    /// First sequence number.
    pub seq: u32,
    /// Offset of `seq` in the direction's stream.
    pub offset: i64,
    /// Sequence space it occupies (payload, plus SYN and FIN).
    pub len: u32,
    /// Its cause.
    pub kind: RetransmissionKind,
    /// The frame that carried these bytes before (the latest copy seen);
    /// `None` when the capture never saw the original (it was lost before
    /// the capture point).
    pub repeats_frame: Option<u64>,
    /// Duplicate ACKs received for the hole before it (for `fast`, the N of
    /// "after N duplicate ACKs").
    pub duplicate_acks: u32,
    /// Seconds since the sender last sent anything or had new data ACKed:
    /// the time a timer ran before it.
    pub quiet_s: f64,
    /// For a retransmission that a D-SACK made spurious: its kind before.
    pub classified_before: Option<RetransmissionKind>,
    /// The frame of the D-SACK that reported it a duplicate.
    pub dsack_frame: Option<u64>,
}

/// One retransmission-timeout episode: the same sequence number sent again
/// after each timeout until the receiver ACKs past it (RFC 6298 §5: the
/// timer doubles each time).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RtoEpisode {
    /// The sequence number retransmitted.
    pub seq: u32,
    /// Its offset in the stream.
    pub offset: i64,
    /// Timeouts (retransmissions of `seq`) in the episode.
    pub attempts: u32,
    /// The wait before each attempt, seconds: the first from the last
    /// transmission or new ACK before it, each next from the attempt before.
    pub intervals_s: Vec<f64>,
    /// Each interval divided by the one before (2.0 when the timer doubles).
    pub ratios: Vec<f64>,
    /// Frames of the attempts (the first [`MAX_FRAMES_PER_RUN`]).
    pub frames: Vec<u64>,
    /// The ACK that ended it, when one came.
    pub recovered_frame: Option<u64>,
}

/// A run of duplicate ACKs (RFC 5681 §2: no data, same ACK, same window,
/// data outstanding), sent by this direction about a hole in the other's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DuplicateAckRun {
    /// The ACK number repeated: the first byte of the hole.
    pub ack: u32,
    /// The ACK that first carried it (the one the duplicates repeat).
    pub original_frame: Option<u64>,
    /// Duplicates in the run.
    pub count: u32,
    /// Their frames (the first [`MAX_FRAMES_PER_RUN`]).
    pub frames: Vec<u64>,
    /// SACK blocks of the last duplicate: what the receiver held above the
    /// hole.
    pub sack: Vec<(u32, u32)>,
    /// The retransmission (other direction) the run triggered.
    pub retransmission_frame: Option<u64>,
    /// The ACK that moved past the hole.
    pub ended_frame: Option<u64>,
}

/// SACK blocks one segment carried (RFC 2018), with the cumulative ACK.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SackRecord {
    /// The frame.
    pub frame: u64,
    /// Its cumulative ACK.
    pub ack: u32,
    /// Its blocks `(left, right)`, right edge exclusive.
    pub blocks: Vec<(u32, u32)>,
    /// Whether the first block is a D-SACK (RFC 2883 §4: below the ACK, or
    /// inside the second block).
    pub dsack: bool,
}

/// Data that arrived after data with higher sequence numbers, never having
/// been seen before: reordering on the path before the capture point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutOfOrder {
    /// The frame.
    pub frame: u64,
    /// First sequence number.
    pub seq: u32,
    /// Length.
    pub len: u32,
    /// The frame that opened the hole it fills (the first one above it).
    pub after_frame: u64,
    /// Seconds between the two.
    pub delay_s: f64,
}

/// A jump forward in a direction's sequence numbers: the bytes between
/// were not seen at the capture point (Wireshark's "previous segment not
/// captured").
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LostSegment {
    /// The frame after the jump.
    pub frame: u64,
    /// The last frame before it in this direction.
    pub previous_frame: Option<u64>,
    /// First missing sequence number.
    pub seq: u32,
    /// Missing bytes.
    pub len: u64,
    /// Whether the hole was opened by the peer's ACK (data ACKed but never
    /// seen: capture loss) rather than by later data.
    pub acked_unseen: bool,
    /// How its last bytes arrived, when they did: `out_of_order` (late, not
    /// lost) or `retransmission`.
    pub filled_by: Option<&'static str>,
    /// The frame that completed it.
    pub filled_frame: Option<u64>,
}

/// An ACK for data the capture never showed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AckedUnseen {
    /// The ACK's frame.
    pub frame: u64,
    /// The ACK number.
    pub ack: u32,
    /// Bytes ACKed beyond the highest seen.
    pub unseen: u64,
}

/// A time this direction advertised a zero receive window (RFC 9293
/// §3.8.6.1), with the other side's probes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ZeroWindow {
    /// First zero-window frame.
    pub frame: u64,
    /// Zero-window segments in the episode.
    pub segments: u32,
    /// The other side's window probes.
    pub probes: u32,
    /// Their frames (the first [`MAX_FRAMES_PER_RUN`]).
    pub probe_frames: Vec<u64>,
    /// The frame that opened the window again.
    pub reopened_frame: Option<u64>,
    /// Seconds from the first zero window to the reopening (to the last
    /// segment seen when it never reopened).
    pub duration_s: f64,
}

/// RTT summary, milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct RttSummary {
    /// Samples taken.
    pub samples: u64,
    /// Smallest.
    pub min: Option<f64>,
    /// Median (nearest rank).
    pub median: Option<f64>,
    /// 95th percentile (nearest rank).
    pub p95: Option<f64>,
}

/// The records behind the counts, [`MAX_RECORDS`] of each at most.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Events {
    /// Retransmitted segments.
    pub retransmissions: Vec<Retransmission>,
    /// Out-of-order segments.
    pub out_of_order: Vec<OutOfOrder>,
    /// Holes in what the capture saw.
    pub lost_segments: Vec<LostSegment>,
    /// Duplicate-ACK runs this direction sent.
    pub duplicate_ack_runs: Vec<DuplicateAckRun>,
    /// SACK blocks this direction sent: the receiver's scoreboard over time.
    pub sack: Vec<SackRecord>,
    /// ACKs this direction sent for data never seen.
    pub acked_unseen: Vec<AckedUnseen>,
    /// Zero-window episodes this direction advertised.
    pub zero_windows: Vec<ZeroWindow>,
    /// Keep-alive frames (seq = next - 1, 0 or 1 byte, window open).
    pub keep_alives: Vec<u64>,
    /// Frames that filled the peer's receive window exactly.
    pub window_full: Vec<u64>,
}

/// One direction of a connection.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DirectionReport {
    /// Distinct payload bytes seen (retransmitted bytes once).
    pub bytes: u64,
    /// Segments sent in this direction, pure ACKs included.
    pub segments: u64,
    /// Segments that occupy sequence space (data, SYN, FIN).
    pub data_segments: u64,
    /// Retransmitted segments by cause.
    pub retransmissions: RetransmissionCounts,
    /// Retransmission-timeout episodes.
    pub rto_episodes: Vec<RtoEpisode>,
    /// Duplicate ACKs this direction sent.
    pub duplicate_acks: u64,
    /// Out-of-order segments (never retransmissions).
    pub out_of_order: u64,
    /// Holes in this direction's data at the capture point.
    pub lost_segments: u64,
    /// Bytes in those holes.
    pub lost_bytes: u64,
    /// Of those holes, the ones whose every byte later reached the capture
    /// (by a retransmission or out of order).
    pub holes_filled: u64,
    /// ACKs this direction sent for data the capture never showed.
    pub acked_unseen: u64,
    /// Zero-window episodes this direction advertised.
    pub zero_windows: u64,
    /// Segments advertising a zero window.
    pub zero_window_segments: u64,
    /// Window probes this direction sent into the peer's zero window.
    pub zero_window_probes: u64,
    /// Keep-alives.
    pub keep_alives: u64,
    /// Segments that filled the peer's advertised window.
    pub window_full: u64,
    /// SACK blocks this direction sent.
    pub sack_blocks: u64,
    /// D-SACK blocks this direction sent.
    pub dsack_blocks: u64,
    /// D-SACKs that matched no retransmission (duplication in the network).
    pub dsack_unmatched: u64,
    /// RST segments.
    pub resets: u64,
    /// Segments identical to the one before in this direction, at the same
    /// capture time: copies made by the capture (two taps, a mirror port),
    /// not sent twice. They are counted here and nowhere else.
    pub capture_duplicates: u64,
    /// Payload bytes the sender sent but the capture cut (snap length).
    pub not_captured_bytes: u64,
    /// RTT of this direction's data (to the ACK from the other side), ms.
    pub rtt_ms: RttSummary,
    /// Event records not kept because a list was full.
    pub records_dropped: u64,
    /// Holes or SACK ranges forgotten because their cap was reached.
    pub ranges_forgotten: u64,
    /// The records.
    pub events: Events,
}

/// Options of one side's SYN (RFC 9293 MSS, RFC 7323, RFC 2018).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SynOptions {
    /// The SYN's frame.
    pub frame: Option<u64>,
    /// Initial sequence number.
    pub isn: Option<u32>,
    /// Maximum segment size.
    pub mss: Option<u16>,
    /// Window scale shift.
    pub window_scale: Option<u8>,
    /// SACK permitted.
    pub sack_permitted: bool,
    /// Timestamps offered.
    pub timestamps: bool,
}

/// The three-way handshake as the capture saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Handshake {
    /// The client's SYN.
    pub client: SynOptions,
    /// The server's SYN-ACK.
    pub server: SynOptions,
    /// The client's ACK of the SYN-ACK.
    pub ack_frame: Option<u64>,
    /// SYN to the ACK of the SYN-ACK, ms: the full round trip through the
    /// capture point (Wireshark's `tcp.analysis.initial_rtt`).
    pub initial_rtt_ms: Option<f64>,
    /// SYN to SYN-ACK, ms (the server side of the capture point).
    pub syn_to_syn_ack_ms: Option<f64>,
    /// SYN-ACK to ACK, ms (the client side of the capture point).
    pub syn_ack_to_ack_ms: Option<f64>,
    /// Whether window scaling is in effect (both SYNs offered it).
    pub window_scaling: bool,
    /// Whether SACK is in effect (both SYNs permitted it).
    pub sack: bool,
}

/// One connection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectionReport {
    /// Order of first appearance, from 0.
    pub id: u64,
    /// The side that sent the first SYN (or, with no SYN captured, the
    /// sender of the first segment).
    pub client: SocketAddr,
    /// The other side.
    pub server: SocketAddr,
    /// Whether the capture holds the SYN (else offsets start at the first
    /// byte captured and the start of the stream is unknown).
    pub start_known: bool,
    /// First frame.
    pub first_frame: u64,
    /// Last frame.
    pub last_frame: u64,
    /// Seconds from the first to the last frame.
    pub duration_s: f64,
    /// The handshake.
    pub handshake: Handshake,
    /// Client to server.
    pub client_to_server: DirectionReport,
    /// Server to client.
    pub server_to_client: DirectionReport,
}
