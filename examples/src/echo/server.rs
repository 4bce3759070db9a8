//! The echo server: one thread, one `mio::Poll`, many framed connections.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// How the server frames and buffers.
#[derive(Debug, Clone, Copy)]
pub struct ServerSettings {
    /// The frame layout, including the maximum frame length.
    pub framing: Config,
    /// Bound on bytes queued for one client before the server stops reading
    /// from it.
    pub max_queued: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            framing: Config::u32_be(),
            max_queued: DEFAULT_MAX_QUEUED,
        }
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
    /// Payload bytes echoed.
    pub bytes: u64,
    /// Oversized frames skipped (discard policy only).
    pub discarded: u64,
    /// Times a connection's outgoing queue filled and reading paused.
    pub paused: u64,
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
    pub fn bind(addr: SocketAddr, settings: ServerSettings) -> Result<EchoServer, Error> {
        let poll = Poll::new().map_err(|e| Error::io("creating the poller", e))?;
        let mut listener =
            TcpListener::bind(addr).map_err(|e| Error::io(format!("binding {addr}"), e))?;
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
            match self.poll.poll(&mut events, None) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("polling", e)),
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    WAKER => {}
                    token => self.serve(token),
                }
            }
        }
        info!(clients = self.conns.len(), "server stopping");
        Ok(self.stats.clone())
    }

    fn accept_all(&mut self) {
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
                    self.conns.insert(
                        token,
                        Conn {
                            stream,
                            peer,
                            read_closed: false,
                        },
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: keep serving those we have.
                    warn!(error = %e, "accept failed");
                    return;
                }
            }
        }
    }

    fn serve(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let outcome = conn.drive(&mut self.stats);
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
    }

    fn close(&mut self, token: Token) -> Option<Conn> {
        let mut conn = self.conns.remove(&token)?;
        if let Err(e) = self.poll.registry().deregister(conn.stream.get_mut()) {
            debug!(peer = %conn.peer, error = %e, "deregister failed");
        }
        Some(conn)
    }
}
