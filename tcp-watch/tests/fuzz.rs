//! Fuzzing that runs in CI: bytes through the whole pipeline (capture reader,
//! decoder, reassembler, analyzer), where `tests/formats.rs` fuzzes the
//! reader and the decoder alone. Random files, valid captures mutated at
//! every kind of boundary and length field, and targeted bad packets set
//! among good ones.
//!
//! What every run must show, whatever the input:
//! - no panic; an input the reader refuses is an [`Error::Capture`] naming it;
//! - every frame accounted for exactly once by the decoder's counts
//!   ([`accounting`]);
//! - per direction, the reassembler's data and gap events tile `[0, end)`
//!   in order, and the stream's closing summary agrees ([`Tiler`]);
//! - the analyzer sees every segment once;
//! - no allocation sized by a field of the input (a counting global
//!   allocator, [`measured`]).
//!
//! `tcp-watch/fuzz` holds the cargo-fuzz targets doing the same for longer.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;

use common::*;
use proptest::prelude::*;
use tcp_watch::Error;
use tcp_watch::analysis::{Analyzer, ConnectionReport};
use tcp_watch::capture::{BUFFER_SIZE, CaptureReader};
use tcp_watch::packet::{DecodeStats, Decoder, Malformed};
use tcp_watch::reassembly::{
    self, Config, Dir, Gap, GapCause, Reassembler, StreamEnd, StreamInfo, StreamSink,
};

// --- a counting allocator -------------------------------------------------

/// Counts, per thread and only while asked, the bytes live, their peak and
/// the largest single request: proptest and the harness run other tests on
/// other threads at the same time.
struct Counting;

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(delta: isize, request: usize) {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    let _ = ON.try_with(|on| {
        if on.get() {
            let live = LIVE.with(|l| {
                l.set(l.get() + delta);
                l.get()
            });
            PEAK.with(|p| p.set(p.get().max(live)));
            LARGEST.with(|m| m.set(m.get().max(request)));
        }
    });
}

// SAFETY: every call goes to `System` with the caller's arguments unchanged;
// the bookkeeping touches only const-initialised thread-locals, which do not
// allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as isize, layout.size());
        // SAFETY: forwarded as is (the caller upholds `alloc`'s contract).
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as isize, layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(-(layout.size() as isize), 0);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size as isize - layout.size() as isize, new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` counting this thread's allocations: its result, the peak of
/// bytes live above what was live before, and the largest single request.
fn measured<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    LARGEST.with(|m| m.set(0));
    ON.with(|on| on.set(true));
    let out = f();
    ON.with(|on| on.set(false));
    (
        out,
        PEAK.with(|p| p.get()).max(0) as usize,
        LARGEST.with(|m| m.get()),
    )
}

// --- the pipeline under test ----------------------------------------------

/// A sink checking that each direction's events tile `[0, end)` in order,
/// that each stream opens once, sends nothing after it closed, and closes
/// with a summary that agrees with what was sent. Keeps the bytes when asked
/// (the targeted tests compare them).
#[derive(Default)]
struct Tiler {
    keep_bytes: bool,
    /// Next offset per (stream, direction), with bytes and gap bytes sent.
    next: BTreeMap<(u64, Dir), (u64, u64, u64)>,
    opened: BTreeMap<u64, bool>,
    ends: Vec<StreamEnd>,
    gaps: Vec<Gap>,
    bytes: BTreeMap<(u64, Dir), BTreeMap<u64, Vec<u8>>>,
    violations: Vec<String>,
}

impl Tiler {
    fn step(&mut self, stream: u64, dir: Dir, offset: u64, len: u64, gap: bool) {
        match self.opened.get(&stream) {
            Some(true) => {}
            Some(false) => self
                .violations
                .push(format!("stream {stream}: event after close")),
            None => self
                .violations
                .push(format!("stream {stream}: event before open")),
        }
        let e = self.next.entry((stream, dir)).or_default();
        if offset != e.0 {
            self.violations.push(format!(
                "stream {stream} {dir:?}: {} at {offset}, expected {}",
                if gap { "gap" } else { "data" },
                e.0
            ));
        }
        e.0 = offset + len;
        if gap {
            e.2 += len;
        } else {
            e.1 += len;
        }
    }
}

impl StreamSink for Tiler {
    fn opened(&mut self, s: &StreamInfo) {
        if self.opened.insert(s.id, true).is_some() {
            self.violations
                .push(format!("stream {} opened twice", s.id));
        }
    }

    fn data(&mut self, stream: u64, dir: Dir, offset: u64, bytes: &[u8]) {
        self.step(stream, dir, offset, bytes.len() as u64, false);
        if self.keep_bytes {
            self.bytes
                .entry((stream, dir))
                .or_default()
                .insert(offset, bytes.to_vec());
        }
    }

    fn gap(&mut self, g: &Gap) {
        if g.len == 0 {
            self.violations.push(format!("empty gap {g:?}"));
        }
        self.step(g.stream, g.dir, g.offset, g.len, true);
        if self.keep_bytes {
            self.gaps.push(*g);
        }
    }

    fn closed(&mut self, end: &StreamEnd) {
        if self.opened.insert(end.id, false) != Some(true) {
            self.violations
                .push(format!("stream {} closed while not open", end.id));
        }
        for dir in [Dir::ClientToServer, Dir::ServerToClient] {
            let sent = self.next.get(&(end.id, dir)).copied().unwrap_or_default();
            let s = &end.dirs[dir.index()];
            if (s.end, s.bytes, s.gap_bytes) != sent {
                self.violations.push(format!(
                    "stream {} {dir:?}: summary (end, bytes, gap bytes) {:?}, events {sent:?}",
                    end.id,
                    (s.end, s.bytes, s.gap_bytes)
                ));
            }
        }
        self.ends.push(*end);
    }
}

/// What one input gave.
struct Run {
    decode: DecodeStats,
    reasm: reassembly::Stats,
    sink: Tiler,
    reports: Vec<ConnectionReport>,
    /// Segments the decoder produced (all went to both cores).
    segments: u64,
}

/// The whole pipeline over `bytes`, named `name`.
fn pipeline(name: &str, bytes: &[u8], cfg: Config, keep_bytes: bool) -> Result<Run, Error> {
    let mut reader = CaptureReader::new(name, bytes)?;
    let mut decoder = Decoder::new();
    let mut reasm = Reassembler::new(cfg);
    let mut analyzer = Analyzer::new();
    let mut sink = Tiler {
        keep_bytes,
        ..Tiler::default()
    };
    let mut segments = 0;
    while let Some(frame) = reader.next_frame()? {
        if let Some(seg) = decoder.decode(&frame) {
            segments += 1;
            reasm.segment(&seg, &mut sink);
            analyzer.push(&seg);
        }
    }
    reasm.finish(&mut sink);
    let mut decode = decoder.finish();
    decode.capture = reader.stats();
    Ok(Run {
        decode,
        reasm: *reasm.stats(),
        sink,
        reports: analyzer.finish(),
        segments,
    })
}

/// Every frame is accounted for once: a segment (a bad TCP option keeps
/// it), not TCP, dropped as malformed (one kind each), or a fragment held
/// for a datagram (only fragments go unaccounted).
fn accounting(d: &DecodeStats) -> Result<(), String> {
    let dropped = d.malformed_total() - d.malformed(Malformed::BadTcpOption);
    let accounted = d.segments + d.non_tcp + dropped;
    let held = d.frames.checked_sub(accounted);
    let ok = d.frames == d.capture.frames
        && held.is_some_and(|h| h <= d.fragments)
        && d.malformed(Malformed::BadTcpOption) <= d.segments
        && d.snap_cut <= d.segments
        && d.reassembled <= d.fragments;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "frames {} (reader {}) != segments {} + non-TCP {} + malformed drops {} + held fragments (of {}): {d:?}",
            d.frames, d.capture.frames, d.segments, d.non_tcp, dropped, d.fragments
        ))
    }
}

/// The properties every input must have; `Err` says which failed.
fn check(name: &str, bytes: &[u8]) -> Result<Option<Run>, String> {
    let cfg = Config {
        direction_cap: 4096,
        global_cap: 16384,
        ..Config::default()
    };
    let run = match pipeline(name, bytes, cfg, false) {
        Ok(run) => run,
        Err(Error::Capture { what, reason }) if what == name => {
            // Refused at the file header only: later trouble is counted.
            if reason.is_empty() {
                return Err("an error without a reason".into());
            }
            return Ok(None);
        }
        Err(e) => return Err(format!("unexpected error: {e}")),
    };
    accounting(&run.decode)?;
    if !run.sink.violations.is_empty() {
        return Err(run.sink.violations.join("\n"));
    }
    if run.sink.opened.values().any(|&open| open) {
        return Err("a stream still open after finish".into());
    }
    if run.segments != run.reasm.segments {
        return Err("reassembler segment count".into());
    }
    let analysed: u64 = run
        .reports
        .iter()
        .map(|r| r.client_to_server.segments + r.server_to_client.segments)
        .sum();
    if analysed != run.segments {
        return Err(format!(
            "analyzer saw {analysed} segments of {}",
            run.segments
        ));
    }
    if run.reasm.held_bytes != 0 {
        return Err("bytes still held after finish".into());
    }
    Ok(Some(run))
}

// --- valid captures, with their layout ------------------------------------

const CLIENT: &str = "10.0.0.1:40000";
const SERVER: &str = "10.0.0.2:80";
const CLIENT6: &str = "[2001:db8::1]:40000";
const SERVER6: &str = "[2001:db8::2]:80";
const ISN_C: u32 = 0xffff_ff00; // the client's data crosses the 2^32 wrap
const ISN_S: u32 = 5000;

/// The client's bytes: position-dependent, so misplaced data would show.
fn message(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 256) as u8).collect()
}

/// A whole connection: handshake (with options), `chunks` data segments
/// from the client each ACKed by the server, FINs both ways.
fn connection(v6: bool, chunks: &[usize]) -> (Vec<Tcp>, Vec<u8>) {
    let (c, s) = if v6 {
        (CLIENT6, SERVER6)
    } else {
        (CLIENT, SERVER)
    };
    let total: usize = chunks.iter().sum();
    let data = message(total);
    let mut out = Vec::new();
    let mut syn = Tcp::data(c, s, ISN_C, b"");
    syn.flags = SYN;
    syn.ack = 0;
    syn.options = vec![2, 4, 0x05, 0xb4, 1, 3, 3, 7, 4, 2];
    out.push(syn);
    let mut syn_ack = Tcp::data(s, c, ISN_S, b"");
    syn_ack.flags = SYN | ACK;
    syn_ack.ack = ISN_C.wrapping_add(1);
    syn_ack.options = vec![2, 4, 0x05, 0xb4, 1, 3, 3, 7, 4, 2];
    out.push(syn_ack);
    let mut ack = Tcp::data(c, s, ISN_C.wrapping_add(1), b"");
    ack.flags = ACK;
    ack.ack = ISN_S + 1;
    out.push(ack);
    let mut at = 0;
    for &n in chunks {
        let seq = ISN_C.wrapping_add(1).wrapping_add(at as u32);
        let mut d = Tcp::data(c, s, seq, &data[at..at + n]);
        d.ack = ISN_S + 1;
        // Timestamps, so that the option walker has lengths to mutate.
        d.options = vec![1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
        out.push(d);
        at += n;
        let mut a = Tcp::data(s, c, ISN_S + 1, b"");
        a.flags = ACK;
        a.ack = seq.wrapping_add(n as u32);
        out.push(a);
    }
    let end = ISN_C.wrapping_add(1).wrapping_add(total as u32);
    let mut fin = Tcp::data(c, s, end, b"");
    fin.flags = FIN | ACK;
    fin.ack = ISN_S + 1;
    out.push(fin);
    let mut fin2 = Tcp::data(s, c, ISN_S + 1, b"");
    fin2.flags = FIN | ACK;
    fin2.ack = end.wrapping_add(1);
    out.push(fin2);
    let mut last = Tcp::data(c, s, end.wrapping_add(1), b"");
    last.flags = ACK;
    last.ack = ISN_S + 2;
    out.push(last);
    (out, data)
}

/// Where one record's parts start in the file.
#[derive(Debug, Clone, Copy)]
struct Place {
    /// The record (pcap) or block (pcapng).
    rec: usize,
    /// Its header length: 16 (pcap record) or 28 (enhanced packet block).
    rec_header: usize,
    /// The frame's first byte.
    frame: usize,
    ip: usize,
    tcp: usize,
    /// After the TCP header.
    payload: usize,
    /// The record's end.
    end: usize,
}

/// A capture with its layout.
struct Built {
    file: Vec<u8>,
    places: Vec<Place>,
    pcapng: bool,
    v6: bool,
    data: Vec<u8>,
}

/// Link types the mutation tests use, with their header length.
const LINKS: [(u16, usize); 5] = [(ETHERNET, 14), (RAW, 0), (SLL, 16), (SLL2, 20), (NULL, 4)];

fn wrap(link: u16, ip: &[u8]) -> Vec<u8> {
    match link {
        ETHERNET => ethernet(ip, &[]),
        SLL => sll(ip),
        SLL2 => sll2(ip),
        NULL => null(ip, if ip[0] >> 4 == 6 { 24 } else { 2 }, false),
        _ => ip.to_vec(),
    }
}

fn build(link: usize, v6: bool, pcapng: bool, big_endian: bool, chunks: &[usize]) -> Built {
    let (link, link_len) = LINKS[link % LINKS.len()];
    let (segs, data) = connection(v6, chunks);
    let recs: Vec<Rec> = segs
        .iter()
        .enumerate()
        .map(|(i, t)| Rec::new(1_000_000_000 + i as u64 * 1_000_000, wrap(link, &t.ip())))
        .collect();
    let ip_len = if v6 { 40 } else { 20 };
    let place = |rec: usize, rec_header: usize, t: &Tcp, r: &Rec| {
        let frame = rec + rec_header;
        let ip = frame + link_len;
        let tcp = ip + ip_len;
        Place {
            rec,
            rec_header,
            frame,
            ip,
            tcp,
            payload: tcp + t.bytes().len() - t.payload.len(),
            // A pcapng block pads its data to 4 bytes and repeats its
            // length after it.
            end: if rec_header == 28 {
                frame + r.data.len().next_multiple_of(4) + 4
            } else {
                frame + r.data.len()
            },
        }
    };
    let mut places = Vec::new();
    let file = if pcapng {
        let mut ng = PcapNg::new();
        ng.section(big_endian).interface(Iface::new(link));
        for (t, r) in segs.iter().zip(&recs) {
            places.push(place(ng.out.len(), 28, t, r));
            ng.packet(r);
        }
        ng.bytes()
    } else {
        let mut at = 24;
        for (t, r) in segs.iter().zip(&recs) {
            places.push(place(at, 16, t, r));
            at += 16 + r.data.len();
        }
        pcap(link, 65535, big_endian, big_endian, &recs)
    };
    Built {
        file,
        places,
        pcapng,
        v6,
        data,
    }
}

/// Delivered bytes by offset.
type Chunks = Vec<(u64, Vec<u8>)>;
/// Gaps as (offset, length, cause).
type Gaps = Vec<(u64, u64, GapCause)>;

/// The client's bytes as delivered, and the gaps of its direction.
fn client_stream(run: &Run) -> (Chunks, Gaps) {
    let data = run
        .sink
        .bytes
        .get(&(0, Dir::ClientToServer))
        .map(|m| m.iter().map(|(&o, b)| (o, b.clone())).collect())
        .unwrap_or_default();
    let gaps = run
        .sink
        .gaps
        .iter()
        .filter(|g| g.stream == 0 && g.dir == Dir::ClientToServer)
        .map(|g| (g.offset, g.len, g.cause))
        .collect();
    (data, gaps)
}

/// Every delivered byte is the original at its offset (nothing invented,
/// nothing moved).
fn nothing_invented(run: &Run, original: &[u8]) -> Result<(), String> {
    for (off, b) in client_stream(run).0 {
        let at = off as usize;
        if original.get(at..at + b.len()) != Some(&b[..]) {
            return Err(format!("{} bytes at {off} are not the original", b.len()));
        }
    }
    Ok(())
}

// --- mutations ------------------------------------------------------------

/// A length or header field of one record.
#[derive(Debug, Clone, Copy)]
enum Field {
    /// pcap `incl_len`, pcapng EPB captured length.
    CapLen,
    /// pcap `orig_len`, pcapng EPB original length.
    OrigLen,
    /// pcapng block total length (pcap: the file's snap length).
    BlockLen,
    /// IPv4 total length, IPv6 payload length.
    IpLen,
    /// IPv4 IHL nibble (IPv6: the version nibble).
    Ihl,
    /// TCP data offset nibble.
    DataOffset,
    /// The first TCP option's length byte.
    OptionLen,
    /// The sequence number, moved by 2^31.
    SeqJump,
}

/// Where a cut falls within a record.
#[derive(Debug, Clone, Copy)]
enum Cut {
    RecordHeader,
    LinkHeader,
    IpHeader,
    TcpHeader,
    Payload,
    RecordEnd,
}

#[derive(Debug, Clone, Copy)]
enum Mutation {
    Flip {
        at: usize,
        bit: u8,
    },
    Set {
        record: usize,
        field: Field,
        value: u8,
    },
    Cut {
        record: usize,
        cut: Cut,
        within: usize,
    },
}

fn field() -> impl Strategy<Value = Field> {
    prop_oneof![
        Just(Field::CapLen),
        Just(Field::OrigLen),
        Just(Field::BlockLen),
        Just(Field::IpLen),
        Just(Field::Ihl),
        Just(Field::DataOffset),
        Just(Field::OptionLen),
        Just(Field::SeqJump),
    ]
}

fn cut() -> impl Strategy<Value = Cut> {
    prop_oneof![
        Just(Cut::RecordHeader),
        Just(Cut::LinkHeader),
        Just(Cut::IpHeader),
        Just(Cut::TcpHeader),
        Just(Cut::Payload),
        Just(Cut::RecordEnd),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), field(), any::<u8>()).prop_map(|(record, field, value)| {
            Mutation::Set {
                record,
                field,
                value,
            }
        }),
        (any::<usize>(), cut(), any::<usize>()).prop_map(|(record, cut, within)| Mutation::Cut {
            record,
            cut,
            within
        }),
    ]
}

/// Writes `v` at `at` in the file's byte order (pcap/pcapng fields) or big
/// endian (packet fields).
fn put(file: &mut [u8], at: usize, v: &[u8]) {
    if let Some(dst) = file.get_mut(at..at + v.len()) {
        dst.copy_from_slice(v);
    }
}

/// A value for a length field: 0, all ones, or anything, by `pick`.
fn length_value(pick: u8) -> u32 {
    match pick % 3 {
        0 => 0,
        1 => u32::MAX,
        _ => u32::from(pick).wrapping_mul(0x0101_0101),
    }
}

fn apply(b: &Built, file: &mut Vec<u8>, m: Mutation, big_endian: bool) {
    let word = |v: u32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    match m {
        Mutation::Flip { at, bit } => {
            if !file.is_empty() {
                let n = file.len();
                file[at % n] ^= 1 << bit;
            }
        }
        Mutation::Set {
            record,
            field,
            value,
        } => {
            let p = b.places[record % b.places.len()];
            let v = length_value(value);
            match field {
                Field::CapLen => put(file, p.rec + if b.pcapng { 20 } else { 8 }, &word(v)),
                Field::OrigLen => put(file, p.rec + if b.pcapng { 24 } else { 12 }, &word(v)),
                Field::BlockLen if b.pcapng => put(file, p.rec + 4, &word(v)),
                Field::BlockLen => put(file, 16, &word(v)),
                Field::IpLen => {
                    let at = p.ip + if b.v6 { 4 } else { 2 };
                    put(file, at, &(v as u16).to_be_bytes());
                }
                Field::Ihl => {
                    if let Some(x) = file.get_mut(p.ip) {
                        *x = if b.v6 {
                            (value << 4) | (*x & 0x0f)
                        } else {
                            (*x & 0xf0) | (value & 0x0f)
                        };
                    }
                }
                Field::DataOffset => {
                    if let Some(x) = file.get_mut(p.tcp + 12) {
                        *x = (*x & 0x0f) | (value << 4);
                    }
                }
                Field::OptionLen => {
                    // Past the NOPs of the data segments' timestamp option.
                    let at = p.tcp + 20 + usize::from(file.get(p.tcp + 20) == Some(&1)) * 2 + 1;
                    if at < p.payload {
                        put(file, at, &[value]);
                    }
                }
                Field::SeqJump => {
                    if let Some(s) = file.get(p.tcp + 4..p.tcp + 8) {
                        let seq = u32::from_be_bytes(s.try_into().unwrap());
                        put(file, p.tcp + 4, &seq.wrapping_add(1 << 31).to_be_bytes());
                    }
                }
            }
        }
        Mutation::Cut {
            record,
            cut,
            within,
        } => {
            let p = b.places[record % b.places.len()];
            let (from, to) = match cut {
                Cut::RecordHeader => (p.rec + 1, p.rec + p.rec_header),
                Cut::LinkHeader => (p.frame, p.ip.max(p.frame + 1)),
                Cut::IpHeader => (p.ip + 1, p.tcp),
                Cut::TcpHeader => (p.tcp + 1, p.payload),
                Cut::Payload => (p.payload, p.end.max(p.payload + 1)),
                Cut::RecordEnd => (p.end, p.end + 1),
            };
            let at = from + within % (to - from).max(1);
            file.truncate(at);
        }
    }
}

// --- (a) random bytes, (b) mutated captures -------------------------------

/// A random file that gets past the first checks: a real header, then
/// records of random bytes, some starting with an IPv4/TCP header of random
/// fields, so that the decoder and both cores get work.
fn random_file(pcapng: bool, link: u8, records: &[(bool, Vec<u8>, u32)], seq_base: u32) -> Vec<u8> {
    let linktype = [RAW, ETHERNET, SLL, NULL, 147][usize::from(link) % 5];
    let recs: Vec<Rec> = records
        .iter()
        .enumerate()
        .map(|(i, (tcp_head, body, orig))| {
            let mut data = Vec::new();
            if *tcp_head && linktype != 147 {
                let mut t = Tcp::data(CLIENT, SERVER, seq_base.wrapping_add(*orig), &[]);
                if i % 2 == 1 {
                    t = Tcp::data(SERVER, CLIENT, *orig, &[]);
                }
                t.flags = body.first().copied().unwrap_or(0);
                t.ack = seq_base.wrapping_add(orig.rotate_left(7));
                t.payload = body.clone();
                data = wrap(linktype, &t.ip());
            } else {
                data.extend(body);
            }
            let mut r = Rec::new(i as u64 * 1_000_000, data);
            r.orig_len = r.orig_len.max(*orig % 2000);
            r
        })
        .collect();
    if pcapng {
        let mut ng = PcapNg::new();
        ng.section(link & 0x80 != 0).interface(Iface::new(linktype));
        for r in &recs {
            ng.packet(r);
        }
        ng.bytes()
    } else {
        pcap(linktype, 65535, false, link & 0x80 != 0, &recs)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 768, ..ProptestConfig::default() })]

    /// Any bytes at all: refused with an error naming the input, or read to
    /// the end with every invariant.
    #[test]
    fn random_bytes_through_the_whole_pipeline(
        head in prop::sample::select(vec![
            vec![], vec![0xd4, 0xc3, 0xb2, 0xa1], vec![0xa1, 0xb2, 0x3c, 0x4d],
            vec![0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a],
        ]),
        body in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut file = head;
        file.extend(body);
        check("random.bin", &file).map_err(TestCaseError::fail)?;
    }

    /// Well-framed files of random packets, many of them TCP with random
    /// flags, numbers and payloads: the cores get every kind of segment.
    #[test]
    fn random_packets_through_the_whole_pipeline(
        pcapng in any::<bool>(),
        link in any::<u8>(),
        seq_base in any::<u32>(),
        records in prop::collection::vec(
            (any::<bool>(), prop::collection::vec(any::<u8>(), 0..80), any::<u32>()), 1..40),
    ) {
        let file = random_file(pcapng, link, &records, seq_base);
        let run = check("packets.cap", &file).map_err(TestCaseError::fail)?;
        prop_assert!(run.is_some());
    }

    /// Valid captures of every link type, format and byte order, mutated by
    /// bit flips, cuts at every kind of boundary and length fields set to
    /// 0, all ones or anything: every invariant holds.
    #[test]
    fn mutated_captures_keep_every_invariant(
        link in 0usize..LINKS.len(),
        v6 in any::<bool>(),
        pcapng in any::<bool>(),
        big_endian in any::<bool>(),
        chunks in prop::collection::vec(1usize..300, 1..6),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let b = build(link, v6, pcapng, big_endian, &chunks);
        let mut file = b.file.clone();
        for &m in &mutations {
            apply(&b, &mut file, m, big_endian);
        }
        check("mutant.cap", &file).map_err(TestCaseError::fail)?;
    }
}

/// Each mutation does what it says, at the place it names: on the second
/// data segment of a clean capture, every field set to 0 and every cut
/// changes what the pipeline reports (a mutation test that wrote past its
/// target would pass vacuously).
#[test]
fn every_mutation_hits_its_target() {
    for pcapng in [false, true] {
        let b = build(0, false, pcapng, false, &[200, 300, 100]);
        let clean = pipeline("m.cap", &b.file, Config::default(), true).unwrap();
        let summary = |r: &Run| {
            (
                r.decode,
                *r.sink
                    .next
                    .get(&(0, Dir::ClientToServer))
                    .unwrap_or(&(0, 0, 0)),
            )
        };
        let fields = [
            Field::CapLen,
            Field::OrigLen,
            Field::BlockLen,
            Field::IpLen,
            Field::Ihl,
            Field::DataOffset,
            Field::OptionLen,
            Field::SeqJump,
        ];
        let mut mutations: Vec<Mutation> = fields
            .iter()
            .map(|&field| Mutation::Set {
                record: 5,
                field,
                value: 0,
            })
            .collect();
        for cut in [
            Cut::RecordHeader,
            Cut::LinkHeader,
            Cut::IpHeader,
            Cut::TcpHeader,
            Cut::Payload,
            Cut::RecordEnd,
        ] {
            mutations.push(Mutation::Cut {
                record: 5,
                cut,
                within: 3,
            });
        }
        // A bit of the second data segment's payload.
        mutations.push(Mutation::Flip {
            at: b.places[5].payload + 7,
            bit: 2,
        });
        for m in mutations {
            let mut file = b.file.clone();
            apply(&b, &mut file, m, false);
            assert_ne!(file, b.file, "{m:?} (pcapng {pcapng})");
            let run = pipeline("m.cap", &file, Config::default(), true).unwrap();
            let changed =
                summary(&run) != summary(&clean) || client_stream(&run) != client_stream(&clean);
            // pcap has no block length: the mutation sets its snap length
            // to 0 ("no limit"), counted.
            assert!(changed, "{m:?} (pcapng {pcapng}) changed nothing");
        }
    }
}

/// The builder's captures are what the mutation test starts from: unmutated,
/// they decode without a complaint and reassemble to exactly the data (so
/// every complaint in the mutated runs comes from a mutation).
#[test]
fn unmutated_captures_are_clean_and_exact() {
    for link in 0..LINKS.len() {
        for (v6, pcapng, big_endian) in [
            (false, false, false),
            (true, true, true),
            (false, true, false),
            (true, false, true),
        ] {
            let b = build(link, v6, pcapng, big_endian, &[100, 1, 299]);
            let what = format!("link {link} v6 {v6} pcapng {pcapng} be {big_endian}");
            let run = pipeline("clean.cap", &b.file, Config::default(), true).unwrap();
            assert_eq!(run.decode.malformed_total(), 0, "{what}");
            assert_eq!(run.decode.segments, b.places.len() as u64, "{what}");
            let (data, gaps) = client_stream(&run);
            let joined: Vec<u8> = data.into_iter().flat_map(|(_, b)| b).collect();
            assert_eq!(joined, b.data, "{what}");
            assert!(gaps.is_empty(), "{what}");
            assert_eq!(run.sink.ends.len(), 1, "{what}");
            // Every place is where the builder says: the payload of the
            // first data segment starts at its recorded offset.
            let p = b.places[3];
            assert_eq!(
                &b.file[p.payload..p.payload + 100],
                &b.data[..100],
                "{what}"
            );
            assert_eq!(p.end, b.places[4].rec, "{what}");
            check("clean.cap", &b.file).unwrap();
        }
    }
}

// --- (c) targeted bad packets among good ones -----------------------------

/// A pcap of `link` with the connection's frames, a bad frame inserted
/// before frame `before` (0-based), written with `snaplen`.
fn with_bad_frame(bad: Vec<u8>, before: usize, orig_len: Option<u32>) -> (Vec<u8>, Vec<u8>) {
    let (segs, data) = connection(false, &[200, 300, 100]);
    let mut recs: Vec<Rec> = segs
        .iter()
        .map(|t| Rec::new(0, ethernet(&t.ip(), &[])))
        .collect();
    let mut r = Rec::new(0, bad);
    if let Some(o) = orig_len {
        r.orig_len = o;
    }
    recs.insert(before, r);
    for (i, r) in recs.iter_mut().enumerate() {
        r.ts_ns = 1_000_000_000 + i as u64 * 1_000_000;
    }
    (pcap(ETHERNET, 65535, false, false, &recs), data)
}

/// The connection's second data segment (300 bytes at offset 200), as a
/// mutable copy.
fn second_data() -> Tcp {
    connection(false, &[200, 300, 100]).0[5].clone()
}

/// Runs `file`, asserts the invariants, and that the client's stream is
/// still exactly the data with no gap: the bad frame changed nothing but
/// its count.
fn stream_intact(file: &[u8], data: &[u8]) -> Run {
    check("targeted.cap", file).unwrap();
    let run = pipeline("targeted.cap", file, Config::default(), true).unwrap();
    let (got, gaps) = client_stream(&run);
    let joined: Vec<u8> = got.into_iter().flat_map(|(_, b)| b).collect();
    assert_eq!(joined, data);
    assert!(gaps.is_empty(), "{gaps:?}");
    run
}

/// Each bad packet of the list, as a copy of a real segment set
/// among the connection's frames: its kind counted once, nothing else
/// malformed, the stream around it exact (`tests/formats.rs` decodes the
/// same kinds alone).
#[test]
fn each_bad_packet_is_counted_by_kind_and_the_stream_survives() {
    let ip = second_data().ip();
    let set = |at: usize, v: u8| {
        let mut b = ip.clone();
        b[at] = v;
        ethernet(&b, &[])
    };
    let cases: Vec<(&str, Malformed, Vec<u8>)> = vec![
        ("IHL 4 (16 bytes)", Malformed::BadIhl, set(0, 0x44)),
        ("IHL past the packet", Malformed::BadIhl, {
            // 60 bytes of header claimed by a 40-byte pure ACK.
            let mut b = connection(false, &[200, 300, 100]).0[4].ip();
            b[0] = 0x4f;
            ethernet(&b, &[])
        }),
        (
            "total length below the header",
            Malformed::BadTotalLength,
            {
                let mut b = ip.clone();
                b[2..4].copy_from_slice(&19u16.to_be_bytes());
                ethernet(&b, &[])
            },
        ),
        (
            "TCP data offset past the packet",
            Malformed::BadTcpDataOffset,
            {
                // A header without options claiming 60 bytes, in a 20-byte
                // segment.
                let mut t = second_data();
                t.options.clear();
                t.payload.clear();
                let mut b = t.ip();
                b[32] = 0xf0;
                ethernet(&b, &[])
            },
        ),
        (
            "TCP data offset below 5",
            Malformed::BadTcpDataOffset,
            set(32, 0x40),
        ),
        (
            "truncated in the TCP header",
            Malformed::TcpHeaderNotCaptured,
            {
                let mut b = ethernet(&ip, &[]);
                b.truncate(14 + 20 + 10);
                b
            },
        ),
        ("truncated in the IP header", Malformed::IpTruncated, {
            let mut b = ethernet(&ip, &[]);
            b.truncate(14 + 12);
            b
        }),
    ];
    for (what, kind, bad) in cases {
        // The frames cut short were cut by the capture: the wire had the
        // whole packet.
        let cut = matches!(
            kind,
            Malformed::TcpHeaderNotCaptured | Malformed::IpTruncated
        );
        let orig = cut.then_some(14 + ip.len() as u32);
        for before in [5, 6] {
            let (file, data) = with_bad_frame(bad.clone(), before, orig);
            let run = stream_intact(&file, &data);
            assert_eq!(run.decode.malformed(kind), 1, "{what}: {:?}", run.decode);
            assert_eq!(run.decode.malformed_total(), 1, "{what}");
            assert_eq!(run.decode.segments, 12, "{what}: the bad frame is dropped");
        }
    }
}

/// A TCP option whose length overflows the header: counted, the segment
/// kept with the options before it, its data delivered once.
#[test]
fn an_option_length_overflowing_the_header_keeps_the_segment() {
    for opts in [
        vec![1, 1, 5, 40, 0, 0, 0, 0],     // SACK claiming 40 bytes
        vec![2, 4, 5, 0xb4, 8, 255, 0, 0], // a timestamp claiming 255
        vec![1, 1, 1, 8],                  // a kind with no length byte... (EOL-less)
    ] {
        let mut t = second_data();
        t.options = opts.clone();
        let (file, data) = with_bad_frame(ethernet(&t.ip(), &[]), 5, None);
        let run = stream_intact(&file, &data);
        assert_eq!(run.decode.malformed(Malformed::BadTcpOption), 1, "{opts:?}");
        assert_eq!(run.decode.malformed_total(), 1, "{opts:?}");
        assert_eq!(run.decode.segments, 13, "{opts:?}: the segment is kept");
        // Whichever copy came first was delivered; the other is old.
        assert_eq!(run.reasm.old_bytes, 300, "{opts:?}");
        let sack: u64 = run
            .reports
            .iter()
            .map(|r| r.server_to_client.sack_blocks + r.client_to_server.sack_blocks)
            .sum();
        assert_eq!(sack, 0, "{opts:?}: no SACK block from a broken option");
    }
}

/// An IP total length of 65535 in a short frame (the wire had only the
/// frame): kept and counted, the bytes it claims past the frame reported
/// as not captured, never invented, and nothing allocated for them.
#[test]
fn a_total_length_beyond_the_frame_is_not_captured_not_invented() {
    let t = second_data();
    let mut ip = t.ip();
    ip[2..4].copy_from_slice(&u16::MAX.to_be_bytes());
    let (file, data) = with_bad_frame(ethernet(&ip, &[]), 5, None);
    let (run, peak, largest) = measured(|| {
        check("long.cap", &file).unwrap();
        pipeline("long.cap", &file, Config::default(), true).unwrap()
    });
    assert_eq!(run.decode.ip_longer_than_frame, 1);
    assert_eq!(run.decode.snap_cut, 1);
    assert_eq!(run.decode.malformed_total(), 0);
    nothing_invented(&run, &data).unwrap();
    let claimed = 65535 - 20 - 32;
    let not_captured: u64 = run
        .reports
        .iter()
        .map(|r| r.client_to_server.not_captured_bytes)
        .sum();
    assert_eq!(not_captured, claimed - 300);
    let (got, gaps) = client_stream(&run);
    // The real bytes of the long packet are delivered; what it claims past
    // them is a snap-length hole, never bytes. The reassembler declares
    // that hole as soon as it comes up (it does not keep delivered
    // offsets), so the genuine third segment, arriving later inside the
    // claimed range, is old bytes: lost to the stream, not invented.
    let delivered: usize = got.iter().map(|(_, b)| b.len()).sum();
    assert_eq!(delivered, 500);
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert_eq!(gaps[0], (500, claimed - 300, GapCause::SnapLength));
    assert_eq!(run.reasm.old_bytes, 300 + 100);
    assert!(largest <= BUFFER_SIZE, "largest allocation {largest}");
    assert!(peak < 4 * BUFFER_SIZE, "peak {peak}");
}

/// A data segment 2^31 away from the stream, in a capture: counted out of
/// window by the reassembler, never delivered.
#[test]
fn a_sequence_jump_of_2_31_is_out_of_window() {
    let mut t = second_data();
    t.seq = t.seq.wrapping_add(1 << 31);
    t.payload = vec![0xee; 300];
    let (file, data) = with_bad_frame(ethernet(&t.ip(), &[]), 5, None);
    let run = stream_intact(&file, &data);
    assert_eq!(run.reasm.out_of_window, 1);
    assert_eq!(run.decode.malformed_total(), 0);
}

/// pcapng interfaces with an unknown link type, a zero and a huge snap
/// length, in one section: the unknown one's frames counted by kind, the
/// others read (`tests/formats.rs` covers these in pcap headers).
#[test]
fn pcapng_interfaces_with_unknown_link_type_and_odd_snap_lengths() {
    let (segs, data) = connection(false, &[200, 300, 100]);
    let mut ng = PcapNg::new();
    ng.section(false);
    ng.interface(Iface::new(147));
    ng.interface(Iface {
        snaplen: 0,
        ..Iface::new(ETHERNET)
    });
    ng.interface(Iface {
        snaplen: u32::MAX,
        ..Iface::new(RAW)
    });
    for (i, t) in segs.iter().enumerate() {
        let ts = 1_000_000_000 + i as u64 * 1_000_000;
        // Every segment on the unknown interface too.
        ng.packet(&Rec::new(ts, t.ip()).on(0));
        let r = if i % 2 == 0 {
            Rec::new(ts, ethernet(&t.ip(), &[])).on(1)
        } else {
            Rec::new(ts, t.ip()).on(2)
        };
        ng.packet(&r);
    }
    let run = stream_intact(&ng.bytes(), &data);
    let n = segs.len() as u64;
    assert_eq!(run.decode.malformed(Malformed::UnknownLinkType), n);
    assert_eq!(run.decode.malformed_total(), n);
    assert_eq!(run.decode.segments, n);
    assert_eq!(run.decode.capture.zero_snaplen, 1);
    assert_eq!(run.decode.capture.huge_snaplen, 1);
}

/// A file cut mid-record-header and mid-packet: the read ends with the
/// truncation counted, every complete record's bytes delivered, the rest a
/// gap (`tests/formats.rs` cuts everywhere but only reads).
#[test]
fn a_truncated_file_delivers_what_it_holds() {
    let b = build(0, false, false, false, &[200, 300, 100]);
    // Frame 6 (0-based 5) is the second data segment.
    let p = b.places[5];
    for (what, at) in [
        ("mid record header", p.rec + 7),
        ("mid link header", p.frame + 5),
        ("mid packet", p.payload + 150),
    ] {
        let run = pipeline("cut.cap", &b.file[..at], Config::default(), true).unwrap();
        check("cut.cap", &b.file[..at]).unwrap();
        assert_eq!(run.decode.capture.truncated, 1, "{what}");
        assert_eq!(run.decode.capture.corrupt, 0, "{what}");
        nothing_invented(&run, &b.data).unwrap();
        let (got, _) = client_stream(&run);
        let delivered: usize = got.iter().map(|(_, b)| b.len()).sum();
        // The cut record is not handed out at all: only the first chunk.
        assert_eq!(delivered, 200, "{what}");
    }
}

// --- no allocation sized by a field ---------------------------------------

/// Length fields claiming up to 4 GiB (pcap record, pcapng block, pcapng
/// captured length, IP lengths, TCP lengths by sequence jumps) allocate
/// nothing of their size: the largest single allocation is the reader's own
/// buffer, and the run completes with little memory.
#[test]
fn no_allocation_is_sized_by_a_length_field() {
    let good = Tcp::data(CLIENT, SERVER, 1, b"good");
    let mut files: Vec<(&str, Vec<u8>)> = Vec::new();
    // A pcap record claiming 4 GiB, and one claiming just under the buffer
    // with nothing behind it.
    for caplen in [u32::MAX, (BUFFER_SIZE - 16) as u32] {
        let mut f = pcap(
            RAW,
            65535,
            false,
            false,
            &[Rec::new(0, good.ip()), Rec::new(0, good.ip())],
        );
        let second = 24 + 16 + good.ip().len();
        f[second + 8..second + 12].copy_from_slice(&caplen.to_le_bytes());
        f[second + 12..second + 16].copy_from_slice(&u32::MAX.to_le_bytes());
        files.push(("pcap record length", f));
    }
    // A pcapng block claiming 4 GiB, and an enhanced packet whose captured
    // length claims 4 GiB inside a small block.
    for (at, v) in [(4, 0xffff_fffcu32), (20, 0xffff_fff0)] {
        let mut ng = PcapNg::new();
        ng.section(false).interface(Iface {
            snaplen: u32::MAX,
            ..Iface::new(RAW)
        });
        let start = ng.out.len();
        ng.packet(&Rec::new(0, good.ip()));
        let mut f = ng.bytes();
        f[start + at..start + at + 4].copy_from_slice(&v.to_le_bytes());
        files.push(("pcapng length", f));
    }
    // Many segments each claiming 65 KB with one byte captured, at
    // sequence numbers far apart: holes and "not captured" ranges galore.
    let recs: Vec<Rec> = (0..3000u32)
        .map(|i| {
            let mut t = Tcp::data(CLIENT, SERVER, i.wrapping_mul(0x0100_0193), b"z");
            t.options = vec![
                5, 34, 0, 0, 0, 0, 0x80, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0,
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ];
            let mut ip = t.ip();
            ip[2..4].copy_from_slice(&u16::MAX.to_be_bytes());
            let mut r = Rec::new(u64::from(i) * 1000, ip);
            r.orig_len = u32::MAX;
            r
        })
        .collect();
    files.push(("65 KB claims", pcap(RAW, u32::MAX, false, false, &recs)));
    for (what, f) in files {
        let started = std::time::Instant::now();
        let (run, peak, largest) = measured(|| check("claims.cap", &f));
        run.unwrap();
        eprintln!("{what}: peak {peak} B, largest allocation {largest} B");
        // The counting works: the reader's own buffer is seen.
        assert!(largest >= BUFFER_SIZE, "{what}: {largest}");
        assert!(
            largest <= BUFFER_SIZE,
            "{what}: an allocation of {largest} bytes"
        );
        assert!(peak <= 2 * BUFFER_SIZE, "{what}: peak {peak} bytes");
        // Generous: a debug build on a loaded machine reads these in well
        // under a second; a 4 GiB allocation or read would take far longer.
        assert!(started.elapsed().as_secs() < 30, "{what}");
    }
}

/// Capture time jumping far ahead and back (idle sweeps, timeouts, RTT
/// arithmetic) keeps every invariant.
#[test]
fn capture_time_jumping_back_and_forth_keeps_every_invariant() {
    let segs = connection(false, &[200, 300]).0;
    let recs: Vec<Rec> = segs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let ts = match i % 3 {
                // The last second a pcap timestamp can hold.
                0 => u64::from(u32::MAX) * 1_000_000_000,
                1 => 0,
                _ => 1_000 * i as u64,
            };
            Rec::new(ts, t.ip())
        })
        .collect();
    let file = pcap(RAW, 65535, true, false, &recs);
    let run = check("time.cap", &file).unwrap().unwrap();
    assert_eq!(run.decode.segments, segs.len() as u64);
}
