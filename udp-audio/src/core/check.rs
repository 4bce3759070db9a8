//! Does the stream match the format the receiver was given? Sans-IO checks of the RTP clock
//! rate and the channel count against what the packets themselves show.
//!
//! - **Rate.** An L16 stream's RTP clock is its sampling rate (RFC 3551 §4.5.11), so the
//!   timestamps advance at the rate the sender samples at. The least-squares slope of
//!   timestamp over arrival time, over at least [`RATE_WINDOW_US`] of arrivals, measures it:
//!   jitter moves single arrivals by milliseconds, not the slope over seconds. A slope more
//!   than [`RATE_TOLERANCE`] away from the configured rate means the output WAV would play at
//!   the wrong speed and pitch.
//! - **Channels.** Packets `n` and `n + 1` of a source are `ts(n+1) - ts(n)` frames apart, so
//!   packet `n`'s samples divided by that difference is the channel count it carries. When
//!   [`CHANNEL_AGREEMENT`] pairs in a row agree on a count other than the configured one, the
//!   check says so. A payload that is not a whole number of configured frames is dropped by
//!   the jitter buffer (`partial_frame`); the check says which `--channels` would fit.
//!
//! Each mismatch is reported once, as a [`Mismatch`] taken with [`FormatCheck::take`].

use std::fmt;

use crate::l16::AudioFormat;

/// The relative difference between measured and configured rate above which they disagree.
pub const RATE_TOLERANCE: f64 = 0.05;
/// Arrivals the rate is measured over while the stream runs, µs.
pub const RATE_WINDOW_US: i64 = 2_000_000;
/// The shortest span of arrivals measured at the end of a shorter stream, µs.
pub const RATE_WINDOW_AT_END_US: i64 = 1_000_000;
/// Packets the rate is measured over, at least.
const MIN_RATE_PACKETS: u64 = 20;
/// Consecutive packet pairs that must agree on another channel count.
pub const CHANNEL_AGREEMENT: u32 = 3;
/// Sampling rates a measured rate is rounded to when it is within 1 % of one.
const COMMON_RATES: [u32; 15] = [
    8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000, 176_400,
    192_000, 384_000,
];
/// Most channels a stream may have ([`AudioFormat::new`]'s limit).
const MAX_CHANNELS: u16 = 16;

/// A way in which the stream does not match the configured format.
#[derive(Debug, Clone, PartialEq)]
pub enum Mismatch {
    /// The RTP timestamps advance at another rate than the configured one.
    Rate {
        /// Timestamp ticks per second of arrival time.
        measured_hz: f64,
        /// The rate the receiver was given.
        configured_hz: u32,
        /// The span of arrivals measured, s.
        over_s: f64,
        /// The common rate nearest the measured one (or the measured one, rounded).
        likely_hz: u32,
    },
    /// Consecutive packets carry another channel count than the configured one.
    Channels {
        /// The channel count the packets carry.
        carried: u16,
        /// The channel count the receiver was given.
        configured: u16,
        /// Samples in a packet.
        samples: usize,
        /// Timestamp ticks (frames) between it and the next packet.
        ticks: u32,
    },
    /// Payloads that are not a whole number of configured frames (dropped as `partial_frame`).
    PartialFrames {
        /// The payload's length.
        payload_bytes: usize,
        /// The channel count the receiver was given.
        configured: u16,
        /// Channel counts that would fit: the one the timestamps show when known, else every
        /// count the payload divides into.
        fits: Vec<u16>,
    },
}

/// `[1, 3, 7]` as "1, 3 or 7".
fn either(values: &[u16]) -> String {
    match values {
        [] => "none".to_string(),
        [one] => one.to_string(),
        [init @ .., last] => format!(
            "{} or {last}",
            init.iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Rate {
                measured_hz,
                configured_hz,
                over_s,
                likely_hz,
            } => {
                let configured = f64::from(*configured_hz);
                let (how, percent) = if *measured_hz > configured {
                    ("slow and low", 100.0 * (1.0 - configured / measured_hz))
                } else {
                    ("fast and high", 100.0 * (configured / measured_hz - 1.0))
                };
                write!(
                    f,
                    "the RTP timestamps advance at {measured_hz:.0} Hz (measured over {over_s:.1} s \
                     of arrivals), not at the {configured_hz} Hz this receiver was given: the \
                     output plays {percent:.0} % {how}; the stream looks like {likely_hz} Hz: \
                     use --rate {likely_hz}"
                )
            }
            Mismatch::Channels {
                carried,
                configured,
                samples,
                ticks,
            } => write!(
                f,
                "the packets carry {carried} channel{} ({samples} samples per {ticks} timestamp \
                 ticks), not the {configured} this receiver was given: the output is wrong; \
                 use --channels {carried}",
                if *carried == 1 { "" } else { "s" }
            ),
            Mismatch::PartialFrames {
                payload_bytes,
                configured,
                fits,
            } => write!(
                f,
                "payloads of {payload_bytes} bytes ({} samples) are not a whole number of \
                 {configured}-channel frames: they are dropped (partial_frame); --channels {} \
                 would fit",
                payload_bytes / 2,
                either(fits)
            ),
        }
    }
}

/// Running least-squares fit of timestamp ticks over arrival microseconds (Welford's
/// updates, relative to the first point so the sums stay small).
#[derive(Debug, Clone, Default)]
struct Slope {
    n: u64,
    origin: (i64, i64),
    first_us: i64,
    last_us: i64,
    mean_t: f64,
    mean_x: f64,
    c_tx: f64,
    m_tt: f64,
}

impl Slope {
    fn add(&mut self, t_us: i64, ticks: i64) {
        if self.n == 0 {
            self.origin = (t_us, ticks);
            self.first_us = t_us;
        }
        self.last_us = self.last_us.max(t_us);
        self.first_us = self.first_us.min(t_us);
        let t = (t_us - self.origin.0) as f64 / 1e6;
        let x = (ticks - self.origin.1) as f64;
        self.n += 1;
        let n = self.n as f64;
        let dt = t - self.mean_t;
        self.mean_t += dt / n;
        self.mean_x += (x - self.mean_x) / n;
        self.c_tx += dt * (x - self.mean_x);
        self.m_tt += dt * (t - self.mean_t);
    }

    fn span_us(&self) -> i64 {
        self.last_us - self.first_us
    }

    /// Ticks per second, once the points span `min_span_us` and there are enough of them.
    fn rate(&self, min_span_us: i64) -> Option<f64> {
        (self.n >= MIN_RATE_PACKETS && self.span_us() >= min_span_us && self.m_tt > 0.0)
            .then(|| self.c_tx / self.m_tt)
    }
}

/// The last packet seen of a source, for the channel count of the pair it starts.
#[derive(Debug, Clone, Copy)]
struct LastPacket {
    ssrc: u32,
    seq: u16,
    ts: u32,
    samples: usize,
}

/// The checks of one stream against its configured format. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct FormatCheck {
    format: AudioFormat,
    slope: Slope,
    rate_told: bool,
    last: Option<LastPacket>,
    /// The channel count the last pairs showed, and how many in a row.
    carried: Option<(u16, u32)>,
    channels_told: bool,
    partial: u64,
    partial_bytes: usize,
    /// The last packet whose payload did not fit, by SSRC and sequence number.
    last_partial: Option<(u32, u16)>,
    partial_told: bool,
    found: Vec<Mismatch>,
    taken: usize,
}

impl FormatCheck {
    /// Checks against `format`.
    pub fn new(format: AudioFormat) -> Self {
        FormatCheck {
            format,
            slope: Slope::default(),
            rate_told: false,
            last: None,
            carried: None,
            channels_told: false,
            partial: 0,
            partial_bytes: 0,
            last_partial: None,
            partial_told: false,
            found: Vec::new(),
            taken: 0,
        }
    }

    /// A packet of `ssrc` with a payload of `payload_bytes` arrived (any source, before its
    /// payload is decoded).
    pub fn on_payload(&mut self, ssrc: u32, seq: u16, ts: u32, payload_bytes: usize) {
        let samples = payload_bytes / 2;
        if let Some(prev) = self.last {
            let ticks = ts.wrapping_sub(prev.ts);
            if prev.ssrc == ssrc
                && seq == prev.seq.wrapping_add(1)
                && ticks > 0
                && ticks < 1 << 20
                && prev.samples > 0
            {
                self.on_pair(prev.samples, ticks);
            }
        }
        self.last = Some(LastPacket {
            ssrc,
            seq,
            ts,
            samples,
        });
    }

    /// Packet `n` of `samples` samples was followed by packet `n + 1`, `ticks` later.
    fn on_pair(&mut self, samples: usize, ticks: u32) {
        let per_packet = ticks as usize;
        let shown = (samples % per_packet == 0)
            .then(|| samples / per_packet)
            .and_then(|c| u16::try_from(c).ok())
            .filter(|c| (1..=MAX_CHANNELS).contains(c));
        let Some(shown) = shown else {
            self.carried = None;
            return;
        };
        let run = match self.carried {
            Some((c, run)) if c == shown => run + 1,
            _ => 1,
        };
        self.carried = Some((shown, run));
        if shown != self.format.channels && run >= CHANNEL_AGREEMENT && !self.channels_told {
            self.channels_told = true;
            self.found.push(Mismatch::Channels {
                carried: shown,
                configured: self.format.channels,
                samples,
                ticks,
            });
        }
    }

    /// The payload just given to [`on_payload`](Self::on_payload) is not a whole number of
    /// configured frames. Two such packets in a row of one source are a mismatch (one alone
    /// may be junk, dropped and counted): the second also shows, from the timestamps, which
    /// channel count fits.
    pub fn on_partial_frame(&mut self, payload_bytes: usize) {
        self.partial += 1;
        self.partial_bytes = payload_bytes;
        let this = self.last.map(|p| (p.ssrc, p.seq));
        let in_a_row = matches!(
            (self.last_partial, this),
            (Some((s0, q0)), Some((s1, q1))) if s0 == s1 && q1 == q0.wrapping_add(1)
        );
        self.last_partial = this;
        if in_a_row && !self.partial_told {
            self.tell_partial();
        }
    }

    fn tell_partial(&mut self) {
        self.partial_told = true;
        let samples = self.partial_bytes / 2;
        let fits = match self.carried {
            Some((c, _)) if c != self.format.channels => {
                // The same cause, told once.
                self.channels_told = true;
                vec![c]
            }
            _ => (1..=MAX_CHANNELS)
                .filter(|&c| c != self.format.channels && samples % usize::from(c) == 0)
                .collect(),
        };
        self.found.push(Mismatch::PartialFrames {
            payload_bytes: self.partial_bytes,
            configured: self.format.channels,
            fits,
        });
    }

    /// A packet of the played stream, `ticks` its extended timestamp, arrived at `now_us`.
    pub fn on_stream_packet(&mut self, now_us: i64, ticks: i64) {
        self.slope.add(now_us, ticks);
        if let Some(rate) = self.slope.rate(RATE_WINDOW_US) {
            self.judge_rate(rate);
        }
    }

    /// The stream restarted (a confirmed sequence jump): its timestamps start afresh.
    pub fn restart(&mut self) {
        self.slope = Slope::default();
    }

    /// The stream ended: a stream shorter than [`RATE_WINDOW_US`] is measured over what came,
    /// if that spans [`RATE_WINDOW_AT_END_US`], and when nothing was `played`, payloads that
    /// did not fit, even one, are told (they are why).
    pub fn finish(&mut self, played: bool) {
        if let Some(rate) = self.slope.rate(RATE_WINDOW_AT_END_US) {
            self.judge_rate(rate);
        }
        if self.partial > 0 && !played && !self.partial_told {
            self.tell_partial();
        }
    }

    fn judge_rate(&mut self, measured_hz: f64) {
        let configured = f64::from(self.format.rate);
        if self.rate_told || (measured_hz / configured - 1.0).abs() <= RATE_TOLERANCE {
            return;
        }
        self.rate_told = true;
        let likely_hz = COMMON_RATES
            .into_iter()
            .find(|&r| (measured_hz / f64::from(r) - 1.0).abs() <= 0.01)
            .unwrap_or(measured_hz.round().clamp(1.0, f64::from(u32::MAX)) as u32);
        self.found.push(Mismatch::Rate {
            measured_hz,
            configured_hz: self.format.rate,
            over_s: self.slope.span_us() as f64 / 1e6,
            likely_hz,
        });
    }

    /// The mismatches found since the last call.
    pub fn take(&mut self) -> &[Mismatch] {
        let new = &self.found[self.taken..];
        self.taken = self.found.len();
        new
    }

    /// Every mismatch found.
    pub fn found(&self) -> &[Mismatch] {
        &self.found
    }

    /// The rate the timestamps advance at, once measured over [`RATE_WINDOW_AT_END_US`].
    pub fn measured_rate_hz(&self) -> Option<f64> {
        self.slope.rate(RATE_WINDOW_AT_END_US)
    }

    /// The channel count the last packet pairs showed.
    pub fn carried_channels(&self) -> Option<u16> {
        self.carried.map(|(c, _)| c)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn check(rate: u32, channels: u16) -> FormatCheck {
        FormatCheck::new(AudioFormat::new(rate, channels).unwrap())
    }

    /// Feeds `secs` of a stream sampled at `rate`, 20 ms packets, each delayed by up to
    /// `jitter_us` (deterministic pseudo-random).
    fn feed_rate(c: &mut FormatCheck, rate: u32, secs: f64, jitter_us: i64) {
        let per = i64::from(rate) / 50;
        let mut x: u64 = 0x9e37_79b9;
        for k in 0..(secs * 50.0) as i64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let jitter = if jitter_us > 0 {
                (x % jitter_us as u64) as i64
            } else {
                0
            };
            c.on_stream_packet(5_000 + k * 20_000 + jitter, 1000 + k * per);
        }
    }

    #[test]
    fn a_stream_at_another_rate_is_told_once_with_the_rate_to_use() {
        let mut c = check(16000, 1);
        feed_rate(&mut c, 22050, 1.5, 30_000);
        assert!(c.take().is_empty(), "not yet 2 s of arrivals");
        feed_rate(&mut c, 22050, 3.0, 30_000);
        let found = c.take().to_vec();
        assert_eq!(found.len(), 1, "{found:?}");
        let Mismatch::Rate {
            measured_hz,
            likely_hz,
            configured_hz,
            ..
        } = found[0]
        else {
            panic!("{found:?}")
        };
        assert_eq!((likely_hz, configured_hz), (22050, 16000));
        assert!((measured_hz - 22050.0).abs() < 200.0, "{measured_hz}");
        let text = found[0].to_string();
        assert!(
            text.contains("--rate 22050") && text.contains("16000 Hz"),
            "{text}"
        );
        c.finish(true);
        assert!(c.take().is_empty(), "told once");
    }

    #[test]
    fn a_matching_rate_under_heavy_jitter_is_not_told() {
        for jitter in [0, 30_000, 100_000] {
            let mut c = check(16000, 1);
            feed_rate(&mut c, 16000, 3.0, jitter);
            c.finish(true);
            assert!(c.found().is_empty(), "{jitter}: {:?}", c.found());
            let m = c.measured_rate_hz().unwrap();
            assert!((m / 16000.0 - 1.0).abs() < 0.02, "{jitter}: {m}");
        }
    }

    #[test]
    fn a_short_stream_is_judged_at_the_end_and_a_very_short_one_not_at_all() {
        let mut c = check(16000, 1);
        feed_rate(&mut c, 8000, 1.2, 0);
        assert!(c.take().is_empty());
        c.finish(true);
        assert!(matches!(
            c.take(),
            [Mismatch::Rate {
                likely_hz: 8000,
                ..
            }]
        ));
        let mut c = check(16000, 1);
        feed_rate(&mut c, 8000, 0.5, 0);
        c.finish(true);
        assert!(c.found().is_empty());
        assert_eq!(c.measured_rate_hz(), None);
    }

    #[test]
    fn mono_packets_given_to_a_stereo_receiver_are_told() {
        let mut c = check(16000, 2);
        for k in 0..5u16 {
            // 320 mono samples per packet, timestamps 320 apart.
            c.on_payload(7, k, u32::from(k) * 320, 640);
        }
        let found = c.take().to_vec();
        assert_eq!(
            found,
            vec![Mismatch::Channels {
                carried: 1,
                configured: 2,
                samples: 320,
                ticks: 320
            }]
        );
        assert!(found[0].to_string().contains("use --channels 1"));
        assert_eq!(c.carried_channels(), Some(1));
    }

    #[test]
    fn matching_channels_wrapping_numbers_and_other_sources_are_not_told() {
        let mut c = check(48000, 2);
        for k in 0..10u16 {
            let seq = 65530u16.wrapping_add(k);
            let ts = (u32::MAX - 1000).wrapping_add(u32::from(k) * 960);
            c.on_payload(1, seq, ts, 960 * 4);
            // Another source interleaved breaks no pair of the first.
            c.on_payload(2, k, u32::from(k) * 7, 14);
        }
        c.finish(true);
        assert!(c.found().is_empty(), "{:?}", c.found());
    }

    #[test]
    fn partial_frames_name_the_channel_count_the_timestamps_show() {
        let mut c = check(22050, 2);
        // 441 mono samples per 20 ms packet: odd, so not whole stereo frames.
        c.on_payload(9, 0, 0, 882);
        c.on_partial_frame(882);
        assert!(c.take().is_empty(), "waits for a second packet");
        c.on_payload(9, 1, 441, 882);
        c.on_partial_frame(882);
        let found = c.take().to_vec();
        assert_eq!(
            found,
            vec![Mismatch::PartialFrames {
                payload_bytes: 882,
                configured: 2,
                fits: vec![1]
            }]
        );
        let text = found[0].to_string();
        assert!(
            text.contains("--channels 1 would fit") && text.contains("882 bytes"),
            "{text}"
        );
    }

    #[test]
    fn partial_payloads_not_in_a_row_are_junk() {
        let mut c = check(16000, 1);
        for k in 0..20u16 {
            let bytes = if k % 5 == 0 { 641 } else { 640 };
            c.on_payload(3, k, u32::from(k) * 320, bytes);
            if bytes == 641 {
                c.on_partial_frame(bytes);
            }
        }
        c.finish(true);
        assert!(c.found().is_empty(), "{:?}", c.found());
    }

    #[test]
    fn a_lone_partial_payload_lists_every_count_that_divides_it() {
        let mut c = check(22050, 2);
        c.on_payload(9, 0, 0, 882);
        c.on_partial_frame(882);
        c.finish(true);
        assert!(
            c.take().is_empty(),
            "one packet is junk when the stream played"
        );
        c.finish(false);
        let text = c.take()[0].to_string();
        assert!(text.contains("--channels 1, 3, 7 or 9 would fit"), "{text}");
    }
}
