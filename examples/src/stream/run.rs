//! The socket driver: one sender and one receiver per setting, each on a
//! thread of its own (in its namespace on the small-MTU path), writing down
//! the size of every `send()` and `read()` into a [`StreamLedger`] as it
//! returns.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use framing::{Config, Decoder, Encoder};
use serde::Serialize;

use super::ledger::StreamLedger;
use super::path::{self, SmallMtuPath};
use super::{DemoSettings, PREFIX_BYTES, Setting, StreamCounts, write_payload};
use crate::Error;

/// What one setting showed, or why it did not run.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Outcome {
    /// It ran.
    Ran(Box<SettingRun>),
    /// It could not run here (the small-MTU path without root).
    Skipped {
        /// Which setting.
        setting: Setting,
        /// Why, and what to do about it.
        skipped: String,
    },
    /// It failed; the other settings still ran.
    Failed {
        /// Which setting.
        setting: Setting,
        /// What went wrong.
        error: String,
    },
}

impl Outcome {
    /// The setting this is about.
    pub fn setting(&self) -> Setting {
        match self {
            Outcome::Ran(run) => run.setting,
            Outcome::Skipped { setting, .. } | Outcome::Failed { setting, .. } => *setting,
        }
    }

    /// The run, if there was one.
    pub fn ran(&self) -> Option<&SettingRun> {
        match self {
            Outcome::Ran(run) => Some(run),
            _ => None,
        }
    }

    /// A skipped setting passes; a failed one does not.
    pub fn passed(&self) -> bool {
        match self {
            Outcome::Ran(run) => run.passed(),
            Outcome::Skipped { .. } => true,
            Outcome::Failed { .. } => false,
        }
    }

    /// One line for people, as the setting ends.
    pub fn summary(&self) -> String {
        match self {
            Outcome::Ran(r) => format!(
                "{}: {} messages in {} send() calls came out of {} read() calls; {} reads ended \
                 inside a message, {} held 2 or more (at most {}); framing recovered {} of {} ({:.2} s)",
                r.setting.id(),
                r.counts.messages,
                r.counts.send_calls,
                r.counts.read_calls,
                r.counts.reads_ending_inside_a_message,
                r.counts.reads_holding_several_messages,
                r.counts.most_messages_in_one_read,
                r.framing.identical,
                r.counts.messages,
                r.duration_s
            ),
            Outcome::Skipped { setting, skipped } => {
                format!("{}: skipped, {skipped}", setting.id())
            }
            Outcome::Failed { setting, error } => format!("{}: FAILED, {error}", setting.id()),
        }
    }
}

/// One setting's run.
#[derive(Debug, Clone, Serialize)]
pub struct SettingRun {
    /// Which setting.
    pub setting: Setting,
    /// The path, for people: `127.0.0.1` or `veth MTU 576, tbf 50 Mbit/s`.
    pub path: String,
    /// How long the reader slept before each read.
    pub read_delay_ms: f64,
    /// The reads against the sends and the messages.
    #[serde(flatten)]
    pub counts: StreamCounts,
    /// What `framing` made of the same bytes.
    pub framing: Recovered,
    /// Connect to the reader's end of stream.
    pub duration_s: f64,
    /// Stopped by SIGINT/SIGTERM before every message was sent.
    pub interrupted: bool,
}

impl SettingRun {
    /// Whether the run showed what it must: every byte arrived, once, and
    /// framing gave back every message sent, byte for byte.
    pub fn passed(&self) -> bool {
        self.counts.adds_up() && self.framing.all_identical(self.counts.messages)
    }
}

/// The messages [`framing::Decoder`] found in the received bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Recovered {
    /// Frames decoded.
    pub frames: u64,
    /// Of those, the ones identical to the message sent in their place.
    pub identical: u64,
    /// The first frame that differed, if one did.
    pub first_difference: Option<u64>,
}

impl Recovered {
    /// Every one of `sent` messages came back whole and in order.
    pub fn all_identical(&self, sent: u64) -> bool {
        self.frames == sent && self.identical == sent
    }
}

/// Runs one setting. `stop` (Ctrl-C) ends the sending early; what was sent
/// is still read, checked and counted.
///
/// # Errors
/// A socket failed, the peer went silent for the timeout, the received
/// bytes are not the frames sent, or the small-MTU path could not be made.
pub fn run_setting(
    setting: Setting,
    settings: &DemoSettings,
    stop: &AtomicBool,
) -> Result<Outcome, Error> {
    match setting {
        Setting::Loopback | Setting::SlowReader => {
            let loopback = Ends {
                sender_ns: None,
                receiver_ns: None,
                receiver_ip: Ipv4Addr::LOCALHOST,
            };
            let delay = (setting == Setting::SlowReader).then_some(settings.slow_reader_delay);
            exchange(
                setting,
                "127.0.0.1".into(),
                &loopback,
                settings,
                delay,
                stop,
            )
        }
        Setting::Mtu576 => {
            if let Some(why) = path::unavailable() {
                return Ok(Outcome::Skipped {
                    setting,
                    skipped: why,
                });
            }
            let net = SmallMtuPath::new(settings.path_rate_mbit_per_s)?;
            let ends = Ends {
                sender_ns: Some(net.sender()),
                receiver_ns: Some(net.receiver()),
                receiver_ip: path::RECEIVER_ADDR,
            };
            let described = SmallMtuPath::describe(settings.path_rate_mbit_per_s);
            exchange(setting, described, &ends, settings, None, stop)
        }
    }
}

/// Where the two ends live.
struct Ends<'a> {
    sender_ns: Option<&'a str>,
    receiver_ns: Option<&'a str>,
    receiver_ip: Ipv4Addr,
}

/// What the sender did.
struct Sent {
    /// Messages that went out whole.
    messages: usize,
    /// Its `send()` calls (a ledger of no messages).
    sends: StreamCounts,
    mss: Option<usize>,
    interrupted: bool,
}

/// What the receiver saw.
struct Received {
    /// Its reads against the planned messages.
    reads: StreamLedger,
    framing: Recovered,
}

fn exchange(
    setting: Setting,
    path: String,
    ends: &Ends<'_>,
    settings: &DemoSettings,
    read_delay: Option<Duration>,
    stop: &AtomicBool,
) -> Result<Outcome, Error> {
    let plan = settings.sizes.plan(settings.messages);
    let config = Config::u32_be()
        .to_builder()
        .max_frame_len(settings.sizes.largest().max(1))
        .build()?;
    let started = Instant::now();
    let (addr_tx, addr_rx) = mpsc::channel();
    let plan = plan.as_slice();
    let (sent, received) = thread::scope(|scope| {
        let receiver = scope.spawn(move || {
            receive(
                ends,
                settings,
                read_delay.unwrap_or(Duration::ZERO),
                config,
                plan,
                addr_tx,
            )
        });
        let sender = scope.spawn(move || -> Result<Sent, Error> {
            let addr: SocketAddr = addr_rx
                .recv()
                .map_err(|_| Error::StreamMismatch("the receiver did not start".into()))?;
            send(ends, settings, config, plan, addr, stop)
        });
        let sent = sender
            .join()
            .unwrap_or_else(|_| Err(Error::StreamMismatch("the sender panicked".into())));
        let received = receiver
            .join()
            .unwrap_or_else(|_| Err(Error::StreamMismatch("the receiver panicked".into())));
        (sent, received)
    });
    // The sender's failure explains the receiver's (a stream cut short),
    // unless the sender failed for want of a receiver.
    let (sent, received) = match (sent, received) {
        (Ok(sent), Ok(received)) => (sent, received),
        (Err(Error::StreamMismatch(_)), Err(e)) | (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    let counts = received
        .reads
        .finish(sent.messages, sent.mss)
        .with_sends(&sent.sends);
    Ok(Outcome::Ran(Box::new(SettingRun {
        setting,
        path,
        read_delay_ms: read_delay.unwrap_or_default().as_secs_f64() * 1e3,
        counts,
        framing: received.framing,
        duration_s: started.elapsed().as_secs_f64(),
        interrupted: sent.interrupted,
    })))
}

fn receive(
    ends: &Ends<'_>,
    settings: &DemoSettings,
    delay: Duration,
    config: Config,
    plan: &[usize],
    addr_tx: mpsc::Sender<SocketAddr>,
) -> Result<Received, Error> {
    if let Some(ns) = ends.receiver_ns {
        path::enter(ns)?;
    }
    let listener = TcpListener::bind((ends.receiver_ip, 0))
        .map_err(|e| Error::io("binding the receiver", e))?;
    // accept(2) honours SO_RCVTIMEO: a sender that never connects ends
    // the wait instead of hanging it.
    socket2::SockRef::from(&listener)
        .set_read_timeout(Some(settings.timeout))
        .map_err(|e| Error::io("setting the accept timeout", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("reading the receiver's address", e))?;
    // The sender is gone only if it failed; it says why.
    let _ = addr_tx.send(addr);
    let (mut stream, _) = listener
        .accept()
        .map_err(|e| Error::io("waiting for the sender to connect", e))?;
    stream
        .set_read_timeout(Some(settings.timeout))
        .map_err(|e| Error::io("setting the read timeout", e))?;

    let mut buf = vec![0u8; settings.read_buffer_bytes];
    let mut decoder = Decoder::new(config);
    let lengths: Vec<usize> = plan.iter().map(|&len| PREFIX_BYTES + len).collect();
    let mut reads = StreamLedger::new(&lengths);
    let mut framing = Recovered::default();
    let mut expected = Vec::new();
    loop {
        if !delay.is_zero() {
            thread::sleep(delay);
        }
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("reading the stream", e)),
        };
        reads.read(n);
        decoder.feed(&buf[..n]);
        while let Some(frame) = decoder.next_frame()? {
            let index = framing.frames as usize;
            let same = plan.get(index).is_some_and(|&len| {
                expected.clear();
                write_payload(index, len, &mut expected);
                frame == expected.as_slice()
            });
            if same {
                framing.identical += 1;
            } else if framing.first_difference.is_none() {
                framing.first_difference = Some(framing.frames);
            }
            framing.frames += 1;
        }
    }
    // A stream that ends inside a frame is an error, not a short count.
    decoder.finish()?;
    Ok(Received { reads, framing })
}

fn send(
    ends: &Ends<'_>,
    settings: &DemoSettings,
    config: Config,
    plan: &[usize],
    addr: SocketAddr,
    stop: &AtomicBool,
) -> Result<Sent, Error> {
    if let Some(ns) = ends.sender_ns {
        path::enter(ns)?;
    }
    let mut stream = TcpStream::connect_timeout(&addr, settings.timeout)
        .map_err(|e| Error::io(format!("connecting to the receiver at {addr}"), e))?;
    stream
        .set_nodelay(settings.nodelay)
        .and_then(|()| stream.set_write_timeout(Some(settings.timeout)))
        .map_err(|e| Error::io("setting up the sender's socket", e))?;
    let mss = socket2::SockRef::from(&stream)
        .tcp_mss()
        .ok()
        .map(|m| m as usize);
    let encoder = Encoder::new(config);
    let mut sends = StreamLedger::new(&[]);
    let mut messages = 0;
    let mut interrupted = false;
    let mut message = Vec::new();
    for (index, &len) in plan.iter().enumerate() {
        if stop.load(Ordering::Relaxed) {
            interrupted = true;
            break;
        }
        message.clear();
        message.reserve(PREFIX_BYTES + len);
        message.extend_from_slice(&encoder.header(len)?);
        write_payload(index, len, &mut message);
        // One send() per message; the kernel may take it in parts, and
        // each part is a call of its own.
        let mut off = 0;
        while off < message.len() {
            match stream.write(&message[off..]) {
                Ok(0) => {
                    return Err(Error::io(
                        "sending",
                        std::io::Error::from(ErrorKind::WriteZero),
                    ));
                }
                Ok(n) => {
                    sends.sent(n);
                    off += n;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(format!("sending message {index}"), e)),
            }
        }
        messages += 1;
    }
    stream
        .shutdown(Shutdown::Write)
        .map_err(|e| Error::io("closing the sending side", e))?;
    // Wait for the receiver to close its end, so that the run's duration
    // includes the last byte's arrival.
    let mut rest = [0u8; 16];
    while matches!(stream.read(&mut rest), Ok(n) if n > 0) {}
    Ok(Sent {
        messages,
        sends: sends.finish(0, None),
        mss,
        interrupted,
    })
}
