//! Where every datagram went: the sans-IO accounting.
//!
//! [`Tally`] classifies what comes out of the socket (data, sentinel,
//! foreign) and keeps the kernel's drop counter as `SO_RXQ_OVFL` reports it;
//! [`Ledger::close`] takes the final plain values and balances the books:
//!
//! ```text
//! sent = delivered + dropped in the application queue
//!      + dropped by the kernel at the socket + dropped before the socket
//!      + unaccounted (the residual; 0 when the books close)
//! ```
//!
//! The kernel term comes from the sentinel: `SO_RXQ_OVFL` on a datagram is
//! the socket's `sk_drops` when that datagram was queued, so on the first
//! sentinel copy it counts every datagram dropped before it. Copies sent
//! before the first one received were dropped too (loopback and a veth pair
//! do not reorder) and are taken off. `/proc/net/udp` `drops` read at the end
//! and, in a namespace of its own, `RcvbufErrors` are independent witnesses.
//!
//! Only one stream is counted: the first data datagram (that fits what the
//! sink was told in advance, [`Expect`]) names it by nonce and source
//! address ([`StreamId`]). Any datagram with another nonce or source, and a
//! sentinel that arrives before any data, is foreign: it can neither add to
//! the account nor close it. A sentinel of the stream whose total is below
//! what already arrived is refused; copies that disagree on the total are
//! reported, and the books then do not close.
//!
//! Nothing here touches a socket or a clock.

use std::net::SocketAddr;

use serde::Serialize;

use crate::wire::{Datagram, Foreign};

/// The stream a sink counts: the sender's per-run nonce and its source
/// address. Datagrams with another nonce or from another address are
/// foreign, whatever they say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StreamId {
    /// The nonce the sender put in every datagram (16 hex digits in JSON).
    #[serde(serialize_with = "crate::wire::serialize_nonce")]
    pub nonce: u64,
    /// The address the stream's datagrams come from.
    pub source: SocketAddr,
}

/// What the sink is told about its stream in advance; what it is not told
/// it learns from the first data datagram that fits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expect {
    /// The stream's nonce, when known.
    pub nonce: Option<u64>,
    /// The sender's source address, when known.
    pub source: Option<SocketAddr>,
}

/// What [`Tally::on_datagram`] made of one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A data datagram of the stream: hand it to the processing.
    Data {
        /// Its sequence number.
        seq: u64,
        /// Its send time, ns since the Unix epoch.
        sent_ns: u64,
    },
    /// A sentinel copy of the stream.
    Sentinel {
        /// The first copy accepted.
        first: bool,
    },
    /// A sentinel of the stream whose total is below what already arrived
    /// from it: not taken (the sink keeps waiting for a true one).
    Rejected {
        /// The total it claimed.
        total: u64,
        /// Data datagrams known to have been sent (received, or the highest
        /// seq + 1).
        known: u64,
    },
    /// One of our datagrams, but not of the stream (another nonce or source,
    /// or a sentinel before any data): foreign.
    OtherStream {
        /// Its nonce.
        nonce: u64,
        /// Where it came from.
        source: Option<SocketAddr>,
        /// It was a sentinel.
        sentinel: bool,
    },
    /// Not one of ours (counted, otherwise ignored).
    Foreign(Foreign),
}

/// What the first accepted sentinel copy said, and what followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SentinelSeen {
    /// Data datagrams the sender's kernel accepted.
    pub total: u64,
    /// Index of the first copy received.
    pub first_copy: u32,
    /// Copies the sender sends.
    pub copies: u32,
    /// Copies received so far.
    pub copies_received: u32,
    /// The socket's drop counter (`SO_RXQ_OVFL`) on the first copy received.
    pub drops_at_first: u64,
    /// Later copies of the stream whose total differed from the first.
    pub conflicts: u32,
    /// The first differing total.
    pub conflicting_total: Option<u64>,
}

/// A stream sentinel that was refused because its total was too low.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RejectedSentinel {
    /// The total it claimed.
    pub total: u64,
    /// Data datagrams known to have been sent when it arrived.
    pub known: u64,
}

/// Receive-side counters, fed one datagram at a time by the receiving thread.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Every datagram taken out of the socket.
    pub received: u64,
    /// Data datagrams of the stream taken out of the socket.
    pub data: u64,
    /// Datagrams that were not the stream's: not ours at all, or of another
    /// stream ([`Tally::other_stream`]).
    pub foreign: u64,
    /// Of the foreign ones: ours by their header, but another nonce or
    /// source (or a sentinel before the stream began).
    pub other_stream: u64,
    /// Of those: sentinels.
    pub other_sentinels: u64,
    /// Sentinels of the stream refused for a total below what arrived.
    pub rejected_sentinels: u64,
    /// Data datagrams after the first sentinel copy (should stay 0).
    pub late: u64,
    /// Data datagrams whose seq was below one seen before.
    pub out_of_order: u64,
    /// Highest `SO_RXQ_OVFL` value seen (the socket's drops so far; the
    /// sum over the sockets after [`Tally::absorb`]).
    pub kernel_drops: u64,
    /// Most datagrams per GSO message any data datagram said it was sent
    /// in (its `segs` byte; 0 or 1: no GSO).
    pub gso_segments: u64,
    /// Data datagrams that were the first of their message (seq a multiple
    /// of their `segs`): the messages of the stream that arrived.
    pub messages: u64,
    /// Highest seq among those first datagrams.
    pub max_message_start: Option<u64>,
    expect: Expect,
    stream: Option<StreamId>,
    next_seq: u64,
    ovfl_last: u32,
    ovfl_wraps: u64,
    sentinel: Option<SentinelSeen>,
    last_rejected: Option<RejectedSentinel>,
}

impl Tally {
    /// A tally that learns its stream from the first data datagram.
    pub fn new() -> Tally {
        Tally::default()
    }

    /// A tally told (part of) its stream in advance; with both the nonce
    /// and the source it learns nothing.
    pub fn expecting(expect: Expect) -> Tally {
        let stream = match expect {
            Expect {
                nonce: Some(nonce),
                source: Some(source),
            } => Some(StreamId { nonce, source }),
            _ => None,
        };
        Tally {
            expect,
            stream,
            ..Tally::default()
        }
    }

    /// Classifies one datagram from `source` (`None`: not an IP address);
    /// `ovfl` is its `SO_RXQ_OVFL` value (absent while the socket has
    /// dropped nothing).
    pub fn on_datagram(
        &mut self,
        bytes: &[u8],
        source: Option<SocketAddr>,
        ovfl: Option<u32>,
    ) -> Verdict {
        self.received += 1;
        let drops = self.observe_ovfl(ovfl.unwrap_or(0));
        let datagram = match Datagram::parse(bytes) {
            Ok(d) => d,
            Err(why) => {
                self.foreign += 1;
                return Verdict::Foreign(why);
            }
        };
        let is_sentinel = matches!(datagram, Datagram::Sentinel { .. });
        if !self.of_stream(datagram.nonce(), source, is_sentinel) {
            self.foreign += 1;
            self.other_stream += 1;
            if is_sentinel {
                self.other_sentinels += 1;
            }
            return Verdict::OtherStream {
                nonce: datagram.nonce(),
                source,
                sentinel: is_sentinel,
            };
        }
        match datagram {
            Datagram::Data { seq, sent_ns, .. } => {
                self.data += 1;
                let segs = u64::from(crate::wire::segments_of(bytes)).max(1);
                self.gso_segments = self.gso_segments.max(segs);
                if seq % segs == 0 {
                    self.messages += 1;
                    self.max_message_start = self.max_message_start.max(Some(seq));
                }
                if self.sentinel.is_some() {
                    self.late += 1;
                }
                if seq < self.next_seq {
                    self.out_of_order += 1;
                } else {
                    self.next_seq = seq.saturating_add(1);
                }
                Verdict::Data { seq, sent_ns }
            }
            Datagram::Sentinel {
                total,
                copy,
                copies,
                ..
            } => {
                let known = self.data.max(self.next_seq);
                if total < known {
                    self.rejected_sentinels += 1;
                    self.last_rejected = Some(RejectedSentinel { total, known });
                    return Verdict::Rejected { total, known };
                }
                match &mut self.sentinel {
                    Some(seen) => {
                        seen.copies_received = seen.copies_received.saturating_add(1);
                        if total != seen.total {
                            seen.conflicts = seen.conflicts.saturating_add(1);
                            seen.conflicting_total.get_or_insert(total);
                        }
                        Verdict::Sentinel { first: false }
                    }
                    None => {
                        self.sentinel = Some(SentinelSeen {
                            total,
                            first_copy: copy,
                            copies,
                            copies_received: 1,
                            drops_at_first: drops,
                            conflicts: 0,
                            conflicting_total: None,
                        });
                        Verdict::Sentinel { first: true }
                    }
                }
            }
        }
    }

    /// True when a datagram with `nonce` from `source` is the stream's;
    /// the first data datagram that fits what is expected names the stream.
    /// A sentinel never does: a stream is known by its data first.
    fn of_stream(&mut self, nonce: u64, source: Option<SocketAddr>, sentinel: bool) -> bool {
        if let Some(id) = self.stream {
            return id.nonce == nonce && source == Some(id.source);
        }
        let Some(source) = source else { return false };
        let fits = self.expect.nonce.is_none_or(|n| n == nonce)
            && self.expect.source.is_none_or(|s| s == source);
        if fits && !sentinel {
            self.stream = Some(StreamId { nonce, source });
            return true;
        }
        false
    }

    /// The cumulative counter is a `u32` in the cmsg: extend it across wraps.
    fn observe_ovfl(&mut self, value: u32) -> u64 {
        if value < self.ovfl_last {
            self.ovfl_wraps += 1;
        }
        self.ovfl_last = value;
        let drops = (self.ovfl_wraps << 32) | u64::from(value);
        self.kernel_drops = self.kernel_drops.max(drops);
        drops
    }

    /// Adds the counts of another receiver's tally of the same stream (one
    /// socket of several): counters add up, the stream and the sentinel are
    /// taken from whichever saw them.
    ///
    /// Each receiver names the stream from its own first data datagram. If
    /// another receiver named a different one, its data is counted as
    /// another stream's (foreign) and its sentinel is not taken. The
    /// processing delivered those datagrams, so the books then do not close.
    pub fn absorb(&mut self, other: &Tally) {
        if let (Some(a), Some(b)) = (self.stream, other.stream)
            && a != b
        {
            self.received += other.received;
            self.foreign += other.foreign + other.data;
            self.other_stream += other.other_stream + other.data;
            self.other_sentinels += other.other_sentinels;
            self.kernel_drops += other.kernel_drops;
            return;
        }
        self.received += other.received;
        self.data += other.data;
        self.foreign += other.foreign;
        self.other_stream += other.other_stream;
        self.other_sentinels += other.other_sentinels;
        self.rejected_sentinels += other.rejected_sentinels;
        self.late += other.late;
        self.out_of_order += other.out_of_order;
        self.kernel_drops += other.kernel_drops;
        self.gso_segments = self.gso_segments.max(other.gso_segments);
        self.messages += other.messages;
        self.max_message_start = self.max_message_start.max(other.max_message_start);
        self.next_seq = self.next_seq.max(other.next_seq);
        if self.stream.is_none() {
            self.stream = other.stream;
        }
        if self.last_rejected.is_none() {
            self.last_rejected = other.last_rejected;
        }
        match (&mut self.sentinel, other.sentinel) {
            (None, s) => self.sentinel = s,
            (Some(mine), Some(theirs)) => {
                // Copies split over sockets: one account of them.
                mine.copies_received = mine.copies_received.saturating_add(theirs.copies_received);
                mine.first_copy = mine.first_copy.min(theirs.first_copy);
                if theirs.total != mine.total {
                    mine.conflicts = mine.conflicts.saturating_add(1);
                    mine.conflicting_total.get_or_insert(theirs.total);
                }
            }
            (Some(_), None) => {}
        }
    }

    /// The stream being counted, once known.
    pub fn stream(&self) -> Option<StreamId> {
        self.stream
    }

    /// The sentinel, once a copy of the stream's was accepted.
    pub fn sentinel(&self) -> Option<SentinelSeen> {
        self.sentinel
    }

    /// The last sentinel refused for a total below what arrived.
    pub fn last_rejected(&self) -> Option<RejectedSentinel> {
        self.last_rejected
    }

    /// True once every copy of the sentinel has arrived.
    pub fn all_sentinels_in(&self) -> bool {
        self.sentinel.is_some_and(|s| {
            u64::from(s.first_copy) + u64::from(s.copies_received) >= u64::from(s.copies)
        })
    }
}

/// The final values the ledger is built from.
#[derive(Debug, Clone, Default)]
pub struct Observations {
    /// The receive tally at the end.
    pub tally: Tally,
    /// Data datagrams the processing finished.
    pub delivered: u64,
    /// Data datagrams dropped because the application queue was full.
    pub queue_dropped: u64,
    /// `drops` of this socket in `/proc/net/udp`, read after the last copy.
    pub proc_drops: Option<u64>,
    /// `Udp: RcvbufErrors` growth over the run, when the namespace is the
    /// sink's alone.
    pub rcvbuf_errors: Option<u64>,
    /// Datagrams dropped before the socket (a `tbf` qdisc), when known.
    pub before_socket: Option<u64>,
    /// The kernel term comes from `proc_drops` (the sum over several
    /// sockets) rather than from `SO_RXQ_OVFL` on the sentinel, which sees
    /// only its own socket.
    pub kernel_from_proc: bool,
    /// The sockets had `UDP_GRO` on: the kernel counts a drop per coalesced
    /// message, not per datagram; the ledger turns messages into datagrams
    /// with the `segs` the datagrams carry.
    pub kernel_counts_messages: bool,
}

/// Every term of the account; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ledger {
    /// Data datagrams sent, from the sentinel (`None`: no sentinel arrived).
    pub sent: Option<u64>,
    /// Processed by the application.
    pub delivered: u64,
    /// Dropped in the application queue (split mode).
    pub queue_dropped: u64,
    /// Data datagrams dropped by the kernel at the socket (`SO_RXQ_OVFL` at
    /// the sentinel; with several sockets `/proc/net/udp`; with `UDP_GRO`
    /// the datagrams of the messages that never arrived, see
    /// `kernel_messages_dropped`).
    pub kernel_dropped: Option<u64>,
    /// With `UDP_GRO`: messages the kernel counted as dropped (its drop
    /// counters count one per coalesced message).
    pub kernel_messages_dropped: Option<u64>,
    /// With `UDP_GRO`: messages of the stream that never arrived (from the
    /// seqs); the books close only when it equals the kernel's count.
    pub messages_missing: Option<u64>,
    /// Datagrams per GSO message the stream said (1: none).
    pub gso_segments: u64,
    /// Dropped before the socket (qdisc), when measured.
    pub before_socket: Option<u64>,
    /// sent minus every other term: 0 when the books close.
    pub residual: Option<i64>,
    /// Witness: the socket's `drops` in `/proc/net/udp` at the end, all datagrams.
    pub proc_drops: Option<u64>,
    /// Witness: `/proc/net/udp` drops less the sentinel copies lost.
    pub proc_drops_data: Option<u64>,
    /// Witness: `RcvbufErrors` growth (sink in its own namespace).
    pub rcvbuf_errors: Option<u64>,
    /// Highest `SO_RXQ_OVFL` value seen (includes sentinel copies and foreign datagrams).
    pub rxq_ovfl_last: u64,
    /// Data datagrams taken out of the socket.
    pub received: u64,
    /// Datagrams that were not the stream's (wrong size, no header, or
    /// another stream's).
    pub foreign: u64,
    /// Of the foreign: ours by their header but another nonce or source,
    /// or a sentinel before any data.
    pub other_stream: u64,
    /// Of those: sentinels (forged, stray or from another run).
    pub other_sentinels: u64,
    /// Sentinels of the stream refused: their total was below what arrived.
    pub rejected_sentinels: u64,
    /// The last refused sentinel.
    pub last_rejected: Option<RejectedSentinel>,
    /// The stream counted (nonce and source), once known.
    pub stream: Option<StreamId>,
    /// Data datagrams after the sentinel.
    pub late: u64,
    /// Data datagrams below a seq seen before.
    pub out_of_order: u64,
    /// The sentinel as first seen.
    pub sentinel: Option<SentinelSeen>,
}

impl Ledger {
    /// Balances the books.
    pub fn close(obs: &Observations) -> Ledger {
        let t = &obs.tally;
        let sentinel = t.sentinel();
        let lost_copies = sentinel.map(|s| u64::from(s.copies.saturating_sub(s.copies_received)));
        // What the kernel counted at the socket(s), less the sentinel copies
        // it dropped: datagrams, or messages with GRO.
        let kernel_count = match (obs.kernel_from_proc, sentinel) {
            (_, None) => None,
            (true, Some(_)) => obs
                .proc_drops
                .map(|p| p.saturating_sub(lost_copies.unwrap_or(0))),
            (false, Some(s)) => Some(s.drops_at_first.saturating_sub(s.first_copy.into())),
        };
        let g = t.gso_segments.max(1);
        let (kernel_dropped, kernel_messages_dropped, messages_missing) =
            match (obs.kernel_counts_messages, sentinel) {
                (true, Some(s)) => {
                    // Message m holds seqs m*g .. (m+1)*g, the last one fewer.
                    let messages = s.total.div_ceil(g);
                    let missing = messages.saturating_sub(t.messages);
                    let last_start = messages.saturating_sub(1) * g;
                    let last_missing = messages > 0 && t.max_message_start != Some(last_start);
                    let short = if last_missing {
                        messages * g - s.total
                    } else {
                        0
                    };
                    (
                        Some((missing * g).saturating_sub(short)),
                        kernel_count,
                        Some(missing),
                    )
                }
                _ => (kernel_count, None, None),
            };
        let residual = sentinel.map(|s| {
            // i128: a total near u64::MAX must not wrap; the result is
            // clamped into i64 (a residual that large is an alarm anyway).
            let r = i128::from(s.total)
                - i128::from(obs.delivered)
                - i128::from(obs.queue_dropped)
                - i128::from(kernel_dropped.unwrap_or(0))
                - i128::from(obs.before_socket.unwrap_or(0));
            r.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
        });
        let proc_drops_data = match (obs.proc_drops, lost_copies) {
            (Some(p), Some(lost)) => Some(p.saturating_sub(lost)),
            _ => None,
        };
        Ledger {
            sent: sentinel.map(|s| s.total),
            delivered: obs.delivered,
            queue_dropped: obs.queue_dropped,
            kernel_dropped,
            kernel_messages_dropped,
            messages_missing,
            gso_segments: g,
            before_socket: obs.before_socket,
            residual,
            proc_drops: obs.proc_drops,
            proc_drops_data,
            rcvbuf_errors: obs.rcvbuf_errors,
            rxq_ovfl_last: t.kernel_drops,
            received: t.data,
            foreign: t.foreign,
            other_stream: t.other_stream,
            other_sentinels: t.other_sentinels,
            rejected_sentinels: t.rejected_sentinels,
            last_rejected: t.last_rejected(),
            stream: t.stream(),
            late: t.late,
            out_of_order: t.out_of_order,
            sentinel,
        }
    }

    /// True when a sentinel of the stream arrived, its copies agree on the
    /// total, and the residual is 0.
    pub fn closes(&self) -> bool {
        self.residual == Some(0)
            && self.sentinel.is_some_and(|s| s.conflicts == 0)
            && self.kernel_messages_dropped == self.messages_missing
    }

    /// Fraction of sent datagrams not delivered (0 when nothing was sent).
    pub fn drop_fraction(&self) -> Option<f64> {
        self.sent.map(|sent| {
            if sent == 0 {
                0.0
            } else {
                sent.saturating_sub(self.delivered) as f64 / sent as f64
            }
        })
    }
}

impl std::fmt::Display for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let opt = |v: Option<u64>| v.map_or_else(|| "unknown".to_string(), |v| v.to_string());
        match self.stream {
            Some(id) => writeln!(f, "stream: nonce {:016x} from {}", id.nonce, id.source)?,
            None => writeln!(f, "stream: none seen")?,
        }
        writeln!(f, "account (data datagrams):")?;
        writeln!(f, "  sent (sentinel)              {:>12}", opt(self.sent))?;
        writeln!(f, "  delivered (processed)        {:>12}", self.delivered)?;
        writeln!(
            f,
            "  dropped, application queue   {:>12}",
            self.queue_dropped
        )?;
        match (self.kernel_messages_dropped, self.messages_missing) {
            (None, None) => writeln!(
                f,
                "  dropped, kernel socket       {:>12}   (SO_RXQ_OVFL at the sentinel, or /proc/net/udp of every socket)",
                opt(self.kernel_dropped)
            )?,
            (k, m) => writeln!(
                f,
                "  dropped, kernel socket       {:>12}   ({} messages of {} never arrived; the kernel counted {} dropped{})",
                opt(self.kernel_dropped),
                opt(m),
                self.gso_segments,
                opt(k),
                if k == m { "" } else { ": THEY DIFFER" }
            )?,
        }
        if let Some(b) = self.before_socket {
            writeln!(f, "  dropped before the socket    {b:>12}   (qdisc)")?;
        }
        match self.residual {
            Some(0) => writeln!(
                f,
                "  unaccounted (residual)       {:>12}   the books close",
                0
            )?,
            Some(r) => writeln!(
                f,
                "  unaccounted (residual)       {r:>12}   THE BOOKS DO NOT CLOSE: {r} datagrams are not explained"
            )?,
            None => writeln!(
                f,
                "  unaccounted (residual)       {:>12}   no sentinel arrived: the number sent is unknown",
                "unknown"
            )?,
        }
        writeln!(
            f,
            "witnesses: /proc/net/udp drops {} ({} data), RcvbufErrors {}, last SO_RXQ_OVFL {}",
            opt(self.proc_drops),
            opt(self.proc_drops_data),
            self.rcvbuf_errors
                .map_or_else(|| "n/a (shared namespace)".to_string(), |v| v.to_string()),
            self.rxq_ovfl_last
        )?;
        if let Some(s) = self.sentinel
            && s.conflicts > 0
        {
            writeln!(
                f,
                "SENTINELS CONFLICT: the first said {} sent, {} later cop{} said otherwise (first: {})",
                s.total,
                s.conflicts,
                if s.conflicts == 1 { "y" } else { "ies" },
                s.conflicting_total.unwrap_or(0)
            )?;
        }
        if let Some(r) = self.last_rejected {
            writeln!(
                f,
                "refused {} sentinel{} of the stream: the last claimed {} sent, but {} had arrived",
                self.rejected_sentinels,
                if self.rejected_sentinels == 1 {
                    ""
                } else {
                    "s"
                },
                r.total,
                r.known
            )?;
        }
        write!(
            f,
            "other: {} foreign ({} of another stream, {} of them sentinels), {} late, {} out of order",
            self.foreign, self.other_stream, self.other_sentinels, self.late, self.out_of_order
        )
    }
}

#[cfg(test)]
mod test {
    use super::*;

    const NONCE: u64 = 0x5eed;

    fn src() -> Option<SocketAddr> {
        Some(SocketAddr::from(([127, 0, 0, 1], 4000)))
    }

    fn data(seq: u64) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        Datagram::emit_data(&mut b, NONCE, seq, 0);
        b
    }

    fn sentinel(total: u64, copy: u32, copies: u32) -> [u8; crate::wire::SENTINEL_LEN] {
        Datagram::sentinel(NONCE, total, copy, copies, 0)
    }

    fn gso_data(seq: u64, segs: u8) -> Vec<u8> {
        let mut b = data(seq);
        crate::wire::set_segments(&mut b, segs);
        b
    }

    /// 10 datagrams in messages of 4 (4, 4, 2); the kernel counts drops per
    /// message (GRO), the ledger turns them into datagrams.
    fn gro_ledger(received: &[u64], kernel_messages: u64) -> Ledger {
        let mut t = Tally::new();
        for &seq in received {
            t.on_datagram(&gso_data(seq, 4), src(), None);
        }
        t.on_datagram(&sentinel(10, 0, 1), src(), Some(kernel_messages as u32));
        Ledger::close(&Observations {
            delivered: t.data,
            tally: t,
            proc_drops: Some(kernel_messages),
            kernel_counts_messages: true,
            ..Observations::default()
        })
    }

    #[test]
    fn receivers_that_named_different_streams_do_not_merge() {
        let mut a = Tally::new();
        a.on_datagram(&data(0), src(), None);
        let mut b = Tally::new();
        let other = Some(SocketAddr::from(([127, 0, 0, 1], 4001)));
        b.on_datagram(&data(1), other, None);
        b.on_datagram(&data(2), other, None);
        a.absorb(&b);
        assert_eq!((a.data, a.foreign, a.other_stream), (1, 2, 2));
        let mut c = Tally::new();
        c.on_datagram(&data(3), src(), None);
        a.absorb(&c);
        assert_eq!(a.data, 2);
    }

    #[test]
    fn gro_messages_become_datagrams() {
        // The middle message (seqs 4..8) dropped: 4 datagrams.
        let l = gro_ledger(&[0, 1, 2, 3, 8, 9], 1);
        assert_eq!(l.messages_missing, Some(1));
        assert_eq!(l.kernel_messages_dropped, Some(1));
        assert_eq!(l.kernel_dropped, Some(4));
        assert_eq!(l.residual, Some(0));
        assert!(l.closes());
        // The short last message (8, 9) dropped: 2 datagrams.
        let l = gro_ledger(&[0, 1, 2, 3, 4, 5, 6, 7], 1);
        assert_eq!((l.kernel_dropped, l.residual), (Some(2), Some(0)));
        assert!(l.closes());
        // The kernel says 2 messages, only one is missing: does not close.
        let l = gro_ledger(&[0, 1, 2, 3, 8, 9], 2);
        assert!(!l.closes());
        // Part of a message missing: the residual shows it.
        let l = gro_ledger(&[0, 1, 2, 8, 9], 1);
        assert_eq!(l.residual, Some(1));
        assert!(!l.closes());
    }

    #[test]
    fn closes_with_every_term() {
        let mut t = Tally::new();
        for seq in 0..10 {
            t.on_datagram(&data(seq), src(), None);
        }
        // 5 datagrams dropped by the kernel, then 10 more arrive carrying it.
        for seq in 15..25 {
            t.on_datagram(&data(seq), src(), Some(5));
        }
        assert_eq!(
            t.on_datagram(b"junk", src(), Some(5)),
            Verdict::Foreign(Foreign::TooShort { len: 4 })
        );
        // copy 0 of 3 lost too: the counter says 6.
        assert_eq!(
            t.on_datagram(&sentinel(25, 1, 3), src(), Some(6)),
            Verdict::Sentinel { first: true }
        );
        assert!(!t.all_sentinels_in());
        assert_eq!(
            t.on_datagram(&sentinel(25, 2, 3), src(), Some(6)),
            Verdict::Sentinel { first: false }
        );
        assert!(t.all_sentinels_in());
        let obs = Observations {
            tally: t,
            delivered: 17,
            queue_dropped: 3,
            proc_drops: Some(6),
            ..Default::default()
        };
        let l = Ledger::close(&obs);
        assert_eq!(l.sent, Some(25));
        assert_eq!(l.kernel_dropped, Some(5));
        assert_eq!(l.proc_drops_data, Some(5));
        assert_eq!(l.residual, Some(0));
        assert_eq!(l.foreign, 1);
        assert_eq!(
            l.stream,
            Some(StreamId {
                nonce: NONCE,
                source: src().unwrap()
            })
        );
        assert!(l.closes());
        assert_eq!(l.drop_fraction(), Some(8.0 / 25.0));
        assert!(l.to_string().contains("the books close"));
        assert!(l.to_string().contains("nonce 0000000000005eed"));
    }

    #[test]
    fn residual_when_not_explained() {
        let mut t = Tally::new();
        t.on_datagram(&data(0), src(), None);
        t.on_datagram(&sentinel(3, 0, 1), src(), None);
        let l = Ledger::close(&Observations {
            tally: t,
            delivered: 1,
            ..Default::default()
        });
        assert_eq!(l.residual, Some(2));
        assert!(l.to_string().contains("DO NOT CLOSE"));
    }

    #[test]
    fn no_sentinel_unknown() {
        let l = Ledger::close(&Observations::default());
        assert_eq!(l.residual, None);
        assert!(l.to_string().contains("unknown"));
    }

    #[test]
    fn ovfl_wraps() {
        let mut t = Tally::new();
        t.on_datagram(&data(0), src(), Some(u32::MAX));
        t.on_datagram(&data(1), src(), Some(2));
        assert_eq!(t.kernel_drops, (1u64 << 32) | 2);
    }

    #[test]
    fn late_and_out_of_order() {
        let mut t = Tally::new();
        t.on_datagram(&data(5), src(), None);
        t.on_datagram(&data(3), src(), None);
        t.on_datagram(&sentinel(6, 0, 1), src(), None);
        t.on_datagram(&data(6), src(), None);
        assert_eq!((t.out_of_order, t.late), (1, 1));
    }

    #[test]
    fn a_sentinel_before_any_data_is_foreign() {
        let mut t = Tally::new();
        let forged = Datagram::sentinel(1, 1_000_000_000_000, 0, 1, 0);
        assert!(matches!(
            t.on_datagram(&forged, src(), None),
            Verdict::OtherStream { sentinel: true, .. }
        ));
        assert_eq!(t.sentinel(), None);
        assert_eq!((t.foreign, t.other_sentinels), (1, 1));
    }

    #[test]
    fn other_nonce_or_source_never_counts() {
        let mut t = Tally::new();
        t.on_datagram(&data(0), src(), None);
        let other_src = Some(SocketAddr::from(([127, 0, 0, 1], 4001)));
        let mut other_nonce = vec![0u8; 64];
        Datagram::emit_data(&mut other_nonce, NONCE + 1, 1, 0);
        assert!(matches!(
            t.on_datagram(&data(1), other_src, None),
            Verdict::OtherStream {
                sentinel: false,
                ..
            }
        ));
        assert!(matches!(
            t.on_datagram(&other_nonce, src(), None),
            Verdict::OtherStream { .. }
        ));
        assert!(matches!(
            t.on_datagram(&sentinel(1, 0, 1), other_src, None),
            Verdict::OtherStream { sentinel: true, .. }
        ));
        assert!(matches!(
            t.on_datagram(&sentinel(1, 0, 1), None, None),
            Verdict::OtherStream { .. }
        ));
        assert_eq!((t.data, t.other_stream, t.sentinel()), (1, 4, None));
    }

    #[test]
    fn told_nonce_ignores_data_of_another() {
        let mut t = Tally::expecting(Expect {
            nonce: Some(NONCE),
            source: None,
        });
        let mut early = vec![0u8; 64];
        Datagram::emit_data(&mut early, 7, 0, 0);
        let intruder = Some(SocketAddr::from(([127, 0, 0, 1], 9)));
        assert!(matches!(
            t.on_datagram(&early, intruder, None),
            Verdict::OtherStream { .. }
        ));
        assert!(matches!(
            t.on_datagram(&data(0), src(), None),
            Verdict::Data { .. }
        ));
        assert_eq!(t.stream().unwrap().source, src().unwrap());
    }

    #[test]
    fn a_total_below_what_arrived_is_refused() {
        let mut t = Tally::new();
        for seq in 0..10 {
            t.on_datagram(&data(seq), src(), None);
        }
        assert_eq!(
            t.on_datagram(&sentinel(4, 0, 1), src(), None),
            Verdict::Rejected {
                total: 4,
                known: 10
            }
        );
        assert_eq!(t.sentinel(), None);
        assert_eq!(
            t.on_datagram(&sentinel(10, 0, 1), src(), None),
            Verdict::Sentinel { first: true }
        );
        let l = Ledger::close(&Observations {
            tally: t,
            delivered: 10,
            ..Default::default()
        });
        assert!(l.closes());
        assert_eq!(l.rejected_sentinels, 1);
        assert!(l.to_string().contains("claimed 4 sent, but 10 had arrived"));
    }

    #[test]
    fn conflicting_totals_keep_the_books_open() {
        let mut t = Tally::new();
        t.on_datagram(&data(0), src(), None);
        t.on_datagram(&sentinel(1, 0, 2), src(), None);
        t.on_datagram(&sentinel(u64::MAX, 1, 2), src(), None);
        let l = Ledger::close(&Observations {
            tally: t,
            delivered: 1,
            ..Default::default()
        });
        assert_eq!(l.residual, Some(0));
        assert!(!l.closes());
        assert_eq!(l.sentinel.unwrap().conflicting_total, Some(u64::MAX));
        assert!(l.to_string().contains("SENTINELS CONFLICT"));
    }

    #[test]
    fn huge_total_does_not_wrap() {
        let mut t = Tally::new();
        t.on_datagram(&data(0), src(), None);
        t.on_datagram(&sentinel(u64::MAX, 0, 1), src(), None);
        let l = Ledger::close(&Observations {
            tally: t,
            delivered: 1,
            ..Default::default()
        });
        assert_eq!(l.residual, Some(i64::MAX));
    }
}
