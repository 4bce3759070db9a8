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

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::thread;
use std::time::Instant;

use framing::Config;
use framing::io::{FramedReader, FramedWriter};
use framing::nonblocking::{DEFAULT_MAX_QUEUED, FramedStream, ReadStatus};
use mio::net::{TcpListener, TcpStream as MioStream};
use mio::{Events, Interest, Poll, Token};

/// Name used in messages.
const PROGRAM: &str = "mio_echo";

/// Messages sent by default.
const DEFAULT_COUNT: usize = 100;

/// Message sizes, in turn: empty, small, both sides of 16384 (where Python
/// splits header and payload into two writes), and larger than any one read.
const SIZES: [usize; 10] = [0, 1, 5, 64, 1000, 16384, 16385, 65535, 100_000, 300_000];

/// What `--help` and a bad command line print.
const USAGE: &str = "\
usage: mio_echo [demo] [--preset P]
       mio_echo server [ADDR] [--preset P]
       mio_echo client ADDR [N] [--preset P]
  ADDR  host:port; the server's default is 127.0.0.1:0 (any free port)
  N     number of messages the client sends (default 100)
  P     length prefix: u32 (default), u16, varint or python";

/// What the command line asks for.
enum Mode {
    /// Server and client in one process.
    Demo,
    /// Serve on this address.
    Server(String),
    /// Connect to this address and send this many messages.
    Client(String, usize),
}

/// Exit status 0 on success, 1 when the run failed, 2 for a bad command line.
fn main() -> ExitCode {
    if std::env::args().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let (mode, config) = match parse_args(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(msg) => {
            eprintln!("{PROGRAM}: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match mode {
        Mode::Demo => demo(config),
        Mode::Server(addr) => server(&addr, config),
        Mode::Client(addr, count) => client(&addr, count, config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("{PROGRAM}: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Reads `[MODE [ARGS]] [--preset P]`, the option anywhere.
fn parse_args(args: impl Iterator<Item = String>) -> Result<(Mode, Config), String> {
    let mut config = Config::u32_be();
    let mut positional = Vec::new();
    let mut args = args;
    while let Some(arg) = args.next() {
        if arg == "--preset" {
            let name = args.next().ok_or("--preset needs a value")?;
            config = preset(&name)?;
        } else if let Some(name) = arg.strip_prefix("--preset=") {
            config = preset(name)?;
        } else if arg.starts_with('-') {
            return Err(format!("unknown option {arg:?}"));
        } else {
            positional.push(arg);
        }
    }
    let mode = match positional.as_slice() {
        [] => Mode::Demo,
        [m] if m == "demo" => Mode::Demo,
        [m] if m == "server" => Mode::Server("127.0.0.1:0".into()),
        [m, addr] if m == "server" => Mode::Server(addr.clone()),
        [m] if m == "client" => return Err("client needs the server's ADDR".into()),
        [m, addr] if m == "client" => Mode::Client(addr.clone(), DEFAULT_COUNT),
        [m, addr, n] if m == "client" => {
            let count = n
                .parse()
                .map_err(|_| format!("N is {n:?}; expected a whole number of messages"))?;
            Mode::Client(addr.clone(), count)
        }
        [m, ..] if ["demo", "server", "client"].contains(&m.as_str()) => {
            return Err(format!("too many arguments for {m}"));
        }
        [m, ..] => {
            return Err(format!(
                "unknown mode {m:?}; expected demo, server or client"
            ));
        }
    };
    Ok((mode, config))
}

/// The layout a `--preset` name stands for.
fn preset(name: &str) -> Result<Config, String> {
    match name {
        "u32" => Ok(Config::u32_be()),
        "u16" => Ok(Config::u16_be()),
        "varint" => Ok(Config::varint()),
        "python" => Ok(Config::python()),
        _ => Err(format!(
            "unknown preset {name:?}; expected u32, u16, varint or python"
        )),
    }
}

/// The first address `addr` resolves to.
fn resolve(addr: &str) -> Result<SocketAddr, String> {
    addr.to_socket_addrs()
        .map_err(|e| format!("address {addr:?}: {e}; expected host:port such as 127.0.0.1:7000"))?
        .next()
        .ok_or_else(|| format!("address {addr:?} resolves to nothing"))
}

/// Server in a thread, client in this one.
fn demo(config: Config) -> Result<(), String> {
    let listener = listen("127.0.0.1:0")?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    // The server thread serves forever; it ends with the process.
    thread::spawn(move || {
        if let Err(e) = serve(listener, config) {
            eprintln!("{PROGRAM}: {e}");
        }
    });
    client(&addr.to_string(), DEFAULT_COUNT, config)
}

/// Binds `addr` and says where it listens.
fn listen(addr: &str) -> Result<TcpListener, String> {
    let addr = resolve(addr)?;
    let listener = TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on {local}");
    // A parent process reading our stdout through a pipe waits for this line.
    io::stdout().flush().map_err(|e| e.to_string())?;
    Ok(listener)
}

/// `server ADDR`: listens on `ADDR` and serves until killed.
fn server(addr: &str, config: Config) -> Result<(), String> {
    serve(listen(addr)?, config)
}

/// The listener's token; clients get 1, 2, ...
const LISTENER: Token = Token(0);

/// Most readiness events taken from one `poll`.
const EVENTS_PER_POLL: usize = 256;

/// One connected client.
struct Client {
    stream: FramedStream<MioStream>,
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
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if interrupted(&e) {
                continue;
            }
            return Err(format!("poll: {e}"));
        }
        for event in &events {
            let token = event.token();
            if token == LISTENER {
                accept_all(&listener, &poll, &mut clients, &mut next_token, config);
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
fn accept_all(
    listener: &TcpListener,
    poll: &Poll,
    clients: &mut HashMap<Token, Client>,
    next_token: &mut usize,
    config: Config,
) {
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
            Err(e) if would_block(&e) => return,
            Err(e) if interrupted(&e) => {}
            // A connection reset before it was accepted, or out of file
            // descriptors: log it and wait for the next event.
            Err(e) => {
                eprintln!("{PROGRAM}: accept: {e}");
                return;
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

/// Message `k`: its size from [`SIZES`], capped at what the layout can carry,
/// byte `i` being `(7 i + k) mod 256`.
fn message(k: usize, config: &Config) -> Vec<u8> {
    let cap = match config.length_field() {
        framing::LengthField::Fixed { width, .. } if width < 8 => (1usize << (8 * width)) - 1,
        _ => usize::MAX,
    };
    let len = SIZES[k % SIZES.len()].min(cap).min(config.max_frame_len());
    (0..len).map(|i| ((i * 7 + k) % 256) as u8).collect()
}

/// Sends `count` messages one at a time and checks each echo (blocking:
/// the client needs no event loop).
fn client(addr: &str, count: usize, config: Config) -> Result<(), String> {
    let addr = resolve(addr)?;
    let stream = TcpStream::connect(addr).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut reader = FramedReader::new(stream.try_clone().map_err(|e| e.to_string())?, config);
    let mut writer = FramedWriter::new(stream, config);
    let started = Instant::now();
    let mut bytes = 0;
    for k in 0..count {
        let sent = message(k, &config);
        writer
            .write_frame(&sent)
            .map_err(|e| format!("sending message {k}: {e}"))?;
        let echo = reader
            .read_frame()
            .map_err(|e| format!("reading echo {k}: {e}"))?
            .ok_or_else(|| format!("server closed the connection after {k} of {count} echoes"))?;
        check_echo(k, &sent, echo)?;
        bytes += sent.len();
    }
    let elapsed = started.elapsed();
    writer
        .get_ref()
        .shutdown(Shutdown::Write)
        .map_err(|e| e.to_string())?;
    if let Some(extra) = reader.read_frame().map_err(|e| e.to_string())? {
        return Err(format!(
            "server sent an unexpected frame of {} bytes",
            extra.len()
        ));
    }
    println!(
        "echoed {count} frames, {bytes} bytes, in {:.1} ms",
        elapsed.as_secs_f64() * 1e3
    );
    Ok(())
}

/// `Ok` when `echo` is `sent`; otherwise where they part.
fn check_echo(k: usize, sent: &[u8], echo: &[u8]) -> Result<(), String> {
    if echo == sent {
        return Ok(());
    }
    let at = sent.iter().zip(echo).take_while(|(a, b)| a == b).count();
    Err(format!(
        "echo {k} differs: {} bytes, expected {}; first difference at byte {at}",
        echo.len(),
        sent.len()
    ))
}
