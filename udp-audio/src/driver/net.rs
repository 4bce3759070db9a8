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
