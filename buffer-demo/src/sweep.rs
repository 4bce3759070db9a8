//! Sweeps: sink and blast in-process for a grid of offered rates and
//! configurations, and a search for the highest rate each configuration
//! takes with at most 0.01 % drops.
//!
//! [`RateSearch`] is sans-IO: it proposes rates and is told the outcomes.
//! Doubling from the start rate until a trial fails (or halving until one
//! passes), then geometric bisection until the bracket is within the
//! precision. A sender that cannot reach the offered rate caps the search
//! at what it achieved (reported as sender-limited).

use std::path::Path;
use std::time::Duration;

use crate::account::Expect;
use crate::error::{Error, Result};
use crate::loadgen::{BlastConfig, MAX_RATE, blast, random_nonce};
use crate::netns::Netns;
use crate::sink::{MAX_WORK_US, Mode, Sink, SinkConfig};
use crate::stop::Stop;
use crate::table::SENDER_SHORTFALL;
pub use crate::table::{LOSS_FREE, Limit, Maximum, SinkSetup, SweepTable, Trial};

/// The longest trial, seconds.
pub const MAX_TRIAL_SECS: f64 = 600.0;
/// Most trials per configuration.
pub const MAX_TRIALS: usize = 1000;

/// The rate search, sans-IO.
#[derive(Debug, Clone)]
pub struct RateSearch {
    min: f64,
    max: f64,
    precision: f64,
    max_trials: usize,
    trials: usize,
    best_pass: Option<f64>,
    lowest_fail: Option<f64>,
    start: f64,
    sender_limited: bool,
}

impl RateSearch {
    /// Search `min..=max` datagrams/s starting at `start`, until the
    /// bracket's ratio is within `1 + precision` or `max_trials` ran.
    pub fn new(start: f64, min: f64, max: f64, precision: f64, max_trials: usize) -> RateSearch {
        RateSearch {
            min,
            max,
            precision,
            max_trials,
            trials: 0,
            best_pass: None,
            lowest_fail: None,
            start: start.clamp(min, max),
            sender_limited: false,
        }
    }

    /// Records a trial: `offered` rate, the sender's `achieved` rate, and
    /// whether the drops stayed within [`LOSS_FREE`].
    pub fn record(&mut self, offered: f64, achieved: f64, passed: bool) {
        self.trials += 1;
        if passed {
            let rate = if achieved < SENDER_SHORTFALL * offered {
                self.sender_limited = true;
                self.max = self.max.min(achieved);
                achieved
            } else {
                offered
            };
            self.best_pass = Some(self.best_pass.map_or(rate, |b: f64| b.max(rate)));
        } else {
            self.lowest_fail = Some(self.lowest_fail.map_or(offered, |f: f64| f.min(offered)));
        }
    }

    /// The next rate to try, or `None` when the search is done.
    pub fn next_rate(&self) -> Option<f64> {
        if self.trials >= self.max_trials {
            return None;
        }
        match (self.best_pass, self.lowest_fail) {
            (None, None) => Some(self.start),
            (Some(p), None) if p >= self.max * 0.999 => None,
            (Some(p), None) => Some((p * 2.0).min(self.max)),
            (None, Some(f)) if f <= self.min * 1.001 => None,
            (None, Some(f)) => Some((f / 2.0).max(self.min)),
            (Some(p), Some(f)) if f <= p * (1.0 + self.precision) => None,
            (Some(p), Some(f)) => Some((p * f).sqrt()),
        }
    }

    /// The highest rate that passed.
    pub fn best(&self) -> Option<f64> {
        self.best_pass
    }

    /// True when the sender, not the sink, set the ceiling.
    pub fn sender_limited(&self) -> bool {
        self.sender_limited
    }
}

/// How to sweep.
#[derive(Debug, Clone)]
pub struct SweepConfig {
    /// Configurations to measure.
    pub setups: Vec<SinkSetup>,
    /// Work per datagram, µs.
    pub work_us: f64,
    /// Seconds of sending per trial.
    pub secs: f64,
    /// Datagram size.
    pub size: usize,
    /// Fixed offered rates run for every configuration (the chart's grid).
    pub grid: Vec<f64>,
    /// Search for the highest loss-free rate after the grid.
    pub search: bool,
    /// Search bounds, datagrams/s.
    pub min_rate: f64,
    /// Upper bound.
    pub max_rate: f64,
    /// Search precision (0.1: within 10 %).
    pub precision: f64,
    /// Trials per configuration at most (grid included).
    pub max_trials: usize,
    /// Run the sink in its own namespace.
    pub netns: bool,
    /// Optional `tbf` rate on the host side of the veth pair (`200mbit`).
    pub tbf: Option<String>,
    /// Stops the sweep between (or inside) trials: the table then holds
    /// the trials that finished.
    pub stop: Stop,
}

impl SweepConfig {
    /// The grid: inline/split x 8 KiB/default/4 MiB x batch 1/32.
    pub fn full(work_us: f64) -> SweepConfig {
        let mut setups = Vec::new();
        for mode in [Mode::Inline, Mode::Split] {
            for rcvbuf in [Some(8 * 1024), None, Some(4 << 20)] {
                for batch in [1, 32] {
                    setups.push(SinkSetup::plain(mode, rcvbuf, batch));
                }
            }
        }
        // The blaster at its limit (2 threads, GSO 32) into split sinks:
        // plain, with GRO, and with GRO on 2 receivers.
        for (gro, receivers) in [(false, 1), (true, 1), (true, 2)] {
            setups.push(SinkSetup {
                gro,
                receivers,
                threads: 2,
                gso: 32,
                ..SinkSetup::default()
            });
        }
        SweepConfig {
            setups,
            work_us,
            secs: 1.0,
            size: 64,
            grid: vec![50_000.0, 150_000.0, 450_000.0],
            search: true,
            min_rate: 5_000.0,
            max_rate: 40_000_000.0,
            precision: 0.1,
            max_trials: 12,
            netns: false,
            tbf: None,
            stop: Stop::new(),
        }
    }
}

/// The trial length `secs` as a duration, when it is one we run.
fn trial_duration(secs: f64) -> Result<Duration> {
    if !(secs.is_finite() && secs > 0.0 && secs <= MAX_TRIAL_SECS) {
        return Err(Error::Config(format!(
            "trial length {secs} s is not above 0 and at most {MAX_TRIAL_SECS} s"
        )));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Runs one trial: a fresh sink (in `netns` if given), a blast at it. The
/// sink is told the blast's nonce, so nothing else sent to its port can
/// close its books. Returns [`Error::Interrupted`] when `stop` was
/// requested meanwhile.
pub fn run_trial(
    setup: SinkSetup,
    work_us: f64,
    rate: f64,
    secs: f64,
    size: usize,
    netns: Option<&Netns>,
    stop: &Stop,
) -> Result<Trial> {
    let duration = trial_duration(secs)?;
    let nonce = random_nonce()?;
    let sink = Sink::bind(SinkConfig {
        bind: match netns {
            Some(ns) => ns.sink_addr(0),
            None => ([127, 0, 0, 1], 0).into(),
        },
        rcvbuf: setup.rcvbuf,
        mode: setup.mode,
        batch: setup.batch,
        gro: setup.gro,
        receivers: setup.receivers,
        work_us,
        timeout: Some(duration + Duration::from_secs(30)),
        linger: Duration::from_millis(200),
        netns: netns.map(|n| n.name().to_string()),
        expect: Expect {
            nonce: Some(nonce),
            source: None,
        },
        stop: stop.clone(),
        ..SinkConfig::default()
    })?;
    let granted = sink.rcvbuf().granted;
    let to = sink.local_addr();
    let (sink_result, blast_result) = std::thread::scope(|s| {
        let h = s.spawn(move || sink.run());
        let b = blast(&BlastConfig {
            to,
            rate,
            size,
            duration,
            threads: setup.threads,
            gso: setup.gso,
            batch: if setup.gso > 1 { 8 } else { 32 },
            drain: Duration::from_millis(50),
            sentinel_gap: Duration::from_millis(5),
            nonce: Some(nonce),
            stop: stop.clone(),
            ..BlastConfig::default()
        });
        (h.join().expect("sink thread panicked"), b)
    });
    let (r, b) = (sink_result?, blast_result?);
    if stop.requested() || r.interrupted || b.interrupted {
        return Err(Error::Interrupted { what: "the trial" });
    }
    let l = &r.ledger;
    let drop_fraction = l.drop_fraction().unwrap_or(1.0);
    let limited_by = Limit::of(rate, b.achieved_rate, b.sender_limited, drop_fraction);
    if matches!(limited_by, Limit::Sender | Limit::Both) {
        tracing::warn!(
            label = %setup.label(),
            asked = %format_args!("{rate:.0}/s"),
            reached = %format_args!("{:.0}/s", b.achieved_rate),
            "sender-limited trial: it measures the blaster, not the sink"
        );
    }
    let trial = Trial {
        setup,
        label: setup.label(),
        rcvbuf_granted: granted,
        work_us,
        offered: rate,
        achieved: b.achieved_rate,
        sent: b.sent,
        delivered: l.delivered,
        queue_dropped: l.queue_dropped,
        kernel_dropped: l.kernel_dropped.unwrap_or(0),
        kernel_messages_dropped: l.kernel_messages_dropped,
        residual: if l.closes() || l.residual != Some(0) {
            l.residual
        } else {
            // Balanced, but the kernel's message count disagrees with the
            // messages missing: not closed.
            Some(
                l.kernel_messages_dropped.unwrap_or(0) as i64
                    - l.messages_missing.unwrap_or(0) as i64,
            )
        },
        rcvbuf_errors: l.rcvbuf_errors,
        drop_fraction,
        datagrams_per_call: r.datagrams_per_call,
        recv_syscalls_per_datagram: r.recv_syscalls_per_datagram,
        achieved_fraction: if rate > 0.0 {
            b.achieved_rate / rate
        } else {
            0.0
        },
        limited_by,
        grid: true,
    };
    tracing::info!(
        label = %trial.label,
        offered = trial.offered,
        drops = trial.drop_fraction,
        residual = %trial.residual.map_or("unknown".into(), |r| r.to_string()),
        "trial"
    );
    Ok(trial)
}

fn check(cfg: &SweepConfig) -> Result<()> {
    trial_duration(cfg.secs)?;
    let rate_ok = |r: f64| r.is_finite() && r > 0.0 && r <= MAX_RATE;
    if let Some(r) = cfg.grid.iter().find(|r| !rate_ok(**r)) {
        return Err(Error::Config(format!(
            "grid rate {r} is not above 0 and at most {MAX_RATE} datagrams/s"
        )));
    }
    if !(rate_ok(cfg.min_rate) && rate_ok(cfg.max_rate) && cfg.min_rate <= cfg.max_rate) {
        return Err(Error::Config(format!(
            "search bounds {} and {} are not rates above 0 and at most {MAX_RATE}, the first the lower",
            cfg.min_rate, cfg.max_rate
        )));
    }
    if !(cfg.precision.is_finite() && cfg.precision > 0.0) || cfg.max_trials > MAX_TRIALS {
        return Err(Error::Config(format!(
            "search precision {} must be above 0, trials {} at most {MAX_TRIALS}",
            cfg.precision, cfg.max_trials
        )));
    }
    if !(cfg.work_us.is_finite() && (0.0..=MAX_WORK_US).contains(&cfg.work_us)) {
        return Err(Error::Config(format!(
            "work {} us is not between 0 and {MAX_WORK_US} us",
            cfg.work_us
        )));
    }
    Ok(())
}

/// Runs the sweep; `progress` is called after each trial. With
/// `cfg.netns` it creates the namespace (and removes it, however the
/// sweep ends); see [`sweep_in`] to bring one's own.
pub fn sweep(cfg: &SweepConfig, progress: impl FnMut(&Trial)) -> Result<SweepTable> {
    check(cfg)?;
    let ns = if cfg.netns {
        Some(Netns::create(cfg.tbf.as_deref())?)
    } else {
        None
    };
    sweep_in(cfg, ns.as_ref(), progress)
}

/// Runs the sweep with the sink in `ns` (when given; `cfg.netns` and
/// `cfg.tbf` are then not used). A stop request ends it after the trial
/// under way, which is left out: the table says `interrupted`.
pub fn sweep_in(
    cfg: &SweepConfig,
    ns: Option<&Netns>,
    mut progress: impl FnMut(&Trial),
) -> Result<SweepTable> {
    check(cfg)?;
    let mut table = SweepTable {
        work_us: cfg.work_us,
        secs: cfg.secs,
        size: cfg.size,
        netns: ns.is_some(),
        interrupted: false,
        maxima: Vec::new(),
        trials: Vec::new(),
    };
    match run_setups(cfg, ns, &mut progress, &mut table) {
        Ok(()) => Ok(table),
        Err(Error::Interrupted { .. }) => {
            table.interrupted = true;
            Ok(table)
        }
        Err(e) => Err(e),
    }
}

fn run_setups(
    cfg: &SweepConfig,
    ns: Option<&Netns>,
    progress: &mut impl FnMut(&Trial),
    table: &mut SweepTable,
) -> Result<()> {
    for &setup in &cfg.setups {
        let mut search = RateSearch::new(
            cfg.grid.first().copied().unwrap_or(100_000.0),
            cfg.min_rate,
            cfg.max_rate,
            cfg.precision,
            cfg.max_trials,
        );
        let mut granted = 0;
        let mut all_closed = true;
        let mut n = 0;
        let mut best: Option<(f64, f64)> = None;
        let mut ceiling = Limit::Neither;
        let mut lowest_fail = f64::INFINITY;
        let mut one = |rate: f64, grid: bool, search: &mut RateSearch| -> Result<()> {
            let mut t = run_trial(setup, cfg.work_us, rate, cfg.secs, cfg.size, ns, &cfg.stop)?;
            t.grid = grid;
            if t.drop_fraction <= LOSS_FREE {
                if best.is_none_or(|(o, _)| t.offered > o) {
                    best = Some((t.offered, t.achieved));
                }
                if t.limited_by == Limit::Sender {
                    ceiling = Limit::Sender;
                }
            } else if t.offered < lowest_fail {
                lowest_fail = t.offered;
                if ceiling != Limit::Sender {
                    ceiling = Limit::Sink;
                }
            }
            granted = t.rcvbuf_granted;
            all_closed &= t.residual == Some(0);
            n += 1;
            search.record(t.offered, t.achieved, t.drop_fraction <= LOSS_FREE);
            progress(&t);
            table.trials.push(t);
            Ok(())
        };
        for &rate in &cfg.grid {
            one(rate, true, &mut search)?;
        }
        if cfg.search {
            while let Some(rate) = search.next_rate() {
                one(rate, false, &mut search)?;
            }
            table.maxima.push(Maximum {
                setup,
                label: setup.label(),
                rcvbuf_granted: granted,
                max_rate: search.best(),
                sender_limited: search.sender_limited(),
                achieved: best.map(|(_, a)| a),
                ceiling: if search.sender_limited() {
                    Limit::Sender
                } else {
                    ceiling
                },
                trials: n,
                all_closed,
            });
        }
    }
    Ok(())
}

/// The tour's grid: inline vs split, 8 KiB vs 4 MiB, batch 32, and GRO on 2
/// receivers fed by 2 GSO threads; 1 µs of
/// work, three rates (100k, 300k, 600k/s), 0.3 s each, no search.
pub fn short_sweep_config() -> SweepConfig {
    let mut setups = Vec::new();
    for mode in [Mode::Inline, Mode::Split] {
        for rcvbuf in [Some(8 * 1024), Some(4 << 20)] {
            setups.push(SinkSetup::plain(mode, rcvbuf, 32));
        }
    }
    // And the sink at its best: GRO on 2 receivers, fed by 2 threads with GSO.
    setups.push(SinkSetup {
        gro: true,
        receivers: 2,
        threads: 2,
        gso: 32,
        ..SinkSetup::default()
    });
    SweepConfig {
        setups,
        secs: 0.3,
        grid: vec![100_000.0, 300_000.0, 600_000.0],
        search: false,
        ..SweepConfig::full(1.0)
    }
}

/// Runs [`short_sweep_config`] on 127.0.0.1:0 (15 trials, about 8 s).
pub fn short_sweep() -> Result<SweepTable> {
    sweep(&short_sweep_config(), |_| {})
}

impl SweepTable {
    /// Writes `results.csv`, `results.md`, `drops.svg` and `drops.png` into `dir`.
    pub fn write_outputs(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(Error::io(format!("create {}", dir.display())))?;
        let write = |name: &str, text: String| {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(Error::io(format!("write {}", p.display())))
        };
        write("results.csv", self.to_csv())?;
        write("results.md", self.to_markdown())?;
        crate::plot::chart(self, &dir.join("drops.svg"), &dir.join("drops.png"))
    }
}

#[cfg(test)]
mod test {
    use super::*;

    /// Runs the search against a sink that takes up to `capacity`, with a
    /// sender that tops out at `sender`.
    fn search(capacity: f64, sender: f64) -> RateSearch {
        let mut s = RateSearch::new(100_000.0, 1_000.0, 4_000_000.0, 0.05, 30);
        while let Some(r) = s.next_rate() {
            let achieved = r.min(sender);
            s.record(r, achieved, achieved <= capacity);
        }
        s
    }

    #[test]
    fn finds_capacity_within_precision() {
        for cap in [3_000.0, 70_000.0, 250_000.0, 1_300_000.0] {
            let s = search(cap, f64::MAX);
            let best = s.best().unwrap();
            assert!(best <= cap && best >= cap / 1.05, "cap {cap} best {best}");
            assert!(!s.sender_limited());
        }
    }

    #[test]
    fn sender_caps_the_search() {
        let s = search(f64::MAX, 600_000.0);
        assert!(s.sender_limited());
        assert_eq!(s.best(), Some(600_000.0));
    }

    #[test]
    fn nothing_passes() {
        let s = search(500.0, f64::MAX);
        assert_eq!(s.best(), None);
    }

    #[test]
    fn trial_budget() {
        let mut s = RateSearch::new(1.0, 1.0, 1e9, 0.0, 3);
        let mut n = 0;
        while let Some(r) = s.next_rate() {
            s.record(r, r, true);
            n += 1;
        }
        assert_eq!(n, 3);
    }

    #[test]
    fn labels() {
        let l = |rcvbuf| SinkSetup::plain(Mode::Split, rcvbuf, 32).label();
        assert_eq!(l(Some(4 << 20)), "split rcvbuf=4M batch=32");
        assert_eq!(l(Some(8192)), "split rcvbuf=8K batch=32");
        assert_eq!(l(None), "split rcvbuf=default batch=32");
        let gro = SinkSetup {
            gro: true,
            receivers: 2,
            threads: 2,
            gso: 32,
            ..SinkSetup::default()
        };
        assert_eq!(
            gro.label(),
            "split rcvbuf=4M batch=32 gro rx=2 + tx=2 gso=32"
        );
    }

    #[test]
    fn which_side_limits() {
        assert_eq!(Limit::of(1e6, 1e6, false, 0.0), Limit::Neither);
        assert_eq!(Limit::of(1e6, 0.9e6, false, 0.0), Limit::Sender);
        assert_eq!(Limit::of(1e6, 1e6, true, 0.0), Limit::Sender);
        assert_eq!(Limit::of(1e6, 1e6, false, 0.01), Limit::Sink);
        assert_eq!(Limit::of(1e6, 0.5e6, true, 0.01), Limit::Both);
    }
}
