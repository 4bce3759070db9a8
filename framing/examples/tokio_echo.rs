//! cargo run -p framing --features tokio --example tokio_echo
//!
//! ```text
//! cargo run -p framing --features tokio --example tokio_echo -- server 127.0.0.1:7000 --preset python
//! cargo run -p framing --features tokio --example tokio_echo -- client 127.0.0.1:7000 100 --preset python
//! ```
//!
//! A framed echo server and client on tokio's current-thread runtime, with
//! tokio-util's `Framed` and `framing::tokio::Codec`; the server spawns a
//! task per client.
//!
//! - `server [ADDR]` listens (default `127.0.0.1:0`, any free port), prints
//!   `listening on <addr>` and echoes every frame of every client until
//!   killed. A client that sends a bad frame is dropped, the error logged to
//!   stderr; the others go on.
//! - `client ADDR [N]` sends `N` messages (default 100) of sizes from 0 bytes
//!   to 300 000, checks every echo byte for byte and prints a summary.
//! - `demo` (or no arguments) runs both in one process.

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Instant;

use bytes::Bytes;
use framing::Config;
use framing::tokio::Codec;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

/// Name used in messages.
const PROGRAM: &str = "tokio_echo";

/// Messages sent by default.
const DEFAULT_COUNT: usize = 100;

/// Message sizes, in turn: empty, small, both sides of 16384 (where Python
/// splits header and payload into two writes), and larger than any one read.
const SIZES: [usize; 10] = [0, 1, 5, 64, 1000, 16384, 16385, 65535, 100_000, 300_000];

/// What `--help` and a bad command line print.
const USAGE: &str = "\
usage: tokio_echo [demo] [--preset P]
       tokio_echo server [ADDR] [--preset P]
       tokio_echo client ADDR [N] [--preset P]
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
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{PROGRAM}: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match mode {
            Mode::Demo => demo(config).await,
            Mode::Server(addr) => server(&addr, config).await,
            Mode::Client(addr, count) => client(&addr, count, config).await,
        }
    });
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

/// Server in a task, client in this one.
async fn demo(config: Config) -> Result<(), String> {
    let listener = listen("127.0.0.1:0").await?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    // The server task serves forever; it ends with the runtime.
    tokio::spawn(serve(listener, config));
    client(&addr.to_string(), DEFAULT_COUNT, config).await
}

/// Binds `addr` and says where it listens.
async fn listen(addr: &str) -> Result<TcpListener, String> {
    let addr = resolve(addr)?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on {local}");
    // A parent process reading our stdout through a pipe waits for this line.
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    Ok(listener)
}

/// `server ADDR`: listens on `ADDR` and serves until killed.
async fn server(addr: &str, config: Config) -> Result<(), String> {
    serve(listen(addr).await?, config).await;
    Ok(())
}

/// Accepts clients forever, each echoed in its own task.
async fn serve(listener: TcpListener, config: Config) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio::spawn(async move {
                    if let Err(e) = echo(stream, config).await {
                        eprintln!("{PROGRAM}: client {peer}: {e}");
                    }
                });
            }
            // A client that reset before we accepted it, or out of file
            // descriptors: log it and go on.
            Err(e) => eprintln!("{PROGRAM}: accept: {e}"),
        }
    }
}

/// Sends every frame back until the client closes between frames.
///
/// Each echo is queued with `feed`; the socket is flushed only once no
/// further frame is ready, so a burst of small frames goes back in one write.
async fn echo(stream: TcpStream, config: Config) -> Result<(), framing::Error> {
    // Echoes of small frames must not wait for a delayed ACK.
    stream.set_nodelay(true)?;
    let mut framed = Framed::new(stream, Codec::new(config));
    while let Some(frame) = framed.next().await {
        framed.feed(frame?).await?;
        // `now_or_never`: a frame already buffered, or bytes already in the
        // socket, without waiting for more.
        while let Some(Some(frame)) = framed.next().now_or_never() {
            framed.feed(frame?).await?;
        }
        // The codec encodes several item types: say which sink is flushed.
        SinkExt::<Bytes>::flush(&mut framed).await?;
    }
    Ok(())
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

/// Sends `count` messages one at a time and checks each echo.
async fn client(addr: &str, count: usize, config: Config) -> Result<(), String> {
    let addr = resolve(addr)?;
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut framed = Framed::new(stream, Codec::new(config));
    let started = Instant::now();
    let mut bytes = 0;
    for k in 0..count {
        let sent = Bytes::from(message(k, &config));
        framed
            .send(sent.clone())
            .await
            .map_err(|e| format!("sending message {k}: {e}"))?;
        let echo = framed
            .next()
            .await
            .ok_or_else(|| format!("server closed the connection after {k} of {count} echoes"))?
            .map_err(|e| format!("reading echo {k}: {e}"))?;
        check_echo(k, &sent, &echo)?;
        bytes += sent.len();
    }
    let elapsed = started.elapsed();
    framed
        .get_mut()
        .shutdown()
        .await
        .map_err(|e| e.to_string())?;
    if let Some(extra) = framed.next().await {
        let extra = extra.map_err(|e| e.to_string())?;
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
