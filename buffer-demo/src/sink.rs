//! The receiving side: a UDP sink in two designs.
//!
//! - [`Mode::Split`]: a receiver thread that only drains the socket
//!   (`recvmmsg` batches) into a bounded SPSC ring ([`rtrb`]), and a
//!   processing thread that does the per-datagram work. A full ring drops the
//!   datagram and counts it: the socket never waits for the work.
//! - [`Mode::Inline`]: the work is done in the receiving thread, between
//!   receive calls. While it works, nobody drains the socket: its buffer
//!   fills and the kernel drops.
//!
//! The receiver runs until the copies of its stream's sentinel are in (or
//! `linger` after the first; or a [`Stop`] request), then the processing
//! drains the ring, and [`Ledger::close`] balances the books with
//! `/proc/net/udp` read last.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use socket2::{Domain, Protocol, Socket, Type};

use crate::account::{Expect, Ledger, Observations, Tally, Verdict};
use crate::error::{Error, Result};
use crate::mmsg::{RecvBatch, interrupted, timed_out};
use crate::netns;
use crate::sockopt::{self, Rcvbuf};
use crate::stop::Stop;

/// Most datagrams per `recvmmsg` (the kernel's `UIO_MAXIOV`).
pub const MAX_BATCH: usize = 1024;
/// Largest application queue, datagrams (16 bytes each).
pub const MAX_QUEUE: usize = 1 << 24;
/// Most CPU work per datagram, microseconds (one second).
pub const MAX_WORK_US: f64 = 1_000_000.0;

/// Where the per-datagram work runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Receiver thread + processing thread joined by a bounded queue.
    Split,
    /// Work done in the receiving thread (the design that drops).
    Inline,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Split => "split",
            Mode::Inline => "inline",
        })
    }
}

/// How a sink is set up.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Address to bind (`127.0.0.1:0` picks a free port).
    pub bind: SocketAddr,
    /// `SO_RCVBUF` request in bytes; `None` keeps the system default.
    pub rcvbuf: Option<usize>,
    /// Try `SO_RCVBUFFORCE` to pass `rmem_max`.
    pub force: bool,
    /// Split or inline.
    pub mode: Mode,
    /// CPU work per datagram, microseconds (a busy hash loop).
    pub work_us: f64,
    /// Capacity of the split mode's queue, datagrams.
    pub queue: usize,
    /// Datagrams per `recvmmsg`.
    pub batch: usize,
    /// Print a progress line on stderr at this interval.
    pub progress: Option<Duration>,
    /// After the first sentinel copy, wait at most this long for the others.
    pub linger: Duration,
    /// Stop when no sentinel arrived by then (the account stays open).
    pub timeout: Option<Duration>,
    /// Create the socket inside this network namespace (`ip netns` name).
    pub netns: Option<String>,
    /// After a receive call that returned under half a batch, sleep this
    /// long so that the next call finds a fuller batch (fewer syscalls per
    /// datagram). Applied only when the granted buffer holds at least four
    /// batches of 1 KiB per datagram; zero disables it.
    pub nap: Duration,
    /// What is known of the stream in advance (nonce, source); the rest is
    /// learnt from its first data datagram.
    pub expect: Expect,
    /// Stops the receiver early (the report then says so).
    pub stop: Stop,
}

impl Default for SinkConfig {
    fn default() -> SinkConfig {
        SinkConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            rcvbuf: None,
            force: false,
            mode: Mode::Split,
            work_us: 0.0,
            queue: 65536,
            batch: 32,
            progress: None,
            linger: Duration::from_millis(500),
            timeout: None,
            netns: None,
            nap: Duration::from_micros(50),
            expect: Expect::default(),
            stop: Stop::new(),
        }
    }
}

/// What a sink run found.
#[derive(Debug, Clone, Serialize)]
pub struct SinkReport {
    /// The bound address.
    pub local_addr: SocketAddr,
    /// Split or inline.
    pub mode: Mode,
    /// Datagrams per `recvmmsg`.
    pub batch: usize,
    /// Queue capacity (split).
    pub queue: usize,
    /// Work per datagram, µs.
    pub work_us: f64,
    /// Requested and granted receive buffer.
    pub rcvbuf: Rcvbuf,
    /// Network namespace, if any.
    pub netns: Option<String>,
    /// The account.
    pub ledger: Ledger,
    /// `recvmmsg` calls that returned datagrams or an error other than the timeout.
    pub recv_calls: u64,
    /// Naps taken between receive calls (see [`SinkConfig::nap`]).
    pub naps: u64,
    /// Datagrams (all kinds) per receive call.
    pub datagrams_per_call: f64,
    /// From the first data datagram to the first sentinel copy, seconds.
    pub stream_secs: f64,
    /// Delivered datagrams per second over `stream_secs`.
    pub delivered_per_sec: f64,
    /// Mean one-way latency send→processed, µs (same machine clock).
    pub latency_mean_us: f64,
    /// Largest one-way latency, µs.
    pub latency_max_us: f64,
    /// Deepest the queue got (split).
    pub peak_queue_depth: usize,
    /// Peak resident memory of the process, KiB.
    pub peak_rss_kib: Option<u64>,
    /// A stop was requested before the sentinel arrived.
    pub interrupted: bool,
}

impl std::fmt::Display for SinkReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "sink {} ({} mode, batch {}, queue {}, work {} us{})",
            self.local_addr,
            self.mode,
            self.batch,
            self.queue,
            self.work_us,
            self.netns
                .as_ref()
                .map_or(String::new(), |n| format!(", netns {n}"))
        )?;
        writeln!(f, "{}", self.rcvbuf)?;
        writeln!(f, "{}", self.ledger)?;
        write!(
            f,
            "{:.0} delivered/s over {:.3} s; {} receive calls ({} naps), {:.1} datagrams per call; latency mean {:.0} us, max {:.0} us; queue peak {}; peak RSS {} KiB",
            self.delivered_per_sec,
            self.stream_secs,
            self.recv_calls,
            self.naps,
            self.datagrams_per_call,
            self.latency_mean_us,
            self.latency_max_us,
            self.peak_queue_depth,
            self.peak_rss_kib.map_or("?".into(), |k| k.to_string())
        )?;
        if self.interrupted {
            write!(f, "\ninterrupted: stopped before the sentinel arrived")?;
        }
        Ok(())
    }
}

/// A bound sink, ready to [`run`](Sink::run).
pub struct Sink {
    socket: Socket,
    config: SinkConfig,
    rcvbuf: Rcvbuf,
    local_addr: SocketAddr,
    snmp_before: Option<u64>,
}

/// One datagram handed from the receiver to the processing thread.
#[derive(Debug, Clone, Copy)]
struct Record {
    seq: u64,
    sent_ns: u64,
}

/// Counters the progress line reads while the threads run.
#[derive(Default)]
struct Live {
    received: AtomicU64,
    delivered: AtomicU64,
    queue_dropped: AtomicU64,
    queue_depth: AtomicU64,
    kernel_drops: AtomicU64,
    foreign: AtomicU64,
    receiver_done: AtomicBool,
}

struct ReceiverOut {
    tally: Tally,
    recv_calls: u64,
    first_data: Option<Instant>,
    sentinel_at: Option<Instant>,
    peak_depth: usize,
    queue_dropped: u64,
    naps: u64,
    inline: Processed,
    interrupted: bool,
}

#[derive(Default)]
struct Processed {
    delivered: u64,
    latency_sum_ns: u128,
    latency_max_ns: u64,
    checksum: u64,
}

impl Processed {
    fn process(&mut self, rec: Record, work_ns: u64) {
        self.checksum = work(self.checksum ^ rec.seq, work_ns);
        let lat = now_ns().saturating_sub(rec.sent_ns);
        self.latency_sum_ns += u128::from(lat);
        self.latency_max_ns = self.latency_max_ns.max(lat);
        self.delivered += 1;
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// `work_ns` of real CPU work: a multiply-xor hash loop checked against the
/// clock every 64 rounds. Returns the hash so that it cannot be optimised out.
fn work(seed: u64, work_ns: u64) -> u64 {
    let mut h = seed.wrapping_mul(0x0000_0100_0000_01b3);
    if work_ns > 0 {
        let start = Instant::now();
        loop {
            for _ in 0..64 {
                h = (h ^ (h >> 29)).wrapping_mul(0x0000_0100_0000_01b3);
            }
            if start.elapsed().as_nanos() as u64 >= work_ns {
                break;
            }
        }
    }
    std::hint::black_box(h)
}

/// How long a blocked `recvmmsg` waits before the receiver checks its
/// deadlines.
const RECV_TIMEOUT: Duration = Duration::from_millis(20);

/// How long the processing thread sleeps when the queue is empty; the queue
/// holds what arrives meanwhile (200 µs at 1 M datagrams/s is 200 entries).
const PROCESSOR_NAP: Duration = Duration::from_micros(200);

impl Sink {
    /// Creates and binds the socket (inside `config.netns` if set), sets the
    /// receive buffer and `SO_RXQ_OVFL`.
    pub fn bind(config: SinkConfig) -> Result<Sink> {
        if !(1..=MAX_BATCH).contains(&config.batch) {
            return Err(Error::Config(format!(
                "--batch {} is outside 1..={MAX_BATCH}",
                config.batch
            )));
        }
        if !(1..=MAX_QUEUE).contains(&config.queue) {
            return Err(Error::Config(format!(
                "--queue {} is outside 1..={MAX_QUEUE}",
                config.queue
            )));
        }
        if !(config.work_us.is_finite() && (0.0..=MAX_WORK_US).contains(&config.work_us)) {
            return Err(Error::Config(format!(
                "--work-us {} is outside 0..={MAX_WORK_US} microseconds",
                config.work_us
            )));
        }
        let make = {
            let config = config.clone();
            move || -> Result<(Socket, Rcvbuf, Option<u64>)> {
                let domain = Domain::for_address(config.bind);
                let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))
                    .map_err(Error::socket("socket"))?;
                let rcvbuf = sockopt::set_rcvbuf(&socket, config.rcvbuf, config.force)?;
                sockopt::enable_rxq_ovfl(&socket)?;
                socket
                    .set_read_timeout(Some(RECV_TIMEOUT))
                    .map_err(Error::socket("setsockopt(SO_RCVTIMEO)"))?;
                socket
                    .bind(&config.bind.into())
                    .map_err(|source| Error::Bind {
                        addr: config.bind,
                        source,
                    })?;
                let snmp = if config.netns.is_some() {
                    Some(sockopt::snmp_rcvbuf_errors()?)
                } else {
                    None
                };
                Ok((socket, rcvbuf, snmp))
            }
        };
        let (socket, rcvbuf, snmp_before) = match &config.netns {
            Some(ns) => netns::in_netns(ns, make)??,
            None => make()?,
        };
        let local_addr = socket
            .local_addr()
            .map_err(Error::socket("getsockname"))?
            .as_socket()
            .ok_or_else(|| Error::Config("bound address is not IP".into()))?;
        tracing::info!(%local_addr, %rcvbuf, "sink bound");
        Ok(Sink {
            socket,
            config,
            rcvbuf,
            local_addr,
            snmp_before,
        })
    }

    /// The bound address (with the port the kernel picked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The receive buffer outcome.
    pub fn rcvbuf(&self) -> &Rcvbuf {
        &self.rcvbuf
    }

    /// Receives until the sentinel (or the timeout), finishes the
    /// processing, reads the kernel counters and returns the report.
    pub fn run(self) -> Result<SinkReport> {
        let live = Live::default();
        let cfg = &self.config;
        let work_ns = (cfg.work_us * 1000.0).round() as u64;
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let (out, processed) = std::thread::scope(|s| -> Result<(ReceiverOut, Processed)> {
            let (mut producer, consumer) = match cfg.mode {
                Mode::Split => {
                    let (p, c) = rtrb::RingBuffer::<Record>::new(cfg.queue);
                    (Some(p), Some(c))
                }
                Mode::Inline => (None, None),
            };
            let processor = consumer.map(|mut consumer| {
                let live = &live;
                std::thread::Builder::new()
                    .name("bd-process".into())
                    .spawn_scoped(s, move || {
                        let mut done = Processed::default();
                        loop {
                            match consumer.pop() {
                                Ok(rec) => {
                                    done.process(rec, work_ns);
                                    if done.delivered % 256 == 0 {
                                        live.delivered.store(done.delivered, Ordering::Relaxed);
                                    }
                                }
                                Err(_) if live.receiver_done.load(Ordering::Acquire) => {
                                    if consumer.is_empty() {
                                        break;
                                    }
                                }
                                // Sleep briefly rather than spin: on a small machine a
                                // spinning consumer takes the CPU the receiver needs. The
                                // receiver wakes us early only when the queue fills up.
                                Err(_) => std::thread::park_timeout(PROCESSOR_NAP),
                            }
                        }
                        live.delivered.store(done.delivered, Ordering::Relaxed);
                        done
                    })
            });
            let processor = match processor {
                Some(p) => Some(p.map_err(Error::io("spawn processing thread"))?),
                None => None,
            };
            let wake = processor.as_ref().map(|p| p.thread().clone());
            let receiver = {
                let live = &live;
                let socket = &self.socket;
                let granted = self.rcvbuf.granted;
                let done_tx = done_tx.clone();
                std::thread::Builder::new()
                    .name("bd-receive".into())
                    .spawn_scoped(s, move || {
                        let out = receive(
                            socket,
                            cfg,
                            granted,
                            work_ns,
                            producer.as_mut(),
                            wake.as_ref(),
                            live,
                        );
                        live.receiver_done.store(true, Ordering::Release);
                        if let Some(w) = &wake {
                            w.unpark();
                        }
                        let _ = done_tx.send(());
                        out
                    })
                    .map_err(Error::io("spawn receiver thread"))?
            };
            drop(done_tx);
            let started = Instant::now();
            let mut last = (started, 0u64);
            loop {
                let wait = cfg
                    .progress
                    .filter(|p| !p.is_zero())
                    .unwrap_or(Duration::from_secs(3600));
                match done_rx.recv_timeout(wait) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        last = progress_line(&live, cfg, last);
                    }
                    _ => break,
                }
            }
            let out = receiver.join().expect("receiver thread panicked")?;
            let processed = match processor {
                Some(p) => p.join().expect("processing thread panicked"),
                None => Processed::default(),
            };
            if cfg.progress.is_some_and(|p| !p.is_zero()) {
                progress_line(&live, cfg, last);
                if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                    eprintln!();
                }
            }
            Ok((out, processed))
        })?;
        let processed = if cfg.mode == Mode::Inline {
            out.inline
        } else {
            processed
        };
        // Read after the last sentinel copy: the kernel's view at the end.
        let read_counters = || -> Result<(u64, Option<u64>)> {
            let drops = sockopt::proc_udp_drops(&self.socket)?;
            let snmp = match self.snmp_before {
                Some(before) => Some(sockopt::snmp_rcvbuf_errors()?.saturating_sub(before)),
                None => None,
            };
            Ok((drops, snmp))
        };
        let (proc_drops, rcvbuf_errors) = match &cfg.netns {
            Some(ns) => netns::in_netns(ns, read_counters)??,
            None => read_counters()?,
        };
        let ledger = Ledger::close(&Observations {
            tally: out.tally.clone(),
            delivered: processed.delivered,
            queue_dropped: out.queue_dropped,
            proc_drops: Some(proc_drops),
            rcvbuf_errors,
            before_socket: None,
        });
        let stream_secs = match (out.first_data, out.sentinel_at) {
            (Some(a), Some(b)) => b.saturating_duration_since(a).as_secs_f64(),
            _ => 0.0,
        };
        let report = SinkReport {
            interrupted: out.interrupted,
            local_addr: self.local_addr,
            mode: cfg.mode,
            batch: cfg.batch,
            queue: cfg.queue,
            work_us: cfg.work_us,
            rcvbuf: self.rcvbuf.clone(),
            netns: cfg.netns.clone(),
            recv_calls: out.recv_calls,
            naps: out.naps,
            datagrams_per_call: if out.recv_calls == 0 {
                0.0
            } else {
                out.tally.received as f64 / out.recv_calls as f64
            },
            stream_secs,
            delivered_per_sec: if stream_secs > 0.0 {
                processed.delivered as f64 / stream_secs
            } else {
                0.0
            },
            latency_mean_us: if processed.delivered == 0 {
                0.0
            } else {
                processed.latency_sum_ns as f64 / processed.delivered as f64 / 1000.0
            },
            latency_max_us: processed.latency_max_ns as f64 / 1000.0,
            peak_queue_depth: out.peak_depth,
            peak_rss_kib: sockopt::peak_rss_kib(),
            ledger,
        };
        if !report.ledger.closes() {
            tracing::warn!(residual = ?report.ledger.residual, "the account does not close");
        }
        Ok(report)
    }
}

/// Prints one progress line; returns the new (time, received) mark.
fn progress_line(live: &Live, cfg: &SinkConfig, (t0, r0): (Instant, u64)) -> (Instant, u64) {
    let now = Instant::now();
    let received = live.received.load(Ordering::Relaxed);
    let rate = (received - r0) as f64 / now.duration_since(t0).as_secs_f64().max(1e-9);
    let end = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        "\r"
    } else {
        "\n"
    };
    eprint!(
        "sink: {rate:>9.0} dgr/s in, {} received, {} processed, queue {}/{}, drops: queue {} kernel {}, foreign {}   {end}",
        received,
        live.delivered.load(Ordering::Relaxed),
        live.queue_depth.load(Ordering::Relaxed),
        if cfg.mode == Mode::Split {
            cfg.queue
        } else {
            0
        },
        live.queue_dropped.load(Ordering::Relaxed),
        live.kernel_drops.load(Ordering::Relaxed),
        live.foreign.load(Ordering::Relaxed),
    );
    (now, received)
}

/// The receiving thread: drains the socket, classifies, queues or works.
fn receive(
    socket: &Socket,
    cfg: &SinkConfig,
    granted: usize,
    work_ns: u64,
    mut producer: Option<&mut rtrb::Producer<Record>>,
    wake: Option<&std::thread::Thread>,
    live: &Live,
) -> Result<ReceiverOut> {
    let fd = socket.as_raw_fd();
    let mut batch = RecvBatch::new(cfg.batch);
    let mut out = ReceiverOut {
        tally: Tally::expecting(cfg.expect),
        recv_calls: 0,
        first_data: None,
        sentinel_at: None,
        peak_depth: 0,
        queue_dropped: 0,
        naps: 0,
        inline: Processed::default(),
        interrupted: false,
    };
    let nap = if granted / 1024 >= 4 * cfg.batch {
        cfg.nap
    } else {
        Duration::ZERO
    };
    let started = Instant::now();
    loop {
        if let Some(at) = out.sentinel_at
            && (out.tally.all_sentinels_in() || at.elapsed() >= cfg.linger)
        {
            break;
        }
        if out.sentinel_at.is_none() && cfg.timeout.is_some_and(|t| started.elapsed() >= t) {
            tracing::warn!("no sentinel before the timeout");
            break;
        }
        if cfg.stop.requested() {
            out.interrupted = out.sentinel_at.is_none();
            break;
        }
        let n = match batch.recv(fd) {
            Ok(n) => n,
            Err(e) if timed_out(&e) || interrupted(&e) => continue,
            Err(e) => {
                return Err(Error::Socket {
                    op: "recvmmsg",
                    source: e,
                });
            }
        };
        out.recv_calls += 1;
        for i in 0..n {
            let (bytes, ovfl) = batch.get(i);
            let source = batch.source(i);
            match out.tally.on_datagram(bytes, source, ovfl) {
                Verdict::Data { seq, sent_ns } => {
                    if out.first_data.is_none() {
                        out.first_data = Some(Instant::now());
                    }
                    let rec = Record { seq, sent_ns };
                    match producer.as_deref_mut() {
                        Some(p) => {
                            if p.push(rec).is_err() {
                                out.queue_dropped += 1;
                            }
                        }
                        None => out.inline.process(rec, work_ns),
                    }
                }
                Verdict::Sentinel { first: true } => out.sentinel_at = Some(Instant::now()),
                Verdict::Sentinel { first: false } => {}
                Verdict::Rejected { total, known } => {
                    tracing::warn!(
                        total,
                        known,
                        "sentinel refused: its total is below what arrived"
                    )
                }
                Verdict::OtherStream {
                    nonce,
                    source,
                    sentinel: true,
                } => {
                    tracing::warn!(
                        nonce = format_args!("{nonce:016x}"),
                        ?source,
                        "sentinel of another stream ignored"
                    )
                }
                Verdict::OtherStream { nonce, source, .. } => {
                    tracing::debug!(
                        nonce = format_args!("{nonce:016x}"),
                        ?source,
                        "datagram of another stream"
                    )
                }
                Verdict::Foreign(why) => {
                    tracing::debug!(?why, len = bytes.len(), "foreign datagram")
                }
            }
        }
        if let Some(p) = producer.as_deref() {
            let depth = cfg.queue - p.slots();
            out.peak_depth = out.peak_depth.max(depth);
            live.queue_depth.store(depth as u64, Ordering::Relaxed);
        }
        if let (Some(w), Some(p)) = (wake, producer.as_deref())
            && p.slots() < cfg.queue / 2
        {
            w.unpark();
        }
        live.received.store(out.tally.received, Ordering::Relaxed);
        live.queue_dropped
            .store(out.queue_dropped, Ordering::Relaxed);
        live.kernel_drops
            .store(out.tally.kernel_drops, Ordering::Relaxed);
        live.foreign.store(out.tally.foreign, Ordering::Relaxed);
        if producer.is_none() {
            live.delivered
                .store(out.inline.delivered, Ordering::Relaxed);
        }
        if !nap.is_zero() && n < cfg.batch / 2 {
            out.naps += 1;
            std::thread::sleep(nap);
        }
    }
    Ok(out)
}

/// Binds a sink with `config` and runs it.
pub fn run(config: SinkConfig) -> Result<SinkReport> {
    Sink::bind(config)?.run()
}
