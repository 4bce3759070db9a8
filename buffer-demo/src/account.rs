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
//! Nothing here touches a socket or a clock.

use serde::Serialize;

use crate::wire::{Datagram, Foreign};

/// What [`Tally::on_datagram`] made of one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A data datagram: hand it to the processing.
    Data {
        /// Its sequence number.
        seq: u64,
        /// Its send time, ns since the Unix epoch.
        sent_ns: u64,
    },
    /// A sentinel copy.
    Sentinel {
        /// The first copy received.
        first: bool,
    },
    /// Not one of ours (counted, otherwise ignored).
    Foreign(Foreign),
}

/// What the first sentinel copy said, and how many copies followed.
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
}

/// Receive-side counters, fed one datagram at a time by the receiving thread.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Every datagram taken out of the socket.
    pub received: u64,
    /// Data datagrams taken out of the socket.
    pub data: u64,
    /// Datagrams that were not ours.
    pub foreign: u64,
    /// Data datagrams after the first sentinel copy (should stay 0).
    pub late: u64,
    /// Data datagrams whose seq was below one seen before.
    pub out_of_order: u64,
    /// Highest `SO_RXQ_OVFL` value seen (the socket's drops so far).
    pub kernel_drops: u64,
    next_seq: u64,
    ovfl_last: u32,
    ovfl_wraps: u64,
    sentinel: Option<SentinelSeen>,
}

impl Tally {
    /// A tally with nothing received.
    pub fn new() -> Tally {
        Tally::default()
    }

    /// Classifies one datagram; `ovfl` is its `SO_RXQ_OVFL` value (absent
    /// while the socket has dropped nothing).
    pub fn on_datagram(&mut self, bytes: &[u8], ovfl: Option<u32>) -> Verdict {
        self.received += 1;
        let drops = self.observe_ovfl(ovfl.unwrap_or(0));
        match Datagram::parse(bytes) {
            Ok(Datagram::Data { seq, sent_ns }) => {
                self.data += 1;
                if self.sentinel.is_some() {
                    self.late += 1;
                }
                if seq < self.next_seq {
                    self.out_of_order += 1;
                } else {
                    self.next_seq = seq + 1;
                }
                Verdict::Data { seq, sent_ns }
            }
            Ok(Datagram::Sentinel {
                total,
                copy,
                copies,
            }) => match &mut self.sentinel {
                Some(seen) => {
                    seen.copies_received += 1;
                    Verdict::Sentinel { first: false }
                }
                None => {
                    self.sentinel = Some(SentinelSeen {
                        total,
                        first_copy: copy,
                        copies,
                        copies_received: 1,
                        drops_at_first: drops,
                    });
                    Verdict::Sentinel { first: true }
                }
            },
            Err(why) => {
                self.foreign += 1;
                Verdict::Foreign(why)
            }
        }
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

    /// The sentinel, once a copy arrived.
    pub fn sentinel(&self) -> Option<SentinelSeen> {
        self.sentinel
    }

    /// True once every copy of the sentinel has arrived.
    pub fn all_sentinels_in(&self) -> bool {
        self.sentinel
            .is_some_and(|s| s.first_copy + s.copies_received >= s.copies)
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
    /// Data datagrams dropped by the kernel at the socket (`SO_RXQ_OVFL` at the sentinel).
    pub kernel_dropped: Option<u64>,
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
    /// Foreign datagrams (wrong size, no header).
    pub foreign: u64,
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
        let kernel_dropped = sentinel.map(|s| s.drops_at_first.saturating_sub(s.first_copy.into()));
        let residual = sentinel.map(|s| {
            s.total as i64
                - obs.delivered as i64
                - obs.queue_dropped as i64
                - kernel_dropped.unwrap_or(0) as i64
                - obs.before_socket.unwrap_or(0) as i64
        });
        let proc_drops_data = match (obs.proc_drops, sentinel) {
            (Some(p), Some(s)) => {
                let lost_copies = s.copies.saturating_sub(s.copies_received);
                Some(p.saturating_sub(lost_copies.into()))
            }
            _ => None,
        };
        Ledger {
            sent: sentinel.map(|s| s.total),
            delivered: obs.delivered,
            queue_dropped: obs.queue_dropped,
            kernel_dropped,
            before_socket: obs.before_socket,
            residual,
            proc_drops: obs.proc_drops,
            proc_drops_data,
            rcvbuf_errors: obs.rcvbuf_errors,
            rxq_ovfl_last: t.kernel_drops,
            received: t.data,
            foreign: t.foreign,
            late: t.late,
            out_of_order: t.out_of_order,
            sentinel,
        }
    }

    /// True when a sentinel arrived and the residual is 0.
    pub fn closes(&self) -> bool {
        self.residual == Some(0)
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
        writeln!(f, "account (data datagrams):")?;
        writeln!(f, "  sent (sentinel)              {:>12}", opt(self.sent))?;
        writeln!(f, "  delivered (processed)        {:>12}", self.delivered)?;
        writeln!(
            f,
            "  dropped, application queue   {:>12}",
            self.queue_dropped
        )?;
        writeln!(
            f,
            "  dropped, kernel socket       {:>12}   (SO_RXQ_OVFL at the sentinel)",
            opt(self.kernel_dropped)
        )?;
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
        write!(
            f,
            "other: {} foreign, {} late, {} out of order",
            self.foreign, self.late, self.out_of_order
        )
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn data(seq: u64) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        Datagram::emit_data(&mut b, seq, 0);
        b
    }

    #[test]
    fn closes_with_every_term() {
        let mut t = Tally::new();
        for seq in 0..10 {
            t.on_datagram(&data(seq), None);
        }
        // 5 datagrams dropped by the kernel, then 10 more arrive carrying it.
        for seq in 15..25 {
            t.on_datagram(&data(seq), Some(5));
        }
        assert_eq!(
            t.on_datagram(b"junk", Some(5)),
            Verdict::Foreign(Foreign::TooShort { len: 4 })
        );
        // copy 0 of 3 lost too: the counter says 6.
        let s = Datagram::sentinel(25, 1, 3, 0);
        assert_eq!(
            t.on_datagram(&s, Some(6)),
            Verdict::Sentinel { first: true }
        );
        assert!(!t.all_sentinels_in());
        let s = Datagram::sentinel(25, 2, 3, 0);
        assert_eq!(
            t.on_datagram(&s, Some(6)),
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
        assert!(l.closes());
        assert_eq!(l.drop_fraction(), Some(8.0 / 25.0));
        assert!(l.to_string().contains("the books close"));
    }

    #[test]
    fn residual_when_not_explained() {
        let mut t = Tally::new();
        t.on_datagram(&data(0), None);
        t.on_datagram(&Datagram::sentinel(3, 0, 1, 0), None);
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
        t.on_datagram(&data(0), Some(u32::MAX));
        t.on_datagram(&data(1), Some(2));
        assert_eq!(t.kernel_drops, (1u64 << 32) | 2);
    }

    #[test]
    fn late_and_out_of_order() {
        let mut t = Tally::new();
        t.on_datagram(&data(5), None);
        t.on_datagram(&data(3), None);
        t.on_datagram(&Datagram::sentinel(6, 0, 1, 0), None);
        t.on_datagram(&data(6), None);
        assert_eq!((t.out_of_order, t.late), (1, 1));
    }
}
