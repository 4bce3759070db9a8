//! The sending side: `blast`, a paced UDP load generator.
//!
//! Datagram `k` is due at `start + k / rate` (an absolute deadline, so
//! sleeping late never accumulates drift: the next batch simply catches up).
//! Each batch goes out with one `sendmmsg`; every datagram carries its seq
//! and send time ([`crate::wire`]). After the stream and a drain pause the
//! sentinel, repeated, carries the number of datagrams the kernel accepted.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use socket2::{Domain, Protocol, Socket, Type};

use crate::error::{Error, Result};
use crate::mmsg::{SLOT, SendBatch, interrupted};
use crate::wire::{Datagram, HEADER_LEN};

/// Absolute-deadline pacing, sans-IO: plain numbers in, instants out.
#[derive(Debug, Clone, Copy)]
pub struct Pacer {
    start: Instant,
    rate: f64,
}

impl Pacer {
    /// Datagrams at `rate` per second from `start`; `rate <= 0` means unpaced.
    pub fn new(start: Instant, rate: f64) -> Pacer {
        Pacer { start, rate }
    }

    /// When datagram `k` (0-based) is due.
    pub fn due(&self, k: u64) -> Instant {
        if self.rate <= 0.0 {
            self.start
        } else {
            self.start + Duration::from_secs_f64(k as f64 / self.rate)
        }
    }

    /// How long to wait at `now` before sending datagram `k` (zero when due or late).
    pub fn wait(&self, k: u64, now: Instant) -> Duration {
        self.due(k).saturating_duration_since(now)
    }
}

/// How a blast is set up.
#[derive(Debug, Clone)]
pub struct BlastConfig {
    /// Where to send.
    pub to: SocketAddr,
    /// Datagrams per second; 0 sends as fast as the kernel takes them.
    pub rate: f64,
    /// Bytes per datagram, header included.
    pub size: usize,
    /// How long to send (at a set rate, exactly `rate * duration` datagrams).
    pub duration: Duration,
    /// Datagrams per `sendmmsg`.
    pub batch: usize,
    /// Pause between the last datagram and the first sentinel copy.
    pub drain: Duration,
    /// Sentinel copies.
    pub sentinel_copies: u32,
    /// Gap between sentinel copies.
    pub sentinel_gap: Duration,
}

impl Default for BlastConfig {
    fn default() -> BlastConfig {
        BlastConfig {
            to: SocketAddr::from(([127, 0, 0, 1], 9)),
            rate: 100_000.0,
            size: 64,
            duration: Duration::from_secs(1),
            batch: 32,
            drain: Duration::from_millis(100),
            sentinel_copies: 5,
            sentinel_gap: Duration::from_millis(10),
        }
    }
}

/// What a blast did.
#[derive(Debug, Clone, Serialize)]
pub struct BlastReport {
    /// Destination.
    pub to: SocketAddr,
    /// Offered rate (0: unpaced).
    pub rate: f64,
    /// Bytes per datagram.
    pub size: usize,
    /// Datagrams the kernel accepted (the sentinel's total).
    pub sent: u64,
    /// `sendmmsg` calls.
    pub send_calls: u64,
    /// Send calls that failed (e.g. ECONNREFUSED: nobody listening).
    pub send_errors: u64,
    /// First to last datagram, seconds.
    pub secs: f64,
    /// sent / secs.
    pub achieved_rate: f64,
    /// Largest lateness of a batch against its deadline, µs.
    pub max_late_us: f64,
}

impl std::fmt::Display for BlastReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "blast to {}: {} datagrams of {} B in {:.3} s = {:.0}/s (offered {}), {} sendmmsg calls, {} errors, max lateness {:.0} us",
            self.to,
            self.sent,
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
        )
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Sends the paced stream, then the sentinel copies.
pub fn blast(cfg: &BlastConfig) -> Result<BlastReport> {
    if !(HEADER_LEN..=SLOT).contains(&cfg.size) {
        return Err(Error::DatagramSize {
            size: cfg.size,
            min: HEADER_LEN,
            max: SLOT,
        });
    }
    if cfg.batch == 0 || !cfg.rate.is_finite() || cfg.rate < 0.0 {
        return Err(Error::Config(format!(
            "--batch {} / --rate {} out of range",
            cfg.batch, cfg.rate
        )));
    }
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
    let fd = socket.as_raw_fd();
    let mut batch = SendBatch::new(cfg.batch, cfg.size);
    let limit = if cfg.rate > 0.0 {
        Some((cfg.rate * cfg.duration.as_secs_f64()).round() as u64)
    } else {
        None
    };
    let start = Instant::now();
    let end = start + cfg.duration;
    let pacer = Pacer::new(start, cfg.rate);
    let (mut sent, mut calls, mut errors) = (0u64, 0u64, 0u64);
    let mut max_late = Duration::ZERO;
    let mut last_sent_at = start;
    loop {
        let want = match limit {
            Some(l) if sent >= l => break,
            Some(l) => (l - sent).min(cfg.batch as u64) as usize,
            None if Instant::now() >= end => break,
            None => cfg.batch,
        };
        let now = Instant::now();
        let wait = pacer.wait(sent + want as u64 - 1, now);
        if !wait.is_zero() {
            std::thread::sleep(wait);
        } else {
            max_late =
                max_late.max(now.saturating_duration_since(pacer.due(sent + want as u64 - 1)));
        }
        let stamp = now_ns();
        for i in 0..want {
            Datagram::emit_data(batch.slot(i), sent + i as u64, stamp);
        }
        let mut from = 0;
        while from < want {
            calls += 1;
            match batch.send(fd, from, want) {
                Ok(n) => {
                    from += n;
                    sent += n as u64;
                }
                Err(e) if interrupted(&e) => {}
                Err(e) => {
                    errors += 1;
                    tracing::debug!(error = %e, "sendmmsg");
                    if errors > 1000 && sent == 0 {
                        return Err(Error::Socket {
                            op: "sendmmsg",
                            source: e,
                        });
                    }
                    break;
                }
            }
            // After a partial send, datagram i still carries seq sent + (i - from).
        }
        last_sent_at = Instant::now();
    }
    let secs = last_sent_at.duration_since(start).as_secs_f64();
    std::thread::sleep(cfg.drain);
    for copy in 0..cfg.sentinel_copies {
        if copy > 0 {
            std::thread::sleep(cfg.sentinel_gap);
        }
        let s = Datagram::sentinel(sent, copy, cfg.sentinel_copies, now_ns());
        if let Err(e) = socket.send(&s) {
            tracing::debug!(error = %e, copy, "sentinel send failed");
        }
    }
    let report = BlastReport {
        to: cfg.to,
        rate: cfg.rate,
        size: cfg.size,
        sent,
        send_calls: calls,
        send_errors: errors,
        secs,
        achieved_rate: if secs > 0.0 { sent as f64 / secs } else { 0.0 },
        max_late_us: max_late.as_secs_f64() * 1e6,
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
