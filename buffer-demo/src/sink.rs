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
//! With `receivers > 1` there are that many receivers, each on its own
//! `SO_REUSEPORT` socket on the one address (a BPF program spreads the stream
//! by seq) and with its own ring to the one processing thread; with `gro`
//! each socket has `UDP_GRO` on and a receiver splits every coalesced buffer
//! by its segment size before counting.
//!
//! The receiver runs until the copies of its stream's sentinel are in (or
//! `linger` after the first; or a [`Stop`] request), then the processing
//! drains the ring, and [`Ledger::close`] balances the books with
//! `/proc/net/udp` read last.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use socket2::{Domain, Protocol, Socket, Type};

use crate::account::{Expect, Ledger, Observations, Tally, Verdict};
use crate::error::{Error, Result};
use crate::mmsg::{GRO_SLOT, RecvBatch, SLOT, interrupted, segments, timed_out};
use crate::netns;
use crate::sockopt::{self, Rcvbuf};
use crate::stop::Stop;

/// Most datagrams per `recvmmsg` (the kernel's `UIO_MAXIOV`).
pub const MAX_BATCH: usize = 1024;
/// Largest application queue, datagrams (16 bytes each).
pub const MAX_QUEUE: usize = 1 << 24;
/// Most receiver threads (and sockets).
pub const MAX_RECEIVERS: usize = 64;
/// Most CPU work per datagram, microseconds (one second).
pub const MAX_WORK_US: f64 = 1_000_000.0;

/// Where the per-datagram work runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
    /// Buffers per `recvmmsg` (with `gro`, each may hold many datagrams).
    pub batch: usize,
    /// `UDP_GRO` on the socket(s): a GSO message arrives as one buffer,
    /// which the receiver splits by its segment size. The kernel then counts
    /// drops per message; the ledger converts.
    pub gro: bool,
    /// Receiver threads, each with its own `SO_REUSEPORT` socket on the
    /// same address and its own queue to the processing thread.
    pub receivers: usize,
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
            gro: false,
            receivers: 1,
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
    /// Queue capacity (split), datagrams.
    #[serde(rename = "queue_datagrams")]
    pub queue: usize,
    /// Work per datagram, µs.
    pub work_us: f64,
    /// Receiver threads (sockets).
    pub receivers: usize,
    /// Datagrams (all kinds) each receiver took out of its socket.
    pub per_receiver: Vec<u64>,
    /// `UDP_GRO` was on.
    pub gro: bool,
    /// Requested and granted receive buffer (each socket's).
    pub rcvbuf: Rcvbuf,
    /// Network namespace, if any.
    pub netns: Option<String>,
    /// The account.
    pub ledger: Ledger,
    /// `recvmmsg` calls that returned datagrams or an error other than the timeout.
    pub recv_calls: u64,
    /// Every `recvmmsg` call, those that timed out or found nothing included.
    pub recv_syscalls: u64,
    /// Buffers received (with GRO, one may hold many datagrams).
    pub buffers: u64,
    /// Naps taken between receive calls (see [`SinkConfig::nap`]).
    pub naps: u64,
    /// Datagrams (all kinds) per receive call.
    pub datagrams_per_call: f64,
    /// `recv_syscalls` per datagram received (all kinds).
    pub recv_syscalls_per_datagram: f64,
    /// From the first data datagram to the first sentinel copy, seconds.
    #[serde(rename = "stream_duration_s")]
    pub stream_secs: f64,
    /// Delivered datagrams per second over `stream_secs`.
    #[serde(rename = "delivered_per_s")]
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
    /// Datagrams still queued when a stop was requested: not processed,
    /// counted in the ledger as dropped in the queue.
    pub abandoned_at_stop: u64,
}

impl std::fmt::Display for SinkReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "sink {} ({} mode, {} receiver{}{}, batch {}, queue {}, work {} us{})",
            self.local_addr,
            self.mode,
            self.receivers,
            if self.receivers == 1 { "" } else { "s" },
            if self.gro { ", UDP_GRO" } else { "" },
            self.batch,
            self.queue,
            self.work_us,
            self.netns
                .as_ref()
                .map_or(String::new(), |n| format!(", netns {n}"))
        )?;
        writeln!(f, "{}", self.rcvbuf)?;
        if self.receivers > 1 {
            let each: Vec<String> = self.per_receiver.iter().map(u64::to_string).collect();
            writeln!(f, "datagrams per receiver: {}", each.join(", "))?;
        }
        writeln!(f, "{}", self.ledger)?;
        write!(
            f,
            "{:.0} delivered/s over {:.3} s; {} receive calls ({} in all, {:.5} per datagram; {} buffers; {} naps), {:.1} datagrams per call; latency mean {:.0} us, max {:.0} us; queue peak {}; peak RSS {} KiB",
            self.delivered_per_sec,
            self.stream_secs,
            self.recv_calls,
            self.recv_syscalls,
            self.recv_syscalls_per_datagram,
            self.buffers,
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
        if self.abandoned_at_stop > 0 {
            write!(
                f,
                "\nstopped with {} datagrams still queued: not processed, counted as dropped in the queue",
                self.abandoned_at_stop
            )?;
        }
        Ok(())
    }
}

/// A bound sink, ready to [`run`](Sink::run).
pub struct Sink {
    sockets: Vec<Socket>,
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
    /// Delivered by inline receivers (each adds its growth).
    delivered_inline: AtomicU64,
    receivers_done: AtomicUsize,
    /// A receiver has the stream's sentinel: the stream is over.
    sentinel_seen: AtomicBool,
}

struct ReceiverOut {
    tally: Tally,
    recv_calls: u64,
    recv_syscalls: u64,
    buffers: u64,
    first_data: Option<Instant>,
    sentinel_at: Option<Instant>,
    peak_depth: usize,
    queue_dropped: u64,
    naps: u64,
    inline: Processed,
    inline_shown: u64,
    interrupted: bool,
}

impl ReceiverOut {
    /// Adds another receiver's results (same stream, another socket).
    fn absorb(&mut self, o: ReceiverOut) {
        self.tally.absorb(&o.tally);
        self.recv_calls += o.recv_calls;
        self.recv_syscalls += o.recv_syscalls;
        self.buffers += o.buffers;
        self.first_data = match (self.first_data, o.first_data) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.sentinel_at = match (self.sentinel_at, o.sentinel_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.peak_depth = self.peak_depth.max(o.peak_depth);
        self.queue_dropped += o.queue_dropped;
        self.naps += o.naps;
        self.inline.absorb(&o.inline);
        self.interrupted |= o.interrupted;
    }
}

#[derive(Default)]
struct Processed {
    delivered: u64,
    /// Left in the queue, not processed, because a stop was requested.
    abandoned: u64,
    latency_sum_ns: u128,
    latency_max_ns: u64,
    checksum: u64,
}

impl Processed {
    fn absorb(&mut self, o: &Processed) {
        self.delivered += o.delivered;
        self.abandoned += o.abandoned;
        self.latency_sum_ns += o.latency_sum_ns;
        self.latency_max_ns = self.latency_max_ns.max(o.latency_max_ns);
        self.checksum ^= o.checksum;
    }

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
    /// Creates and binds the socket(s) (inside `config.netns` if set), sets
    /// the receive buffer, `SO_RXQ_OVFL`, `UDP_GRO` (`gro`) and, for several
    /// receivers, `SO_REUSEPORT` with [`sockopt::reuseport_program`].
    pub fn bind(config: SinkConfig) -> Result<Sink> {
        if !(1..=MAX_BATCH).contains(&config.batch) {
            return Err(Error::Config(format!(
                "--batch {} is not between 1 and {MAX_BATCH}",
                config.batch
            )));
        }
        if !(1..=MAX_QUEUE).contains(&config.queue) {
            return Err(Error::Config(format!(
                "--queue {} is not between 1 and {MAX_QUEUE}",
                config.queue
            )));
        }
        if !(1..=MAX_RECEIVERS).contains(&config.receivers) {
            return Err(Error::Config(format!(
                "--receivers {} is not between 1 and {MAX_RECEIVERS}",
                config.receivers
            )));
        }
        if !(config.work_us.is_finite() && (0.0..=MAX_WORK_US).contains(&config.work_us)) {
            return Err(Error::Config(format!(
                "--work-us {} is not between 0 and {MAX_WORK_US} microseconds",
                config.work_us
            )));
        }
        let make = {
            let config = config.clone();
            move || -> Result<(Vec<Socket>, Rcvbuf, Option<u64>)> {
                let domain = Domain::for_address(config.bind);
                let n = config.receivers;
                let mut sockets = Vec::with_capacity(n);
                let mut granted = None;
                let mut addr = config.bind;
                for i in 0..n {
                    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))
                        .map_err(Error::socket("socket"))?;
                    let rcvbuf = sockopt::set_rcvbuf(&socket, config.rcvbuf, config.force)?;
                    sockopt::enable_rxq_ovfl(&socket)?;
                    if config.gro {
                        sockopt::enable_gro(&socket)?;
                    }
                    if n > 1 {
                        sockopt::enable_reuseport(&socket)?;
                    }
                    socket
                        .set_read_timeout(Some(RECV_TIMEOUT))
                        .map_err(Error::socket("setsockopt(SO_RCVTIMEO)"))?;
                    socket
                        .bind(&addr.into())
                        .map_err(|source| Error::Bind { addr, source })?;
                    if i == 0 {
                        // The others join the port the first one got.
                        addr = socket
                            .local_addr()
                            .map_err(Error::socket("getsockname"))?
                            .as_socket()
                            .ok_or_else(|| Error::Config("bound address is not IP".into()))?;
                    }
                    granted.get_or_insert(rcvbuf);
                    sockets.push(socket);
                }
                if n > 1 {
                    sockopt::attach_reuseport_program(&sockets[0], n as u32)?;
                }
                let snmp = if config.netns.is_some() {
                    Some(sockopt::snmp_rcvbuf_errors()?)
                } else {
                    None
                };
                let rcvbuf = granted.ok_or_else(|| Error::Config("no receiver".into()))?;
                Ok((sockets, rcvbuf, snmp))
            }
        };
        let (sockets, rcvbuf, snmp_before) = match &config.netns {
            Some(ns) => netns::in_netns(ns, make)??,
            None => make()?,
        };
        let local_addr = sockets[0]
            .local_addr()
            .map_err(Error::socket("getsockname"))?
            .as_socket()
            .ok_or_else(|| Error::Config("bound address is not IP".into()))?;
        tracing::info!(%local_addr, %rcvbuf, receivers = sockets.len(), gro = config.gro, "sink bound");
        Ok(Sink {
            sockets,
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
        let n = self.sockets.len();
        let work_ns = (cfg.work_us * 1000.0).round() as u64;
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let (outs, processed) = std::thread::scope(|s| -> Result<(Vec<ReceiverOut>, Processed)> {
            let mut producers = Vec::with_capacity(n);
            let mut consumers = Vec::with_capacity(n);
            if cfg.mode == Mode::Split {
                for _ in 0..n {
                    let (p, c) = rtrb::RingBuffer::<Record>::new(cfg.queue);
                    producers.push(Some(p));
                    consumers.push(c);
                }
            } else {
                producers.resize_with(n, || None);
            }
            let processor = if consumers.is_empty() {
                None
            } else {
                let live = &live;
                let mut consumers = consumers;
                Some(
                    std::thread::Builder::new()
                        .name("bd-process".into())
                        .spawn_scoped(s, move || {
                            let mut done = Processed::default();
                            loop {
                                let mut any = false;
                                for consumer in consumers.iter_mut() {
                                    // A bounded run from each ring in turn.
                                    for _ in 0..256 {
                                        let Ok(rec) = consumer.pop() else { break };
                                        any = true;
                                        // Stopped: what is queued is not worked
                                        // through (minutes at a high --work-us),
                                        // it is counted as dropped in the queue.
                                        if cfg.stop.requested() {
                                            done.abandoned += 1;
                                            continue;
                                        }
                                        done.process(rec, work_ns);
                                        if done.delivered % 256 == 0 {
                                            live.delivered.store(done.delivered, Ordering::Relaxed);
                                        }
                                    }
                                }
                                if any {
                                    continue;
                                }
                                if live.receivers_done.load(Ordering::Acquire) == n {
                                    if consumers.iter().all(|c| c.is_empty()) {
                                        break;
                                    }
                                    // Stopped: what the receivers queued last is
                                    // counted as dropped in the queue too.
                                    if cfg.stop.requested() {
                                        for consumer in consumers.iter_mut() {
                                            while consumer.pop().is_ok() {
                                                done.abandoned += 1;
                                            }
                                        }
                                        break;
                                    }
                                } else {
                                    // Sleep briefly rather than spin: on a small machine a
                                    // spinning consumer takes the CPU the receivers need. A
                                    // receiver wakes us early when its queue fills up.
                                    std::thread::park_timeout(PROCESSOR_NAP);
                                }
                            }
                            live.delivered.store(done.delivered, Ordering::Relaxed);
                            done
                        })
                        .map_err(Error::io("spawn processing thread"))?,
                )
            };
            let wake = processor.as_ref().map(|p| p.thread().clone());
            let mut receivers = Vec::with_capacity(n);
            for (i, (socket, mut producer)) in self.sockets.iter().zip(producers).enumerate() {
                let live = &live;
                let granted = self.rcvbuf.granted;
                let done_tx = done_tx.clone();
                let wake = wake.clone();
                receivers.push(
                    std::thread::Builder::new()
                        .name(format!("bd-receive-{i}"))
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
                            live.receivers_done.fetch_add(1, Ordering::AcqRel);
                            // Wake the others: one of them may hold the sentinel
                            // only once this one stopped (a stop or an error).
                            if out.is_err() {
                                live.sentinel_seen.store(true, Ordering::Release);
                            }
                            if let Some(w) = &wake {
                                w.unpark();
                            }
                            let _ = done_tx.send(());
                            out
                        })
                        .map_err(Error::io("spawn receiver thread"))?,
                );
            }
            drop(done_tx);
            let started = Instant::now();
            let mut last = (started, 0u64);
            let mut finished = 0;
            while finished < n {
                let wait = cfg
                    .progress
                    .filter(|p| !p.is_zero())
                    .unwrap_or(Duration::from_secs(3600));
                match done_rx.recv_timeout(wait) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        last = progress_line(&live, cfg, last);
                    }
                    Ok(()) => finished += 1,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
            let mut outs = Vec::with_capacity(n);
            let mut first_err = None;
            for r in receivers {
                match r.join().expect("receiver thread panicked") {
                    Ok(o) => outs.push(o),
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            let processed = match processor {
                Some(p) => p.join().expect("processing thread panicked"),
                None => Processed::default(),
            };
            if let Some(e) = first_err {
                return Err(e);
            }
            if cfg.progress.is_some_and(|p| !p.is_zero()) {
                progress_line(&live, cfg, last);
                if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                    eprintln!();
                }
            }
            Ok((outs, processed))
        })?;
        // One account of every receiver.
        let per_receiver: Vec<u64> = outs.iter().map(|o| o.tally.received).collect();
        let mut outs = outs.into_iter();
        let mut out = outs
            .next()
            .ok_or_else(|| Error::Config("no receiver ran".into()))?;
        for o in outs {
            out.absorb(o);
        }
        let processed = if cfg.mode == Mode::Inline {
            std::mem::take(&mut out.inline)
        } else {
            processed
        };
        // Read after the last sentinel copy: the kernel's view at the end.
        let read_counters = || -> Result<(u64, Option<u64>)> {
            let mut drops = 0;
            for socket in &self.sockets {
                drops += sockopt::proc_udp_drops(socket)?;
            }
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
            queue_dropped: out.queue_dropped + processed.abandoned,
            proc_drops: Some(proc_drops),
            rcvbuf_errors,
            before_socket: None,
            kernel_from_proc: n > 1,
            kernel_counts_messages: cfg.gro,
        });
        let stream_secs = match (out.first_data, out.sentinel_at) {
            (Some(a), Some(b)) => b.saturating_duration_since(a).as_secs_f64(),
            _ => 0.0,
        };
        let received = out.tally.received;
        let report = SinkReport {
            interrupted: out.interrupted,
            abandoned_at_stop: processed.abandoned,
            local_addr: self.local_addr,
            mode: cfg.mode,
            batch: cfg.batch,
            queue: cfg.queue,
            work_us: cfg.work_us,
            receivers: n,
            per_receiver,
            gro: cfg.gro,
            rcvbuf: self.rcvbuf.clone(),
            netns: cfg.netns.clone(),
            recv_calls: out.recv_calls,
            recv_syscalls: out.recv_syscalls,
            buffers: out.buffers,
            naps: out.naps,
            datagrams_per_call: if out.recv_calls == 0 {
                0.0
            } else {
                received as f64 / out.recv_calls as f64
            },
            recv_syscalls_per_datagram: if received == 0 {
                0.0
            } else {
                out.recv_syscalls as f64 / received as f64
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
            match report.ledger.residual {
                Some(r) => tracing::warn!(residual = r, "the account does not close"),
                None => tracing::warn!("the account does not close: no sentinel arrived"),
            }
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
        if cfg.mode == Mode::Inline {
            live.delivered_inline.load(Ordering::Relaxed)
        } else {
            live.delivered.load(Ordering::Relaxed)
        },
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

/// The receiving thread: drains its socket, splits what `UDP_GRO`
/// coalesced, classifies, queues or works. With several receivers, the one
/// whose socket got the sentinel waits for its copies; the others, once it
/// has, drain what is left in their sockets (the stream was over before
/// the sentinel left) and stop.
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
    let slot = if cfg.gro { GRO_SLOT } else { SLOT };
    let mut batch = RecvBatch::with_slot(cfg.batch, slot);
    let mut out = ReceiverOut {
        tally: Tally::expecting(cfg.expect),
        recv_calls: 0,
        recv_syscalls: 0,
        buffers: 0,
        first_data: None,
        sentinel_at: None,
        peak_depth: 0,
        queue_dropped: 0,
        naps: 0,
        inline: Processed::default(),
        inline_shown: 0,
        interrupted: false,
    };
    let nap = if granted / 1024 >= 4 * cfg.batch {
        cfg.nap
    } else {
        Duration::ZERO
    };
    let started = Instant::now();
    // Inline mode: the data datagrams of the batch, to work through.
    let mut pending: Vec<Record> =
        Vec::with_capacity(if producer.is_none() { cfg.batch } else { 0 });
    // What this receiver last published to `live` (it adds the growth).
    let mut shown = (0u64, 0u64, 0u64, 0u64);
    loop {
        if let Some(at) = out.sentinel_at
            && (out.tally.all_sentinels_in() || at.elapsed() >= cfg.linger)
        {
            break;
        }
        let others_done = out.sentinel_at.is_none() && live.sentinel_seen.load(Ordering::Acquire);
        if out.sentinel_at.is_none()
            && !others_done
            && cfg.timeout.is_some_and(|t| started.elapsed() >= t)
        {
            tracing::warn!("no sentinel before the timeout");
            break;
        }
        if cfg.stop.requested() {
            out.interrupted = out.sentinel_at.is_none() && !others_done;
            break;
        }
        out.recv_syscalls += 1;
        let got = if others_done {
            batch.recv_nowait(fd)
        } else {
            batch.recv(fd)
        };
        let n = match got {
            Ok(n) => n,
            Err(e) if others_done && timed_out(&e) => break,
            Err(e) if timed_out(&e) || interrupted(&e) => continue,
            Err(e) => {
                return Err(Error::Socket {
                    op: "recvmmsg",
                    source: e,
                });
            }
        };
        out.recv_calls += 1;
        out.buffers += n as u64;
        for i in 0..n {
            let (bytes, ovfl) = batch.get(i);
            let source = batch.source(i);
            match batch.gro_size(i) {
                None => on_datagram(
                    &mut out,
                    bytes,
                    source,
                    ovfl,
                    producer.as_deref_mut(),
                    &mut pending,
                ),
                size => {
                    for bytes in segments(bytes, size) {
                        on_datagram(
                            &mut out,
                            bytes,
                            source,
                            ovfl,
                            producer.as_deref_mut(),
                            &mut pending,
                        );
                    }
                }
            }
        }
        if out.sentinel_at.is_some() {
            live.sentinel_seen.store(true, Ordering::Release);
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
        let now = (
            out.tally.received,
            out.queue_dropped,
            out.tally.kernel_drops,
            out.tally.foreign,
        );
        live.received.fetch_add(now.0 - shown.0, Ordering::Relaxed);
        live.queue_dropped
            .fetch_add(now.1 - shown.1, Ordering::Relaxed);
        live.kernel_drops
            .fetch_add(now.2.saturating_sub(shown.2), Ordering::Relaxed);
        live.foreign.fetch_add(now.3 - shown.3, Ordering::Relaxed);
        shown = (now.0, now.1, now.2.max(shown.2), now.3);
        if producer.is_none() {
            // The work, after the batch is counted (the progress line shows
            // what arrived while the work goes on). Stopped: the rest of
            // the batch is not worked through.
            for rec in pending.drain(..) {
                if cfg.stop.requested() {
                    out.inline.abandoned += 1;
                } else {
                    out.inline.process(rec, work_ns);
                }
            }
            live.delivered_inline
                .fetch_add(out.inline.delivered - out.inline_shown, Ordering::Relaxed);
            out.inline_shown = out.inline.delivered;
        }
        if !nap.is_zero() && n < cfg.batch / 2 && !others_done {
            out.naps += 1;
            std::thread::sleep(nap);
        }
    }
    Ok(out)
}

/// Classifies one datagram and queues it: on the ring to the processing
/// thread (split), or on `inline` for this thread to work through once the
/// batch is counted (inline).
fn on_datagram(
    out: &mut ReceiverOut,
    bytes: &[u8],
    source: Option<SocketAddr>,
    ovfl: Option<u32>,
    producer: Option<&mut rtrb::Producer<Record>>,
    inline: &mut Vec<Record>,
) {
    match out.tally.on_datagram(bytes, source, ovfl) {
        Verdict::Data { seq, sent_ns } => {
            if out.first_data.is_none() {
                out.first_data = Some(Instant::now());
            }
            let rec = Record { seq, sent_ns };
            match producer {
                Some(p) => {
                    if p.push(rec).is_err() {
                        out.queue_dropped += 1;
                    }
                }
                None => inline.push(rec),
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
                source = %source.map_or("unknown".into(), |a| a.to_string()),
                "sentinel of another stream ignored"
            )
        }
        Verdict::OtherStream { nonce, source, .. } => {
            tracing::debug!(
                nonce = format_args!("{nonce:016x}"),
                source = %source.map_or("unknown".into(), |a| a.to_string()),
                "datagram of another stream"
            )
        }
        Verdict::Foreign(why) => {
            tracing::debug!(why = %why, len = bytes.len(), "foreign datagram")
        }
    }
}

/// Binds a sink with `config` and runs it.
pub fn run(config: SinkConfig) -> Result<SinkReport> {
    Sink::bind(config)?.run()
}
