//! The concealment quality matrix: a signal streamed through seeded loss into the jitter
//! buffer with each concealment mode, scored against the original.
//!
//! This runs the same sans-IO cores the programs use ([`Packetizer`], [`Impairer`],
//! [`JitterBuffer`]) on a simulated clock, so a matrix of minutes of audio takes a second and
//! every mode sees exactly the same losses. The tour and the README's socket runs check the
//! same figures over real sockets.
//!
//! Each [`Row`] carries the indices of the packets the impairer dropped
//! ([`Row::lost_packets`]), so that an outside implementation (such as the ITU-T G.711
//! Appendix I reference in `scripts/udp_audio_quality/appendix1.py`) can conceal exactly the
//! same erasures. With several seeds, [`markdown`] shows the mean and the sample standard
//! deviation over them.

use serde::Serialize;

use crate::conceal::ConcealMode;
use crate::eval::{self, Quality};
use crate::impair::{ImpairConfig, Impairer, MAX_BURST};
use crate::jitter::{JitterBuffer, JitterConfig, Latency, RecvStats};
use crate::l16::{AudioFormat, StreamParams};
use crate::sender::Packetizer;
use crate::wav::{self, Audio};
use crate::{Error, Result};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering as AtomicOrdering};

/// Packet duration of the matrix, ms.
pub const PTIME_MS: u32 = 20;
/// Fixed jitter-buffer latency of `udp-audio quality` by default, ms: two packets, so that
/// when a loss is due the packet after it has already arrived (a bridging concealment can
/// use it). With one packet (20 ms) the buffer is empty whenever a loss starts.
pub const DEFAULT_LATENCY_MS: u32 = 40;
/// Latency of [`matrix`], ms: the tour's simulated run states it.
pub const TOUR_LATENCY_MS: u32 = 20;

/// A loss condition of the matrix.
#[derive(Debug, Clone, Serialize)]
pub struct Condition {
    /// Short name, e.g. "random 10 %".
    pub name: String,
    /// Loss probability.
    pub loss: f64,
    /// Mean burst length (Gilbert-Elliott), or independent loss.
    pub burst: Option<f64>,
}

impl std::str::FromStr for Condition {
    type Err = Error;

    /// `LOSS` (independent loss, a probability in [0, 1)) or `LOSS/BURST` (Gilbert-Elliott
    /// bursts of mean `BURST`, 1 to [`MAX_BURST`]), named "random 10 %" or "bursty 10 %,
    /// mean burst 3".
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::Config {
            what: format!(
                "{s:?}: expected a loss probability such as 0.1, or 0.1/3 for bursts of mean 3"
            ),
        };
        let (loss, burst) = match s.split_once('/') {
            Some((l, b)) => (l, Some(b.trim().parse::<f64>().map_err(|_| bad())?)),
            None => (s, None),
        };
        let loss: f64 = loss.trim().parse().map_err(|_| bad())?;
        // NaN fails both range checks.
        if !(0.0..1.0).contains(&loss) || burst.is_some_and(|b| !(1.0..=MAX_BURST).contains(&b)) {
            return Err(bad());
        }
        let name = match burst {
            Some(b) => format!("bursty {:.0} %, mean burst {b}", loss * 100.0),
            None => format!("random {:.0} %", loss * 100.0),
        };
        Ok(Condition { name, loss, burst })
    }
}

impl Condition {
    /// The impairment of this condition with `seed`: loss only, no delay, jitter, reordering
    /// or duplication.
    pub fn impair(&self, seed: u64) -> ImpairConfig {
        ImpairConfig {
            loss: self.loss,
            burst: self.burst,
            delay_ms: 0.0,
            jitter_ms: 0.0,
            reorder: 0.0,
            duplicate: 0.0,
            seed,
        }
    }
}

/// Random loss at 5, 10 and 20 %, and bursty loss (10 %, mean burst 3 packets).
pub fn default_conditions() -> Vec<Condition> {
    let mut v: Vec<Condition> = [0.05, 0.10, 0.20]
        .iter()
        .map(|&loss| Condition {
            name: format!("random {:.0} %", loss * 100.0),
            loss,
            burst: None,
        })
        .collect();
    v.push(Condition {
        name: "bursty 10 %, mean burst 3".into(),
        loss: 0.10,
        burst: Some(3.0),
    });
    v
}

/// One cell of the matrix for one seed.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Signal name.
    pub signal: String,
    /// Condition name.
    pub condition: String,
    /// Concealment mode.
    pub mode: String,
    /// Seed of the losses.
    pub seed: u64,
    /// Packet duration, ms, rounded: [`PTIME_MS`] unless a packet of that length would not
    /// fit one datagram (44.1 kHz stereo: 8 ms).
    pub ptime_ms: u32,
    /// Sample frames per packet, exactly (320 at 16 kHz, 365 for 44.1 kHz stereo).
    pub packet_frames: usize,
    /// Packets lost, as a fraction of those sent.
    pub lost_fraction: f64,
    /// Indices (from 0, in send order) of the packets that never reached the receiver; packet
    /// `k` carries frames `k·packet_frames` onwards. The same for every mode of a seed.
    pub lost_packets: Vec<u64>,
    /// Objective quality of the output against the original.
    pub quality: Quality,
}

/// What [`simulate`] gives back.
#[derive(Debug, Clone)]
pub struct Simulation {
    /// The receiver's output.
    pub audio: Audio,
    /// The receiver's report.
    pub stats: RecvStats,
    /// Packets sent.
    pub sent: u64,
    /// Sample frames per packet (the last may be shorter).
    pub packet_frames: usize,
    /// Indices of the packets the impairer dropped, ascending.
    pub lost_packets: Vec<u64>,
}

/// Streams `audio` in `ptime_ms` packets through `impair` into a jitter buffer concealing
/// with `mode`, on a simulated clock.
pub fn simulate(
    audio: &Audio,
    ptime_ms: u32,
    impair: ImpairConfig,
    latency: Latency,
    mode: ConcealMode,
) -> Result<Simulation> {
    let format = AudioFormat::new(audio.rate, audio.channels)?;
    let params = StreamParams::new(format, ptime_ms, None)?;
    let mut packetizer = Packetizer::new(params, 0x5eed, 1000, 123_456);
    let mut impairer = Impairer::new(impair)?;
    let ptime_ns = params.frames_per_packet as u64 * 1_000_000_000 / u64::from(format.rate);
    let mut events = Vec::new();
    let mut datagram = Vec::new();
    let mut lost_packets = Vec::new();
    let mut k = 0u64;
    while packetizer
        .next_packet(&audio.samples, &mut datagram)?
        .is_some()
    {
        let sent_us = 1_000_000 + k * ptime_ns / 1000;
        let fate = impairer.on_datagram(sent_us);
        if fate.is_dropped() {
            lost_packets.push(k);
        }
        for release in fate {
            events.push((release, datagram.clone()));
        }
        k += 1;
    }
    let cfg = JitterConfig {
        format,
        payload_type: None,
        latency,
        conceal: mode,
    };
    let mut jb = JitterBuffer::new(cfg)?;
    let samples = crate::jitter::run_offline(&mut jb, events);
    Ok(Simulation {
        audio: Audio {
            rate: audio.rate,
            channels: audio.channels,
            samples,
        },
        stats: jb.stats(),
        sent: k,
        packet_frames: params.frames_per_packet,
        lost_packets,
    })
}

/// How [`run`] goes through the matrix.
#[derive(Debug, Clone, Copy)]
pub struct MatrixOptions<'a> {
    /// Jitter-buffer latency of every run.
    pub latency: Latency,
    /// First seed of the losses.
    pub seed: u64,
    /// How many seeds: `seed, seed + 1, ..., seed + seeds - 1` (wrapping), at least 1.
    pub seeds: u32,
    /// Write every output there as `NAME-CONDITION-MODE-sSEED.wav`, and the reference as
    /// `NAME-reference.wav`, for other measures such as PESQ.
    pub write_dir: Option<&'a Path>,
    /// When set, [`run`] starts no further row and returns the rows finished (a program's
    /// Ctrl-C flag).
    pub stop: Option<&'a AtomicBool>,
}

/// Runs every condition × seed × mode for one signal in [`PTIME_MS`] packets. Rows come in
/// that order; every mode of a seed sees the same losses. The (condition, seed) pairs run on
/// as many threads as there are cores: each is independent and seeded, so the rows are the
/// same whatever the thread count. Each row finished is logged (`NAME: row N/M`, at info
/// level); once [`MatrixOptions::stop`] is set no row starts, and the rows finished by then
/// are returned, in the same order.
pub fn run(
    name: &str,
    audio: &Audio,
    conditions: &[Condition],
    opts: &MatrixOptions,
) -> Result<Vec<Row>> {
    if let Some(dir) = opts.write_dir {
        wav::write_wav(
            &dir.join(format!("{}-reference.wav", file_stem(name))),
            audio,
        )?;
    }
    let jobs: Vec<(&Condition, u64)> = conditions
        .iter()
        .flat_map(|c| {
            (0..u64::from(opts.seeds.max(1))).map(move |i| (c, opts.seed.wrapping_add(i)))
        })
        .collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(jobs.len())
        .max(1);
    let total = jobs.len() * ConcealMode::ALL.len();
    let progress = Progress {
        name,
        total,
        finished: AtomicUsize::new(0),
        stop: opts.stop,
    };
    let next = AtomicUsize::new(0);
    let mut done: Vec<(usize, Result<Vec<Row>>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    while !progress.stopped() {
                        let i = next.fetch_add(1, AtomicOrdering::Relaxed);
                        let Some(&(c, seed)) = jobs.get(i) else {
                            break;
                        };
                        let rows = condition_rows(name, audio, c, seed, opts, &progress);
                        let failed = rows.is_err();
                        out.push((i, rows));
                        if failed {
                            break;
                        }
                    }
                    out
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a matrix worker does not panic"))
            .collect()
    });
    done.sort_by_key(|d| d.0);
    let mut rows = Vec::new();
    for (_, r) in done {
        rows.extend(r?);
    }
    Ok(rows)
}

/// How far [`run`] is, shared by its workers.
struct Progress<'a> {
    name: &'a str,
    total: usize,
    finished: AtomicUsize,
    stop: Option<&'a AtomicBool>,
}

impl Progress<'_> {
    fn stopped(&self) -> bool {
        self.stop.is_some_and(|s| s.load(AtomicOrdering::Relaxed))
    }

    fn row_done(&self) {
        let n = self.finished.fetch_add(1, AtomicOrdering::Relaxed) + 1;
        tracing::info!("{}: row {n}/{}", self.name, self.total);
    }
}

/// Every mode for one condition and seed: the rows, in [`ConcealMode::ALL`] order (fewer
/// when `progress` is stopped).
fn condition_rows(
    name: &str,
    audio: &Audio,
    c: &Condition,
    seed: u64,
    opts: &MatrixOptions,
    progress: &Progress,
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for mode in ConcealMode::ALL {
        if progress.stopped() {
            break;
        }
        let sim = simulate(audio, PTIME_MS, c.impair(seed), opts.latency, mode)?;
        let quality = eval::evaluate(audio, &sim.audio)?;
        if let Some(dir) = opts.write_dir {
            let file = format!(
                "{}-{}-{}-s{seed}.wav",
                file_stem(name),
                file_stem(&c.name),
                mode.name()
            );
            wav::write_wav(&dir.join(file), &sim.audio)?;
        }
        rows.push(Row {
            signal: name.to_string(),
            condition: c.name.clone(),
            mode: mode.name().to_string(),
            seed,
            ptime_ms: ((sim.packet_frames as u64 * 1000 + u64::from(audio.rate) / 2)
                / u64::from(audio.rate)) as u32,
            packet_frames: sim.packet_frames,
            lost_fraction: if sim.sent == 0 {
                0.0
            } else {
                sim.lost_packets.len() as f64 / sim.sent as f64
            },
            lost_packets: sim.lost_packets,
            quality,
        });
        progress.row_done();
    }
    Ok(rows)
}

/// Every condition × mode for one signal with one `seed`, at the tour's fixed
/// [`TOUR_LATENCY_MS`]; with `write_dir`, outputs as in [`MatrixOptions::write_dir`].
pub fn matrix(
    name: &str,
    audio: &Audio,
    conditions: &[Condition],
    seed: u64,
    write_dir: Option<&Path>,
) -> Result<Vec<Row>> {
    run(
        name,
        audio,
        conditions,
        &MatrixOptions {
            latency: Latency::Fixed(TOUR_LATENCY_MS),
            seed,
            seeds: 1,
            write_dir,
            stop: None,
        },
    )
}

/// `text` with everything but ASCII letters and digits turned into `_`.
pub fn file_stem(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Mean and sample standard deviation (n - 1 in the denominator; 0 for fewer than two
/// values). Empty input gives NaN for the mean.
pub fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// `mean` with `decimals`, and `± sd` when there were several seeds.
fn cell(values: &[f64], decimals: usize, several: bool) -> String {
    let (mean, sd) = mean_sd(values);
    if several {
        format!("{mean:.decimals$} ± {sd:.decimals$}")
    } else {
        format!("{mean:.decimals$}")
    }
}

/// The rows of one signal and condition, in order of first appearance.
fn groups(rows: &[Row]) -> Vec<(&str, &str, Vec<&Row>)> {
    let mut out: Vec<(&str, &str, Vec<&Row>)> = Vec::new();
    for r in rows {
        match out
            .iter_mut()
            .find(|(s, c, _)| *s == r.signal && *c == r.condition)
        {
            Some(g) => g.2.push(r),
            None => out.push((&r.signal, &r.condition, vec![r])),
        }
    }
    out
}

/// The matrix as a Markdown table: one row per signal and condition, one column (SNR,
/// segmental SNR, log-spectral distance) per mode. With several seeds each figure is
/// `mean ± sd` over them (sample standard deviation) and a line above the table says how
/// many.
pub fn markdown(rows: &[Row]) -> String {
    let modes: Vec<&str> = ConcealMode::ALL.iter().map(|m| m.name()).collect();
    // In run order, so that a wrapped range still reads from its first seed.
    let mut seeds: Vec<u64> = Vec::new();
    for r in rows {
        if !seeds.contains(&r.seed) {
            seeds.push(r.seed);
        }
    }
    let several = seeds.len() > 1;
    let mut s = String::new();
    if several {
        s.push_str(&format!(
            "{} seeds ({} .. {}): each figure is mean ± sample standard deviation over them.\n\n",
            seeds.len(),
            seeds[0],
            seeds[seeds.len() - 1]
        ));
    }
    s.push_str("| signal | loss (measured) |");
    for m in &modes {
        s.push_str(&format!(" {m}: SNR / segSNR / LSD |"));
    }
    s.push_str("\n|---|---|");
    for _ in &modes {
        s.push_str("---:|");
    }
    s.push('\n');
    for (signal, condition, group) in groups(rows) {
        // Every mode of a seed has the same losses: count each seed once.
        let lost: Vec<f64> = group
            .iter()
            .filter(|r| r.mode == group[0].mode)
            .map(|r| 100.0 * r.lost_fraction)
            .collect();
        s.push_str(&format!(
            "| {signal} | {condition} ({:.1} %) |",
            mean_sd(&lost).0
        ));
        for m in &modes {
            let of_mode: Vec<&&Row> = group.iter().filter(|x| x.mode == *m).collect();
            if of_mode.is_empty() {
                s.push_str(" - |");
                continue;
            }
            let pick = |f: fn(&Quality) -> f64| -> Vec<f64> {
                of_mode.iter().map(|r| f(&r.quality)).collect()
            };
            s.push_str(&format!(
                " {} / {} / {} dB |",
                cell(&pick(|q| q.snr_db), 1, several),
                cell(&pick(|q| q.seg_snr_db), 1, several),
                cell(&pick(|q| q.lsd_db), 2, several)
            ));
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::synth;

    fn conditions() -> Vec<Condition> {
        vec![
            Condition {
                name: "random 10 %".into(),
                loss: 0.1,
                burst: None,
            },
            Condition {
                name: "bursty 20 %, mean burst 3".into(),
                loss: 0.2,
                burst: Some(3.0),
            },
        ]
    }

    fn opts(seed: u64, seeds: u32) -> MatrixOptions<'static> {
        MatrixOptions {
            latency: Latency::Fixed(DEFAULT_LATENCY_MS),
            seed,
            seeds,
            write_dir: None,
            stop: None,
        }
    }

    /// Conditions parse as the defaults are named; out-of-range values are configuration
    /// errors saying what was expected.
    #[test]
    fn conditions_parse_and_are_named_like_the_defaults() {
        let c: Condition = "0.1".parse().unwrap();
        assert_eq!(
            (c.name.as_str(), c.loss, c.burst),
            ("random 10 %", 0.1, None)
        );
        let c: Condition = " 0.1 / 3 ".parse().unwrap();
        assert_eq!(c.name, default_conditions()[3].name);
        assert_eq!(c.burst, Some(3.0));
        for bad in ["", "x", "1", "-0.1", "nan", "0.1/0.5", "0.1/inf", "0.1/1e7"] {
            let e = bad.parse::<Condition>().unwrap_err();
            assert!(matches!(e, Error::Config { .. }), "{bad}: {e:?}");
            assert!(e.to_string().contains("expected a loss probability"), "{e}");
        }
    }

    /// A matrix stopped before it starts runs no row, and is no error.
    #[test]
    fn a_stopped_matrix_returns_the_rows_finished() {
        let audio = crate::synth::tone(8000, 1, 0.5, 440.0);
        let conditions = default_conditions();
        let stop = AtomicBool::new(false);
        let mut o = opts(1, 2);
        o.stop = Some(&stop);
        let all = run("t", &audio, &conditions, &o).unwrap();
        assert_eq!(all.len(), conditions.len() * 2 * ConcealMode::ALL.len());
        stop.store(true, AtomicOrdering::Relaxed);
        assert!(run("t", &audio, &conditions, &o).unwrap().is_empty());
    }

    /// The indices the matrix reports are the ones an impairer with the same seed drops,
    /// and every mode of a seed sees the same ones.
    #[test]
    fn lost_packets_are_the_impairers_drops_and_shared_by_every_mode() {
        let audio = synth::voice_like(8000, 3.0, 7);
        let packets = 3000 / u64::from(PTIME_MS);
        let rows = run("v", &audio, &conditions(), &opts(5, 3)).unwrap();
        assert_eq!(rows.len(), 2 * 3 * ConcealMode::ALL.len());
        for c in conditions() {
            for seed in 5..8 {
                let mut impairer = Impairer::new(c.impair(seed)).unwrap();
                let want: Vec<u64> = (0..packets)
                    .filter(|&k| impairer.on_datagram(k * 20_000).is_dropped())
                    .collect();
                assert!(!want.is_empty(), "{} seed {seed}", c.name);
                let of_seed: Vec<&Row> = rows
                    .iter()
                    .filter(|r| r.condition == c.name && r.seed == seed)
                    .collect();
                assert_eq!(of_seed.len(), ConcealMode::ALL.len());
                for r in of_seed {
                    assert_eq!(r.lost_packets, want, "{} {} seed {seed}", c.name, r.mode);
                    assert_eq!(r.ptime_ms, PTIME_MS);
                    assert_eq!(r.packet_frames, 160);
                    let fraction = want.len() as f64 / packets as f64;
                    assert!((r.lost_fraction - fraction).abs() < 1e-12);
                }
            }
        }
    }

    /// Silence concealment leaves exactly the lost packets silent: the reported indices are
    /// where the holes are.
    #[test]
    fn silence_holes_are_at_the_reported_packets() {
        let audio = synth::tone(8000, 1, 2.0, 440.0);
        let c = &conditions()[0];
        let sim = simulate(
            &audio,
            PTIME_MS,
            c.impair(3),
            Latency::Fixed(DEFAULT_LATENCY_MS),
            ConcealMode::Silence,
        )
        .unwrap();
        assert!(!sim.lost_packets.is_empty());
        let q = eval::evaluate(&audio, &sim.audio).unwrap();
        let per = (8000 * PTIME_MS / 1000) as usize;
        let offset = usize::try_from(q.offset_frames).unwrap();
        for k in 0..sim.sent as usize {
            let Some(out) = sim
                .audio
                .samples
                .get(offset + k * per..offset + (k + 1) * per)
            else {
                continue;
            };
            let silent = out.iter().all(|&v| v == 0);
            assert_eq!(silent, sim.lost_packets.contains(&(k as u64)), "packet {k}");
        }
    }

    #[test]
    fn sample_standard_deviation() {
        let (m, sd) = mean_sd(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m, 2.5);
        assert!((sd - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(mean_sd(&[3.0]), (3.0, 0.0));
    }

    /// One seed keeps the plain figures; several give `mean ± sd` and say how many seeds.
    #[test]
    fn markdown_shows_spread_over_seeds() {
        let audio = synth::voice_like(8000, 2.0, 1);
        let one = markdown(&run("v", &audio, &conditions()[..1], &opts(1, 1)).unwrap());
        assert!(!one.contains('±') && !one.contains("seeds"), "{one}");
        let many = markdown(&run("v", &audio, &conditions()[..1], &opts(1, 4)).unwrap());
        assert!(many.contains("4 seeds (1 .. 4)"), "{many}");
        let table_rows: Vec<&str> = many.lines().filter(|l| l.starts_with("| v ")).collect();
        assert_eq!(table_rows.len(), 1, "{many}");
        assert_eq!(
            table_rows[0].matches('±').count(),
            3 * ConcealMode::ALL.len(),
            "{many}"
        );
    }
}
