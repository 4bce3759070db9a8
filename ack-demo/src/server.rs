//! The server driver: one `mio` event loop serves every connection, one
//! committer thread makes their lines durable (group commit over one shared
//! [`Store`]), and the [`Receiver`] state machine of each connection decides
//! what to send. Threads and memory are bounded whatever the number of
//! sessions: the loop's thread, the committer, the store's sync helper; a
//! connection costs its socket, its read buffer and its queued answers.
//!
//! On each readiness event the loop reads what arrived (until the socket
//! would block), hands every frame to the connection's receiver and
//! processes what it delivers (appends to the store). Then it asks the
//! committer for one commit of everything pending, across sessions, and goes
//! on receiving while that commit runs: a connection receives while less
//! than half its window is unacknowledged (pipelining within the window),
//! so a sender that does not wait for ACKs is held back by TCP. When the
//! commit is durable the committer wakes the loop, which sends each
//! session's `ACK`. A violation gets `ERROR{code, reason}` and that
//! connection is closed; other sessions are not affected.
//!
//! A `HELLO` claims its session with the client's token
//! ([`Store::claim`]): a wrong token gets `ERROR{TokenMismatch}` and the
//! session's owner is not disturbed. When a connection ends its claim is
//! released ([`Store::release`]), so sessions that never stored a line cost
//! nothing afterwards.
//!
//! `--process-delay` is spent on the loop's thread: processing is serial
//! across connections, as in a single-threaded application.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use framing::{Decoder, Encoder};
use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token, Waker};
use serde::Serialize;
use socket2::SockRef;
use tracing::{debug, info, warn};

use crate::error::{Error, ErrorCode};
use crate::framing_config;
use crate::heartbeat::DEAD_AFTER;
use crate::kernel;
use crate::receiver::{Event, Receiver, ReceiverConfig};
use crate::session_name;
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
    /// Connections open now.
    pub open: AtomicU64,
    /// Most connections open at once.
    pub peak_open: AtomicU64,
}

/// A running server; see the module docs.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    store: Arc<Handle>,
    settings: ServerSettings,
    stats: Arc<ServerStats>,
    stop: Arc<AtomicBool>,
}

/// The store every connection shares, and the group commit over it.
///
/// One committer thread makes lines durable: when asked, it takes *every*
/// session's pending lines into one commit ([`Store::begin_commit`]), runs
/// its I/O without holding the store (the loop goes on receiving and
/// appending: those lines go into the next commit), hands it back and wakes
/// the loop. One commit (one sync's latency) thus serves every session with
/// lines pending.
#[derive(Debug)]
struct Shared {
    inner: Mutex<Inner>,
    /// Wakes the committer.
    work: Condvar,
    /// Notified after every commit, for the rare waits that block on one.
    committed: Condvar,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    /// A commit was asked for since the committer last took one.
    requested: bool,
    /// Commits that failed (their error in `last_error`).
    failures: u64,
    last_error: String,
    /// Commits finished (durable or failed).
    commits: u64,
    /// Moving average of a commit's I/O, nanoseconds.
    commit_ns: u64,
    /// The event loop's wake-up, while it runs.
    waker: Option<Arc<Waker>>,
    /// Every handle is gone: the committer ends.
    stop: bool,
}

impl std::ops::Deref for Inner {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

impl std::ops::DerefMut for Inner {
    fn deref_mut(&mut self) -> &mut Store {
        &mut self.store
    }
}

impl Inner {
    /// The error of the last failed commit, for a session that waited on it.
    fn commit_error(&self) -> Error {
        Error::Store {
            path: self.path().display().to_string(),
            detail: format!("commit failed: {}", self.last_error),
        }
    }
}

impl Shared {
    fn start(store: Store) -> Result<Arc<Handle>, Error> {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                store,
                requested: false,
                failures: 0,
                last_error: String::new(),
                commits: 0,
                // The first commit tells.
                commit_ns: 0,
                waker: None,
                stop: false,
            }),
            work: Condvar::new(),
            committed: Condvar::new(),
        });
        let committer = Arc::clone(&shared);
        thread::Builder::new()
            .name("ack-commit".into())
            .spawn(move || committer.commit_loop())
            .map_err(|e| Error::io("starting the committer thread", e))?;
        Ok(Arc::new(Handle(shared)))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A thread that panicked cannot leave the store half updated in a
        // way later syncs would miss: keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn commit_loop(&self) {
        let mut g = self.lock();
        loop {
            while !g.requested && !g.stop {
                g = self.work.wait(g).unwrap_or_else(|p| p.into_inner());
            }
            if g.stop {
                return;
            }
            g.requested = false;
            g = self.commit_once(g);
        }
    }

    /// Runs one commit of everything pending (the store unlocked during
    /// its I/O), then wakes the loop and whoever blocks on one.
    fn commit_once<'a>(&'a self, mut g: MutexGuard<'a, Inner>) -> MutexGuard<'a, Inner> {
        g = self.commit_here(g);
        if let Some(waker) = &g.waker {
            if let Err(e) = waker.wake() {
                warn!(error = %e, "could not wake the event loop");
            }
        }
        g
    }

    /// One commit on the calling thread, without waking the loop: the
    /// committer's, or the loop's own when commits are quick.
    fn commit_here<'a>(&'a self, mut g: MutexGuard<'a, Inner>) -> MutexGuard<'a, Inner> {
        let failed = match g.store.begin_commit() {
            Ok(None) => None,
            Err(e) => Some(e),
            Ok(Some(mut commit)) => {
                drop(g);
                let started = Instant::now();
                commit.run();
                let took = started.elapsed();
                g = self.lock();
                // A moving average over about eight commits.
                let took = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
                g.commit_ns = g.commit_ns - g.commit_ns / 8 + took / 8;
                g.store.finish_commit(commit).err()
            }
        };
        if let Some(e) = failed {
            g.failures += 1;
            g.last_error = e.to_string();
        }
        g.commits += 1;
        self.committed.notify_all();
        g
    }

    /// Asks for a commit of what is pending.
    fn request(&self, g: &mut Inner) {
        g.requested = true;
        self.work.notify_one();
    }

    /// Returns once every line of `session` appended so far is durable,
    /// with the store locked. Blocks the caller for up to one commit: the
    /// loop uses it only for a resumed session's `HELLO` and an early stop.
    fn durable_through(&self, session: u64) -> Result<MutexGuard<'_, Inner>, Error> {
        let mut g = self.lock();
        let failures = g.failures;
        let mut seen = g.commits;
        if g.durable(session).processed < g.appended(session) {
            self.request(&mut g);
        }
        loop {
            if g.durable(session).processed >= g.appended(session) {
                return Ok(g);
            }
            if g.failures > failures {
                return Err(g.commit_error());
            }
            if g.commits > seen && !g.requested {
                // The lines came after the commit that just ended.
                seen = g.commits;
                self.request(&mut g);
            }
            g = self.committed.wait(g).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// What the server holds: the committer ends when it is dropped.
#[derive(Debug)]
struct Handle(Arc<Shared>);

impl std::ops::Deref for Handle {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.lock().stop = true;
        self.0.work.notify_all();
    }
}

/// Stops a server's event loop from another thread.
#[derive(Debug, Clone)]
pub struct StopHandle {
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
}

impl StopHandle {
    /// Makes [`Server::run`] stop accepting; it returns once the
    /// connections it serves have ended (at most three heartbeats later).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the loop through its listener.
        let _ = TcpStream::connect(self.addr);
    }
}

impl Server {
    /// Opens the store (recovering it) and binds `addr`.
    ///
    /// # Errors
    /// The store's errors; binding failed.
    pub fn bind(addr: SocketAddr, settings: ServerSettings) -> Result<Server, Error> {
        // A socket per session: start from the hard limit on open files.
        match crate::kernel::raise_open_file_limit() {
            Ok(limit) => debug!(limit, "open files"),
            Err(e) => warn!(error = %e, "could not raise the open-file limit"),
        }
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
            store: Shared::start(store)?,
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

    /// Serves connections on this thread until stopped (see
    /// [`StopHandle::stop`]).
    ///
    /// # Errors
    /// The event loop could not be set up (`epoll`, the wake-up `eventfd`,
    /// the listener); once it runs, errors end single connections only.
    pub fn serve(&self) -> Result<(), Error> {
        let mut event_loop = EventLoop::new(self)?;
        event_loop.run();
        self.store.lock().waker = None;
        Ok(())
    }

    /// [`serve`](Server::serve), logging a set-up failure.
    pub fn run(&self) {
        if let Err(e) = self.serve() {
            warn!(error = %e, "the server could not start its event loop");
        }
    }
}

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Token of the connection in slot 0.
const FIRST_CONNECTION: usize = 2;
/// Bytes read from one connection in a turn before the loop serves the
/// others (fairness: a fast sender cannot starve a slow one).
const READ_BUDGET: usize = 256 * 1024;
/// Answers queued for a connection beyond which it is not read: its client
/// is not reading them.
const OUT_LIMIT: usize = 1024 * 1024;
/// How long a connection ended by an error is drained before it closes, so
/// that what its client still sends does not turn the close into a reset.
const LINGER: Duration = Duration::from_millis(200);
/// Bytes drained at most from such a connection.
const LINGER_BYTES: usize = 1024 * 1024;
/// Finest grain of the timer scan (heartbeats, deadlines of closing
/// connections).
const SCAN_GRAIN: Duration = Duration::from_millis(5);
/// Commits whose I/O takes less than this on average run on the loop's
/// thread (two thread wake-ups cost about as much).
const INLINE_COMMIT_NS: u64 = 100_000;
/// Wait before accepting again when accepting failed for want of
/// descriptors or memory.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How a connection's session ended.
#[derive(Debug, Clone, Copy)]
enum End {
    /// `CLOSE_ACK` sent and the client's EOF read: close cleanly.
    Closed,
    /// The client went away (EOF or reset) mid-session; it may resume.
    Gone,
    /// `--stop-reading-after` reached: close without reading the rest.
    StoppedReading,
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Receiving, processing, acknowledging.
    Serving,
    /// Ended: sending what is queued, then closing.
    Flushing,
    /// Stopped reading early: waiting (bounded), without reading, for the
    /// client's FIN, then closing with the rest unread (a reset).
    AwaitFin,
    /// Ended by an error: the `ERROR` sent, the sending side shut once it
    /// is out, draining (bounded) what the client still sends.
    Linger,
}

/// One connection's state in the loop.
struct Conn {
    stream: MioStream,
    peer: String,
    decoder: Decoder,
    rx: Receiver,
    /// The session claimed, with the claim's generation.
    claim: Option<(u64, u64)>,
    phase: Phase,
    /// Deadline of a phase other than `Serving`.
    deadline: Option<Instant>,
    /// Input may be waiting (the socket did not say it would block since
    /// its last readiness event).
    readable: bool,
    /// The client shut its sending side (seen without reading).
    read_closed: bool,
    /// Lines appended on this turn, for which a commit must be asked.
    pending: bool,
    /// Waiting for a commit asked for when this many commits had failed.
    awaiting: Option<u64>,
    /// In the loop's list of connections awaiting a commit.
    listed: bool,
    /// In the loop's list of connections to serve on this turn.
    queued: bool,
    peer_eof: bool,
    delivered_here: u64,
    /// Encoded answers not yet written, from `out_at`.
    out: Vec<u8>,
    out_at: usize,
    /// Sending side shut (`Linger`).
    shut: bool,
    linger_left: usize,
}

/// The event loop of one [`Server::serve`] call.
struct EventLoop<'s> {
    server: &'s Server,
    poll: Poll,
    listener: mio::net::TcpListener,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// Connections to serve on this turn.
    ready: Vec<usize>,
    /// Connections waiting for a commit.
    awaiting: Vec<usize>,
    /// Pending lines were appended on this turn: ask for a commit.
    commit_wanted: bool,
    next_scan: Instant,
    accept_again: Option<Instant>,
    /// Stopped: no new connections; return when these have ended or by
    /// the deadline.
    stopping: Option<Instant>,
    encoder: Encoder,
    msg: Vec<u8>,
}

impl<'s> EventLoop<'s> {
    fn new(server: &'s Server) -> Result<EventLoop<'s>, Error> {
        let poll = Poll::new().map_err(|e| Error::io("creating the event loop (epoll)", e))?;
        let waker = Waker::new(poll.registry(), WAKER)
            .map_err(|e| Error::io("creating the event loop's wake-up", e))?;
        let std_listener = server
            .listener
            .try_clone()
            .map_err(|e| Error::io("duplicating the listener", e))?;
        std_listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("making the listener non-blocking", e))?;
        let mut listener = mio::net::TcpListener::from_std(std_listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(|e| Error::io("registering the listener", e))?;
        server.store.lock().waker = Some(Arc::new(waker));
        Ok(EventLoop {
            server,
            poll,
            listener,
            conns: Vec::new(),
            free: Vec::new(),
            ready: Vec::new(),
            awaiting: Vec::new(),
            commit_wanted: false,
            next_scan: Instant::now() + server.settings.heartbeat,
            accept_again: None,
            stopping: None,
            encoder: Encoder::new(framing_config()),
            msg: Vec::new(),
        })
    }

    fn settings(&self) -> &ServerSettings {
        &self.server.settings
    }

    fn run(&mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            if self.stopping.is_none() && self.server.stop.load(Ordering::SeqCst) {
                let grace = DEAD_AFTER * self.settings().heartbeat + Duration::from_secs(1);
                self.stopping = Some(Instant::now() + grace);
                let _ = self.poll.registry().deregister(&mut self.listener);
                info!(
                    connections = self.conns.len() - self.free.len(),
                    "stopping: serving the open connections to their end"
                );
            }
            if let Some(deadline) = self.stopping {
                let open = self.conns.len() - self.free.len();
                if open == 0 || Instant::now() >= deadline {
                    if open > 0 {
                        warn!(open, "stopped with connections still open");
                    }
                    return;
                }
            }
            let timeout = self.timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    warn!(error = %e, "waiting for events failed");
                    thread::sleep(SCAN_GRAIN);
                }
                continue;
            }
            let mut committed = false;
            for event in &events {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => committed = true,
                    Token(t) => {
                        let idx = t - FIRST_CONNECTION;
                        if let Some(Some(c)) = self.conns.get_mut(idx) {
                            c.readable |= event.is_readable() || event.is_error();
                            c.read_closed |= event.is_read_closed();
                            self.queue(idx);
                        }
                    }
                }
            }
            if self.accept_again.is_some_and(|t| Instant::now() >= t) {
                self.accept_again = None;
                self.accept();
            }
            if committed {
                self.wake_awaiting();
            }
            let ready = std::mem::take(&mut self.ready);
            for &idx in &ready {
                if let Some(Some(c)) = self.conns.get_mut(idx) {
                    c.queued = false;
                }
            }
            for idx in ready {
                self.turn(idx);
            }
            if std::mem::take(&mut self.commit_wanted) {
                self.commit();
            }
            if Instant::now() >= self.next_scan {
                self.scan();
            }
        }
    }

    /// Asks for a commit of what this turn appended. A commit quicker
    /// than handing it to the committer and being woken (tmpfs, a disk
    /// with a write cache) runs here when the loop has nothing else to do;
    /// a slow one (a disk's flush) runs on the committer while the loop
    /// goes on receiving.
    fn commit(&mut self) {
        let store = &self.server.store;
        let mut g = store.lock();
        let quick = g.commit_ns < INLINE_COMMIT_NS;
        if quick && self.ready.is_empty() && !g.commit_in_flight() && !g.requested {
            drop(store.commit_here(g));
            self.wake_awaiting();
        } else {
            store.request(&mut g);
        }
    }

    /// A commit ended: every connection waiting for one gets a turn.
    fn wake_awaiting(&mut self) {
        for idx in std::mem::take(&mut self.awaiting) {
            if let Some(Some(c)) = self.conns.get_mut(idx) {
                c.listed = false;
            }
            self.queue(idx);
        }
    }

    /// How long the loop may wait for events.
    fn timeout(&self) -> Option<Duration> {
        if !self.ready.is_empty() {
            return Some(Duration::ZERO);
        }
        let mut until = self.next_scan;
        if let Some(t) = self.accept_again {
            until = until.min(t);
        }
        if let Some(t) = self.stopping {
            until = until.min(t);
        }
        Some(until.saturating_duration_since(Instant::now()))
    }

    fn queue(&mut self, idx: usize) {
        if let Some(Some(c)) = self.conns.get_mut(idx) {
            if !c.queued {
                c.queued = true;
                self.ready.push(idx);
            }
        }
    }

    fn accept(&mut self) {
        loop {
            let (mut stream, peer) = match self.listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let starved = matches!(
                        e.raw_os_error(),
                        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                    );
                    if starved {
                        warn!(error = %e, "accept failed; trying again shortly (raise `ulimit -n` for more connections)");
                        self.accept_again = Some(Instant::now() + ACCEPT_BACKOFF);
                        return;
                    }
                    warn!(error = %e, "accept failed");
                    continue;
                }
            };
            if self.stopping.is_some() || self.server.stop.load(Ordering::SeqCst) {
                // The stop handle's wake-up, or a client too late.
                continue;
            }
            let settings = &self.server.settings;
            let _ = stream.set_nodelay(true);
            let _ =
                SockRef::from(&stream).set_tcp_user_timeout(Some(DEAD_AFTER * settings.heartbeat));
            let idx = self.free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            if let Err(e) = self.poll.registry().register(
                &mut stream,
                Token(idx + FIRST_CONNECTION),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                warn!(error = %e, %peer, "could not register a connection");
                self.free.push(idx);
                continue;
            }
            let stats = &self.server.stats;
            stats.connections.fetch_add(1, Ordering::Relaxed);
            let open = stats.open.fetch_add(1, Ordering::Relaxed) + 1;
            stats.peak_open.fetch_max(open, Ordering::Relaxed);
            let now = Instant::now();
            let rx = Receiver::new(
                ReceiverConfig {
                    max_window: settings.max_window,
                    heartbeat: settings.heartbeat,
                },
                now,
            );
            if let Some(deadline) = rx.poll_timeout() {
                self.next_scan = self.next_scan.min(deadline.max(now + SCAN_GRAIN));
            }
            self.conns[idx] = Some(Conn {
                stream,
                peer: peer.to_string(),
                decoder: Decoder::new(framing_config()),
                rx,
                claim: None,
                phase: Phase::Serving,
                deadline: None,
                readable: true,
                read_closed: false,
                pending: false,
                awaiting: None,
                listed: false,
                queued: false,
                peer_eof: false,
                delivered_here: 0,
                out: Vec::new(),
                out_at: 0,
                shut: false,
                linger_left: LINGER_BYTES,
            });
            self.queue(idx);
        }
    }

    /// Serves one connection for one turn.
    fn turn(&mut self, idx: usize) {
        let Some(Some(mut c)) = self.conns.get_mut(idx).map(Option::take) else {
            return;
        };
        let keep = match c.phase {
            Phase::Serving => {
                let result = c.serve_turn(self.server, &mut self.commit_wanted);
                let result = result.and_then(|end| {
                    c.queue_answers(&self.encoder, &mut self.msg)?;
                    c.write_out().map(|()| end)
                });
                match result {
                    Ok(None) => {
                        if c.awaiting.is_some() && !c.listed {
                            c.listed = true;
                            self.awaiting.push(idx);
                        }
                        if c.has_more_input() {
                            // Budget spent: again on the next turn.
                            c.queued = true;
                            self.ready.push(idx);
                        }
                        true
                    }
                    Ok(Some(end)) => self.end(&mut c, Ok(end)),
                    Err(e) => self.end(&mut c, Err(e)),
                }
            }
            Phase::Flushing | Phase::AwaitFin | Phase::Linger => c.closing_turn(),
        };
        if !keep {
            self.close(idx, c);
            return;
        }
        if let Some(t) = c.deadline {
            self.next_scan = self.next_scan.min(t.max(Instant::now() + SCAN_GRAIN));
        }
        self.conns[idx] = Some(c);
    }

    /// A connection's session ended: logs it, releases its claim and moves
    /// it to its closing phase. `false` to close it now.
    fn end(&mut self, c: &mut Conn, result: Result<End, Error>) -> bool {
        let settings = &self.server.settings;
        let stats = &self.server.stats;
        let peer = &c.peer;
        if let Some((session, generation)) = c.claim.take() {
            self.server
                .store
                .lock()
                .release(session, generation, SystemTime::now());
        }
        if settings.show_kernel {
            if let Ok(view) = kernel::sample(&c.stream) {
                eprintln!("[server {peer}] at close: {view}");
            }
        }
        let now = Instant::now();
        let grace = DEAD_AFTER * settings.heartbeat;
        c.deadline = Some(now + grace);
        match result {
            Ok(End::Closed) => {
                stats.closed_sessions.fetch_add(1, Ordering::Relaxed);
                debug!(%peer, session = %session_name(c.rx.session()), "session closed cleanly");
                c.phase = Phase::Flushing;
            }
            Ok(End::Gone) => {
                info!(%peer, session = %session_name(c.rx.session()), delivered = c.rx.delivered(), "client went away; it may resume");
                c.phase = Phase::Flushing;
            }
            Ok(End::StoppedReading) => {
                // Like an application that stopped reading and exits when
                // its peer is done: wait (bounded) for the peer's FIN
                // without reading, then close with the rest unread. The
                // kernel answers that close with a reset.
                c.phase = Phase::AwaitFin;
            }
            Err(e) => {
                match e {
                    Error::PeerSilent { .. } => stats.silent.fetch_add(1, Ordering::Relaxed),
                    _ => stats.violations.fetch_add(1, Ordering::Relaxed),
                };
                warn!(%peer, session = %session_name(c.rx.session()), error = %e, "connection closed");
                // Tell the client why, then close without a reset: stop
                // sending, and drain (bounded) what it still sends so that
                // nothing is left unread when the socket closes.
                let _ = c.queue_answers(&self.encoder, &mut self.msg);
                c.phase = Phase::Linger;
            }
        }
        c.closing_turn()
    }

    fn close(&mut self, idx: usize, mut c: Conn) {
        if c.phase == Phase::AwaitFin {
            let unread = kernel::sample(&c.stream).map_or(0, |k| k.inq);
            warn!(peer = %c.peer, session = %session_name(c.rx.session()), unread, "stopped reading early as told; closing with unread data");
        }
        let _ = self.poll.registry().deregister(&mut c.stream);
        drop(c);
        self.free.push(idx);
        self.server.stats.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Heartbeats and deadlines of every connection; sets the next scan.
    fn scan(&mut self) {
        let now = Instant::now();
        let mut next = now + self.settings().heartbeat;
        for idx in 0..self.conns.len() {
            let Some(c) = self.conns[idx].as_mut() else {
                continue;
            };
            let due = match c.phase {
                Phase::Serving => c.rx.poll_timeout(),
                _ => c.deadline,
            };
            match due {
                Some(t) if t <= now => {}
                Some(t) => {
                    next = next.min(t);
                    continue;
                }
                None => continue,
            }
            let mut c = self.conns[idx].take().expect("checked above");
            let keep = if c.phase == Phase::Serving {
                let result = c.rx.handle_timeout(now).and_then(|()| {
                    c.queue_answers(&self.encoder, &mut self.msg)?;
                    c.write_out()
                });
                match result {
                    Ok(()) => {
                        if let Some(t) = c.rx.poll_timeout() {
                            next = next.min(t);
                        }
                        true
                    }
                    Err(e) => {
                        let keep = self.end(&mut c, Err(e));
                        if let Some(t) = c.deadline {
                            next = next.min(t);
                        }
                        keep
                    }
                }
            } else {
                // Out of time in a closing phase.
                false
            };
            if keep {
                self.conns[idx] = Some(c);
            } else {
                self.close(idx, c);
            }
        }
        self.next_scan = next.max(now + SCAN_GRAIN);
    }
}

impl Conn {
    /// Reads what arrived (within the budget), processes every frame, asks
    /// for a commit of what it appended and takes what became durable.
    /// `Some` when the session ended.
    fn serve_turn(
        &mut self,
        server: &Server,
        commit_wanted: &mut bool,
    ) -> Result<Option<End>, Error> {
        let mut budget = READ_BUDGET;
        loop {
            if let Some(end) = self.take_frames(server)? {
                return Ok(Some(end));
            }
            if !self.may_read() || budget == 0 {
                break;
            }
            match self.stream.read(self.decoder.read_buf()) {
                Ok(0) => {
                    if let Err(e) = self.decoder.finish() {
                        debug!(error = %e, "client closed inside a frame");
                    }
                    self.peer_eof = true;
                }
                Ok(n) => {
                    self.decoder.commit(n);
                    budget = budget.saturating_sub(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                    ) =>
                {
                    return Ok(Some(End::Gone));
                }
                Err(e) => return Err(Error::io("reading", e)),
            }
        }
        if std::mem::take(&mut self.pending) {
            *commit_wanted = true;
            if self.awaiting.is_none() {
                self.awaiting = Some(server.store.lock().failures);
            }
        }
        self.take_durable(server)?;
        if self.rx.is_failed() {
            return Err(Error::protocol(ErrorCode::UnexpectedMessage, "failed"));
        }
        if self.peer_eof && self.awaiting.is_none() {
            return Ok(Some(if self.rx.is_done() {
                End::Closed
            } else {
                End::Gone
            }));
        }
        Ok(None)
    }

    /// Whether to read now: not after EOF, not while the client leaves our
    /// answers unread, and only while less than half the window is
    /// unacknowledged. The rest of the window arrives while the commit
    /// runs (pipelining), and a sender that does not wait for ACKs is held
    /// back by TCP before a read could take it past its window.
    fn may_read(&self) -> bool {
        if self.peer_eof || !self.readable || self.out.len() - self.out_at > OUT_LIMIT {
            return false;
        }
        let (unacked, window) = self.rx.unacknowledged();
        window == 0 || unacked < u64::from((window / 2).max(1))
    }

    /// Whether input is left that the read budget stopped at.
    fn has_more_input(&self) -> bool {
        self.phase == Phase::Serving && self.may_read()
    }

    /// Hands every complete frame to the receiver and acts on its events.
    fn take_frames(&mut self, server: &Server) -> Result<Option<End>, Error> {
        let settings = &server.settings;
        loop {
            let frame = match self.decoder.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(None),
                Err(e) => {
                    self.rx.refuse(ErrorCode::Framing, e.to_string());
                    return Err(e.into());
                }
            };
            match self.rx.handle(frame, Instant::now())? {
                None => {}
                Some(Event::Hello { session, token }) => {
                    // What an earlier connection left pending becomes
                    // durable first, so the session resumes from one point.
                    let claimed = server
                        .store
                        .durable_through(session)
                        .and_then(|mut store| store.claim(session, token, SystemTime::now()));
                    let c = match claimed {
                        Ok(c) => c,
                        Err(e) => {
                            refuse_with(&mut self.rx, &e);
                            return Err(e);
                        }
                    };
                    debug!(session, processed = c.durable.processed, "session claimed");
                    self.rx.welcome(c.durable, c.appended);
                    self.claim = Some((session, c.generation));
                }
                Some(Event::Deliver { seq, payload }) => {
                    let Some((session, generation)) = self.claim else {
                        return Err(Error::protocol(
                            ErrorCode::UnexpectedMessage,
                            "DATA without a session",
                        ));
                    };
                    if !settings.process_delay.is_zero() {
                        // Simulated processing work.
                        thread::sleep(settings.process_delay);
                    }
                    let appended = server
                        .store
                        .lock()
                        .append(session, generation, seq, payload);
                    if let Err(e) = appended {
                        refuse_with(&mut self.rx, &e);
                        return Err(e);
                    }
                    self.pending = true;
                    self.delivered_here += 1;
                    server.stats.processed.fetch_add(1, Ordering::Relaxed);
                    if settings
                        .stop_reading_after
                        .is_some_and(|n| self.delivered_here >= n)
                    {
                        self.pending = false;
                        self.make_durable(server)?;
                        return Ok(Some(End::StoppedReading));
                    }
                }
            }
        }
    }

    /// Takes what the committer made durable for this session, and ends the
    /// wait once all of it is.
    fn take_durable(&mut self, server: &Server) -> Result<(), Error> {
        let (Some(failures), Some((session, _))) = (self.awaiting, self.claim) else {
            self.awaiting = None;
            return Ok(());
        };
        let g = server.store.lock();
        let durable = g.durable(session);
        self.rx.on_durable(durable);
        if durable.processed >= g.appended(session) {
            self.awaiting = None;
        } else if g.failures > failures {
            let e = g.commit_error();
            self.rx.refuse(ErrorCode::Storage, e.to_string());
            return Err(e);
        }
        Ok(())
    }

    /// Blocks until this session's lines are durable (an early stop).
    fn make_durable(&mut self, server: &Server) -> Result<(), Error> {
        let Some((session, _)) = self.claim else {
            return Ok(());
        };
        match server.store.durable_through(session) {
            Ok(store) => {
                self.rx.on_durable(store.durable(session));
                self.awaiting = None;
                Ok(())
            }
            Err(e) => {
                self.rx.refuse(ErrorCode::Storage, e.to_string());
                Err(e)
            }
        }
    }

    /// Encodes everything the receiver has to send behind what is queued.
    fn queue_answers(&mut self, encoder: &Encoder, msg: &mut Vec<u8>) -> Result<(), Error> {
        while self.rx.poll_transmit(msg) {
            encoder.encode(msg, &mut self.out)?;
        }
        Ok(())
    }

    /// Writes what is queued until the socket would block.
    fn write_out(&mut self) -> Result<(), Error> {
        while self.out_at < self.out.len() {
            match self.stream.write(&self.out[self.out_at..]) {
                Ok(0) => {
                    return Err(Error::io(
                        "sending",
                        io::Error::from(io::ErrorKind::WriteZero),
                    ));
                }
                Ok(n) => self.out_at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("sending", e)),
            }
        }
        self.out.clear();
        self.out_at = 0;
        Ok(())
    }

    /// One turn of a closing phase; `false` to close now.
    fn closing_turn(&mut self) -> bool {
        if self.write_out().is_err() {
            return false;
        }
        let flushed = self.out.is_empty();
        match self.phase {
            Phase::Serving => true,
            Phase::Flushing => !flushed,
            Phase::AwaitFin => !self.read_closed,
            Phase::Linger => {
                if !flushed {
                    return true;
                }
                if !self.shut {
                    self.shut = true;
                    let _ = self.stream.shutdown(Shutdown::Write);
                    self.deadline = Some(Instant::now() + LINGER);
                }
                let mut sink = [0u8; 8192];
                while self.linger_left > 0 {
                    match self.stream.read(&mut sink) {
                        Ok(0) => return false,
                        Ok(n) => self.linger_left = self.linger_left.saturating_sub(n),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => return false,
                    }
                }
                false
            }
        }
    }
}

/// Queues the `ERROR` that tells the client why its connection ends.
fn refuse_with(rx: &mut Receiver, e: &Error) {
    match e {
        Error::Protocol { code, reason } => rx.refuse(*code, reason.clone()),
        other => rx.refuse(ErrorCode::Storage, other.to_string()),
    }
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
