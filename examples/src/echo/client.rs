//! The pipelined echo client: a writer thread sends every frame while the
//! calling thread reads the echoes and checks each one.

use std::io::{BufWriter, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use framing::Config;
use framing::io::{FramedReader, FramedWriter};
use serde::Serialize;
use tracing::info;

use crate::Error;

/// Payload bytes are cut from this cycle, so frame `i` differs from frame
/// `i + 1` and both sides produce it without work.
const CYCLE: usize = 251;

/// How often a long run logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// What the client sends.
#[derive(Debug, Clone, Copy)]
pub struct ClientSettings {
    /// Frames to send.
    pub count: u64,
    /// Payload bytes per frame.
    pub size: usize,
    /// The frame layout (must match the server's).
    pub framing: Config,
}

/// What one client run measured.
#[derive(Debug, Clone, Serialize)]
pub struct ClientReport {
    /// Frames sent and echoed back intact.
    pub messages: u64,
    /// Payload bytes per frame.
    pub size: usize,
    /// Payload bytes echoed back (headers not counted).
    pub payload_bytes: u64,
    /// From connect to the last echo, in seconds.
    pub seconds: f64,
    /// Echoed frames per second.
    pub messages_per_sec: f64,
    /// Echoed payload, in megabytes (10^6 bytes) per second, one direction.
    pub mb_per_sec: f64,
}

/// The bytes of payload `index`: a window into a fixed cycle.
fn payload(pattern: &[u8], index: u64, size: usize) -> &[u8] {
    let start = (index % CYCLE as u64) as usize;
    &pattern[start..start + size]
}

fn pattern(size: usize) -> Vec<u8> {
    (0..size + CYCLE).map(|i| (i % CYCLE) as u8).collect()
}

/// Connects, sends `count` frames of `size` bytes pipelined, checks every
/// echo, and reports rates.
///
/// # Errors
/// Connecting failed, the server closed early or reset the connection
/// (e.g. it refused our frame size), or an echo differs.
pub fn run_client(addr: SocketAddr, settings: ClientSettings) -> Result<ClientReport, Error> {
    let ClientSettings {
        count,
        size,
        framing,
    } = settings;
    if size > framing.max_frame_len() {
        return Err(Error::Settings(format!(
            "--size {size} is over the frame limit of {} bytes",
            framing.max_frame_len()
        )));
    }
    let start = Instant::now();
    let stream =
        TcpStream::connect(addr).map_err(|e| Error::io(format!("connecting to {addr}"), e))?;
    stream
        .set_nodelay(true)
        .map_err(|e| Error::io("setting TCP_NODELAY", e))?;
    let write_half = stream
        .try_clone()
        .map_err(|e| Error::io("cloning the socket", e))?;
    let pattern = pattern(size);

    let received = thread::scope(|scope| {
        let writer = scope.spawn(|| -> Result<(), Error> {
            let buffered = BufWriter::with_capacity(64 * 1024, &write_half);
            let mut out = FramedWriter::new(buffered, framing);
            for index in 0..count {
                out.write_frame(payload(&pattern, index, size))?;
            }
            out.flush()?;
            // No more frames: the server finishes echoing, then closes.
            (&write_half)
                .flush()
                .and_then(|()| write_half.shutdown(Shutdown::Write))
                .map_err(|e| Error::io("shutting down the sending side", e))
        });
        let read = read_echoes(&stream, framing, count, size, &pattern, start);
        let wrote = writer.join().expect("the writer thread does not panic");
        match (read, wrote) {
            (Ok(n), Ok(())) => Ok(n),
            // The reader's error says what the server did; the writer's
            // (a reset, a broken pipe) follows from it.
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(e),
        }
    })?;

    let seconds = start.elapsed().as_secs_f64().max(1e-9);
    let payload_bytes = received * size as u64;
    Ok(ClientReport {
        messages: received,
        size,
        payload_bytes,
        seconds,
        messages_per_sec: received as f64 / seconds,
        mb_per_sec: payload_bytes as f64 / seconds / 1e6,
    })
}

fn read_echoes(
    stream: &TcpStream,
    framing: Config,
    count: u64,
    size: usize,
    pattern: &[u8],
    start: Instant,
) -> Result<u64, Error> {
    let mut reader = FramedReader::new(stream, framing);
    let mut next_progress = start + PROGRESS_EVERY;
    for index in 0..count {
        let echo = match reader.read_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                return Err(Error::ServerClosed {
                    received: index,
                    expected: count,
                });
            }
            Err(source) => {
                return Err(Error::Interrupted {
                    received: index,
                    expected: count,
                    source,
                });
            }
        };
        let sent = payload(pattern, index, size);
        if echo != sent {
            let detail = match echo.iter().zip(sent).position(|(a, b)| a != b) {
                Some(at) => format!("byte {at} is {:#04x}, sent {:#04x}", echo[at], sent[at]),
                None => format!("{} bytes, sent {}", echo.len(), sent.len()),
            };
            return Err(Error::EchoMismatch { index, detail });
        }
        if index % 4096 == 0 && Instant::now() >= next_progress {
            next_progress += PROGRESS_EVERY;
            info!(echoed = index, of = count, "progress");
        }
    }
    // Every echo is in; the server closes after we shut down our side.
    match reader.read_frame() {
        Ok(None) => Ok(count),
        Ok(Some(extra)) => Err(Error::EchoMismatch {
            index: count,
            detail: format!(
                "an extra frame of {} bytes after the last echo",
                extra.len()
            ),
        }),
        Err(e) => Err(e.into()),
    }
}
