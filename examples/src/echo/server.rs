//! The echo server: one thread, one `mio::Poll`, many framed connections.
//!
//! Limits that hold for the whole process, not only per connection:
//!
//! - **File descriptors.** When `accept` fails for want of descriptors
//!   (`EMFILE`, `ENFILE`) or kernel memory, the listener is still readable
//!   but, being edge-triggered, it will not be reported again for the
//!   clients already queued. The server remembers that, and accepts again
//!   as soon as a connection closes, or after [`ACCEPT_RETRY`] otherwise.
//! - **Memory.** Every connection's read buffer (a partial frame) and
//!   outgoing queue count against one budget; over it, the connection
//!   holding the most is closed, logged and counted, until the total is
//!   within the budget again.
//! - **Idle connections.** A connection that moves no byte in either
//!   direction for the idle timeout (one that never sends, stops halfway
//!   through a header or a frame, or stops reading its echoes) is closed and
//!   counted.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use framing::nonblocking::{DEFAULT_MAX_QUEUED, FramedStream, ReadStatus};
use framing::{Config, Error as FramingError};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use serde::Serialize;
use tracing::{debug, info, warn};

use crate::Error;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CLIENT: usize = 2;

/// Reasons kept for the report; older ones are only counted.
const KEPT_REASONS: usize = 32;

/// Default budget for the bytes all connections buffer together: 64 MiB.
pub const DEFAULT_MAX_BUFFERED_TOTAL: usize = 64 * 1024 * 1024;

/// Default idle timeout: a connection that moves no byte for this long is
/// closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// After `accept` ran out of descriptors, how long to wait for a connection
/// to close before trying again anyway (descriptors may be freed elsewhere
/// in the process, or by other processes for `ENFILE`).
pub const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Default listen backlog: clients that connect while every descriptor is
/// in use wait here (Linux caps it at `net.core.somaxconn`, 4096 by
/// default); past it their SYNs are dropped and they wait for
/// retransmission (1 s, 3 s, 7 s...). The standard library's 128 is small
/// for a server meant for many clients.
pub const DEFAULT_BACKLOG: u32 = 1024;

/// A read buffer larger than this is given back once it is empty, so that a
/// connection that received one large frame does not hold it while idle.
const KEEP_READ_BUFFER: usize = 1024 * 1024;

/// How the server frames and buffers.
#[derive(Debug, Clone, Copy)]
pub struct ServerSettings {
    /// The frame layout, including the maximum frame length.
    pub framing: Config,
    /// Bound on bytes queued for one client before the server stops reading
    /// from it; at least 1.
    pub max_queued: usize,
    /// Bound on the bytes every connection holds together (read buffers with
    /// partial frames, and outgoing queues). Over it, the connection holding
    /// the most is closed. At least twice the maximum frame length, since a
    /// read buffer may double while it completes a frame.
    pub max_buffered_total: usize,
    /// A connection that moves no byte in either direction for this long is
    /// closed. Above zero.
    pub idle_timeout: Duration,
    /// The listen backlog (connections the kernel completes before they are
    /// accepted), 1 to 65535.
    pub backlog: u32,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings::for_framing(Config::u32_be())
    }
}

impl ServerSettings {
    /// Defaults for this frame layout: the memory budget is
    /// [`DEFAULT_MAX_BUFFERED_TOTAL`] or four maximum frames, whichever is
    /// larger.
    pub fn for_framing(framing: Config) -> ServerSettings {
        ServerSettings {
            framing,
            max_queued: DEFAULT_MAX_QUEUED,
            max_buffered_total: DEFAULT_MAX_BUFFERED_TOTAL
                .max(framing.max_frame_len().saturating_mul(4)),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            backlog: DEFAULT_BACKLOG,
        }
    }

    /// The smallest memory budget that can hold one frame of the maximum
    /// length while it arrives.
    pub fn min_buffered_total(&self) -> usize {
        self.framing.max_frame_len().saturating_mul(2)
    }

    /// Checks that the settings can work.
    ///
    /// # Errors
    /// [`Error::Settings`] naming the value and what it must be.
    pub fn validate(&self) -> Result<(), Error> {
        if self.max_queued == 0 {
            return Err(Error::Settings(
                "max queued bytes (--max-queued) is 0: at least 1 byte must be allowed, or no echo could ever be queued"
                    .to_owned(),
            ));
        }
        if self.max_buffered_total < self.min_buffered_total() {
            return Err(Error::Settings(format!(
                "max buffered total (--max-buffered-total) of {} bytes is below {} bytes, twice the maximum frame length of {}: \
                 a single frame of the maximum length could not be received",
                self.max_buffered_total,
                self.min_buffered_total(),
                self.framing.max_frame_len()
            )));
        }
        if !(1..=65535).contains(&self.backlog) {
            return Err(Error::Settings(format!(
                "listen backlog (--backlog) {} is out of range: expected 1 to 65535",
                self.backlog
            )));
        }
        if self.idle_timeout.is_zero() {
            return Err(Error::Settings(
                "idle timeout (--idle-timeout) is 0: every connection would be closed at once"
                    .to_owned(),
            ));
        }
        Ok(())
    }
}

/// A client the server dropped, and why.
#[derive(Debug, Clone, Serialize)]
pub struct DroppedClient {
    /// The client's address.
    pub peer: SocketAddr,
    /// The error that ended it, as logged.
    pub reason: String,
}

/// What the server did, for reports.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections that closed cleanly after every echo was written.
    pub completed: u64,
    /// Connections dropped for a bad frame or a socket error.
    pub dropped: u64,
    /// The first reasons for drops (at most 32).
    pub dropped_clients: Vec<DroppedClient>,
    /// Frames echoed.
    pub frames: u64,
    /// Payload bytes echoed (JSON `payload_bytes`).
    #[serde(rename = "payload_bytes")]
    pub bytes: u64,
    /// Oversized frames skipped (discard policy only).
    pub discarded: u64,
    /// Times a connection's outgoing queue filled and reading paused.
    pub paused: u64,
    /// Connections closed because the bytes buffered by all connections went
    /// over the memory budget (each time the one holding the most).
    pub over_budget: u64,
    /// Most bytes all connections held at once, as accounted after each
    /// readiness event (read buffers and outgoing queues).
    pub peak_buffered_bytes: u64,
    /// Connections closed for moving no byte within the idle timeout.
    pub timed_out: u64,
    /// Times `accept` ran out of file descriptors (or kernel memory) and the
    /// server stopped accepting until a connection closed.
    pub accept_exhausted: u64,
    /// Failed `accept` calls while out of descriptors, retries included.
    pub accept_failures: u64,
}

/// Stops a running [`EchoServer`] from another thread.
#[derive(Debug, Clone)]
pub struct StopHandle {
    flag: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl StopHandle {
    /// Asks the server to return from [`EchoServer::run`].
    ///
    /// # Errors
    /// The waker's I/O error.
    pub fn stop(&self) -> io::Result<()> {
        self.flag.store(true, Ordering::SeqCst);
        self.waker.wake()
    }
}

/// One client connection.
struct Conn {
    stream: FramedStream<TcpStream>,
    peer: SocketAddr,
    /// The client shut down its sending side; finish writing, then close.
    read_closed: bool,
    /// Bytes this connection holds, as last counted in the budget.
    held: usize,
    /// Bytes moved (read + written) when progress was last seen, and when.
    moved: u64,
    last_progress: Instant,
}

impl Conn {
    /// Bytes the connection holds in memory: its read buffer and its
    /// outgoing queue.
    fn holding(&mut self) -> usize {
        self.stream.decoder().capacity() + self.stream.outbox().queued_bytes()
    }

    fn moved(&self) -> u64 {
        self.stream.bytes_read() + self.stream.bytes_written()
    }
}

/// A non-blocking listener on `addr` with this backlog and `SO_REUSEADDR`
/// (as `mio`'s own `bind`, which fixes the backlog at 128).
fn listen(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    // socket2 sets close-on-exec itself.
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_nonblocking(true)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(TcpListener::from_std(socket.into()))
}

/// Whether a connection whose last byte moved at `last_progress` has been
/// idle for `timeout` at `now`.
fn is_idle(last_progress: Instant, now: Instant, timeout: Duration) -> bool {
    now.saturating_duration_since(last_progress) >= timeout
}

/// How often idle connections are looked for: a quarter of the timeout,
/// between 10 ms and 1 s, so a connection is closed within 25 % (or 1 s)
/// past its timeout and the scan costs little.
fn sweep_interval(idle_timeout: Duration) -> Duration {
    (idle_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// `accept` errors that concern one connection only (it was aborted before
/// being accepted): go on accepting the next.
fn per_connection(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    ) || matches!(err.raw_os_error(), Some(libc::EPROTO | libc::EPERM))
}

/// Everything one call to [`Conn::drive`] can end with.
enum Drive {
    /// Waiting for the next readiness event.
    Wait,
    /// Client closed and every echo was written: close cleanly.
    Finished,
}

impl Conn {
    /// Writes what is queued, reads what arrived, echoes it, until the
    /// socket would block in the direction that matters.
    fn drive(&mut self, stats: &mut ServerStats) -> Result<Drive, FramingError> {
        loop {
            let drained = self.stream.write_ready()?;
            if !drained && self.stream.outbox().is_full() {
                // Backpressure: read nothing more until the client reads.
                return Ok(Drive::Wait);
            }
            if self.read_closed {
                return Ok(if drained {
                    Drive::Finished
                } else {
                    Drive::Wait
                });
            }
            let status = self.stream.read_frames(|frame, outbox| {
                stats.frames += 1;
                stats.bytes += frame.len() as u64;
                outbox.send(frame)
            });
            match status {
                Ok(ReadStatus::Open) => {
                    self.stream.write_ready()?;
                    return Ok(Drive::Wait);
                }
                Ok(ReadStatus::Paused) => stats.paused += 1,
                Ok(ReadStatus::Closed) => self.read_closed = true,
                Err(FramingError::Discarded { declared, limit }) => {
                    stats.discarded += 1;
                    warn!(peer = %self.peer, declared, limit, "skipped an oversized frame");
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// A framed echo server on one `mio` event loop.
pub struct EchoServer {
    poll: Poll,
    listener: TcpListener,
    local_addr: SocketAddr,
    conns: HashMap<Token, Conn>,
    next_token: usize,
    settings: ServerSettings,
    stop: StopHandle,
    stats: ServerStats,
    /// Bytes all connections hold, the sum of their `held`.
    buffered_total: usize,
    /// Set when `accept` ran out of descriptors: the listener may hold
    /// clients no event will announce. The time is when to retry anyway.
    accept_blocked: Option<Instant>,
    /// A connection closed since the last accept attempt.
    closed_since_accept: bool,
    next_sweep: Instant,
}

impl std::fmt::Debug for EchoServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EchoServer")
            .field("local_addr", &self.local_addr)
            .field("clients", &self.conns.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl EchoServer {
    /// Binds `addr` (port 0 picks a free port; see
    /// [`local_addr`](EchoServer::local_addr)).
    ///
    /// # Errors
    /// Binding or registering the listener failed.
    /// [`ServerSettings::validate`]'s errors too.
    pub fn bind(addr: SocketAddr, settings: ServerSettings) -> Result<EchoServer, Error> {
        settings.validate()?;
        let poll = Poll::new().map_err(|e| Error::io("creating the poller", e))?;
        let mut listener = listen(addr, settings.backlog)
            .map_err(|e| Error::io(format!("listening on {addr}"), e))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| Error::io("reading the bound address", e))?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(|e| Error::io("registering the listener", e))?;
        let waker =
            Waker::new(poll.registry(), WAKER).map_err(|e| Error::io("creating the waker", e))?;
        Ok(EchoServer {
            poll,
            listener,
            local_addr,
            conns: HashMap::new(),
            next_token: FIRST_CLIENT,
            settings,
            stop: StopHandle {
                flag: Arc::new(AtomicBool::new(false)),
                waker: Arc::new(waker),
            },
            stats: ServerStats::default(),
            buffered_total: 0,
            accept_blocked: None,
            closed_since_accept: false,
            next_sweep: Instant::now() + sweep_interval(settings.idle_timeout),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that stops [`run`](EchoServer::run) from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// What the server has done so far.
    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }

    /// Serves until stopped. Errors from one client drop that client only.
    ///
    /// # Errors
    /// Only failures of the event loop itself (polling).
    pub fn run(&mut self) -> Result<ServerStats, Error> {
        let mut events = Events::with_capacity(1024);
        while !self.stop.flag.load(Ordering::SeqCst) {
            let timeout = self
                .next_deadline()
                .saturating_duration_since(Instant::now());
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("polling", e)),
            }
            let now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(now),
                    WAKER => {}
                    token => self.serve(token, now),
                }
            }
            if now >= self.next_sweep {
                self.close_idle(now);
                self.next_sweep = now + sweep_interval(self.settings.idle_timeout);
            }
            if let Some(retry_at) = self.accept_blocked
                && (self.closed_since_accept || now >= retry_at)
            {
                self.accept_all(now);
            }
        }
        info!(clients = self.conns.len(), "server stopping");
        Ok(self.stats.clone())
    }

    /// When the loop must wake up without an event: the next idle sweep, or
    /// the next accept retry.
    fn next_deadline(&self) -> Instant {
        match self.accept_blocked {
            Some(retry_at) => retry_at.min(self.next_sweep),
            None => self.next_sweep,
        }
    }

    /// Accepts until the listener would block. Out of descriptors, it marks
    /// the listener blocked (see the module docs) and returns.
    fn accept_all(&mut self, now: Instant) {
        self.closed_since_accept = false;
        loop {
            match self.listener.accept() {
                Ok((mut stream, peer)) => {
                    if let Err(e) = stream.set_nodelay(true) {
                        debug!(%peer, error = %e, "could not set TCP_NODELAY");
                    }
                    let token = Token(self.next_token);
                    self.next_token += 1;
                    if let Err(e) = self.poll.registry().register(
                        &mut stream,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        warn!(%peer, error = %e, "could not register a client; closing it");
                        continue;
                    }
                    self.stats.accepted += 1;
                    debug!(%peer, "client connected");
                    let stream = FramedStream::with_max_queued(
                        stream,
                        self.settings.framing,
                        self.settings.max_queued,
                    );
                    let mut conn = Conn {
                        stream,
                        peer,
                        read_closed: false,
                        held: 0,
                        moved: 0,
                        last_progress: now,
                    };
                    conn.held = conn.holding();
                    self.buffered_total += conn.held;
                    self.conns.insert(token, conn);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.accept_blocked.take().is_some() {
                        info!(
                            clients = self.conns.len(),
                            failed_accepts = self.stats.accept_failures,
                            "accepting again: every queued client has been accepted"
                        );
                    }
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if per_connection(&e) => {
                    debug!(error = %e, "a client went away before it was accepted");
                }
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM: the queued clients
                    // stay queued; no event will say so, so remember it.
                    self.stats.accept_failures += 1;
                    if self.accept_blocked.is_none() {
                        self.stats.accept_exhausted += 1;
                        warn!(
                            error = %e,
                            clients = self.conns.len(),
                            times = self.stats.accept_exhausted,
                            "accept failed: not accepting until a connection closes \
                             (queued clients wait in the listen backlog)"
                        );
                    }
                    self.accept_blocked = Some(now + ACCEPT_RETRY);
                    return;
                }
            }
        }
    }

    fn serve(&mut self, token: Token, now: Instant) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let outcome = conn.drive(&mut self.stats);
        conn.stream.release_read_buffer(KEEP_READ_BUFFER);
        let moved = conn.moved();
        if moved != conn.moved {
            conn.moved = moved;
            conn.last_progress = now;
        }
        let held = conn.holding();
        self.buffered_total = self.buffered_total - conn.held + held;
        conn.held = held;
        self.stats.peak_buffered_bytes = self
            .stats
            .peak_buffered_bytes
            .max(self.buffered_total as u64);
        match outcome {
            Ok(Drive::Wait) => {}
            Ok(Drive::Finished) => {
                self.stats.completed += 1;
                if let Some(conn) = self.close(token) {
                    debug!(peer = %conn.peer, "client finished");
                }
            }
            Err(e) => {
                self.stats.dropped += 1;
                if let Some(conn) = self.close(token) {
                    warn!(peer = %conn.peer, reason = %e, "dropping client");
                    if self.stats.dropped_clients.len() < KEPT_REASONS {
                        self.stats.dropped_clients.push(DroppedClient {
                            peer: conn.peer,
                            reason: e.to_string(),
                        });
                    }
                }
            }
        }
        self.enforce_budget();
    }

    /// While the connections hold more than the budget, closes the one
    /// holding the most (the oldest of equals).
    fn enforce_budget(&mut self) {
        while self.buffered_total > self.settings.max_buffered_total {
            let Some(token) = self
                .conns
                .iter()
                .max_by_key(|(token, conn)| (conn.held, std::cmp::Reverse(token.0)))
                .map(|(token, _)| *token)
            else {
                return;
            };
            let before = self.buffered_total;
            if let Some(conn) = self.close(token) {
                self.stats.over_budget += 1;
                warn!(
                    peer = %conn.peer,
                    held = conn.held,
                    total = before,
                    budget = self.settings.max_buffered_total,
                    times = self.stats.over_budget,
                    "over the memory budget: closed the connection holding the most bytes"
                );
            }
        }
    }

    /// Closes every connection that moved no byte for the idle timeout.
    fn close_idle(&mut self, now: Instant) {
        let timeout = self.settings.idle_timeout;
        let idle: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, conn)| is_idle(conn.last_progress, now, timeout))
            .map(|(token, _)| *token)
            .collect();
        if idle.is_empty() {
            return;
        }
        for token in &idle {
            if let Some(conn) = self.close(*token) {
                self.stats.timed_out += 1;
                debug!(peer = %conn.peer, buffered = conn.stream.decoder().buffered(), "closed an idle client");
            }
        }
        info!(
            closed = idle.len(),
            total = self.stats.timed_out,
            timeout_ms = timeout.as_millis() as u64,
            "closed idle connections: no byte in either direction within the idle timeout"
        );
    }

    fn close(&mut self, token: Token) -> Option<Conn> {
        let mut conn = self.conns.remove(&token)?;
        self.buffered_total -= conn.held;
        self.closed_since_accept = true;
        if let Err(e) = self.poll.registry().deregister(conn.stream.get_mut()) {
            debug!(peer = %conn.peer, error = %e, "deregister failed");
        }
        Some(conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_cannot_work_are_refused_with_the_value() {
        let ok = ServerSettings::default();
        assert!(ok.validate().is_ok());

        let zero_queue = ServerSettings {
            max_queued: 0,
            ..ok
        };
        let err = zero_queue.validate().unwrap_err().to_string();
        assert!(
            err.contains("max queued bytes (--max-queued) is 0"),
            "{err}"
        );

        let framing = Config::u32_be()
            .to_builder()
            .max_frame_len(1 << 20)
            .build()
            .unwrap();
        let small_budget = ServerSettings {
            max_buffered_total: (2 << 20) - 1,
            ..ServerSettings::for_framing(framing)
        };
        let err = small_budget.validate().unwrap_err().to_string();
        assert!(err.contains("2097151 bytes is below 2097152"), "{err}");

        let no_idle = ServerSettings {
            idle_timeout: Duration::ZERO,
            ..ok
        };
        assert!(no_idle.validate().is_err());
    }

    #[test]
    fn the_default_budget_holds_four_maximum_frames() {
        let framing = Config::u32_be()
            .to_builder()
            .max_frame_len(64 << 20)
            .build()
            .unwrap();
        let settings = ServerSettings::for_framing(framing);
        assert_eq!(settings.max_buffered_total, 256 << 20);
        assert!(settings.validate().is_ok());
        assert_eq!(
            ServerSettings::default().max_buffered_total,
            DEFAULT_MAX_BUFFERED_TOTAL
        );
    }

    #[test]
    fn idle_means_no_progress_for_the_whole_timeout() {
        let t0 = Instant::now();
        let timeout = Duration::from_millis(300);
        assert!(!is_idle(t0, t0, timeout));
        assert!(!is_idle(
            t0,
            t0 + timeout - Duration::from_nanos(1),
            timeout
        ));
        assert!(is_idle(t0, t0 + timeout, timeout));
        // A clock reading before the last progress is not idle.
        assert!(!is_idle(t0 + timeout, t0, timeout));
    }

    #[test]
    fn sweeps_are_frequent_enough_and_not_too_frequent() {
        assert_eq!(
            sweep_interval(Duration::from_millis(1)),
            Duration::from_millis(10)
        );
        assert_eq!(
            sweep_interval(Duration::from_millis(400)),
            Duration::from_millis(100)
        );
        assert_eq!(
            sweep_interval(Duration::from_secs(3600)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn only_aborted_connections_let_accept_go_on() {
        let aborted = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert!(per_connection(&aborted));
        assert!(per_connection(&io::Error::from_raw_os_error(libc::EPROTO)));
        for exhausted in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert!(!per_connection(&io::Error::from_raw_os_error(exhausted)));
        }
    }
}
