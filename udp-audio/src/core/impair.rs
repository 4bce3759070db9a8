//! A user-space network impairment relay: loss (independent or Gilbert-Elliott bursts), fixed
//! delay, uniform jitter, reordering and duplication, for kernels without `netem`.
//!
//! ```text
//!  sender ──UDP──▶ [listen] Relay ──(Impairer decides a Fate)──▶ timer queue ──UDP──▶ [forward]
//! ```
//!
//! [`Impairer`] is the sans-IO core: it is told when a datagram arrives
//! ([`Impairer::on_datagram`], with `now` in microseconds) and answers with a [`Fate`], the
//! release times of 0, 1 or 2 copies. It never reads a clock and never touches a socket, so the
//! same seed and the same arrival times give the same fates. [`Relay`](crate::driver::relay::Relay) is the thin blocking
//! driver: one `std::net::UdpSocket` to receive, one to send, and a binary heap of pending
//! copies it releases at their times.
//!
//! # Models
//!
//! - **Loss, independent**: each datagram is lost with probability `loss`.
//! - **Loss, bursts** (`burst = Some(b)`): the two-state Gilbert model (the Gilbert-Elliott
//!   model with no loss in the good state and certain loss in the bad state). The bad state is
//!   left with probability `r = 1/b`, so bursts are geometric with mean `b`; it is entered with
//!   probability `p = loss·r/(1-loss)`, which makes the stationary loss exactly `loss`. Every
//!   burst needs at least one delivered datagram after it, so the mean gap `b(1-loss)/loss`
//!   must be at least 1: `loss <= b/(b+1)`. `b = 1/(1-loss)` reproduces independent loss.
//! - **Delay and jitter**: each copy is held `delay + U[0, jitter]`; jitter larger than the
//!   packet interval reorders by itself.
//! - **Reorder**: with probability `reorder` a datagram is held an extra 1.5 to 3.5 times
//!   the smoothed inter-arrival interval (an exponential average with gain 1/16, each gap
//!   capped at [`MAX_GAP_US`] so a pause in the stream is not taken for the packet rate). With
//!   steady arrivals it therefore leaves after the next one to three datagrams, and never
//!   exactly together with the next one (a tie would keep the order).
//! - **Duplicate**: with probability `duplicate` a second copy is released at
//!   `delay + U[0, jitter]` drawn independently (no reorder hold).
//!
//! Every datagram consumes the same six random numbers whatever the configuration, so
//! changing one impairment (say, adding duplication) does not change which datagrams another
//! one (loss) picks, and the loss and duplication decisions never depend on arrival times.
//!
//! Reordering is counted from the release times actually scheduled, not from the intent:
//! [`ImpairStats::reordered`] counts datagrams released before an earlier-arrived one,
//! [`ImpairStats::late`] those released after a later-arrived one (the RFC 4737 definition of
//! a reordered packet), and [`ImpairStats::reorder_holds`] the extra holds applied. Equal
//! release times leave in arrival order.

//!
//! The relay driver is [`crate::driver::relay`]; `udp_audio::impair` re-exports both.

use std::collections::VecDeque;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::error::{Error, Result};

/// Largest `--delay` and `--jitter`, in milliseconds.
pub const MAX_DELAY_MS: f64 = 10_000.0;
/// Longest mean burst a program takes (`impair --burst`, `quality --loss P/BURST`),
/// datagrams.
pub const MAX_BURST: f64 = 1e6;
/// Inter-arrival gaps longer than this (µs) count as this long in the smoothed interval that
/// scales reorder holds.
pub const MAX_GAP_US: f64 = 1_000_000.0;
/// Gain of the smoothed inter-arrival interval.
const GAP_GAIN: f64 = 1.0 / 16.0;
/// Reorder hold, in smoothed inter-arrival intervals: `HOLD_MIN + HOLD_SPAN · U[0, 1)`.
const HOLD_MIN: f64 = 1.5;
const HOLD_SPAN: f64 = 2.0;

/// What the relay does to the datagrams it forwards.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImpairConfig {
    /// Average loss probability, `--loss`, in [0, 1].
    pub loss: f64,
    /// Mean burst length in datagrams, `--burst` (>= 1): Gilbert-Elliott two-state loss with
    /// the same average loss. `None`: independent loss.
    pub burst: Option<f64>,
    /// Fixed delay in milliseconds, `--delay`, in [0, 10000].
    pub delay_ms: f64,
    /// Extra delay uniform in [0, jitter] per copy, `--jitter`, in milliseconds, [0, 10000].
    pub jitter_ms: f64,
    /// Probability that a datagram is held back behind its successors, `--reorder`.
    pub reorder: f64,
    /// Probability that a datagram is sent twice, `--duplicate`.
    pub duplicate: f64,
    /// Seed of the ChaCha8 generator, `--seed`.
    pub seed: u64,
}

impl std::fmt::Display for ImpairConfig {
    /// In words: "loss 10 % in bursts of mean 3, delay 20 ms plus up to 30 ms of jitter,
    /// reorder 0 %, duplicate 0 %, seed 1".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "loss {} %", 100.0 * self.loss)?;
        match self.burst {
            Some(b) => write!(f, " in bursts of mean {b}")?,
            None => write!(f, " independent")?,
        }
        write!(
            f,
            ", delay {} ms plus up to {} ms of jitter, reorder {} %, duplicate {} %, seed {}",
            self.delay_ms,
            self.jitter_ms,
            100.0 * self.reorder,
            100.0 * self.duplicate,
            self.seed
        )
    }
}

fn probability(flag: &str, value: f64) -> Result<()> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(Error::Config {
            what: format!("{flag} must be a probability in [0, 1], got {value}"),
        })
    }
}

fn milliseconds(flag: &str, value: f64) -> Result<()> {
    if (0.0..=MAX_DELAY_MS).contains(&value) {
        Ok(())
    } else {
        Err(Error::Config {
            what: format!("{flag} must be in [0, {MAX_DELAY_MS}] milliseconds, got {value}"),
        })
    }
}

impl ImpairConfig {
    /// Checks every value; the error names the flag, the valid range and the value given.
    ///
    /// NaN fails every range check.
    pub fn validate(&self) -> Result<()> {
        probability("--loss", self.loss)?;
        if let Some(burst) = self.burst {
            if !(burst.is_finite() && burst >= 1.0) {
                return Err(Error::Config {
                    what: format!(
                        "--burst is a mean burst length in datagrams and must be a finite number >= 1, got {burst}"
                    ),
                });
            }
            let most = burst / (burst + 1.0);
            if self.loss > most {
                return Err(Error::Config {
                    what: format!(
                        "--loss {} with --burst {burst}: bursts of {burst} datagrams on average allow a loss of at most {most:.4} (burst/(burst+1)), since each burst needs a delivered datagram after it",
                        self.loss
                    ),
                });
            }
        }
        milliseconds("--delay", self.delay_ms)?;
        milliseconds("--jitter", self.jitter_ms)?;
        probability("--reorder", self.reorder)?;
        probability("--duplicate", self.duplicate)?;
        Ok(())
    }
}

/// The release times of one datagram: none (dropped), one, or two (duplicated), in
/// microseconds on the caller's clock. The first time is the original copy's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fate {
    times: [u64; 2],
    len: u8,
}

impl Fate {
    /// A dropped datagram.
    pub const DROPPED: Fate = Fate {
        times: [0; 2],
        len: 0,
    };

    fn push(&mut self, at_us: u64) {
        self.times[usize::from(self.len)] = at_us;
        self.len += 1;
    }

    /// The release times, original copy first.
    pub fn times(&self) -> &[u64] {
        &self.times[..usize::from(self.len)]
    }

    /// Iterates over the release times, original copy first.
    pub fn iter(&self) -> std::iter::Copied<std::slice::Iter<'_, u64>> {
        self.times().iter().copied()
    }

    /// Copies to send: 0, 1 or 2.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether the datagram is dropped.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the datagram is dropped (same as [`Fate::is_empty`]).
    pub fn is_dropped(&self) -> bool {
        self.len == 0
    }

    /// The earliest release time, `None` when dropped.
    pub fn first_release(&self) -> Option<u64> {
        self.iter().min()
    }
}

impl IntoIterator for Fate {
    type Item = u64;
    type IntoIter = std::iter::Take<std::array::IntoIter<u64, 2>>;

    fn into_iter(self) -> Self::IntoIter {
        self.times.into_iter().take(usize::from(self.len))
    }
}

/// What the relay did, for the human report and for `--json`.
///
/// Accounting that closes: `received = dropped + overflow_dropped + (forwarded + send_failed
/// + discarded_at_stop - duplicated)`.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ImpairStats {
    /// Datagrams that arrived (including those dropped for a full queue).
    pub received: u64,
    /// Datagrams dropped by the loss model.
    pub dropped: u64,
    /// Runs of consecutive loss-model drops (in arrival order), including runs of one.
    pub bursts: u64,
    /// Loss-model drops that were part of a run of two or more.
    pub dropped_in_bursts: u64,
    /// The longest run of consecutive loss-model drops.
    pub longest_burst: u64,
    /// Datagrams the driver dropped because its queue was full ([`crate::driver::relay::MAX_PENDING`],
    /// [`crate::driver::relay::MAX_PENDING_BYTES`]).
    pub overflow_dropped: u64,
    /// Copies released: scheduled by the core; after [`Relay::run`](crate::driver::relay::Relay::run), actually handed to the
    /// socket (failed sends and copies still queued at stop are moved out).
    pub forwarded: u64,
    /// Datagrams given a second copy.
    pub duplicated: u64,
    /// Datagrams given an extra reorder hold (the intent; see `reordered` and `late`).
    pub reorder_holds: u64,
    /// Datagrams scheduled before at least one earlier-arrived datagram (they overtook).
    pub reordered: u64,
    /// Datagrams scheduled after at least one later-arrived datagram (RFC 4737 "reordered":
    /// they were overtaken).
    pub late: u64,
    /// Smallest delay applied to a copy, in microseconds (0 when nothing was forwarded).
    pub delay_min_us: u64,
    /// Mean delay applied to a copy, in microseconds.
    pub delay_mean_us: f64,
    /// Largest delay applied to a copy, in microseconds.
    pub delay_max_us: u64,
    /// Copies the socket refused to send.
    pub send_failed: u64,
    /// Copies still queued when the relay was stopped.
    pub discarded_at_stop: u64,
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

impl ImpairStats {
    /// Loss-model drops per datagram decided (overflow drops excluded), 0 with none.
    pub fn loss_rate(&self) -> f64 {
        let decided = self.received - self.overflow_dropped;
        if decided == 0 {
            0.0
        } else {
            self.dropped as f64 / decided as f64
        }
    }

    /// Mean length of a run of loss-model drops, 0 with none.
    pub fn mean_burst(&self) -> f64 {
        if self.bursts == 0 {
            0.0
        } else {
            self.dropped as f64 / self.bursts as f64
        }
    }

    /// A multi-line human summary.
    pub fn report(&self) -> String {
        let ms = |us: f64| us / 1000.0;
        format!(
            "received   {received} datagrams\n\
             dropped    {dropped} by the loss model ({loss:.2} %): {bursts} runs, mean {mean:.2}, longest {longest}, {in_bursts} in runs of 2+\n\
             overflow   {overflow} dropped for a full queue\n\
             forwarded  {forwarded} copies, {duplicated} datagrams duplicated ({dup:.2} %), {failed} send failures, {discarded} discarded at stop\n\
             reordered  {reordered} overtook an earlier datagram, {late} left after a later one ({late_pc:.2} %), {holds} reorder holds\n\
             delay      min {dmin:.3} ms, mean {dmean:.3} ms, max {dmax:.3} ms",
            received = self.received,
            dropped = self.dropped,
            loss = 100.0 * self.loss_rate(),
            bursts = self.bursts,
            mean = self.mean_burst(),
            longest = self.longest_burst,
            in_bursts = self.dropped_in_bursts,
            overflow = self.overflow_dropped,
            forwarded = self.forwarded,
            duplicated = self.duplicated,
            dup = percent(self.duplicated, self.received),
            failed = self.send_failed,
            discarded = self.discarded_at_stop,
            reordered = self.reordered,
            late = self.late,
            late_pc = percent(self.late, self.received),
            holds = self.reorder_holds,
            dmin = ms(self.delay_min_us as f64),
            dmean = ms(self.delay_mean_us),
            dmax = ms(self.delay_max_us as f64),
        )
    }
}

/// The loss model's state.
#[derive(Debug, Clone, Copy)]
enum LossModel {
    Independent,
    /// Gilbert two-state: `enter` = P(good → bad), `leave` = P(bad → good).
    Gilbert {
        enter: f64,
        leave: f64,
        bad: Option<bool>,
    },
}

/// The sans-IO impairment core: decides a [`Fate`] per arriving datagram.
#[derive(Debug, Clone)]
pub struct Impairer {
    cfg: ImpairConfig,
    rng: ChaCha8Rng,
    model: LossModel,
    stats: ImpairStats,
    /// Length of the current run of loss-model drops.
    run: u64,
    last_arrival_us: Option<u64>,
    /// Smoothed inter-arrival interval, µs; `None` until two datagrams arrived.
    interval_us: Option<f64>,
    /// Latest first-release time of any earlier datagram.
    max_first_release: Option<u64>,
    /// First-release times of datagrams not yet overtaken and not yet released, ascending
    /// (each arrival pops every larger time first, so the deque stays sorted).
    overtakable: VecDeque<u64>,
    delay_sum_us: u128,
    delayed_copies: u64,
}

impl Impairer {
    /// Validates `cfg` and seeds the generator from `cfg.seed`.
    pub fn new(cfg: ImpairConfig) -> Result<Self> {
        cfg.validate()?;
        let model = match cfg.burst {
            None => LossModel::Independent,
            Some(burst) => {
                let leave = 1.0 / burst;
                let enter = if cfg.loss == 0.0 {
                    0.0
                } else {
                    cfg.loss * leave / (1.0 - cfg.loss)
                };
                LossModel::Gilbert {
                    enter: enter.min(1.0),
                    leave,
                    bad: None,
                }
            }
        };
        Ok(Impairer {
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            cfg,
            model,
            stats: ImpairStats::default(),
            run: 0,
            last_arrival_us: None,
            interval_us: None,
            max_first_release: None,
            overtakable: VecDeque::new(),
            delay_sum_us: 0,
            delayed_copies: 0,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &ImpairConfig {
        &self.cfg
    }

    /// Decides what happens to one datagram arriving at `now_us`: its release times (none when
    /// dropped, two when duplicated), each at or after `now_us`.
    ///
    /// Call once per datagram in arrival order with a clock that does not go backwards; release
    /// copies in order of time, and equal times in the order they were returned.
    pub fn on_datagram(&mut self, now_us: u64) -> Fate {
        // Fixed draws per datagram: see the module docs.
        let u_loss: f64 = self.rng.random();
        let u_jitter: f64 = self.rng.random();
        let u_reorder: f64 = self.rng.random();
        let u_hold: f64 = self.rng.random();
        let u_dup: f64 = self.rng.random();
        let u_dup_jitter: f64 = self.rng.random();

        self.stats.received += 1;
        self.observe_arrival(now_us);

        if self.lose(u_loss) {
            self.stats.dropped += 1;
            self.run += 1;
            match self.run {
                1 => self.stats.bursts += 1,
                2 => self.stats.dropped_in_bursts += 2,
                _ => self.stats.dropped_in_bursts += 1,
            }
            self.stats.longest_burst = self.stats.longest_burst.max(self.run);
            return Fate::DROPPED;
        }
        self.run = 0;

        let base_us = self.cfg.delay_ms * 1000.0;
        let jitter_us = self.cfg.jitter_ms * 1000.0;
        let mut delay_us = base_us + jitter_us * u_jitter;
        if u_reorder < self.cfg.reorder {
            self.stats.reorder_holds += 1;
            delay_us += (HOLD_MIN + HOLD_SPAN * u_hold) * self.interval_us.unwrap_or(0.0);
        }
        let mut fate = Fate::default();
        self.schedule(&mut fate, now_us, delay_us);
        if u_dup < self.cfg.duplicate {
            self.stats.duplicated += 1;
            self.schedule(&mut fate, now_us, base_us + jitter_us * u_dup_jitter);
        }
        if let Some(first) = fate.first_release() {
            self.count_order(now_us, first);
        }
        fate
    }

    /// Records a datagram the driver dropped, without asking for a fate, because its queue was
    /// full. It consumes no random numbers and leaves the loss model's state alone.
    pub fn on_overflow(&mut self) {
        self.stats.received += 1;
        self.stats.overflow_dropped += 1;
    }

    /// Records that a scheduled copy could not be sent: moves it from `forwarded` to
    /// `send_failed`.
    pub fn on_send_failed(&mut self) {
        self.stats.forwarded = self.stats.forwarded.saturating_sub(1);
        self.stats.send_failed += 1;
    }

    /// Records `copies` scheduled copies thrown away at stop: moves them from `forwarded` to
    /// `discarded_at_stop`.
    pub fn on_discarded(&mut self, copies: u64) {
        self.stats.forwarded = self.stats.forwarded.saturating_sub(copies);
        self.stats.discarded_at_stop += copies;
    }

    /// The counters so far.
    pub fn stats(&self) -> &ImpairStats {
        &self.stats
    }

    fn observe_arrival(&mut self, now_us: u64) {
        if let Some(last) = self.last_arrival_us {
            let gap = (now_us.saturating_sub(last) as f64).min(MAX_GAP_US);
            self.interval_us = Some(match self.interval_us {
                None => gap,
                Some(smoothed) => smoothed + GAP_GAIN * (gap - smoothed),
            });
        }
        self.last_arrival_us = Some(now_us);
    }

    fn lose(&mut self, u: f64) -> bool {
        match &mut self.model {
            LossModel::Independent => u < self.cfg.loss,
            LossModel::Gilbert { enter, leave, bad } => {
                let next = match *bad {
                    // The first datagram starts from the stationary distribution.
                    None => u < self.cfg.loss,
                    Some(true) => u >= *leave,
                    Some(false) => u < *enter,
                };
                *bad = Some(next);
                next
            }
        }
    }

    fn schedule(&mut self, fate: &mut Fate, now_us: u64, delay_us: f64) {
        let delay = delay_us.round() as u64;
        fate.push(now_us.saturating_add(delay));
        self.stats.forwarded += 1;
        if self.delayed_copies == 0 {
            self.stats.delay_min_us = delay;
            self.stats.delay_max_us = delay;
        } else {
            self.stats.delay_min_us = self.stats.delay_min_us.min(delay);
            self.stats.delay_max_us = self.stats.delay_max_us.max(delay);
        }
        self.delayed_copies += 1;
        self.delay_sum_us += u128::from(delay);
        self.stats.delay_mean_us = self.delay_sum_us as f64 / self.delayed_copies as f64;
    }

    /// Reorder accounting from the schedule itself, by each datagram's first copy.
    fn count_order(&mut self, now_us: u64, first: u64) {
        if self.max_first_release.is_some_and(|max| first < max) {
            self.stats.reordered += 1;
        }
        self.max_first_release = Some(self.max_first_release.map_or(first, |max| max.max(first)));
        // Released already: no later arrival (released at or after `now_us`) can overtake it.
        while self.overtakable.front().is_some_and(|&t| t <= now_us) {
            self.overtakable.pop_front();
        }
        while self.overtakable.back().is_some_and(|&t| t > first) {
            self.overtakable.pop_back();
            self.stats.late += 1;
        }
        self.overtakable.push_back(first);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn config(loss: f64, burst: Option<f64>, seed: u64) -> ImpairConfig {
        ImpairConfig {
            loss,
            burst,
            seed,
            ..ImpairConfig::default()
        }
    }

    fn config_error(cfg: ImpairConfig) -> String {
        match cfg.validate() {
            Err(Error::Config { what }) => what,
            other => panic!("expected a config error for {cfg:?}, got {other:?}"),
        }
    }

    #[test]
    fn validate_rejects_bad_values_naming_flag_and_range() {
        let ok = ImpairConfig {
            loss: 0.1,
            burst: Some(3.0),
            delay_ms: 20.0,
            jitter_ms: 5.0,
            reorder: 0.01,
            duplicate: 0.01,
            seed: 1,
        };
        ok.validate().unwrap();
        ImpairConfig {
            loss: 1.0,
            burst: None,
            ..ok.clone()
        }
        .validate()
        .unwrap();
        ImpairConfig {
            delay_ms: MAX_DELAY_MS,
            jitter_ms: 0.0,
            ..ok.clone()
        }
        .validate()
        .unwrap();

        let cases: Vec<(ImpairConfig, &[&str])> = vec![
            (
                ImpairConfig {
                    loss: 1.5,
                    ..ok.clone()
                },
                &["--loss", "[0, 1]", "1.5"],
            ),
            (
                ImpairConfig {
                    loss: -0.1,
                    burst: None,
                    ..ok.clone()
                },
                &["--loss", "[0, 1]"],
            ),
            (
                ImpairConfig {
                    loss: f64::NAN,
                    ..ok.clone()
                },
                &["--loss", "NaN"],
            ),
            (
                ImpairConfig {
                    burst: Some(0.5),
                    ..ok.clone()
                },
                &["--burst", ">= 1", "0.5"],
            ),
            (
                ImpairConfig {
                    burst: Some(f64::INFINITY),
                    ..ok.clone()
                },
                &["--burst", ">= 1"],
            ),
            (
                ImpairConfig {
                    loss: 1.0,
                    ..ok.clone()
                },
                &["--loss", "--burst", "at most 0.75"],
            ),
            (
                ImpairConfig {
                    loss: 0.7,
                    burst: Some(2.0),
                    ..ok.clone()
                },
                &["--burst 2", "0.6667"],
            ),
            (
                ImpairConfig {
                    delay_ms: -1.0,
                    ..ok.clone()
                },
                &["--delay", "[0, 10000]", "-1"],
            ),
            (
                ImpairConfig {
                    delay_ms: 10_001.0,
                    ..ok.clone()
                },
                &["--delay", "milliseconds"],
            ),
            (
                ImpairConfig {
                    jitter_ms: f64::INFINITY,
                    ..ok.clone()
                },
                &["--jitter", "[0, 10000]"],
            ),
            (
                ImpairConfig {
                    jitter_ms: f64::NAN,
                    ..ok.clone()
                },
                &["--jitter"],
            ),
            (
                ImpairConfig {
                    reorder: 2.0,
                    ..ok.clone()
                },
                &["--reorder", "[0, 1]"],
            ),
            (
                ImpairConfig {
                    duplicate: -0.5,
                    ..ok.clone()
                },
                &["--duplicate", "[0, 1]"],
            ),
        ];
        for (cfg, needles) in cases {
            let what = config_error(cfg.clone());
            for needle in needles {
                assert!(what.contains(needle), "{what:?} should mention {needle:?}");
            }
            assert!(Impairer::new(cfg).is_err());
        }
    }

    /// Runs `n` decisions 20 ms apart and returns the stats.
    fn decide(cfg: ImpairConfig, n: u64) -> ImpairStats {
        let mut imp = Impairer::new(cfg).unwrap();
        for i in 0..n {
            imp.on_datagram(i * 20_000);
        }
        imp.stats().clone()
    }

    #[test]
    fn independent_loss_rate_and_burst_lengths() {
        for (loss, seed) in [(0.01, 1), (0.1, 2), (0.3, 3)] {
            let s = decide(config(loss, None, seed), 100_000);
            assert_eq!(s.received, 100_000);
            assert_eq!(s.dropped + s.forwarded, 100_000);
            assert!(
                (s.loss_rate() - loss).abs() < 0.005,
                "loss {loss}: {}",
                s.loss_rate()
            );
            // Independent losses form geometric runs with mean 1/(1-loss).
            let expected = 1.0 / (1.0 - loss);
            assert!(
                (s.mean_burst() / expected - 1.0).abs() < 0.1,
                "{loss}: {}",
                s.mean_burst()
            );
            assert!(s.dropped_in_bursts < s.dropped && s.longest_burst >= 2);
        }
        let none = decide(config(0.0, None, 4), 10_000);
        assert_eq!((none.dropped, none.bursts, none.forwarded), (0, 0, 10_000));
        let all = decide(config(1.0, None, 4), 10_000);
        assert_eq!(
            (all.dropped, all.bursts, all.longest_burst),
            (10_000, 1, 10_000)
        );
    }

    #[test]
    fn burst_loss_rate_and_mean_burst_length() {
        for (loss, burst, seed) in [
            (0.05, 3.0, 11),
            (0.1, 2.0, 12),
            (0.02, 8.0, 13),
            (0.1, 1.0, 14),
        ] {
            let s = decide(config(loss, Some(burst), seed), 100_000);
            assert!(
                (s.loss_rate() - loss).abs() < 0.005,
                "loss {loss} burst {burst}: rate {}",
                s.loss_rate()
            );
            assert!(
                (s.mean_burst() / burst - 1.0).abs() < 0.1,
                "loss {loss} burst {burst}: mean burst {}",
                s.mean_burst()
            );
            if burst == 1.0 {
                assert_eq!((s.longest_burst, s.dropped_in_bursts), (1, 0));
            } else {
                assert!(s.dropped_in_bursts > s.dropped / 2, "{s:?}");
            }
        }
        // Bursts at the same average loss are longer than independent losses.
        let independent = decide(config(0.05, None, 21), 100_000);
        let bursty = decide(config(0.05, Some(5.0), 21), 100_000);
        assert!(bursty.mean_burst() > 3.0 * independent.mean_burst());
        assert!(bursty.longest_burst > independent.longest_burst);
    }

    fn fates(cfg: &ImpairConfig, arrivals: &[u64]) -> Vec<Fate> {
        let mut imp = Impairer::new(cfg.clone()).unwrap();
        arrivals.iter().map(|&t| imp.on_datagram(t)).collect()
    }

    fn everything(seed: u64) -> ImpairConfig {
        ImpairConfig {
            loss: 0.1,
            burst: Some(2.0),
            delay_ms: 10.0,
            jitter_ms: 30.0,
            reorder: 0.1,
            duplicate: 0.1,
            seed,
        }
    }

    /// `n` arrival times with seeded gaps uniform in `[0, max_gap_us)`.
    fn random_arrivals(seed: u64, n: usize, max_gap_us: u64) -> Vec<u64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut t = 0;
        (0..n)
            .map(|_| {
                t += rng.random_range(0..max_gap_us);
                t
            })
            .collect()
    }

    #[test]
    fn same_seed_same_fates_different_seed_different() {
        let arrivals = random_arrivals(99, 5000, 40_000);
        let a = fates(&everything(7), &arrivals);
        assert_eq!(a, fates(&everything(7), &arrivals));
        let b = fates(&everything(8), &arrivals);
        let differing = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        assert!(differing > 4000, "only {differing} of 5000 fates differ");
        let dropped = |f: &[Fate]| f.iter().map(|f| f.is_dropped()).collect::<Vec<_>>();
        assert_ne!(dropped(&a), dropped(&b));
    }

    #[test]
    fn loss_and_duplication_do_not_depend_on_times_or_other_impairments() {
        let plain = ImpairConfig {
            loss: 0.2,
            duplicate: 0.1,
            seed: 5,
            ..ImpairConfig::default()
        };
        let copies = |f: Vec<Fate>| f.iter().map(Fate::len).collect::<Vec<_>>();
        let steady: Vec<u64> = (0..3000).map(|i| i * 20_000).collect();
        let at_zero = vec![0; 3000];
        let expected = copies(fates(&plain, &steady));
        assert_eq!(copies(fates(&plain, &at_zero)), expected);
        let busy = ImpairConfig {
            delay_ms: 50.0,
            jitter_ms: 40.0,
            reorder: 0.3,
            ..plain
        };
        assert_eq!(copies(fates(&busy, &steady)), expected);
    }

    #[test]
    fn jitter_keeps_delay_within_delay_plus_jitter() {
        let cfg = ImpairConfig {
            delay_ms: 20.0,
            jitter_ms: 15.0,
            seed: 3,
            ..ImpairConfig::default()
        };
        let mut imp = Impairer::new(cfg).unwrap();
        for i in 0..10_000u64 {
            let now = 1_000_000 + i * 5_000;
            let fate = imp.on_datagram(now);
            assert_eq!(fate.len(), 1);
            for at in fate {
                assert!((now + 20_000..=now + 35_000).contains(&at), "{now}: {at}");
            }
        }
        let s = imp.stats();
        assert!(s.delay_min_us >= 20_000 && s.delay_min_us < 21_000, "{s:?}");
        assert!(s.delay_max_us <= 35_000 && s.delay_max_us > 34_000, "{s:?}");
        assert!((s.delay_mean_us - 27_500.0).abs() < 300.0, "{s:?}");
        // 15 ms of jitter on a 5 ms packet interval reorders without any --reorder.
        assert_eq!(s.reorder_holds, 0);
        assert!(s.reordered > 1000 && s.late > 1000, "{s:?}");

        let fixed = ImpairConfig {
            delay_ms: 20.0,
            seed: 3,
            ..ImpairConfig::default()
        };
        let s = decide(fixed, 1000);
        assert_eq!(
            (s.delay_min_us, s.delay_max_us, s.delay_mean_us),
            (20_000, 20_000, 20_000.0)
        );
        assert_eq!((s.reordered, s.late), (0, 0));
    }

    #[test]
    fn duplicate_rate_close_to_probability() {
        let cfg = ImpairConfig {
            duplicate: 0.2,
            jitter_ms: 10.0,
            seed: 9,
            ..ImpairConfig::default()
        };
        let mut imp = Impairer::new(cfg).unwrap();
        let mut twos = 0;
        for i in 0..100_000u64 {
            let fate = imp.on_datagram(i * 20_000);
            if fate.len() == 2 {
                twos += 1;
            }
        }
        let s = imp.stats();
        assert_eq!(s.duplicated, twos);
        assert_eq!(s.forwarded, 100_000 + twos);
        assert!((twos as f64 / 100_000.0 - 0.2).abs() < 0.005, "{twos}");
    }

    /// The O(n²) definitions of `reordered` and `late`, from first release times.
    fn brute_force_order(fates: &[Fate]) -> (u64, u64) {
        let firsts: Vec<u64> = fates.iter().filter_map(Fate::first_release).collect();
        let overtook = (0..firsts.len()).filter(|&j| firsts[..j].iter().any(|&e| firsts[j] < e));
        let overtaken =
            (0..firsts.len()).filter(|&i| firsts[i + 1..].iter().any(|&l| l < firsts[i]));
        (overtook.count() as u64, overtaken.count() as u64)
    }

    #[test]
    fn reorder_counts_follow_the_release_order() {
        let arrivals = random_arrivals(5, 4000, 30_000);
        for seed in 0..4 {
            let cfg = everything(seed);
            let mut imp = Impairer::new(cfg).unwrap();
            let f: Vec<Fate> = arrivals.iter().map(|&t| imp.on_datagram(t)).collect();
            let s = imp.stats();
            assert_eq!((s.reordered, s.late), brute_force_order(&f), "seed {seed}");
            assert!(s.reordered > 0);
        }
    }

    #[test]
    fn reorder_holds_make_datagrams_late_by_one_to_three_positions() {
        let cfg = ImpairConfig {
            reorder: 0.1,
            delay_ms: 5.0,
            seed: 17,
            ..ImpairConfig::default()
        };
        let mut imp = Impairer::new(cfg).unwrap();
        let n = 20_000u64;
        let firsts: Vec<u64> = (0..n)
            .map(|i| imp.on_datagram(i * 20_000).first_release().unwrap())
            .collect();
        let s = imp.stats().clone();
        assert!(
            (s.reorder_holds as f64 / n as f64 - 0.1).abs() < 0.01,
            "{s:?}"
        );
        // Without jitter only holds delay: every late datagram was held, and a hold of at
        // least 1.5 intervals is always overtaken by the next datagram unless that one is
        // held too.
        assert!(
            s.late <= s.reorder_holds && s.late as f64 >= 0.85 * s.reorder_holds as f64,
            "{s:?}"
        );
        // Displacement: how many later arrivals overtake each datagram.
        let mut displaced: BTreeMap<usize, u64> = BTreeMap::new();
        for i in 0..firsts.len() {
            let passed = firsts[i + 1..]
                .iter()
                .take(10)
                .filter(|&&l| l < firsts[i])
                .count();
            if passed > 0 {
                *displaced.entry(passed).or_default() += 1;
            }
        }
        assert!(
            displaced.keys().all(|&k| (1..=3).contains(&k)),
            "{displaced:?}"
        );
        assert!(
            displaced.contains_key(&1) && displaced.contains_key(&3),
            "{displaced:?}"
        );
    }

    #[test]
    fn fate_iterates_release_times() {
        assert!(Fate::DROPPED.is_dropped() && Fate::DROPPED.is_empty());
        assert_eq!(Fate::DROPPED.into_iter().count(), 0);
        let mut f = Fate::default();
        f.push(30);
        f.push(10);
        assert_eq!(f.times(), &[30, 10]);
        assert_eq!(f.iter().collect::<Vec<_>>(), vec![30, 10]);
        assert_eq!(f.into_iter().collect::<Vec<_>>(), vec![30, 10]);
        assert_eq!((f.len(), f.first_release()), (2, Some(10)));
    }

    #[test]
    fn driver_hooks_keep_the_accounting_closed() {
        let mut imp = Impairer::new(everything(3)).unwrap();
        for i in 0..1000 {
            imp.on_datagram(i * 20_000);
        }
        imp.on_overflow();
        imp.on_send_failed();
        imp.on_discarded(2);
        let s = imp.stats();
        assert_eq!(
            (
                s.received,
                s.overflow_dropped,
                s.send_failed,
                s.discarded_at_stop
            ),
            (1001, 1, 1, 2)
        );
        let copies = s.forwarded + s.send_failed + s.discarded_at_stop;
        assert_eq!(
            s.received,
            s.dropped + s.overflow_dropped + copies - s.duplicated
        );
        let report = s.report();
        for needle in [
            "received   1001",
            "overflow   1",
            "1 send failures",
            "2 discarded",
            "delay      min",
        ] {
            assert!(report.contains(needle), "{report}");
        }
        let json = serde_json::to_value(s).unwrap();
        assert_eq!(json["received"], 1001);
        assert_eq!(json["late"], s.late);
    }
}
