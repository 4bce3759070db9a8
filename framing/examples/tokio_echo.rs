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
//!
//! The command line, the messages and the checks are shared with the other
//! echo examples (`examples/common/mod.rs`); this file is the server and the
//! client as tokio tasks.

mod common;

use std::process::ExitCode;

use bytes::Bytes;
use common::{EchoRun, Mode};
use framing::Config;
use framing::tokio::Codec;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

/// Name used in messages.
const PROGRAM: &str = "tokio_echo";

/// Exit status 0 on success, 1 when the run failed, 2 for a bad command line.
fn main() -> ExitCode {
    common::main(PROGRAM, |mode, config| {
        // Time for the pause after a failed accept.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| format!("cannot start the tokio runtime: {e}"))?;
        runtime.block_on(async move {
            match mode {
                Mode::Demo => demo(config).await,
                Mode::Server(addr) => {
                    serve(listen(&addr).await?, config).await;
                    Ok(())
                }
                Mode::Client(addr, count) => client(&addr, count, config).await,
            }
        })
    })
}

/// Server in a task, client in this one.
async fn demo(config: Config) -> Result<(), String> {
    let listener = listen(common::ANY_PORT).await?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    // The server task serves forever; it ends with the runtime.
    tokio::spawn(serve(listener, config));
    client(&addr.to_string(), common::DEFAULT_COUNT, config).await
}

/// Binds `addr` and says where it listens.
async fn listen(addr: &str) -> Result<TcpListener, String> {
    let addr = common::resolve(addr)?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    common::announce(listener.local_addr().map_err(|e| e.to_string())?)?;
    Ok(listener)
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
            // descriptors: log it, and pause rather than spin on a failure
            // that repeats (the client tasks run on meanwhile).
            Err(e) => {
                eprintln!("{PROGRAM}: accept: {e}");
                tokio::time::sleep(common::ACCEPT_BACKOFF).await;
            }
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

/// Sends `count` messages one at a time and checks each echo.
async fn client(addr: &str, count: usize, config: Config) -> Result<(), String> {
    let addr = common::resolve(addr)?;
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut framed = Framed::new(stream, Codec::new(config));
    let mut run = EchoRun::start(count, config);
    for k in 0..count {
        let sent = Bytes::from(run.message(k));
        framed
            .send(sent.clone())
            .await
            .map_err(|e| common::send_failed(k, e))?;
        let echo = framed.next().await.transpose();
        run.check(k, &sent, echo.as_ref().map(Option::as_deref))?;
    }
    let echoed = run.stop();
    framed
        .get_mut()
        .shutdown()
        .await
        .map_err(|e| e.to_string())?;
    let extra = framed.next().await.transpose().map_err(|e| e.to_string())?;
    echoed.report(extra.map(|frame| frame.len()))
}
