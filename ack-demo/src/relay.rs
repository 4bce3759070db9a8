//! A TCP relay for experiments: adds a fixed delay each way, and can turn
//! into a blackhole (keeps every connection open, forwards nothing), the
//! silent network path that only a heartbeat detects.
//!
//! This kernel has no `netem`, so the delay is made here: each chunk read
//! from one side is written to the other side `delay` after it arrived.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use tracing::debug;

/// A running relay; it stops accepting when dropped (connections already
/// relayed run until either side closes).
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    blackhole: AtomicBool,
    closed: AtomicBool,
    dropped_bytes: AtomicU64,
}

impl Relay {
    /// Listens on `listen` and relays every connection to `upstream`, each
    /// chunk delayed by `delay` in each direction.
    ///
    /// # Errors
    /// Binding `listen` failed.
    pub fn start(listen: SocketAddr, upstream: SocketAddr, delay: Duration) -> io::Result<Relay> {
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            blackhole: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            dropped_bytes: AtomicU64::new(0),
        });
        let accept_shared = Arc::clone(&shared);
        thread::Builder::new()
            .name("relay-accept".into())
            .spawn(move || accept_loop(listener, upstream, delay, accept_shared))?;
        Ok(Relay { addr, shared })
    }

    /// Where clients connect.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts (true) or stops (false) silently dropping every byte, both
    /// ways, on every connection.
    pub fn set_blackhole(&self, on: bool) {
        self.shared.blackhole.store(on, Ordering::SeqCst);
    }

    /// Bytes dropped while blackholed.
    pub fn dropped_bytes(&self) -> u64 {
        self.shared.dropped_bytes.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn accept_loop(listener: TcpListener, upstream: SocketAddr, delay: Duration, shared: Arc<Shared>) {
    for client in listener.incoming() {
        if shared.closed.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let server = match TcpStream::connect(upstream) {
            Ok(s) => s,
            Err(e) => {
                debug!(error = %e, %upstream, "relay: upstream refused; closing the client");
                continue;
            }
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        for (from, to) in [(&client, &server), (&server, &client)] {
            let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) else {
                continue;
            };
            pipe(from, to, delay, Arc::clone(&shared));
        }
    }
}

/// Copies `from` to `to`, each chunk `delay` late: a reader thread stamps
/// chunks, a writer thread releases them at their deadline.
fn pipe(mut from: TcpStream, mut to: TcpStream, delay: Duration, shared: Arc<Shared>) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let reader_shared = Arc::clone(&shared);
    let spawned = thread::Builder::new()
        .name("relay-read".into())
        .spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if reader_shared.blackhole.load(Ordering::SeqCst) {
                            reader_shared
                                .dropped_bytes
                                .fetch_add(n as u64, Ordering::SeqCst);
                            continue;
                        }
                        if tx
                            .send((Instant::now() + delay, buf[..n].to_vec()))
                            .is_err()
                        {
                            break;
                        }
                    }
                }
            }
            // Dropping `tx` tells the writer the stream ended.
        });
    if spawned.is_err() {
        return;
    }
    let _ = thread::Builder::new()
        .name("relay-write".into())
        .spawn(move || {
            for (due, chunk) in rx {
                let now = Instant::now();
                if due > now {
                    // The impairment itself: hold the chunk until its due time.
                    thread::sleep(due - now);
                }
                if shared.blackhole.load(Ordering::SeqCst) {
                    shared
                        .dropped_bytes
                        .fetch_add(chunk.len() as u64, Ordering::SeqCst);
                    continue;
                }
                if to.write_all(&chunk).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        });
}
