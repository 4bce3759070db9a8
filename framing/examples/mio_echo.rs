//! cargo run -p framing --example mio_echo
//!
//! ```text
//! cargo run -p framing --example mio_echo -- server 127.0.0.1:7000 --preset u32
//! cargo run -p framing --example mio_echo -- client 127.0.0.1:7000 100 --preset u32
//! ```
//!
//! A framed echo server on one thread for any number of clients:
//! `framing::nonblocking::FramedStream` over `mio::net::TcpStream`, driven by
//! a `mio::Poll`. The client side is blocking `std::net` with
//! `framing::io`.
//!
//! - `server [ADDR]` listens (default `127.0.0.1:0`, any free port), prints
//!   `listening on <addr>` and echoes every frame of every client until
//!   killed. A client that sends a bad frame is dropped, the error logged to
//!   stderr; the others go on.
//! - `client ADDR [N]` sends `N` messages (default 100) of sizes from 0 bytes
//!   to 300 000, checks every echo byte for byte and prints a summary.
//! - `demo` (or no arguments) runs both in one process.
//!
//! Each outgoing queue is bounded ([`DEFAULT_MAX_QUEUED`]): a client that
//! sends faster than it reads its echoes finds the server no longer reading
//! from it until the echoes drain, instead of the server's memory growing.
//!
//! The command line, the messages and the client are shared with the other
//! echo examples (`examples/common/mod.rs`); this file is the server.

mod common;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Instant;

use common::Mode;
use framing::Config;
use framing::nonblocking::{DEFAULT_MAX_QUEUED, FramedStream, ReadStatus};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

/// Name used in messages.
const PROGRAM: &str = "mio_echo";

/// The listener's token; clients get 1, 2, ...
const LISTENER: Token = Token(0);

/// Most readiness events taken from one `poll`.
const EVENTS_PER_POLL: usize = 256;

/// Exit status 0 on success, 1 when the run failed, 2 for a bad command line.
fn main() -> ExitCode {
    common::main(PROGRAM, |mode, config| match mode {
        Mode::Demo => {
            let listener = listen(common::ANY_PORT)?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            common::demo_with_server_thread(addr, config, move || {
                if let Err(e) = serve(listener, config) {
                    eprintln!("{PROGRAM}: {e}");
                }
            })
        }
        Mode::Server(addr) => serve(listen(&addr)?, config),
        Mode::Client(addr, count) => common::blocking_client(&addr, count, config),
    })
}

/// Binds `addr` and says where it listens.
fn listen(addr: &str) -> Result<TcpListener, String> {
    common::listen(addr, TcpListener::bind, TcpListener::local_addr)
}

/// One connected client.
struct Client {
    stream: FramedStream<TcpStream>,
    peer: SocketAddr,
    /// The client closed its side; echoes may still be queued.
    read_closed: bool,
}

/// Serves every client from this one thread, forever; returns only if
/// polling itself fails.
fn serve(mut listener: TcpListener, config: Config) -> Result<(), String> {
    let mut poll = Poll::new().map_err(|e| format!("cannot create a poll: {e}"))?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .map_err(|e| format!("cannot register the listener: {e}"))?;
    let mut events = Events::with_capacity(EVENTS_PER_POLL);
    let mut clients: HashMap<Token, Client> = HashMap::new();
    let mut next_token = LISTENER.0 + 1;
    // After a failed accept: when to accept again. Sleeping instead would
    // stall every client on this thread.
    let mut accept_paused_until: Option<Instant> = None;
    loop {
        let timeout = accept_paused_until.map(|at| at.saturating_duration_since(Instant::now()));
        if let Err(e) = poll.poll(&mut events, timeout) {
            if interrupted(&e) {
                continue;
            }
            return Err(format!("poll: {e}"));
        }
        // The connections still pending raise no new event: take them now.
        if accept_paused_until.is_some_and(|at| Instant::now() >= at) {
            accept_paused_until =
                accept_all(&listener, &poll, &mut clients, &mut next_token, config);
        }
        for event in &events {
            let token = event.token();
            if token == LISTENER {
                // While paused, the pending connections wait for the retry.
                if accept_paused_until.is_none() {
                    accept_paused_until =
                        accept_all(&listener, &poll, &mut clients, &mut next_token, config);
                }
                continue;
            }
            // An event for a client removed earlier in this batch.
            let Some(client) = clients.get_mut(&token) else {
                continue;
            };
            let done = match client.drive() {
                Ok(done) => done,
                Err(e) => {
                    eprintln!("{PROGRAM}: client {}: {e}", client.peer);
                    true
                }
            };
            if done && let Some(mut client) = clients.remove(&token) {
                // Dropping the socket would deregister it too; saying so is clearer.
                let _ = poll.registry().deregister(client.stream.get_mut());
            }
        }
    }
}

/// Accepts every pending connection and registers it for both directions.
/// mio's readiness is edge-triggered: each event means "something changed",
/// and [`Client::drive`] does all it can whichever it was.
///
/// Returns `None` once no connection is pending, or, when `accept` failed,
/// the time to accept again (see [`common::ACCEPT_BACKOFF`]).
fn accept_all(
    listener: &TcpListener,
    poll: &Poll,
    clients: &mut HashMap<Token, Client>,
    next_token: &mut usize,
    config: Config,
) -> Option<Instant> {
    loop {
        match listener.accept() {
            Ok((mut socket, peer)) => {
                // Echoes of small frames must not wait for a delayed ACK.
                if let Err(e) = socket.set_nodelay(true) {
                    eprintln!("{PROGRAM}: client {peer}: TCP_NODELAY: {e}");
                }
                let token = Token(*next_token);
                *next_token += 1;
                if let Err(e) = poll.registry().register(
                    &mut socket,
                    token,
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    eprintln!("{PROGRAM}: client {peer}: cannot register: {e}");
                    continue;
                }
                let stream = FramedStream::with_max_queued(socket, config, DEFAULT_MAX_QUEUED);
                clients.insert(
                    token,
                    Client {
                        stream,
                        peer,
                        read_closed: false,
                    },
                );
            }
            // No more pending connections until the next event.
            Err(e) if would_block(&e) => return None,
            Err(e) if interrupted(&e) => {}
            // A connection reset before it was accepted, or out of file
            // descriptors: log it and pause rather than spin on a failure
            // that repeats.
            Err(e) => {
                eprintln!("{PROGRAM}: accept: {e}");
                return Some(Instant::now() + common::ACCEPT_BACKOFF);
            }
        }
    }
}

impl Client {
    /// Reads what the client sent, queues its echoes and writes what the
    /// socket takes. Returns `true` when the client is done: it closed its
    /// side and every echo is written.
    fn drive(&mut self) -> Result<bool, framing::Error> {
        loop {
            let mut paused = false;
            if !self.read_closed {
                match self
                    .stream
                    .read_frames(|frame, outbox| outbox.send(frame))?
                {
                    ReadStatus::Open => {}
                    ReadStatus::Paused => paused = true,
                    ReadStatus::Closed => self.read_closed = true,
                }
            }
            let drained = self.stream.write_ready()?;
            // Reading stopped at a full queue and writing has made room: mio
            // will not report the bytes already waiting a second time, so read
            // them now.
            if paused && !self.stream.outbox().is_full() {
                continue;
            }
            return Ok(self.read_closed && drained);
        }
    }
}

/// `WouldBlock`: the socket is not actually ready; wait for the next event.
fn would_block(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::WouldBlock
}

/// `Interrupted`: a signal arrived during the call; try again.
fn interrupted(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::Interrupted
}
