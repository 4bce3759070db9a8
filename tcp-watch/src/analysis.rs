//! Passive TCP analysis (sans-IO): every segment of a connection, both
//! directions, in capture order, in; per direction, what was retransmitted
//! and why, what was reordered, lost before the capture point or ACKed
//! unseen, the duplicate-ACK runs and SACK blocks that drove recovery, zero
//! windows, keep-alives and RTT, out ([`ConnectionReport`]).
//!
//! It keeps its own minimal state per direction (highest sequence number
//! sent, the peer's cumulative ACK, its SACK scoreboard, the duplicate-ACK
//! count, the current timeout episode), in 64-bit offsets from the first
//! sequence number so that the 2^32 wrap is nothing special (RFC 9293 §3.4).
//! It does not reassemble bytes: [`crate::reassembly`] does.
//!
//! # Rules, and where they differ from Wireshark
//!
//! Wireshark 4.0 (`epan/dissectors/packet-tcp.c`, `tcp_analyze_sequence_number`)
//! looks at one segment against the highest seen, with fixed time limits.
//! Here both directions' ACKs and SACK blocks decide:
//!
//! * **Retransmission**: data that repeats bytes the capture already saw.
//!   Always a retransmission, never "out-of-order" (Wireshark calls a resend
//!   out-of-order when it comes within the initial RTT, 3 ms by default, of
//!   the highest segment: at a capture next to the sender that mislabels
//!   many real retransmissions). Its cause, in this order:
//!   - `spurious`: every byte already ACKed, cumulatively or by SACK, when
//!     sent (Wireshark: cumulatively only); or later reported by a D-SACK
//!     (RFC 2883), which reclassifies it (Wireshark ignores D-SACK).
//!   - `rto` while a timeout recovery is open (RFC 6298 §5; RFC 5681 §3.1:
//!     after a timeout the sender resends from the hole in slow start): the
//!     episode's sequence number sent again is one more attempt, with its
//!     wait and ratio to the wait before.
//!   - `fast`: the first resend of the hole the duplicate ACKs name, within
//!     the reaction time of the last ACK (20 ms, or 1.5 initial RTT when the
//!     capture is far from the sender: Wireshark uses 20 ms only), with N
//!     duplicate ACKs reported (Wireshark needs 2; RFC 5681 says 3, and
//!     Linux resends after fewer with SACK or RACK, so any N is reported as
//!     it was); later resends in a recovery without SACK (NewReno, RFC 6582).
//!   - `sack`: other resends in an ACK-driven recovery while the scoreboard
//!     holds SACKed data (RFC 6675). Wireshark has no such class.
//!   - `tlp`: the last segment sent, resent with no duplicate ACK, no SACK
//!     and no recovery, once per forward progress, when more than one
//!     segment is outstanding or sooner than the 200 ms minimum RTO
//!     (RFC 8985 §7). Wireshark has no such class.
//!   - `rto` otherwise: a resend after silence, which opens an episode.
//! * **Out-of-order**: data below the highest sequence number that the
//!   capture never saw, arriving within one round trip (the initial RTT, or
//!   3 ms unknown) of the data above it: no sender can learn of a loss and
//!   resend faster, so only reordering on the path explains it. Later than
//!   that, it is the retransmission of a segment lost before the capture
//!   point (`repeats_frame` is then `None`).
//! * **Lost segment**: a jump past the next expected sequence number; the
//!   record says later how the hole filled (out-of-order or retransmission)
//!   or that it never did. **ACKed unseen**: an ACK past everything seen; the
//!   bytes between become a hole too.
//! * **Duplicate ACK**: RFC 5681 §2 (no data, no SYN/FIN, same ACK, same
//!   window, data outstanding), also when only the window changed on an ACK
//!   carrying SACK blocks (RFC 6675 counts those); never an ACK with a zero
//!   window (those answer window probes). Each run records its hole, its
//!   frames, its last SACK blocks and the retransmission it triggered.
//! * **Keep-alive**: seq = next - 1 with 0 or 1 byte (as Wireshark). The
//!   same segment while the peer advertises a zero window is a window probe
//!   (Linux probes a zero window exactly so); so is one new byte at the next
//!   sequence number into a zero window. Neither is a retransmission.
//! * **Zero window**: episodes (first zero window to reopening, with the
//!   probes and the duration), not only segments as Wireshark counts.
//! * **Window full**: a segment ending exactly at the peer's ACK plus its
//!   (scaled) window, as Wireshark, only when the scale is known.
//! * **RTT**: per direction, for its data: by TSecr where timestamps are on
//!   (RFC 7323 §4), else from the newest segment an advancing ACK covers,
//!   none when any covered segment was retransmitted (Karn, RFC 6298 §3).
//!   Wireshark samples every ACK against the segment it acks exactly.
//!
//! * **Capture copies**: a segment identical to the one before it in its
//!   direction with the same timestamp was duplicated by the capture (two
//!   taps, a mirror port); it is counted apart and otherwise ignored, where
//!   Wireshark calls each copy a retransmission or a duplicate ACK.
//!
//! Memory per connection is bounded: event records, holes, SACK ranges,
//! remembered transmissions and RTT samples all have caps; counts stay
//! exact past them.

mod conn;
mod ranges;
mod report;
mod rtt;

pub use conn::ConnectionAnalyzer;
pub use report::{
    AckedUnseen, ConnectionReport, DirectionReport, DuplicateAckRun, Events, Handshake,
    LostSegment, MAX_FRAMES_PER_RUN, MAX_RECORDS, OutOfOrder, Retransmission, RetransmissionCounts,
    RetransmissionKind, RtoEpisode, RttSummary, SackRecord, SynOptions, ZeroWindow,
};

use crate::segment::{FlowKey, Segment, TcpFlags, Timestamp};
use std::collections::HashMap;
use std::net::SocketAddr;

/// A connection's key whichever way a segment goes.
fn normalised(key: FlowKey) -> (SocketAddr, SocketAddr) {
    if key.src <= key.dst {
        (key.src, key.dst)
    } else {
        (key.dst, key.src)
    }
}

/// Analyzes every connection of a capture: segments in (any connection,
/// capture order), one [`ConnectionReport`] per connection out.
///
/// Connections are keyed by their 4-tuple; a SYN with another ISN on a
/// port pair in use starts a new connection (the port pair was reused).
#[derive(Debug, Default)]
pub struct Analyzer {
    open: HashMap<(SocketAddr, SocketAddr), ConnectionAnalyzer>,
    done: Vec<ConnectionReport>,
    next_id: u64,
}

impl Analyzer {
    /// No connections yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next segment of the capture.
    pub fn push(&mut self, seg: &Segment<'_>) {
        let key = normalised(seg.key);
        let syn = seg.flags.contains(TcpFlags::SYN) && !seg.flags.contains(TcpFlags::ACK);
        if syn {
            let reused = self
                .open
                .get(&key)
                .and_then(|c| c.client_isn())
                .is_some_and(|isn| isn != seg.seq);
            if reused {
                if let Some(old) = self.open.remove(&key) {
                    self.done.push(old.report());
                }
            }
        }
        let next_id = &mut self.next_id;
        self.open
            .entry(key)
            .or_insert_with(|| {
                let c = ConnectionAnalyzer::new(*next_id);
                *next_id += 1;
                c
            })
            .push(seg);
    }

    /// Ends the connections silent since before `now - idle_s` and returns
    /// their reports (for long captures: memory then follows the open
    /// connections only).
    pub fn expire(&mut self, now: Timestamp, idle_s: f64) -> Vec<ConnectionReport> {
        let stale: Vec<_> = self
            .open
            .iter()
            .filter(|(_, c)| c.last_seen().is_some_and(|t| now.secs_since(t) > idle_s))
            .map(|(k, _)| *k)
            .collect();
        let mut out: Vec<_> = std::mem::take(&mut self.done);
        for k in stale {
            if let Some(c) = self.open.remove(&k) {
                out.push(c.report());
            }
        }
        out.sort_by_key(|r| r.id);
        out
    }

    /// The reports of every connection, by order of first appearance.
    pub fn finish(self) -> Vec<ConnectionReport> {
        let mut out = self.done;
        out.extend(self.open.into_values().map(|c| c.report()));
        out.sort_by_key(|r| r.id);
        out
    }
}
