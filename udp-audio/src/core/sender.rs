//! The sender's core, sans-IO: cutting audio into RTP/L16 packets and the pacing schedule.
//!
//! Packet `k` is due at `start + k * ptime` exactly (computed in nanoseconds from the frame
//! count, so a ptime such as 365 frames at 44.1 kHz does not accumulate rounding). A driver
//! sleeps until each absolute deadline; sleeping a fixed interval instead drifts by the time
//! each send and wake-up takes.

use serde::Serialize;

use crate::wire::l16::{self, StreamParams};
use crate::wire::rtcp::{self, SenderReport};
use crate::wire::rtp::RtpHeader;
use crate::{Error, Result};

/// Cuts interleaved samples into RTP packets.
#[derive(Debug, Clone)]
pub struct Packetizer {
    params: StreamParams,
    header: RtpHeader,
    next_frame: usize,
    sent: u64,
    payload: Vec<u8>,
}

impl Packetizer {
    /// A packetizer starting at sequence `seq` and timestamp `timestamp` (random in a real
    /// session, RFC 3550 §5.1).
    pub fn new(params: StreamParams, ssrc: u32, seq: u16, timestamp: u32) -> Self {
        Packetizer {
            params,
            header: RtpHeader {
                marker: true,
                payload_type: params.payload_type,
                sequence: seq,
                timestamp,
                ssrc,
                ..RtpHeader::default()
            },
            next_frame: 0,
            sent: 0,
            payload: Vec::with_capacity(params.payload_bytes()),
        }
    }

    /// The stream parameters.
    pub fn params(&self) -> &StreamParams {
        &self.params
    }

    /// The RTP timestamp the next packet will carry.
    pub fn timestamp(&self) -> u32 {
        self.header.timestamp
    }

    /// Packets produced so far.
    pub fn packets(&self) -> u64 {
        self.sent
    }

    /// Packets needed for `frames` sample frames.
    pub fn packets_for(&self, frames: usize) -> u64 {
        frames.div_ceil(self.params.frames_per_packet) as u64
    }

    /// Writes the next packet cut from `samples` (the whole interleaved signal) into `out`,
    /// replacing its contents. Returns the frames it carries, or `None` at the end. The first
    /// packet has the marker bit set (start of a talkspurt); the last may be shorter.
    pub fn next_packet(&mut self, samples: &[i16], out: &mut Vec<u8>) -> Result<Option<usize>> {
        let channels = usize::from(self.params.format.channels);
        if samples.len() % channels != 0 {
            return Err(Error::PartialSamples {
                samples: samples.len(),
                channels: self.params.format.channels,
            });
        }
        let total = samples.len() / channels;
        if self.next_frame >= total {
            return Ok(None);
        }
        let frames = (total - self.next_frame).min(self.params.frames_per_packet);
        let chunk = &samples[self.next_frame * channels..(self.next_frame + frames) * channels];
        self.payload.clear();
        l16::encode(chunk, &mut self.payload);
        out.clear();
        self.header.emit(&self.payload, 0, out)?;
        self.header.marker = false;
        self.header.sequence = self.header.sequence.wrapping_add(1);
        self.header.timestamp = self.header.timestamp.wrapping_add(frames as u32);
        self.next_frame += frames;
        self.sent += 1;
        Ok(Some(frames))
    }
}

/// An RTCP compound packet of a sender report (RFC 3550 §6.4.1, no report blocks) and a BYE
/// (§6.6) for `ssrc`, built by [`crate::wire::rtcp`].
///
/// `ntp` is the wall-clock time in NTP format, read by the driver
/// ([`crate::driver::net::ntp_now`]) and passed in: the core never reads a clock.
/// `rtp_timestamp` is the RTP time of the same instant, `packets` and `octets` the sender's
/// counts (payload octets, as §6.4.1 says).
pub fn rtcp_sr_bye(ssrc: u32, ntp: u64, rtp_timestamp: u32, packets: u32, octets: u32) -> Vec<u8> {
    rtcp::sr_bye(&SenderReport {
        ssrc,
        ntp,
        rtp_timestamp,
        packets,
        octets,
    })
}

/// The absolute pacing schedule: packet `k` leaves at `start + k * ptime`.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    start_ns: u64,
    frames_per_packet: u64,
    rate: u64,
}

impl Schedule {
    /// A schedule starting at `start_ns` for `params`.
    pub fn new(start_ns: u64, params: &StreamParams) -> Self {
        Schedule {
            start_ns,
            frames_per_packet: params.frames_per_packet as u64,
            rate: u64::from(params.format.rate),
        }
    }

    /// When packet `k` is due, ns.
    pub fn deadline_ns(&self, k: u64) -> u64 {
        let offset = u128::from(k) * u128::from(self.frames_per_packet) * 1_000_000_000
            / u128::from(self.rate);
        self.start_ns + offset as u64
    }
}

/// Pacing errors: how late each packet left against its deadline.
#[derive(Debug, Clone, Default)]
pub struct PacingRecorder {
    late_ns: Vec<i64>,
}

impl PacingRecorder {
    /// An empty recorder with room for `packets`.
    pub fn with_capacity(packets: usize) -> Self {
        PacingRecorder {
            late_ns: Vec::with_capacity(packets),
        }
    }

    /// Records that the packet due at `deadline_ns` was sent at `sent_ns`.
    pub fn record(&mut self, deadline_ns: u64, sent_ns: u64) {
        self.late_ns.push(sent_ns as i64 - deadline_ns as i64);
    }

    /// The summary.
    pub fn summary(&self) -> PacingSummary {
        let n = self.late_ns.len();
        if n == 0 {
            return PacingSummary::default();
        }
        let mut sorted = self.late_ns.clone();
        sorted.sort_unstable();
        let q = |p: f64| {
            let rank = ((p * n as f64).ceil() as usize).clamp(1, n);
            sorted[rank - 1] as f64 / 1000.0
        };
        PacingSummary {
            packets: n as u64,
            error_p50_us: q(0.50),
            error_p99_us: q(0.99),
            error_max_us: sorted[n - 1] as f64 / 1000.0,
            drift_us: (self.late_ns[n - 1] - self.late_ns[0]) as f64 / 1000.0,
        }
    }
}

/// Pacing figures: send-time error (how late a packet left its deadline) and drift (the last
/// packet's error minus the first's: how far the stream's clock moved from the schedule).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PacingSummary {
    /// Packets sent.
    pub packets: u64,
    /// Median send-time error, µs.
    pub error_p50_us: f64,
    /// 99th percentile send-time error, µs.
    pub error_p99_us: f64,
    /// Largest send-time error, µs.
    pub error_max_us: f64,
    /// Drift over the stream, µs.
    pub drift_us: f64,
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::l16::AudioFormat;
    use crate::rtp::RtpPacket;

    fn params(rate: u32, channels: u16, ptime: u32) -> StreamParams {
        StreamParams::new(AudioFormat::new(rate, channels).unwrap(), ptime, None).unwrap()
    }

    #[test]
    fn packets_carry_consecutive_numbers_and_all_samples() {
        let p = params(16000, 1, 20);
        let samples: Vec<i16> = (0..16000 + 17).map(|i| (i * 7) as i16).collect();
        let mut pk = Packetizer::new(p, 0xdead_beef, 65530, u32::MAX - 100);
        let mut out = Vec::new();
        let mut back = Vec::new();
        let mut k = 0u16;
        while let Some(frames) = pk.next_packet(&samples, &mut out).unwrap() {
            let pkt = RtpPacket::new_checked(&out).unwrap();
            assert_eq!(pkt.sequence(), 65530u16.wrapping_add(k));
            assert_eq!(
                pkt.timestamp(),
                (u32::MAX - 100).wrapping_add(u32::from(k) * 320)
            );
            assert_eq!(pkt.marker(), k == 0);
            assert_eq!(pkt.ssrc(), 0xdead_beef);
            assert_eq!(pkt.payload_type(), 96);
            let n = l16::decode(pkt.payload(), 1, &mut back).unwrap();
            assert_eq!(n, frames);
            k += 1;
        }
        assert_eq!(u64::from(k), pk.packets_for(samples.len()));
        assert_eq!(back, samples);
    }

    #[test]
    fn stereo_44k_packets_fit_the_mtu_payload() {
        let p = params(44100, 2, 20);
        assert_eq!(p.payload_type, 10);
        let samples = vec![1i16; 44100 * 2];
        let mut pk = Packetizer::new(p, 1, 0, 0);
        let mut out = Vec::new();
        while pk.next_packet(&samples, &mut out).unwrap().is_some() {
            assert!(out.len() <= 12 + l16::MAX_PAYLOAD);
        }
    }

    #[test]
    fn schedule_does_not_accumulate_rounding() {
        // 365 frames at 44.1 kHz is 8276.643... µs: after 100k packets the deadline is exact.
        let p = params(44100, 2, 20);
        let s = Schedule::new(5, &p);
        let k = 100_000u64;
        let exact = 5 + (k as u128 * 365 * 1_000_000_000 / 44100) as u64;
        assert_eq!(s.deadline_ns(k), exact);
        assert!(s.deadline_ns(1) > s.deadline_ns(0));
    }

    #[test]
    fn pacing_summary_quantiles_and_drift() {
        let mut r = PacingRecorder::with_capacity(100);
        for k in 0..100u64 {
            r.record(k * 1000, k * 1000 + k * 10);
        }
        let s = r.summary();
        assert_eq!(s.packets, 100);
        assert_eq!(s.error_max_us, 0.99);
        assert_eq!(s.drift_us, 0.99);
        assert_eq!(s.error_p50_us, 0.49);
    }

    #[test]
    fn rtcp_sender_report_and_bye_are_well_formed() {
        let v = rtcp_sr_bye(0xabcd_ef01, 0x0102_0304_0506_0708, 77, 5, 640);
        let (sr, bye) = rtcp::parse_sr_bye(&v).unwrap();
        assert_eq!(
            (sr.ssrc, sr.packets, sr.octets, bye.ssrc),
            (0xabcd_ef01, 5, 640, 0xabcd_ef01)
        );
        assert_eq!(v.len(), 36);
        // Each part's length field is its size in 32-bit words minus one.
        assert_eq!((usize::from(v[3]) + 1) * 4, 28);
        assert_eq!(&v[28..30], &[0x81, 203]);
        assert_eq!(&v[32..36], &0xabcd_ef01u32.to_be_bytes());
        assert_eq!(&v[16..20], &77u32.to_be_bytes());
    }

    #[test]
    fn partial_frames_are_refused() {
        let p = params(48000, 2, 20);
        let mut pk = Packetizer::new(p, 1, 0, 0);
        let err = pk.next_packet(&[1, 2, 3], &mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), "partial_samples");
    }
}
