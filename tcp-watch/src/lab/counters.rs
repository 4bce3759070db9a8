//! The sender kernel's own TCP counters, read from `/proc/net/snmp` (the
//! `Tcp:` MIB of RFC 4022: `OutSegs`, `RetransSegs`) and `/proc/net/netstat`
//! (Linux's `TcpExt:` counters) of one network namespace: what `nstat -az`
//! shows, without `nstat`'s history files, which would make a second run's
//! figures depend on the first.
//!
//! Both files hold pairs of lines, a header of names then a line of values,
//! each starting with the same `Prefix:`.

use serde::Serialize;

/// The counters the lab compares with a capture, or their change over a
/// run. Names as `nstat` prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct KernelCounters {
    /// `TcpOutSegs`: segments sent, retransmissions excluded (Linux counts a
    /// segment here only when it carries new sequence space or none).
    pub out_segs: u64,
    /// `TcpRetransSegs`: every retransmitted segment.
    pub retrans_segs: u64,
    /// `TCPFastRetrans`: retransmissions in fast recovery (RFC 5681, 6675).
    pub fast_retrans: u64,
    /// `TCPTimeouts`: retransmission timer firings (RFC 6298).
    pub timeouts: u64,
    /// `TCPLossProbes`: tail-loss probes sent (RFC 8985).
    pub loss_probes: u64,
    /// `TCPSackRecovery`: recovery episodes entered with SACK.
    pub sack_recovery: u64,
    /// `TCPLostRetransmit`: retransmissions found lost again.
    pub lost_retransmit: u64,
    /// `TCPDSACKRecv`: D-SACK blocks received (RFC 2883).
    pub dsack_recv: u64,
}

impl KernelCounters {
    /// The counters in `snmp` (`/proc/net/snmp`) and `netstat`
    /// (`/proc/net/netstat`); the error names the first one missing.
    pub fn parse(snmp: &str, netstat: &str) -> Result<KernelCounters, String> {
        let get = |text: &str, prefix: &str, name: &str| {
            field(text, prefix, name).ok_or_else(|| format!("no {prefix} {name} counter"))
        };
        Ok(KernelCounters {
            out_segs: get(snmp, "Tcp", "OutSegs")?,
            retrans_segs: get(snmp, "Tcp", "RetransSegs")?,
            fast_retrans: get(netstat, "TcpExt", "TCPFastRetrans")?,
            timeouts: get(netstat, "TcpExt", "TCPTimeouts")?,
            loss_probes: get(netstat, "TcpExt", "TCPLossProbes")?,
            sack_recovery: get(netstat, "TcpExt", "TCPSackRecovery")?,
            lost_retransmit: get(netstat, "TcpExt", "TCPLostRetransmit")?,
            dsack_recv: get(netstat, "TcpExt", "TCPDSACKRecv")?,
        })
    }

    /// What changed from `before` to `self` (counters only grow; a smaller
    /// value, from a namespace that was replaced, reads as 0).
    pub fn since(self, before: KernelCounters) -> KernelCounters {
        KernelCounters {
            out_segs: self.out_segs.saturating_sub(before.out_segs),
            retrans_segs: self.retrans_segs.saturating_sub(before.retrans_segs),
            fast_retrans: self.fast_retrans.saturating_sub(before.fast_retrans),
            timeouts: self.timeouts.saturating_sub(before.timeouts),
            loss_probes: self.loss_probes.saturating_sub(before.loss_probes),
            sack_recovery: self.sack_recovery.saturating_sub(before.sack_recovery),
            lost_retransmit: self.lost_retransmit.saturating_sub(before.lost_retransmit),
            dsack_recv: self.dsack_recv.saturating_sub(before.dsack_recv),
        }
    }

    /// Reads the counters of the calling thread's network namespace
    /// (`/proc/thread-self/net`: `/proc/net` would show the main thread's).
    pub fn read_this_thread() -> Result<KernelCounters, String> {
        let read = |name: &str| {
            let path = format!("/proc/thread-self/net/{name}");
            std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))
        };
        KernelCounters::parse(&read("snmp")?, &read("netstat")?)
    }
}

/// The value of `name` in the `prefix:` header/value line pair of `text`.
fn field(text: &str, prefix: &str, name: &str) -> Option<u64> {
    let tag = format!("{prefix}:");
    let mut lines = text
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(&tag));
    // A prefix may head several pairs (it does not today); look in each.
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        let at = names.split_whitespace().position(|n| n == name);
        if let Some(i) = at {
            return values.split_whitespace().nth(i)?.parse().ok();
        }
    }
    None
}

#[cfg(test)]
mod test {
    use super::*;

    const SNMP: &str = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
        Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors\n\
        Tcp: 1 200 120000 -1 3 0 0 0 0 1500 2100 37 0 1 0\n\
        Udp: InDatagrams NoPorts\nUdp: 5 0\n";
    const NETSTAT: &str = "TcpExt: SyncookiesSent TCPLostRetransmit TCPFastRetrans TCPTimeouts TCPLossProbes TCPSackRecovery TCPDSACKRecv\n\
        TcpExt: 0 2 30 4 3 5 1\n\
        IpExt: InNoRoutes OutOctets\nIpExt: 0 99\n";

    #[test]
    fn counters_are_found_by_name_in_their_line_pair() {
        let c = KernelCounters::parse(SNMP, NETSTAT).unwrap();
        assert_eq!(
            c,
            KernelCounters {
                out_segs: 2100,
                retrans_segs: 37,
                fast_retrans: 30,
                timeouts: 4,
                loss_probes: 3,
                sack_recovery: 5,
                lost_retransmit: 2,
                dsack_recv: 1,
            }
        );
        let later = KernelCounters {
            out_segs: 2200,
            ..c
        };
        assert_eq!(later.since(c).out_segs, 100);
        assert_eq!(c.since(later).out_segs, 0);
        assert_eq!(later.since(c).retrans_segs, 0);
    }

    #[test]
    fn a_missing_counter_is_named() {
        let e = KernelCounters::parse(SNMP, "TcpExt: TCPTimeouts\nTcpExt: 1\n").unwrap_err();
        assert!(e.contains("TCPFastRetrans"), "{e}");
        assert_eq!(field("Tcp: OutSegs\n", "Tcp", "OutSegs"), None);
    }

    #[test]
    fn this_threads_namespace_is_readable() {
        // Every Linux kernel the lab runs on has these counters.
        KernelCounters::read_this_thread().unwrap();
    }
}
