//! The blocking client driver: one thread, one socket at a time, the
//! [`Sender`] state machine deciding what to send.
//!
//! It connects (with backoff while the server is down, for up to
//! `reconnect_for`), sends what the sender produces, reads with a timeout
//! set from the sender's next deadline, and on a lost connection reconnects
//! and resumes. At the end it closes in the order that never produces a
//! reset: after `CLOSE_ACK` it shuts down its sending side, reads until the
//! server's EOF (so nothing is left unread), then closes.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use framing::{Decoder, Encoder};
use serde::Serialize;
use socket2::SockRef;
use tracing::{debug, info, warn};

use crate::error::Error;
use crate::heartbeat::DEAD_AFTER;
use crate::kernel::{self, KernelView};
use crate::sender::{DemoPayloads, Sender, SenderConfig, SenderStats};
use crate::wire::Token;
use crate::{MAX_PAYLOAD, framing_config};

/// What the client does.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Server address.
    pub addr: SocketAddr,
    /// Messages: seqs `0..count`.
    pub count: u64,
    /// Payload bytes per message.
    pub size: usize,
    /// Messages in flight.
    pub window: u32,
    /// Session id (the same id resumes a session).
    pub session: u64,
    /// The session's token; `None` draws a fresh one for this run (a new
    /// session). Resuming a session the server already holds needs the
    /// token it began with.
    pub token: Option<Token>,
    /// How long to keep reconnecting while the server is unreachable (0:
    /// fail at the first lost connection).
    pub reconnect_for: Duration,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// Sample the kernel's view of the socket during the run.
    pub show_kernel: bool,
}

impl ClientSettings {
    /// Defaults for everything but the address.
    pub fn new(addr: SocketAddr) -> ClientSettings {
        ClientSettings {
            addr,
            count: 10_000,
            size: 64,
            window: 32,
            session: 1,
            token: None,
            reconnect_for: Duration::ZERO,
            heartbeat: Duration::from_secs(1),
            show_kernel: false,
        }
    }
}

/// A kernel sample beside what the application knew at that moment.
#[derive(Debug, Clone, Serialize)]
pub struct KernelSample {
    /// Milliseconds since the start.
    pub at_ms: u64,
    /// When: `run`, `before-close`, `after-shutdown`.
    pub when: &'static str,
    /// Messages the application had sent.
    pub app_sent: u64,
    /// Messages the server had confirmed processed.
    pub app_acked: u64,
    /// What the kernel said.
    pub kernel: KernelView,
}

/// What a client run did.
#[derive(Debug, Clone, Serialize)]
pub struct ClientReport {
    /// Session id.
    pub session: u64,
    /// Messages in the session.
    pub count: u64,
    /// Counters (sent, acked, resent, reconnects, pings).
    #[serde(flatten)]
    pub stats: SenderStats,
    /// From the first connect to the end, seconds.
    pub seconds: f64,
    /// Acknowledged messages per second.
    pub messages_per_sec: f64,
    /// From sending `CLOSE` to the connection closed, milliseconds.
    pub close_handshake_ms: Option<f64>,
    /// Whether `CLOSE_ACK` matched (count and digest) and the close was
    /// clean.
    pub completed: bool,
    /// Seqs sent but never confirmed processed (empty when completed).
    pub unconfirmed: Range<u64>,
    /// The error that ended the run, if any.
    pub error: Option<String>,
    /// Kernel samples (`--show-kernel`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kernel: Vec<KernelSample>,
}

/// How a connection ended.
enum Ended {
    /// `CLOSE_ACK` matched and the close was clean.
    Done { close_ms: f64 },
    /// Lost (EOF, reset, silence): reconnect if allowed.
    Lost(Error),
}

/// Runs a whole session; the report says what happened even on failure.
pub fn run(settings: &ClientSettings) -> ClientReport {
    run_until(settings, &AtomicBool::new(false))
}

/// [`run`], ending early once `stop` is set (a SIGINT/SIGTERM flag): it is
/// checked between waits that last at most a heartbeat interval, and the
/// connection is then dropped (the session can be resumed). The report
/// says so in its error, with what was sent and confirmed until then.
pub fn run_until(settings: &ClientSettings, stop: &AtomicBool) -> ClientReport {
    let start = Instant::now();
    let mut report = ClientReport {
        session: settings.session,
        count: settings.count,
        stats: SenderStats::default(),
        seconds: 0.0,
        messages_per_sec: 0.0,
        close_handshake_ms: None,
        completed: false,
        unconfirmed: 0..0,
        error: None,
        kernel: Vec::new(),
    };
    let token = match settings.token.map_or_else(Token::random, Ok) {
        Ok(t) => t,
        Err(e) => {
            report.error = Some(e.to_string());
            return report;
        }
    };
    let mut sender = Sender::new(
        SenderConfig {
            session: settings.session,
            token,
            window: settings.window,
            count: settings.count,
            heartbeat: settings.heartbeat,
        },
        DemoPayloads {
            size: settings.size,
        },
        start,
    );
    let outcome =
        check(settings).and_then(|()| session(settings, &mut sender, &mut report, start, stop));
    match outcome {
        Ok(close_ms) => {
            report.completed = true;
            report.close_handshake_ms = Some(close_ms);
        }
        Err(e) => report.error = Some(e.to_string()),
    }
    report.stats = sender.stats();
    report.unconfirmed = sender.unconfirmed();
    report.seconds = start.elapsed().as_secs_f64();
    report.messages_per_sec = report.stats.acked as f64 / report.seconds.max(1e-9);
    report
}

/// Checks that the settings can work, before anything is sent ([`run`]
/// does it too).
///
/// # Errors
/// [`Error::Settings`] naming the value and what it must be.
pub fn check(settings: &ClientSettings) -> Result<(), Error> {
    let needed = format!("msg {} ", settings.count.saturating_sub(1)).len();
    if settings.size < needed || settings.size > MAX_PAYLOAD {
        return Err(Error::Settings(format!(
            "--size {} must be {needed} to {MAX_PAYLOAD} bytes so that every payload `msg <seq> ` is distinct",
            settings.size
        )));
    }
    if settings.window == 0 {
        return Err(Error::Settings("--window must be at least 1".into()));
    }
    if settings.heartbeat.is_zero() {
        return Err(Error::Settings(
            "the heartbeat interval must be above 0".into(),
        ));
    }
    Ok(())
}

fn session(
    settings: &ClientSettings,
    sender: &mut Sender<DemoPayloads>,
    report: &mut ClientReport,
    start: Instant,
    stop: &AtomicBool,
) -> Result<f64, Error> {
    let dead_after = DEAD_AFTER * settings.heartbeat;
    // The reconnect budget runs from the moment the server stopped
    // answering. A connect that succeeds does not stop it: a frozen or
    // overloaded server's kernel still completes handshakes from its
    // backlog. Only a frame from the server does.
    let mut unanswered_since = Instant::now();
    let mut backoff = Duration::from_millis(10);
    loop {
        if stop.load(Ordering::SeqCst) {
            return Err(interrupted());
        }
        // With no budget the first connection still gets a bounded connect.
        let give_up_at = unanswered_since + settings.reconnect_for.max(dead_after);
        let remaining = give_up_at.saturating_duration_since(Instant::now());
        let attempt = if remaining.is_zero() {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no time left to connect",
            ))
        } else {
            TcpStream::connect_timeout(&settings.addr, remaining)
        };
        let stream = match attempt {
            Ok(s) => s,
            Err(e) => {
                if unanswered_since.elapsed() >= settings.reconnect_for {
                    return Err(Error::io(
                        format!(
                            "connecting to {} (gave up after {:.1} s without an answer)",
                            settings.addr,
                            unanswered_since.elapsed().as_secs_f64()
                        ),
                        e,
                    ));
                }
                debug!(error = %e, backoff_ms = backoff.as_millis() as u64, "server unreachable; retrying");
                // Backoff between attempts: waiting is the point here.
                std::thread::sleep(
                    backoff.min(give_up_at.saturating_duration_since(Instant::now())),
                );
                backoff = (backoff * 2).min(Duration::from_millis(500));
                continue;
            }
        };
        backoff = Duration::from_millis(10);
        sender.on_connected(Instant::now());
        let budget_end =
            (!settings.reconnect_for.is_zero()).then(|| unanswered_since + settings.reconnect_for);
        let mut answered = false;
        let ended = connection(
            settings,
            sender,
            report,
            stream,
            start,
            budget_end,
            &mut answered,
            stop,
        )?;
        match ended {
            Ended::Done { close_ms } => return Ok(close_ms),
            Ended::Lost(e) => {
                sender.on_disconnected();
                if answered {
                    unanswered_since = Instant::now();
                }
                if settings.reconnect_for.is_zero()
                    || unanswered_since.elapsed() >= settings.reconnect_for
                {
                    return Err(e);
                }
                let unconfirmed = sender.unconfirmed();
                warn!(
                    error = %e,
                    "connection lost with seqs {} to {} unconfirmed; reconnecting",
                    unconfirmed.start,
                    unconfirmed.end.saturating_sub(1)
                );
            }
        }
    }
}

/// The error of a run ended by [`run_until`]'s flag.
fn interrupted() -> Error {
    Error::io(
        "interrupted",
        io::Error::new(
            io::ErrorKind::Interrupted,
            "stopped by SIGINT/SIGTERM before the close handshake",
        ),
    )
}

/// Drives one connection. `Err` only for failures no reconnect fixes.
/// Sets `answered` once the server sends anything on it.
///
/// `budget_end`: while the server has not answered on this connection, give
/// up on it at that instant (the reconnect budget is spent).
#[allow(clippy::too_many_arguments)] // the state of one run, passed down
fn connection(
    settings: &ClientSettings,
    sender: &mut Sender<DemoPayloads>,
    report: &mut ClientReport,
    mut stream: TcpStream,
    start: Instant,
    budget_end: Option<Instant>,
    answered: &mut bool,
    stop: &AtomicBool,
) -> Result<Ended, Error> {
    let dead_after = DEAD_AFTER * settings.heartbeat;
    let sock = SockRef::from(&stream);
    let _ = stream.set_nodelay(true);
    // A blackholed peer with bytes in flight: the kernel gives up as soon as
    // the heartbeat would.
    let _ = sock.set_tcp_user_timeout(Some(dead_after));
    let _ = stream.set_write_timeout(Some(dead_after));
    let encoder = Encoder::new(framing_config());
    let mut decoder = Decoder::new(framing_config());
    let mut msg = Vec::new();
    let mut out = Vec::new();
    let mut close_started: Option<Instant> = None;
    let mut next_sample = Instant::now();
    loop {
        if stop.load(Ordering::SeqCst) {
            return Err(interrupted());
        }
        // Send everything due.
        out.clear();
        while sender.poll_transmit(&mut msg) {
            encoder.encode(&msg, &mut out)?;
        }
        if close_started.is_none() && sender.close_sent() {
            close_started = Some(Instant::now());
        }
        if !out.is_empty() {
            if let Err(e) = stream.write_all(&out) {
                return lost_or_failed(sender, Error::io("sending", e));
            }
        }
        if sender.is_failed() {
            return Err(Error::Settings("protocol failure (see log)".into()));
        }
        if settings.show_kernel && Instant::now() >= next_sample {
            next_sample += Duration::from_millis(100);
            sample(report, &stream, "run", sender, start);
        }
        if sender.is_done() {
            let close_ms = finish(settings, report, &mut stream, &mut decoder, sender, start)?;
            let total = close_started.map_or(close_ms, |t| t.elapsed().as_secs_f64() * 1e3);
            return Ok(Ended::Done { close_ms: total });
        }
        // Take every frame already buffered; then send what they allow.
        let mut handled = false;
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    handled = true;
                    *answered = true;
                    if let Err(e) = sender.handle(frame, Instant::now()) {
                        return lost_or_failed(sender, e);
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(e.into()),
            }
        }
        if handled {
            continue;
        }
        // Wait for input until the next deadline.
        let now = Instant::now();
        let mut deadline = sender.poll_timeout().unwrap_or(now + settings.heartbeat);
        if let (false, Some(end)) = (*answered, budget_end) {
            if now >= end {
                return Ok(Ended::Lost(Error::io(
                    "waiting for the server's WELCOME",
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the server accepted the connection but never answered",
                    ),
                )));
            }
            deadline = deadline.min(end);
        }
        let wait = deadline
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
        let _ = stream.set_read_timeout(Some(wait));
        match stream.read(decoder.read_buf()) {
            Ok(0) => {
                return Ok(Ended::Lost(Error::io(
                    "reading",
                    io::Error::new(io::ErrorKind::UnexpectedEof, "server closed the connection"),
                )));
            }
            Ok(n) => decoder.commit(n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if let Err(e) = sender.handle_timeout(Instant::now()) {
                    return Ok(Ended::Lost(e));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Ok(Ended::Lost(Error::io("reading", e))),
        }
    }
}

/// A protocol failure ends the run; anything else is a lost connection.
fn lost_or_failed(sender: &Sender<DemoPayloads>, e: Error) -> Result<Ended, Error> {
    if sender.is_failed() {
        Err(e)
    } else {
        Ok(Ended::Lost(e))
    }
}

/// After `CLOSE_ACK`: shut down our side, read to the server's EOF, close.
/// Returns the time this took in milliseconds.
fn finish(
    settings: &ClientSettings,
    report: &mut ClientReport,
    stream: &mut TcpStream,
    decoder: &mut Decoder,
    sender: &Sender<DemoPayloads>,
    start: Instant,
) -> Result<f64, Error> {
    let t = Instant::now();
    if settings.show_kernel {
        sample(report, stream, "before-close", sender, start);
    }
    stream
        .shutdown(Shutdown::Write)
        .map_err(|e| Error::io("shutting down the sending side", e))?;
    if settings.show_kernel {
        sample(report, stream, "after-shutdown", sender, start);
    }
    let _ = stream.set_read_timeout(Some(DEAD_AFTER * settings.heartbeat));
    loop {
        match stream.read(decoder.read_buf()) {
            Ok(0) => break,
            // A late PING or PONG: read and dropped, so nothing is unread.
            Ok(n) => decoder.commit(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("waiting for the server to close", e)),
        }
        while let Ok(Some(_)) = decoder.next_frame() {}
    }
    info!(session = settings.session, "session closed cleanly");
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

fn sample(
    report: &mut ClientReport,
    stream: &TcpStream,
    when: &'static str,
    sender: &Sender<DemoPayloads>,
    start: Instant,
) {
    // Bounded: a long run keeps its first samples and every later
    // non-`run` one.
    if when == "run" && report.kernel.len() >= 1000 {
        return;
    }
    if let Ok(view) = kernel::sample(stream) {
        let stats = sender.stats();
        let s = KernelSample {
            at_ms: start.elapsed().as_millis() as u64,
            when,
            app_sent: stats.sent,
            app_acked: stats.acked,
            kernel: view,
        };
        eprintln!(
            "[{:>6} ms] {:<14} app: sent {} acked {} | {}",
            s.at_ms, when, s.app_sent, s.app_acked, s.kernel
        );
        report.kernel.push(s);
    }
}
