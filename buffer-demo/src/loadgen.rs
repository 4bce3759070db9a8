//! The sending side: `blast`, a paced UDP load generator.
//!
//! Datagram `k` is due at `start + k / rate` (an absolute deadline, so
//! sleeping late never accumulates drift: the next batch simply catches up).
//! Each batch goes out with one `sendmmsg`; every datagram carries its seq
//! and send time ([`crate::wire`]). After the stream and a drain pause the
//! sentinel, repeated, carries the number of datagrams the kernel accepted.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use socket2::{Domain, Protocol, Socket, Type};

use crate::error::{Error, Result};
use crate::mmsg::{MAX_GSO_BYTES, MAX_GSO_SEGMENTS, SLOT, SendBatch, interrupted};
use crate::stop::Stop;
use crate::wire::{Datagram, HEADER_LEN};

/// The highest offered rate taken, datagrams/s: well above what one sender
/// thread reaches on loopback (a few million/s), far below where the
/// arithmetic of the pacing would lose precision.
pub const MAX_RATE: f64 = 50_000_000.0;
/// The longest stream, seconds.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// Most datagrams per `sendmmsg` (the kernel's `UIO_MAXIOV`).
pub const MAX_BATCH: usize = 1024;
/// Most sending threads.
pub const MAX_THREADS: usize = 64;
/// Most sentinel copies.
pub const MAX_SENTINEL_COPIES: u32 = 1000;
/// Longest drain pause or gap between sentinel copies.
pub const MAX_PAUSE: Duration = Duration::from_secs(60);

/// Absolute-deadline pacing, sans-IO: plain numbers in, instants out.
#[derive(Debug, Clone, Copy)]
pub struct Pacer {
    start: Instant,
    rate: f64,
}

impl Pacer {
    /// Datagrams at `rate` per second from `start`; `rate <= 0` (or NaN)
    /// means unpaced.
    pub fn new(start: Instant, rate: f64) -> Pacer {
        Pacer { start, rate }
    }

    /// When datagram `k` (0-based) is due (at most a year after the start,
    /// whatever `k` and the rate).
    pub fn due(&self, k: u64) -> Instant {
        if self.rate > 0.0 {
            let secs = (k as f64 / self.rate).min(365.0 * 86_400.0);
            self.start + Duration::from_secs_f64(secs)
        } else {
            self.start
        }
    }

    /// How long to wait at `now` before sending datagram `k` (zero when due or late).
    pub fn wait(&self, k: u64, now: Instant) -> Duration {
        self.due(k).saturating_duration_since(now)
    }
}

/// How long past `duration` a paced stream that fell behind may go on to
/// send what was due: 2 % of the duration, from 20 ms to 200 ms (the last
/// batch of a sender a loaded machine held up a moment). A stream that
/// could not finish within it at the rate it reached is cut at `duration`
/// itself: `--duration` bounds the run, whatever `--rate` asks.
pub fn grace(duration: Duration) -> Duration {
    (duration / 50).clamp(Duration::from_millis(20), Duration::from_millis(200))
}

/// A fresh stream nonce from the OS (`getrandom`).
pub fn random_nonce() -> Result<u64> {
    let mut buf = [0u8; 8];
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`.
        let rc =
            unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if interrupted(&e) {
                continue;
            }
            return Err(Error::Socket {
                op: "getrandom",
                source: e,
            });
        }
        filled += rc as usize;
    }
    Ok(u64::from_be_bytes(buf))
}

/// How a blast is set up.
#[derive(Debug, Clone)]
pub struct BlastConfig {
    /// Where to send.
    pub to: SocketAddr,
    /// Datagrams per second, up to [`MAX_RATE`]; 0 sends as fast as the
    /// kernel takes them.
    pub rate: f64,
    /// Bytes per datagram, the 32-byte header ([`HEADER_LEN`]) included:
    /// `blast --size` (the payload) plus [`HEADER_LEN`].
    pub size: usize,
    /// How long to send (at a set rate, `rate * duration` datagrams, unless
    /// the sender cannot keep up: it stops [`grace`] after the duration).
    pub duration: Duration,
    /// Messages per `sendmmsg` (each of `gso` datagrams).
    pub batch: usize,
    /// Datagrams per message: above 1, each message is one UDP GSO send
    /// (`UDP_SEGMENT`) that the kernel splits into datagrams; up to
    /// [`MAX_GSO_SEGMENTS`] and [`MAX_GSO_BYTES`] in all.
    pub gso: usize,
    /// Sending threads (sharing the socket: one source, one stream).
    pub threads: usize,
    /// Pause between the last datagram and the first sentinel copy.
    pub drain: Duration,
    /// Sentinel copies.
    pub sentinel_copies: u32,
    /// Gap between sentinel copies.
    pub sentinel_gap: Duration,
    /// The stream's nonce; `None` draws one with `getrandom`.
    pub nonce: Option<u64>,
    /// Stops the stream early (the sentinel still goes out).
    pub stop: Stop,
    /// Print progress lines on stderr while sending: the rate reached
    /// every second, and at once when the stream falls behind.
    pub progress: bool,
}

impl Default for BlastConfig {
    fn default() -> BlastConfig {
        BlastConfig {
            to: SocketAddr::from(([127, 0, 0, 1], 9)),
            rate: 100_000.0,
            size: 64,
            duration: Duration::from_secs(1),
            batch: 32,
            gso: 1,
            threads: 1,
            drain: Duration::from_millis(100),
            sentinel_copies: 5,
            sentinel_gap: Duration::from_millis(10),
            nonce: None,
            stop: Stop::new(),
            progress: false,
        }
    }
}

/// What a blast did. JSON keys carry their unit (`_per_s`, `_s`, `_bytes`).
#[derive(Debug, Clone, Serialize)]
pub struct BlastReport {
    /// Destination.
    pub to: SocketAddr,
    /// The address the stream came from.
    pub source: SocketAddr,
    /// The stream's nonce (16 hex digits in JSON).
    #[serde(serialize_with = "crate::wire::serialize_nonce")]
    pub nonce: u64,
    /// Offered rate, datagrams/s (0: unpaced).
    #[serde(rename = "offered_per_s")]
    pub rate: f64,
    /// How long the stream was asked to last, seconds.
    pub duration_s: f64,
    /// Bytes per datagram, header included.
    #[serde(rename = "datagram_bytes")]
    pub size: usize,
    /// Payload bytes per datagram (`--size`): `size` less the header.
    pub payload_bytes: usize,
    /// Sending threads.
    pub threads: usize,
    /// Datagrams per GSO message (1: no GSO).
    pub gso: usize,
    /// Datagrams the kernel accepted (the sentinel's total).
    pub sent: u64,
    /// Datagrams due at the offered rate over the duration (`None`: unpaced).
    pub due: Option<u64>,
    /// The stream stopped at its deadline before every due datagram went
    /// out: the sender could not keep up with the offered rate.
    pub sender_limited: bool,
    /// Times the stream was seen behind its schedule while it ran (and
    /// said so on stderr).
    pub behind_warnings: u64,
    /// A stop was requested before the stream ended.
    pub interrupted: bool,
    /// `sendmmsg` calls.
    pub send_calls: u64,
    /// Send calls that failed (e.g. ECONNREFUSED: nobody listening).
    pub send_errors: u64,
    /// From the start to the last datagram, seconds.
    #[serde(rename = "sending_s")]
    pub secs: f64,
    /// sent / secs, datagrams/s.
    #[serde(rename = "achieved_per_s")]
    pub achieved_rate: f64,
    /// Largest lateness of a batch against its deadline, µs.
    pub max_late_us: f64,
}

impl std::fmt::Display for BlastReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "blast {} -> {} (nonce {:016x}, {} thread{}, gso {}): {} datagrams of {} B payload ({} B with the header) in {:.3} s = {:.0}/s (asked {}), {} sendmmsg calls, {} errors, max lateness {:.0} us",
            self.source,
            self.to,
            self.nonce,
            self.threads,
            if self.threads == 1 { "" } else { "s" },
            self.gso,
            self.sent,
            self.payload_bytes,
            self.size,
            self.secs,
            self.achieved_rate,
            if self.rate > 0.0 {
                format!("{:.0}/s", self.rate)
            } else {
                "unpaced".into()
            },
            self.send_calls,
            self.send_errors,
            self.max_late_us
        )?;
        if self.sender_limited {
            write!(
                f,
                "\nfell behind: this sender reached {:.0}/s of the {:.0}/s asked; {} of the {} datagrams due went out in the {} s asked",
                self.achieved_rate,
                self.rate,
                self.sent,
                self.due.unwrap_or(0),
                self.duration_s
            )?;
        }
        if self.interrupted {
            write!(
                f,
                "\ninterrupted: the stream was cut short (the sentinel went out)"
            )?;
        }
        Ok(())
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn check(cfg: &BlastConfig) -> Result<()> {
    if !(HEADER_LEN..=SLOT).contains(&cfg.size) {
        return Err(Error::DatagramSize {
            size: cfg.size,
            min: HEADER_LEN,
            max: SLOT,
        });
    }
    let bad = |what: String| Err(Error::Config(what));
    if !(1..=MAX_BATCH).contains(&cfg.batch) {
        return bad(format!(
            "--batch {} is not between 1 and {MAX_BATCH}",
            cfg.batch
        ));
    }
    if !(1..=MAX_THREADS).contains(&cfg.threads) {
        return bad(format!(
            "--threads {} is not between 1 and {MAX_THREADS}",
            cfg.threads
        ));
    }
    if !(1..=MAX_GSO_SEGMENTS).contains(&cfg.gso) {
        return bad(format!(
            "--gso {} is not between 1 and {MAX_GSO_SEGMENTS} datagrams per message",
            cfg.gso
        ));
    }
    if cfg.gso > 1 && cfg.gso * cfg.size > MAX_GSO_BYTES {
        return bad(format!(
            "--gso {} datagrams of {} bytes (--size {} + the {HEADER_LEN}-byte header) = {} bytes is more than one GSO message holds ({MAX_GSO_BYTES}); use fewer segments",
            cfg.gso,
            cfg.size,
            cfg.size - HEADER_LEN,
            cfg.gso * cfg.size
        ));
    }
    if !(cfg.rate.is_finite() && (0.0..=MAX_RATE).contains(&cfg.rate)) {
        return bad(format!(
            "--rate {} is not between 0 and {MAX_RATE} datagrams/s (0: unpaced)",
            cfg.rate
        ));
    }
    if cfg.duration.is_zero() || cfg.duration > MAX_DURATION {
        return bad(format!(
            "--duration {} s is not above 0 and at most {} s",
            cfg.duration.as_secs_f64(),
            MAX_DURATION.as_secs()
        ));
    }
    if !(1..=MAX_SENTINEL_COPIES).contains(&cfg.sentinel_copies) {
        return bad(format!(
            "{} sentinel copies is not between 1 and {MAX_SENTINEL_COPIES}",
            cfg.sentinel_copies
        ));
    }
    if cfg.drain > MAX_PAUSE || cfg.sentinel_gap > MAX_PAUSE {
        return bad(format!(
            "drain and sentinel gap must be at most {} s",
            MAX_PAUSE.as_secs()
        ));
    }
    if cfg.rate > 0.0 && (cfg.rate * cfg.duration.as_secs_f64()).round() < 1.0 {
        return bad(format!(
            "--rate {} for {} s is less than one datagram",
            cfg.rate,
            cfg.duration.as_secs_f64()
        ));
    }
    Ok(())
}

/// Counters the sending threads share.
#[derive(Default)]
struct Shared {
    /// The next seq not yet claimed by a thread.
    claimed: AtomicU64,
    sent: AtomicU64,
    calls: AtomicU64,
    errors: AtomicU64,
    max_late_ns: AtomicU64,
    last_sent_ns: AtomicU64,
    sender_limited: AtomicBool,
    interrupted: AtomicBool,
    fatal: std::sync::Mutex<Option<std::io::Error>>,
}

/// One sending thread: claims the next `batch x gso` seqs, waits for the
/// last one's deadline, sends them with one `sendmmsg` (retrying the rest
/// after a partial send), until the stream is done.
fn send_loop(
    cfg: &BlastConfig,
    fd: i32,
    nonce: u64,
    start: Instant,
    limit: Option<u64>,
    sh: &Shared,
) {
    let g = cfg.gso.max(1);
    let chunk = (cfg.batch * g) as u64;
    let mut batch = SendBatch::with_gso(cfg.batch, cfg.size, g);
    let end = start + cfg.duration;
    let deadline = match limit {
        Some(_) => end + grace(cfg.duration),
        None => end,
    };
    let pacer = Pacer::new(start, cfg.rate);
    let mut my_calls = 0u64;
    loop {
        if cfg.stop.requested() {
            sh.interrupted.store(true, Ordering::Relaxed);
            break;
        }
        let now = Instant::now();
        match limit {
            Some(l) => {
                let claimed = sh.claimed.load(Ordering::Relaxed);
                if claimed >= l {
                    break;
                }
                // Past the duration, go on only while what is left can go
                // out within the grace at the rate reached so far.
                let elapsed = now.duration_since(start).as_secs_f64().max(1e-9);
                let reached = sh.sent.load(Ordering::Relaxed) as f64 / elapsed;
                if now >= end
                    && (now >= deadline
                        || (l - claimed) as f64
                            > reached * deadline.duration_since(now).as_secs_f64())
                {
                    sh.sender_limited.store(true, Ordering::Relaxed);
                    break;
                }
            }
            // At least one call, so that even a late start sends something.
            None if my_calls > 0 && now >= end => break,
            None => {}
        }
        let k = sh.claimed.fetch_add(chunk, Ordering::Relaxed);
        let want = match limit {
            Some(l) if k >= l => break,
            Some(l) => (l - k).min(chunk) as usize,
            None => chunk as usize,
        };
        let last = k + want as u64 - 1;
        let wait = pacer.wait(last, now);
        if !wait.is_zero() {
            if cfg.stop.sleep(wait) {
                // The claimed seqs still go out: a hole would make the
                // sentinel's total look short to the sink.
                sh.interrupted.store(true, Ordering::Relaxed);
            }
        } else {
            let late = now.saturating_duration_since(pacer.due(last)).as_nanos() as u64;
            sh.max_late_ns.fetch_max(late, Ordering::Relaxed);
        }
        let stamp = now_ns();
        for i in 0..want {
            let slot = batch.slot(i);
            Datagram::emit_data(slot, nonce, k + i as u64, stamp);
            if g > 1 {
                crate::wire::set_segments(slot, g as u8);
            }
        }
        let mut from = 0;
        let mut failures = 0u32;
        while from < want {
            my_calls += 1;
            sh.calls.fetch_add(1, Ordering::Relaxed);
            match batch.send(fd, from, want) {
                Ok(n) => {
                    from += n;
                    sh.sent.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) if interrupted(&e) => {}
                // A full socket send buffer: wait for it, the seqs are claimed.
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.raw_os_error() == Some(libc::ENOBUFS) =>
                {
                    failures += 1;
                    if failures > 1000 {
                        sh.errors.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    std::thread::yield_now();
                }
                Err(e) => {
                    let errors = sh.errors.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::debug!(error = %e, "sendmmsg");
                    if errors > 1000 && sh.sent.load(Ordering::Relaxed) == 0 {
                        *sh.fatal.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        sh.interrupted.store(true, Ordering::Relaxed);
                        return;
                    }
                    break;
                }
            }
            // After a partial send, datagram i still carries seq k + i.
        }
        sh.last_sent_ns
            .fetch_max(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        if sh.interrupted.load(Ordering::Relaxed) {
            break;
        }
    }
}

/// How far behind its schedule a paced stream may run before the blaster
/// says so while it runs: the larger of 50 ms of the rate and one batch per thread.
fn behind_slack(cfg: &BlastConfig) -> u64 {
    let batch = (cfg.batch * cfg.gso.max(1) * cfg.threads.max(1)) as f64;
    (cfg.rate * 0.05).max(batch) as u64
}

/// One progress line of a running blast: the time, the rate reached, and
/// (when `behind` is not 0) that it fell behind the rate asked.
fn progress_line(cfg: &BlastConfig, elapsed: f64, sent: u64, behind: u64) -> String {
    let reached = sent as f64 / elapsed.max(1e-9);
    let mut line = format!("blast: {elapsed:.1} s, {sent} datagrams sent, {reached:.0}/s");
    if cfg.rate > 0.0 {
        let _ = write!(line, " of {:.0}/s asked", cfg.rate);
    }
    if behind > 0 {
        let _ = write!(
            line,
            "; fell behind by {behind} datagrams ({:.0} ms): the sender, not the sink, limits this rate",
            behind as f64 / cfg.rate * 1e3
        );
    }
    line
}

/// Sends the paced stream (from `threads` threads sharing one socket, so
/// that it is one stream from one source), then the sentinel copies.
pub fn blast(cfg: &BlastConfig) -> Result<BlastReport> {
    check(cfg)?;
    let nonce = match cfg.nonce {
        Some(n) => n,
        None => random_nonce()?,
    };
    let socket = Socket::new(
        Domain::for_address(cfg.to),
        Type::DGRAM,
        Some(Protocol::UDP),
    )
    .map_err(Error::socket("socket"))?;
    // Room for bursts while catching up a late deadline.
    let _ = socket.set_send_buffer_size(4 << 20);
    socket
        .connect(&cfg.to.into())
        .map_err(Error::socket("connect"))?;
    let source = socket
        .local_addr()
        .map_err(Error::socket("getsockname"))?
        .as_socket()
        .ok_or_else(|| Error::Config("local address is not IP".into()))?;
    let fd = socket.as_raw_fd();
    let limit = if cfg.rate > 0.0 {
        Some((cfg.rate * cfg.duration.as_secs_f64()).round() as u64)
    } else {
        None
    };
    let sh = Shared::default();
    let start = Instant::now();
    let mut behind_warnings = 0u64;
    std::thread::scope(|s| -> Result<()> {
        let (tx, rx) = mpsc::channel::<()>();
        for t in 0..cfg.threads.max(1) {
            let (sh, tx) = (&sh, tx.clone());
            std::thread::Builder::new()
                .name(format!("bd-blast-{t}"))
                .spawn_scoped(s, move || {
                    send_loop(cfg, fd, nonce, start, limit, sh);
                    drop(tx);
                })
                .map_err(Error::io("spawn sending thread"))?;
        }
        drop(tx);
        // While the threads send: say so as soon as the stream falls
        // behind, and show the rate reached every second of a long run.
        let slack = behind_slack(cfg);
        // A look four times per stream, at least every second, at most every 100 ms.
        let every = (cfg.duration / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
        let mut shown = start;
        while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
            let elapsed = start.elapsed().as_secs_f64();
            let sent = sh.sent.load(Ordering::Relaxed);
            let behind = limit.map_or(0, |l| {
                ((cfg.rate * elapsed) as u64)
                    .min(l)
                    .saturating_sub(sent + slack)
            });
            if cfg.progress && (behind > 0 || shown.elapsed() >= Duration::from_secs(1)) {
                eprintln!("{}", progress_line(cfg, elapsed, sent, behind));
                shown = Instant::now();
            }
            if behind > 0 {
                behind_warnings += 1;
                tracing::debug!(
                    behind,
                    reached = sent as f64 / elapsed,
                    asked = cfg.rate,
                    "sender behind its schedule"
                );
            }
        }
        Ok(())
    })?;
    if let Some(e) = sh.fatal.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(Error::Socket {
            op: "sendmmsg",
            source: e,
        });
    }
    let sent = sh.sent.load(Ordering::Relaxed);
    let calls = sh.calls.load(Ordering::Relaxed);
    let errors = sh.errors.load(Ordering::Relaxed);
    let interrupted_run = sh.interrupted.load(Ordering::Relaxed);
    let sender_limited = sh.sender_limited.load(Ordering::Relaxed);
    let secs = Duration::from_nanos(sh.last_sent_ns.load(Ordering::Relaxed)).as_secs_f64();
    let achieved_rate = if secs > 0.0 { sent as f64 / secs } else { 0.0 };
    if sender_limited {
        tracing::info!(
            sent,
            due = limit.unwrap_or(0),
            asked = cfg.rate,
            achieved = achieved_rate,
            "stream cut at its duration: the sender fell behind the rate asked"
        );
    }
    // The sentinel goes out even after a stop: the sink can still close
    // the books on what was sent.
    std::thread::sleep(cfg.drain.min(Duration::from_millis(if interrupted_run {
        50
    } else {
        u64::MAX
    })));
    for copy in 0..cfg.sentinel_copies {
        if copy > 0 {
            std::thread::sleep(cfg.sentinel_gap);
        }
        let s = Datagram::sentinel(nonce, sent, copy, cfg.sentinel_copies, now_ns());
        if let Err(e) = socket.send(&s) {
            tracing::debug!(error = %e, copy, "sentinel send failed");
        }
    }
    let report = BlastReport {
        to: cfg.to,
        source,
        nonce,
        rate: cfg.rate,
        duration_s: cfg.duration.as_secs_f64(),
        size: cfg.size,
        payload_bytes: cfg.size.saturating_sub(HEADER_LEN),
        threads: cfg.threads.max(1),
        gso: cfg.gso.max(1),
        sent,
        due: limit,
        sender_limited,
        behind_warnings,
        interrupted: interrupted_run,
        send_calls: calls,
        send_errors: errors,
        secs,
        achieved_rate,
        max_late_us: sh.max_late_ns.load(Ordering::Relaxed) as f64 / 1e3,
    };
    tracing::info!(%report, "blast done");
    Ok(report)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn deadlines_are_absolute() {
        let t0 = Instant::now();
        let p = Pacer::new(t0, 1000.0);
        assert_eq!(p.due(0), t0);
        assert_eq!(p.due(1000), t0 + Duration::from_secs(1));
        // Late at k=10: no wait, and k=20 is still due at 20 ms, not 10 ms later.
        let late = t0 + Duration::from_millis(15);
        assert_eq!(p.wait(10, late), Duration::ZERO);
        assert_eq!(p.wait(20, late), Duration::from_millis(5));
    }

    #[test]
    fn unpaced_never_waits() {
        let t0 = Instant::now();
        assert_eq!(Pacer::new(t0, 0.0).wait(1_000_000, t0), Duration::ZERO);
    }
}
