//! Packet-loss concealment for the receiver's jitter buffer: what is played in place of
//! audio that never arrived, and how the first packet after a loss is joined to it.
//!
//! The jitter buffer plays audio in timestamp order. It hands every received packet to
//! [`Concealer::good`] just before playing it and asks [`Concealer::conceal`] for each missing
//! stretch, in as many pieces as it likes. Four [`ConcealMode`]s:
//!
//! - `silence`: zeros, what ffmpeg and GStreamer's `rtpjitterbuffer` play.
//! - `repeat`: the last received packet again, cyclically and at full volume.
//! - `fade`: the last packet with the `g711` attenuation and a short fade-in on recovery.
//! - `g711`: pitch-synchronous waveform substitution after ITU-T G.711 Appendix I (below).
//!
//! `repeat` and `fade` join the first good packet by ramping out, over 4 ms, the offset from
//! the last concealed sample (the cyclic repetition may be mid-jump there); `fade` also ramps
//! its gain back to 1, a fade-in after a long loss.
//!
//! # G.711 Appendix I, as done here
//!
//! All lengths of the Appendix (specified at 8 kHz) are scaled by `rate / 8000`:
//!
//! - History of 48.75 ms (390 samples at 8 kHz: three longest pitch periods and a quarter),
//!   a fixed-size buffer of what was played, including concealment.
//! - At the start of a loss the pitch period is estimated on the mix of the channels: the
//!   normalised cross-correlation of the last 20 ms with the history `lag` earlier, for
//!   lags of 5..15 ms (200..66 Hz), first at 2:1 decimation on even lags, then at full
//!   resolution around the best coarse lag. Not in the Appendix: a half or third of that lag
//!   is preferred when it correlates at least 0.9 as well, because the even-lag coarse search
//!   can land on the double of an odd period.
//! - The last period is repeated; each channel uses the same period. The repeated segment is
//!   made cyclic by a quarter-period overlap-add of its end with the quarter period that
//!   precedes its start, so that each wrap is seamless.
//! - At 10 ms and 20 ms of loss the repeated segment grows by one period (to 2, then 3
//!   periods, reaching further back), crossfading from the old readout over a quarter period.
//! - No attenuation for the first 10 ms, then a linear ramp of 20 % per 10 ms: silence from
//!   60 ms on.
//! - The first good packet is overlap-added with the continued synthetic signal over 4 ms,
//!   plus 4 ms for each further 10 ms of loss, 10 ms at most; shorter packets continue the
//!   crossfade into the next ones.
//!
//! One deviation: the Appendix delays all output by 3.75 ms so that its quarter-period
//! overlap-add at the start of a loss can still rewrite the tail of the last good frame. This
//! module adds no delay (that audio has been played already), so the quarter-period join at
//! the start is made in the concealment instead: the difference between the last played
//! sample and the sample that precedes the repeated period is added to the first quarter
//! period and ramped down to zero.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// A concealment strategy, named on the command line by [`ConcealMode::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConcealMode {
    /// Zeros for missing audio (ffmpeg, GStreamer).
    Silence,
    /// The last received packet repeated cyclically at full volume.
    Repeat,
    /// The last received packet repeated, attenuated like `g711`, faded in on recovery.
    Fade,
    /// Pitch-based waveform substitution after ITU-T G.711 Appendix I.
    G711,
    /// Both sides of the gap: the past extrapolated forward (Appendix I) and, when the
    /// jitter buffer already holds the packet after the gap, that packet extrapolated
    /// backward, aligned in phase and crossfaded.
    Bridge,
}

impl ConcealMode {
    /// Every mode, simplest first.
    pub const ALL: [ConcealMode; 5] = [
        ConcealMode::Silence,
        ConcealMode::Repeat,
        ConcealMode::Fade,
        ConcealMode::G711,
        ConcealMode::Bridge,
    ];

    /// The name used by [`FromStr`] and [`fmt::Display`]: `silence`, `repeat`, `fade`, `g711`.
    pub fn name(self) -> &'static str {
        match self {
            ConcealMode::Silence => "silence",
            ConcealMode::Repeat => "repeat",
            ConcealMode::Fade => "fade",
            ConcealMode::G711 => "g711",
            ConcealMode::Bridge => "bridge",
        }
    }
}

impl fmt::Display for ConcealMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ConcealMode {
    type Err = Error;

    /// Parses a [`ConcealMode::name`] (ASCII case ignored); anything else is an
    /// [`Error::Config`] that lists the valid names.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ConcealMode::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let valid: Vec<&str> = ConcealMode::ALL.iter().map(|m| m.name()).collect();
                Error::Config {
                    what: format!(
                        "concealment mode {s:?} is unknown; valid: {}",
                        valid.join(", ")
                    ),
                }
            })
    }
}

/// Appendix I lengths at 8 kHz, in samples.
mod at_8k {
    /// 10 ms: the Appendix's frame; attenuation and buffer growth happen in these steps.
    pub(super) const FRAME: usize = 80;
    /// 4 ms: merge length per 10 ms of loss.
    pub(super) const MERGE_STEP: usize = 32;
    /// Shortest pitch period (200 Hz).
    pub(super) const PITCH_MIN: usize = 40;
    /// Longest pitch period (66 Hz).
    pub(super) const PITCH_MAX: usize = 120;
    /// 20 ms correlation window of the pitch search.
    pub(super) const CORR_LEN: usize = 160;
    /// 120 ms: the longest packet `repeat` and `fade` keep (longer ones keep their tail).
    pub(super) const LAST_PACKET_MAX: usize = 960;
}

/// Attenuation per Appendix I frame (10 ms) after the first.
const ATTENUATION_PER_FRAME: f32 = 0.2;
/// A sub-multiple of the best lag is taken as the period when its normalised correlation
/// reaches this fraction of the best one's.
const SUBMULTIPLE_SCORE: f64 = 0.9;
/// Repeated periods at most (the segment grows at 10 and 20 ms of loss).
const MAX_PERIODS: usize = 3;

/// The Appendix's lengths at the stream's rate, in frames.
#[derive(Debug, Clone, Copy)]
struct Lengths {
    frame: usize,
    merge_step: usize,
    pitch_min: usize,
    pitch_max: usize,
    corr_len: usize,
    history: usize,
    last_packet_max: usize,
}

impl Lengths {
    fn new(rate: u32) -> Self {
        let scale = |len: usize| -> usize {
            let scaled = (len as u64 * u64::from(rate) + 4000) / 8000;
            usize::try_from(scaled).unwrap_or(usize::MAX).max(1)
        };
        let pitch_min = scale(at_8k::PITCH_MIN);
        let pitch_max = scale(at_8k::PITCH_MAX).max(pitch_min);
        let corr_len = scale(at_8k::CORR_LEN);
        Lengths {
            frame: scale(at_8k::FRAME),
            merge_step: scale(at_8k::MERGE_STEP),
            pitch_min,
            pitch_max,
            corr_len,
            // Three periods plus the quarter period their cyclic join reaches back.
            history: (MAX_PERIODS * pitch_max + pitch_max / 4).max(corr_len + pitch_max),
            last_packet_max: scale(at_8k::LAST_PACKET_MAX),
        }
    }
}

/// Where the concealer is between calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Received audio is playing; the next loss starts a new erasure.
    Playing,
    /// The last call was [`Concealer::conceal`].
    Concealing,
    /// Good audio is being crossfaded in from the continued concealment: `done` of `len`.
    Merging { done: usize, len: usize },
}

/// A crossfade away from the readout of a shorter repeated segment (`g711` buffer growth).
#[derive(Debug, Clone, Copy)]
struct OldReadout {
    periods: usize,
    pos: usize,
    done: usize,
}

/// The synthetic signal of the current erasure.
#[derive(Debug, Clone)]
struct Synth {
    /// Frames synthesised since the erasure began (continues through the merge).
    t: usize,
    /// Frames handed out as concealment in this erasure.
    erased: usize,
    /// `g711`: period in frames; repeated segment length is `periods * pitch`.
    pitch: usize,
    periods: usize,
    /// Read position in the repeated segment (or in the last packet).
    pos: usize,
    old: Option<OldReadout>,
    /// `g711`: per-channel difference ramped out over the first quarter period.
    seam: Vec<f32>,
    /// The last concealed frame, per channel.
    last_out: Vec<f32>,
    /// `repeat`, `fade`: per-channel offset from the last concealed frame to the first good
    /// one (scaled by `join_gain`), ramped out over the merge.
    join: Vec<f32>,
    /// `fade`: the gain reached when the loss ended, ramped up to 1 over the merge.
    join_gain: f32,
}

/// Packet-loss concealment state for one stream (sans-IO, no clock).
///
/// Memory is fixed at construction: a 48.75 ms history and snapshot for `g711`, 120 ms of
/// last packet for `repeat` and `fade`; nothing grows with the stream.
#[derive(Debug, Clone)]
pub struct Concealer {
    mode: ConcealMode,
    requested: ConcealMode,
    channels: usize,
    len: Lengths,
    /// `g711`: the last `len.history` frames played, interleaved, oldest first.
    history: Vec<i16>,
    /// `g711`: `history` as it was when the erasure began (the history keeps moving).
    snapshot: Vec<i16>,
    /// `g711`: scratch for the channel mix of the pitch search.
    mix: Vec<f32>,
    /// `repeat`, `fade`: the last good chunk (its tail if longer than `len.last_packet_max`).
    last: Vec<i16>,
    last_frames: usize,
    phase: Phase,
    synth: Synth,
    concealed: u64,
}

impl Concealer {
    /// A concealer for interleaved 16-bit audio at `rate` Hz with `channels` channels.
    ///
    /// A `rate` or `channels` of 0 is taken as 1 (the jitter buffer validates formats with
    /// [`crate::l16::AudioFormat::new`]; this only keeps the concealer from panicking).
    pub fn new(requested: ConcealMode, rate: u32, channels: u16) -> Self {
        let mode = match requested {
            ConcealMode::Bridge => ConcealMode::G711,
            m => m,
        };
        let channels = usize::from(channels.max(1));
        let len = Lengths::new(rate.max(1));
        let (history, mix) = if mode == ConcealMode::G711 {
            (vec![0; len.history * channels], vec![0.0; len.history])
        } else {
            (Vec::new(), Vec::new())
        };
        let last = match mode {
            ConcealMode::Repeat | ConcealMode::Fade => vec![0; len.last_packet_max * channels],
            ConcealMode::Silence | ConcealMode::G711 | ConcealMode::Bridge => Vec::new(),
        };
        Concealer {
            mode,
            requested,
            channels,
            len,
            snapshot: history.clone(),
            history,
            mix,
            last,
            last_frames: 0,
            phase: Phase::Playing,
            synth: Synth {
                t: 0,
                erased: 0,
                pitch: len.pitch_max,
                periods: 1,
                pos: 0,
                old: None,
                seam: vec![0.0; channels],
                last_out: vec![0.0; channels],
                join: vec![0.0; channels],
                join_gain: 1.0,
            },
            concealed: 0,
        }
    }

    /// The mode chosen at construction.
    pub fn mode(&self) -> ConcealMode {
        self.requested
    }

    /// Frames concealed so far in total (over all erasures).
    pub fn concealed_frames(&self) -> u64 {
        self.concealed
    }

    /// `g711`: the pitch period (in frames) estimated at the start of the latest erasure,
    /// or `None` before the first one and in the other modes.
    pub fn last_pitch(&self) -> Option<usize> {
        (self.mode == ConcealMode::G711 && self.concealed > 0).then_some(self.synth.pitch)
    }

    /// Received audio about to be played: interleaved, any whole number of frames (a
    /// trailing partial frame is left alone and not recorded).
    ///
    /// After a loss the start of `frames` is joined in place to the concealment: `g711`
    /// overlap-adds the continued synthetic signal over 4 ms plus 4 ms per further 10 ms lost
    /// (10 ms at most); `repeat` and `fade` ramp out, over 4 ms, the offset between the last
    /// concealed sample and the first good one (their cyclic repetition may be mid-jump
    /// there), and `fade` ramps its gain back up to 1 (a fade-in after a long loss);
    /// `silence` leaves it untouched. Shorter chunks continue the join into the next ones.
    /// The result is recorded as history: the played past for `g711`, the packet to repeat
    /// for `repeat` and `fade`.
    pub fn good(&mut self, frames: &mut [i16]) {
        let ch = self.channels;
        let whole = frames.len() / ch;
        if whole == 0 {
            return;
        }
        let frames = &mut frames[..whole * ch];
        if self.phase == Phase::Concealing {
            self.phase = match self.merge_len() {
                0 => Phase::Playing,
                len => Phase::Merging { done: 0, len },
            };
            let gain = if self.mode == ConcealMode::Fade {
                self.gain(self.synth.t)
            } else {
                1.0
            };
            let synth = &mut self.synth;
            synth.join_gain = gain;
            for (c, j) in synth.join.iter_mut().enumerate() {
                *j = synth.last_out[c] - f32::from(frames[c]) * gain;
            }
        }
        if let Phase::Merging { mut done, len } = self.phase {
            let n = whole.min(len - done);
            for frame in frames.chunks_exact_mut(ch).take(n) {
                let w = (done + 1) as f32 / (len + 1) as f32;
                if self.mode == ConcealMode::G711 {
                    for (c, s) in frame.iter_mut().enumerate() {
                        let synthetic = self.synth_sample(c);
                        *s = to_i16(synthetic * (1.0 - w) + f32::from(*s) * w);
                    }
                    self.advance();
                } else {
                    let gain = self.synth.join_gain + (1.0 - self.synth.join_gain) * w;
                    for (s, j) in frame.iter_mut().zip(&self.synth.join) {
                        *s = to_i16(f32::from(*s) * gain + j * (1.0 - w));
                    }
                }
                done += 1;
            }
            self.phase = if done >= len {
                Phase::Playing
            } else {
                Phase::Merging { done, len }
            };
        }
        match self.mode {
            ConcealMode::Silence => {}
            ConcealMode::G711 | ConcealMode::Bridge => push_history(&mut self.history, frames),
            ConcealMode::Repeat | ConcealMode::Fade => {
                let keep = whole.min(self.len.last_packet_max);
                self.last[..keep * ch].copy_from_slice(&frames[(whole - keep) * ch..]);
                self.last_frames = keep;
            }
        }
    }

    /// Appends `n` frames (`n * channels` samples) of concealment to `out`. Successive calls
    /// continue the same erasure until the next [`Concealer::good`]; `n == 0` does nothing.
    pub fn conceal(&mut self, n: usize, out: &mut Vec<i16>) {
        if n == 0 {
            return;
        }
        let ch = self.channels;
        if self.phase != Phase::Concealing {
            self.begin_erasure();
            self.phase = Phase::Concealing;
        }
        let start = out.len();
        out.reserve(n * ch);
        if self.mode == ConcealMode::Silence {
            out.resize(start + n * ch, 0);
        } else {
            for _ in 0..n {
                for c in 0..ch {
                    let v = self.synth_sample(c);
                    self.synth.last_out[c] = v;
                    out.push(to_i16(v));
                }
                self.advance();
            }
        }
        self.synth.erased = self.synth.erased.saturating_add(n);
        self.concealed = self.concealed.saturating_add(n as u64);
        if self.mode == ConcealMode::G711 {
            push_history(&mut self.history, &out[start..]);
        }
    }

    /// Frames of good audio to crossfade with the continued concealment.
    fn merge_len(&self) -> usize {
        match self.mode {
            ConcealMode::Silence => 0,
            ConcealMode::Repeat | ConcealMode::Fade => self.len.merge_step,
            ConcealMode::G711 | ConcealMode::Bridge => {
                let further = self.synth.erased.saturating_sub(1) / self.len.frame;
                self.len
                    .merge_step
                    .saturating_mul(further + 1)
                    .min(self.len.frame)
            }
        }
    }

    fn begin_erasure(&mut self) {
        self.synth.t = 0;
        self.synth.erased = 0;
        self.synth.pos = 0;
        self.synth.periods = 1;
        self.synth.old = None;
        if self.mode != ConcealMode::G711 {
            return;
        }
        self.snapshot.copy_from_slice(&self.history);
        self.synth.pitch = self.find_pitch();
        let ch = self.channels;
        let hist = self.len.history;
        for c in 0..ch {
            let last_played = f32::from(self.snapshot[(hist - 1) * ch + c]);
            let before_start = self.cyclic(c, 1, self.synth.pitch - 1);
            self.synth.seam[c] = last_played - before_start;
        }
    }

    /// The pitch period in frames: the lag in `pitch_min..=pitch_max` whose history best
    /// matches the last `corr_len` frames (normalised cross-correlation on the channel mix),
    /// searched at 2:1 decimation then refined by one frame either side.
    fn find_pitch(&mut self) -> usize {
        let ch = self.channels;
        let scale = 1.0 / ch as f32;
        for (m, frame) in self.mix.iter_mut().zip(self.snapshot.chunks_exact(ch)) {
            *m = frame.iter().map(|&s| f32::from(s)).sum::<f32>() * scale;
        }
        let (min, max, corr_len) = (self.len.pitch_min, self.len.pitch_max, self.len.corr_len);
        let end = self.mix.len();
        let reference = &self.mix[end - corr_len..];
        let score = |lag: usize, step: usize| -> Option<f64> {
            let lagged = &self.mix[end - corr_len - lag..end - lag];
            let (mut corr, mut energy) = (0.0f64, 0.0f64);
            for (r, l) in reference.iter().zip(lagged).step_by(step) {
                corr += f64::from(*r) * f64::from(*l);
                energy += f64::from(*l) * f64::from(*l);
            }
            (energy > 0.0).then(|| corr / energy.sqrt())
        };
        let best_of = |lags: &mut dyn Iterator<Item = usize>, step: usize| -> Option<usize> {
            let mut best: Option<(usize, f64)> = None;
            for lag in lags {
                if let Some(s) = score(lag, step) {
                    if best.is_none_or(|(_, b)| s > b) {
                        best = Some((lag, s));
                    }
                }
            }
            best.map(|(lag, _)| lag)
        };
        let Some(coarse) = best_of(&mut (min..=max).step_by(2), 2) else {
            // Silent history: any period repeats silence.
            return max;
        };
        let refine = |lag: usize| {
            let (lo, hi) = (lag.saturating_sub(1).max(min), (lag + 1).min(max));
            best_of(&mut (lo..=hi), 1).and_then(|l| score(l, 1).map(|s| (l, s)))
        };
        let Some((mut best, best_score)) = refine(coarse) else {
            return coarse;
        };
        // The even-lag coarse search can miss an odd period and land on its double: prefer
        // a sub-multiple that correlates nearly as well (a multiple of the period repeats
        // the same waveform, but the shortest keeps the overlaps and growth steps short).
        for k in (2..=MAX_PERIODS).rev() {
            if best / k < min {
                continue;
            }
            if let Some((lag, s)) = refine(best / k) {
                if best_score > 0.0 && s >= SUBMULTIPLE_SCORE * best_score {
                    best = lag;
                    break;
                }
            }
        }
        best
    }

    /// Sample `k` of channel `c` of the cyclic segment of the last `periods` pitch periods of
    /// the snapshot: its last quarter period is crossfaded into the quarter period before its
    /// start, so that reading on from its end into its start is seamless.
    fn cyclic(&self, c: usize, periods: usize, k: usize) -> f32 {
        let ch = self.channels;
        let hist = self.len.history;
        let seg = periods * self.synth.pitch;
        let quarter = self.synth.pitch / 4;
        let at = |frame: usize| f32::from(self.snapshot[frame * ch + c]);
        if k + quarter < seg {
            at(hist - seg + k)
        } else {
            let j = k + quarter - seg;
            let w = (j + 1) as f32 / (quarter + 1) as f32;
            at(hist - quarter + j) * (1.0 - w) + at(hist - seg - quarter + j) * w
        }
    }

    /// Gain of the `fade` and `g711` synthetic signal `t` frames into the erasure.
    fn gain(&self, t: usize) -> f32 {
        let frame = self.len.frame;
        if t < frame {
            return 1.0;
        }
        let frames_in = (t - frame) as f32 / frame as f32;
        (1.0 - ATTENUATION_PER_FRAME * frames_in).max(0.0)
    }

    /// The current synthetic sample of channel `c` (call [`Concealer::advance`] after all
    /// channels of a frame).
    fn synth_sample(&self, c: usize) -> f32 {
        let s = &self.synth;
        match self.mode {
            ConcealMode::Silence => 0.0,
            ConcealMode::Repeat | ConcealMode::Fade => {
                if self.last_frames == 0 {
                    return 0.0;
                }
                let v = f32::from(self.last[s.pos * self.channels + c]);
                if self.mode == ConcealMode::Fade {
                    v * self.gain(s.t)
                } else {
                    v
                }
            }
            ConcealMode::G711 | ConcealMode::Bridge => {
                let gain = self.gain(s.t);
                if gain == 0.0 {
                    return 0.0;
                }
                let mut v = self.cyclic(c, s.periods, s.pos);
                if let Some(old) = s.old {
                    let w = (old.done + 1) as f32 / (s.pitch / 4 + 1) as f32;
                    v = self.cyclic(c, old.periods, old.pos) * (1.0 - w) + v * w;
                }
                let quarter = s.pitch / 4;
                if s.t < quarter {
                    v += s.seam[c] * (quarter - s.t) as f32 / (quarter + 1) as f32;
                }
                v * gain
            }
        }
    }

    /// Moves the synthetic signal on by one frame, growing the `g711` segment at 10 and 20 ms.
    fn advance(&mut self) {
        let frame = self.len.frame;
        let s = &mut self.synth;
        s.t = s.t.saturating_add(1);
        match self.mode {
            ConcealMode::Silence => {}
            ConcealMode::Repeat | ConcealMode::Fade => {
                s.pos = if s.pos + 1 >= self.last_frames {
                    0
                } else {
                    s.pos + 1
                };
            }
            ConcealMode::G711 | ConcealMode::Bridge => {
                let quarter = s.pitch / 4;
                s.pos = (s.pos + 1) % (s.periods * s.pitch);
                if let Some(old) = &mut s.old {
                    old.pos = (old.pos + 1) % (old.periods * s.pitch);
                    old.done += 1;
                    if old.done >= quarter {
                        s.old = None;
                    }
                }
                if s.periods < MAX_PERIODS && s.t == s.periods * frame {
                    if quarter > 0 {
                        s.old = Some(OldReadout {
                            periods: s.periods,
                            pos: s.pos,
                            done: 0,
                        });
                    }
                    // The same phase one period further back in the longer segment.
                    s.periods += 1;
                }
            }
        }
    }
}

/// Appends whole interleaved frames to a fixed-size history, dropping the oldest.
fn push_history(history: &mut [i16], samples: &[i16]) {
    let cap = history.len();
    if samples.len() >= cap {
        history.copy_from_slice(&samples[samples.len() - cap..]);
    } else {
        history.copy_within(samples.len().., 0);
        history[cap - samples.len()..].copy_from_slice(samples);
    }
}

fn to_i16(v: f32) -> i16 {
    v.round().clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    const RATE: u32 = 16_000;

    fn sine(rate: u32, hz: f32, amp: f32, frames: usize, channels: usize) -> Vec<i16> {
        let mut v = Vec::with_capacity(frames * channels);
        for i in 0..frames {
            let x = amp * (std::f32::consts::TAU * hz * i as f32 / rate as f32).sin();
            for c in 0..channels {
                // The second channel at half level so channels differ.
                v.push(to_i16(x / (1 + c) as f32));
            }
        }
        v
    }

    /// Voiced-speech-like test signal: a pulse train whose pitch glides sinusoidally between
    /// 120 and 180 Hz (one cycle per `glide_period` seconds), with a glottal-like low-pass,
    /// two formant resonators (700 Hz, 1200 Hz) and a syllable-rate envelope; peak 12000.
    fn voiced(rate: u32, secs: f32, glide_period: f32) -> Vec<i16> {
        let n = (rate as f32 * secs) as usize;
        let fs = rate as f32;
        let resonator = |hz: f32, bw: f32| {
            let r = (-std::f32::consts::PI * bw / fs).exp();
            (2.0 * r * (std::f32::consts::TAU * hz / fs).cos(), -r * r)
        };
        let (a1, a2) = resonator(700.0, 130.0);
        let (b1, b2) = resonator(1200.0, 150.0);
        let (mut phase, mut glottal) = (0.0f32, 0.0f32);
        let (mut y1, mut y2, mut z1, mut z2) = (0.0f32, 0.0, 0.0, 0.0);
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let t = i as f32 / fs;
            let f0 = 150.0 + 30.0 * (std::f32::consts::TAU * t / glide_period).sin();
            phase += f0 / fs;
            let pulse = if phase >= 1.0 {
                phase -= 1.0;
                1.0
            } else {
                0.0
            };
            glottal = 0.9 * glottal + pulse;
            let y = glottal + a1 * y1 + a2 * y2;
            (y2, y1) = (y1, y);
            let z = y + b1 * z1 + b2 * z2;
            (z2, z1) = (z1, z);
            let envelope = 0.7 + 0.3 * (std::f32::consts::TAU * 3.0 * t).sin();
            out.push(z * envelope);
        }
        let peak = out.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        out.iter().map(|v| to_i16(v * 12_000.0 / peak)).collect()
    }

    /// Plays `signal` in packets of `packet` frames, concealing those `lost` says; returns the
    /// output, as long as the input.
    fn play(
        mode: ConcealMode,
        rate: u32,
        channels: usize,
        signal: &[i16],
        packet: usize,
        lost: impl Fn(usize) -> bool,
    ) -> Vec<i16> {
        let mut c = Concealer::new(mode, rate, channels as u16);
        let mut out = Vec::with_capacity(signal.len());
        for (i, chunk) in signal.chunks(packet * channels).enumerate() {
            if lost(i) {
                c.conceal(chunk.len() / channels, &mut out);
            } else {
                let mut p = chunk.to_vec();
                c.good(&mut p);
                out.extend_from_slice(&p);
            }
        }
        assert_eq!(out.len(), signal.len());
        out
    }

    fn snr_db(reference: &[i16], test: &[i16]) -> f64 {
        let (mut signal, mut noise) = (0.0f64, 0.0f64);
        for (&r, &t) in reference.iter().zip(test) {
            signal += f64::from(r).powi(2);
            noise += (f64::from(r) - f64::from(t)).powi(2);
        }
        10.0 * (signal / noise.max(1e-9)).log10()
    }

    fn max_jump(samples: &[i16], channels: usize) -> i32 {
        let mut worst = 0;
        for c in 0..channels {
            let ch: Vec<i32> = samples
                .iter()
                .skip(c)
                .step_by(channels)
                .map(|&s| s.into())
                .collect();
            for w in ch.windows(2) {
                worst = worst.max((w[1] - w[0]).abs());
            }
        }
        worst
    }

    #[test]
    fn names_parse_and_display_the_same() {
        for mode in ConcealMode::ALL {
            assert_eq!(mode.to_string(), mode.name());
            assert_eq!(mode.name().parse::<ConcealMode>().unwrap(), mode);
        }
        assert_eq!("G711".parse::<ConcealMode>().unwrap(), ConcealMode::G711);
        let err = "plc".parse::<ConcealMode>().unwrap_err().to_string();
        assert!(
            err.contains("\"plc\"") && err.contains("silence, repeat, fade, g711, bridge"),
            "{err}"
        );
    }

    #[test]
    fn every_mode_returns_exactly_n_frames() {
        for mode in ConcealMode::ALL {
            for channels in [1u16, 2, 6] {
                let mut c = Concealer::new(mode, 48_000, channels);
                let mut p = sine(48_000, 300.0, 8000.0, 960, usize::from(channels));
                c.good(&mut p);
                let mut out = Vec::new();
                let mut total = 0;
                for n in [0usize, 1, 3, 480, 960, 5000] {
                    c.conceal(n, &mut out);
                    total += n;
                    assert_eq!(
                        out.len(),
                        total * usize::from(channels),
                        "{mode} {channels}"
                    );
                }
                assert_eq!(c.concealed_frames(), total as u64);
                assert_eq!(c.mode(), mode);
            }
        }
    }

    #[test]
    fn silence_is_zeros_and_leaves_good_audio_alone() {
        let mut c = Concealer::new(ConcealMode::Silence, RATE, 2);
        let mut p = sine(RATE, 440.0, 9000.0, 320, 2);
        c.good(&mut p);
        let mut out = vec![7];
        c.conceal(500, &mut out);
        assert_eq!(out[0], 7);
        assert!(out[1..].iter().all(|&s| s == 0));
        let mut next = sine(RATE, 440.0, 9000.0, 320, 2);
        let original = next.clone();
        c.good(&mut next);
        assert_eq!(next, original);
    }

    #[test]
    fn repeat_plays_the_last_packet_cyclically_at_full_volume() {
        let mut c = Concealer::new(ConcealMode::Repeat, RATE, 1);
        let mut first = vec![5; 100];
        c.good(&mut first);
        let mut p: Vec<i16> = (0..160).map(|i| i * 10).collect();
        let packet = p.clone();
        c.good(&mut p);
        let mut out = Vec::new();
        c.conceal(100, &mut out);
        c.conceal(1500, &mut out);
        for (i, &s) in out.iter().enumerate() {
            assert_eq!(s, packet[i % 160], "frame {i}");
        }
    }

    #[test]
    fn pieces_of_one_erasure_join_seamlessly() {
        let signal = voiced(RATE, 0.2, 3.0);
        for mode in ConcealMode::ALL {
            for channels in [1usize, 2] {
                let stereo: Vec<i16> = signal.iter().flat_map(|&s| vec![s; channels]).collect();
                let run = |pieces: &[usize]| {
                    let mut c = Concealer::new(mode, RATE, channels as u16);
                    let mut p = stereo.clone();
                    c.good(&mut p);
                    let mut out = Vec::new();
                    for &n in pieces {
                        c.conceal(n, &mut out);
                    }
                    let mut after = stereo[..320 * channels].to_vec();
                    c.good(&mut after);
                    out.extend_from_slice(&after);
                    out
                };
                assert_eq!(
                    run(&[1200]),
                    run(&[1, 7, 0, 152, 160, 400, 480]),
                    "{mode} {channels}"
                );
            }
        }
    }

    #[test]
    fn pitch_is_found_on_a_harmonic_signal() {
        for (rate, period) in [
            (8000u32, 57usize),
            (16_000, 123),
            (44_100, 300),
            (48_000, 250),
        ] {
            let frames = rate as usize / 10;
            // Harmonics 1..5 of rate/period Hz; the right channel is silent.
            let mut p = Vec::with_capacity(frames * 2);
            for i in 0..frames {
                let x: f32 = (1..=5)
                    .map(|h| {
                        let arg = std::f32::consts::TAU * (h * i) as f32 / period as f32;
                        2000.0 / h as f32 * (arg + h as f32).sin()
                    })
                    .sum();
                p.extend_from_slice(&[to_i16(x), 0]);
            }
            let mut c = Concealer::new(ConcealMode::G711, rate, 2);
            assert_eq!(c.last_pitch(), None);
            c.good(&mut p);
            c.conceal(10, &mut Vec::new());
            assert_eq!(c.last_pitch(), Some(period), "{rate} Hz");
        }
    }

    #[test]
    fn g711_continues_a_periodic_signal_closely() {
        // 160 Hz at 16 kHz: a period of exactly 100 frames.
        let all = sine(RATE, 160.0, 10_000.0, 3200 + 160, 1);
        let mut c = Concealer::new(ConcealMode::G711, RATE, 1);
        let mut past = all[..3200].to_vec();
        c.good(&mut past);
        let mut out = Vec::new();
        c.conceal(160, &mut out);
        let snr = snr_db(&all[3200..], &out);
        assert!(snr > 30.0, "first 10 ms of concealment: SNR {snr:.1} dB");
        assert_eq!(c.last_pitch(), Some(100));
    }

    #[test]
    fn first_good_packet_after_a_loss_joins_without_a_jump() {
        // 173 Hz: not a whole number of frames per period, so concealment is out of phase.
        let (hz, amp) = (173.0, 10_000.0);
        let steepest = (std::f32::consts::TAU * hz / RATE as f32 * amp) as i32;
        for channels in [1usize, 2] {
            let signal = sine(RATE, hz, amp, 320 * 20, channels);
            for lost_packets in [1usize, 2, 4] {
                let lost = |i: usize| (6..6 + lost_packets).contains(&i);
                for mode in ConcealMode::ALL {
                    let out = play(mode, RATE, channels, &signal, 320, lost);
                    // From the last concealed frame to the end of the longest merge (10 ms).
                    let seam = (6 + lost_packets) * 320;
                    let window = &out[(seam - 1) * channels..(seam + 160) * channels];
                    let jump = max_jump(window, channels);
                    let whole = max_jump(&out, channels);
                    let what = format!("{mode}, {channels} ch, {lost_packets} lost: jump {jump}");
                    match mode {
                        // No merge: the test can tell a discontinuity.
                        ConcealMode::Silence => assert!(jump > 3 * steepest, "{what}"),
                        ConcealMode::Repeat | ConcealMode::Fade => {
                            assert!(jump < 2 * steepest, "{what}")
                        }
                        // Also seamless at the start and within the loss.
                        ConcealMode::G711 | ConcealMode::Bridge => assert!(whole < 2 * steepest, "{what}, whole {whole}"),
                    }
                }
            }
        }
    }

    #[test]
    fn fade_and_g711_fall_silent_after_60_ms() {
        let amp = 10_000.0;
        for mode in [ConcealMode::Fade, ConcealMode::G711] {
            let mut c = Concealer::new(mode, RATE, 1);
            let mut p = sine(RATE, 200.0, amp, 640, 1);
            c.good(&mut p);
            let mut out = Vec::new();
            for _ in 0..10 {
                c.conceal(160, &mut out);
            }
            let peak = |ms: std::ops::Range<usize>| {
                out[ms.start * 16..ms.end * 16]
                    .iter()
                    .map(|s| s.unsigned_abs())
                    .max()
                    .unwrap()
            };
            assert!(
                f32::from(peak(0..10)) > 0.95 * amp,
                "{mode}: full for 10 ms"
            );
            assert!(
                f32::from(peak(20..30)) < 0.81 * amp,
                "{mode}: {}",
                peak(20..30)
            );
            assert!(
                f32::from(peak(20..30)) > 0.55 * amp,
                "{mode}: {}",
                peak(20..30)
            );
            assert!(
                f32::from(peak(50..60)) < 0.21 * amp,
                "{mode}: {}",
                peak(50..60)
            );
            assert_eq!(peak(60..100), 0, "{mode}: silent from 60 ms");
            // Recovery fades in from silence.
            let mut next = sine(RATE, 200.0, amp, 320, 1);
            c.good(&mut next);
            assert!(
                next[0].unsigned_abs() < 1000 && max_jump(&next, 1) < 1000,
                "{mode}"
            );
        }
    }

    #[test]
    fn memory_does_not_grow_with_the_stream() {
        for mode in ConcealMode::ALL {
            let mut c = Concealer::new(mode, 48_000, 2);
            let sizes = (
                c.history.capacity(),
                c.snapshot.capacity(),
                c.last.capacity(),
            );
            let mut out = Vec::new();
            for i in 0..200usize {
                let mut p = sine(48_000, 100.0 + i as f32, 5000.0, 1 + i * 37 % 9000, 2);
                c.good(&mut p);
                out.clear();
                c.conceal(i * 13 % 3000, &mut out);
            }
            assert_eq!(
                sizes,
                (
                    c.history.capacity(),
                    c.snapshot.capacity(),
                    c.last.capacity()
                )
            );
        }
    }

    #[test]
    fn g711_beats_repeat_and_silence_on_voiced_speech() {
        // 16 kHz as asked, plus the ends of the supported rates to show the scaling. A glide
        // cycle of 3 s moves the pitch by up to 63 Hz/s, one of 1.3 s by up to 145 Hz/s
        // (fast intonation, where waveform substitution has least to gain).
        for (rate, glide_period) in [
            (16_000u32, 3.0f32),
            (16_000, 1.3),
            (8000, 3.0),
            (48_000, 3.0),
        ] {
            let signal = voiced(rate, 8.0, glide_period);
            let packet = rate as usize / 50; // 20 ms
            let packets = signal.len() / packet;
            for (loss, seed) in [(0.10, 1u64), (0.20, 2)] {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let lost: Vec<bool> = (0..packets).map(|_| rng.random_bool(loss)).collect();
                let mut snr = Vec::new();
                for mode in ConcealMode::ALL {
                    let out = play(mode, rate, 1, &signal, packet, |i| lost[i]);
                    snr.push((mode, snr_db(&signal, &out)));
                }
                let actual = lost.iter().filter(|&&l| l).count() as f64 / packets as f64;
                let line: Vec<String> = snr.iter().map(|(m, s)| format!("{m} {s:.2} dB")).collect();
                println!(
                    "SNR, voiced 120..180 Hz (glide cycle {glide_period} s), {rate} Hz, 20 ms \
                     packets, {:.0} % loss ({:.1} % actual): {}",
                    loss * 100.0,
                    actual * 100.0,
                    line.join(", ")
                );
                let of = |mode| snr.iter().find(|(m, _)| *m == mode).unwrap().1;
                assert!(of(ConcealMode::G711) > of(ConcealMode::Repeat), "{line:?}");
                assert!(of(ConcealMode::G711) > of(ConcealMode::Silence), "{line:?}");
            }
        }
    }

    #[derive(Debug, Clone)]
    enum Event {
        Good(Vec<i16>),
        Lost(usize),
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            prop::collection::vec(any::<i16>(), 0..3000).prop_map(Event::Good),
            (0usize..1200).prop_map(Event::Lost),
            // Smooth, loud packets too, so the pitch search and merges see real periods.
            (1usize..2000, 50.0f32..400.0)
                .prop_map(|(n, hz)| Event::Good(sine(16_000, hz, 32_767.0, n, 1))),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn never_panics_and_keeps_lengths(
            mode in prop::sample::select(ConcealMode::ALL.to_vec()),
            rate in prop::sample::select(vec![8000u32, 16_000, 44_100, 48_000, 1, 0]),
            channels in 1u16..=2,
            events in prop::collection::vec(event(), 0..40),
        ) {
            let mut c = Concealer::new(mode, rate, channels);
            let ch = usize::from(channels);
            let mut total = 0u64;
            for e in events {
                match e {
                    Event::Good(mut p) => {
                        let before = p.len();
                        c.good(&mut p);
                        prop_assert_eq!(p.len(), before);
                    }
                    Event::Lost(n) => {
                        let mut out = vec![1; 3];
                        c.conceal(n, &mut out);
                        prop_assert_eq!(out.len(), 3 + n * ch);
                        prop_assert_eq!(&out[..3], &[1, 1, 1]);
                        if mode == ConcealMode::Silence {
                            prop_assert!(out[3..].iter().all(|&s| s == 0));
                        }
                        total += n as u64;
                    }
                }
            }
            prop_assert_eq!(c.concealed_frames(), total);
        }
    }
}
