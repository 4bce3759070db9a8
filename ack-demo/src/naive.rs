//! The classic mistake, made visible: send everything, `shutdown(SHUT_WR)`,
//! close, and take the successful `send()`s as delivery.
//!
//! The naive client speaks just enough of the protocol for the server to
//! process its messages (`HELLO`, then `DATA`), but never waits for an
//! acknowledgement. Against a server that stops reading early
//! (`--stop-reading-after N`), every `send()` succeeds while the server
//! processes N messages; when the server closes with unread data its kernel
//! answers with a reset that a sender who has already closed never sees. The
//! report shows the bytes the kernel accepted, what the kernel still held at
//! close, and probes after the close for the reset.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::Error;
use crate::kernel::{self, KernelView};
use crate::server::frame;
use crate::wire::{Message, VERSION, demo_payload};

/// What the naive client saw.
#[derive(Debug, Clone, Serialize)]
pub struct NaiveReport {
    /// Messages it tried to send.
    pub count: u64,
    /// Messages whose bytes `send()` accepted in full.
    pub accepted_messages: u64,
    /// Bytes `send()` accepted (frames included).
    pub accepted_bytes: u64,
    /// The `send()` error that stopped it, if any.
    pub send_error: Option<String>,
    /// The kernel's view just before `shutdown`/close.
    pub kernel_at_close: Option<KernelView>,
    /// What a read after the shutdown found: the reset the naive sender,
    /// having closed, never sees.
    pub after_close: String,
    /// Whether that probe found a reset.
    pub reset_seen_by_probe: bool,
    /// Seconds taken.
    pub seconds: f64,
}

/// Sends `count` messages of `size` bytes with no acknowledgement, then
/// shuts down and closes; probes for the reset (up to `probe_for`).
///
/// # Errors
/// Only connecting failed; everything after is in the report.
pub fn run(
    addr: SocketAddr,
    session: u64,
    count: u64,
    size: usize,
    probe_for: Duration,
) -> Result<NaiveReport, Error> {
    let start = Instant::now();
    let mut stream =
        TcpStream::connect(addr).map_err(|e| Error::io(format!("connecting to {addr}"), e))?;
    let mut report = NaiveReport {
        count,
        accepted_messages: 0,
        accepted_bytes: 0,
        send_error: None,
        kernel_at_close: None,
        after_close: String::new(),
        reset_seen_by_probe: false,
        seconds: 0.0,
    };
    let hello = frame(&Message::Hello {
        session,
        version: VERSION,
        window: u32::MAX,
        token: crate::wire::Token::random()?,
    });
    let mut payload = Vec::new();
    let mut ok = write_counted(&mut stream, &hello, &mut report);
    for seq in 0..count {
        if !ok {
            break;
        }
        demo_payload(seq, size, &mut payload);
        let data = frame(&Message::Data {
            seq,
            payload: &payload,
        });
        ok = write_counted(&mut stream, &data, &mut report);
        if ok {
            report.accepted_messages += 1;
        }
    }
    report.kernel_at_close = kernel::sample(&stream).ok();
    let _ = stream.shutdown(Shutdown::Write);
    // A naive sender closes here. We look once more, for the reader.
    let _ = stream.set_read_timeout(Some(probe_for));
    let mut sink = [0u8; 4096];
    report.after_close = loop {
        match stream.read(&mut sink) {
            Ok(0) => break "EOF: the server closed normally".to_owned(),
            // WELCOME and ACKs the naive sender never looks at.
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                report.reset_seen_by_probe = true;
                break "ECONNRESET: the server's kernel reset the connection; \
                       bytes it held for the application were thrown away"
                    .to_owned();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break format!("nothing within {} ms", probe_for.as_millis());
            }
            Err(e) => break format!("read error: {e}"),
        }
    };
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

fn write_counted(stream: &mut TcpStream, bytes: &[u8], report: &mut NaiveReport) -> bool {
    let mut rest = bytes;
    while !rest.is_empty() {
        match stream.write(rest) {
            Ok(0) => return false,
            Ok(n) => {
                report.accepted_bytes += n as u64;
                rest = &rest[n..];
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                report.send_error = Some(e.to_string());
                return false;
            }
        }
    }
    true
}
