//! What a sweep found, as data: the configurations ([`SinkSetup`]), each
//! trial ([`Trial`]), which side limited it ([`Limit`]), the highest
//! loss-free rate of each configuration ([`Maximum`]), and the whole
//! [`SweepTable`] with its Markdown and CSV forms.
//!
//! Shared by [`crate::sweep`] (which runs the trials) and [`crate::plot`]
//! (which draws them); it depends on neither.

use std::fmt::Write as _;

use serde::Serialize;

use crate::sink::Mode;

/// The drop fraction a configuration may have at its maximum rate (0.01 %).
pub const LOSS_FREE: f64 = 1e-4;

/// A sender reaching less than this fraction of the offered rate is the limit.
pub(crate) const SENDER_SHORTFALL: f64 = 0.95;

/// One configuration of the sink (and of the blaster that feeds it).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SinkSetup {
    /// Split or inline.
    pub mode: Mode,
    /// `SO_RCVBUF` request, bytes (`None`: default).
    #[serde(rename = "rcvbuf_bytes")]
    pub rcvbuf: Option<usize>,
    /// Buffers per `recvmmsg`.
    pub batch: usize,
    /// `UDP_GRO` on the sink's sockets.
    pub gro: bool,
    /// Receiver threads (`SO_REUSEPORT` sockets).
    pub receivers: usize,
    /// The blaster's sending threads.
    pub threads: usize,
    /// The blaster's datagrams per GSO message (1: no GSO).
    pub gso: usize,
}

impl Default for SinkSetup {
    /// Split, 4 MiB, batch 32, one receiver without GRO, one sending
    /// thread without GSO.
    fn default() -> SinkSetup {
        SinkSetup {
            mode: Mode::Split,
            rcvbuf: Some(4 << 20),
            batch: 32,
            gro: false,
            receivers: 1,
            threads: 1,
            gso: 1,
        }
    }
}

impl SinkSetup {
    /// The sink's side alone: one receiver, no GRO, a plain blaster.
    pub fn plain(mode: Mode, rcvbuf: Option<usize>, batch: usize) -> SinkSetup {
        SinkSetup {
            mode,
            rcvbuf,
            batch,
            ..SinkSetup::default()
        }
    }

    /// Short label, e.g. `split rcvbuf=4M batch=32`, then what differs from
    /// one plain receiver and sender: ` gro rx=2 + tx=2 gso=32`.
    pub fn label(&self) -> String {
        let buf = match self.rcvbuf {
            None => "default".to_string(),
            Some(b) if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{}M", b >> 20),
            Some(b) if b % 1024 == 0 => format!("{}K", b >> 10),
            Some(b) => b.to_string(),
        };
        let mut l = format!("{} rcvbuf={} batch={}", self.mode, buf, self.batch);
        if self.gro {
            l.push_str(" gro");
        }
        if self.receivers > 1 {
            l.push_str(&format!(" rx={}", self.receivers));
        }
        if self.threads > 1 || self.gso > 1 {
            l.push_str(&format!(" + tx={} gso={}", self.threads, self.gso));
        }
        l
    }
}

/// Which side set a trial's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// The blaster reached the rate asked and the sink dropped at most
    /// [`LOSS_FREE`]: neither side was at its limit.
    Neither,
    /// The blaster fell short of the rate asked (below 95 % of it, or cut
    /// at its deadline): the figure measures the sender.
    Sender,
    /// The sink dropped more than [`LOSS_FREE`] of what it was offered.
    Sink,
    /// Both: the blaster fell short of the rate asked and the sink still
    /// dropped more than [`LOSS_FREE`] of what it got.
    Both,
}

impl Limit {
    /// Judges a trial from the rate asked and reached and the drops.
    pub fn of(offered: f64, achieved: f64, sender_limited: bool, drop_fraction: f64) -> Limit {
        let short = sender_limited || (offered > 0.0 && achieved < SENDER_SHORTFALL * offered);
        match (short, drop_fraction > LOSS_FREE) {
            (true, true) => Limit::Both,
            (false, true) => Limit::Sink,
            (true, false) => Limit::Sender,
            (false, false) => Limit::Neither,
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Limit::Neither => "neither",
            Limit::Sender => "sender",
            Limit::Sink => "sink",
            Limit::Both => "both",
        })
    }
}

/// One sink + blast run.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    /// The configuration.
    pub setup: SinkSetup,
    /// Its label.
    pub label: String,
    /// Granted `SO_RCVBUF`, bytes.
    #[serde(rename = "rcvbuf_granted_bytes")]
    pub rcvbuf_granted: usize,
    /// Work per datagram, µs.
    pub work_us: f64,
    /// Offered rate, datagrams/s.
    #[serde(rename = "offered_per_s")]
    pub offered: f64,
    /// What the sender achieved, datagrams/s.
    #[serde(rename = "achieved_per_s")]
    pub achieved: f64,
    /// Datagrams sent.
    pub sent: u64,
    /// Processed.
    pub delivered: u64,
    /// Dropped in the queue.
    pub queue_dropped: u64,
    /// Dropped by the kernel at the socket.
    pub kernel_dropped: u64,
    /// With GRO: the messages the kernel counted dropped (its counters,
    /// `RcvbufErrors` included, count messages then).
    pub kernel_messages_dropped: Option<u64>,
    /// The ledger's residual (`None`: no sentinel).
    pub residual: Option<i64>,
    /// `RcvbufErrors` growth (namespace runs).
    pub rcvbuf_errors: Option<u64>,
    /// (sent - delivered) / sent.
    pub drop_fraction: f64,
    /// Datagrams per receive call.
    pub datagrams_per_call: f64,
    /// Every `recvmmsg` call of the sink per datagram received.
    pub recv_syscalls_per_datagram: f64,
    /// achieved / offered.
    pub achieved_fraction: f64,
    /// Which side limited the trial.
    pub limited_by: Limit,
    /// Part of the fixed grid (else a search probe).
    pub grid: bool,
}

/// The sweep's results.
#[derive(Debug, Clone, Serialize)]
pub struct SweepTable {
    /// Work per datagram, µs.
    pub work_us: f64,
    /// Seconds per trial.
    #[serde(rename = "trial_duration_s")]
    pub secs: f64,
    /// Datagram size, bytes (header included).
    #[serde(rename = "datagram_bytes")]
    pub size: usize,
    /// Whether the sink ran in its own namespace.
    pub netns: bool,
    /// A stop was requested: the table holds only the trials that finished.
    pub interrupted: bool,
    /// Per configuration: the highest loss-free rate.
    pub maxima: Vec<Maximum>,
    /// Every trial, in the order run.
    pub trials: Vec<Trial>,
}

/// The search's answer for one configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Maximum {
    /// The configuration.
    pub setup: SinkSetup,
    /// Its label.
    pub label: String,
    /// Granted `SO_RCVBUF`, bytes.
    #[serde(rename = "rcvbuf_granted_bytes")]
    pub rcvbuf_granted: usize,
    /// Highest offered rate with at most 0.01 % drops (`None`: none passed).
    #[serde(rename = "max_rate_per_s")]
    pub max_rate: Option<f64>,
    /// The sender could not offer more.
    pub sender_limited: bool,
    /// The rate the blaster reached in the trial at `max_rate`.
    #[serde(rename = "achieved_per_s")]
    pub achieved: Option<f64>,
    /// What stopped the search going higher: the sink's drops at the next
    /// rate tried, or the sender.
    pub ceiling: Limit,
    /// Trials run.
    pub trials: usize,
    /// Every trial's account closed.
    pub all_closed: bool,
}

fn pct(f: f64) -> String {
    if f == 0.0 {
        "0".into()
    } else if f < 0.001 {
        format!("{:.4} %", f * 100.0)
    } else {
        format!("{:.2} %", f * 100.0)
    }
}

impl SweepTable {
    /// Markdown: the maxima (when searched), then drop % per configuration
    /// at each grid rate.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{}-byte datagrams, {} us of work per datagram, {} s per trial{}",
            self.size,
            self.work_us,
            self.secs,
            if self.netns {
                ", sink in its own network namespace (veth)"
            } else {
                ", loopback"
            }
        );
        if self.interrupted {
            let _ = writeln!(
                s,
                "INTERRUPTED: only the {} trials that finished are shown",
                self.trials.len()
            );
        }
        if !self.maxima.is_empty() {
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "| configuration | SO_RCVBUF granted | max rate with <= 0.01 % drops | blaster reached | limited by | trials | books closed |"
            );
            let _ = writeln!(s, "|---|---:|---:|---:|---|---:|---|");
            for m in &self.maxima {
                let _ = writeln!(
                    s,
                    "| {} | {} | {}{} | {} | {} | {} | {} |",
                    m.label,
                    m.rcvbuf_granted,
                    m.max_rate
                        .map_or("none passed".into(), |r| format!("{r:.0}/s")),
                    if m.sender_limited {
                        " (sender-limited)"
                    } else {
                        ""
                    },
                    m.achieved.map_or("-".into(), |a| format!("{a:.0}/s")),
                    m.ceiling,
                    m.trials,
                    if m.all_closed { "yes" } else { "NO" }
                );
            }
        }
        let mut rates: Vec<f64> = self
            .trials
            .iter()
            .filter(|t| t.grid)
            .map(|t| t.offered)
            .collect();
        rates.sort_by(f64::total_cmp);
        rates.dedup();
        if !rates.is_empty() {
            let _ = writeln!(s);
            let _ = write!(s, "| configuration | SO_RCVBUF granted |");
            for r in &rates {
                let _ = write!(s, " drops at {:.0}k/s |", r / 1000.0);
            }
            let _ = writeln!(s, " books closed |");
            let _ = write!(s, "|---|---:|");
            for _ in &rates {
                let _ = write!(s, "---:|");
            }
            let _ = writeln!(s, "---|");
            let mut labels: Vec<&str> = Vec::new();
            for t in &self.trials {
                if !labels.contains(&t.label.as_str()) {
                    labels.push(&t.label);
                }
            }
            for label in labels {
                let of: Vec<&Trial> = self
                    .trials
                    .iter()
                    .filter(|t| t.label == label && t.grid)
                    .collect();
                let granted = of.first().map_or(0, |t| t.rcvbuf_granted);
                let _ = write!(s, "| {label} | {granted} |");
                for r in &rates {
                    match of.iter().find(|t| t.offered == *r) {
                        Some(t) => {
                            let _ = write!(s, " {} |", pct(t.drop_fraction));
                        }
                        None => {
                            let _ = write!(s, " |");
                        }
                    }
                }
                let closed = of.iter().all(|t| t.residual == Some(0));
                let _ = writeln!(s, " {} |", if closed { "yes" } else { "NO" });
            }
        }
        s
    }

    /// Every trial as CSV, with a header line.
    pub fn to_csv(&self) -> String {
        let mut s = String::from(
            "mode,rcvbuf_requested,rcvbuf_granted,batch,work_us,offered,achieved,sent,delivered,queue_dropped,kernel_dropped,residual,rcvbuf_errors,drop_fraction,datagrams_per_call,grid,gro,receivers,threads,gso,recv_syscalls_per_datagram,limited_by,kernel_messages_dropped\n",
        );
        for t in &self.trials {
            let _ = writeln!(
                s,
                "{},{},{},{},{},{:.0},{:.0},{},{},{},{},{},{},{:.6},{:.2},{},{},{},{},{},{:.6},{},{}",
                t.setup.mode,
                t.setup.rcvbuf.map_or("default".into(), |b| b.to_string()),
                t.rcvbuf_granted,
                t.setup.batch,
                t.work_us,
                t.offered,
                t.achieved,
                t.sent,
                t.delivered,
                t.queue_dropped,
                t.kernel_dropped,
                t.residual.map_or("".into(), |r| r.to_string()),
                t.rcvbuf_errors.map_or("".into(), |r| r.to_string()),
                t.drop_fraction,
                t.datagrams_per_call,
                t.grid,
                t.setup.gro,
                t.setup.receivers,
                t.setup.threads,
                t.setup.gso,
                t.recv_syscalls_per_datagram,
                t.limited_by,
                t.kernel_messages_dropped
                    .map_or("".into(), |m| m.to_string())
            );
        }
        s
    }
}

impl std::fmt::Display for SweepTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_markdown())
    }
}
