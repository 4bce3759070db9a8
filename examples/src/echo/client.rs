//! The pipelined echo client: a writer thread sends every frame while the
//! calling thread reads the echoes and checks each one.

use std::io::{self, BufWriter, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// Default for [`ClientSettings::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the client sends.
#[derive(Debug, Clone, Copy)]
pub struct ClientSettings {
    /// Frames to send.
    pub count: u64,
    /// Payload bytes per frame.
    pub size: usize,
    /// The frame layout (must match the server's).
    pub framing: Config,
    /// Longest wait for the connection, for the server to take bytes, and
    /// for the next echo bytes; past it the run fails with
    /// [`Error::Timeout`]. Above zero.
    pub timeout: Duration,
}

/// What one client run measured.
#[derive(Debug, Clone, Serialize)]
pub struct ClientReport {
    /// Frames sent and echoed back intact.
    pub messages: u64,
    /// Payload bytes per frame (JSON `size_bytes`).
    #[serde(rename = "size_bytes")]
    pub size: usize,
    /// Payload bytes echoed back (headers not counted).
    pub payload_bytes: u64,
    /// From connect to the last echo, in seconds (JSON `duration_s`).
    #[serde(rename = "duration_s")]
    pub seconds: f64,
    /// Echoed frames per second (JSON `messages_per_s`).
    #[serde(rename = "messages_per_s")]
    pub messages_per_sec: f64,
    /// Echoed payload, in megabytes (10^6 bytes) per second, one direction
    /// (JSON `mb_per_s`).
    #[serde(rename = "mb_per_s")]
    pub mb_per_sec: f64,
    /// Stopped early by [`run_client_until`]'s flag: fewer than the frames
    /// asked for were sent, every one of them echoed and verified.
    pub interrupted: bool,
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
    run_client_until(addr, settings, &AtomicBool::new(false))
}

/// [`run_client`], ending early once `stop` is set (a SIGINT/SIGTERM
/// flag): no frame is sent after it, the echoes of those sent are read
/// and verified, and the report counts them.
///
/// # Errors
/// As [`run_client`].
pub fn run_client_until(
    addr: SocketAddr,
    settings: ClientSettings,
    stop: &AtomicBool,
) -> Result<ClientReport, Error> {
    let ClientSettings {
        count,
        size,
        framing,
        timeout,
    } = settings;
    if timeout.is_zero() {
        return Err(Error::Settings(
            "the timeout is 0: it must be above zero".to_owned(),
        ));
    }
    let largest = crate::preset::largest_payload(&framing);
    if size > largest {
        return Err(Error::Settings(format!(
            "--size {size} is over the largest frame of this layout: {largest} bytes"
        )));
    }
    let start = Instant::now();
    let stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| {
        if timed_out(&e) {
            Error::Timeout {
                addr,
                waited_ms: timeout.as_millis() as u64,
                doing: "connecting".to_owned(),
                received: 0,
                expected: count,
            }
        } else {
            Error::io(format!("connecting to {addr}"), e)
        }
    })?;
    stream
        .set_nodelay(true)
        .map_err(|e| Error::io("setting TCP_NODELAY", e))?;
    // A server that accepts and then stays silent would otherwise keep the
    // reader (and, once its buffers fill, the writer) waiting for ever.
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| Error::io("setting the socket timeouts", e))?;
    let received = exchange(&stream, addr, settings, start, stop)?;

    let seconds = start.elapsed().as_secs_f64().max(1e-9);
    let payload_bytes = received * size as u64;
    Ok(ClientReport {
        messages: received,
        size,
        payload_bytes,
        seconds,
        messages_per_sec: received as f64 / seconds,
        mb_per_sec: payload_bytes as f64 / seconds / 1e6,
        interrupted: received < count,
    })
}

/// Sends every frame from a writer thread while this thread reads and
/// checks the echoes. Whichever side fails first ends the other: the
/// reader's failure shuts the socket down under the writer, and a writer
/// that fails while the connection is sound (a frame its layout cannot
/// carry) shuts it down under the reader, which would otherwise wait for
/// echoes that never come. Returns the echoes received.
fn exchange(
    stream: &TcpStream,
    addr: SocketAddr,
    settings: ClientSettings,
    start: Instant,
    stop: &AtomicBool,
) -> Result<u64, Error> {
    let ClientSettings {
        count,
        size,
        framing,
        timeout,
    } = settings;
    let write_half = stream
        .try_clone()
        .map_err(|e| Error::io("cloning the socket", e))?;
    let pattern = pattern(size);
    let progress = Progress {
        echoed: AtomicU64::new(0),
        sent: AtomicU64::new(UNKNOWN),
        stop,
    };
    let timeout_error = |doing: &str, received: u64| Error::Timeout {
        addr,
        waited_ms: timeout.as_millis() as u64,
        doing: doing.to_owned(),
        received,
        expected: count,
    };

    thread::scope(|scope| {
        let writer = scope.spawn(|| -> Result<(), Error> {
            let sent = (|| {
                let buffered = BufWriter::with_capacity(64 * 1024, &write_half);
                let mut out = FramedWriter::new(buffered, framing);
                let mut index = 0;
                while index < count {
                    // A load per frame is cheap, but not free at millions
                    // of frames a second.
                    if index % 64 == 0 && progress.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    out.write_frame(payload(&pattern, index, size))?;
                    index += 1;
                }
                out.flush()?;
                // Before the shutdown, hence before the server's EOF.
                progress.sent.store(index, Ordering::SeqCst);
                // No more frames: the server finishes echoing, then closes.
                (&write_half)
                    .flush()
                    .and_then(|()| write_half.shutdown(Shutdown::Write))
                    .map_err(|e| Error::io("shutting down the sending side", e))
            })();
            if let Err(e) = &sent
                && !is_io(e)
            {
                // The connection is sound: the reader would wait for ever.
                let _ = write_half.shutdown(Shutdown::Both);
            }
            sent
        });
        let read =
            read_echoes(stream, framing, count, size, &pattern, start, &progress).map_err(|e| {
                match e {
                    Error::Interrupted {
                        received,
                        expected: _,
                        source: framing::Error::Io(io),
                    } if timed_out(&io) => timeout_error("waiting for the next echo", received),
                    e => e,
                }
            });
        if read.is_err() {
            // Unblocks a writer stuck on a server that stopped reading.
            let _ = stream.shutdown(Shutdown::Both);
        }
        let wrote = writer.join().expect("the writer thread does not panic");
        let wrote = wrote.map_err(|e| match e {
            Error::Framing(framing::Error::Io(io)) if timed_out(&io) => timeout_error(
                "sending frames (the server stopped reading)",
                progress.echoed.load(Ordering::Relaxed),
            ),
            e => e,
        });
        match (read, wrote) {
            (Ok(n), Ok(())) => Ok(n),
            // A frame the writer could not send caused the rest.
            (_, Err(e)) if !is_io(&e) => Err(e),
            // The reader's error says what the server did; the writer's
            // (a reset, a broken pipe) follows from it.
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(e),
        }
    })
}

/// `Progress::sent` until the writer has sent its last frame.
const UNKNOWN: u64 = u64::MAX;

/// What the writer and the reader tell each other.
struct Progress<'a> {
    /// Echoes received and verified.
    echoed: AtomicU64,
    /// Frames the writer sent in all, once it stopped ([`UNKNOWN`] until
    /// then).
    sent: AtomicU64,
    /// Set to stop sending.
    stop: &'a AtomicBool,
}

/// An error of the socket under the frames (a reset, a timeout), as
/// opposed to one of the frames themselves.
fn is_io(e: &Error) -> bool {
    matches!(
        e,
        Error::Io { .. } | Error::Framing(framing::Error::Io(_)) | Error::Timeout { .. }
    )
}

/// A socket timeout: `WouldBlock` is what Linux returns when
/// `SO_RCVTIMEO`/`SO_SNDTIMEO` expire, `TimedOut` elsewhere and for connect.
fn timed_out(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn read_echoes(
    stream: &TcpStream,
    framing: Config,
    count: u64,
    size: usize,
    pattern: &[u8],
    start: Instant,
    progress: &Progress<'_>,
) -> Result<u64, Error> {
    let mut reader = FramedReader::new(stream, framing);
    let mut next_progress = start + PROGRESS_EVERY;
    for index in 0..count {
        let echo = match reader.read_frame() {
            Ok(Some(frame)) => frame,
            // Stopped early: every frame sent has come back.
            Ok(None) if progress.sent.load(Ordering::SeqCst) == index => return Ok(index),
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
        progress.echoed.store(index + 1, Ordering::Relaxed);
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
        Err(source) => Err(Error::Interrupted {
            received: count,
            expected: count,
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::mpsc;

    /// A frame its layout cannot carry fails the writer while the
    /// connection is sound: the reader must end too, with the writer's
    /// error, not wait for the server (here, one that never answers).
    #[test]
    fn a_failing_writer_ends_the_reader() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let held = thread::spawn(move || listener.accept().map(|(s, _)| s));
        let stream = TcpStream::connect(addr).unwrap();
        let settings = ClientSettings {
            count: 10,
            size: 70_000,
            framing: Config::u16_be(),
            timeout: Duration::from_secs(3600),
        };
        let (tx, rx) = mpsc::channel();
        let client = thread::spawn(move || {
            let stop = AtomicBool::new(false);
            let _ = tx.send(exchange(&stream, addr, settings, Instant::now(), &stop));
        });
        let outcome = rx.recv_timeout(Duration::from_secs(60));
        let _server_side = held.join().unwrap();
        let Ok(outcome) = outcome else {
            panic!("the reader still waits for echoes 60 s after the writer failed");
        };
        client.join().unwrap();
        let err = outcome.expect_err("the frame cannot be sent").to_string();
        assert!(
            err.contains("70000"),
            "the writer's error is reported: {err}"
        );
    }

    #[test]
    fn a_size_over_the_layouts_largest_frame_is_refused_before_connecting() {
        // Nothing listens on port 9 of 127.0.0.1; a connect would fail.
        let settings = ClientSettings {
            count: 1,
            size: 65_536,
            framing: Config::u16_be(),
            timeout: DEFAULT_TIMEOUT,
        };
        let err = run_client("127.0.0.1:9".parse().unwrap(), settings).unwrap_err();
        assert!(matches!(err, Error::Settings(_)), "{err}");
        assert!(err.to_string().contains("65535 bytes"), "{err}");
    }
}
