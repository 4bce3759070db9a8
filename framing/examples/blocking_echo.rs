//! cargo run -p framing --example blocking_echo
//!
//! ```text
//! cargo run -p framing --example blocking_echo -- server 127.0.0.1:7000 --preset u32
//! cargo run -p framing --example blocking_echo -- client 127.0.0.1:7000 100 --preset u32
//! ```
//!
//! A framed echo server and client over blocking `std::net` sockets, with
//! `framing::io::{FramedReader, FramedWriter}` and a thread per client.
//!
//! - `server [ADDR]` listens (default `127.0.0.1:0`, any free port), prints
//!   `listening on <addr>` and echoes every frame of every client until
//!   killed. A client that sends a bad frame is dropped, the error logged to
//!   stderr; the others go on.
//! - `client ADDR [N]` sends `N` messages (default 100) of sizes from 0 bytes
//!   to 300 000, checks every echo byte for byte and prints a summary.
//! - `demo` (or no arguments) runs both in one process.
//!
//! The command line, the messages and the client are shared with the other
//! echo examples (`examples/common/mod.rs`); this file is the server.

mod common;

use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::thread;

use common::Mode;
use framing::Config;
use framing::io::{FramedReader, FramedWriter};

/// Name used in messages.
const PROGRAM: &str = "blocking_echo";

/// Exit status 0 on success, 1 when the run failed, 2 for a bad command line.
fn main() -> ExitCode {
    common::main(PROGRAM, |mode, config| match mode {
        Mode::Demo => {
            let listener = listen(common::ANY_PORT)?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            common::demo_with_server_thread(addr, config, move || serve(listener, config))
        }
        Mode::Server(addr) => {
            serve(listen(&addr)?, config);
            Ok(())
        }
        Mode::Client(addr, count) => common::blocking_client(&addr, count, config),
    })
}

/// Binds `addr` and says where it listens.
fn listen(addr: &str) -> Result<TcpListener, String> {
    common::listen(addr, TcpListener::bind, TcpListener::local_addr)
}

/// Accepts clients forever, each echoed in its own thread.
fn serve(listener: TcpListener, config: Config) {
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                thread::spawn(move || {
                    let peer = stream.peer_addr().map_or("?".into(), |a| a.to_string());
                    if let Err(e) = echo(stream, config) {
                        eprintln!("{PROGRAM}: client {peer}: {e}");
                    }
                });
            }
            // A client that reset before we accepted it, or out of file
            // descriptors: log it, and pause rather than spin on a failure
            // that repeats.
            Err(e) => {
                eprintln!("{PROGRAM}: accept: {e}");
                thread::sleep(common::ACCEPT_BACKOFF);
            }
        }
    }
}

/// Sends every frame back until the client closes between frames.
fn echo(stream: TcpStream, config: Config) -> Result<(), framing::Error> {
    // Echoes of small frames must not wait for a delayed ACK.
    stream.set_nodelay(true)?;
    let mut reader = FramedReader::new(stream.try_clone()?, config);
    let mut writer = FramedWriter::new(stream, config);
    while let Some(frame) = reader.read_frame()? {
        writer.write_frame(frame)?;
    }
    Ok(())
}
