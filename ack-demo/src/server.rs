//! The blocking server driver: a thread per connection, one shared
//! [`Store`], the [`Receiver`] state machine deciding what to send.
//!
//! Each connection thread takes every frame already received, processes
//! what it delivers (appends to the store), and before it waits for more
//! input makes the batch durable ([`Store::sync`]) and sends the `ACK` that
//! says so. A violation gets `ERROR{code, reason}` and the connection is
//! closed; other sessions are not affected.
//!
//! A `HELLO` claims its session with the client's token
//! ([`Store::claim`]): a wrong token gets `ERROR{TokenMismatch}` and the
//! session's owner is not disturbed. When a connection ends its claim is
//! released ([`Store::release`]), so sessions that never stored a line cost
//! nothing afterwards.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use framing::{Decoder, Encoder};
use serde::Serialize;
use socket2::SockRef;
use tracing::{debug, info, warn};

use crate::error::{Error, ErrorCode};
use crate::framing_config;
use crate::heartbeat::DEAD_AFTER;
use crate::kernel;
use crate::receiver::{Event, Receiver, ReceiverConfig};
use crate::store::{RealDisk, Store, StoreOptions};
use crate::wire::Message;

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// The out file (its journal is `FILE.journal`).
    pub out: PathBuf,
    /// Simulated processing time per message.
    pub process_delay: Duration,
    /// Stop reading a connection after this many messages and close it
    /// (the classic early close that resets the sender).
    pub stop_reading_after: Option<u64>,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// Largest window granted.
    pub max_window: u32,
    /// Print the kernel's view of each connection when it ends.
    pub show_kernel: bool,
    /// Sessions: expiry, limit; and whether to repair a damaged journal
    /// at start (see [`crate::store`]).
    pub store: StoreOptions,
}

impl ServerSettings {
    /// Defaults for everything but the out file.
    pub fn new(out: PathBuf) -> ServerSettings {
        ServerSettings {
            out,
            process_delay: Duration::ZERO,
            stop_reading_after: None,
            heartbeat: Duration::from_secs(1),
            max_window: 4096,
            show_kernel: false,
            store: StoreOptions::default(),
        }
    }
}

/// Server-wide counters.
#[derive(Debug, Default, Serialize)]
pub struct ServerStats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Messages processed (appended) across sessions, this run.
    pub processed: AtomicU64,
    /// Sessions closed with `CLOSE_ACK`.
    pub closed_sessions: AtomicU64,
    /// Connections ended by a protocol violation.
    pub violations: AtomicU64,
    /// Connections ended by silence (heartbeat).
    pub silent: AtomicU64,
}

/// A running server; see the module docs.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    store: Arc<Shared>,
    settings: ServerSettings,
    stats: Arc<ServerStats>,
    stop: Arc<AtomicBool>,
}

/// The store every connection shares, and the group commit over it.
///
/// A connection that needs its lines durable takes the lead when no commit
/// is out: it takes *every* session's pending lines into one commit
/// ([`Store::begin_commit`]), runs its I/O without holding the store, so
/// that other connections go on appending, hands it back and wakes
/// everyone. A connection that finds a commit out waits for it; if its
/// lines were not in it, the next leader takes them with everybody else's.
/// One commit (one fsync's latency) thus serves every session with lines
/// pending.
#[derive(Debug)]
struct Shared {
    store: Mutex<Store>,
    committed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Store> {
        // A connection thread that panicked cannot leave the store half
        // updated in a way later syncs would miss: keep serving.
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Returns once every line of `session` appended so far is durable,
    /// with the store locked.
    fn durable_through(&self, session: u64) -> Result<MutexGuard<'_, Store>, Error> {
        let mut store = self.lock();
        loop {
            if store.durable(session).processed >= store.appended(session) {
                return Ok(store);
            }
            if store.commit_in_flight() {
                store = self
                    .committed
                    .wait(store)
                    .unwrap_or_else(|p| p.into_inner());
                continue;
            }
            let Some(mut commit) = store.begin_commit()? else {
                return Ok(store);
            };
            drop(store);
            commit.run();
            store = self.lock();
            let result = store.finish_commit(commit);
            self.committed.notify_all();
            result?;
        }
    }
}

/// Stops a server's accept loop from another thread.
#[derive(Debug, Clone)]
pub struct StopHandle {
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
}

impl StopHandle {
    /// Makes [`Server::run`] return (connections already served finish on
    /// their own).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

impl Server {
    /// Opens the store (recovering it) and binds `addr`.
    ///
    /// # Errors
    /// The store's errors; binding failed.
    pub fn bind(addr: SocketAddr, settings: ServerSettings) -> Result<Server, Error> {
        let store = Store::open_with(
            &settings.out,
            settings.store.clone(),
            Box::new(RealDisk),
            SystemTime::now(),
        )?;
        let listener =
            TcpListener::bind(addr).map_err(|e| Error::io(format!("binding {addr}"), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("reading the bound address", e))?;
        Ok(Server {
            listener,
            addr,
            store: Arc::new(Shared {
                store: Mutex::new(store),
                committed: Condvar::new(),
            }),
            settings,
            stats: Arc::default(),
            stop: Arc::default(),
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Counters, shared with the running server.
    pub fn stats(&self) -> Arc<ServerStats> {
        Arc::clone(&self.stats)
    }

    /// Sessions the store holds (with lines, or connected).
    pub fn sessions(&self) -> usize {
        self.store.lock().sessions()
    }

    /// A handle that stops [`run`](Server::run).
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            stop: Arc::clone(&self.stop),
            addr: self.addr,
        }
    }

    /// Accepts and serves connections, each on its own thread, until
    /// stopped.
    pub fn run(&self) {
        for stream in self.listener.incoming() {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            let stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    continue;
                }
            };
            self.stats.connections.fetch_add(1, Ordering::Relaxed);
            let conn = Connection {
                store: Arc::clone(&self.store),
                settings: self.settings.clone(),
                stats: Arc::clone(&self.stats),
            };
            // A small stack: a thousand connections cost a thousand of
            // these (the buffers are on the heap).
            let spawned = thread::Builder::new()
                .name("ack-conn".into())
                .stack_size(CONNECTION_STACK)
                .spawn(move || conn.serve(stream));
            if let Err(e) = spawned {
                warn!(error = %e, "could not start a connection thread");
            }
        }
    }
}

/// Stack of a connection thread.
const CONNECTION_STACK: usize = 256 * 1024;

struct Connection {
    store: Arc<Shared>,
    settings: ServerSettings,
    stats: Arc<ServerStats>,
}

/// How a connection's loop ended.
enum End {
    /// `CLOSE_ACK` sent and the client's EOF read: close cleanly.
    Closed,
    /// The client went away (EOF or reset) mid-session; it may resume.
    Gone,
    /// `--stop-reading-after` reached: close without reading the rest.
    StoppedReading,
}

impl Connection {
    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock()
    }

    fn serve(self, mut stream: TcpStream) {
        let peer = stream
            .peer_addr()
            .map_or_else(|_| "?".to_owned(), |a| a.to_string());
        let _ = stream.set_nodelay(true);
        let _ =
            SockRef::from(&stream).set_tcp_user_timeout(Some(DEAD_AFTER * self.settings.heartbeat));
        let _ = stream.set_write_timeout(Some(DEAD_AFTER * self.settings.heartbeat));
        let mut rx = Receiver::new(
            ReceiverConfig {
                max_window: self.settings.max_window,
                heartbeat: self.settings.heartbeat,
            },
            Instant::now(),
        );
        let mut claim = None;
        let result = self.drive(&mut stream, &mut rx, &mut claim);
        if let Some((session, generation)) = claim {
            self.lock().release(session, generation, SystemTime::now());
        }
        if self.settings.show_kernel {
            if let Ok(view) = kernel::sample(&stream) {
                eprintln!("[server {peer}] at close: {view}");
            }
        }
        match result {
            Ok(End::Closed) => {
                self.stats.closed_sessions.fetch_add(1, Ordering::Relaxed);
                debug!(%peer, session = ?rx.session(), "session closed cleanly");
            }
            Ok(End::Gone) => {
                info!(%peer, session = ?rx.session(), delivered = rx.delivered(), "client went away; it may resume");
            }
            Ok(End::StoppedReading) => {
                // Like an application that stopped reading and exits when
                // its peer is done: wait (bounded) for the peer's FIN
                // without reading, then close with the rest unread. The
                // kernel answers that close with a reset.
                let unread = wait_peer_shutdown(&stream, DEAD_AFTER * self.settings.heartbeat);
                warn!(%peer, session = ?rx.session(), unread, "stopped reading early as told; closing with unread data");
            }
            Err(e) => {
                match e {
                    Error::PeerSilent { .. } => self.stats.silent.fetch_add(1, Ordering::Relaxed),
                    _ => self.stats.violations.fetch_add(1, Ordering::Relaxed),
                };
                warn!(%peer, session = ?rx.session(), error = %e, "connection closed");
                // Tell the client why, then close without a reset: stop
                // sending, and drain (bounded) what it still sends so that
                // nothing is left unread when the socket closes.
                let _ = flush(&mut stream, &mut rx);
                let _ = stream.shutdown(Shutdown::Write);
                linger_drain(&mut stream);
            }
        }
    }

    /// Serves the connection; `claim` is the session claimed, if any.
    fn drive(
        &self,
        stream: &mut TcpStream,
        rx: &mut Receiver,
        claim: &mut Option<(u64, u64)>,
    ) -> Result<End, Error> {
        let mut decoder = Decoder::new(framing_config());
        let mut pending = false;
        let mut delivered_here = 0u64;
        let mut peer_eof = false;
        loop {
            loop {
                let frame = match decoder.next_frame() {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(e) => {
                        rx.refuse(ErrorCode::Framing, e.to_string());
                        return Err(e.into());
                    }
                };
                match rx.handle(frame, Instant::now())? {
                    None => {}
                    Some(Event::Hello { session, token }) => {
                        // What an earlier connection left pending becomes
                        // durable first, so the session resumes from one
                        // point.
                        let claimed = self
                            .store
                            .durable_through(session)
                            .and_then(|mut store| store.claim(session, token, SystemTime::now()));
                        let c = match claimed {
                            Ok(c) => c,
                            Err(e) => {
                                match &e {
                                    Error::Protocol { code, reason } => {
                                        rx.refuse(*code, reason.clone());
                                    }
                                    other => rx.refuse(ErrorCode::Storage, other.to_string()),
                                }
                                return Err(e);
                            }
                        };
                        debug!(session, processed = c.durable.processed, "session claimed");
                        rx.welcome(c.durable, c.appended);
                        *claim = Some((session, c.generation));
                    }
                    Some(Event::Deliver { seq, payload }) => {
                        let Some((session, generation)) = *claim else {
                            return Err(Error::protocol(
                                ErrorCode::UnexpectedMessage,
                                "DATA without a session",
                            ));
                        };
                        if !self.settings.process_delay.is_zero() {
                            // Simulated processing work.
                            thread::sleep(self.settings.process_delay);
                        }
                        if let Err(e) = self.lock().append(session, generation, seq, payload) {
                            match &e {
                                Error::Protocol { code, reason } => {
                                    rx.refuse(*code, reason.clone());
                                }
                                other => rx.refuse(ErrorCode::Storage, other.to_string()),
                            }
                            return Err(e);
                        }
                        pending = true;
                        delivered_here += 1;
                        self.stats.processed.fetch_add(1, Ordering::Relaxed);
                        if self
                            .settings
                            .stop_reading_after
                            .is_some_and(|n| delivered_here >= n)
                        {
                            self.make_durable(rx, *claim)?;
                            flush(stream, rx)?;
                            return Ok(End::StoppedReading);
                        }
                    }
                }
            }
            let (unacked, window) = rx.unacknowledged();
            if pending && !peer_eof && unacked < u64::from(window / 2) {
                // Take what already arrived into this commit too: a window
                // split over several reads would otherwise cost a commit
                // per read. (The window bounds how much can be waiting.)
                match recv_now(stream, decoder.read_buf()) {
                    Some(0) => {
                        if let Err(e) = decoder.finish() {
                            debug!(error = %e, "client closed inside a frame");
                        }
                        peer_eof = true;
                        continue;
                    }
                    Some(n) => {
                        decoder.commit(n);
                        continue;
                    }
                    None => {}
                }
            }
            if pending {
                self.make_durable(rx, *claim)?;
                pending = false;
            }
            flush(stream, rx)?;
            if rx.is_failed() {
                return Err(Error::protocol(ErrorCode::UnexpectedMessage, "failed"));
            }
            if peer_eof {
                return Ok(if rx.is_done() { End::Closed } else { End::Gone });
            }
            let now = Instant::now();
            let wait = rx
                .poll_timeout()
                .map_or(self.settings.heartbeat, |d| {
                    d.saturating_duration_since(now)
                })
                .max(Duration::from_millis(1));
            let _ = stream.set_read_timeout(Some(wait));
            match stream.read(decoder.read_buf()) {
                Ok(0) => {
                    if let Err(e) = decoder.finish() {
                        debug!(error = %e, "client closed inside a frame");
                    }
                    peer_eof = true;
                }
                Ok(n) => decoder.commit(n),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    rx.handle_timeout(Instant::now())?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                    ) =>
                {
                    return Ok(End::Gone);
                }
                Err(e) => return Err(Error::io("reading", e)),
            }
        }
    }

    fn make_durable(&self, rx: &mut Receiver, claim: Option<(u64, u64)>) -> Result<(), Error> {
        let Some((session, _)) = claim else {
            return Ok(());
        };
        match self.store.durable_through(session) {
            Ok(store) => {
                rx.on_durable(store.durable(session));
                Ok(())
            }
            Err(e) => {
                rx.refuse(ErrorCode::Storage, e.to_string());
                Err(e)
            }
        }
    }
}

/// `recv(2)` without waiting: `None` when nothing is there (or on an error,
/// which the next blocking read reports).
fn recv_now(stream: &TcpStream, buf: &mut [u8]) -> Option<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: `buf` is valid for writes of its length for the call.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    usize::try_from(n).ok()
}

/// Waits, without reading, until the peer shuts down its sending side
/// (`POLLRDHUP`) or `timeout` passes; returns the bytes left unread.
fn wait_peer_shutdown(stream: &TcpStream, timeout: Duration) -> u32 {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd for the duration of the call.
    let _ = unsafe { libc::poll(&mut pfd, 1, ms) };
    kernel::sample(stream).map_or(0, |k| k.inq)
}

/// Reads and drops what the peer still sends, until its EOF, at most 1 MiB
/// or 200 ms.
fn linger_drain(stream: &mut TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 8192];
    let mut left = 1024 * 1024usize;
    while left > 0 {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// Sends everything the receiver has queued, in one write.
fn flush(stream: &mut TcpStream, rx: &mut Receiver) -> Result<(), Error> {
    let encoder = Encoder::new(framing_config());
    let mut msg = Vec::new();
    let mut out = Vec::new();
    while rx.poll_transmit(&mut msg) {
        encoder.encode(&msg, &mut out)?;
    }
    if !out.is_empty() {
        stream
            .write_all(&out)
            .map_err(|e| Error::io("sending", e))?;
    }
    Ok(())
}

/// Encodes one message as a frame (for tools and tests that speak the
/// protocol by hand).
pub fn frame(msg: &Message<'_>) -> Vec<u8> {
    let mut body = Vec::new();
    msg.encode(&mut body);
    let mut out = Vec::new();
    Encoder::new(framing_config())
        .encode(&body, &mut out)
        .expect("a message within the frame limit");
    out
}
