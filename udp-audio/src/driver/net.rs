//! Thin blocking drivers: the sender's pacing loop and the receiver's socket loop.
//!
//! All decisions live in the sans-IO cores ([`crate::sender`], [`crate::jitter`]); these
//! functions read the clock, sleep, and move datagrams and samples. Each run takes a stop
//! flag it checks between bounded waits (the binary's is `cli_conventions::Interrupt`, set
//! by SIGINT and SIGTERM), and on stop finishes and reports what it did.

use std::io::IsTerminal;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::jitter::{JitterBuffer, JitterConfig, RecvStats};
use crate::l16::{AudioFormat, StreamParams};
use crate::sdp::SdpStream;
use crate::sender::{PacingRecorder, PacingSummary, Packetizer, Schedule};
use crate::source::SourceFilter;
use crate::wav::{self, Audio, WavSink};
use crate::{Error, Result};

/// How long after the end of the stream the RTCP BYE is sent.
const BYE_DELAY_NS: u64 = 50_000_000;

/// Nanoseconds on CLOCK_MONOTONIC.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sleeps until the absolute CLOCK_MONOTONIC time `deadline_ns` (`clock_nanosleep` with
/// `TIMER_ABSTIME`, so wake-up latency never accumulates).
pub fn sleep_until_ns(deadline_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (deadline_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (deadline_ns % 1_000_000_000) as libc::c_long,
    };
    loop {
        // SAFETY: `ts` is a valid timespec; the remainder pointer may be null with
        // TIMER_ABSTIME.
        let rc = unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &ts,
                std::ptr::null_mut(),
            )
        };
        if rc != libc::EINTR {
            return;
        }
    }
}

/// Asks the kernel for 1 µs timer slack on this thread (default 50 µs), for tighter pacing.
fn tighten_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes an unsigned long and touches only this thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
}

/// Random bytes from the kernel, for SSRC and initial sequence number and timestamp.
fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    // SAFETY: `buf` is valid for 8 bytes of writes.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n != 8 {
        // Never expected on Linux ≥ 3.17; the clock still makes sessions differ.
        return monotonic_ns().wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    u64::from_ne_bytes(buf)
}

/// What `udp-audio send` is asked to do.
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// Destination.
    pub to: SocketAddr,
    /// Packet duration, ms (shortened to fit 1460 payload bytes).
    pub ptime_ms: u32,
    /// Payload type; `None` picks 10/11 or 96.
    pub payload_type: Option<u8>,
    /// Where to write the SDP description.
    pub sdp: Option<PathBuf>,
    /// Show a live progress line on a terminal.
    pub progress: bool,
}

/// The sender's report.
#[derive(Debug, Clone, Serialize)]
pub struct SendReport {
    /// The WAV's format before conversion.
    pub source_format: String,
    /// Sample rate, Hz (`rate_hz` in JSON).
    #[serde(rename = "rate_hz")]
    pub rate: u32,
    /// Channels.
    pub channels: u16,
    /// RTP payload type.
    pub payload_type: u8,
    /// Frames per packet.
    pub frames_per_packet: usize,
    /// Packet duration, µs.
    pub ptime_us: u64,
    /// SSRC chosen.
    pub ssrc: u32,
    /// Audio sent, s: the whole input unless interrupted. The same as `audio_s`, under the
    /// name scripts/udp-audio-report reads.
    pub audio_secs: f64,
    /// Audio sent, s.
    pub audio_s: f64,
    /// Audio in the input, s.
    pub input_audio_s: f64,
    /// Packets the whole input takes.
    pub packets_total: u64,
    /// Payload and header bytes sent (`sent_bytes` in JSON).
    #[serde(rename = "sent_bytes")]
    pub bytes: u64,
    /// Send errors (e.g. ECONNREFUSED from ICMP), counted and skipped.
    pub send_errors: u64,
    /// Whether the run was stopped before the end of the input.
    pub interrupted: bool,
    /// Pacing figures; `pacing.packets` is the packets sent.
    pub pacing: PacingSummary,
}

impl SendReport {
    /// A human-readable report.
    pub fn report(&self) -> String {
        let (of, input, interrupted) = if self.interrupted {
            (
                format!(" of {}", self.packets_total),
                format!(" of the input's {:.2} s", self.input_audio_s),
                "; interrupted",
            )
        } else {
            (String::new(), String::new(), "")
        };
        format!(
            "sent {}{of} packets ({} bytes, {:.2} s{input} of {} Hz x{} audio, PT {}, {} frames = {:.2} ms per packet, SSRC {:#010x}){interrupted}\n\
             pacing error p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs; drift {:.0} µs; send errors {}",
            self.pacing.packets,
            self.bytes,
            self.audio_s,
            self.rate,
            self.channels,
            self.payload_type,
            self.frames_per_packet,
            self.ptime_us as f64 / 1000.0,
            self.ssrc,
            self.pacing.error_p50_us,
            self.pacing.error_p99_us,
            self.pacing.error_max_us,
            self.pacing.drift_us,
            self.send_errors,
        )
    }
}

/// Reads `input` and streams it, paced in real time. Stops early when `stop` is set.
pub fn send_file(input: &Path, opts: &SendOptions, stop: &AtomicBool) -> Result<SendReport> {
    let (audio, source) = wav::read_wav(input)?;
    if source.converted {
        tracing::info!("{}: {source} converted to 16-bit PCM", input.display());
    }
    send_audio(&audio, &source.to_string(), opts, stop)
}

/// Writes the SDP file `opts.sdp` for streaming `input` and returns its path, without
/// sending anything.
pub fn write_sdp_for(input: &Path, opts: &SendOptions) -> Result<PathBuf> {
    let (audio, _) = wav::read_wav(input)?;
    let params = StreamParams::new(
        AudioFormat::new(audio.rate, audio.channels)?,
        opts.ptime_ms,
        opts.payload_type,
    )?;
    let path = opts.sdp.clone().ok_or_else(|| Error::Config {
        what: "--sdp-only needs --sdp FILE".into(),
    })?;
    write_sdp_file(&path, &params, opts.to)?;
    Ok(path)
}

fn write_sdp_file(path: &Path, params: &StreamParams, to: SocketAddr) -> Result<()> {
    let sdp = crate::l16::write_sdp(params, to, "udp-audio");
    use std::io::Write;
    crate::files::create_output(path)?
        .write_all(sdp.as_bytes())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// Streams `audio`, paced in real time.
pub fn send_audio(
    audio: &Audio,
    source_format: &str,
    opts: &SendOptions,
    stop: &AtomicBool,
) -> Result<SendReport> {
    let format = AudioFormat::new(audio.rate, audio.channels)?;
    let params = StreamParams::new(format, opts.ptime_ms, opts.payload_type)?;
    if params.ptime_ms() != opts.ptime_ms {
        tracing::info!(
            "ptime {} ms does not fit {} payload bytes: using {} frames ({:.2} ms) per packet",
            opts.ptime_ms,
            crate::l16::MAX_PAYLOAD,
            params.frames_per_packet,
            params.ptime_us() as f64 / 1000.0
        );
    }
    if let Some(path) = &opts.sdp {
        write_sdp_file(path, &params, opts.to)?;
    }
    let bind: SocketAddr = if opts.to.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .expect("literal address");
    let socket = UdpSocket::bind(bind).map_err(|e| Error::io(format!("binding {bind}"), e))?;
    let r = random_u64();
    let ssrc = r as u32;
    let mut packetizer = Packetizer::new(params, ssrc, (r >> 32) as u16, random_u64() as u32);
    let total = packetizer.packets_for(audio.frames());
    let mut pacing = PacingRecorder::with_capacity(total as usize);
    let mut datagram = Vec::with_capacity(12 + params.payload_bytes());
    let (mut bytes, mut send_errors) = (0u64, 0u64);
    let progress = opts.progress && std::io::stderr().is_terminal();
    tighten_timer_slack();
    if opts.progress {
        // Tests and scripts read this line to know the stream has started.
        eprintln!(
            "sending {total} packets ({:.2} s of {} Hz x{} audio) to {}",
            audio.duration_secs(),
            format.rate,
            format.channels,
            opts.to
        );
    }
    let schedule = Schedule::new(monotonic_ns() + 1_000_000, &params);
    let mut k = 0u64;
    let mut frames_sent = 0u64;
    let mut interrupted = false;
    loop {
        if stop.load(Ordering::Relaxed) {
            interrupted = true;
            break;
        }
        let Some(frames) = packetizer.next_packet(&audio.samples, &mut datagram)? else {
            break;
        };
        let deadline = schedule.deadline_ns(k);
        sleep_until_ns(deadline);
        let sent_at = monotonic_ns();
        match socket.send_to(&datagram, opts.to) {
            Ok(n) => bytes += n as u64,
            Err(e) => {
                send_errors += 1;
                tracing::debug!("send to {}: {e}", opts.to);
            }
        }
        pacing.record(deadline, sent_at);
        k += 1;
        frames_sent += frames as u64;
        if progress && k % 50 == 0 {
            eprint!(
                "\rsent {k}/{total} packets ({:.1} s)   ",
                k as f64 * params.ptime_us() as f64 / 1e6
            );
        }
    }
    if progress {
        eprintln!();
    }
    let audio_s = frames_sent as f64 / f64::from(format.rate);
    // End the session with an RTCP sender report and BYE on the RTCP port (RTP port + 1),
    // after the last packet's own duration plus a margin: a receiver that reads its RTP and
    // RTCP sockets in one poll (ffmpeg) would otherwise take the BYE before the last packet.
    if !interrupted {
        sleep_until_ns(schedule.deadline_ns(k) + BYE_DELAY_NS);
    }
    let mut rtcp_to = opts.to;
    rtcp_to.set_port(opts.to.port().wrapping_add(1));
    let payload_octets = bytes.saturating_sub(k * crate::rtp::HEADER_LEN as u64) as u32;
    let bye = crate::sender::rtcp_sr_bye(
        ssrc,
        ntp_now(),
        packetizer.timestamp(),
        k as u32,
        payload_octets,
    );
    if let Err(e) = socket.send_to(&bye, rtcp_to) {
        tracing::debug!("RTCP BYE to {rtcp_to}: {e}");
    }
    Ok(SendReport {
        source_format: source_format.to_string(),
        rate: format.rate,
        channels: format.channels,
        payload_type: params.payload_type,
        frames_per_packet: params.frames_per_packet,
        ptime_us: params.ptime_us(),
        ssrc,
        audio_secs: audio_s,
        audio_s,
        input_audio_s: audio.duration_secs(),
        packets_total: total,
        bytes,
        send_errors,
        interrupted,
        pacing: pacing.summary(),
    })
}

/// Largest SDP file the receiver reads.
pub const MAX_SDP_BYTES: u64 = 64 * 1024;

/// Reads and parses an SDP file (at most [`MAX_SDP_BYTES`]; see [`crate::sdp::read_sdp`]).
pub fn read_sdp_file(path: &Path) -> Result<SdpStream> {
    let text = crate::files::read_text(path, MAX_SDP_BYTES)?;
    crate::sdp::read_sdp(&text)
}

/// The stream a receiver expects and where it listens, resolved from what it was told: an
/// SDP description, or a rate and channel count, and the flags that override the SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSpec {
    /// The audio format.
    pub format: AudioFormat,
    /// The payload type to accept: the one asked for, else the SDP's; `None` locks to the
    /// first packet's.
    pub payload_type: Option<u8>,
    /// The address to listen on: the one asked for, else the SDP's connection address
    /// (any, when it has none) and port.
    pub listen: SocketAddr,
}

impl StreamSpec {
    /// Resolves the stream from `sdp` when there is one (it gives the format even if `rate`
    /// and `channels` are given too), else from `rate` and `channels`; `payload_type` and
    /// `listen` override the SDP's. Without a format, or without an address to listen on,
    /// it is an [`Error::Config`] saying what `recv` needs.
    pub fn resolve(
        sdp: Option<&SdpStream>,
        rate: Option<u32>,
        channels: Option<u16>,
        payload_type: Option<u8>,
        listen: Option<SocketAddr>,
    ) -> Result<StreamSpec> {
        let (format, sdp_pt, sdp_addr) = match (sdp, rate, channels) {
            (Some(s), _, _) => {
                let ip = s.address.unwrap_or([0, 0, 0, 0].into());
                (
                    s.format,
                    Some(s.payload_type),
                    Some(SocketAddr::new(ip, s.port)),
                )
            }
            (None, Some(rate), Some(channels)) => (AudioFormat::new(rate, channels)?, None, None),
            _ => {
                return Err(Error::Config {
                    what: "recv needs the stream's format: --sdp FILE, or --rate R --channels C"
                        .into(),
                });
            }
        };
        let listen = listen.or(sdp_addr).ok_or_else(|| Error::Config {
            what: "recv needs --listen ADDR (or an SDP file giving the address)".into(),
        })?;
        Ok(StreamSpec {
            format,
            payload_type: payload_type.or(sdp_pt),
            listen,
        })
    }
}

/// What `udp-audio recv` is asked to do.
#[derive(Debug, Clone)]
pub struct RecvOptions {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Output WAV.
    pub out: PathBuf,
    /// Jitter buffer settings.
    pub jitter: JitterConfig,
    /// End when no packet of the chosen stream has arrived for this long (datagrams of
    /// other sources and junk do not count).
    pub idle_timeout: Duration,
    /// Give up when no stream has been found (no source passed probation) for this long
    /// (`None`: wait for ever).
    pub first_timeout: Option<Duration>,
    /// Show a live progress line on a terminal.
    pub progress: bool,
}

/// A bound receiver, so callers can learn the port before it runs.
#[derive(Debug)]
pub struct Receiver {
    socket: UdpSocket,
    opts: RecvOptions,
    filter: SourceFilter,
}

impl Receiver {
    /// Binds the listening socket.
    pub fn bind(opts: RecvOptions) -> Result<Self> {
        let socket = UdpSocket::bind(opts.listen)
            .map_err(|e| Error::io(format!("binding {}", opts.listen), e))?;
        // A deep receive buffer so a burst (ffmpeg sends in bursts) is not dropped while
        // the WAV is written.
        let sock = socket2::SockRef::from(&socket);
        let _ = sock.set_recv_buffer_size(1 << 20);
        Ok(Receiver {
            socket,
            opts,
            filter: SourceFilter::default(),
        })
    }

    /// Accepts only a source matching `filter` (address and/or SSRC); by default the first
    /// source to pass probation is played, and only from the address it came from.
    pub fn set_source_filter(&mut self, filter: SourceFilter) {
        self.filter = filter;
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.socket
            .local_addr()
            .map_err(|e| Error::io("local address", e))
    }

    /// Receives until the stream goes idle (or `stop` is set), writing the WAV.
    pub fn run(self, stop: &AtomicBool) -> Result<RecvStats> {
        let Receiver {
            socket,
            opts,
            filter,
        } = self;
        let fmt = opts.jitter.format;
        let mut jb = JitterBuffer::with_source_filter(opts.jitter, filter)?;
        let mut sink = WavSink::create(&opts.out, fmt.rate, fmt.channels)?;
        let epoch = monotonic_ns();
        let now_us = || (monotonic_ns() - epoch) / 1000;
        let mut buf = vec![0u8; 65536];
        let mut out = Vec::new();
        let progress = opts.progress && std::io::stderr().is_terminal();
        let mut next_progress = 1_000_000u64;
        loop {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let now = now_us();
            // Wake for the next playout deadline, the idle timeout, or a stop check. Only
            // the chosen stream's packets are activity: junk or another sender must not keep
            // a finished session open.
            let last_stream = jb.last_activity_us();
            let idle_deadline = match last_stream {
                Some(t) => Some(t.saturating_add(duration_us(opts.idle_timeout))),
                None => opts.first_timeout.map(duration_us),
            };
            if let Some(d) = idle_deadline {
                if now >= d {
                    if last_stream.is_none() {
                        let s = jb.stats();
                        return Err(Error::NoStream {
                            listen: socket.local_addr().map_or(opts.listen, |a| a).to_string(),
                            waited: format!(
                                "{} s",
                                opts.first_timeout.unwrap_or_default().as_secs_f64()
                            ),
                            datagrams: s.datagrams,
                            sources: s.sources.len(),
                        });
                    }
                    break;
                }
            }
            let mut wake = now + 200_000;
            if let Some(d) = jb.next_due_us() {
                wake = wake.min(d);
            }
            if let Some(d) = idle_deadline {
                wake = wake.min(d);
            }
            let timeout = Duration::from_micros(wake.saturating_sub(now).max(100));
            socket
                .set_read_timeout(Some(timeout))
                .map_err(|e| Error::io("setting the receive timeout", e))?;
            match socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    jb.push_from(&buf[..n], Some(from), now_us());
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(Error::io(format!("receiving on {}", opts.listen), e)),
            }
            out.clear();
            jb.poll(now_us(), &mut out);
            sink.write(&out)?;
            warn_mismatches(&mut jb);
            if progress && now >= next_progress {
                next_progress = now + 1_000_000;
                let s = jb.stats();
                eprint!(
                    "\r{:.0} s: {} packets, lost {}, late {}, buffered {}, delay {:.1} ms   ",
                    now as f64 / 1e6,
                    s.received,
                    s.lost,
                    s.late,
                    jb.buffered(),
                    s.delay_final_ms
                );
            }
        }
        if progress {
            eprintln!();
        }
        out.clear();
        jb.finish(&mut out);
        sink.write(&out)?;
        sink.finish()?;
        warn_mismatches(&mut jb);
        Ok(jb.stats())
    }
}

/// Logs, as warnings, where the stream turned out not to match the configured format.
fn warn_mismatches(jb: &mut JitterBuffer) {
    for m in jb.take_mismatches() {
        tracing::warn!("{m}");
    }
}

/// Microseconds of `d`, saturating (a `Duration` can exceed `u64` microseconds).
fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The current wall-clock time in NTP format (seconds since 1900 in the high 32 bits): the
/// driver reads it and passes it to the core ([`crate::sender::rtcp_sr_bye`]).
pub fn ntp_now() -> u64 {
    let since_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since_unix.as_secs() + 2_208_988_800;
    let frac = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

#[cfg(test)]
mod test {
    use super::*;

    fn sdp(text: &str) -> SdpStream {
        crate::sdp::read_sdp(text).unwrap()
    }

    const SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                       m=audio 5004 RTP/AVP 97\r\na=rtpmap:97 L16/48000/2\r\n";

    #[test]
    fn an_sdp_gives_format_payload_type_and_address() {
        let s = sdp(SDP);
        let spec = StreamSpec::resolve(Some(&s), None, None, None, None).unwrap();
        assert_eq!(spec.format, AudioFormat::new(48000, 2).unwrap());
        assert_eq!(spec.payload_type, Some(97));
        assert_eq!(spec.listen, SocketAddr::from(([127, 0, 0, 1], 5004)));
        // The flags override the SDP's payload type and address.
        let here = SocketAddr::from(([127, 0, 0, 1], 0));
        let spec = StreamSpec::resolve(Some(&s), None, None, Some(96), Some(here)).unwrap();
        assert_eq!((spec.payload_type, spec.listen), (Some(96), here));
    }

    #[test]
    fn an_sdp_without_an_address_listens_on_any() {
        let s = sdp(&SDP.replace("c=IN IP4 127.0.0.1\r\n", ""));
        let spec = StreamSpec::resolve(Some(&s), None, None, None, None).unwrap();
        assert_eq!(spec.listen, SocketAddr::from(([0, 0, 0, 0], 5004)));
    }

    #[test]
    fn rate_and_channels_need_a_listen_address() {
        let here = SocketAddr::from(([127, 0, 0, 1], 0));
        let spec = StreamSpec::resolve(None, Some(16000), Some(1), None, Some(here)).unwrap();
        assert_eq!(
            spec,
            StreamSpec {
                format: AudioFormat::new(16000, 1).unwrap(),
                payload_type: None,
                listen: here,
            }
        );
        let e = StreamSpec::resolve(None, Some(16000), Some(1), None, None).unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{e:?}");
        assert!(e.to_string().contains("recv needs --listen ADDR"), "{e}");
    }

    #[test]
    fn no_format_is_a_config_error_naming_both_ways() {
        let here = SocketAddr::from(([127, 0, 0, 1], 0));
        for (rate, channels) in [(None, None), (Some(16000), None), (None, Some(2))] {
            let e = StreamSpec::resolve(None, rate, channels, Some(96), Some(here)).unwrap_err();
            assert!(matches!(e, Error::Config { .. }), "{e:?}");
            assert!(
                e.to_string()
                    .contains("--sdp FILE, or --rate R --channels C"),
                "{e}"
            );
        }
        // A format the library refuses is that error, not a default.
        assert!(StreamSpec::resolve(None, Some(0), Some(1), None, Some(here)).is_err());
    }
}
