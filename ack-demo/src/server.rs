//! The blocking server driver: a thread per connection, one shared
//! [`Store`] with its group commit, the [`Receiver`] state machine deciding
//! what to send.
//!
//! Each connection thread takes every frame already received (and what
//! arrives meanwhile), processes what it delivers (appends to the store),
//! then asks for a commit: it leads one itself when none is out, or leaves
//! its lines to the committer thread, which takes them with every other
//! session's right after the commit in flight. It goes on receiving while
//! its lines are synced (up to half its window unacknowledged), polling its
//! socket and an `eventfd` the committer signals, and sends the `ACK` once
//! they are durable. A violation gets `ERROR{code, reason}` and the connection is
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
    store: Arc<Handle>,
    settings: ServerSettings,
    stats: Arc<ServerStats>,
    stop: Arc<AtomicBool>,
}

/// The store every connection shares, and the group commit over it.
///
/// One committer thread makes lines durable: when asked, it takes *every*
/// session's pending lines into one commit ([`Store::begin_commit`]), runs
/// its I/O without holding the store (connections go on receiving and
/// appending: their lines go into the next commit), hands it back and wakes
/// the connections waiting for it. A connection asks for a commit after a
/// read batch and goes on receiving; it sends its `ACK` when the committer
/// wakes it and its lines are durable (pipelining within the window). One
/// commit (one sync's latency) thus serves every session with lines
/// pending.
#[derive(Debug)]
struct Shared {
    inner: Mutex<Inner>,
    /// Wakes the committer.
    work: Condvar,
    /// Notified after every commit, for the connections that block on one.
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
    /// Connections to wake after the next commit.
    waiters: Vec<Arc<Wake>>,
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

impl Shared {
    fn start(store: Store) -> Result<Arc<Handle>, Error> {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                store,
                requested: false,
                failures: 0,
                last_error: String::new(),
                waiters: Vec::new(),
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
        // A connection thread that panicked cannot leave the store half
        // updated in a way later syncs would miss: keep serving.
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
            if g.commit_in_flight() {
                // A connection is leading one: the next one after it.
                g = self.committed.wait(g).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            g.requested = false;
            g = self.commit_once(g);
        }
    }

    /// Runs one commit of everything pending (the store unlocked during
    /// its I/O), then wakes whoever waits for one. Called by the committer,
    /// or by a connection that finds no commit out (the lowest latency).
    fn commit_once<'a>(&'a self, mut g: MutexGuard<'a, Inner>) -> MutexGuard<'a, Inner> {
        let failed = match g.store.begin_commit() {
            Ok(None) => None,
            Err(e) => Some(e),
            Ok(Some(mut commit)) => {
                drop(g);
                commit.run();
                g = self.lock();
                g.store.finish_commit(commit).err()
            }
        };
        if let Some(e) = failed {
            g.failures += 1;
            g.last_error = e.to_string();
        }
        let waiters = std::mem::take(&mut g.waiters);
        self.committed.notify_all();
        drop(g);
        for w in waiters {
            w.wake();
        }
        self.lock()
    }

    /// Asks for a commit of what is pending.
    fn request(&self, g: &mut Inner) {
        g.requested = true;
        self.work.notify_one();
    }

    /// Returns once every line of `session` appended so far is durable,
    /// with the store locked.
    fn durable_through(&self, session: u64) -> Result<MutexGuard<'_, Inner>, Error> {
        let mut g = self.lock();
        let failures = g.failures;
        if g.durable(session).processed < g.appended(session) {
            self.request(&mut g);
        }
        loop {
            if g.durable(session).processed >= g.appended(session) {
                return Ok(g);
            }
            if g.failures > failures {
                return Err(Error::Store {
                    path: g.path().display().to_string(),
                    detail: format!("commit failed: {}", g.last_error),
                });
            }
            g = self.committed.wait(g).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// What the server and its connections hold: the committer ends when the
/// last one is dropped.
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

/// A connection's wake-up from the committer: an `eventfd` it polls beside
/// its socket.
#[derive(Debug)]
struct Wake {
    fd: std::os::fd::OwnedFd,
    registered: AtomicBool,
}

impl Wake {
    fn new() -> Result<Wake, Error> {
        use std::os::fd::FromRawFd;
        // SAFETY: eventfd returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(Error::io("creating an eventfd", io::Error::last_os_error()));
        }
        Ok(Wake {
            // SAFETY: `fd` is ours, open, and owned by nothing else.
            fd: unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) },
            registered: AtomicBool::new(false),
        })
    }

    fn wake(&self) {
        use std::os::fd::AsRawFd;
        self.registered.store(false, Ordering::SeqCst);
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a valid buffer.
        let _ = unsafe { libc::write(self.fd.as_raw_fd(), one.as_ptr().cast(), 8) };
    }

    fn drain(&self) {
        use std::os::fd::AsRawFd;
        let mut buf = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a valid buffer.
        let _ = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
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
    store: Arc<Handle>,
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
    fn lock(&self) -> MutexGuard<'_, Inner> {
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
        let wake = Arc::new(Wake::new()?);
        // Waiting for a commit asked for when the committer had failed this
        // many times.
        let mut awaiting: Option<u64> = None;
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
                pending = false;
                let mut g = self.lock();
                awaiting = Some(awaiting.unwrap_or(g.failures));
                if g.commit_in_flight() {
                    // The committer takes these right after the commit out
                    // now; meanwhile this connection goes on receiving.
                    self.store.request(&mut g);
                } else {
                    // Nobody is committing: lead one here.
                    drop(self.store.commit_once(g));
                }
            }
            if let (Some(failures), Some((session, _))) = (awaiting, *claim) {
                if peer_eof {
                    // Nothing more to receive: wait for the commit here.
                    self.make_durable(rx, *claim)?;
                    awaiting = None;
                } else {
                    let mut g = self.lock();
                    let durable = g.durable(session);
                    rx.on_durable(durable);
                    if durable.processed >= g.appended(session) {
                        awaiting = None;
                    } else if g.failures > failures {
                        let e = Error::Store {
                            path: g.path().display().to_string(),
                            detail: format!("commit failed: {}", g.last_error),
                        };
                        rx.refuse(ErrorCode::Storage, e.to_string());
                        return Err(e);
                    } else if !wake.registered.swap(true, Ordering::SeqCst) {
                        g.waiters.push(Arc::clone(&wake));
                    }
                }
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
            // The socket and the committer's wake-up, whichever comes
            // first: a connection receives while its commit runs.
            // While its commit runs a connection receives only while less
            // than half its window is unacknowledged: a sender that does not
            // wait for ACKs is then held back by TCP, as when a connection
            // stopped receiving during its sync.
            let (unacked, window) = rx.unacknowledged();
            let receive = awaiting.is_none() || window == 0 || unacked < u64::from(window / 2);
            let (readable, woken) = poll_both(stream, receive, &wake, wait)?;
            if woken {
                wake.drain();
            }
            if !readable {
                if rx.poll_timeout().is_some_and(|d| d <= Instant::now()) {
                    rx.handle_timeout(Instant::now())?;
                }
                continue;
            }
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

/// Waits up to `wait` for the socket to be readable (when `receive`) or
/// `wake` to fire.
fn poll_both(
    stream: &TcpStream,
    receive: bool,
    wake: &Wake,
    wait: Duration,
) -> Result<(bool, bool), Error> {
    use std::os::fd::AsRawFd;
    let mut fds = [
        libc::pollfd {
            // A negative fd is ignored by poll(2).
            fd: if receive { stream.as_raw_fd() } else { -1 },
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: wake.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let ms = libc::c_int::try_from(wait.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: two valid pollfds for the duration of the call.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok((false, false));
        }
        return Err(Error::io("waiting for input", e));
    }
    Ok((fds[0].revents != 0, fds[1].revents != 0))
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
