//! Deterministic test signals: [`voice_like`] speech, [`music_like`] music and a plain [`tone`].
//!
//! The quality matrix, the tour and the concealment tests need signals that behave like the
//! real thing where it matters to a concealer (a glottal pitch of 100..220 Hz that glides,
//! formants that move every ~150 ms, syllables and pauses; harmonic notes with vibrato over
//! a held chord) without shipping recordings. Random choices come from a ChaCha8 generator
//! seeded by the caller, so a seed names a signal exactly on every machine.
//!
//! Every signal is scaled so that its largest sample is [`PEAK_DBFS`] (-3 dBFS), leaving
//! headroom for concealment overshoot. A length of `secs × rate` frames is rounded to the
//! nearest frame; a non-positive or non-finite length, or a 0 Hz rate, gives no samples.

use std::f64::consts::PI;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::wav::Audio;
use crate::{Error, Result};

/// Peak level of every signal here, in dB relative to full scale (32767).
pub const PEAK_DBFS: f64 = -3.0;

/// Vowel formant targets (F1, F2, F3) in Hz, after Peterson & Barney's adult male averages.
const VOWELS: [[f64; 3]; 6] = [
    [730.0, 1090.0, 2440.0], // /a/
    [270.0, 2290.0, 3010.0], // /i/
    [300.0, 870.0, 2240.0],  // /u/
    [530.0, 1840.0, 2480.0], // /e/
    [570.0, 840.0, 2410.0],  // /o/
    [660.0, 1720.0, 2410.0], // /ae/
];
/// Formant bandwidths in Hz.
const FORMANT_BW: [f64; 3] = [80.0, 110.0, 160.0];

/// Most samples (frames × channels) a synthetic signal may have: 64 MiB of 16-bit audio,
/// e.g. 35 minutes of 16 kHz mono or 6 minutes of 48 kHz stereo. The signal is built in
/// memory (with a 64-bit float working copy), so its size must be bounded before anything
/// is allocated.
pub const MAX_SAMPLES: u64 = 1 << 25;

/// Checks that a signal of `secs` seconds at `rate` Hz and `channels` channels is within
/// [`MAX_SAMPLES`] and returns its sample count; [`Error::Config`] names the product
/// otherwise. Call it before [`voice_like`], [`music_like`] or [`tone`] with values from a
/// user.
pub fn check_size(rate: u32, channels: u16, secs: f64) -> Result<u64> {
    let samples = secs * f64::from(rate) * f64::from(channels);
    if !(samples.is_finite() && samples >= 0.0) {
        return Err(Error::Config {
            what: format!("{secs} s at {rate} Hz x{channels} is not a signal length"),
        });
    }
    if samples.round() > MAX_SAMPLES as f64 {
        return Err(Error::Config {
            what: format!(
                "{secs} s at {rate} Hz x{channels} is {:.0} samples; at most {MAX_SAMPLES} \
                 ({} MiB of 16-bit audio): shorten --secs or lower --rate/--channels",
                samples.round(),
                (MAX_SAMPLES * 2) >> 20
            ),
        });
    }
    Ok(samples.round() as u64)
}

/// Frames in `secs` seconds at `rate`, rounded; 0 for nonsense input.
fn frame_count(rate: u32, secs: f64) -> usize {
    let n = secs * f64::from(rate);
    if n.is_finite() && n > 0.0 {
        n.round() as usize
    } else {
        0
    }
}

/// Scales `x` so its peak is [`PEAK_DBFS`] and rounds to 16-bit.
fn to_i16_at_peak(x: &[f64]) -> Vec<i16> {
    let peak = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let gain = if peak > 0.0 {
        10f64.powf(PEAK_DBFS / 20.0) * 32767.0 / peak
    } else {
        0.0
    };
    x.iter()
        .map(|v| (v * gain).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

/// A two-pole resonator (one formant) with unity gain at 0 Hz.
#[derive(Default)]
struct Resonator {
    y1: f64,
    y2: f64,
}

impl Resonator {
    /// Filters one sample through a resonance at `freq` Hz of bandwidth `bw` Hz. Resonances
    /// at or above 0.45 × `rate` pass the signal through (they cannot be represented).
    fn step(&mut self, x: f64, freq: f64, bw: f64, rate: f64) -> f64 {
        if freq >= 0.45 * rate {
            return x;
        }
        let r = (-PI * bw / rate).exp();
        let a1 = 2.0 * r * (2.0 * PI * freq / rate).cos();
        let a2 = -r * r;
        let y = (1.0 - a1 - a2) * x + a1 * self.y1 + a2 * self.y2;
        self.y2 = self.y1;
        self.y1 = y;
        y
    }
}

/// Glottal flow over one period, phase `p` in [0, 1): a smooth opening (36 % of the period),
/// a quicker closing (24 %), closed for the rest (Rosenberg's shape).
fn glottal_flow(p: f64) -> f64 {
    const OPEN: f64 = 0.36;
    const CLOSE: f64 = 0.24;
    if p < OPEN {
        0.5 * (1.0 - (PI * p / OPEN).cos())
    } else if p < OPEN + CLOSE {
        (0.5 * PI * (p - OPEN) / CLOSE).cos()
    } else {
        0.0
    }
}

/// Raised-cosine interpolation from `a` to `b`, `t` in [0, 1].
fn glide(a: f64, b: f64, t: f64) -> f64 {
    let w = 0.5 - 0.5 * (PI * t.clamp(0.0, 1.0)).cos();
    a + (b - a) * w
}

/// Speech-like mono audio: a glottal pulse train whose pitch glides between 100 and 220 Hz,
/// through three formant resonators that move to a new vowel every 120..180 ms (gliding over
/// 40 ms), shaped into syllables of 160..320 ms (about 4 per second) grouped in phrases of
/// 3..7 syllables with 150..400 ms pauses between them. Starts with a syllable; peak at
/// [`PEAK_DBFS`].
pub fn voice_like(rate: u32, secs: f64, seed: u64) -> Audio {
    let n = frame_count(rate, secs);
    let fs = f64::from(rate);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = vec![0.0f64; n];

    // Its own stream, so that a longer signal starts with the shorter one of the same seed.
    let mut envelope_rng = rng.clone();
    envelope_rng.set_stream(1);
    let envelope = syllable_envelope(n, fs, &mut envelope_rng);

    // Pitch targets every 250..450 ms.
    let mut f0_from = rng.random_range(100.0..220.0);
    let mut f0_to = rng.random_range(100.0..220.0);
    let mut f0_start = 0usize;
    let mut f0_len = ((rng.random_range(0.25..0.45) * fs) as usize).max(1);

    let mut vowel_from = VOWELS[rng.random_range(0..VOWELS.len())];
    let mut vowel_to = vowel_from;
    let mut vowel_start = 0usize;
    let mut vowel_len = ((rng.random_range(0.12..0.18) * fs) as usize).max(1);
    let glide_len = (0.04 * fs).max(1.0);

    let mut resonators: [Resonator; 3] = Default::default();
    let mut phase = 0.0f64;
    let mut last_flow = 0.0f64;
    for (i, o) in out.iter_mut().enumerate() {
        if i - f0_start >= f0_len {
            f0_from = f0_to;
            f0_to = rng.random_range(100.0..220.0);
            f0_start = i;
            f0_len = ((rng.random_range(0.25..0.45) * fs) as usize).max(1);
        }
        if i - vowel_start >= vowel_len {
            vowel_from = vowel_to;
            let mut next = VOWELS[rng.random_range(0..VOWELS.len())];
            if next == vowel_from {
                next = VOWELS
                    [(VOWELS.iter().position(|v| *v == next).unwrap_or(0) + 1) % VOWELS.len()];
            }
            vowel_to = next;
            vowel_start = i;
            vowel_len = ((rng.random_range(0.12..0.18) * fs) as usize).max(1);
        }
        let f0 = glide(f0_from, f0_to, (i - f0_start) as f64 / f0_len as f64);
        phase = (phase + f0 / fs).fract();
        let flow = glottal_flow(phase);
        // The derivative of the flow is what radiates from the lips; a little breath noise
        // rides on the open phase.
        let breath = 0.02 * flow * rng.random_range(-1.0..1.0);
        let mut x = (flow - last_flow) * fs / f0 + breath;
        last_flow = flow;

        let t = (i - vowel_start) as f64 / glide_len;
        for (k, res) in resonators.iter_mut().enumerate() {
            let freq = glide(vowel_from[k], vowel_to[k], t);
            x = res.step(x, freq, FORMANT_BW[k], fs);
        }
        *o = x * envelope[i];
    }
    Audio {
        rate,
        channels: 1,
        samples: to_i16_at_peak(&out),
    }
}

/// Syllable amplitude envelope: bumps of 160..320 ms (`sin^0.7` with a random height of
/// 0.55..1.0), 3..7 per phrase, phrases separated by 150..400 ms of silence.
fn syllable_envelope(n: usize, fs: f64, rng: &mut ChaCha8Rng) -> Vec<f64> {
    let mut env = vec![0.0f64; n];
    let mut i = 0usize;
    while i < n {
        let syllables = rng.random_range(3..=7);
        for _ in 0..syllables {
            let len = ((rng.random_range(0.16..0.32) * fs) as usize).max(1);
            let height = rng.random_range(0.55..1.0);
            for (k, e) in env.iter_mut().skip(i).take(len).enumerate() {
                *e = height * (PI * (k as f64 + 0.5) / len as f64).sin().powf(0.7);
            }
            i += len;
        }
        i += ((rng.random_range(0.15..0.40) * fs) as usize).max(1);
    }
    env
}

/// One MIDI note number as Hz (A4 = 69 = 440 Hz).
fn midi_hz(note: f64) -> f64 {
    440.0 * 2f64.powf((note - 69.0) / 12.0)
}

/// Adds one harmonic note to `buf`: `partials` relative amplitudes, ADSR envelope
/// (attack 15 ms, decay 80 ms to 0.6, release 80 ms after `hold` frames), vibrato of 5.5 Hz
/// and ±0.4 % that fades in after 100 ms. `start` and `hold` are in frames.
fn add_note(
    buf: &mut [f64],
    fs: f64,
    start: usize,
    hold: usize,
    hz: f64,
    gain: f64,
    partials: &[f64],
) {
    let attack = 0.015 * fs;
    let decay = 0.08 * fs;
    let release = 0.08 * fs;
    let sustain = 0.6;
    let total = hold + release as usize;
    let mut phase = 0.0f64;
    for k in 0..total {
        let Some(out) = buf.get_mut(start + k) else {
            break;
        };
        let t = k as f64;
        let level = if t < attack {
            t / attack
        } else if t < attack + decay {
            1.0 - (1.0 - sustain) * (t - attack) / decay
        } else {
            sustain
        };
        let held = if k < hold {
            level
        } else {
            level.min(sustain) * (1.0 - (t - hold as f64) / release)
        };
        let vib_depth = 0.004 * ((t / fs - 0.1) / 0.2).clamp(0.0, 1.0);
        let f = hz * (1.0 + vib_depth * (2.0 * PI * 5.5 * t / fs).sin());
        phase = (phase + f / fs).fract();
        let mut v = 0.0;
        for (p, amp) in partials.iter().enumerate() {
            let harmonic = (p + 1) as f64;
            if hz * harmonic < 0.45 * fs {
                v += amp * (2.0 * PI * harmonic * phase).sin();
            }
        }
        *out += gain * held.max(0.0) * v;
    }
}

/// Music-like audio: a melody of harmonic notes (four partials, ADSR envelope, slight
/// vibrato) stepping through a major pentatonic scale in notes of 150..500 ms, over a held
/// triad an octave below that moves I-vi-IV-V every 2 s. Channel `c` of `channels` mixes
/// melody and chord in its own proportion (melody from 1.0 down to 0.7, chord from 0.7 up to
/// 1.0 across the channels), so stereo channels are related but not equal. Peak (over all
/// channels) at [`PEAK_DBFS`]; `channels` 0 gives no samples.
pub fn music_like(rate: u32, channels: u16, secs: f64, seed: u64) -> Audio {
    const SCALE: [f64; 8] = [0.0, 2.0, 4.0, 7.0, 9.0, 12.0, 14.0, 16.0];
    const MELODY: [f64; 4] = [1.0, 0.5, 0.3, 0.15];
    const PAD: [f64; 3] = [1.0, 0.35, 0.12];
    /// Chord roots relative to the key (I, vi, IV, V) and whether the triad is minor.
    const PROGRESSION: [(f64, bool); 4] = [(0.0, false), (9.0, true), (5.0, false), (7.0, false)];

    let n = if channels == 0 {
        0
    } else {
        frame_count(rate, secs)
    };
    let fs = f64::from(rate);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let key = f64::from(rng.random_range(57u8..=64));

    let mut melody = vec![0.0f64; n];
    let mut degree = rng.random_range(0..SCALE.len());
    let mut at = 0usize;
    while at < n {
        let len = (fs * [0.15, 0.25, 0.35, 0.5][rng.random_range(0..4)]) as usize;
        let step: i32 = [-2, -1, -1, 1, 1, 2][rng.random_range(0..6)];
        degree = (degree as i32 + step).clamp(0, SCALE.len() as i32 - 1) as usize;
        let hold = (len as f64 * 0.85) as usize;
        add_note(
            &mut melody,
            fs,
            at,
            hold,
            midi_hz(key + 12.0 + SCALE[degree]),
            1.0,
            &MELODY,
        );
        at += len.max(1);
    }

    let mut chord = vec![0.0f64; n];
    let bar = (2.0 * fs) as usize;
    for (b, start) in (0..n).step_by(bar.max(1)).enumerate() {
        let (root, minor) = PROGRESSION[b % PROGRESSION.len()];
        for interval in [0.0, if minor { 3.0 } else { 4.0 }, 7.0] {
            // Held to the bar line; the 80 ms release overlaps the next chord's attack.
            add_note(
                &mut chord,
                fs,
                start,
                bar,
                midi_hz(key - 12.0 + root + interval),
                0.25,
                &PAD,
            );
        }
    }

    let ch = usize::from(channels);
    let mut mixed = vec![0.0f64; n * ch];
    for c in 0..ch {
        let p = if ch > 1 {
            c as f64 / (ch - 1) as f64
        } else {
            0.5
        };
        let (gm, gc) = (1.0 - 0.3 * p, 0.7 + 0.3 * p);
        for (i, (m, h)) in melody.iter().zip(&chord).enumerate() {
            mixed[i * ch + c] = gm * m + gc * h;
        }
    }
    Audio {
        rate,
        channels,
        samples: to_i16_at_peak(&mixed),
    }
}

/// A sine of `hz` Hz starting at phase 0, the same in every channel, peak at [`PEAK_DBFS`]
/// (the amplitude, whether or not a sample lands on the crest).
pub fn tone(rate: u32, channels: u16, secs: f64, hz: f64) -> Audio {
    let n = if channels == 0 {
        0
    } else {
        frame_count(rate, secs)
    };
    let amp = 10f64.powf(PEAK_DBFS / 20.0) * 32767.0;
    let ch = usize::from(channels);
    let mut samples = Vec::with_capacity(n * ch);
    for i in 0..n {
        let v = (amp * (2.0 * PI * hz * i as f64 / f64::from(rate)).sin()).round() as i16;
        samples.extend(std::iter::repeat_n(v, ch));
    }
    Audio {
        rate,
        channels,
        samples,
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn sizes_are_bounded_before_anything_is_allocated() {
        assert_eq!(check_size(16000, 1, 5.0).unwrap(), 80_000);
        assert_eq!(check_size(16000, 1, 0.0).unwrap(), 0);
        let e = check_size(384_000, 16, 86_400.0).unwrap_err().to_string();
        assert!(e.contains("samples") && e.contains("at most"), "{e}");
        assert!(check_size(16000, 1, f64::NAN).is_err());
        assert!(check_size(16000, 1, f64::INFINITY).is_err());
        assert!(check_size(16000, 1, -1.0).is_err());
        assert!(check_size(48000, 2, 349.0).is_ok());
        assert!(check_size(48000, 2, 350.0).is_err());
    }

    fn peak_dbfs(a: &Audio) -> f64 {
        let peak = a
            .samples
            .iter()
            .map(|s| i32::from(*s).abs())
            .max()
            .unwrap_or(0);
        20.0 * (f64::from(peak) / 32767.0).log10()
    }

    fn rms_dbfs(x: &[i16]) -> f64 {
        let e: f64 = x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len().max(1) as f64;
        10.0 * (e / 32767f64.powi(2)).log10()
    }

    /// Period in frames (strongest normalised autocorrelation between `min` and `max`).
    fn period(x: &[f32], min: usize, max: usize) -> usize {
        let mut best = (f64::MIN, 0);
        for lag in min..=max {
            let (mut xy, mut xx, mut yy) = (0.0f64, 0.0f64, 0.0f64);
            for i in 0..x.len() - lag {
                let (a, b) = (f64::from(x[i]), f64::from(x[i + lag]));
                xy += a * b;
                xx += a * a;
                yy += b * b;
            }
            let r = xy / (xx * yy).sqrt().max(1e-12);
            if r > best.0 {
                best = (r, lag);
            }
        }
        best.1
    }

    /// Energy per `ms` frame of the mono mix, in dB below the loudest frame.
    fn frame_levels(a: &Audio, ms: u32) -> Vec<f64> {
        let len = (a.rate * ms / 1000) as usize;
        let e: Vec<f64> = a
            .mono_f32()
            .chunks(len)
            .map(|c| c.iter().map(|&v| f64::from(v).powi(2)).sum())
            .collect();
        let max = e.iter().cloned().fold(0.0, f64::max);
        e.iter()
            .map(|v| 10.0 * (v / max).max(1e-20).log10())
            .collect()
    }

    #[test]
    fn lengths_follow_rate_and_duration() {
        assert_eq!(voice_like(16_000, 1.5, 1).samples.len(), 24_000);
        let m = music_like(44_100, 2, 1.0, 1);
        assert_eq!(
            (m.samples.len(), m.channels, m.frames()),
            (88_200, 2, 44_100)
        );
        let t = tone(8000, 3, 0.25, 440.0);
        assert_eq!((t.samples.len(), t.frames(), t.rate), (6000, 2000, 8000));
        assert_eq!(voice_like(8000, 0.0, 1).samples.len(), 0);
        assert_eq!(voice_like(8000, f64::NAN, 1).samples.len(), 0);
        assert_eq!(music_like(0, 2, 1.0, 1).samples.len(), 0);
        assert_eq!(music_like(8000, 0, 1.0, 1).samples.len(), 0);
        assert_eq!(tone(8000, 1, -1.0, 440.0).samples.len(), 0);
    }

    #[test]
    fn peaks_are_minus_three_dbfs() {
        for a in [
            voice_like(8000, 2.0, 3),
            voice_like(48_000, 2.0, 4),
            music_like(44_100, 2, 2.0, 5),
            music_like(16_000, 1, 2.0, 6),
        ] {
            let p = peak_dbfs(&a);
            assert!(
                (p - PEAK_DBFS).abs() < 0.01,
                "{} Hz: peak {p:.3} dBFS",
                a.rate
            );
        }
        let p = peak_dbfs(&tone(48_000, 1, 0.1, 1000.0));
        assert!((p - PEAK_DBFS).abs() < 0.01, "tone peak {p:.3}");
    }

    #[test]
    fn signals_are_not_silent() {
        let v = voice_like(16_000, 5.0, 7);
        let m = music_like(16_000, 2, 5.0, 7);
        let t = tone(16_000, 1, 1.0, 500.0);
        // Speech sits 12..20 dB below its peak on average (pauses included), music less.
        assert!(
            rms_dbfs(&v.samples) > -25.0,
            "voice rms {:.1}",
            rms_dbfs(&v.samples)
        );
        assert!(
            rms_dbfs(&m.samples) > -20.0,
            "music rms {:.1}",
            rms_dbfs(&m.samples)
        );
        assert!((rms_dbfs(&t.samples) - (PEAK_DBFS - 3.01)).abs() < 0.05);
    }

    #[test]
    fn voice_has_syllables_and_pauses() {
        let v = voice_like(16_000, 10.0, 11);
        let levels = frame_levels(&v, 10);
        // Syllable onsets: the 10 ms level rising through -20 dB.
        let onsets = levels
            .windows(2)
            .filter(|w| w[0] < -20.0 && w[1] >= -20.0)
            .count();
        // Pauses: runs of at least 150 ms below -60 dB.
        let mut pauses = 0;
        let mut run = 0;
        for l in &levels {
            if *l < -60.0 {
                run += 1;
                if run == 15 {
                    pauses += 1;
                }
            } else {
                run = 0;
            }
        }
        assert!(
            (25..=48).contains(&onsets),
            "{onsets} syllable onsets in 10 s"
        );
        assert!((4..=14).contains(&pauses), "{pauses} pauses in 10 s");
        // Most of the time is voiced.
        let voiced = levels.iter().filter(|l| **l > -30.0).count();
        assert!(
            voiced * 10 > levels.len() * 6,
            "{voiced} of {} frames voiced",
            levels.len()
        );
    }

    #[test]
    fn voice_pitch_is_in_range_and_moves() {
        let v = voice_like(16_000, 6.0, 5);
        let x = v.mono_f32();
        let levels = frame_levels(&v, 40);
        let mut pitches = Vec::new();
        for (k, l) in levels.iter().enumerate() {
            if *l > -12.0 && (k + 1) * 640 <= x.len() {
                let p = period(&x[k * 640..(k + 1) * 640], 16_000 / 240, 16_000 / 90);
                pitches.push(16_000.0 / p as f64);
            }
        }
        assert!(pitches.len() >= 20, "{} loud frames", pitches.len());
        let lo = pitches.iter().cloned().fold(f64::MAX, f64::min);
        let hi = pitches.iter().cloned().fold(0.0, f64::max);
        assert!(lo >= 95.0 && hi <= 230.0, "pitch {lo:.0}..{hi:.0} Hz");
        assert!(hi - lo > 30.0, "pitch barely moves: {lo:.0}..{hi:.0} Hz");
    }

    #[test]
    fn music_channels_differ_but_agree() {
        let m = music_like(22_050, 2, 4.0, 9);
        let (l, r): (Vec<f64>, Vec<f64>) = m
            .samples
            .chunks(2)
            .map(|f| (f64::from(f[0]), f64::from(f[1])))
            .unzip();
        assert_ne!(l, r);
        let xy: f64 = l.iter().zip(&r).map(|(a, b)| a * b).sum();
        let corr = xy
            / (l.iter().map(|a| a * a).sum::<f64>() * r.iter().map(|b| b * b).sum::<f64>()).sqrt();
        assert!(corr > 0.5 && corr < 0.999, "channel correlation {corr:.3}");
        // One channel of a 1-channel mix is not silent and not the other's copy.
        let mono = music_like(22_050, 1, 4.0, 9);
        assert_eq!(mono.channels, 1);
        assert!(rms_dbfs(&mono.samples) > -20.0);
    }

    #[test]
    fn tone_has_its_frequency() {
        let t = tone(8000, 2, 1.0, 1000.0);
        let left: Vec<i16> = t.samples.iter().step_by(2).copied().collect();
        assert_eq!(
            left,
            t.samples
                .iter()
                .skip(1)
                .step_by(2)
                .copied()
                .collect::<Vec<_>>()
        );
        let crossings = left.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        assert!(
            (1998..=2001).contains(&crossings),
            "{crossings} sign changes"
        );
    }

    #[test]
    fn seeds_decide_the_signal() {
        assert_eq!(voice_like(8000, 1.0, 42), voice_like(8000, 1.0, 42));
        assert_ne!(voice_like(8000, 1.0, 42), voice_like(8000, 1.0, 43));
        assert_eq!(music_like(8000, 2, 1.0, 42), music_like(8000, 2, 1.0, 42));
        assert_ne!(music_like(8000, 2, 1.0, 42), music_like(8000, 2, 1.0, 43));
        // A longer signal starts with the shorter one (up to the peak scaling).
        let short = voice_like(8000, 1.0, 42).mono_f32();
        let long = voice_like(8000, 2.0, 42).mono_f32();
        let xy: f64 = short
            .iter()
            .zip(&long)
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum();
        let xx: f64 = short.iter().map(|a| f64::from(*a).powi(2)).sum();
        let yy: f64 = long[..short.len()]
            .iter()
            .map(|a| f64::from(*a).powi(2))
            .sum();
        assert!(xy / (xx * yy).sqrt() > 0.9999);
    }
}
