//! Capture input: a streaming reader of pcap and pcapng files over any
//! [`std::io::Read`] (a file, or stdin for `-`), handing out one [`Frame`] at
//! a time from a fixed-size buffer.
//!
//! Formats followed: the pcap savefile format (draft-ietf-opsawg-pcap:
//! micro- and nanosecond magic, both byte orders) and pcapng
//! (draft-ietf-opsawg-pcapng: several sections of either byte order, several
//! interfaces per section, each with its own link type, snap length,
//! `if_tsresol` and `if_tsoffset`; Enhanced, Simple and obsolete Packet
//! blocks).
//!
//! Memory is bounded whatever the file: the buffer holds at most
//! [`BUFFER_SIZE`] bytes; a pcapng block larger than that is skipped without
//! being held (counted in [`CaptureStats::oversize_blocks`]), and a pcap
//! record claiming more than that is taken as corruption. A file cut mid-header
//! or mid-packet ends the read with [`CaptureStats::truncated`] set; it is not
//! an error and never a panic. Only a file that is not a capture at all is an
//! [`Error::Capture`].

use std::io::{ErrorKind, Read};
use std::path::Path;

use crate::error::Error;
use crate::segment::Timestamp;

/// Bytes the reader holds at most: one record or block must fit.
pub const BUFFER_SIZE: usize = 1 << 20;

/// libpcap's largest snap length (`MAXIMUM_SNAPLEN`); larger ones are "huge".
pub const MAX_SNAPLEN: u32 = 262_144;

/// Interfaces remembered per pcapng section; more are counted and their
/// packets skipped, so a hostile file cannot grow the table.
pub const MAX_INTERFACES: usize = 1024;

/// A link-layer header type (the `LINKTYPE_*` registry of tcpdump.org).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkType(pub u16);

impl LinkType {
    /// BSD loopback: 4-byte address family in the capturing host's order.
    pub const NULL: LinkType = LinkType(0);
    /// Ethernet II / 802.3.
    pub const ETHERNET: LinkType = LinkType(1);
    /// PPP (RFC 1661), optionally with HDLC address and control bytes.
    pub const PPP: LinkType = LinkType(9);
    /// Raw IP (IPv4 or IPv6 by the version nibble).
    pub const RAW: LinkType = LinkType(101);
    /// OpenBSD loopback: 4-byte address family in network order.
    pub const LOOP: LinkType = LinkType(108);
    /// Linux cooked capture v1.
    pub const LINUX_SLL: LinkType = LinkType(113);
    /// Raw IPv4.
    pub const IPV4: LinkType = LinkType(228);
    /// Raw IPv6.
    pub const IPV6: LinkType = LinkType(229);
    /// Linux cooked capture v2.
    pub const LINUX_SLL2: LinkType = LinkType(276);
}

/// One captured frame, borrowed from the reader's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Frame number from 1, counting every packet record of the file (as
    /// Wireshark numbers them).
    pub number: u64,
    /// Capture timestamp.
    pub ts: Timestamp,
    /// Link type of the interface the frame was captured on.
    pub linktype: LinkType,
    /// The bytes the capture holds (at most the snap length).
    pub captured: &'a [u8],
    /// Length of the frame on the wire.
    pub original_len: u32,
}

/// What the reader met besides frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CaptureStats {
    /// Frames handed out.
    pub frames: u64,
    /// Packet records skipped (too large for the buffer, unknown interface):
    /// they still take a frame number.
    pub skipped_frames: u64,
    /// The file ended inside a header or a record (1 when it did).
    pub truncated: u64,
    /// A record or block whose length fields cannot be right; the read stops
    /// there (1 when it did).
    pub corrupt: u64,
    /// pcapng blocks longer than [`BUFFER_SIZE`], skipped unread.
    pub oversize_blocks: u64,
    /// pcapng blocks of types this reader does not use (statistics, name
    /// resolution, custom...): skipped, as the format allows.
    pub other_blocks: u64,
    /// Headers declaring a snap length of 0 (taken as "no limit").
    pub zero_snaplen: u64,
    /// Headers declaring a snap length above [`MAX_SNAPLEN`].
    pub huge_snaplen: u64,
    /// Records whose captured length exceeds the declared snap length or the
    /// original length (kept: the bytes are there).
    pub caplen_over_snaplen: u64,
    /// Interface descriptions beyond [`MAX_INTERFACES`] in a section.
    pub too_many_interfaces: u64,
    /// Packets naming an interface the section did not describe.
    pub unknown_interface: u64,
    /// pcapng sections read.
    pub sections: u64,
}

/// Whether a header field is little- or big-endian in this file or section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Little,
    Big,
}

impl Order {
    fn u16(self, b: &[u8], at: usize) -> u16 {
        let v = [b[at], b[at + 1]];
        match self {
            Order::Little => u16::from_le_bytes(v),
            Order::Big => u16::from_be_bytes(v),
        }
    }

    fn u32(self, b: &[u8], at: usize) -> u32 {
        let v = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        match self {
            Order::Little => u32::from_le_bytes(v),
            Order::Big => u32::from_be_bytes(v),
        }
    }

    fn u64(self, b: &[u8], at: usize) -> u64 {
        let mut v = [0u8; 8];
        v.copy_from_slice(&b[at..at + 8]);
        match self {
            Order::Little => u64::from_le_bytes(v),
            Order::Big => u64::from_be_bytes(v),
        }
    }
}

/// The file's format, learnt from its first four bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Classic pcap.
    Pcap {
        /// Nanosecond timestamps (magic `a1b23c4d`).
        nanos: bool,
        /// Header fields are big-endian.
        big_endian: bool,
    },
    /// pcapng.
    PcapNg,
}

/// A pcapng interface (IDB) as the packets need it.
#[derive(Debug, Clone, Copy)]
struct Interface {
    linktype: LinkType,
    snaplen: u32,
    /// `if_tsresol`: bit 7 clear, units of 10^-n s; set, 2^-n s.
    tsresol: u8,
    /// `if_tsoffset`: seconds added to every timestamp.
    tsoffset: i64,
}

const PCAP_MAGIC_US: u32 = 0xa1b2_c3d4;
const PCAP_MAGIC_NS: u32 = 0xa1b2_3c4d;
const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_BOM: u32 = 0x1a2b_3c4d;
const PCAPNG_IDB: u32 = 1;
const PCAPNG_OPB: u32 = 2;
const PCAPNG_SPB: u32 = 3;
const PCAPNG_EPB: u32 = 6;
const PCAP_FILE_HEADER: usize = 24;
const PCAP_RECORD_HEADER: usize = 16;

/// A streaming capture reader: call [`CaptureReader::next_frame`] until it
/// returns `Ok(None)`.
pub struct CaptureReader<R> {
    what: String,
    input: R,
    buf: Box<[u8]>,
    /// Unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    eof: bool,
    /// Bytes still to discard from the input (rest of an oversize block).
    skip: u64,
    format: Format,
    order: Order,
    /// pcap: the file's link type and snap length.
    pcap_if: Interface,
    /// pcapng: the current section's interfaces.
    interfaces: Vec<Interface>,
    number: u64,
    last_ts: Timestamp,
    done: bool,
    stats: CaptureStats,
    bytes_read: u64,
}

impl<R> std::fmt::Debug for CaptureReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureReader")
            .field("what", &self.what)
            .finish()
    }
}

/// Opens a capture file, or stdin when `path` is `-`.
pub fn open_path(path: &Path) -> Result<CaptureReader<Box<dyn Read>>, Error> {
    let input: Box<dyn Read> = if path == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?)
    };
    CaptureReader::new(path.display().to_string(), input)
}

impl<R: Read> CaptureReader<R> {
    /// Reads the file header of `input` (named `what` in errors: the path,
    /// or `-`). Fails when the input is empty or not pcap/pcapng.
    pub fn new(what: impl Into<String>, input: R) -> Result<Self, Error> {
        let mut r = CaptureReader {
            what: what.into(),
            input,
            buf: vec![0u8; BUFFER_SIZE].into_boxed_slice(),
            start: 0,
            end: 0,
            eof: false,
            skip: 0,
            format: Format::PcapNg,
            order: Order::Little,
            pcap_if: Interface {
                linktype: LinkType::ETHERNET,
                snaplen: 0,
                tsresol: 6,
                tsoffset: 0,
            },
            interfaces: Vec::new(),
            number: 0,
            last_ts: Timestamp(0),
            done: false,
            stats: CaptureStats::default(),
            bytes_read: 0,
        };
        r.read_file_header()?;
        Ok(r)
    }

    /// The input's format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// What the reader has met so far.
    pub fn stats(&self) -> CaptureStats {
        self.stats
    }

    /// The input's name, as given.
    pub fn name(&self) -> &str {
        &self.what
    }

    /// Bytes read from the input so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    fn bad(&self, reason: impl Into<String>) -> Error {
        Error::Capture {
            what: self.what.clone(),
            reason: reason.into(),
        }
    }

    fn io(&self, source: std::io::Error) -> Error {
        Error::Io {
            path: self.what.clone().into(),
            source,
        }
    }

    /// Makes at least `n` unread bytes available (`n <= BUFFER_SIZE`).
    /// Returns `false` when the input ends first.
    fn fill(&mut self, n: usize) -> Result<bool, Error> {
        debug_assert!(n <= BUFFER_SIZE);
        while self.end - self.start < n {
            if self.eof {
                return Ok(false);
            }
            if self.buf.len() - self.start < n {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            match self.input.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(k) => {
                    self.end += k;
                    self.bytes_read += k as u64;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(e)),
            }
        }
        Ok(true)
    }

    /// Discards `n` bytes of input without holding them. Returns `false`
    /// when the input ends first.
    fn discard(&mut self, n: u64) -> Result<bool, Error> {
        self.skip = n;
        while self.skip > 0 {
            let held = (self.end - self.start) as u64;
            if held > 0 {
                let k = held.min(self.skip);
                self.start += k as usize;
                self.skip -= k;
                continue;
            }
            self.start = 0;
            self.end = 0;
            if !self.fill(1)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn read_file_header(&mut self) -> Result<(), Error> {
        if !self.fill(4)? {
            return Err(self.bad(format!(
                "{} bytes: too short for a capture (expected a pcap or pcapng header)",
                self.end - self.start
            )));
        }
        let head = &self.buf[self.start..self.start + 4];
        let le = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let be = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let (nanos, order) = match (le, be) {
            (PCAP_MAGIC_US, _) => (false, Order::Little),
            (_, PCAP_MAGIC_US) => (false, Order::Big),
            (PCAP_MAGIC_NS, _) => (true, Order::Little),
            (_, PCAP_MAGIC_NS) => (true, Order::Big),
            (PCAPNG_SHB, _) => {
                self.format = Format::PcapNg;
                // The section header itself is read as the first block, so
                // that later sections go the same way.
                return match self.fill(12)? {
                    true => self.check_bom(),
                    false => Err(self.bad("pcapng section header cut short")),
                };
            }
            _ => {
                return Err(self.bad(format!(
                    "not a capture: magic {:02x}{:02x}{:02x}{:02x} (expected pcap a1b2c3d4 or a1b23c4d in either byte order, or pcapng 0a0d0d0a)",
                    head[0], head[1], head[2], head[3]
                )))
            }
        };
        self.format = Format::Pcap {
            nanos,
            big_endian: order == Order::Big,
        };
        self.order = order;
        if !self.fill(PCAP_FILE_HEADER)? {
            // A magic number and nothing usable: a truncated file, not garbage.
            self.stats.truncated = 1;
            self.done = true;
            return Ok(());
        }
        let h = &self.buf[self.start..self.start + PCAP_FILE_HEADER];
        let snaplen = order.u32(h, 16);
        // The upper bits of the link-type field carry FCS information.
        let linktype = LinkType((order.u32(h, 20) & 0xffff) as u16);
        self.start += PCAP_FILE_HEADER;
        self.pcap_if = Interface {
            linktype,
            snaplen,
            tsresol: if nanos { 9 } else { 6 },
            tsoffset: 0,
        };
        self.note_snaplen(snaplen);
        Ok(())
    }

    fn check_bom(&mut self) -> Result<(), Error> {
        let b = &self.buf[self.start..self.start + 12];
        let bom = Order::Little.u32(b, 8);
        if bom != PCAPNG_BOM && bom.swap_bytes() != PCAPNG_BOM {
            return Err(self.bad(format!(
                "pcapng section header with byte-order magic {bom:08x} (expected 1a2b3c4d)"
            )));
        }
        Ok(())
    }

    fn note_snaplen(&mut self, snaplen: u32) {
        if snaplen == 0 {
            self.stats.zero_snaplen += 1;
        } else if snaplen > MAX_SNAPLEN {
            self.stats.huge_snaplen += 1;
        }
    }

    fn truncated(&mut self) {
        self.stats.truncated = 1;
        self.done = true;
    }

    fn corrupt(&mut self) {
        self.stats.corrupt = 1;
        self.done = true;
    }

    /// The next frame, or `Ok(None)` at the end of the input (including an
    /// end by truncation or corruption, which [`stats`](Self::stats) counts).
    /// `Err` only for a read error of the input itself.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, Error> {
        loop {
            if self.done {
                return Ok(None);
            }
            let found = match self.format {
                Format::Pcap { .. } => self.next_pcap()?,
                Format::PcapNg => self.next_pcapng_block()?,
            };
            if let Some((at, len, ts, linktype, original_len)) = found {
                self.stats.frames += 1;
                self.last_ts = ts;
                return Ok(Some(Frame {
                    number: self.number,
                    ts,
                    linktype,
                    captured: &self.buf[at..at + len],
                    original_len,
                }));
            }
        }
    }

    /// One pcap record: `Some((offset, caplen, ts, linktype, origlen))`.
    /// `None` means "nothing to hand out this time" (end, or skipped).
    #[allow(clippy::type_complexity)]
    fn next_pcap(&mut self) -> Result<Option<(usize, usize, Timestamp, LinkType, u32)>, Error> {
        if !self.fill(PCAP_RECORD_HEADER)? {
            if self.end > self.start {
                self.truncated();
            } else {
                self.done = true;
            }
            return Ok(None);
        }
        let o = self.order;
        let h = &self.buf[self.start..self.start + PCAP_RECORD_HEADER];
        let (sec, frac, caplen, origlen) = (o.u32(h, 0), o.u32(h, 4), o.u32(h, 8), o.u32(h, 12));
        let caplen = caplen as usize;
        if caplen > BUFFER_SIZE - PCAP_RECORD_HEADER {
            // No real capture has such a record (libpcap refuses them too):
            // the framing is lost, nothing after it can be trusted.
            self.corrupt();
            return Ok(None);
        }
        if !self.fill(PCAP_RECORD_HEADER + caplen)? {
            self.truncated();
            return Ok(None);
        }
        self.number += 1;
        let iface = self.pcap_if;
        if (iface.snaplen != 0 && caplen as u64 > u64::from(iface.snaplen))
            || caplen as u64 > u64::from(origlen)
        {
            self.stats.caplen_over_snaplen += 1;
        }
        let at = self.start + PCAP_RECORD_HEADER;
        self.start = at + caplen;
        let units = u64::from(sec) * 10u64.pow(u32::from(iface.tsresol)) + u64::from(frac);
        let ts = to_nanos(units, iface.tsresol, 0);
        Ok(Some((at, caplen, ts, iface.linktype, origlen)))
    }

    /// One pcapng block; a packet block gives a frame.
    #[allow(clippy::type_complexity)]
    fn next_pcapng_block(
        &mut self,
    ) -> Result<Option<(usize, usize, Timestamp, LinkType, u32)>, Error> {
        if !self.fill(12)? {
            if self.end > self.start {
                self.truncated();
            } else {
                self.done = true;
            }
            return Ok(None);
        }
        let head = &self.buf[self.start..self.start + 12];
        let raw_type = Order::Little.u32(head, 0);
        if raw_type == PCAPNG_SHB {
            // A new section may change the byte order: its BOM says which.
            let bom = Order::Little.u32(head, 8);
            self.order = if bom == PCAPNG_BOM {
                Order::Little
            } else if bom.swap_bytes() == PCAPNG_BOM {
                Order::Big
            } else {
                self.corrupt();
                return Ok(None);
            };
            self.interfaces.clear();
            self.stats.sections += 1;
        }
        let o = self.order;
        let block_type = o.u32(head, 0);
        let total = o.u32(head, 4) as usize;
        if total < 12 || total % 4 != 0 {
            self.corrupt();
            return Ok(None);
        }
        if total > BUFFER_SIZE {
            self.stats.oversize_blocks += 1;
            if matches!(block_type, PCAPNG_EPB | PCAPNG_SPB | PCAPNG_OPB) {
                self.number += 1;
                self.stats.skipped_frames += 1;
            }
            if !self.discard(total as u64)? {
                self.truncated();
            }
            return Ok(None);
        }
        if !self.fill(total)? {
            self.truncated();
            return Ok(None);
        }
        let at = self.start;
        self.start += total;
        let block = &self.buf[at..at + total];
        if o.u32(block, total - 4) as usize != total {
            self.corrupt();
            return Ok(None);
        }
        let body = &block[8..total - 4];
        match block_type {
            PCAPNG_SHB => {
                if body.len() < 16 {
                    self.corrupt();
                }
                Ok(None)
            }
            PCAPNG_IDB => {
                if body.len() < 8 {
                    self.corrupt();
                    return Ok(None);
                }
                let mut iface = Interface {
                    linktype: LinkType(o.u16(body, 0)),
                    snaplen: o.u32(body, 4),
                    tsresol: 6,
                    tsoffset: 0,
                };
                for (code, value) in Options::new(&body[8..], o) {
                    match (code, value.len()) {
                        (9, 1) => iface.tsresol = value[0],
                        (14, 8) => iface.tsoffset = o.u64(value, 0) as i64,
                        _ => {}
                    }
                }
                self.note_snaplen(iface.snaplen);
                if self.interfaces.len() < MAX_INTERFACES {
                    self.interfaces.push(iface);
                } else {
                    self.stats.too_many_interfaces += 1;
                }
                Ok(None)
            }
            PCAPNG_EPB | PCAPNG_OPB => {
                if body.len() < 20 {
                    self.corrupt();
                    return Ok(None);
                }
                self.number += 1;
                let if_id = if block_type == PCAPNG_EPB {
                    o.u32(body, 0) as usize
                } else {
                    usize::from(o.u16(body, 0))
                };
                let ts_units = (u64::from(o.u32(body, 4)) << 32) | u64::from(o.u32(body, 8));
                let caplen = o.u32(body, 12) as usize;
                let origlen = o.u32(body, 16);
                if caplen > body.len() - 20 {
                    self.corrupt();
                    return Ok(None);
                }
                let Some(iface) = self.interfaces.get(if_id).copied() else {
                    self.stats.unknown_interface += 1;
                    self.stats.skipped_frames += 1;
                    return Ok(None);
                };
                if (iface.snaplen != 0 && caplen as u64 > u64::from(iface.snaplen))
                    || caplen as u64 > u64::from(origlen)
                {
                    self.stats.caplen_over_snaplen += 1;
                }
                let ts = to_nanos(ts_units, iface.tsresol, iface.tsoffset);
                Ok(Some((at + 28, caplen, ts, iface.linktype, origlen)))
            }
            PCAPNG_SPB => {
                if body.len() < 4 {
                    self.corrupt();
                    return Ok(None);
                }
                self.number += 1;
                let origlen = o.u32(body, 0);
                // RFC draft: the captured length is the smaller of the
                // original length and interface 0's snap length.
                let Some(iface) = self.interfaces.first().copied() else {
                    self.stats.unknown_interface += 1;
                    self.stats.skipped_frames += 1;
                    return Ok(None);
                };
                let mut caplen = (origlen as usize).min(body.len() - 4);
                if iface.snaplen != 0 {
                    caplen = caplen.min(iface.snaplen as usize);
                }
                // A simple packet has no timestamp: it gets the previous
                // frame's, so that capture time never runs backwards.
                Ok(Some((
                    at + 12,
                    caplen,
                    self.last_ts,
                    iface.linktype,
                    origlen,
                )))
            }
            _ => {
                self.stats.other_blocks += 1;
                Ok(None)
            }
        }
    }
}

/// Converts a timestamp in `tsresol` units (pcapng `if_tsresol` encoding)
/// plus `offset_s` seconds into nanoseconds, saturating.
fn to_nanos(units: u64, tsresol: u8, offset_s: i64) -> Timestamp {
    let exp = u32::from(tsresol & 0x7f);
    let ns: u128 = if tsresol & 0x80 == 0 {
        if exp <= 9 {
            u128::from(units) * 10u128.pow(9 - exp)
        } else {
            // 10^38 is the most u128 holds; beyond that every value is 0 ns.
            10u128
                .checked_pow(exp - 9)
                .map_or(0, |d| u128::from(units) / d)
        }
    } else {
        // exp <= 127 (7 bits): the shift cannot overflow a u128.
        (u128::from(units) * 1_000_000_000) >> exp
    };
    let ns = ns as i128 + i128::from(offset_s) * 1_000_000_000;
    Timestamp(ns.clamp(0, i128::from(u64::MAX)) as u64)
}

/// pcapng options: `(code, value)` until `opt_endofopt` or the end.
struct Options<'a> {
    rest: &'a [u8],
    order: Order,
}

impl<'a> Options<'a> {
    fn new(rest: &'a [u8], order: Order) -> Self {
        Options { rest, order }
    }
}

impl<'a> Iterator for Options<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.len() < 4 {
            return None;
        }
        let code = self.order.u16(self.rest, 0);
        let len = usize::from(self.order.u16(self.rest, 2));
        if code == 0 || 4 + len > self.rest.len() {
            return None;
        }
        let value = &self.rest[4..4 + len];
        let padded = (4 + len + 3) & !3;
        self.rest = self.rest.get(padded..).unwrap_or(&[]);
        Some((code, value))
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn timestamps_in_every_resolution() {
        assert_eq!(to_nanos(1_500_000, 6, 0), Timestamp(1_500_000_000));
        assert_eq!(to_nanos(7, 9, 0), Timestamp(7));
        assert_eq!(to_nanos(1234, 12, 0), Timestamp(1));
        assert_eq!(to_nanos(3, 0x80 | 1, 0), Timestamp(1_500_000_000));
        assert_eq!(to_nanos(1, 6, 10), Timestamp(10_000_001_000));
        assert_eq!(to_nanos(1, 6, -10), Timestamp(0));
        assert_eq!(to_nanos(u64::MAX, 0, i64::MAX), Timestamp(u64::MAX));
        assert_eq!(to_nanos(u64::MAX, 127, 0), Timestamp(0));
        assert_eq!(to_nanos(u64::MAX, 0xff, 0), Timestamp(0));
    }

    #[test]
    fn garbage_is_an_error_naming_the_input() {
        let e = CaptureReader::new("x.pcap", &b"hello world, not a capture"[..]).unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("x.pcap: not a capture"), "{text}");
        assert!(text.contains("expected pcap"), "{text}");
        assert!(CaptureReader::new("-", &b""[..]).is_err());
    }
}
