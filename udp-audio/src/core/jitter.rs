//! The receiver's jitter buffer and playout clock, sans-IO.
//!
//! [`JitterBuffer::push`] takes every datagram with the time it arrived; [`JitterBuffer::poll`]
//! plays out every sample frame that is due at `now`; [`JitterBuffer::finish`] plays what is
//! left when the stream has ended. Times are microseconds on any monotonic clock the driver
//! chooses; nothing here reads a clock or touches a socket.
//!
//! # The playout clock
//!
//! Frames are indexed by the extended RTP timestamp `ts` (one frame per tick). The frame `ts`
//! is due at `ts_us(ts) + offset`, where `ts_us` converts ticks to microseconds and `offset`
//! is the playout offset. A packet whose *relative arrival* `rel = arrival - ts_us(ts)` is at
//! most `offset` arrives in time. The lowest `rel` seen recently is the fastest path through
//! the network, so the **added playout delay** is `offset - min(rel)`.
//!
//! With [`Latency::Auto`] the target offset is a high quantile (0.99 by default) of the
//! recent `rel` values, plus a 1 ms scheduling margin, kept within the configured bounds above
//! the fastest path. NetEq does the same with 0.95 of its inter-arrival histogram.
//!
//! # Changing the delay without clicks
//!
//! The output holds exactly one sample frame per RTP tick, from the first packet to the last,
//! so a change of delay never adds or removes received audio. The delay changes only at
//! points where the listener hears concealment or silence:
//! - **stretch** (more delay): when a frame is due and missing, and the target is higher,
//!   the playout device plays extra concealment that stands for no tick, and the missing
//!   packet gets that much more time to arrive;
//! - **shrink** (less delay): when a frame is missing and is concealed, or a received packet
//!   is digital silence, the device skips it, so what follows is due earlier.
//!
//! - **take back** (more delay, [`Latency::Auto`] only): a packet that comes after its
//!   playout time while the buffer was empty, and whose concealment is still provisional
//!   (not yet followed by received audio), gets played: the concealment standing for it
//!   becomes a stretch instead. A sender that stalls and then bursts (ffmpeg does) loses
//!   nothing.
//!
//! Both are counted in [`RecvStats`] as `stretched_ms` and `shrunk_ms`.
//!
//! # What the concealer is told
//!
//! When a missing frame's playout time comes and the buffer already holds later audio, the
//! concealer is told how far ahead it starts and is given it (the packets in sequence from
//! there, up to [`Concealer::ahead_wanted`] frames, see [`Ahead`]); `bridge` fills the gap
//! from both sides with it. Nothing waits for it: what has not arrived is not told. The
//! concealer may hold back the last 3.75 ms it was given (G.711 Appendix I's delay);
//! [`JitterBuffer::finish`] hands them out.
//!
//! # What is dropped and counted
//!
//! Datagrams that are not valid RTP (by [`crate::Error::kind`]), packets of any source but
//! the chosen one (the first to pass RFC 3550 A.1 probation, told apart by SSRC *and*
//! address; see [`crate::source`]), a payload type other than the stream's, A.1 sequence
//! jumps, payloads that are not whole frames,
//! duplicates, packets that come after their playout time (`late`), and packets too far
//! ahead of the playout point (`too_early`, which bounds memory). None of them panics.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

use serde::Serialize;

use crate::check::{FormatCheck, Mismatch};
use crate::conceal::{Ahead, ConcealMode, Concealer};
pub use crate::core::reason::DropReason;
use crate::l16::{self, AudioFormat};
use crate::rtp::RtpPacket;
use crate::seq::{JitterEstimator, StreamOutcome};
use crate::source::{Sequenced, SourceFilter, SourceKey, SourceSeen, SourceTable};
use crate::{Error, Result};

/// Most packets the buffer holds at once.
const MAX_BUFFERED: usize = 4096;
/// How far ahead of the playout point a packet may be, in seconds.
const MAX_AHEAD_SECS: i64 = 10;
/// Packets remembered to tell a duplicate from a late packet.
const SEEN_WINDOW: usize = 4096;
/// Relative arrivals kept for the automatic target.
const DELAY_WINDOW: usize = 500;
/// Scheduling margin added to the automatic target, µs.
const MARGIN_US: i64 = 1000;
/// The target must be this far below the current offset before shrinking, µs.
const SHRINK_HYSTERESIS_US: i64 = 5000;
/// Longest provisional concealment held while the buffer is empty before the clock stalls.
const MAX_PENDING_MS: u32 = 1000;
/// A received packet whose samples all lie within ±this is digital silence.
const SILENCE_PEAK: i16 = 32;

/// How the playout delay is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Latency {
    /// Adapt to the observed delays: `quantile` of recent relative arrivals, kept between
    /// `min_ms` and `max_ms` above the fastest path.
    Auto {
        /// Lowest added delay, ms.
        min_ms: u32,
        /// Highest added delay, ms.
        max_ms: u32,
        /// The quantile of relative arrivals to cover (0.5..1).
        quantile: f64,
    },
    /// A fixed delay after the first packet's arrival, ms (like GStreamer's `latency`).
    Fixed(u32),
}

impl Latency {
    /// The default automatic policy: 0.99 quantile, between 0 and 500 ms.
    pub const AUTO: Latency = Latency::Auto {
        min_ms: 0,
        max_ms: 500,
        quantile: 0.99,
    };
}

impl std::str::FromStr for Latency {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if s == "auto" {
            return Ok(Latency::AUTO);
        }
        match s.parse::<u32>() {
            Ok(ms) if ms <= 10_000 => Ok(Latency::Fixed(ms)),
            _ => Err(Error::Config {
                what: format!("latency {s:?}: expected \"auto\" or milliseconds from 0 to 10000"),
            }),
        }
    }
}

/// What the receiver is configured with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JitterConfig {
    /// The stream's audio format (from SDP or `--rate/--channels`).
    pub format: AudioFormat,
    /// The payload type to accept; `None` locks to the first packet's.
    pub payload_type: Option<u8>,
    /// The delay policy.
    pub latency: Latency,
    /// How missing audio is concealed.
    pub conceal: ConcealMode,
}

/// What happened to one datagram given to [`JitterBuffer::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Buffered for playout (or held during probation).
    Accepted,
    /// A copy of a packet already received.
    Duplicate,
    /// Arrived after its playout time.
    Late,
    /// Dropped for the reason named (the same names as the report's `bad` map).
    Dropped(DropReason),
}

/// The receiver's report. Times in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecvStats {
    /// Datagrams handed to the buffer.
    pub datagrams: u64,
    /// Valid packets of the stream received (duplicates and late ones included).
    pub received: u64,
    /// Packets played out.
    pub played: u64,
    /// Packets never received, from the sequence numbers between the first and the last.
    pub lost: u64,
    /// Packets that arrived after their playout time and were dropped.
    pub late: u64,
    /// Duplicate packets dropped.
    pub duplicate: u64,
    /// Packets that arrived after a higher sequence number.
    pub reordered: u64,
    /// Dropped datagrams by kind (`truncated`, `wrong_version`, `pt_change`, `ssrc_change`,
    /// `other_address`, `probation`, ...).
    pub bad: BTreeMap<DropReason, u64>,
    /// Concealed audio written to the output.
    pub concealed_ms: f64,
    /// Of that, audio filled from both sides of the gap (`bridge`: the packet after it was
    /// already buffered).
    pub bridged_ms: f64,
    /// Interarrival jitter (RFC 3550 A.8) at the end.
    pub jitter_ms: f64,
    /// Added playout delay over the fastest path, median over played packets.
    pub delay_p50_ms: f64,
    /// Added playout delay, 95th percentile.
    pub delay_p95_ms: f64,
    /// Added playout delay at the end.
    pub delay_final_ms: f64,
    /// Times the buffer ran empty when a frame was due.
    pub underruns: u64,
    /// Extra concealment played to raise the delay.
    pub stretched_ms: f64,
    /// Concealment or silence skipped to lower the delay.
    pub shrunk_ms: f64,
    /// Sequence restarts (A.1 confirmed jumps).
    pub restarts: u64,
    /// Sample frames written to the output.
    pub frames_out: u64,
    /// The sources heard (SSRC, address, packets), in the order they were first heard.
    pub sources: Vec<SourceSeen>,
    /// The source played: the first to pass RFC 3550 A.1 probation.
    pub chosen_source: Option<SourceSeen>,
    /// Sources forgotten to keep the table bounded (not in `sources`).
    pub sources_forgotten: u64,
    /// Seconds of audio written to the output (`frames_out` at the stream's rate).
    pub audio_s: f64,
    /// The rate the stream's RTP timestamps advance at, measured against arrival times
    /// (see [`crate::check`]); `None` before 1 s of arrivals.
    pub measured_rate_hz: Option<f64>,
    /// The channel count consecutive packets carry (samples per timestamp tick), when known.
    pub payload_channels: Option<u16>,
    /// Where the stream did not match the configured format, in words (see
    /// [`crate::check::Mismatch`]).
    pub warnings: Vec<String>,
}

impl RecvStats {
    /// Late packets as a fraction of the packets received.
    pub fn late_fraction(&self) -> f64 {
        if self.received == 0 {
            0.0
        } else {
            self.late as f64 / self.received as f64
        }
    }

    /// Why the run failed, when it did: nothing could be written (every packet dropped, or
    /// no stream at all), or the stream does not match the configured format (the output
    /// would play at the wrong rate or mix up channels; see [`crate::check`]). `None` when
    /// the audio written is the stream's.
    pub fn failure(&self) -> Option<String> {
        let mut why = if self.frames_out == 0 {
            let mut why = format!(
                "no audio written: {} datagrams arrived, {} packets of a stream played",
                self.datagrams, self.played
            );
            let dropped: u64 = self.bad.values().sum();
            if dropped > 0 {
                let kinds: Vec<String> = self.bad.iter().map(|(k, v)| format!("{v} {k}")).collect();
                why.push_str(&format!(", {dropped} dropped ({})", kinds.join(", ")));
            }
            why
        } else if !self.warnings.is_empty() {
            "the output does not match the stream".to_string()
        } else {
            return None;
        };
        for w in &self.warnings {
            why.push_str("; ");
            why.push_str(w);
        }
        Some(why)
    }

    /// A human-readable multi-line report.
    pub fn report(&self) -> String {
        let bad = if self.bad.is_empty() {
            "none".to_string()
        } else {
            self.bad
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut sources = if self.sources.is_empty() {
            "none".to_string()
        } else {
            self.sources
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        };
        if self.chosen_source.is_none() && !self.sources.is_empty() {
            sources.push_str("; none passed probation (RFC 3550 A.1: 2 packets in sequence)");
        }
        if self.sources_forgotten > 0 {
            sources.push_str(&format!("; {} more forgotten", self.sources_forgotten));
        }
        format!(
            "sources: {sources}\n\
             received {} packets ({} datagrams), played {}, lost {}, late {} ({:.2} %), \
             duplicate {}, reordered {}\n\
             dropped as bad: {bad}\n\
             concealed {:.1} ms ({:.1} ms from both sides); underruns {}; jitter {:.2} ms \
             (RFC 3550 A.8)\n\
             added playout delay p50 {:.1} ms, p95 {:.1} ms, final {:.1} ms; \
             stretched {:.1} ms, shrunk {:.1} ms; restarts {}\n\
             wrote {} frames ({:.2} s){}{}",
            self.received,
            self.datagrams,
            self.played,
            self.lost,
            self.late,
            100.0 * self.late_fraction(),
            self.duplicate,
            self.reordered,
            self.concealed_ms,
            self.bridged_ms,
            self.underruns,
            self.jitter_ms,
            self.delay_p50_ms,
            self.delay_p95_ms,
            self.delay_final_ms,
            self.stretched_ms,
            self.shrunk_ms,
            self.restarts,
            self.frames_out,
            self.audio_s,
            self.measured_rate_hz
                .map(|r| format!("; RTP timestamps advance at {r:.0} Hz"))
                .unwrap_or_default(),
            self.warnings
                .iter()
                .map(|w| format!("\nwarning: {w}"))
                .collect::<String>(),
        )
    }
}

/// A fixed-bin histogram of microsecond values (100 µs bins up to 10 s).
#[derive(Debug, Clone)]
struct Histogram {
    bins: Vec<u32>,
    count: u64,
}

impl Histogram {
    const BIN_US: i64 = 100;
    const BINS: usize = 100_000;

    fn new() -> Self {
        Histogram {
            bins: vec![0; Self::BINS],
            count: 0,
        }
    }

    fn add(&mut self, us: i64) {
        let i = (us.max(0) / Self::BIN_US).min(Self::BINS as i64 - 1) as usize;
        self.bins[i] += 1;
        self.count += 1;
    }

    /// The value below which `q` of the samples fall, in ms (bin centre).
    fn quantile_ms(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, &n) in self.bins.iter().enumerate() {
            seen += u64::from(n);
            if seen >= rank {
                return (i as f64 + 0.5) * Self::BIN_US as f64 / 1000.0;
            }
        }
        (Self::BINS as f64) * Self::BIN_US as f64 / 1000.0
    }
}

/// The chosen source's extended numbering (its identity and A.1 state are in
/// [`SourceTable`]).
#[derive(Debug, Clone)]
struct Source {
    /// Timestamp mapping: `ts_ref` is `ext_ref` in extended ticks.
    ts_ref: u32,
    ext_ref: i64,
    /// Highest extended seq seen.
    max_ext_seq: Option<i64>,
    /// Lowest extended seq accepted (for the loss count).
    min_ext_seq: Option<i64>,
    /// Distinct sequence numbers accepted.
    unique: u64,
    /// `seen[ext % SEEN_WINDOW] == ext` when that packet was received.
    seen: Vec<i64>,
}

/// A packet held while its source is on probation: arrival, timestamp, samples.
type HeldPacket = (i64, u32, Vec<i16>);

impl Source {
    /// A chosen source's numbering, from the first packet it held (else `ts`, its first).
    fn start(held: &[(i64, HeldPacket)], ts: u32) -> Self {
        Source {
            ts_ref: held.first().map_or(ts, |(_, (_, hts, _))| *hts),
            ext_ref: 0,
            max_ext_seq: None,
            min_ext_seq: None,
            unique: 0,
            seen: vec![i64::MIN; SEEN_WINDOW],
        }
    }
}

/// The jitter buffer. See the [module documentation](self).
#[derive(Debug)]
pub struct JitterBuffer {
    /// The sources heard, and the chosen one's [`Source`].
    sources: SourceTable<HeldPacket, Source>,
    /// Everything else, borrowed apart from `sources` so a packet is played with the
    /// source state the table lends.
    play: Playout,
}

/// The playout state of a [`JitterBuffer`].
#[derive(Debug)]
struct Playout {
    cfg: JitterConfig,
    concealer: Concealer,
    jitter: JitterEstimator,
    /// Buffered packets by extended timestamp.
    buffer: BTreeMap<i64, Vec<i16>>,
    /// Next tick to play; `None` until the first frame is played.
    pos: Option<i64>,
    /// Playout offset, µs: tick `ts` is due at `ts_us(ts) + offset`.
    offset: Option<i64>,
    /// Recent relative arrivals, µs.
    rels: VecDeque<i64>,
    /// The fastest of `rels` and, with [`Latency::Auto`], the target offset they give; both
    /// change only when `rels` does, so they are kept rather than recomputed per frame.
    min_rel: Option<i64>,
    auto_target: Option<i64>,
    /// Concealment produced while the buffer was empty, not yet known to be needed.
    pending: Vec<i16>,
    pending_frames: u64,
    /// The concealer as it was before the provisional concealment began, so a take-back
    /// leaves the output exactly as if there had been no concealment.
    pending_from: Option<Box<Concealer>>,
    in_underrun: bool,
    /// Offset and stretch when the current underrun began: an underrun that turns out to be
    /// the end of the stream is not playout, and [`JitterBuffer::finish`] undoes it.
    underrun_from: (i64, i64),
    delays: Histogram,
    stats: RecvStats,
    check: FormatCheck,
    /// When the last packet came whose payload did not fit the format (`partial_frame`).
    last_misfit_us: Option<u64>,
    concealed_frames: u64,
    stretched_us: i64,
    shrunk_us: i64,
    samples: Vec<i16>,
    /// Scratch: the audio buffered after a gap, for the concealer.
    ahead: Vec<i16>,
}

impl JitterBuffer {
    /// A buffer for one stream, from whichever source passes probation first.
    pub fn new(cfg: JitterConfig) -> Result<Self> {
        Self::with_source_filter(cfg, SourceFilter::default())
    }

    /// A buffer for one stream from a source that matches `filter` (see [`crate::source`]).
    pub fn with_source_filter(cfg: JitterConfig, filter: SourceFilter) -> Result<Self> {
        if let Latency::Auto {
            min_ms,
            max_ms,
            quantile,
        } = cfg.latency
        {
            if min_ms > max_ms || !(0.5..1.0).contains(&quantile) {
                return Err(Error::Config {
                    what: format!(
                        "auto latency needs min <= max and a quantile in [0.5, 1): \
                         got min {min_ms} ms, max {max_ms} ms, quantile {quantile}"
                    ),
                });
            }
        }
        Ok(JitterBuffer {
            sources: SourceTable::new(filter, cfg.payload_type),
            play: Playout::new(cfg),
        })
    }

    /// Takes one datagram that arrived at `now_us` from a sender the driver does not name
    /// (simulations): every packet counts as coming from the same address.
    pub fn push(&mut self, datagram: &[u8], now_us: u64) -> Pushed {
        self.push_from(datagram, None, now_us)
    }

    /// Takes one datagram that arrived at `now_us` from `from`. Sources are told apart by
    /// SSRC and address; only the chosen one's packets are played (see [`crate::source`]).
    pub fn push_from(&mut self, datagram: &[u8], from: Option<SocketAddr>, now_us: u64) -> Pushed {
        self.play.stats.datagrams += 1;
        let now = now_us as i64;
        let packet = match RtpPacket::new_checked(datagram) {
            Ok(p) => p,
            Err(e) => return self.play.drop_bad(e.kind().into()),
        };
        let key = SourceKey {
            ssrc: packet.ssrc(),
            address: from,
        };
        let id = match self.sources.admit(key, packet.payload_type(), now_us) {
            Ok(id) => id,
            // Counted by the table, merged into the report by `stats`.
            Err(kind) => return Pushed::Dropped(kind),
        };
        let (seq, ts) = (packet.sequence(), packet.timestamp());
        self.play
            .check
            .on_payload(packet.ssrc(), seq, ts, packet.payload().len());
        let mut samples = std::mem::take(&mut self.play.samples);
        samples.clear();
        if let Err(e) = l16::decode(
            packet.payload(),
            self.play.cfg.format.channels,
            &mut samples,
        ) {
            self.play.samples = samples;
            if matches!(e, crate::error::ParseError::PartialFrame { .. }) {
                self.play.check.on_partial_frame(packet.payload().len());
                self.play.last_misfit_us = Some(now_us);
            }
            return self.play.drop_bad(e.kind().into());
        }
        if samples.is_empty() {
            self.play.samples = samples;
            return self.play.drop_bad(DropReason::EmptyPayload);
        }
        let play = &mut self.play;
        let sequenced = self.sources.sequence(
            id,
            seq,
            now_us,
            || (now, ts, samples.clone()),
            |held| Source::start(held, ts),
        );
        let result = match sequenced {
            Sequenced::Held => Pushed::Accepted,
            Sequenced::Chosen {
                held,
                extended,
                state,
            } => {
                for (ext, (arrival, hts, hsamples)) in held {
                    play.accept(state, ext, hts, &hsamples, arrival);
                }
                play.accept(state, extended, ts, &samples, now)
            }
            Sequenced::Stream(StreamOutcome::Valid { extended }, src) => {
                play.accept(src, extended, ts, &samples, now)
            }
            Sequenced::Stream(StreamOutcome::Restarted { extended }, src) => {
                play.stats.restarts += 1;
                play.restart(src, ts);
                play.accept(src, extended, ts, &samples, now)
            }
            Sequenced::Stream(StreamOutcome::BadJump, _) => play.drop_bad(DropReason::SeqJump),
        };
        self.play.samples = samples;
        result
    }

    /// When the next frame is due, µs (`None` before the first packet).
    pub fn next_due_us(&self) -> Option<u64> {
        self.play.next_due_us()
    }

    /// Plays every frame due at `now_us`, appending interleaved samples to `out`; returns the
    /// frames appended.
    pub fn poll(&mut self, now_us: u64, out: &mut Vec<i16>) -> usize {
        self.play.poll(now_us, out)
    }

    /// The stream has ended: plays every buffered packet now, conceals the holes between
    /// them, drops concealment after the last packet and hands out what the concealer
    /// held back. Returns the frames appended.
    pub fn finish(&mut self, out: &mut Vec<i16>) -> usize {
        self.play.finish(out)
    }

    /// Where the stream does not match the configured format, found since the last call
    /// (each mismatch once; see [`crate::check`]): for a driver to warn while it runs.
    pub fn take_mismatches(&mut self) -> &[Mismatch] {
        self.play.check.take()
    }

    /// The report so far.
    pub fn stats(&self) -> RecvStats {
        let mut s = self.play.stats.clone();
        let rate = self.play.rate() as f64;
        s.concealed_ms = self.play.concealed_frames as f64 * 1000.0 / rate;
        s.bridged_ms = self.play.concealer.bridged_frames() as f64 * 1000.0 / rate;
        s.jitter_ms = self.play.jitter.jitter() * 1000.0 / rate;
        s.delay_p50_ms = self.play.delays.quantile_ms(0.5);
        s.delay_p95_ms = self.play.delays.quantile_ms(0.95);
        if let (Some(offset), Some(min_rel)) = (self.play.offset, self.play.min_rel) {
            s.delay_final_ms = (offset - min_rel) as f64 / 1000.0;
        }
        s.stretched_ms = self.play.stretched_us as f64 / 1000.0;
        s.shrunk_ms = self.play.shrunk_us as f64 / 1000.0;
        if let Some(src) = self.sources.chosen_state() {
            if let (Some(min), Some(max)) = (src.min_ext_seq, src.max_ext_seq) {
                s.lost = ((max - min + 1) as u64).saturating_sub(src.unique);
            }
        }
        for (kind, n) in self.sources.dropped() {
            *s.bad.entry(kind).or_insert(0) += n;
        }
        s.sources = self.sources.seen();
        s.chosen_source = s.sources.iter().find(|x| x.chosen).cloned();
        s.sources_forgotten = self.sources.forgotten();
        s.audio_s = s.frames_out as f64 / rate;
        s.measured_rate_hz = self.play.check.measured_rate_hz();
        s.payload_channels = self.play.check.carried_channels();
        s.warnings = self
            .play
            .check
            .found()
            .iter()
            .map(|m| m.to_string())
            .collect();
        s
    }

    /// When the last packet of the chosen stream arrived, µs: the stream's activity, for a
    /// driver's idle timeout. Datagrams of other sources and junk do not count.
    pub fn last_stream_arrival_us(&self) -> Option<u64> {
        self.sources.last_stream_us()
    }

    /// When the last packet arrived of a stream that is being played or would have been but
    /// for a payload that does not fit the configured format (see [`crate::check`]), µs: a
    /// driver's idle timeout ends a stream that never fitted as it ends one that played.
    pub fn last_activity_us(&self) -> Option<u64> {
        match (self.sources.last_stream_us(), self.play.last_misfit_us) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &JitterConfig {
        &self.play.cfg
    }

    /// Packets waiting in the buffer.
    pub fn buffered(&self) -> usize {
        self.play.buffer.len()
    }
}

impl Playout {
    fn new(cfg: JitterConfig) -> Self {
        Playout {
            concealer: Concealer::new(cfg.conceal, cfg.format.rate, cfg.format.channels),
            cfg,
            jitter: JitterEstimator::new(),
            buffer: BTreeMap::new(),
            pos: None,
            offset: None,
            rels: VecDeque::with_capacity(DELAY_WINDOW),
            min_rel: None,
            auto_target: None,
            pending: Vec::new(),
            pending_frames: 0,
            pending_from: None,
            in_underrun: false,
            underrun_from: (0, 0),
            delays: Histogram::new(),
            stats: RecvStats::default(),
            check: FormatCheck::new(cfg.format),
            last_misfit_us: None,
            concealed_frames: 0,
            stretched_us: 0,
            shrunk_us: 0,
            samples: Vec::new(),
            ahead: Vec::new(),
        }
    }

    fn rate(&self) -> i64 {
        i64::from(self.cfg.format.rate)
    }

    fn channels(&self) -> usize {
        usize::from(self.cfg.format.channels)
    }

    /// Microseconds of `ticks`.
    fn ts_us(&self, ticks: i64) -> i64 {
        (i128::from(ticks) * 1_000_000 / i128::from(self.rate())) as i64
    }

    fn frames_us(&self, frames: usize) -> i64 {
        self.ts_us(frames as i64)
    }

    fn drop_bad(&mut self, kind: DropReason) -> Pushed {
        *self.stats.bad.entry(kind).or_insert(0) += 1;
        Pushed::Dropped(kind)
    }

    /// A confirmed sequence restart: the new timestamps continue where the stream ended.
    fn restart(&mut self, src: &mut Source, ts: u32) {
        let end = self
            .buffer
            .iter()
            .next_back()
            .map(|(t, s)| t + (s.len() / self.channels()) as i64)
            .or(self.pos)
            .unwrap_or(0);
        src.ts_ref = ts;
        src.ext_ref = end;
        src.max_ext_seq = None;
        src.min_ext_seq = None;
        src.seen.iter_mut().for_each(|s| *s = i64::MIN);
        self.rels.clear();
        self.update_delay_stats();
        self.offset = None;
        self.check.restart();
    }

    /// Files a validated packet.
    fn accept(
        &mut self,
        src: &mut Source,
        ext_seq: i64,
        ts: u32,
        samples: &[i16],
        now: i64,
    ) -> Pushed {
        self.stats.received += 1;
        let channels = self.channels();
        let frames = samples.len() / channels;
        let rate = self.rate();
        // Extend the timestamp around the highest one seen.
        let ext_ts = src.ext_ref + i64::from(ts.wrapping_sub(src.ts_ref) as i32);
        let slot = ext_seq.rem_euclid(SEEN_WINDOW as i64) as usize;
        if src.seen[slot] == ext_seq {
            self.stats.duplicate += 1;
            return Pushed::Duplicate;
        }
        src.seen[slot] = ext_seq;
        src.unique += 1;
        match src.max_ext_seq {
            Some(max) if ext_seq < max => self.stats.reordered += 1,
            _ => {
                src.max_ext_seq = Some(ext_seq);
                src.ts_ref = ts;
                src.ext_ref = ext_ts;
            }
        }
        src.min_ext_seq = Some(src.min_ext_seq.map_or(ext_seq, |m| m.min(ext_seq)));
        self.check.on_stream_packet(now, ext_ts);
        let arrival_ticks = (i128::from(now) * i128::from(rate) / 1_000_000) as u64;
        self.jitter.update(arrival_ticks, ts);

        let rel = now - self.ts_us(ext_ts);
        if self.rels.len() == DELAY_WINDOW {
            self.rels.pop_front();
        }
        self.rels.push_back(rel);
        self.update_delay_stats();
        if self.offset.is_none() {
            let initial = match self.cfg.latency {
                Latency::Fixed(ms) => i64::from(ms) * 1000,
                Latency::Auto { min_ms, max_ms, .. } => {
                    // Start at one packet's worth, within the bounds; adapt from there.
                    self.frames_us(frames)
                        .clamp(i64::from(min_ms) * 1000, i64::from(max_ms) * 1000)
                }
            };
            self.offset = Some(rel + initial);
        }

        if let Some(pos) = self.pos {
            if ext_ts < pos && !self.take_back_pending(ext_ts, pos) {
                self.stats.late += 1;
                return Pushed::Late;
            }
            if ext_ts - pos > MAX_AHEAD_SECS * rate {
                return self.drop_bad(DropReason::TooEarly);
            }
        }
        if self.buffer.len() >= MAX_BUFFERED || self.buffer.contains_key(&ext_ts) {
            let kind = if self.buffer.len() >= MAX_BUFFERED {
                DropReason::BufferFull
            } else {
                DropReason::SameTimestamp
            };
            return self.drop_bad(kind);
        }
        self.buffer.insert(ext_ts, samples.to_vec());
        Pushed::Accepted
    }

    /// A packet for tick `ts` came after its playout time `pos`, while the buffer was empty
    /// and the concealment standing for it is still provisional. With [`Latency::Auto`],
    /// that concealment becomes a stretch (the device played it, standing for no tick), the
    /// clock moves back to `ts` and the packet is played: the delay grows to what the network
    /// needs instead of losing the packet, within `max_ms`. Returns whether it did.
    fn take_back_pending(&mut self, ts: i64, pos: i64) -> bool {
        let Latency::Auto { max_ms, .. } = self.cfg.latency else {
            return false;
        };
        let pending_start = pos - self.pending_frames as i64;
        let (Some(offset), Some(&min_rel)) = (self.offset, self.min_rel.as_ref()) else {
            return false;
        };
        let back = pos - ts;
        let new_offset = offset + self.ts_us(back);
        if ts < pending_start || new_offset - min_rel > i64::from(max_ms) * 1000 {
            return false;
        }
        let keep = (ts - pending_start) as usize;
        self.pending.clear();
        if let Some(from) = &self.pending_from {
            // Replay the kept part from the saved state: the same samples, and the concealer
            // left where they end.
            self.concealer = (**from).clone();
            self.concealer.conceal(keep, &mut self.pending, None);
        }
        if keep == 0 {
            self.pending_from = None;
        }
        self.pending_frames = keep as u64;
        self.offset = Some(new_offset);
        self.stretched_us += self.ts_us(back);
        self.pos = Some(ts);
        true
    }

    /// Recomputes `min_rel` and `auto_target` after `rels` changed.
    fn update_delay_stats(&mut self) {
        self.min_rel = self.rels.iter().min().copied();
        self.auto_target = match (self.cfg.latency, self.min_rel) {
            (
                Latency::Auto {
                    min_ms,
                    max_ms,
                    quantile,
                },
                Some(min_rel),
            ) => {
                let mut sorted: Vec<i64> = self.rels.iter().copied().collect();
                let rank =
                    ((quantile * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
                let (_, q, _) = sorted.select_nth_unstable(rank - 1);
                Some((*q + MARGIN_US).clamp(
                    min_rel + i64::from(min_ms) * 1000,
                    min_rel + i64::from(max_ms) * 1000,
                ))
            }
            _ => None,
        };
    }

    /// The playout offset the delay policy wants now, µs.
    fn target_offset(&self) -> Option<i64> {
        let offset = self.offset?;
        match self.cfg.latency {
            Latency::Fixed(_) => Some(offset),
            Latency::Auto { .. } => self.auto_target,
        }
    }

    /// When the next frame is due, µs (`None` before the first packet).
    fn next_due_us(&self) -> Option<u64> {
        let offset = self.offset?;
        let pos = match self.pos {
            Some(p) => p,
            None => *self.buffer.keys().next()?,
        };
        Some((self.ts_us(pos) + offset).max(0) as u64)
    }

    /// Plays every frame due at `now_us`, appending interleaved samples to `out`; returns the
    /// frames appended.
    fn poll(&mut self, now_us: u64, out: &mut Vec<i16>) -> usize {
        let now = now_us as i64;
        let before = out.len();
        let channels = self.channels();
        let block = (self.rate() / 100).max(1) as usize; // 10 ms
        while let Some(offset) = self.offset {
            let pos = match self.pos {
                Some(p) => p,
                None => match self.buffer.keys().next() {
                    Some(&first) => {
                        self.pos = Some(first);
                        first
                    }
                    None => break,
                },
            };
            if self.ts_us(pos) + offset > now {
                break;
            }
            let target = self.target_offset().unwrap_or(offset);
            // The first packet buffered comes out if it is due: the frame `pos`, or one
            // before it (only a packet overlapping the one played before can be there).
            let due = self
                .buffer
                .first_entry()
                .filter(|first| *first.key() <= pos)
                .map(|first| first.remove_entry());
            if let Some((n, samples)) = due {
                if n < pos {
                    let end = n + (samples.len() / channels) as i64;
                    if end > pos {
                        self.flush_pending(out);
                        let tail = &samples[((pos - n) as usize) * channels..];
                        self.concealer.good(tail, out);
                        self.pos = Some(end);
                    }
                    *self.stats.bad.entry(DropReason::Overlap).or_insert(0) += 1;
                    continue;
                }
                let frames = samples.len() / channels;
                self.flush_pending(out);
                self.in_underrun = false;
                self.concealer.good(&samples, out);
                self.stats.played += 1;
                let min_rel = self.min_rel.unwrap_or(offset);
                self.delays.add(offset - min_rel);
                self.pos = Some(pos + frames as i64);
                let silent = samples
                    .iter()
                    .all(|s| s.unsigned_abs() <= SILENCE_PEAK as u16);
                if silent && offset > target + SHRINK_HYSTERESIS_US {
                    self.shrink(offset, target, self.frames_us(frames));
                }
                continue;
            }
            // Frame `pos` is due and missing; what the buffer holds is later.
            let next = self.buffer.keys().next().copied();
            if offset < target {
                let step = (target - offset).min(self.frames_us(block));
                self.offset = Some(offset + step);
                self.stretched_us += step;
                continue;
            }
            let n = match next {
                Some(n) => ((n - pos) as usize).min(block),
                None => block,
            };
            match next {
                Some(next) => {
                    self.flush_pending(out);
                    self.conceal_before(next, None, pos, n, out);
                }
                None => {
                    if !self.in_underrun {
                        self.underrun_from = (offset, self.stretched_us);
                        self.stats.underruns += 1;
                        self.in_underrun = true;
                    }
                    if self.pending_frames >= u64::from(MAX_PENDING_MS) * self.rate() as u64 / 1000
                    {
                        // Nothing for a long time: stop the clock here (a stretch) rather than
                        // holding more provisional concealment.
                        let hold = now - (self.ts_us(pos) + offset) + 1;
                        self.offset = Some(offset + hold);
                        self.stretched_us += hold;
                        break;
                    }
                    let start = self.pending.len();
                    if start == 0 {
                        self.pending_from = Some(Box::new(self.concealer.clone()));
                    }
                    self.concealer.conceal(n, &mut self.pending, None);
                    self.pending_frames += n as u64;
                }
            }
            self.pos = Some(pos + n as i64);
            if offset > target + SHRINK_HYSTERESIS_US {
                self.shrink(offset, target, self.frames_us(n));
            }
        }
        let appended = (out.len() - before) / channels;
        self.stats.frames_out += appended as u64;
        appended
    }

    fn shrink(&mut self, offset: i64, target: i64, by: i64) {
        let step = (offset - target).min(by);
        self.offset = Some(offset - step);
        self.shrunk_us += step;
    }

    fn flush_pending(&mut self, out: &mut Vec<i16>) {
        out.append(&mut self.pending);
        self.concealed_frames += self.pending_frames;
        self.pending_frames = 0;
        self.pending_from = None;
    }

    /// Conceals `n` frames from tick `pos`, the buffer holding audio from tick `next` on
    /// (`taken`: the packet at `next`, when it was already taken out of the buffer): the
    /// concealer is told what is held there (see [`Ahead`]).
    fn conceal_before(
        &mut self,
        next: i64,
        taken: Option<&[i16]>,
        pos: i64,
        n: usize,
        out: &mut Vec<i16>,
    ) {
        self.ahead.clear();
        let channels = self.channels();
        let want = self.concealer.ahead_wanted() * channels;
        let held = taken.map(|first| (next, first)).into_iter().chain(
            self.buffer
                .range(next..)
                .map(|(&ts, samples)| (ts, samples.as_slice())),
        );
        let mut expect = next;
        for (ts, samples) in held {
            if ts != expect || self.ahead.len() >= want {
                break;
            }
            let take = samples.len().min(want - self.ahead.len());
            self.ahead.extend_from_slice(&samples[..take]);
            expect = ts + (samples.len() / channels) as i64;
        }
        let ahead = (!self.ahead.is_empty()).then_some(Ahead {
            gap: (next - pos) as usize,
            samples: &self.ahead,
        });
        self.concealer.conceal(n, out, ahead);
        self.concealed_frames += n as u64;
    }

    /// The stream has ended: plays every buffered packet now, conceals the holes between
    /// them, drops concealment after the last packet and hands out what the concealer
    /// held back. Returns the frames appended.
    fn finish(&mut self, out: &mut Vec<i16>) -> usize {
        let before = out.len();
        let channels = self.channels();
        if self.in_underrun && self.buffer.is_empty() {
            // The stream ended: the wait after its last packet was no underrun, and the
            // clock held while waiting added no delay anyone heard.
            self.stats.underruns -= 1;
            (self.offset, self.stretched_us) = (Some(self.underrun_from.0), self.underrun_from.1);
            self.in_underrun = false;
        }
        if self.buffer.is_empty() {
            // Provisional concealment after the last packet is not played: the concealer
            // goes back to before it, with what it held back then.
            if let Some(from) = self.pending_from.take() {
                if self.pending_frames > 0 {
                    self.concealer = *from;
                }
            }
            self.pending.clear();
            self.pending_frames = 0;
        } else {
            // A packet follows it: it was needed.
            self.flush_pending(out);
        }
        while let Some((ts, samples)) = self.buffer.pop_first() {
            let pos = *self.pos.get_or_insert(ts);
            let frames = (samples.len() / channels) as i64;
            if ts + frames > pos && ts > pos {
                self.conceal_before(ts, Some(&samples), pos, (ts - pos) as usize, out);
            }
            if ts + frames <= pos {
                continue;
            }
            let skip = (pos.max(ts) - ts) as usize * channels;
            self.concealer.good(&samples[skip..], out);
            self.stats.played += 1;
            self.pos = Some(ts + frames);
        }
        self.concealer.flush(out);
        self.check.finish(self.stats.played > 0);
        let appended = (out.len() - before) / channels;
        self.stats.frames_out += appended as u64;
        appended
    }
}

/// Runs a buffer on a simulated clock: delivers `(arrival_us, datagram)` events in arrival
/// order, playing out at every deadline in between exactly as a real-time driver would, then
/// finishes the stream. Returns the output samples.
pub fn run_offline(jb: &mut JitterBuffer, mut events: Vec<(u64, Vec<u8>)>) -> Vec<i16> {
    events.sort_by_key(|e| e.0);
    let mut out = Vec::new();
    for (t, d) in events {
        while let Some(due) = jb.next_due_us() {
            if due > t {
                break;
            }
            let before = (out.len(), jb.next_due_us());
            jb.poll(due, &mut out);
            if (out.len(), jb.next_due_us()) == before {
                break;
            }
        }
        jb.push(&d, t);
        jb.poll(t, &mut out);
    }
    jb.finish(&mut out);
    out
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::l16::StreamParams;
    use crate::sender::Packetizer;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    const RATE: u32 = 16000;
    const PTIME_US: u64 = 20_000;

    fn cfg(latency: Latency, conceal: ConcealMode) -> JitterConfig {
        JitterConfig {
            format: AudioFormat::new(RATE, 1).unwrap(),
            payload_type: None,
            latency,
            conceal,
        }
    }

    fn signal(frames: usize) -> Vec<i16> {
        (0..frames)
            .map(|i| ((i as f64 * 0.07).sin() * 12000.0) as i16 + 1)
            .collect()
    }

    /// The packets of `samples`, 20 ms each, starting near a sequence and timestamp wrap.
    fn packets(samples: &[i16]) -> Vec<Vec<u8>> {
        let p = StreamParams::new(AudioFormat::new(RATE, 1).unwrap(), 20, None).unwrap();
        let mut pk = Packetizer::new(p, 42, 65500, u32::MAX - 3000);
        let mut out = Vec::new();
        let mut v = Vec::new();
        while pk.next_packet(samples, &mut out).unwrap().is_some() {
            v.push(out.clone());
        }
        v
    }

    /// Equal sample sequences; on failure names the first difference, not the whole signal.
    fn assert_same(out: &[i16], want: &[i16]) {
        let first = out.iter().zip(want).position(|(a, b)| a != b);
        assert!(
            first.is_none() && out.len() == want.len(),
            "output differs: lengths {} and {}, first difference at sample {first:?}",
            out.len(),
            want.len()
        );
    }

    fn simulate(jb: &mut JitterBuffer, events: Vec<(u64, Vec<u8>)>) -> Vec<i16> {
        run_offline(jb, events)
    }

    fn on_time(pkts: &[Vec<u8>]) -> Vec<(u64, Vec<u8>)> {
        pkts.iter()
            .enumerate()
            .map(|(k, d)| (1_000_000 + k as u64 * PTIME_US, d.clone()))
            .collect()
    }

    #[test]
    fn the_wait_after_the_last_packet_is_not_an_underrun() {
        let samples = signal(16000);
        let pkts = packets(&samples);
        let mut jb = JitterBuffer::new(cfg(Latency::AUTO, ConcealMode::G711)).unwrap();
        let mut out = Vec::new();
        let mut last = 0;
        for (t, d) in on_time(&pkts) {
            jb.poll(t, &mut out);
            jb.push(&d, t);
            jb.poll(t, &mut out);
            last = t;
        }
        // A receiver's idle timeout: two seconds of polling with nothing arriving.
        for k in 1..=200 {
            jb.poll(last + k * 10_000, &mut out);
        }
        jb.finish(&mut out);
        let s = jb.stats();
        assert_same(&out, &samples);
        assert_eq!((s.underruns, s.stretched_ms), (0, 0.0), "{s:?}");
        assert!(s.delay_final_ms < 25.0, "{s:?}");
    }

    /// A stranger's packet before the stream, and copies of the stream's packets from
    /// another address: neither is played, both are counted, and only the stream's packets
    /// are activity.
    #[test]
    fn only_the_chosen_source_is_played() {
        let samples = signal(16000);
        let pkts = packets(&samples);
        let (real, other) = (
            Some(SocketAddr::from(([127, 0, 0, 1], 5000))),
            Some(SocketAddr::from(([127, 0, 0, 1], 6000))),
        );
        let mut stranger = pkts[7].clone();
        stranger[8..12].copy_from_slice(&0x0bad_f00du32.to_be_bytes());
        let mut jb = JitterBuffer::new(cfg(Latency::Fixed(40), ConcealMode::G711)).unwrap();
        let mut out = Vec::new();
        assert_eq!(jb.push_from(&stranger, other, 900_000), Pushed::Accepted);
        let mut last = 0;
        for (k, (t, d)) in on_time(&pkts).into_iter().enumerate() {
            jb.poll(t, &mut out);
            if k > 2 && k % 5 == 0 {
                let mut noise = d.clone();
                noise[12..].iter_mut().for_each(|b| *b ^= 0x5a);
                assert_eq!(
                    jb.push_from(&noise, other, t),
                    Pushed::Dropped(DropReason::OtherAddress)
                );
            }
            jb.push_from(&d, real, t);
            jb.poll(t, &mut out);
            last = t;
        }
        assert_eq!(
            jb.push_from(b"x", other, last + 1000),
            Pushed::Dropped(DropReason::Truncated)
        );
        assert_eq!(jb.last_stream_arrival_us(), Some(last));
        jb.finish(&mut out);
        assert_same(&out, &samples);
        let s = jb.stats();
        assert_eq!(s.bad[&DropReason::SsrcChange], 1, "{s:?}");
        assert_eq!(s.bad[&DropReason::OtherAddress], 9, "{s:?}");
        assert_eq!(s.chosen_source.as_ref().map(|c| c.address), Some(real));
        assert_eq!(s.sources.len(), 3, "{:?}", s.sources);
        assert!(
            s.report()
                .contains("SSRC 0x0badf00d from 127.0.0.1:6000 (1 packet)")
        );
    }

    #[test]
    fn no_loss_is_bit_identical_across_wraps() {
        let samples = signal(16000 * 2);
        let pkts = packets(&samples);
        let mut jb = JitterBuffer::new(cfg(Latency::AUTO, ConcealMode::G711)).unwrap();
        let out = simulate(&mut jb, on_time(&pkts));
        let s = jb.stats();
        assert_same(&out, &samples);
        assert_eq!((s.received, s.played, s.lost, s.late), (100, 100, 0, 0));
        assert_eq!(s.concealed_ms, 0.0);
        assert!(s.bad.is_empty(), "{:?}", s.bad);
    }

    #[test]
    fn reordering_within_the_delay_is_undone_and_duplicates_dropped() {
        let samples = signal(16000);
        let pkts = packets(&samples);
        let mut ev = on_time(&pkts);
        // Swap neighbours 10/11 and 30/31 by 5 ms, duplicate 20.
        ev[10].0 += 25_000;
        ev[30].0 += 25_000;
        ev.push((ev[20].0 + 3000, ev[20].1.clone()));
        let mut jb = JitterBuffer::new(cfg(Latency::Fixed(60), ConcealMode::G711)).unwrap();
        let out = simulate(&mut jb, ev);
        let s = jb.stats();
        assert_same(&out, &samples);
        assert_eq!((s.reordered, s.duplicate, s.late, s.lost), (2, 1, 0, 0));
    }

    /// `pkts` on time, but for packets 3, 10, 17, ... (lost).
    fn every_seventh_lost(pkts: &[Vec<u8>]) -> Vec<(u64, Vec<u8>)> {
        on_time(pkts)
            .into_iter()
            .enumerate()
            .filter(|(k, _)| k % 7 != 3)
            .map(|(_, e)| e)
            .collect()
    }

    #[test]
    fn lost_packets_are_concealed_and_the_length_is_kept() {
        let samples = signal(16000);
        let pkts = packets(&samples);
        let ev = every_seventh_lost(&pkts);
        for mode in ConcealMode::ALL {
            let mut jb = JitterBuffer::new(cfg(Latency::Fixed(40), mode)).unwrap();
            let out = simulate(&mut jb, ev.clone());
            let s = jb.stats();
            assert_eq!(out.len(), samples.len(), "{mode}");
            assert_eq!(s.lost, 7, "{mode}");
            assert!(
                (s.concealed_ms - 140.0).abs() < 1e-9,
                "{mode}: {}",
                s.concealed_ms
            );
            // Received packets are played as sent, except the merge into the first good
            // packet after a loss (every mode but silence) and, for g711 and bridge, the
            // last 3.75 ms before a loss (G.711 Appendix I blends them into the repetition).
            assert_eq!(&out[..320 * 3 - 60], &samples[..320 * 3 - 60], "{mode}");
        }
    }

    /// The concealer is told what the buffer holds after a gap. With 40 ms of latency the
    /// packet after each loss is there when the loss is due, and bridge fills the whole gap
    /// from both sides; with 15 ms it arrives halfway through (the second 10 ms are bridged);
    /// with 5 ms it comes too late to help and bridge is g711 exactly.
    #[test]
    fn bridge_is_told_of_the_packet_after_a_loss_when_the_buffer_holds_it() {
        let samples = signal(16000);
        let pkts = packets(&samples);
        let ev = every_seventh_lost(&pkts);
        let run = |ms, mode| {
            let mut jb = JitterBuffer::new(cfg(Latency::Fixed(ms), mode)).unwrap();
            let out = simulate(&mut jb, ev.clone());
            assert_eq!(out.len(), samples.len(), "{mode} {ms} ms");
            (out, jb.stats())
        };
        let rms = |out: &[i16]| {
            let sum: f64 = out
                .iter()
                .zip(&samples)
                .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
                .sum();
            (sum / samples.len() as f64).sqrt()
        };
        let (g711, _) = run(5, ConcealMode::G711);
        let (bridge, stats) = run(5, ConcealMode::Bridge);
        assert_eq!((stats.bridged_ms, stats.concealed_ms), (0.0, 140.0));
        assert_same(&bridge, &g711);

        let (bridge, stats) = run(15, ConcealMode::Bridge);
        assert_eq!((stats.bridged_ms, stats.concealed_ms), (70.0, 140.0));
        let steepest = samples
            .windows(2)
            .map(|w| (i32::from(w[1]) - i32::from(w[0])).abs())
            .max()
            .unwrap();
        let jump = bridge
            .windows(2)
            .map(|w| (i32::from(w[1]) - i32::from(w[0])).abs())
            .max()
            .unwrap();
        assert!(
            jump < 2 * steepest,
            "jump {jump}, the signal's own {steepest}"
        );
        assert!(rms(&bridge) < rms(&g711), "{} {}", rms(&bridge), rms(&g711));

        let (g711, _) = run(40, ConcealMode::G711);
        let (bridge, stats) = run(40, ConcealMode::Bridge);
        assert_eq!((stats.bridged_ms, stats.concealed_ms), (140.0, 140.0));
        assert!(
            rms(&bridge) < 0.5 * rms(&g711),
            "RMS error bridge {:.0}, g711 {:.0}",
            rms(&bridge),
            rms(&g711)
        );
    }

    /// A loss concealed while the buffer was empty, then the next packet arrives and the
    /// stream ends before it is played: `finish` plays the concealment and then the packet,
    /// each where it belongs (it used to drop the concealment and play the packet early).
    #[test]
    fn finish_keeps_the_concealment_a_packet_follows() {
        let samples = signal(320 * 12);
        let pkts = packets(&samples);
        for mode in ConcealMode::ALL {
            let mut jb = JitterBuffer::new(cfg(Latency::Fixed(20), mode)).unwrap();
            let mut out = Vec::new();
            for (k, (t, d)) in on_time(&pkts).into_iter().enumerate().take(10) {
                assert_eq!(k as u64 * PTIME_US + 1_000_000, t);
                jb.push(&d, t);
                jb.poll(t, &mut out);
            }
            // Packet 10 never comes: its 20 ms are concealed provisionally (nothing held).
            let due_11 = 1_000_000 + 11 * PTIME_US + 20_000;
            jb.poll(due_11 - 1, &mut out);
            assert_eq!(jb.buffered(), 0);
            // Packet 11 arrives; the stream ends before its playout time.
            jb.push(&pkts[11], 1_000_000 + 11 * PTIME_US);
            jb.finish(&mut out);
            assert_eq!(out.len(), 12 * 320, "{mode}");
            let merge = 160; // the longest merge into the packet after a loss
            assert_same(&out[11 * 320 + merge..], &samples[11 * 320 + merge..]);
            assert_eq!(jb.stats().concealed_ms, 20.0, "{mode}");
        }
    }

    #[test]
    fn a_packet_after_its_playout_time_is_late_and_concealed() {
        let samples = signal(16000);
        let pkts = packets(&samples);
        let mut ev = on_time(&pkts);
        ev[20].0 += 200_000;
        let mut jb = JitterBuffer::new(cfg(Latency::Fixed(40), ConcealMode::Silence)).unwrap();
        let out = simulate(&mut jb, ev);
        let s = jb.stats();
        assert_eq!(s.late, 1);
        assert_eq!(out.len(), samples.len());
        assert!(out[20 * 320..21 * 320].iter().all(|&x| x == 0));
        assert_eq!(&out[21 * 320..], &samples[21 * 320..]);
    }

    /// A sender that stalls and then bursts (ffmpeg does): with automatic latency the stall
    /// is absorbed by stretching the delay, nothing is late and the output is exact; with a
    /// fixed latency the stalled packets are late.
    #[test]
    fn a_stall_with_an_empty_buffer_stretches_under_auto_latency() {
        let samples = signal(16000 * 2);
        let pkts = packets(&samples);
        let mut ev = on_time(&pkts);
        // Packets 30..35 are held and arrive together with packet 35.
        let burst_at = ev[35].0;
        for e in &mut ev[30..35] {
            e.0 = burst_at;
        }
        let mut jb = JitterBuffer::new(cfg(Latency::AUTO, ConcealMode::G711)).unwrap();
        let out = simulate(&mut jb, ev.clone());
        let s = jb.stats();
        assert_eq!((s.late, s.lost), (0, 0), "{s:?}");
        assert_eq!(s.concealed_ms, 0.0);
        assert!(s.stretched_ms >= 80.0, "stretched {} ms", s.stretched_ms);
        assert_same(&out, &samples);

        let mut jb = JitterBuffer::new(cfg(Latency::Fixed(20), ConcealMode::G711)).unwrap();
        let out = simulate(&mut jb, ev);
        let s = jb.stats();
        assert!(s.late >= 3, "{s:?}");
        assert_eq!(out.len(), samples.len());
    }

    #[test]
    fn bad_datagrams_are_counted_by_kind() {
        let samples = signal(3200);
        let pkts = packets(&samples);
        let mut ev = on_time(&pkts);
        let t = ev[5].0 + 1;
        let mut other_pt = pkts[6].clone();
        other_pt[1] = 0x61;
        let mut other_ssrc = pkts[6].clone();
        other_ssrc[11] ^= 1;
        let mut odd = pkts[6].clone();
        odd.push(0);
        let mut jump = pkts[6].clone();
        jump[2] ^= 0x80;
        let mut v1 = pkts[6].clone();
        v1[0] = 0x40;
        for d in [
            b"hello".to_vec(),
            vec![0x80; 11],
            other_pt,
            other_ssrc,
            odd,
            jump,
            v1,
            vec![0x8f; 20],
        ] {
            ev.push((t, d));
        }
        let mut jb = JitterBuffer::new(cfg(Latency::Fixed(40), ConcealMode::G711)).unwrap();
        let out = simulate(&mut jb, ev);
        let s = jb.stats();
        assert_same(&out, &samples);
        let kinds: Vec<_> = s.bad.keys().copied().collect();
        assert_eq!(
            kinds,
            [
                DropReason::CsrcBeyondDatagram,
                DropReason::PartialFrame,
                DropReason::PtChange,
                DropReason::SeqJump,
                DropReason::SsrcChange,
                DropReason::Truncated,
                DropReason::WrongVersion
            ]
        );
        assert_eq!(
            s.bad[&DropReason::Truncated],
            2,
            "'hello' and 11 bytes are shorter than a header"
        );
        assert_eq!(s.bad[&DropReason::WrongVersion], 1, "the version-1 header");
    }

    /// Uniform 0..30 ms network jitter on 20 ms packets: the automatic target stays within
    /// ptime + the jitter's 95th percentile and late loss within 1 %.
    #[test]
    fn auto_latency_tracks_uniform_jitter() {
        let samples = signal(16000 * 30);
        let pkts = packets(&samples);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let ev: Vec<_> = on_time(&pkts)
            .into_iter()
            .map(|(t, d)| (t + 5_000 + rng.random_range(0..30_000u64), d))
            .collect();
        let mut jb = JitterBuffer::new(cfg(Latency::AUTO, ConcealMode::G711)).unwrap();
        let out = simulate(&mut jb, ev);
        let s = jb.stats();
        assert_eq!(out.len(), samples.len());
        assert!(
            s.late_fraction() <= 0.01,
            "late {} of {}",
            s.late,
            s.received
        );
        assert!(
            s.delay_p95_ms <= 20.0 + 28.5,
            "p95 delay {} ms",
            s.delay_p95_ms
        );
        assert!(
            s.delay_p50_ms >= 20.0,
            "the delay must cover most of the jitter: {}",
            s.delay_p50_ms
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Arbitrary datagrams mixed into a stream at arbitrary times never panic, never
        /// break the stream's own audio, and output stays bounded.
        #[test]
        fn arbitrary_datagrams_never_panic(
            junk in proptest::collection::vec((0u64..2_000_000, proptest::collection::vec(any::<u8>(), 0..400)), 0..200),
            mode in 0usize..4,
            stereo in any::<bool>(),
        ) {
            let samples = signal(8000);
            let pkts = packets(&samples);
            let mut ev = on_time(&pkts);
            ev.extend(junk.into_iter().map(|(t, mut d)| {
                if d.len() > 12 && d[0] & 1 == 0 { d[0] = 0x80 } // many become RTP-shaped
                (1_000_000 + t, d)
            }));
            let mut c = cfg(Latency::AUTO, ConcealMode::ALL[mode]);
            if stereo { c.format = AudioFormat::new(RATE, 2).unwrap(); }
            let mut jb = JitterBuffer::new(c).unwrap();
            let out = simulate(&mut jb, ev);
            let s = jb.stats();
            prop_assert!(out.len() <= 20 * RATE as usize * 2);
            prop_assert!(s.datagrams >= pkts.len() as u64);
        }
    }
}
