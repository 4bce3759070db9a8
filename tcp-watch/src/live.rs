//! Live capture from a network interface (`tcp-watch live`) with nothing
//! beyond the Rust toolchain: a Linux `AF_PACKET` socket through `libc`
//! (packet(7)), no libpcap.
//!
//! What it owns:
//! - [`Filter`]: a small BPF-like expression (`port 80 and host 10.0.0.1`),
//!   matched against each frame's TCP 4-tuple ([`FlowKey`]);
//! - [`LiveCapture`]: the socket, bound to one interface (or `any`), turned
//!   into a standard nanosecond pcap stream through [`std::io::Read`]. The
//!   pipeline reads it with [`crate::capture::CaptureReader::new`] exactly as
//!   it reads a file, so a live run and a run over the file it wrote
//!   (`--write`) see the same frames;
//! - [`Tee`]: copies everything read into a writer (`--write FILE.pcap`);
//! - [`LiveStats`]: frames seen and kept, and the kernel's own drop count.
//!
//! The link type follows the device: Ethernet frames on Ethernet-like
//! devices and `lo` (`SOCK_RAW`), Linux cooked capture (`LINKTYPE_LINUX_SLL`,
//! built from the `sockaddr_ll` the kernel gives) on `any` and on every other
//! device type (`SOCK_DGRAM`), as libpcap does. VLAN tags the kernel took
//! out of an Ethernet frame (`PACKET_AUXDATA`) are put back, so a written
//! file shows them; a cooked frame has no place for one and goes without.
//!
//! Memory is one frame buffer of the snap length (at most
//! [`MAX_SNAPLEN`]), allocated once; nothing is sized by a packet. Frames
//! the pipeline has not taken yet wait in the socket's queue (kernel
//! memory, 32 MiB asked for); when it is full the kernel drops frames and
//! counts them ([`LiveStats::kernel_drops`]): the analysis then shows those
//! bytes as not captured. The socket
//! waits at most [`RECEIVE_TIMEOUT`] for a frame, so the `stop` flag (set by a
//! Ctrl-C handler or a duration timer) is noticed within that time; the
//! frames already queued are then drained (at most [`DRAIN_MAX`]) and the
//! stream ends.
//!
//! # Example
//! ```no_run
//! use std::sync::Arc;
//! use std::sync::atomic::AtomicBool;
//!
//! use tcp_watch::capture::CaptureReader;
//! use tcp_watch::live::{Filter, LiveCapture};
//!
//! # fn main() -> Result<(), tcp_watch::Error> {
//! // Set `stop` from a Ctrl-C handler (signal-hook's `flag::register`).
//! let stop = Arc::new(AtomicBool::new(false));
//! let filter: Filter = "port 80 and host 10.0.0.1".parse()?;
//! let live = LiveCapture::open("eth0", filter, 0, stop.clone())?;
//! let stats = live.stats_handle();
//! // `--write copy.pcap`: every byte the reader takes is also written there.
//! let file = std::fs::File::create("copy.pcap").map_err(|source| tcp_watch::Error::Io {
//!     path: "copy.pcap".into(),
//!     source,
//! })?;
//! let mut reader = CaptureReader::new("live:eth0", live.tee(file))?;
//! while let Some(frame) = reader.next_frame()? {
//!     // decode, reassemble, analyse: as for a file
//!     let _ = frame;
//! }
//! let s = stats.get();
//! eprintln!("{} frames seen, {} kept, {} dropped by the kernel", s.frames, s.matched, s.kernel_drops);
//! # Ok(())
//! # }
//! ```

use std::ffi::CString;
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, ErrorKind, Read, Write};
use std::mem::{size_of, size_of_val};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::capture::{LinkType, MAX_SNAPLEN};
use crate::error::Error;
use crate::segment::FlowKey;

// ---------------------------------------------------------------------------
// Filter

/// Deepest nesting of parentheses and `not` a filter may use (the parser
/// and the matcher recurse; this keeps a silly expression off the stack).
pub const FILTER_MAX_DEPTH: usize = 64;

/// What a filter expression may say next, for error messages.
const PRIMITIVES: &str = "a primitive: `port N`, `host ADDR`, `src`/`dst` before either, \
                          `tcp`, `ip`, `ip6`, `not`, or `(`";

/// Which end of a segment a `port` or `host` primitive looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Either,
    Src,
    Dst,
}

impl End {
    fn test(self, key: &FlowKey, f: impl Fn(&SocketAddr) -> bool) -> bool {
        match self {
            End::Either => f(&key.src) || f(&key.dst),
            End::Src => f(&key.src),
            End::Dst => f(&key.dst),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expr {
    Tcp,
    Ipv4,
    Ipv6,
    Port(End, u16),
    Host(End, IpAddr),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

impl Expr {
    fn matches(&self, key: &FlowKey) -> bool {
        match self {
            Expr::Tcp => true,
            Expr::Ipv4 => key.src.is_ipv4(),
            Expr::Ipv6 => key.src.is_ipv6(),
            Expr::Port(end, port) => end.test(key, |a| a.port() == *port),
            Expr::Host(end, host) => end.test(key, |a| a.ip() == *host),
            Expr::Not(e) => !e.matches(key),
            Expr::And(a, b) => a.matches(key) && b.matches(key),
            Expr::Or(a, b) => a.matches(key) || b.matches(key),
        }
    }
}

/// A BPF-like selection of TCP segments, by the grammar
///
/// ```text
/// expr      := and ( ("or" | "||") and )*
/// and       := not ( ("and" | "&&") not )*
/// not       := ("not" | "!") not | primary
/// primary   := "(" expr ")" | "tcp" | "ip" | "ip6"
///            | [ "src" | "dst" ] ( "port" NUMBER | "host" ADDRESS )
/// ```
///
/// so `not` binds tighter than `and`, which binds tighter than `or`, as in
/// tcpdump. `port N` and `host A` match either end; `src`/`dst` pick the
/// sender's or the receiver's end of each segment. `ip` and `ip6` select the
/// IP version. Only TCP is ever captured: the empty expression (and `tcp`)
/// keeps every TCP segment. Addresses are IPv4 or IPv6 literals; names are
/// not resolved.
///
/// A later IP fragment has no ports: it is kept when the first fragment of
/// its datagram was (see [`LiveCapture`]), so the pipeline can reassemble it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Filter {
    text: String,
    expr: Option<Expr>,
}

impl Filter {
    /// The filter that keeps every TCP segment.
    pub fn all() -> Filter {
        Filter::default()
    }

    /// Parses `text`. An error ([`Error::Settings`]) names the expression, the
    /// token that was wrong (with its column, from 1) and what was expected
    /// there.
    pub fn parse(text: &str) -> Result<Filter, Error> {
        let mut p = Parser {
            text,
            tokens: tokens(text),
            pos: 0,
            depth: 0,
        };
        if p.tokens.is_empty() {
            return Ok(Filter::all());
        }
        let expr = p.or()?;
        if let Some(t) = p.peek() {
            return Err(p.unexpected(Some(t), "`and`, `or` or the end of the filter"));
        }
        Ok(Filter {
            text: text.trim().to_string(),
            expr: Some(expr),
        })
    }

    /// Whether a segment between these endpoints is kept.
    pub fn matches(&self, key: &FlowKey) -> bool {
        self.expr.as_ref().is_none_or(|e| e.matches(key))
    }

    /// Whether this filter keeps every TCP segment (the empty expression).
    pub fn is_all(&self) -> bool {
        self.expr.is_none()
    }

    /// The expression as given (trimmed); empty for [`Filter::all`].
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for Filter {
    type Err = Error;
    fn from_str(s: &str) -> Result<Filter, Error> {
        Filter::parse(s)
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_all() {
            f.write_str("tcp")
        } else {
            f.write_str(&self.text)
        }
    }
}

/// One word or bracket of a filter, with its byte offset.
#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    at: usize,
    text: &'a str,
}

/// Splits at white space; `(`, `)` and `!` are tokens of their own even
/// when glued to a word (`!(port 80)`).
fn tokens(text: &str) -> Vec<Token<'_>> {
    let single = |c: char| matches!(c, '(' | ')' | '!');
    let mut out = Vec::new();
    let mut word: Option<usize> = None;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() || single(c) {
            if let Some(start) = word.take() {
                out.push(Token {
                    at: start,
                    text: &text[start..i],
                });
            }
            if single(c) {
                out.push(Token {
                    at: i,
                    text: &text[i..i + 1],
                });
            }
        } else if word.is_none() {
            word = Some(i);
        }
    }
    if let Some(start) = word {
        out.push(Token {
            at: start,
            text: &text[start..],
        });
    }
    out
}

/// A recursive-descent parser over [`tokens`].
struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Token<'a>>,
    pos: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<Token<'a>> {
        self.tokens.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<Token<'a>> {
        let t = self.peek();
        self.pos += usize::from(t.is_some());
        t
    }

    /// Takes the next token when it is one of `words`.
    fn eat(&mut self, words: &[&str]) -> bool {
        let hit = self.peek().is_some_and(|t| words.contains(&t.text));
        self.pos += usize::from(hit);
        hit
    }

    fn unexpected(&self, token: Option<Token<'_>>, expected: &str) -> Error {
        Error::Settings(match token {
            Some(t) => format!(
                "filter `{}`: unexpected `{}` at column {}: expected {expected}",
                self.text.trim(),
                t.text,
                t.at + 1
            ),
            None => format!(
                "filter `{}`: it ends too soon: expected {expected}",
                self.text.trim()
            ),
        })
    }

    fn deeper(&mut self, at: Token<'_>) -> Result<(), Error> {
        self.depth += 1;
        if self.depth > FILTER_MAX_DEPTH {
            return Err(Error::Settings(format!(
                "filter `{}`: `{}` at column {} nests deeper than {FILTER_MAX_DEPTH} levels",
                self.text.trim(),
                at.text,
                at.at + 1
            )));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, Error> {
        let mut e = self.and()?;
        while self.eat(&["or", "||"]) {
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, Error> {
        let mut e = self.not()?;
        while self.eat(&["and", "&&"]) {
            e = Expr::And(Box::new(e), Box::new(self.not()?));
        }
        Ok(e)
    }

    fn not(&mut self) -> Result<Expr, Error> {
        match self.peek() {
            Some(t) if t.text == "not" || t.text == "!" => {
                self.pos += 1;
                self.deeper(t)?;
                let e = self.not()?;
                self.depth -= 1;
                Ok(Expr::Not(Box::new(e)))
            }
            _ => self.primary(),
        }
    }

    fn primary(&mut self) -> Result<Expr, Error> {
        let Some(t) = self.next() else {
            return Err(self.unexpected(None, PRIMITIVES));
        };
        match t.text {
            "(" => {
                self.deeper(t)?;
                let e = self.or()?;
                self.depth -= 1;
                match self.next() {
                    Some(c) if c.text == ")" => Ok(e),
                    other => Err(self.unexpected(
                        other,
                        &format!("`)` closing the `(` at column {}", t.at + 1),
                    )),
                }
            }
            "tcp" => Ok(Expr::Tcp),
            "ip" => Ok(Expr::Ipv4),
            "ip6" => Ok(Expr::Ipv6),
            "src" | "dst" => {
                let end = if t.text == "src" { End::Src } else { End::Dst };
                match self.next() {
                    Some(k) if k.text == "port" => self.port(end),
                    Some(k) if k.text == "host" => self.host(end),
                    other => {
                        Err(self.unexpected(other, &format!("`port` or `host` after `{}`", t.text)))
                    }
                }
            }
            "port" => self.port(End::Either),
            "host" => self.host(End::Either),
            _ => Err(self.unexpected(Some(t), PRIMITIVES)),
        }
    }

    fn port(&mut self, end: End) -> Result<Expr, Error> {
        let t = self.next();
        match t.map(|t| t.text.parse::<u16>()) {
            Some(Ok(port)) => Ok(Expr::Port(end, port)),
            _ => Err(self.unexpected(t, "a port number (0 to 65535) after `port`")),
        }
    }

    fn host(&mut self, end: End) -> Result<Expr, Error> {
        let t = self.next();
        match t.map(|t| t.text.parse::<IpAddr>()) {
            Some(Ok(host)) => Ok(Expr::Host(end, host)),
            _ => Err(self.unexpected(
                t,
                "an IPv4 or IPv6 address after `host` (names are not resolved)",
            )),
        }
    }
}

// ---------------------------------------------------------------------------
// The pcap stream

/// Bytes of a pcap file header.
const PCAP_HEADER: usize = 24;
/// Bytes of a pcap record header.
const RECORD_HEADER: usize = 16;
/// Bytes of a Linux cooked (SLL v1) header.
const SLL_HEADER: usize = 16;
/// Room kept before the received bytes for a link header the capture adds
/// (the cooked header, or a VLAN tag put back).
const LINK_ROOM: usize = SLL_HEADER;
/// Least the frame buffer holds whatever the snap length, so that the
/// filter sees the headers up to the TCP ports (Ethernet, VLAN tags, IPv6
/// and its extension headers) even when the user keeps fewer bytes.
const HEADER_ROOM: usize = 256;

/// Nanosecond pcap magic.
const PCAP_MAGIC_NS: u32 = 0xa1b2_3c4d;

/// A pcap file header (nanosecond timestamps, little-endian, version 2.4).
fn pcap_header(linktype: LinkType, snaplen: u32) -> [u8; PCAP_HEADER] {
    let mut h = [0u8; PCAP_HEADER];
    h[0..4].copy_from_slice(&PCAP_MAGIC_NS.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    // thiszone and sigfigs stay 0, as every writer since libpcap 1.0 does.
    h[16..20].copy_from_slice(&snaplen.to_le_bytes());
    h[20..24].copy_from_slice(&u32::from(linktype.0).to_le_bytes());
    h
}

/// A pcap record header for a frame captured at `ts_ns` (nanoseconds since
/// the epoch), of which `caplen` bytes are kept out of `wire_len`.
fn record_header(ts_ns: u64, caplen: u32, wire_len: u32) -> [u8; RECORD_HEADER] {
    let secs = u32::try_from(ts_ns / 1_000_000_000).unwrap_or(u32::MAX);
    let nanos = (ts_ns % 1_000_000_000) as u32;
    let mut h = [0u8; RECORD_HEADER];
    h[0..4].copy_from_slice(&secs.to_le_bytes());
    h[4..8].copy_from_slice(&nanos.to_le_bytes());
    h[8..12].copy_from_slice(&caplen.to_le_bytes());
    h[12..16].copy_from_slice(&wire_len.to_le_bytes());
    h
}

/// A Linux cooked capture v1 header (`LINKTYPE_LINUX_SLL`), from what
/// `recvmsg` said about the packet: its type (to us, outgoing...), the
/// device type, the link-layer source address and the protocol
/// (host order).
fn sll_header(pkttype: u8, hatype: u16, addr: &[u8], protocol: u16) -> [u8; SLL_HEADER] {
    let addr = &addr[..addr.len().min(8)];
    let mut h = [0u8; SLL_HEADER];
    h[0..2].copy_from_slice(&u16::from(pkttype).to_be_bytes());
    h[2..4].copy_from_slice(&hatype.to_be_bytes());
    h[4..6].copy_from_slice(&(addr.len() as u16).to_be_bytes());
    h[6..6 + addr.len()].copy_from_slice(addr);
    h[14..16].copy_from_slice(&protocol.to_be_bytes());
    h
}

// ---------------------------------------------------------------------------
// Minimal decoding for the filter

/// An IP datagram's identity, for its later fragments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FragId {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
}

/// What the filter learns from one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// A TCP segment, or the first fragment of one (then `more` names the
    /// datagram whose later fragments follow).
    Tcp { key: FlowKey, more: Option<FragId> },
    /// A later fragment: no TCP header in it.
    Fragment(FragId),
    /// Not TCP over IP, or too short to tell.
    Other,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Most VLAN tags followed.
const MAX_VLAN_TAGS: usize = 3;
/// Most IPv6 extension headers followed.
const MAX_EXTENSION_HEADERS: usize = 8;

/// The 4-tuple of a frame of `linktype` (Ethernet with VLAN tags, or Linux
/// cooked), without the checks the real decoder ([`crate::packet`]) makes:
/// the filter only needs the addresses and ports. IP fragments are not
/// reassembled here: the real decoder (or [`crate::packet::Decoder`], which
/// holds a first fragment until its datagram completes) would hide the
/// first fragments from the filter.
fn classify(linktype: LinkType, frame: &[u8]) -> Seen {
    let l3 = match linktype {
        LinkType::ETHERNET => ethernet(frame),
        LinkType::LINUX_SLL => be16(frame, 14).map(|t| (t, &frame[SLL_HEADER..])),
        _ => None,
    };
    match l3 {
        Some((0x0800, ip)) => ipv4(ip),
        Some((0x86dd, ip)) => ipv6(ip),
        _ => None,
    }
    .unwrap_or(Seen::Other)
}

fn ethernet(frame: &[u8]) -> Option<(u16, &[u8])> {
    let mut at = 12;
    let mut ethertype = be16(frame, at)?;
    for _ in 0..MAX_VLAN_TAGS {
        if !matches!(ethertype, 0x8100 | 0x88a8 | 0x9100) {
            break;
        }
        at += 4;
        ethertype = be16(frame, at)?;
    }
    Some((ethertype, frame.get(at + 2..)?))
}

fn ports(src: IpAddr, dst: IpAddr, tcp: &[u8]) -> Option<FlowKey> {
    Some(FlowKey {
        src: SocketAddr::new(src, be16(tcp, 0)?),
        dst: SocketAddr::new(dst, be16(tcp, 2)?),
    })
}

fn ipv4(b: &[u8]) -> Option<Seen> {
    let ihl = usize::from(b.first()? & 0x0f) * 4;
    if b[0] >> 4 != 4 || ihl < 20 || b.len() < ihl {
        return None;
    }
    if b[9] != libc::IPPROTO_TCP as u8 {
        return Some(Seen::Other);
    }
    let addr = |at: usize| IpAddr::V4(Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3]));
    let (src, dst) = (addr(12), addr(16));
    let frag = be16(b, 6)?;
    let id = FragId {
        src,
        dst,
        id: u32::from(be16(b, 4)?),
    };
    if frag & 0x1fff != 0 {
        return Some(Seen::Fragment(id));
    }
    let key = ports(src, dst, &b[ihl..])?;
    Some(Seen::Tcp {
        key,
        more: (frag & 0x2000 != 0).then_some(id),
    })
}

fn ipv6(b: &[u8]) -> Option<Seen> {
    if b.len() < 40 || b[0] >> 4 != 6 {
        return None;
    }
    let addr = |at: usize| {
        let mut a = [0u8; 16];
        a.copy_from_slice(&b[at..at + 16]);
        IpAddr::V6(Ipv6Addr::from(a))
    };
    let (src, dst) = (addr(8), addr(24));
    let mut next = b[6];
    let mut at = 40;
    let mut more = None;
    for _ in 0..MAX_EXTENSION_HEADERS {
        let h = b.get(at..)?;
        match next {
            6 => {
                let key = ports(src, dst, h)?;
                return Some(Seen::Tcp { key, more });
            }
            // Hop-by-hop, routing, destination options: 8-octet units.
            0 | 43 | 60 => {
                next = *h.first()?;
                at += (usize::from(*h.get(1)?) + 1) * 8;
            }
            // Authentication header: 4-octet units, minus 2.
            51 => {
                next = *h.first()?;
                at += (usize::from(*h.get(1)?) + 2) * 4;
            }
            44 => {
                let field = be16(h, 2)?;
                let id = FragId {
                    src,
                    dst,
                    id: u32::from_be_bytes(h.get(4..8)?.try_into().ok()?),
                };
                if field & 0xfff8 != 0 {
                    return Some(Seen::Fragment(id));
                }
                more = (field & 1 != 0).then_some(id);
                next = h[0];
                at += 8;
            }
            _ => return Some(Seen::Other),
        }
    }
    None
}

/// IP datagrams whose first fragment was kept, remembered so that their
/// later fragments are kept too (a fixed ring: the oldest is forgotten
/// first).
pub const FRAGMENTS_REMEMBERED: usize = 64;

#[derive(Debug)]
struct KeptDatagrams {
    ids: [Option<FragId>; FRAGMENTS_REMEMBERED],
    next: usize,
}

impl KeptDatagrams {
    fn new() -> Self {
        KeptDatagrams {
            ids: [None; FRAGMENTS_REMEMBERED],
            next: 0,
        }
    }

    fn remember(&mut self, id: FragId) {
        if !self.contains(id) {
            self.ids[self.next] = Some(id);
            self.next = (self.next + 1) % FRAGMENTS_REMEMBERED;
        }
    }

    fn contains(&self, id: FragId) -> bool {
        self.ids.contains(&Some(id))
    }
}

// ---------------------------------------------------------------------------
// Statistics

/// What a live capture saw, for the final report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LiveStats {
    /// Frames the socket delivered (every protocol).
    pub frames: u64,
    /// Outgoing copies on a loopback device skipped here (each packet there
    /// is seen once leaving and once arriving; the arriving one is kept).
    /// Normally 0: the socket filter skips them in the kernel first.
    pub loopback_copies: u64,
    /// Frames the filter kept: the records of the pcap stream.
    pub matched: u64,
    /// Kept frames cut by the snap length.
    pub truncated: u64,
    /// Frames the kernel dropped because the socket's queue was full
    /// (`PACKET_STATISTICS`): they are missing from the stream.
    pub kernel_drops: u64,
}

#[derive(Debug, Default)]
struct Counters {
    frames: AtomicU64,
    loopback_copies: AtomicU64,
    matched: AtomicU64,
    truncated: AtomicU64,
    kernel_drops: AtomicU64,
}

impl Counters {
    fn get(&self) -> LiveStats {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LiveStats {
            frames: l(&self.frames),
            loopback_copies: l(&self.loopback_copies),
            matched: l(&self.matched),
            truncated: l(&self.truncated),
            kernel_drops: l(&self.kernel_drops),
        }
    }

    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// The statistics of a [`LiveCapture`], readable from any thread while it
/// runs and after it was moved into a reader (and dropped).
#[derive(Debug, Clone)]
pub struct LiveStatsHandle(Arc<Counters>);

impl LiveStatsHandle {
    /// The counts so far. The kernel's drop count is as of the capture's
    /// last look (at least every [`RECEIVE_TIMEOUT`] while it is read, and
    /// at the end of its stream).
    pub fn get(&self) -> LiveStats {
        self.0.get()
    }
}

// ---------------------------------------------------------------------------
// The capture

/// How long one receive waits before the `stop` flag is looked at again.
pub const RECEIVE_TIMEOUT: Duration = Duration::from_millis(100);

/// Frames still taken from the socket's queue once `stop` is set (what
/// arrived before the stop, but bounded, since under load the queue never
/// empties).
pub const DRAIN_MAX: u32 = 4096;

/// Socket receive buffer asked for (`SO_RCVBUFFORCE`, else `SO_RCVBUF`,
/// which `net.core.rmem_max` caps): the queue where frames wait while the
/// pipeline is busy, in kernel memory (the kernel doubles the figure for
/// its bookkeeping). The default (about 200 KiB) holds only a few 64 KiB
/// loopback frames; libpcap asks for 2 MiB.
const RECEIVE_BUFFER: libc::c_int = 32 << 20;

/// Kept frames between two looks at the kernel's drop counter.
const STATS_EVERY: u64 = 4096;

/// A live capture on one interface, read as a pcap stream.
///
/// [`Read`] yields a pcap file header (nanosecond timestamps, the link type
/// of the device, the snap length), then one record per frame the
/// [`Filter`] keeps, as frames arrive; it returns end of file once `stop` is
/// set and the frames queued by then are drained. Only TCP over IPv4 or IPv6
/// is kept, and later IP fragments of a datagram whose first fragment was
/// kept (the last [`FRAGMENTS_REMEMBERED`] such datagrams).
///
/// Outgoing packets are captured too (`PACKET_OUTGOING`), except on a
/// loopback device: there the kernel hands every packet to packet sockets
/// twice, when it leaves (outgoing) and when it comes back in, and only the
/// incoming copy is kept, as libpcap does; both copies would look like a
/// retransmission of every segment. A socket filter (classic BPF) refuses
/// the outgoing copies in the kernel; should it be missing, they are
/// skipped here ([`LiveStats::loopback_copies`]).
///
/// Timestamps are the kernel's receive time (`SO_TIMESTAMPNS`).
pub struct LiveCapture {
    fd: OwnedFd,
    interface: String,
    linktype: LinkType,
    cooked: bool,
    snaplen: u32,
    filter: Filter,
    stop: Arc<AtomicBool>,
    header: [u8; PCAP_HEADER],
    header_sent: usize,
    /// `[record header][link room][received bytes, HEADER_ROOM or snaplen]`.
    buf: Box<[u8]>,
    /// The unread part of the current record in `buf`.
    pending: std::ops::Range<usize>,
    kept_datagrams: KeptDatagrams,
    counters: Arc<Counters>,
    drain_left: u32,
    ended: bool,
}

impl fmt::Debug for LiveCapture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveCapture")
            .field("interface", &self.interface)
            .field("linktype", &self.linktype)
            .field("snaplen", &self.snaplen)
            .field("filter", &self.filter.as_str())
            .field("stats", &self.counters.get())
            .finish()
    }
}

/// Whether an `errno` says the caller lacks the privilege.
fn not_permitted(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES))
}

/// `struct ifreq` as the two ioctls used here need it: the name, then a
/// union of which only the first bytes are read.
#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    value: [u8; 24],
}

/// An `SIOCGIF*` ioctl on `fd`: the first two bytes of the answer (the
/// hardware type for `SIOCGIFHWADDR`, the flags for `SIOCGIFFLAGS`).
fn interface_ioctl(fd: RawFd, name: &CString, request: libc::c_ulong) -> io::Result<[u8; 2]> {
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        value: [0; 24],
    };
    // The name was checked to be shorter than IFNAMSIZ: the last byte stays 0.
    for (d, s) in req.name.iter_mut().zip(name.as_bytes()) {
        *d = *s as libc::c_char;
    }
    // SAFETY: `req` is a valid, writable `struct ifreq`-sized buffer for
    // the call; the kernel writes at most `sizeof(struct ifreq)` (40) bytes.
    if unsafe { libc::ioctl(fd, request as _, &mut req as *mut IfReq) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok([req.value[0], req.value[1]])
}

fn set_option<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live `T` of the length passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Attaches a classic BPF socket filter that refuses the outgoing copy of
/// every packet on a loopback device (see [`LiveCapture`]), so that these
/// copies never take room in the socket's queue nor a `recvmsg`: at a
/// loopback line rate they are half the frames, and dropping them here
/// halves the kernel's drops. `ret 0` refuses; `ret 0xffffffff` keeps the
/// whole packet (the snap length is applied when the record is made, so
/// that `MSG_TRUNC` still tells the frame's length).
fn skip_loopback_copies_in_kernel(fd: RawFd) -> io::Result<()> {
    let insn = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let equal = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    let ret = libc::BPF_RET | libc::BPF_K;
    let ancillary = |field: libc::c_int| (libc::SKF_AD_OFF + field) as u32;
    let mut program = [
        insn(load, 0, 0, ancillary(libc::SKF_AD_PKTTYPE)),
        insn(equal, 0, 3, u32::from(libc::PACKET_OUTGOING)),
        insn(load, 0, 0, ancillary(libc::SKF_AD_HATYPE)),
        insn(equal, 0, 1, u32::from(libc::ARPHRD_LOOPBACK)),
        insn(ret, 0, 0, 0),
        insn(ret, 0, 0, u32::MAX),
    ];
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // The kernel copies the program during the call.
    set_option(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)
}

/// A packet socket of `kind` that receives nothing until bound: protocol 0
/// at creation, `ETH_P_ALL` at bind, so that no frame of another interface
/// slips in between (libpcap does the same).
fn packet_socket(kind: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(libc::AF_PACKET, kind | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// One frame as `recvmsg` returned it.
struct Received {
    /// Its length on the wire (from the device's point of view: without
    /// the link header in cooked mode), whatever the buffer kept.
    len: usize,
    addr: libc::sockaddr_ll,
    ts_ns: Option<u64>,
    aux: Option<libc::tpacket_auxdata>,
}

impl LiveCapture {
    /// Opens a capture on `interface` (a device name as `ip link` lists it,
    /// or `any` for every device of the current network namespace), keeping
    /// the frames `filter` matches, each cut to `snaplen` bytes (0, or more
    /// than [`MAX_SNAPLEN`], means [`MAX_SNAPLEN`]; loopback frames can be
    /// 64 KiB). Reading ends once `stop` is set.
    ///
    /// # Errors
    /// [`Error::Settings`]: an interface name that cannot be one, an
    /// interface that does not exist (the message suggests `ip link`), no
    /// privilege (packet sockets need root or `CAP_NET_RAW`), or a socket
    /// call that failed (named, with the OS's reason).
    ///
    /// # Notes
    /// The socket belongs to the network namespace of the calling thread,
    /// for its whole life.
    pub fn open(
        interface: &str,
        filter: Filter,
        snaplen: u32,
        stop: Arc<AtomicBool>,
    ) -> Result<LiveCapture, Error> {
        let settings = |what: &str, e: io::Error| {
            Error::Settings(format!("live capture on `{interface}`: {what}: {e}"))
        };
        let no_such = || {
            Error::Settings(format!(
                "no interface named `{interface}` in this network namespace \
                 (list them with `ip link`, or use `any`)"
            ))
        };
        if interface.is_empty()
            || interface.len() >= libc::IFNAMSIZ
            || interface.contains(['/', '\0'])
            || interface.contains(char::is_whitespace)
        {
            return Err(Error::Settings(format!(
                "interface name `{interface}`: expected 1 to {} bytes, without `/`, spaces \
                 or NUL (list the interfaces with `ip link`)",
                libc::IFNAMSIZ - 1
            )));
        }
        let name = CString::new(interface).map_err(|_| no_such())?;
        let any = interface == "any";
        let index = if any {
            0
        } else {
            // SAFETY: `name` is a NUL-terminated string for the call.
            match unsafe { libc::if_nametoindex(name.as_ptr()) } {
                0 => return Err(no_such()),
                i => i as libc::c_int,
            }
        };
        let mut fd = packet_socket(libc::SOCK_RAW).map_err(|e| {
            if not_permitted(&e) {
                Error::Settings(format!(
                    "live capture needs root or CAP_NET_RAW (interface `{interface}`: \
                     socket(AF_PACKET): {e})"
                ))
            } else {
                settings("socket(AF_PACKET)", e)
            }
        })?;
        let cooked = if any {
            true
        } else {
            let hw =
                interface_ioctl(fd.as_raw_fd(), &name, libc::SIOCGIFHWADDR).map_err(|e| match e
                    .raw_os_error()
                {
                    Some(libc::ENODEV) => no_such(),
                    _ => settings("SIOCGIFHWADDR", e),
                })?;
            // Ethernet and loopback devices give Ethernet frames; others
            // (tun, PPP, tunnels) a header of their own, or none: cooked
            // mode gives every one of them the same SLL header.
            !matches!(
                u16::from_ne_bytes(hw),
                libc::ARPHRD_ETHER | libc::ARPHRD_LOOPBACK
            )
        };
        if cooked {
            fd = packet_socket(libc::SOCK_DGRAM).map_err(|e| settings("socket(AF_PACKET)", e))?;
        }
        let raw = fd.as_raw_fd();
        if let Err(e) = skip_loopback_copies_in_kernel(raw) {
            tracing::debug!(error = %e, "no socket filter: loopback copies skipped here");
        }
        if set_option(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &RECEIVE_BUFFER).is_err() {
            // Without CAP_NET_ADMIN: as much as `net.core.rmem_max` allows.
            let _ = set_option(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, &RECEIVE_BUFFER);
        }
        let on: libc::c_int = 1;
        set_option(raw, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, &on)
            .map_err(|e| settings("SO_TIMESTAMPNS", e))?;
        set_option(raw, libc::SOL_PACKET, libc::PACKET_AUXDATA, &on)
            .map_err(|e| settings("PACKET_AUXDATA", e))?;
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: RECEIVE_TIMEOUT.as_micros() as libc::suseconds_t,
        };
        set_option(raw, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &timeout)
            .map_err(|e| settings("SO_RCVTIMEO", e))?;
        // SAFETY: an all-zero sockaddr_ll is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        addr.sll_ifindex = index;
        // SAFETY: `addr` is a valid sockaddr_ll of the length passed.
        let rc = unsafe {
            libc::bind(
                raw,
                (&addr as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::ENODEV) => no_such(),
                _ => settings("bind", e),
            });
        }
        if !any
            && let Ok(flags) = interface_ioctl(raw, &name, libc::SIOCGIFFLAGS)
            && i32::from(i16::from_ne_bytes(flags)) & libc::IFF_UP == 0
        {
            tracing::warn!(interface, "the interface is down: nothing will be captured");
        }
        let snaplen = match snaplen {
            0 => MAX_SNAPLEN,
            s => s.min(MAX_SNAPLEN),
        };
        let linktype = if cooked {
            LinkType::LINUX_SLL
        } else {
            LinkType::ETHERNET
        };
        let room = (snaplen as usize).max(HEADER_ROOM);
        tracing::debug!(interface, ?linktype, snaplen, filter = %filter, "live capture open");
        Ok(LiveCapture {
            fd,
            interface: interface.to_string(),
            linktype,
            cooked,
            snaplen,
            filter,
            stop,
            header: pcap_header(linktype, snaplen),
            header_sent: 0,
            buf: vec![0u8; RECORD_HEADER + LINK_ROOM + room].into_boxed_slice(),
            pending: 0..0,
            kept_datagrams: KeptDatagrams::new(),
            counters: Arc::default(),
            drain_left: DRAIN_MAX,
            ended: false,
        })
    }

    /// The interface, as given to [`open`](Self::open).
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// The link type of the stream: [`LinkType::ETHERNET`] or
    /// [`LinkType::LINUX_SLL`].
    pub fn linktype(&self) -> LinkType {
        self.linktype
    }

    /// The snap length in effect (after the cap at [`MAX_SNAPLEN`]).
    pub fn snaplen(&self) -> u32 {
        self.snaplen
    }

    /// The filter.
    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    /// The counts so far, the kernel's drops read now.
    pub fn stats(&self) -> LiveStats {
        self.look_at_kernel_drops();
        self.counters.get()
    }

    /// A handle on the counts that outlives the capture (which a
    /// [`crate::capture::CaptureReader`] owns once it reads it).
    pub fn stats_handle(&self) -> LiveStatsHandle {
        LiveStatsHandle(self.counters.clone())
    }

    /// This capture, every byte read from it also written to `file`
    /// (`--write FILE.pcap`): a pcap file of exactly the frames analysed,
    /// flushed when the stream ends.
    pub fn tee(self, file: File) -> Tee<LiveCapture, BufWriter<File>> {
        Tee::new(self, BufWriter::new(file))
    }

    /// Adds the kernel's drops since the last look (`PACKET_STATISTICS`
    /// resets its counters on each read).
    fn look_at_kernel_drops(&self) {
        // SAFETY: an all-zero tpacket_stats is a valid value.
        let mut st: libc::tpacket_stats = unsafe { std::mem::zeroed() };
        let mut len = size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: `st` and `len` are valid for writes of the sizes given.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats).cast(),
                &mut len,
            )
        };
        if rc == 0 {
            Counters::add(&self.counters.kernel_drops, u64::from(st.tp_drops));
        }
    }

    fn end(&mut self) {
        self.look_at_kernel_drops();
        self.ended = true;
        let s = self.counters.get();
        tracing::debug!(interface = %self.interface, ?s, "live capture ended");
    }

    /// One `recvmsg` into the frame buffer; `None` when nothing came within
    /// the timeout (or a signal interrupted the wait).
    fn receive(&mut self, flags: libc::c_int) -> io::Result<Option<Received>> {
        let data_at = RECORD_HEADER + LINK_ROOM;
        let room = &mut self.buf[data_at..];
        let mut iov = libc::iovec {
            iov_base: room.as_mut_ptr().cast(),
            iov_len: room.len(),
        };
        // SAFETY: all-zero sockaddr_ll and msghdr are valid values.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        // u64 elements: cmsghdr's alignment.
        let mut control = [0u64; 16];
        msg.msg_name = (&mut addr as *mut libc::sockaddr_ll).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of_val(&control) as _;
        // MSG_TRUNC: the return value is the frame's whole length, even
        // when the buffer kept less.
        // SAFETY: every pointer in `msg` refers to a live buffer of the
        // length given beside it, for the duration of the call.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_TRUNC | flags) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                ErrorKind::WouldBlock | ErrorKind::Interrupted => Ok(None),
                kind => Err(io::Error::new(
                    kind,
                    format!("live capture on `{}`: recvmsg: {e}", self.interface),
                )),
            };
        }
        let mut got = Received {
            len: n as usize,
            addr,
            ts_ns: None,
            aux: None,
        };
        // SAFETY: `msg` was filled in by recvmsg; the CMSG_* macros walk
        // its control buffer within `msg_controllen`, and each payload is
        // read only when its header says it is long enough.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                let h = &*c;
                let data = libc::CMSG_DATA(c);
                let fits = |len: usize| h.cmsg_len as usize >= libc::CMSG_LEN(len as u32) as usize;
                if h.cmsg_level == libc::SOL_SOCKET
                    && h.cmsg_type == libc::SCM_TIMESTAMPNS
                    && fits(size_of::<libc::timespec>())
                {
                    let t = std::ptr::read_unaligned(data.cast::<libc::timespec>());
                    got.ts_ns = Some(
                        (t.tv_sec.max(0) as u64)
                            .saturating_mul(1_000_000_000)
                            .saturating_add(t.tv_nsec.max(0) as u64),
                    );
                } else if h.cmsg_level == libc::SOL_PACKET
                    && h.cmsg_type == libc::PACKET_AUXDATA
                    && fits(size_of::<libc::tpacket_auxdata>())
                {
                    got.aux = Some(std::ptr::read_unaligned(
                        data.cast::<libc::tpacket_auxdata>(),
                    ));
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        Ok(Some(got))
    }

    /// Receives until one frame is kept (then `self.pending` holds its
    /// record), the wait times out, or the stream ends.
    fn next_record(&mut self) -> io::Result<()> {
        let stopping = self.stop.load(Ordering::Relaxed);
        if stopping {
            if self.drain_left == 0 {
                self.end();
                return Ok(());
            }
            self.drain_left -= 1;
        }
        let flags = if stopping { libc::MSG_DONTWAIT } else { 0 };
        let Some(got) = self.receive(flags)? else {
            if stopping {
                self.end();
            } else {
                self.look_at_kernel_drops();
            }
            return Ok(());
        };
        self.take(&got);
        Ok(())
    }

    /// Makes the record of a received frame, when the filter keeps it.
    fn take(&mut self, got: &Received) {
        let c = &self.counters;
        Counters::add(&c.frames, 1);
        let a = &got.addr;
        if a.sll_pkttype == libc::PACKET_OUTGOING && a.sll_hatype == libc::ARPHRD_LOOPBACK {
            Counters::add(&c.loopback_copies, 1);
            return;
        }
        let data_at = RECORD_HEADER + LINK_ROOM;
        let room = self.buf.len() - data_at;
        let mut start = data_at;
        let mut held = got.len.min(room);
        let mut wire = got.len;
        if self.cooked {
            let halen = usize::from(a.sll_halen).min(8);
            let h = sll_header(
                a.sll_pkttype,
                a.sll_hatype,
                &a.sll_addr[..halen],
                u16::from_be(a.sll_protocol),
            );
            start -= SLL_HEADER;
            self.buf[start..data_at].copy_from_slice(&h);
            held += SLL_HEADER;
            wire += SLL_HEADER;
        } else if let Some(aux) = got.aux
            && aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0
            && held >= 12
        {
            // The driver took the tag off (VLAN offload): put it back
            // after the MAC addresses, as it was on the wire.
            let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                aux.tp_vlan_tpid
            } else {
                0x8100
            };
            self.buf.copy_within(data_at..data_at + 12, data_at - 4);
            self.buf[data_at + 8..data_at + 10].copy_from_slice(&tpid.to_be_bytes());
            self.buf[data_at + 10..data_at + 12].copy_from_slice(&aux.tp_vlan_tci.to_be_bytes());
            start -= 4;
            held += 4;
            wire += 4;
        }
        let keep = match classify(self.linktype, &self.buf[start..start + held]) {
            Seen::Tcp { key, more } => {
                let keep = self.filter.matches(&key);
                if let (true, Some(id)) = (keep, more) {
                    self.kept_datagrams.remember(id);
                }
                keep
            }
            Seen::Fragment(id) => self.kept_datagrams.contains(id),
            Seen::Other => false,
        };
        if !keep {
            return;
        }
        let caplen = held.min(self.snaplen as usize);
        if caplen < wire {
            Counters::add(&c.truncated, 1);
        }
        let ts_ns = got.ts_ns.unwrap_or_else(now_ns);
        let wire = u32::try_from(wire).unwrap_or(u32::MAX);
        let h = record_header(ts_ns, caplen as u32, wire);
        self.buf[start - RECORD_HEADER..start].copy_from_slice(&h);
        self.pending = start - RECORD_HEADER..start + caplen;
        let matched = c.matched.fetch_add(1, Ordering::Relaxed) + 1;
        if matched % STATS_EVERY == 0 {
            self.look_at_kernel_drops();
        }
    }
}

impl AsRawFd for LiveCapture {
    /// The packet socket, for `poll(2)` or options of the caller's own.
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The system clock in nanoseconds since the epoch, for a frame the kernel
/// gave no timestamp.
fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl Read for LiveCapture {
    /// Each call returns bytes of at most one record (or of the file
    /// header): the reader gets a frame as soon as it arrived.
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        if self.header_sent < PCAP_HEADER {
            let rest = &self.header[self.header_sent..];
            let n = rest.len().min(out.len());
            out[..n].copy_from_slice(&rest[..n]);
            self.header_sent += n;
            return Ok(n);
        }
        while self.pending.is_empty() {
            if self.ended {
                return Ok(0);
            }
            self.next_record()?;
        }
        let rest = &self.buf[self.pending.clone()];
        let n = rest.len().min(out.len());
        out[..n].copy_from_slice(&rest[..n]);
        self.pending.start += n;
        Ok(n)
    }
}

// ---------------------------------------------------------------------------
// Tee

/// A reader that copies every byte read through it into a writer, and
/// flushes the writer when the reader reaches its end: `--write FILE.pcap`
/// is the stream the pipeline analyses, byte for byte.
#[derive(Debug)]
pub struct Tee<R, W: Write> {
    inner: R,
    copy: W,
    flushed: bool,
}

impl<R: Read, W: Write> Tee<R, W> {
    /// Reads `inner`, writing what it gives into `copy`.
    pub fn new(inner: R, copy: W) -> Self {
        Tee {
            inner,
            copy,
            flushed: false,
        }
    }

    /// The reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The reader, mutably.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Flushes the copy (also done at the end of the stream).
    pub fn flush(&mut self) -> io::Result<()> {
        self.copy.flush()
    }

    /// The reader and the writer (flush the writer first if the stream did
    /// not reach its end).
    pub fn into_inner(self) -> (R, W) {
        (self.inner, self.copy)
    }
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let copied = if n > 0 {
            self.copy.write_all(&buf[..n])
        } else if !buf.is_empty() && !self.flushed {
            self.flushed = true;
            self.copy.flush()
        } else {
            Ok(())
        };
        copied.map_err(|e| io::Error::new(e.kind(), format!("writing the capture copy: {e}")))?;
        Ok(n)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn key(src: &str, dst: &str) -> FlowKey {
        FlowKey {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
        }
    }

    fn f(text: &str) -> Filter {
        Filter::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn err(text: &str) -> String {
        match Filter::parse(text) {
            Ok(f) => panic!("{text} parsed as {f:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn primitives_match_their_end() {
        let k = key("10.0.0.1:40000", "10.0.0.2:80");
        assert!(f("").matches(&k) && f("  ").is_all() && f("tcp").matches(&k));
        assert!(f("port 80").matches(&k) && f("port 40000").matches(&k));
        assert!(!f("port 81").matches(&k));
        assert!(f("dst port 80").matches(&k) && !f("src port 80").matches(&k));
        assert!(f("src port 40000").matches(&k) && !f("dst port 40000").matches(&k));
        assert!(f("host 10.0.0.2").matches(&k) && !f("host 10.0.0.3").matches(&k));
        assert!(f("src host 10.0.0.1").matches(&k) && !f("dst host 10.0.0.1").matches(&k));
        assert!(f("ip").matches(&k) && !f("ip6").matches(&k));
        let v6 = key("[2001:db8::1]:5000", "[::1]:443");
        assert!(f("host ::1 and port 443 and ip6").matches(&v6));
        assert!(f("src host 2001:db8::1").matches(&v6) && !f("dst host 2001:db8::1").matches(&v6));
        assert!(!f("host 10.0.0.1").matches(&v6));
    }

    #[test]
    fn not_binds_tighter_than_and_than_or() {
        let k = key("10.0.0.1:40000", "10.0.0.2:80");
        // or < and: `port 1 or port 80 and port 2` is `port 1 or (port 80 and port 2)`.
        assert!(!f("port 1 or port 80 and port 2").matches(&k));
        assert!(f("(port 1 or port 80) and port 40000").matches(&k));
        // not > and: `not port 1 and port 80` is `(not port 1) and port 80`.
        assert!(f("not port 1 and port 80").matches(&k));
        assert!(!f("not (port 1 or port 80)").matches(&k));
        assert!(f("not not port 80").matches(&k));
        assert!(f("!(port 1) && (port 80 || port 2)").matches(&k));
        assert!(!f("!port 80").matches(&k));
        assert!(f("port 80 and not host 10.0.0.9 or port 7").matches(&k));
        assert_eq!(f(" port 80 ").to_string(), "port 80");
        assert_eq!(Filter::all().to_string(), "tcp");
        let parsed: Filter = "port 80".parse().unwrap();
        assert_eq!(parsed, f("port 80"));
    }

    #[test]
    fn errors_name_the_token_and_what_was_expected() {
        let e = err("port eighty");
        assert!(
            e.contains("`eighty` at column 6") && e.contains("port number"),
            "{e}"
        );
        let e = err("port 65536");
        assert!(e.contains("`65536`"), "{e}");
        let e = err("host 10.0.0.300");
        assert!(
            e.contains("`10.0.0.300`") && e.contains("IPv4 or IPv6 address"),
            "{e}"
        );
        let e = err("port 80 and");
        assert!(
            e.contains("ends too soon") && e.contains("primitive"),
            "{e}"
        );
        let e = err("port 80 host 1.2.3.4");
        assert!(
            e.contains("`host` at column 9") && e.contains("`and`, `or`"),
            "{e}"
        );
        let e = err("src 80");
        assert!(
            e.contains("`80`") && e.contains("`port` or `host` after `src`"),
            "{e}"
        );
        let e = err("(port 80");
        assert!(
            e.contains("ends too soon") && e.contains("closing the `(` at column 1"),
            "{e}"
        );
        let e = err("port 80)");
        assert!(e.contains("`)` at column 8"), "{e}");
        let e = err("udp");
        assert!(
            e.contains("`udp` at column 1") && e.contains("primitive"),
            "{e}"
        );
        let e = err("port");
        assert!(
            e.contains("ends too soon") && e.contains("port number"),
            "{e}"
        );
        let e = err(&"(".repeat(100));
        assert!(e.contains("nests deeper than 64"), "{e}");
        let e = err(&"not ".repeat(65));
        assert!(e.contains("nests deeper"), "{e}");
        assert!(Filter::parse(&format!("{}port 1{}", "(".repeat(60), ")".repeat(60))).is_ok());
    }

    #[test]
    fn pcap_headers_byte_for_byte() {
        let h = pcap_header(LinkType::LINUX_SLL, 65535);
        assert_eq!(
            h,
            [
                0x4d, 0x3c, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 113,
                0, 0, 0
            ]
        );
        let r = record_header(1_700_000_000_123_456_789, 60, 1514);
        assert_eq!(&r[0..4], &1_700_000_000u32.to_le_bytes());
        assert_eq!(&r[4..8], &123_456_789u32.to_le_bytes());
        assert_eq!(&r[8..12], &60u32.to_le_bytes());
        assert_eq!(&r[12..16], &1514u32.to_le_bytes());
        let s = sll_header(4, 772, &[0; 6], 0x0800);
        assert_eq!(s, [0, 4, 3, 4, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0]);
    }

    #[test]
    fn a_written_stream_reads_back_through_the_capture_reader() {
        let tcp_v4 = |sport: u16, dport: u16| {
            let mut ip = vec![
                0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
            ];
            ip.extend_from_slice(&sport.to_be_bytes());
            ip.extend_from_slice(&dport.to_be_bytes());
            ip.extend_from_slice(&[0; 16]);
            ip
        };
        let mut stream = pcap_header(LinkType::LINUX_SLL, 100).to_vec();
        let mut frame = sll_header(0, 1, &[1, 2, 3, 4, 5, 6], 0x0800).to_vec();
        frame.extend(tcp_v4(40000, 80));
        stream.extend(record_header(5_000_000_001, frame.len() as u32, 200));
        stream.extend(&frame);
        let mut r = crate::capture::CaptureReader::new("mem", &stream[..]).unwrap();
        let fr = r.next_frame().unwrap().unwrap();
        assert_eq!(fr.linktype, LinkType::LINUX_SLL);
        assert_eq!(fr.ts, crate::Timestamp(5_000_000_001));
        assert_eq!((fr.captured.len(), fr.original_len), (frame.len(), 200));
        assert_eq!(
            classify(fr.linktype, fr.captured),
            Seen::Tcp {
                key: key("10.0.0.1:40000", "10.0.0.2:80"),
                more: None
            }
        );
        assert!(r.next_frame().unwrap().is_none());
    }

    #[test]
    fn classify_follows_vlans_fragments_and_ipv6_extensions() {
        let mut ip = vec![
            0x45, 0, 0, 40, 0x12, 0x34, 0x20, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        ip.extend_from_slice(&[0x9c, 0x40, 0, 80]);
        let mut eth = vec![0u8; 12];
        eth.extend_from_slice(&[0x81, 0x00, 0, 5, 0x88, 0xa8, 0, 6, 0x08, 0x00]);
        eth.extend_from_slice(&ip);
        let id = FragId {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            id: 0x1234,
        };
        // A first fragment (MF set): its datagram is named for the rest.
        assert_eq!(
            classify(LinkType::ETHERNET, &eth),
            Seen::Tcp {
                key: key("10.0.0.1:40000", "10.0.0.2:80"),
                more: Some(id)
            }
        );
        // A later fragment (offset 185 * 8).
        let at = 12 + 8 + 2;
        eth[at + 6] = 0;
        eth[at + 7] = 185;
        assert_eq!(classify(LinkType::ETHERNET, &eth), Seen::Fragment(id));
        // Not TCP, or cut before the ports.
        eth[at + 9] = 17;
        assert_eq!(classify(LinkType::ETHERNET, &eth), Seen::Other);
        assert_eq!(classify(LinkType::ETHERNET, &eth[..at + 21]), Seen::Other);
        assert_eq!(classify(LinkType::ETHERNET, &[]), Seen::Other);
        assert_eq!(classify(LinkType::RAW, &ip), Seen::Other);

        // IPv6: hop-by-hop options, then a first fragment, then TCP.
        let mut v6 = vec![0x60, 0, 0, 0, 0, 24, 0, 64];
        v6.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        v6.extend_from_slice(&[44, 0, 1, 4, 0, 0, 0, 0]); // hop-by-hop, next: fragment
        v6.extend_from_slice(&[6, 0, 0, 1, 0, 0, 0, 9]); // offset 0, M, id 9
        v6.extend_from_slice(&[0x13, 0x88, 0x01, 0xbb]);
        let mut sll = sll_header(0, 1, &[], 0x86dd).to_vec();
        sll.extend_from_slice(&v6);
        let id6 = FragId {
            src: "2001:db8::1".parse().unwrap(),
            dst: "::1".parse().unwrap(),
            id: 9,
        };
        assert_eq!(
            classify(LinkType::LINUX_SLL, &sll),
            Seen::Tcp {
                key: key("[2001:db8::1]:5000", "[::1]:443"),
                more: Some(id6)
            }
        );
        let frag_at = SLL_HEADER + 48;
        sll[frag_at + 3] = 0x10; // offset 2, no M
        assert_eq!(classify(LinkType::LINUX_SLL, &sll), Seen::Fragment(id6));
        // An extension-header length pointing past the frame.
        sll[SLL_HEADER + 41] = 200;
        assert_eq!(classify(LinkType::LINUX_SLL, &sll), Seen::Other);
    }

    #[test]
    fn kept_datagrams_are_a_bounded_ring() {
        let mut kept = KeptDatagrams::new();
        let id = |n: u32| FragId {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            id: n,
        };
        for n in 0..FRAGMENTS_REMEMBERED as u32 + 10 {
            kept.remember(id(n));
            kept.remember(id(n));
        }
        assert!(!kept.contains(id(9)));
        assert!(kept.contains(id(10)) && kept.contains(id(FRAGMENTS_REMEMBERED as u32 + 9)));
    }

    #[test]
    fn tee_copies_everything_and_flushes_at_the_end() {
        #[derive(Default)]
        struct Sink {
            bytes: Vec<u8>,
            flushes: u32,
        }
        impl Write for Sink {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.bytes.extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                self.flushes += 1;
                Ok(())
            }
        }
        let data: Vec<u8> = (0..=255).cycle().take(10_000).collect();
        let mut tee = Tee::new(&data[..], Sink::default());
        let mut small = [0u8; 7];
        assert_eq!(tee.read(&mut small).unwrap(), 7);
        assert_eq!(tee.read(&mut []).unwrap(), 0);
        assert_eq!(tee.get_ref().len(), data.len() - 7);
        let mut rest = Vec::new();
        tee.read_to_end(&mut rest).unwrap();
        assert_eq!(tee.read(&mut small).unwrap(), 0);
        let (_, sink) = tee.into_inner();
        assert_eq!(sink.bytes, data);
        assert_eq!(sink.flushes, 1);
    }

    #[test]
    fn bad_interface_names_are_refused_before_any_socket() {
        let stop = Arc::new(AtomicBool::new(false));
        for name in ["", "a/b", "has space", "sixteen-bytes-xx"] {
            let e = LiveCapture::open(name, Filter::all(), 0, stop.clone()).unwrap_err();
            assert!(e.to_string().contains("ip link"), "{name}: {e}");
        }
    }
}
