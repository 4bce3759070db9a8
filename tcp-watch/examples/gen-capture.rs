// cargo run --release -p tcp-watch --example gen-capture -- --bytes 1G --out /tmp/big.pcap

//! A deterministic, realistic capture of many concurrent TCP transfers, of any
//! size, for the speed and memory benchmark (`scripts/tcp-watch-bench`), with
//! its ground truth beside it (`FILE.truth.json`).
//!
//! Why a simulation and not the lab: the benchmark needs a gigabyte that
//! every run and every machine writes identically in seconds, and whose
//! streams, bytes, retransmissions and hashes are known exactly.
//!
//! The model is a discrete-event simulation of TCP connections seen from a
//! capture point next to each data receiver (times are capture times):
//!
//! * Ethernet, IPv4 (some IPv6), about `--streams` connections live at a
//!   time, each a few KB to tens of MB; a new one starts when one closes.
//! * Full handshakes with MSS, window scale, SACK permitted and timestamps;
//!   the receiver's side speaks first with a small message (a request, or a
//!   server's banner), then the sender paces segments of one MSS (1448 bytes
//!   of a cheap PRNG's payload over IPv4) at its own rate.
//! * The receiver ACKs every second segment, at once on PSH, and at once
//!   with SACK blocks (RFC 2018) for data above a hole.
//! * Impairments: loss before the capture point (the hole shows, duplicate
//!   ACKs with SACK follow, the sender fast-retransmits one RTT after the
//!   third; sometimes a second segment of the window is lost too and resent
//!   by SACK recovery); a tail segment lost after the capture point, resent
//!   by the retransmission timer with doubling backoff (RFC 6298 §5.5),
//!   one to four attempts; reordering (a segment delayed past its
//!   successor); zero-window episodes (the receiver's buffer fills, the
//!   sender probes with doubling intervals until the window reopens).
//!   Every lost segment is resent and reaches the receiver: the capture has
//!   no hole that never fills, and each direction's bytes are exactly what
//!   its application sent.
//! * FIN close from the sender, FIN from the receiver, last ACK.
//!
//! The ground truth (streams with both endpoints, bytes and sha256 per
//! direction, frames, retransmissions by kind, timeout episodes, reordered
//! segments, losses, duplicate ACKs, zero windows and probes) goes to the
//! sidecar JSON and, summed, to stderr.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use sha2::{Digest, Sha256};

/// Largest capture this writes: a bound on the run time and on the disk.
const MAX_BYTES: u64 = 256 << 30;
/// Smallest capture worth simulating.
const MIN_BYTES: u64 = 64 << 10;
/// Most connections live at once (the simulation's heap stays small).
const MAX_STREAMS: u64 = 4096;
/// Largest per-segment loss probability accepted.
const MAX_LOSS: f64 = 0.05;

const NS: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;
const US: u64 = 1_000;
/// Capture start: 2023-11-14 22:13:20 UTC, a fixed epoch so that files are
/// identical from run to run.
const EPOCH_NS: u64 = 1_700_000_000 * NS;
/// Linux's minimum retransmission timeout (RFC 6298 §2.4 allows 1 s; Linux
/// uses 200 ms), also its first zero-window probe interval.
const MIN_RTO: u64 = 200 * MS;
/// Window scale shift both sides announce (RFC 7323 §2).
const WSCALE: u8 = 7;
/// The receiver's window field when its buffer is not filling: 4 MiB.
const OPEN_WINDOW: u16 = 0x7fff;
/// Segments after an event before another may start, so that episodes do
/// not overlap and each is classified on its own.
const COOLDOWN_SEGMENTS: u64 = 16;

#[derive(Parser, Debug)]
#[command(
    name = "gen-capture",
    about = "Write a deterministic pcap of many concurrent TCP transfers with loss, \
             retransmissions, reordering and zero windows, and its ground truth as JSON."
)]
struct Args {
    /// Capture size to reach (at least): a number with an optional K, M or G
    /// suffix (binary: 1G = 2^30 bytes), from 64K to 256G.
    #[arg(long, value_parser = parse_size, default_value = "1G")]
    bytes: u64,
    /// The pcap file to write.
    #[arg(long)]
    out: PathBuf,
    /// The ground truth's JSON file (default: OUT.truth.json).
    #[arg(long)]
    truth: Option<PathBuf>,
    /// Seed of every random choice: the same seed writes the same file.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64))]
    seed: u64,
    /// Connections live at once.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=MAX_STREAMS))]
    streams: u64,
    /// Probability that a data segment is lost before the capture point
    /// (0 to 0.05); timeouts, reordering and zero windows scale with it.
    #[arg(long, default_value_t = 0.002, value_parser = cli_values::float_in(0.0, MAX_LOSS, "a loss probability"))]
    loss: f64,
}

/// `1G`, `512M`, `100K`, `123456` (binary units), within the bounds above.
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (digits, unit) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&t[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("expected a size such as 1G, 512M or 100000, got {s:?}"))?;
    let v = n
        .checked_mul(unit)
        .filter(|v| (MIN_BYTES..=MAX_BYTES).contains(v))
        .ok_or_else(|| format!("expected a size from 64K to 256G, got {s:?}"))?;
    Ok(v)
}

/// splitmix64: seeds and per-segment payload streams.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A small PRNG for the simulation's choices (xorshift64*).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(mix(seed) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// Log-uniform in [lo, hi].
    fn log_uniform(&mut self, lo: f64, hi: f64) -> f64 {
        (lo.ln() + self.unit() * (hi.ln() - lo.ln())).exp()
    }
}

/// The payload of segment `k` of a stream: a function of the two only, so a
/// resend carries the same bytes as the original.
fn fill_payload(seed: u64, k: u64, out: &mut [u8]) {
    let mut s = mix(seed ^ k.wrapping_mul(0xd134_2543_de82_ef95)) | 1;
    let mut chunks = out.chunks_exact_mut(8);
    for c in &mut chunks {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        c.copy_from_slice(&s.to_le_bytes());
    }
    let rest = chunks.into_remainder();
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    let n = rest.len();
    rest.copy_from_slice(&s.to_le_bytes()[..n]);
}

/// Retransmission causes, as the analysis names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Fast,
    Sack,
    Rto,
}

/// What the receiver's ACK says, fixed when the receiver decides to send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct AckDesc {
    ack_off: u64,
    window: u16,
    tsecr: u32,
    nsack: u8,
    sack: [(u64, u64); 3],
}

/// One scheduled happening of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Syn,
    SynAck,
    HandshakeAck,
    Message,
    /// The sender (re)starts sending new data.
    Resume,
    /// A segment delayed on the path, arriving after its successor.
    Reordered {
        k: u64,
    },
    Retransmit {
        k: u64,
        kind: Kind,
        attempt: u8,
        of: u8,
    },
    ReceiverAck(AckDesc),
    Probe {
        interval: u64,
    },
    WindowUpdate,
    SenderFin,
    ReceiverFin,
    LastAck,
}

/// Ground-truth counters, summed over the capture.
#[derive(Debug, Default)]
struct Truth {
    frames: u64,
    file_bytes: u64,
    tcp_segments: u64,
    data_segments: u64,
    payload_bytes: u64,
    fast: u64,
    sack: u64,
    rto: u64,
    rto_episodes: u64,
    reordered: u64,
    lost_before_capture: u64,
    lost_after_capture: u64,
    duplicate_acks: u64,
    zero_windows: u64,
    zero_window_probes: u64,
    keep_alives: u64,
    streams: u64,
    ipv6_streams: u64,
}

/// The pcap writer and the frame buffer it reuses.
struct Out {
    w: BufWriter<File>,
    frame: Vec<u8>,
    truth: Truth,
    streams_json: BufWriter<File>,
}

/// Who sends a segment: the data sender (far from the capture) or the
/// receiver (next to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Sender,
    Receiver,
}

enum Payload {
    None,
    Data { k: u64, len: usize },
    Message,
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// One connection: its fixed parameters, the sender's and the receiver's
/// state, and what it has shown the capture. Times are nanoseconds at the
/// capture point; data is counted in segments of `mss` bytes (`k`), bytes
/// in offsets from the first data byte.
struct Conn {
    /// Start order, in the truth's `index`.
    id: u64,
    v6: bool,
    /// Uploads: the client sends the bulk data (else the server does).
    client_is_sender: bool,
    sender_ip: [u8; 16],
    receiver_ip: [u8; 16],
    sender_port: u16,
    receiver_port: u16,
    /// Round trip from the capture point to the sender and back.
    rtt: u64,
    /// Pacing: time between two new data segments.
    gap: u64,
    /// The receiver's reaction time (it is next to the capture point).
    delta: u64,
    mss: u64,
    /// Bulk payload bytes, and the segments they make.
    total: u64,
    segs: u64,
    /// Payload seed (bytes are a function of it and the segment index).
    seed: u64,
    /// The receiver side's small message (request or banner).
    msg_len: usize,
    sender_isn: u32,
    receiver_isn: u32,
    sender_ts: u32,
    receiver_ts: u32,
    ip_id: [u16; 2],
    rng: Rng,
    /// Scheduled happenings, earliest first (ties in scheduling order).
    pending: BinaryHeap<Reverse<(u64, u64, Ev)>>,
    order: u64,

    // The sender.
    /// Next new segment, and when it goes (None: paused or finished).
    next_k: u64,
    cursor: Option<u64>,
    /// The last segment before a pause (timeout or filling window).
    stop_at: Option<u64>,
    /// The tail segment the timer will resend.
    rto_at: Option<u64>,
    /// Loss recovery under way: the segments lost before the capture
    /// point, whether their resends are scheduled, a second loss to come.
    in_recovery: bool,
    lost: Vec<u64>,
    retransmit_scheduled: bool,
    double_at: Option<u64>,
    /// No new impairment before this segment.
    cooldown_k: u64,
    zero_window_done: bool,
    /// When the receiver reopens its window.
    update_time: u64,

    // The receiver.
    /// Segments received in order, and the ranges above a hole.
    rcv_nxt: u64,
    ooo: Vec<(u64, u64)>,
    /// In-order segments not yet ACKed (ACK every second one).
    unacked: u32,
    last_ack_off: u64,
    /// Duplicate ACKs in a row for the current hole.
    dupacks: u32,
    /// TSval to echo (RFC 7323 §4.3: of the last in-order segment).
    ts_recent: u32,
    /// The right edge its window keeps while its application is not
    /// reading, and whether the window is closed.
    window_edge: Option<u64>,
    zero: bool,
    fin_scheduled: bool,
    done: bool,

    // What the capture showed, for the truth.
    dup_acks: u64,
    zero_windows: u64,
    data_hash: Sha256,
    msg_hash: Sha256,
    first_frame: u64,
}

fn ip_v4(a: [u8; 4]) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..4].copy_from_slice(&a);
    v
}

fn ones_complement(sum: u64) -> u16 {
    let mut s = sum;
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn sum_be16(bytes: &[u8]) -> u64 {
    let mut s = 0u64;
    let mut chunks = bytes.chunks_exact(2);
    for c in &mut chunks {
        s += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        s += u64::from(*b) << 8;
    }
    s
}

impl Conn {
    fn new(id: u64, seed: u64, start: u64) -> Conn {
        let mut rng = Rng::new(seed ^ mix(id.wrapping_add(0x5eed)));
        let v6 = rng.below(10) == 0;
        let client_is_sender = rng.below(5) == 0;
        let large = rng.below(100) < 4;
        let total = if large {
            rng.log_uniform(2e6, 48e6)
        } else {
            rng.log_uniform(2e3, 512e3)
        } as u64;
        let mss = if v6 { 1428 } else { 1448 };
        let rate_bps = rng.log_uniform(20e6, 200e6);
        let gap = ((mss * 8) as f64 * 1e9 / rate_bps) as u64;
        let rtt = (rng.log_uniform(2.0, 40.0) * MS as f64) as u64;
        let delta = 10 * US + rng.below(30 * US);
        let host = id % 60_000;
        let (client_ip, server_ip) = if v6 {
            let mut c = [0u8; 16];
            c[..6].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 1]);
            c[14..].copy_from_slice(&(host as u16).to_be_bytes());
            let mut s = [0u8; 16];
            s[..6].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 2]);
            s[15] = 1 + (id % 16) as u8;
            (c, s)
        } else {
            (
                ip_v4([10, 1, (host >> 8) as u8, host as u8]),
                ip_v4([192, 0, 2, 1 + (id % 16) as u8]),
            )
        };
        let client_port = 20_000 + (id / 60_000 % 40_000) as u16;
        let server_port = if client_is_sender { 2049 } else { 443 };
        let (sender_ip, receiver_ip, sender_port, receiver_port) = if client_is_sender {
            (client_ip, server_ip, client_port, server_port)
        } else {
            (server_ip, client_ip, server_port, client_port)
        };
        let mut c = Conn {
            id,
            v6,
            client_is_sender,
            sender_ip,
            receiver_ip,
            sender_port,
            receiver_port,
            rtt,
            gap,
            delta,
            mss,
            total,
            segs: total.div_ceil(mss),
            seed: mix(seed ^ id),
            msg_len: 80 + rng.below(400) as usize,
            sender_isn: rng.next() as u32,
            receiver_isn: rng.next() as u32,
            sender_ts: rng.next() as u32,
            receiver_ts: rng.next() as u32,
            ip_id: [rng.next() as u16, rng.next() as u16],
            rng,
            pending: BinaryHeap::new(),
            order: 0,
            next_k: 0,
            cursor: None,
            stop_at: None,
            rto_at: None,
            in_recovery: false,
            double_at: None,
            lost: Vec::new(),
            retransmit_scheduled: false,
            cooldown_k: 4,
            zero_window_done: false,
            update_time: 0,
            rcv_nxt: 0,
            ooo: Vec::new(),
            unacked: 0,
            last_ack_off: 0,
            dupacks: 0,
            ts_recent: 0,
            window_edge: None,
            zero: false,
            fin_scheduled: false,
            done: false,
            dup_acks: 0,
            zero_windows: 0,
            data_hash: Sha256::new(),
            msg_hash: Sha256::new(),
            first_frame: 0,
        };
        c.schedule(start, Ev::Syn);
        c
    }

    fn schedule(&mut self, t: u64, ev: Ev) {
        self.order += 1;
        self.pending.push(Reverse((t, self.order, ev)));
    }

    /// When this connection next does something.
    fn next_time(&self) -> u64 {
        let p = self
            .pending
            .peek()
            .map_or(u64::MAX, |Reverse((t, _, _))| *t);
        self.cursor.map_or(p, |c| c.min(p))
    }

    fn seg_len(&self, k: u64) -> usize {
        (self.total - k * self.mss).min(self.mss) as usize
    }

    fn seg_end(&self, k: u64) -> u64 {
        (k * self.mss + self.mss).min(self.total)
    }

    fn sender_tsval(&self, t: u64) -> u32 {
        let at = t.saturating_sub(self.rtt / 2) / MS;
        self.sender_ts.wrapping_add(at as u32)
    }

    fn receiver_tsval(&self, t: u64) -> u32 {
        self.receiver_ts.wrapping_add((t / MS) as u32)
    }

    /// The sender's last sight of the receiver's clock.
    fn sender_tsecr(&self, t: u64) -> u32 {
        self.receiver_tsval(t.saturating_sub(self.rtt))
    }

    fn receiver_seq_after_msg(&self) -> u32 {
        self.receiver_isn
            .wrapping_add(1)
            .wrapping_add(self.msg_len as u32)
    }

    fn sender_seq(&self, off: u64) -> u32 {
        self.sender_isn.wrapping_add(1).wrapping_add(off as u32)
    }

    /// The receiver's window field for an ACK of `ack_off`.
    fn window_for(&self, ack_off: u64) -> u16 {
        match self.window_edge {
            Some(edge) => {
                let room = edge.saturating_sub(ack_off).div_ceil(1 << WSCALE);
                room.min(u64::from(OPEN_WINDOW)) as u16
            }
            None => OPEN_WINDOW,
        }
    }

    /// Does the next thing due (at `now`, which is `next_time()`).
    fn step(&mut self, now: u64, out: &mut Out, p: &Params) -> io::Result<()> {
        let due_pending = self
            .pending
            .peek()
            .is_some_and(|Reverse((t, _, _))| *t <= now);
        if !due_pending {
            return self.send_new(now, out, p);
        }
        let Some(Reverse((_, _, ev))) = self.pending.pop() else {
            return Ok(());
        };
        self.handle(now, ev, out)
    }

    fn handle(&mut self, now: u64, ev: Ev, out: &mut Out) -> io::Result<()> {
        let client_side = if self.client_is_sender {
            Side::Sender
        } else {
            Side::Receiver
        };
        let server_side = match client_side {
            Side::Sender => Side::Receiver,
            Side::Receiver => Side::Sender,
        };
        // A packet answering one seen at the capture point shows up a
        // round trip later from the far sender, at once from the receiver.
        let (rtt, delta) = (self.rtt, self.delta);
        let later = move |s: Side| match s {
            Side::Sender => rtt,
            Side::Receiver => delta,
        };
        match ev {
            Ev::Syn => {
                out.truth.streams += 1;
                out.truth.ipv6_streams += u64::from(self.v6);
                self.first_frame = out.truth.frames + 1;
                let isn = self.isn(client_side);
                self.emit_syn(out, now, client_side, isn, 0, SYN)?;
                self.schedule(now + later(server_side), Ev::SynAck);
            }
            Ev::SynAck => {
                let isn = self.isn(server_side);
                let ack = self.isn(client_side).wrapping_add(1);
                self.emit_syn(out, now, server_side, isn, ack, SYN | ACK)?;
                self.schedule(now + later(client_side), Ev::HandshakeAck);
            }
            Ev::HandshakeAck => {
                let seq = self.isn(client_side).wrapping_add(1);
                let ack = self.isn(server_side).wrapping_add(1);
                self.emit(out, now, client_side, seq, ack, ACK, Payload::None, None)?;
                self.schedule(now + self.delta, Ev::Message);
            }
            Ev::Message => {
                let seq = self.receiver_isn.wrapping_add(1);
                let ack = self.sender_isn.wrapping_add(1);
                self.emit(
                    out,
                    now,
                    Side::Receiver,
                    seq,
                    ack,
                    ACK | PSH,
                    Payload::Message,
                    None,
                )?;
                self.schedule(now + self.rtt, Ev::Resume);
            }
            Ev::Resume => {
                if self.next_k < self.segs {
                    self.cursor = Some(now);
                }
            }
            Ev::Reordered { k } => {
                self.emit_data(out, now, k, false)?;
                self.arrive(now, k, false);
            }
            Ev::Retransmit {
                k,
                kind,
                attempt,
                of,
            } => {
                match kind {
                    Kind::Fast => out.truth.fast += 1,
                    Kind::Sack => out.truth.sack += 1,
                    Kind::Rto => out.truth.rto += 1,
                }
                self.emit_data(out, now, k, true)?;
                if attempt < of {
                    out.truth.lost_after_capture += 1;
                    let wait = self.rto() << attempt;
                    self.schedule(
                        now + wait,
                        Ev::Retransmit {
                            k,
                            kind,
                            attempt: attempt + 1,
                            of,
                        },
                    );
                } else {
                    self.arrive(now, k, true);
                    if kind == Kind::Rto {
                        self.schedule(now + self.delta + self.rtt, Ev::Resume);
                    }
                }
            }
            Ev::ReceiverAck(a) => {
                let seq = self.receiver_seq_after_msg();
                let ack = self.sender_seq(a.ack_off);
                self.emit(
                    out,
                    now,
                    Side::Receiver,
                    seq,
                    ack,
                    ACK,
                    Payload::None,
                    Some(a),
                )?;
            }
            Ev::Probe { interval } => {
                // The sender probes only while it still believes the window
                // is closed (the update takes a round trip to reach it).
                if now < self.update_time + self.rtt {
                    // One that reaches the capture point after the window
                    // reopened there looks like a keep-alive (seq = next - 1,
                    // no data, window open): the truth counts what it shows.
                    if now < self.update_time {
                        out.truth.zero_window_probes += 1;
                    } else {
                        out.truth.keep_alives += 1;
                    }
                    let seq = self.sender_seq(self.last_ack_off).wrapping_sub(1);
                    let ack = self.receiver_seq_after_msg();
                    self.emit(out, now, Side::Sender, seq, ack, ACK, Payload::None, None)?;
                    let reply = self.ack_desc(self.last_ack_off);
                    self.schedule(now + self.delta, Ev::ReceiverAck(reply));
                    self.schedule(
                        now + interval * 2,
                        Ev::Probe {
                            interval: interval * 2,
                        },
                    );
                }
            }
            Ev::WindowUpdate => {
                self.window_edge = None;
                self.zero = false;
                let a = self.ack_desc(self.last_ack_off);
                let seq = self.receiver_seq_after_msg();
                let ack = self.sender_seq(a.ack_off);
                self.emit(
                    out,
                    now,
                    Side::Receiver,
                    seq,
                    ack,
                    ACK,
                    Payload::None,
                    Some(a),
                )?;
                self.schedule(now + self.rtt, Ev::Resume);
            }
            Ev::SenderFin => {
                let seq = self.sender_seq(self.total);
                let ack = self.receiver_seq_after_msg();
                self.emit(
                    out,
                    now,
                    Side::Sender,
                    seq,
                    ack,
                    FIN | ACK,
                    Payload::None,
                    None,
                )?;
                self.schedule(now + self.delta, Ev::ReceiverFin);
            }
            Ev::ReceiverFin => {
                let seq = self.receiver_seq_after_msg();
                let ack = self.sender_seq(self.total).wrapping_add(1);
                self.emit(
                    out,
                    now,
                    Side::Receiver,
                    seq,
                    ack,
                    FIN | ACK,
                    Payload::None,
                    None,
                )?;
                self.schedule(now + self.rtt, Ev::LastAck);
            }
            Ev::LastAck => {
                let seq = self.sender_seq(self.total).wrapping_add(1);
                let ack = self.receiver_seq_after_msg().wrapping_add(1);
                self.emit(out, now, Side::Sender, seq, ack, ACK, Payload::None, None)?;
                self.done = true;
            }
        }
        Ok(())
    }

    fn isn(&self, side: Side) -> u32 {
        match side {
            Side::Sender => self.sender_isn,
            Side::Receiver => self.receiver_isn,
        }
    }

    /// The retransmission timeout the sender would compute: RTT plus
    /// variance, never under Linux's 200 ms.
    fn rto(&self) -> u64 {
        MIN_RTO + self.rtt
    }

    /// The sender's next new segment, with its fate drawn.
    fn send_new(&mut self, now: u64, out: &mut Out, p: &Params) -> io::Result<()> {
        let k = self.next_k;
        self.next_k += 1;
        let last = self.next_k == self.segs;
        self.cursor = if last { None } else { Some(now + self.gap) };
        out.truth.payload_bytes += self.seg_len(k) as u64;
        let eligible = !self.in_recovery
            && self.stop_at.is_none()
            && k >= self.cooldown_k
            && k + 12 < self.segs;
        let mut psh = last;
        if self.double_at == Some(k) {
            // The second loss of the window: resent by SACK recovery.
            self.double_at = None;
            self.lost.push(k);
            out.truth.lost_before_capture += 1;
            self.hash_unsent(k, out);
            return Ok(());
        }
        if self.rto_at == Some(k) {
            self.rto_at = None;
            self.stop_at = None;
            self.cursor = None;
            out.truth.rto_episodes += 1;
            let of = match self.rng.below(20) {
                0..=9 => 1,
                10..=14 => 2,
                15..=17 => 3,
                _ => 4,
            };
            self.emit_data(out, now, k, true)?;
            self.hash_after(k, out);
            out.truth.lost_after_capture += 1;
            self.cooldown_k = k + COOLDOWN_SEGMENTS;
            let t = now + self.rto();
            self.schedule(
                t,
                Ev::Retransmit {
                    k,
                    kind: Kind::Rto,
                    attempt: 1,
                    of,
                },
            );
            return Ok(());
        }
        if self.stop_at == Some(k) {
            // The last segment the filling window admits.
            self.stop_at = None;
            self.cursor = None;
            psh = true;
        }
        if eligible {
            let r = self.rng.unit();
            let (pl, pr, pt) = (p.loss, p.loss / 2.0, p.loss / 40.0);
            if r < pl {
                self.in_recovery = true;
                self.lost.push(k);
                out.truth.lost_before_capture += 1;
                if self.rng.below(4) == 0 {
                    self.double_at = Some(k + 2);
                }
                self.hash_unsent(k, out);
                return Ok(());
            } else if r < pl + pr {
                out.truth.reordered += 1;
                self.cooldown_k = k + 4;
                let extra = self.gap + self.gap / 2;
                self.schedule(now + extra, Ev::Reordered { k });
                self.hash_unsent(k, out);
                return Ok(());
            } else if r < pl + pr + pt {
                // A pause follows the next segment, which is lost after the
                // capture point: a tail loss only the timer can repair.
                self.rto_at = Some(k + 1);
                self.stop_at = Some(k + 1);
                psh = true;
            } else if r < pl + pr + pt + p.zero_window && !self.zero_window_done {
                // The receiver's application stops reading: its window's
                // right edge stays where it is, and the sender fills it.
                let edge_goal = self.last_ack_off + (u64::from(OPEN_WINDOW) << WSCALE);
                let z = edge_goal.div_ceil(self.mss).saturating_sub(1).max(k + 1);
                if z + 12 < self.segs {
                    self.zero_window_done = true;
                    self.window_edge = Some(self.seg_end(z));
                    self.stop_at = Some(z);
                }
            }
        }
        self.emit_data(out, now, k, psh)?;
        self.hash_after(k, out);
        self.arrive(now, k, psh);
        Ok(())
    }

    /// Hash segment `k`'s payload, which was just written into the frame.
    fn hash_after(&mut self, k: u64, out: &Out) {
        let len = self.seg_len(k);
        let f = &out.frame;
        self.data_hash.update(&f[f.len() - len..]);
    }

    /// Hash segment `k`'s payload, which the capture does not show now.
    fn hash_unsent(&mut self, k: u64, out: &mut Out) {
        let len = self.seg_len(k);
        out.frame.clear();
        out.frame.resize(len, 0);
        fill_payload(self.seed, k, &mut out.frame);
        self.data_hash.update(&out.frame);
    }

    fn ack_desc(&self, ack_off: u64) -> AckDesc {
        let mut a = AckDesc {
            ack_off,
            window: if self.zero {
                0
            } else {
                self.window_for(ack_off)
            },
            tsecr: self.ts_recent,
            nsack: 0,
            sack: [(0, 0); 3],
        };
        for (i, r) in self.ooo.iter().rev().take(3).enumerate() {
            a.sack[i] = (r.0 * self.mss, self.seg_end(r.1 - 1));
            a.nsack += 1;
        }
        a
    }

    /// Segment `k` reaches the receiver (just after the capture point).
    fn arrive(&mut self, now: u64, k: u64, psh: bool) {
        let had_hole = !self.ooo.is_empty();
        let tsval = self.sender_tsval(now);
        if k == self.rcv_nxt {
            self.rcv_nxt += 1;
            self.ts_recent = tsval;
            while let Some(&(a, b)) = self.ooo.first() {
                if a != self.rcv_nxt {
                    break;
                }
                self.rcv_nxt = b;
                self.ooo.remove(0);
            }
            self.unacked += 1;
        } else if k > self.rcv_nxt {
            self.insert_ooo(k);
        }
        let all = self.rcv_nxt == self.segs;
        let now_hole = !self.ooo.is_empty();
        if !(had_hole || now_hole || psh || all || self.unacked >= 2) {
            return;
        }
        let ack_off = (self.rcv_nxt * self.mss).min(self.total);
        if let Some(edge) = self.window_edge
            && !self.zero
            && ack_off >= edge
        {
            self.close_window(now);
        }
        let a = self.ack_desc(ack_off);
        let dup = ack_off == self.last_ack_off && now_hole;
        if dup {
            self.dupacks += 1;
        } else if ack_off > self.last_ack_off {
            self.dupacks = 0;
        }
        self.last_ack_off = ack_off;
        self.unacked = 0;
        self.schedule(now + self.delta, Ev::ReceiverAck(a));
        self.dup_acks += u64::from(dup);
        if self.dupacks == 3 && self.in_recovery && !self.retransmit_scheduled {
            self.retransmit_scheduled = true;
            let t = now + self.delta + self.rtt;
            let lost = self.lost.clone();
            for (i, &l) in lost.iter().enumerate() {
                let kind = if i == 0 { Kind::Fast } else { Kind::Sack };
                self.schedule(
                    t + i as u64 * 12 * US,
                    Ev::Retransmit {
                        k: l,
                        kind,
                        attempt: 1,
                        of: 1,
                    },
                );
            }
        }
        if self.in_recovery
            && self.retransmit_scheduled
            && self.lost.iter().all(|&l| l < self.rcv_nxt)
        {
            self.in_recovery = false;
            self.retransmit_scheduled = false;
            self.lost.clear();
            self.cooldown_k = self.next_k + COOLDOWN_SEGMENTS;
        }
        if all && !self.fin_scheduled {
            self.fin_scheduled = true;
            self.schedule(now + self.delta + self.rtt, Ev::SenderFin);
        }
    }

    fn insert_ooo(&mut self, k: u64) {
        let pos = self
            .ooo
            .iter()
            .position(|r| r.0 > k)
            .unwrap_or(self.ooo.len());
        if pos > 0 && self.ooo[pos - 1].1 == k {
            self.ooo[pos - 1].1 = k + 1;
            if pos < self.ooo.len() && self.ooo[pos].0 == k + 1 {
                self.ooo[pos - 1].1 = self.ooo[pos].1;
                self.ooo.remove(pos);
            }
        } else if pos < self.ooo.len() && self.ooo[pos].0 == k + 1 {
            self.ooo[pos].0 = k;
        } else if pos == 0 || self.ooo[pos - 1].1 <= k {
            self.ooo.insert(pos, (k, k + 1));
        }
    }
}

impl Conn {
    /// The ACK that takes the window to zero: the sender will probe until
    /// the receiver's application reads again.
    fn close_window(&mut self, now: u64) {
        self.zero = true;
        self.zero_windows += 1;
        let d = 100 * MS + self.rng.below(900 * MS);
        self.update_time = now + self.delta + d;
        self.schedule(self.update_time, Ev::WindowUpdate);
        let first = now + self.delta + self.rtt + self.rto();
        self.schedule(
            first,
            Ev::Probe {
                interval: self.rto(),
            },
        );
    }

    fn emit_data(&mut self, out: &mut Out, now: u64, k: u64, psh: bool) -> io::Result<()> {
        let seq = self.sender_seq(k * self.mss);
        let ack = self.receiver_seq_after_msg();
        let flags = if psh { ACK | PSH } else { ACK };
        let len = self.seg_len(k);
        self.emit(
            out,
            now,
            Side::Sender,
            seq,
            ack,
            flags,
            Payload::Data { k, len },
            None,
        )
    }

    fn emit_syn(
        &mut self,
        out: &mut Out,
        now: u64,
        side: Side,
        seq: u32,
        ack: u32,
        flags: u8,
    ) -> io::Result<()> {
        let mss: u16 = if self.v6 { 1440 } else { 1460 };
        let (tsval, tsecr) = self.timestamps(now, side, None);
        let mut o = [0u8; 20];
        o[..4].copy_from_slice(&[2, 4, (mss >> 8) as u8, mss as u8]);
        o[4..6].copy_from_slice(&[4, 2]);
        o[6..8].copy_from_slice(&[8, 10]);
        o[8..12].copy_from_slice(&tsval.to_be_bytes());
        o[12..16].copy_from_slice(&tsecr.to_be_bytes());
        o[16..20].copy_from_slice(&[1, 3, 3, WSCALE]);
        self.frame(out, now, side, seq, ack, flags, 64240, &o, Payload::None)
    }

    fn timestamps(&self, now: u64, side: Side, a: Option<&AckDesc>) -> (u32, u32) {
        match side {
            Side::Sender => (self.sender_tsval(now), self.sender_tsecr(now)),
            Side::Receiver => (
                self.receiver_tsval(now),
                a.map_or(self.ts_recent, |a| a.tsecr),
            ),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        out: &mut Out,
        now: u64,
        side: Side,
        seq: u32,
        ack: u32,
        flags: u8,
        payload: Payload,
        a: Option<AckDesc>,
    ) -> io::Result<()> {
        let (tsval, tsecr) = self.timestamps(now, side, a.as_ref());
        let mut o = [0u8; 40];
        o[..4].copy_from_slice(&[1, 1, 8, 10]);
        o[4..8].copy_from_slice(&tsval.to_be_bytes());
        o[8..12].copy_from_slice(&tsecr.to_be_bytes());
        let mut n = 12;
        let window = match (side, a) {
            (Side::Receiver, Some(a)) => {
                if a.nsack > 0 {
                    o[12..16].copy_from_slice(&[1, 1, 5, 2 + 8 * a.nsack]);
                    n = 16;
                    for &(l, r) in &a.sack[..usize::from(a.nsack)] {
                        o[n..n + 4].copy_from_slice(&self.sender_seq(l).to_be_bytes());
                        o[n + 4..n + 8].copy_from_slice(&self.sender_seq(r).to_be_bytes());
                        n += 8;
                    }
                }
                a.window
            }
            (Side::Receiver, None) => {
                if self.zero {
                    0
                } else {
                    self.window_for(self.last_ack_off)
                }
            }
            (Side::Sender, _) => 0x0800,
        };
        self.frame(out, now, side, seq, ack, flags, window, &o[..n], payload)
    }

    /// Writes one Ethernet frame with its pcap record header.
    #[allow(clippy::too_many_arguments)]
    fn frame(
        &mut self,
        out: &mut Out,
        now: u64,
        side: Side,
        seq: u32,
        ack: u32,
        flags: u8,
        window: u16,
        options: &[u8],
        payload: Payload,
    ) -> io::Result<()> {
        let plen = match payload {
            Payload::None => 0,
            Payload::Data { len, .. } => len,
            Payload::Message => self.msg_len,
        };
        let (src, dst, sport, dport, ttl) = match side {
            Side::Sender => (
                self.sender_ip,
                self.receiver_ip,
                self.sender_port,
                self.receiver_port,
                52u8,
            ),
            Side::Receiver => (
                self.receiver_ip,
                self.sender_ip,
                self.receiver_port,
                self.sender_port,
                64u8,
            ),
        };
        let tcp_len = 20 + options.len() + plen;
        let ip_hdr = if self.v6 { 40 } else { 20 };
        let f = &mut out.frame;
        f.clear();
        // Ethernet: the receiver's host and its gateway.
        let (host, gw) = ([2u8, 0, 0, 0, 0, 1], [2u8, 0, 0, 0, 0, 0xfe]);
        let (dmac, smac) = match side {
            Side::Sender => (host, gw),
            Side::Receiver => (gw, host),
        };
        f.extend_from_slice(&dmac);
        f.extend_from_slice(&smac);
        f.extend_from_slice(if self.v6 {
            &[0x86, 0xdd]
        } else {
            &[0x08, 0x00]
        });
        let ip_start = f.len();
        let id = &mut self.ip_id[side as usize];
        *id = id.wrapping_add(1);
        let pseudo = if self.v6 {
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&(tcp_len as u16).to_be_bytes());
            f.extend_from_slice(&[6, ttl]);
            f.extend_from_slice(&src);
            f.extend_from_slice(&dst);
            sum_be16(&src) + sum_be16(&dst) + tcp_len as u64 + 6
        } else {
            f.extend_from_slice(&[0x45, 0]);
            f.extend_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
            f.extend_from_slice(&id.to_be_bytes());
            f.extend_from_slice(&[0x40, 0, ttl, 6, 0, 0]);
            f.extend_from_slice(&src[..4]);
            f.extend_from_slice(&dst[..4]);
            let c = ones_complement(sum_be16(&f[ip_start..ip_start + 20]));
            f[ip_start + 10..ip_start + 12].copy_from_slice(&c.to_be_bytes());
            sum_be16(&src[..4]) + sum_be16(&dst[..4]) + tcp_len as u64 + 6
        };
        let tcp_start = ip_start + ip_hdr;
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&seq.to_be_bytes());
        f.extend_from_slice(&ack.to_be_bytes());
        f.push((((20 + options.len()) / 4) as u8) << 4);
        f.push(flags);
        f.extend_from_slice(&window.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 0]);
        f.extend_from_slice(options);
        let data_start = f.len();
        f.resize(data_start + plen, 0);
        match payload {
            Payload::None => {}
            Payload::Data { k, .. } => fill_payload(self.seed, k, &mut f[data_start..]),
            Payload::Message => {
                fill_payload(self.seed ^ 0x6d73_6721, 0, &mut f[data_start..]);
                self.msg_hash.update(&f[data_start..]);
                out.truth.payload_bytes += plen as u64;
            }
        }
        let c = ones_complement(pseudo + sum_be16(&f[tcp_start..]));
        f[tcp_start + 16..tcp_start + 18].copy_from_slice(&c.to_be_bytes());

        let ts = now / US;
        let mut rec = [0u8; 16];
        rec[..4].copy_from_slice(&((ts / 1_000_000) as u32).to_le_bytes());
        rec[4..8].copy_from_slice(&((ts % 1_000_000) as u32).to_le_bytes());
        rec[8..12].copy_from_slice(&(f.len() as u32).to_le_bytes());
        rec[12..16].copy_from_slice(&(f.len() as u32).to_le_bytes());
        out.w.write_all(&rec)?;
        out.w.write_all(f)?;
        let t = &mut out.truth;
        t.frames += 1;
        t.file_bytes += 16 + f.len() as u64;
        t.tcp_segments += 1;
        t.data_segments += u64::from(plen > 0);
        Ok(())
    }

    fn endpoints(&self) -> (String, String) {
        let addr = |ip: [u8; 16], port: u16| -> String {
            if self.v6 {
                std::net::SocketAddr::from((std::net::Ipv6Addr::from(ip), port)).to_string()
            } else {
                let v4 = std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]);
                std::net::SocketAddr::from((v4, port)).to_string()
            }
        };
        let s = addr(self.sender_ip, self.sender_port);
        let r = addr(self.receiver_ip, self.receiver_port);
        if self.client_is_sender {
            (s, r)
        } else {
            (r, s)
        }
    }

    /// This connection's ground-truth record, as one JSON object.
    fn truth_json(self) -> String {
        let (client, server) = self.endpoints();
        let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let data = format!(
            "{{\"bytes\":{},\"sha256\":\"{}\"}}",
            self.total,
            hex(&self.data_hash.finalize())
        );
        let msg = format!(
            "{{\"bytes\":{},\"sha256\":\"{}\"}}",
            self.msg_len,
            hex(&self.msg_hash.finalize())
        );
        let (c2s, s2c) = if self.client_is_sender {
            (data, msg)
        } else {
            (msg, data)
        };
        format!(
            "{{\"index\":{},\"client\":\"{client}\",\"server\":\"{server}\",\"ipv6\":{},\
             \"first_frame\":{},\"rtt_ms\":{:.3},\"c2s\":{c2s},\"s2c\":{s2c}}}",
            self.id,
            self.v6,
            self.first_frame,
            self.rtt as f64 / MS as f64
        )
    }
}

/// Rates of the impairments, per data segment.
struct Params {
    loss: f64,
    zero_window: f64,
}

/// Runs the simulation to the end, writing the capture and the streams'
/// records; returns the totals.
fn generate(args: &Args, out: &mut Out) -> io::Result<()> {
    let p = Params {
        loss: args.loss,
        zero_window: args.loss / 100.0,
    };
    // Global pcap header: microsecond timestamps, Ethernet, snap 262144.
    let mut hdr = Vec::with_capacity(24);
    hdr.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    hdr.extend_from_slice(&2u16.to_le_bytes());
    hdr.extend_from_slice(&4u16.to_le_bytes());
    hdr.extend_from_slice(&[0; 8]);
    hdr.extend_from_slice(&262_144u32.to_le_bytes());
    hdr.extend_from_slice(&1u32.to_le_bytes());
    out.w.write_all(&hdr)?;
    out.truth.file_bytes = 24;

    let mut rng = Rng::new(args.seed);
    let mut slots: Vec<Option<Conn>> = Vec::new();
    let mut heap: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
    let mut next_id = 0u64;
    // Payload bytes that live connections have still to send: new streams
    // start only while the capture, with them, stays under the target.
    let mut outstanding = 0u64;
    let mut sent_by: Vec<u64> = Vec::new();
    let start_one = |slot: usize,
                     at: u64,
                     next_id: &mut u64,
                     slots: &mut Vec<Option<Conn>>,
                     heap: &mut BinaryHeap<Reverse<(u64, usize)>>|
     -> u64 {
        let c = Conn::new(*next_id, args.seed, at);
        *next_id += 1;
        let total = c.total;
        heap.push(Reverse((c.next_time(), slot)));
        slots[slot] = Some(c);
        total
    };
    for slot in 0..args.streams as usize {
        if out.truth.file_bytes + outstanding >= args.bytes {
            break;
        }
        slots.push(None);
        sent_by.push(0);
        let at = EPOCH_NS + rng.below(20 * MS);
        outstanding += start_one(slot, at, &mut next_id, &mut slots, &mut heap);
    }
    let mut first = true;
    while let Some(Reverse((t, slot))) = heap.pop() {
        let Some(c) = slots[slot].as_mut() else {
            continue;
        };
        c.step(t, out, &p)?;
        let sent = c.next_k.min(c.segs) * c.mss;
        let sent = sent.min(c.total);
        outstanding -= sent - sent_by[slot];
        sent_by[slot] = sent;
        if !c.done {
            heap.push(Reverse((c.next_time(), slot)));
            continue;
        }
        let Some(c) = slots[slot].take() else {
            continue;
        };
        out.truth.duplicate_acks += c.dup_acks;
        out.truth.zero_windows += c.zero_windows;
        if !first {
            out.streams_json.write_all(b",\n")?;
        }
        first = false;
        out.streams_json.write_all(c.truth_json().as_bytes())?;
        sent_by[slot] = 0;
        if out.truth.file_bytes + outstanding < args.bytes {
            let at = t + rng.below(500 * US);
            outstanding += start_one(slot, at, &mut next_id, &mut slots, &mut heap);
        }
    }
    Ok(())
}

fn totals_json(t: &Truth, args: &Args) -> String {
    let retrans = t.fast + t.sack + t.rto;
    format!(
        "{{\"streams\":{},\"ipv6_streams\":{},\"frames\":{},\"file_bytes\":{},\
         \"tcp_segments\":{},\"data_segments\":{},\"bytes\":{},\
         \"retransmissions\":{{\"total\":{retrans},\"fast\":{},\"sack\":{},\"rto\":{},\"tlp\":0,\"spurious\":0}},\
         \"rto_episodes\":{},\"out_of_order\":{},\"lost_segments\":{},\"lost_before_capture\":{},\
         \"lost_after_capture\":{},\"duplicate_acks\":{},\"zero_windows\":{},\
         \"zero_window_probes\":{},\"keep_alives\":{},\"seed\":{},\"loss\":{}}}",
        t.streams,
        t.ipv6_streams,
        t.frames,
        t.file_bytes,
        t.tcp_segments,
        t.data_segments,
        t.payload_bytes,
        t.fast,
        t.sack,
        t.rto,
        t.rto_episodes,
        t.reordered,
        t.lost_before_capture + t.reordered,
        t.lost_before_capture,
        t.lost_after_capture,
        t.duplicate_acks,
        t.zero_windows,
        t.zero_window_probes,
        t.keep_alives,
        args.seed,
        args.loss
    )
}

fn run(args: &Args) -> io::Result<Truth> {
    let truth_path = args.truth.clone().unwrap_or_else(|| {
        let mut p = args.out.clone().into_os_string();
        p.push(".truth.json");
        PathBuf::from(p)
    });
    let mut out = Out {
        w: BufWriter::with_capacity(1 << 22, File::create(&args.out)?),
        frame: Vec::with_capacity(2048),
        truth: Truth::default(),
        streams_json: BufWriter::new(File::create(&truth_path)?),
    };
    out.streams_json
        .write_all(b"{\"generator\":\"gen-capture\",\"schema\":1,\"streams\":[\n")?;
    generate(args, &mut out)?;
    out.w.flush()?;
    let totals = totals_json(&out.truth, args);
    out.streams_json
        .write_all(format!("\n],\n\"totals\":{totals}}}\n").as_bytes())?;
    out.streams_json.flush()?;
    eprintln!("gen-capture: truth {}", truth_path.display());
    Ok(out.truth)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let started = Instant::now();
    match run(&args) {
        Ok(t) => {
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "gen-capture: wrote {} ({} bytes, {} frames, {} streams, {} payload bytes) in {:.1} s; \
                 retransmissions fast {} sack {} rto {} ({} episodes), reordered {}, \
                 lost before capture {}, duplicate ACKs {}, zero windows {} ({} probes)",
                args.out.display(),
                t.file_bytes,
                t.frames,
                t.streams,
                t.payload_bytes,
                secs,
                t.fast,
                t.sack,
                t.rto,
                t.rto_episodes,
                t.reordered,
                t.lost_before_capture,
                t.duplicate_acks,
                t.zero_windows,
                t.zero_window_probes
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gen-capture: cannot write {}: {e}", args.out.display());
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn numeric_flags_refuse_hostile_values() {
        cli_values::assert_numeric_flags_refuse_hostile_values(&Args::command());
    }

    #[test]
    fn sizes_parse_in_binary_units_within_bounds() {
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("100KiB"), Ok(100 << 10));
        assert_eq!(parse_size("1000000"), Ok(1_000_000));
        for bad in [
            "",
            "1T",
            "1.5G",
            "-1G",
            "63K",
            "257G",
            "G",
            "18446744073709551615G",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_resend_carries_the_original_bytes() {
        let (mut a, mut b, mut c) = ([0u8; 1448], [0u8; 1448], [0u8; 1448]);
        fill_payload(7, 42, &mut a);
        fill_payload(7, 42, &mut b);
        fill_payload(7, 43, &mut c);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut short = [0u8; 13];
        fill_payload(7, 42, &mut short);
        assert_eq!(short, a[..13]);
    }

    #[test]
    fn sack_ranges_merge_and_stay_sorted() {
        let mut c = Conn::new(0, 1, EPOCH_NS);
        for k in [5, 7, 6, 9, 3] {
            c.insert_ooo(k);
        }
        assert_eq!(c.ooo, vec![(3, 4), (5, 8), (9, 10)]);
        c.insert_ooo(8);
        assert_eq!(c.ooo, vec![(3, 4), (5, 10)]);
    }
}
