//! What the three echo examples share, so that each example file keeps only
//! its own way in (blocking threads, a `mio` loop, tokio tasks):
//!
//! - the command line: [`Mode`], `--preset`, the usage text, exit statuses
//!   ([`main`]);
//! - the server's socket: binding it, its `listening on <addr>` line
//!   ([`listen`], [`announce`]) and the pause after a failed `accept`
//!   ([`ACCEPT_BACKOFF`]);
//! - the messages the client sends, how it checks their echoes and its
//!   summary line ([`EchoRun`]), and the blocking client itself
//!   ([`blocking_client`]), which the `mio` example uses too.
//!
//! Cargo does not build `examples/common/mod.rs` as an example of its own:
//! each example includes it with `mod common;`.

// Each example compiles this module on its own and uses its own part of it.
#![allow(dead_code)]

use std::fmt::Display;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use framing::io::{FramedReader, FramedWriter};
use framing::{Config, LengthField};

/// Messages the client sends by default, and in `demo` mode.
pub(crate) const DEFAULT_COUNT: usize = 100;

/// Where the server listens by default, and in `demo` mode: any free port.
pub(crate) const ANY_PORT: &str = "127.0.0.1:0";

/// Message sizes, in turn: empty, small, both sides of 16384 (where Python
/// splits header and payload into two writes), and larger than any one read.
const SIZES: [usize; 10] = [0, 1, 5, 64, 1000, 16384, 16385, 65535, 100_000, 300_000];

/// How long a server waits after a failed `accept` before it accepts again.
///
/// Some failures repeat until something else changes (out of file
/// descriptors, `EMFILE` and `ENFILE`; out of buffers, `ENOBUFS` and
/// `ENOMEM`): accepting again at once would spin and fill the log. A
/// connection reset before it was accepted costs one such pause.
pub(crate) const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What the command line asks for.
pub(crate) enum Mode {
    /// Server and client in one process.
    Demo,
    /// Serve on this address.
    Server(String),
    /// Connect to this address and send this many messages.
    Client(String, usize),
}

/// What `--help` and a bad command line print for `program`.
pub(crate) fn usage(program: &str) -> String {
    format!(
        "\
usage: {program} [demo] [--preset P]
       {program} server [ADDR] [--preset P]
       {program} client ADDR [N] [--preset P]
  ADDR  host:port; the server's default is {ANY_PORT} (any free port)
  N     number of messages the client sends (default {DEFAULT_COUNT})
  P     length prefix: u32 (default), u16, varint or python"
    )
}

/// Runs the example `program` on this process's command line: `-h` or
/// `--help` prints the usage; otherwise `run` does the mode asked for.
///
/// Exit status 0 on success, 1 when `run` fails (its message goes to stderr
/// after the program's name), 2 for a bad command line (what was wrong,
/// then the usage).
pub(crate) fn main(
    program: &str,
    run: impl FnOnce(Mode, Config) -> Result<(), String>,
) -> ExitCode {
    if std::env::args().any(|a| a == "-h" || a == "--help") {
        println!("{}", usage(program));
        return ExitCode::SUCCESS;
    }
    let (mode, config) = match parse_args(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(msg) => {
            eprintln!("{program}: {msg}\n{}", usage(program));
            return ExitCode::from(2);
        }
    };
    match run(mode, config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("{program}: {msg}");
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
        [m] if m == "server" => Mode::Server(ANY_PORT.into()),
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
pub(crate) fn resolve(addr: &str) -> Result<SocketAddr, String> {
    addr.to_socket_addrs()
        .map_err(|e| format!("address {addr:?}: {e}; expected host:port such as 127.0.0.1:7000"))?
        .next()
        .ok_or_else(|| format!("address {addr:?} resolves to nothing"))
}

/// Binds a listener of either blocking kind (`std::net` or `mio::net`) to
/// `addr` with `bind`, and says where it listens ([`announce`]).
pub(crate) fn listen<L>(
    addr: &str,
    bind: impl FnOnce(SocketAddr) -> io::Result<L>,
    local_addr: impl FnOnce(&L) -> io::Result<SocketAddr>,
) -> Result<L, String> {
    let addr = resolve(addr)?;
    let listener = bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    announce(local_addr(&listener).map_err(|e| e.to_string())?)?;
    Ok(listener)
}

/// Prints `listening on <local>` and flushes it: a parent process reading
/// our stdout through a pipe waits for this line.
pub(crate) fn announce(local: SocketAddr) -> Result<(), String> {
    println!("listening on {local}");
    std::io::stdout().flush().map_err(|e| e.to_string())
}

/// `demo` for a server that runs on its own thread: `serve` serves on
/// `server` forever while the blocking client runs in this thread; the
/// server ends with the process.
pub(crate) fn demo_with_server_thread(
    server: SocketAddr,
    config: Config,
    serve: impl FnOnce() + Send + 'static,
) -> Result<(), String> {
    thread::spawn(serve);
    blocking_client(&server.to_string(), DEFAULT_COUNT, config)
}

/// What `sending message k` failed with.
pub(crate) fn send_failed(k: usize, e: impl Display) -> String {
    format!("sending message {k}: {e}")
}

/// A client's run: the messages it sends, the echoes checked so far, and
/// how long they took.
pub(crate) struct EchoRun {
    /// Messages to send.
    count: usize,
    /// The layout, which caps message sizes.
    config: Config,
    /// When the first message went out.
    started: Instant,
    /// Bytes echoed correctly so far.
    bytes: usize,
}

impl EchoRun {
    /// Starts the clock for `count` messages in layout `config`.
    pub(crate) fn start(count: usize, config: Config) -> EchoRun {
        EchoRun {
            count,
            config,
            started: Instant::now(),
            bytes: 0,
        }
    }

    /// Message `k`: its size from [`SIZES`], capped at what the layout can
    /// carry, byte `i` being `(7 i + k) mod 256`.
    pub(crate) fn message(&self, k: usize) -> Vec<u8> {
        let cap = match self.config.length_field() {
            LengthField::Fixed { width, .. } if width < 8 => (1usize << (8 * width)) - 1,
            _ => usize::MAX,
        };
        let len = SIZES[k % SIZES.len()]
            .min(cap)
            .min(self.config.max_frame_len());
        (0..len).map(|i| ((i * 7 + k) % 256) as u8).collect()
    }

    /// Checks what reading echo `k` gave: `Ok(None)` means the server closed
    /// the connection. `Ok` only when the echo is `sent`, byte for byte;
    /// otherwise says where they part.
    pub(crate) fn check<E: Display>(
        &mut self,
        k: usize,
        sent: &[u8],
        echo: Result<Option<&[u8]>, E>,
    ) -> Result<(), String> {
        let echo = echo
            .map_err(|e| format!("reading echo {k}: {e}"))?
            .ok_or_else(|| {
                format!(
                    "server closed the connection after {k} of {} echoes",
                    self.count
                )
            })?;
        if echo != sent {
            let at = sent.iter().zip(echo).take_while(|(a, b)| a == b).count();
            return Err(format!(
                "echo {k} differs: {} bytes, expected {}; first difference at byte {at}",
                echo.len(),
                sent.len()
            ));
        }
        self.bytes += sent.len();
        Ok(())
    }

    /// Stops the clock after the last echo, before the connection closes.
    pub(crate) fn stop(self) -> Echoed {
        Echoed {
            count: self.count,
            bytes: self.bytes,
            elapsed: self.started.elapsed(),
        }
    }
}

/// A finished run, to report once the connection has closed.
pub(crate) struct Echoed {
    /// Messages echoed.
    count: usize,
    /// Their bytes.
    bytes: usize,
    /// From the first message sent to the last echo checked.
    elapsed: Duration,
}

impl Echoed {
    /// Prints the summary line, given the length of a frame the server sent
    /// after the last echo (`None` when it closed cleanly instead); such a
    /// frame is an error.
    pub(crate) fn report(self, extra: Option<usize>) -> Result<(), String> {
        if let Some(len) = extra {
            return Err(format!("server sent an unexpected frame of {len} bytes"));
        }
        println!(
            "echoed {} frames, {} bytes, in {:.1} ms",
            self.count,
            self.bytes,
            self.elapsed.as_secs_f64() * 1e3
        );
        Ok(())
    }
}

/// The client over blocking `std::net` and `framing::io` (it needs no event
/// loop): sends `count` messages to `addr` one at a time, checks each echo,
/// closes its side and prints the summary.
pub(crate) fn blocking_client(addr: &str, count: usize, config: Config) -> Result<(), String> {
    let addr = resolve(addr)?;
    let stream = TcpStream::connect(addr).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    // Small messages must not wait for a delayed ACK.
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut reader = FramedReader::new(stream.try_clone().map_err(|e| e.to_string())?, config);
    let mut writer = FramedWriter::new(stream, config);
    let mut run = EchoRun::start(count, config);
    for k in 0..count {
        let sent = run.message(k);
        writer.write_frame(&sent).map_err(|e| send_failed(k, e))?;
        run.check(k, &sent, reader.read_frame())?;
    }
    let echoed = run.stop();
    writer
        .get_ref()
        .shutdown(Shutdown::Write)
        .map_err(|e| e.to_string())?;
    let extra = reader.read_frame().map_err(|e| e.to_string())?;
    echoed.report(extra.map(<[u8]>::len))
}
