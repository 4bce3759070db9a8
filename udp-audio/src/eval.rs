//! Objective quality of a received signal against the one sent: alignment by
//! cross-correlation, SNR and segmental SNR.
//!
//! [`evaluate`] first finds how many frames the output lags the reference: the lag that
//! maximises the cross-correlation of the two mono mixes, searched within ±[`MAX_LAG_SECS`]
//! (and never beyond the signals' lengths), computed with FFTs block by block so that minutes
//! of audio cost seconds and memory stays a few megabytes. It then compares every reference
//! frame, all channels, with the output frame that lag points to; reference frames the output
//! does not cover count as silence received.
//!
//! - SNR: `10 log10(Σ ref² / Σ (ref - out)²)` over all samples, clamped to ±[`SNR_CAP_DB`]
//!   (so identical signals score exactly the cap instead of infinity).
//! - Segmental SNR: the same per [`SEG_FRAME_MS`] frame of the reference, each clamped between
//!   [`SEG_MIN_DB`] and [`SEG_MAX_DB`] and averaged, skipping frames whose reference energy is
//!   more than [`SEG_SILENCE_DB`] below the loudest frame (pauses would otherwise dominate
//!   with meaningless values). Clamping and the silence gate are the usual practice for
//!   segmental SNR (e.g. Hansen & Pellom 1998; Loizou, *Speech Enhancement*, ch. 10).
//!
//! - Log-spectral distance: per segment, the RMS over frequency bins of the difference of the
//!   two log power spectra (Hann-windowed FFT of the mono mixes), averaged over the same loud
//!   segments. It ignores phase, so it judges whether the concealment *sounds like* the
//!   missing audio (spectrum and level), which is what concealment can achieve.
//!
//! SNR and segmental SNR are waveform measures: a concealer that continues the pitch slightly out of phase
//! scores low even when it sounds fine. They rank concealment modes and loss patterns on the
//! same signal; they do not predict listening scores the way PESQ or STOI do.

use rustfft::FftPlanner;
use rustfft::num_complex::Complex;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::wav::Audio;

/// SNR of identical signals (and the floor for an output that is all error).
pub const SNR_CAP_DB: f64 = 100.0;
/// Segmental SNR frame length.
pub const SEG_FRAME_MS: u32 = 20;
/// Lowest per-frame SNR counted in the segmental SNR.
pub const SEG_MIN_DB: f64 = -10.0;
/// Highest per-frame SNR counted in the segmental SNR.
pub const SEG_MAX_DB: f64 = 35.0;
/// Frames whose reference energy is this far below the loudest frame are left out of the
/// segmental SNR.
pub const SEG_SILENCE_DB: f64 = 40.0;
/// How far below the loudest segment's mean bin power the log-spectral distance floors both
/// spectra, dB.
pub const LSD_FLOOR_DB: f64 = 60.0;
/// Largest lag searched, either way.
pub const MAX_LAG_SECS: f64 = 2.0;

/// How the output compares with the reference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Quality {
    /// How many frames the output lags the reference (negative: the output starts later in
    /// the signal, i.e. its beginning is missing).
    pub offset_frames: i64,
    /// Reference frames that the aligned output covers.
    pub compared_frames: usize,
    /// SNR over the whole reference in dB, clamped to ±[`SNR_CAP_DB`].
    pub snr_db: f64,
    /// Mean per-frame SNR in dB (see the module docs).
    pub seg_snr_db: f64,
    /// Reference frames not covered by the output (counted as silence received).
    pub missing_frames: usize,
    /// Mean log-spectral distance in dB over the loud segments (lower is better; 0 for
    /// identical signals): a phase-blind measure, see the module docs.
    pub lsd_db: f64,
}

/// Aligns `degraded` to `reference` and measures it (see the module docs).
///
/// Errors: [`Error::Config`] when rates or channel counts differ, or when the reference is
/// empty or silent (its SNR would be undefined).
pub fn evaluate(reference: &Audio, degraded: &Audio) -> Result<Quality> {
    if reference.rate != degraded.rate || reference.channels != degraded.channels {
        return Err(Error::Config {
            what: format!(
                "cannot compare: reference is {} Hz, {} ch; degraded is {} Hz, {} ch (rates and channel counts must match)",
                reference.rate, reference.channels, degraded.rate, degraded.channels
            ),
        });
    }
    let ref_frames = reference.frames();
    if ref_frames == 0 || reference.rate == 0 {
        return Err(Error::Config {
            what: "cannot compare: the reference is empty".into(),
        });
    }
    if reference.samples.iter().all(|&s| s == 0) {
        return Err(Error::Config {
            what: "cannot compare: the reference is silent (SNR undefined)".into(),
        });
    }
    let max_lag = (MAX_LAG_SECS * f64::from(reference.rate)) as usize;
    let (r, o) = (reference.mono_f32(), degraded.mono_f32());
    let lag = best_lag(&r, &o, max_lag);
    let mut q = compare(reference, degraded, lag);
    q.lsd_db = log_spectral_distance(&r, &o, lag, reference.rate);
    Ok(q)
}

/// The lag `L` in [-max_lag, max_lag] (and within the lengths) that maximises
/// `Σ r[n] o[n + L]`; ties go to the smaller |L|. 0 when either signal is empty.
fn best_lag(r: &[f32], o: &[f32], max_lag: usize) -> i64 {
    if r.is_empty() || o.is_empty() {
        return 0;
    }
    let lo = -(max_lag.min(r.len() - 1) as i64);
    let hi = max_lag.min(o.len() - 1) as i64;
    let width = (hi - lo) as usize;
    let c = cross_correlation(r, o, lo, width);
    let mut best = (f64::NEG_INFINITY, 0i64);
    for (k, &v) in c.iter().enumerate() {
        let lag = lo + k as i64;
        if v > best.0 || (v == best.0 && lag.abs() < best.1.abs()) {
            best = (v, lag);
        }
    }
    best.1
}

/// `c[k] = Σ_n r[n] o[n + lo + k]` for `k` in `0..=width`, by overlap-save style blocks: each
/// block of `r` is correlated with the stretch of `o` it can reach in one FFT of size
/// `size ≥ block + width` (no circular wrap), and the spectra are summed so one inverse FFT
/// serves all blocks.
fn cross_correlation(r: &[f32], o: &[f32], lo: i64, width: usize) -> Vec<f64> {
    let size = (2 * width.max(1)).next_power_of_two().max(8192);
    let block = size - width;
    let mut planner = FftPlanner::<f64>::new();
    let forward = planner.plan_fft_forward(size);
    let inverse = planner.plan_fft_inverse(size);
    let zero = Complex::new(0.0, 0.0);
    let mut acc = vec![zero; size];
    let mut rb = vec![zero; size];
    let mut ob = vec![zero; size];
    for start in (0..r.len()).step_by(block) {
        rb.fill(zero);
        for (d, &s) in rb.iter_mut().zip(&r[start..(start + block).min(r.len())]) {
            d.re = f64::from(s);
        }
        ob.fill(zero);
        let seg = start as i64 + lo;
        for (j, d) in ob.iter_mut().enumerate().take(block + width) {
            let idx = seg + j as i64;
            if idx >= 0 && (idx as usize) < o.len() {
                d.re = f64::from(o[idx as usize]);
            }
        }
        forward.process(&mut rb);
        forward.process(&mut ob);
        for ((a, x), y) in acc.iter_mut().zip(&rb).zip(&ob) {
            *a += x.conj() * y;
        }
    }
    inverse.process(&mut acc);
    let scale = 1.0 / size as f64;
    acc.iter().take(width + 1).map(|v| v.re * scale).collect()
}

/// SNR and segmental SNR of `degraded` shifted by `lag` frames against `reference`.
fn compare(reference: &Audio, degraded: &Audio, lag: i64) -> Quality {
    let ch = usize::from(reference.channels);
    let ref_frames = reference.frames();
    let out_frames = degraded.frames();
    let seg_len = ((u64::from(reference.rate) * u64::from(SEG_FRAME_MS) / 1000) as usize).max(1);
    let mut segments: Vec<(f64, f64)> = Vec::with_capacity(ref_frames.div_ceil(seg_len));
    let (mut signal, mut error) = (0.0f64, 0.0f64);
    let mut compared = 0usize;
    for (n, frame) in reference.samples.chunks_exact(ch).enumerate() {
        let m = n as i64 + lag;
        let out = if m >= 0 && (m as usize) < out_frames {
            compared += 1;
            Some(&degraded.samples[m as usize * ch..(m as usize + 1) * ch])
        } else {
            None
        };
        if n % seg_len == 0 {
            segments.push((0.0, 0.0));
        }
        let seg = segments.last_mut().expect("pushed at the first frame");
        for (c, &s) in frame.iter().enumerate() {
            let r = f64::from(s);
            let e = r - out.map_or(0.0, |o| f64::from(o[c]));
            seg.0 += r * r;
            seg.1 += e * e;
        }
    }
    for (s, e) in &segments {
        signal += s;
        error += e;
    }
    Quality {
        offset_frames: lag,
        compared_frames: compared,
        snr_db: snr_db(signal, error).clamp(-SNR_CAP_DB, SNR_CAP_DB),
        seg_snr_db: seg_snr_db(&segments),
        missing_frames: ref_frames - compared,
        lsd_db: 0.0,
    }
}

/// Mean log-spectral distance between the mono mixes, `o` shifted by `lag`: per
/// [`SEG_FRAME_MS`] segment (Hann window), `sqrt(mean_k (10 log10(P_r[k] / P_o[k]))²)`, with
/// both power spectra floored [`LSD_FLOOR_DB`] below the loudest segment's mean bin power so
/// that silence against sound costs a bounded amount. Segments gated as for segmental SNR.
fn log_spectral_distance(r: &[f32], o: &[f32], lag: i64, rate: u32) -> f64 {
    let seg = ((u64::from(rate) * u64::from(SEG_FRAME_MS) / 1000) as usize).max(16);
    let size = seg.next_power_of_two();
    let mut planner = FftPlanner::<f64>::new();
    let fft = planner.plan_fft_forward(size);
    let window: Vec<f64> = (0..seg)
        .map(|n| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / seg as f64).cos())
        .collect();
    let spectrum = |signal: &[f32], start: i64, buf: &mut Vec<Complex<f64>>| -> Vec<f64> {
        buf.clear();
        buf.extend((0..size).map(|n| {
            let idx = start + n as i64;
            let v = if n < seg && idx >= 0 && (idx as usize) < signal.len() {
                f64::from(signal[idx as usize]) * window[n]
            } else {
                0.0
            };
            Complex::new(v, 0.0)
        }));
        fft.process(buf);
        buf[..size / 2 + 1].iter().map(|c| c.norm_sqr()).collect()
    };
    let mut buf = Vec::with_capacity(size);
    let segments: Vec<(Vec<f64>, Vec<f64>)> = (0..r.len() / seg)
        .map(|i| {
            let start = (i * seg) as i64;
            (
                spectrum(r, start, &mut buf),
                spectrum(o, start + lag, &mut buf),
            )
        })
        .collect();
    let energy = |p: &[f64]| p.iter().sum::<f64>() / p.len() as f64;
    let loudest = segments.iter().map(|(p, _)| energy(p)).fold(0.0, f64::max);
    if loudest == 0.0 {
        return 0.0;
    }
    let gate = loudest * 10f64.powf(-SEG_SILENCE_DB / 10.0);
    let floor = loudest * 10f64.powf(-LSD_FLOOR_DB / 10.0);
    let (sum, count) = segments.iter().filter(|(p, _)| energy(p) >= gate).fold(
        (0.0, 0usize),
        |(sum, n), (pr, po)| {
            let d: f64 = pr
                .iter()
                .zip(po)
                .map(|(a, b)| (10.0 * ((a + floor) / (b + floor)).log10()).powi(2))
                .sum::<f64>()
                / pr.len() as f64;
            (sum + d.sqrt(), n + 1)
        },
    );
    if count == 0 { 0.0 } else { sum / count as f64 }
}

/// `10 log10(signal / error)`, +∞ for no error.
fn snr_db(signal: f64, error: f64) -> f64 {
    if error == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (signal / error).log10()
    }
}

/// Mean of the clamped per-segment SNRs over the segments loud enough to count.
fn seg_snr_db(segments: &[(f64, f64)]) -> f64 {
    let loudest = segments.iter().fold(0.0f64, |m, s| m.max(s.0));
    let gate = loudest * 10f64.powf(-SEG_SILENCE_DB / 10.0);
    let (sum, count) = segments
        .iter()
        .filter(|(s, _)| *s > 0.0 && *s >= gate)
        .fold((0.0, 0usize), |(sum, n), (s, e)| {
            (sum + snr_db(*s, *e).clamp(SEG_MIN_DB, SEG_MAX_DB), n + 1)
        });
    if count == 0 { 0.0 } else { sum / count as f64 }
}

#[cfg(test)]
mod test {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::synth;

    /// `audio` delayed by `frames` frames of silence (negative: its first frames cut).
    fn delayed(audio: &Audio, frames: i64) -> Audio {
        let ch = usize::from(audio.channels);
        let samples = if frames >= 0 {
            let mut s = vec![0i16; frames as usize * ch];
            s.extend_from_slice(&audio.samples);
            s
        } else {
            audio.samples[(-frames) as usize * ch..].to_vec()
        };
        Audio {
            samples,
            ..audio.clone()
        }
    }

    /// Adds Gaussian noise of standard deviation `sigma` (Box-Muller, seeded).
    fn with_noise(audio: &Audio, sigma: f64, seed: u64) -> Audio {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let samples = audio
            .samples
            .iter()
            .map(|&s| {
                let (u1, u2): (f64, f64) = (rng.random_range(f64::EPSILON..1.0), rng.random());
                let g = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                (f64::from(s) + sigma * g).round().clamp(-32768.0, 32767.0) as i16
            })
            .collect();
        Audio {
            samples,
            ..audio.clone()
        }
    }

    /// Zeroes `fraction` of the 20 ms frames (chosen with a seeded generator).
    fn with_lost_frames(audio: &Audio, fraction: f64, seed: u64) -> Audio {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let len = (audio.rate / 50) as usize * usize::from(audio.channels);
        let mut samples = audio.samples.clone();
        for chunk in samples.chunks_mut(len) {
            if rng.random_bool(fraction) {
                chunk.fill(0);
            }
        }
        Audio {
            samples,
            ..audio.clone()
        }
    }

    fn mean_power(a: &Audio) -> f64 {
        a.samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / a.samples.len() as f64
    }

    #[test]
    fn identical_signals_score_the_cap() {
        let v = synth::voice_like(16_000, 3.0, 1);
        let q = evaluate(&v, &v).unwrap();
        assert_eq!(
            q,
            Quality {
                offset_frames: 0,
                compared_frames: 48_000,
                snr_db: SNR_CAP_DB,
                seg_snr_db: SEG_MAX_DB,
                missing_frames: 0,
                lsd_db: 0.0,
            }
        );
    }

    /// Log-spectral distance judges what a gap is filled with by its spectrum: holes filled
    /// with the previous 20 ms score far better than holes of silence, whereas SNR prefers the
    /// silence (a copy out of phase counts as double error).
    #[test]
    fn log_spectral_distance_prefers_a_plausible_fill_to_silence() {
        let v = synth::voice_like(16_000, 3.0, 3);
        let mut holes = v.clone();
        let mut repeated = v.clone();
        for start in (3200..v.samples.len() - 320).step_by(3200) {
            holes.samples[start..start + 320].fill(0);
            let prev = v.samples[start - 320..start].to_vec();
            repeated.samples[start..start + 320].copy_from_slice(&prev);
        }
        let (h, r) = (
            evaluate(&v, &holes).unwrap(),
            evaluate(&v, &repeated).unwrap(),
        );
        assert!(h.lsd_db > 1.0, "holes: {h:?}");
        assert!(r.lsd_db < h.lsd_db / 2.0, "repeated {r:?} holes {h:?}");
    }

    #[test]
    fn a_known_delay_is_found_exactly() {
        let v = synth::voice_like(16_000, 3.0, 2);
        let q = evaluate(&v, &delayed(&v, 123)).unwrap();
        assert_eq!(
            (q.offset_frames, q.compared_frames, q.missing_frames),
            (123, 48_000, 0)
        );
        assert_eq!((q.snr_db, q.seg_snr_db), (SNR_CAP_DB, SEG_MAX_DB));

        let m = synth::music_like(44_100, 2, 2.0, 2);
        let q = evaluate(&m, &delayed(&m, 1234)).unwrap();
        assert_eq!((q.offset_frames, q.snr_db), (1234, SNR_CAP_DB));
        // Near the edge of the search range.
        let t = synth::voice_like(8000, 4.0, 3);
        let q = evaluate(&t, &delayed(&t, 15_900)).unwrap();
        assert_eq!((q.offset_frames, q.snr_db), (15_900, SNR_CAP_DB));
    }

    #[test]
    fn a_long_signal_is_aligned_across_fft_blocks() {
        // 30 s at 8 kHz spans several correlation blocks.
        let v = synth::voice_like(8000, 30.0, 4);
        let q = evaluate(&v, &delayed(&v, 777)).unwrap();
        assert_eq!(
            (q.offset_frames, q.snr_db, q.compared_frames),
            (777, SNR_CAP_DB, 240_000)
        );
    }

    #[test]
    fn a_missing_beginning_counts_as_silence() {
        let v = synth::voice_like(16_000, 3.0, 5);
        let q = evaluate(&v, &delayed(&v, -200)).unwrap();
        assert_eq!(
            (q.offset_frames, q.compared_frames, q.missing_frames),
            (-200, 47_800, 200)
        );
        let lost: f64 = v.samples[..200].iter().map(|&s| f64::from(s).powi(2)).sum();
        let all: f64 = v.samples.iter().map(|&s| f64::from(s).powi(2)).sum();
        assert!(
            (q.snr_db - 10.0 * (all / lost).log10()).abs() < 1e-9,
            "{q:?}"
        );

        // A cut end as well.
        let mut short = v.clone();
        short.samples.truncate(40_000);
        let q = evaluate(&v, &short).unwrap();
        assert_eq!(
            (q.offset_frames, q.compared_frames, q.missing_frames),
            (0, 40_000, 8000)
        );
    }

    #[test]
    fn an_empty_output_is_all_missing() {
        let v = synth::voice_like(8000, 1.0, 6);
        let q = evaluate(
            &v,
            &Audio {
                samples: Vec::new(),
                ..v.clone()
            },
        )
        .unwrap();
        assert_eq!(
            (q.offset_frames, q.compared_frames, q.missing_frames),
            (0, 0, 8000)
        );
        assert_eq!((q.snr_db, q.seg_snr_db), (0.0, 0.0));
    }

    #[test]
    fn white_noise_gives_the_expected_snr() {
        let v = synth::voice_like(16_000, 4.0, 7);
        let power = mean_power(&v);
        let mut last = f64::INFINITY;
        for target in [30.0, 20.0, 10.0, 0.0] {
            let sigma = (power / 10f64.powf(target / 10.0)).sqrt();
            let q = evaluate(&v, &with_noise(&v, sigma, target as u64)).unwrap();
            assert_eq!(q.offset_frames, 0);
            assert!(
                (q.snr_db - target).abs() < 0.5,
                "target {target} dB, measured {:.2}",
                q.snr_db
            );
            assert!(
                q.seg_snr_db < last,
                "segmental SNR does not fall with noise"
            );
            last = q.seg_snr_db;
        }
    }

    #[test]
    fn lost_frames_lower_the_segmental_snr_in_order() {
        let v = synth::voice_like(16_000, 10.0, 8);
        let mut last = (SNR_CAP_DB, SEG_MAX_DB);
        for fraction in [0.05, 0.10, 0.20] {
            let q = evaluate(&v, &with_lost_frames(&v, fraction, 8)).unwrap();
            assert_eq!(q.offset_frames, 0);
            // An untouched frame scores 35 dB and a zeroed one 0 dB, so the mean falls by
            // about 35 dB × the fraction lost (pauses are not counted either way).
            let drop = SEG_MAX_DB - q.seg_snr_db;
            assert!(
                drop > 35.0 * fraction * 0.5 && drop < 35.0 * fraction * 1.6,
                "{fraction}: drop {drop:.2} dB"
            );
            assert!(
                q.snr_db < last.0 && q.seg_snr_db < last.1,
                "{fraction}: {q:?} after {last:?}"
            );
            last = (q.snr_db, q.seg_snr_db);
        }
    }

    #[test]
    fn every_channel_is_compared() {
        let m = synth::music_like(16_000, 2, 2.0, 9);
        let mut swapped = m.clone();
        for f in swapped.samples.chunks_exact_mut(2) {
            f.swap(0, 1);
        }
        // Same mono mix, so the lag is 0, but the channels differ.
        let q = evaluate(&m, &swapped).unwrap();
        assert_eq!(q.offset_frames, 0);
        assert!(q.snr_db > 0.0 && q.snr_db < 20.0, "{q:?}");
    }

    #[test]
    fn mismatched_formats_and_useless_references_are_refused() {
        let a = synth::tone(8000, 1, 0.5, 440.0);
        let b = synth::tone(16_000, 1, 0.5, 440.0);
        let c = synth::tone(8000, 2, 0.5, 440.0);
        for (x, y) in [(&a, &b), (&b, &a), (&a, &c)] {
            match evaluate(x, y) {
                Err(Error::Config { what }) => assert!(what.contains("must match"), "{what}"),
                other => panic!("{other:?}"),
            }
        }
        let empty = Audio {
            samples: Vec::new(),
            ..a.clone()
        };
        assert!(matches!(evaluate(&empty, &a), Err(Error::Config { .. })));
        let silent = Audio {
            samples: vec![0; 800],
            ..a.clone()
        };
        assert!(matches!(evaluate(&silent, &a), Err(Error::Config { .. })));
    }
}
