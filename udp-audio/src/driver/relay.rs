//! The blocking impairment relay: the driver around [`Impairer`], the sans-IO core in
//! [`crate::core::impair`].
//!
//! ```text
//!  sender ──UDP──▶ [listen] Relay ──(Impairer decides a Fate)──▶ timer queue ──UDP──▶ [forward]
//! ```
//!
//! One `std::net::UdpSocket` to receive, one to send, and a binary heap of pending copies it
//! releases at their times; it reads the monotonic clock and passes the time to the core.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::core::impair::{ImpairConfig, ImpairStats, Impairer};
use crate::error::{Error, Result};

/// Most datagram copies [`Relay`] holds at once; more are dropped and counted.
pub const MAX_PENDING: usize = 65_536;
/// Most payload bytes [`Relay`] holds at once (64 MiB); more are dropped and counted.
pub const MAX_PENDING_BYTES: usize = 64 << 20;
/// Receive and send buffer size [`Relay::bind`] asks for, so the relay is not a loss source.
pub const SOCKET_BUFFER: usize = 4 << 20;
/// Longest wait on the socket before [`Relay::run`] looks at its `stop` flag again.
pub const STOP_POLL: Duration = Duration::from_millis(50);
/// Receive buffer: one more than the largest UDP payload, so nothing is ever truncated.
const RECV_BUF: usize = 65_536;

/// One copy waiting in the relay's timer queue; the heap's top is the earliest `(at_us, order)`.
#[derive(Debug)]
struct Pending {
    at_us: u64,
    /// Push order, so equal times leave in arrival order.
    order: u64,
    data: Vec<u8>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.at_us, self.order) == (other.at_us, other.order)
    }
}

impl Eq for Pending {}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pending {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap.
        (other.at_us, other.order).cmp(&(self.at_us, self.order))
    }
}

/// The blocking impairment relay: receives on `listen`, forwards to `forward` from a second
/// socket (bound to the unspecified address, port 0) as its [`Impairer`] decides.
///
/// Sending from a separate socket means whatever the receiver sends back to the relay's
/// source address is never relayed: the relay is one-way.
#[derive(Debug)]
pub struct Relay {
    socket: UdpSocket,
    sender: UdpSocket,
    local: SocketAddr,
    forward: SocketAddr,
    impairer: Impairer,
}

fn udp_socket(addr: SocketAddr, what: &str) -> Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let context = || format!("{what} on {addr}");
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| Error::io(context(), e))?;
    // Best effort: a smaller grant only makes the relay a possible loss source, and the log
    // says so.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    let granted_rcv = socket.recv_buffer_size().unwrap_or(0);
    let granted_snd = socket.send_buffer_size().unwrap_or(0);
    // Linux doubles the value set and caps it at net.core.rmem_max / wmem_max first.
    info!(
        %addr,
        requested = SOCKET_BUFFER,
        granted_rcvbuf = granted_rcv,
        granted_sndbuf = granted_snd,
        "{what}: SO_RCVBUF / SO_SNDBUF"
    );
    socket
        .bind(&addr.into())
        .map_err(|e| Error::io(context(), e))?;
    Ok(socket.into())
}

impl Relay {
    /// Validates `cfg`, binds the listening socket on `listen` and a sending socket for
    /// `forward`, each asking for [`SOCKET_BUFFER`] bytes of `SO_RCVBUF` and `SO_SNDBUF`
    /// (granted sizes are logged).
    pub fn bind(listen: SocketAddr, forward: SocketAddr, cfg: ImpairConfig) -> Result<Self> {
        let impairer = Impairer::new(cfg)?;
        let socket = udp_socket(listen, "bind impairment relay")?;
        socket
            .set_nonblocking(true)
            .map_err(|e| Error::io(format!("set non-blocking on {listen}"), e))?;
        let local = socket
            .local_addr()
            .map_err(|e| Error::io(format!("local address of relay bound on {listen}"), e))?;
        let unspecified: SocketAddr = if forward.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sender = udp_socket(unspecified, "bind relay sending socket")?;
        Ok(Relay {
            socket,
            sender,
            local,
            forward,
            impairer,
        })
    }

    /// The address the relay listens on (with the port the OS chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Relays until `idle` passes with nothing received and nothing pending (`None`: forever)
    /// or `stop` is set, and returns the stats.
    ///
    /// Copies are released from a timer queue at their times; between releases the thread
    /// waits on the socket until the next release is due (with `ppoll` on Linux, which has
    /// microsecond resolution, unlike `SO_RCVTIMEO`), at most [`STOP_POLL`] so that `stop` is
    /// noticed. A datagram arriving when the queue cannot take two more copies or 2 × its
    /// size more bytes is dropped and counted in `overflow_dropped`. At stop, queued copies
    /// are discarded and counted in `discarded_at_stop`.
    pub fn run(mut self, idle: Option<Duration>, stop: &AtomicBool) -> Result<ImpairStats> {
        let start = Instant::now();
        let now_us = || start.elapsed().as_micros() as u64;
        let idle_us = idle.map(|d| d.as_micros() as u64);
        let mut queue: BinaryHeap<Pending> = BinaryHeap::new();
        let mut queued_bytes = 0usize;
        let mut pushed = 0u64;
        let mut last_rx_us = 0u64;
        let mut buf = vec![0u8; RECV_BUF];
        info!(listen = %self.local, forward = %self.forward, "impairment relay running: {}", self.impairer.config());

        loop {
            if stop.load(AtomicOrdering::Relaxed) {
                let left = queue.len() as u64;
                if left > 0 {
                    self.impairer.on_discarded(left);
                }
                break;
            }
            let now = now_us();
            while queue.peek().is_some_and(|p| p.at_us <= now) {
                let Some(copy) = queue.pop() else { break };
                queued_bytes -= copy.data.len();
                self.send(&copy);
            }
            if queue.is_empty()
                && idle_us.is_some_and(|idle| now.saturating_sub(last_rx_us) >= idle)
            {
                break;
            }

            match self.socket.recv_from(&mut buf) {
                Ok((len, from)) => {
                    let now = now_us();
                    last_rx_us = now;
                    if queue.len() + 2 > MAX_PENDING || queued_bytes + 2 * len > MAX_PENDING_BYTES {
                        self.impairer.on_overflow();
                        debug!(%from, len, queued = queue.len(), queued_bytes, "queue full: dropped");
                        continue;
                    }
                    let fate = self.impairer.on_datagram(now);
                    if fate.is_dropped() {
                        debug!(%from, len, now_us = now, "lost");
                    }
                    for at_us in fate {
                        debug!(%from, len, now_us = now, at_us, "scheduled");
                        queued_bytes += len;
                        queue.push(Pending {
                            at_us,
                            order: pushed,
                            data: buf[..len].to_vec(),
                        });
                        pushed += 1;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut wait_us = STOP_POLL.as_micros() as u64;
                    if let Some(next) = queue.peek() {
                        wait_us = wait_us.min(next.at_us.saturating_sub(now));
                    } else if let Some(idle) = idle_us {
                        wait_us = wait_us.min((last_rx_us + idle).saturating_sub(now));
                    }
                    if wait_us > 0 {
                        wait_readable(&self.socket, Duration::from_micros(wait_us)).map_err(
                            |e| Error::io(format!("wait for datagrams on {}", self.local), e),
                        )?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(format!("receive on {}", self.local), e)),
            }
        }

        let stats = self.impairer.stats().clone();
        // The report itself is the caller's to print, once.
        debug!(
            received = stats.received,
            dropped = stats.dropped,
            overflow_dropped = stats.overflow_dropped,
            forwarded = stats.forwarded,
            duplicated = stats.duplicated,
            reordered = stats.reordered,
            late = stats.late,
            send_failed = stats.send_failed,
            discarded_at_stop = stats.discarded_at_stop,
            "impairment relay finished"
        );
        Ok(stats)
    }

    /// Sends one copy; a failure is counted, logged (the first as a warning), and not fatal.
    fn send(&mut self, copy: &Pending) {
        if let Err(e) = self.sender.send_to(&copy.data, self.forward) {
            self.impairer.on_send_failed();
            if self.impairer.stats().send_failed == 1 {
                warn!(forward = %self.forward, error = %e, "send failed (further failures at debug level)");
            } else {
                debug!(forward = %self.forward, error = %e, "send failed");
            }
        }
    }
}

/// Waits until `socket` is readable or `timeout` passes; `Ok(false)` on timeout or signal.
#[cfg(target_os = "linux")]
fn wait_readable(socket: &UdpSocket, timeout: Duration) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: one valid pollfd, a valid timespec, and a null signal mask (keep the current).
    let rc = unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
    poll_result(rc)
}

/// Waits until `socket` is readable or `timeout` passes; `Ok(false)` on timeout or signal.
/// `poll` counts milliseconds: the wait is rounded up.
#[cfg(all(unix, not(target_os = "linux")))]
fn wait_readable(socket: &UdpSocket, timeout: Duration) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
    // SAFETY: one valid pollfd.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    poll_result(rc)
}

#[cfg(unix)]
fn poll_result(rc: libc::c_int) -> io::Result<bool> {
    if rc >= 0 {
        return Ok(rc > 0);
    }
    let err = io::Error::last_os_error();
    if err.kind() == io::ErrorKind::Interrupted {
        Ok(false)
    } else {
        Err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn udp_with_buffer(addr: &str) -> UdpSocket {
        udp_socket(addr.parse().unwrap(), "test socket").unwrap()
    }

    #[test]
    fn relay_forwards_what_the_model_keeps_over_real_sockets() {
        const N: u32 = 2000;
        let cfg = ImpairConfig {
            loss: 0.1,
            delay_ms: 1.0,
            jitter_ms: 2.0,
            reorder: 0.05,
            duplicate: 0.05,
            seed: 42,
            ..ImpairConfig::default()
        };
        // Loss and duplication do not depend on arrival times: the copies of each numbered
        // datagram can be predicted exactly.
        let mut oracle = Impairer::new(cfg.clone()).unwrap();
        let predicted: Vec<usize> = (0..N).map(|_| oracle.on_datagram(0).len()).collect();

        let receiver = udp_with_buffer("127.0.0.1:0");
        receiver
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let relay = Relay::bind(
            "127.0.0.1:0".parse().unwrap(),
            receiver.local_addr().unwrap(),
            cfg,
        )
        .unwrap();
        let relay_addr = relay.local_addr();
        let stop = Arc::new(AtomicBool::new(false));
        let relay_done = Arc::new(AtomicBool::new(false));

        let relay_thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || relay.run(Some(Duration::from_secs(2)), &stop))
        };
        let receiver_thread = {
            let relay_done = Arc::clone(&relay_done);
            std::thread::spawn(move || {
                let mut counts = vec![0usize; N as usize];
                let mut buf = [0u8; 2048];
                loop {
                    match receiver.recv(&mut buf) {
                        Ok(len) => {
                            assert_eq!(len, 200);
                            let number = u32::from_be_bytes(buf[..4].try_into().unwrap());
                            assert!(buf[4..len].iter().all(|&b| b == number as u8));
                            counts[number as usize] += 1;
                        }
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                            ) =>
                        {
                            // Everything the relay sent was queued on loopback before it
                            // returned: once it is done, an empty socket means the end.
                            if relay_done.load(AtomicOrdering::SeqCst) {
                                return counts;
                            }
                        }
                        Err(e) => panic!("receive: {e}"),
                    }
                }
            })
        };

        let sender = udp_with_buffer("127.0.0.1:0");
        let mut datagram = [0u8; 200];
        for number in 0..N {
            datagram[..4].copy_from_slice(&number.to_be_bytes());
            datagram[4..].fill(number as u8);
            sender.send_to(&datagram, relay_addr).unwrap();
        }

        let stats = relay_thread.join().unwrap().unwrap();
        relay_done.store(true, AtomicOrdering::SeqCst);
        let counts = receiver_thread.join().unwrap();
        let arrived: usize = counts.iter().sum();

        assert_eq!(stats.received, u64::from(N), "{}", stats.report());
        assert_eq!(arrived as u64, stats.forwarded, "{}", stats.report());
        assert_eq!(
            (
                stats.overflow_dropped,
                stats.send_failed,
                stats.discarded_at_stop
            ),
            (0, 0, 0)
        );
        assert_eq!(
            u64::from(N) - stats.dropped + stats.duplicated,
            stats.forwarded
        );
        let lost = counts.iter().filter(|&&c| c == 0).count() as u64;
        assert_eq!(lost, stats.dropped);
        assert_eq!(counts, predicted);
        assert!((150..250).contains(&stats.dropped), "{}", stats.report());
    }

    #[test]
    fn relay_carries_the_largest_datagram_and_stops_on_request() {
        const LARGEST_IPV4: usize = 65_507;
        let receiver = udp_with_buffer("127.0.0.1:0");
        receiver
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let cfg = ImpairConfig {
            delay_ms: 1.0,
            seed: 1,
            ..ImpairConfig::default()
        };
        let relay = Relay::bind(
            "127.0.0.1:0".parse().unwrap(),
            receiver.local_addr().unwrap(),
            cfg,
        )
        .unwrap();
        let relay_addr = relay.local_addr();
        let stop = Arc::new(AtomicBool::new(false));
        let relay_thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || relay.run(None, &stop))
        };
        let sender = udp_with_buffer("127.0.0.1:0");
        let datagram: Vec<u8> = (0..LARGEST_IPV4).map(|i| (i % 251) as u8).collect();
        sender.send_to(&datagram, relay_addr).unwrap();
        let mut buf = vec![0u8; RECV_BUF];
        let len = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], &datagram[..]);
        stop.store(true, AtomicOrdering::Relaxed);
        let stats = relay_thread.join().unwrap().unwrap();
        assert_eq!((stats.received, stats.forwarded, stats.dropped), (1, 1, 0));
        assert_eq!(stats.delay_min_us, 1000);
    }
}
