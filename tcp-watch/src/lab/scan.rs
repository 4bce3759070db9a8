//! A tiny reader of the lab's own captures: counts the TCP segments each
//! address sent and looks for the end marker, so the lab can check a
//! capture's completeness without the crate's full input layer.
//!
//! It reads what `tcpdump -w` writes on a veth: the pcap savefile format
//! (draft-ietf-opsawg-pcap; micro- or nanosecond magic, either byte
//! order) with Ethernet frames (link type 1), IPv4 inside, optionally one
//! 802.1Q tag. Anything else is counted as `other`, never an error: a record
//! cut short (a file still being written) ends the scan.

use std::net::Ipv4Addr;

use std::io::Read;

/// Link type of Ethernet in pcap headers.
const LINKTYPE_ETHERNET: u32 = 1;
/// Bytes of the pcap file header and of each record header.
const FILE_HEADER: usize = 24;
const RECORD_HEADER: usize = 16;
/// Bytes of each frame looked at: Ethernet, a VLAN tag, IPv4 with options,
/// UDP, and the marker. The rest is skipped, never held.
const PREFIX: usize = 18 + 60 + 8 + 64;

/// What one capture holds, as the lab counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scan {
    /// Records read.
    pub frames: u64,
    /// TCP segments whose IPv4 source is the address asked about.
    pub tcp_from: u64,
    /// Other TCP segments.
    pub tcp_other: u64,
    /// Frames that are not IPv4 TCP (the marker, ARP, ...).
    pub other: u64,
    /// A UDP datagram carrying the marker was seen.
    pub marker_seen: bool,
    /// The file ended inside a record (it is still being written).
    pub truncated: bool,
}

/// Scans a pcap file read from `file` for TCP segments from `from` and a
/// UDP datagram whose payload is `marker` (at most 64 bytes). Memory is a
/// fixed buffer whatever the file's size or its records' lengths say.
pub fn scan(file: impl Read, from: Ipv4Addr, marker: &[u8]) -> Result<Scan, String> {
    let mut file = std::io::BufReader::new(file);
    let mut out = Scan::default();
    let mut header = [0u8; FILE_HEADER];
    match read_full(&mut file, &mut header)? {
        FILE_HEADER => {}
        n if n < 4 => return Err("shorter than a pcap header".into()),
        _ => {
            out.truncated = true;
            check_magic(&header)?;
            return Ok(out);
        }
    }
    let big = check_magic(&header)?;
    let u32_at = |b: &[u8], at: usize| {
        let v = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if big {
            u32::from_be_bytes(v)
        } else {
            u32::from_le_bytes(v)
        }
    };
    let linktype = u32_at(&header, 20);
    if linktype & 0xffff != LINKTYPE_ETHERNET {
        return Err(format!("link type {linktype}, not Ethernet"));
    }
    let mut record = [0u8; RECORD_HEADER];
    let mut prefix = [0u8; PREFIX];
    loop {
        match read_full(&mut file, &mut record)? {
            0 => break,
            RECORD_HEADER => {}
            _ => {
                out.truncated = true;
                break;
            }
        }
        let caplen = u64::from(u32_at(&record, 8));
        let want = usize::try_from(caplen).map_or(PREFIX, |n| n.min(PREFIX));
        let got = read_full(&mut file, &mut prefix[..want])?;
        let rest = caplen - want as u64;
        let skipped = std::io::copy(&mut (&mut file).take(rest), &mut std::io::sink())
            .map_err(|e| e.to_string())?;
        if got < want || skipped < rest {
            out.truncated = true;
            break;
        }
        out.frames += 1;
        classify(&prefix[..want], from, marker, &mut out);
    }
    Ok(out)
}

/// Whether the pcap header's magic is big-endian; an error if it is none.
fn check_magic(header: &[u8]) -> Result<bool, String> {
    match header[..4] {
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => Ok(true),
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => Ok(false),
        _ => Err(format!("not a pcap file (magic {:02x?})", &header[..4])),
    }
}

/// Reads until `buf` is full or the input ends; the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, String> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(n)
}

/// Whether the last `window` bytes of the file at `path` contain `needle`:
/// the end marker is the last frame written, so the tail suffices, and a
/// large capture is not read again and again while the lab waits for it.
pub fn tail_contains(path: &std::path::Path, needle: &[u8], window: u64) -> bool {
    use std::io::{Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let len = f.metadata().map_or(0, |m| m.len());
    if f.seek(SeekFrom::Start(len.saturating_sub(window))).is_err() {
        return false;
    }
    let mut tail = Vec::new();
    if f.take(window).read_to_end(&mut tail).is_err() {
        return false;
    }
    tail.windows(needle.len().max(1)).any(|w| w == needle)
}

/// Counts one Ethernet frame.
fn classify(frame: &[u8], from: Ipv4Addr, marker: &[u8], out: &mut Scan) {
    match ipv4(frame) {
        Some((6, src, _)) if src == from => out.tcp_from += 1,
        Some((6, _, _)) => out.tcp_other += 1,
        Some((17, _, l4)) => {
            out.other += 1;
            if l4.get(8..) == Some(marker) {
                out.marker_seen = true;
            }
        }
        _ => out.other += 1,
    }
}

/// `(protocol, source, transport bytes)` of an IPv4 packet in an Ethernet
/// frame (the transport bytes end where the IP total length says).
fn ipv4(frame: &[u8]) -> Option<(u8, Ipv4Addr, &[u8])> {
    let mut ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let mut ip = 14;
    if ethertype == 0x8100 {
        ethertype = u16::from_be_bytes([*frame.get(16)?, *frame.get(17)?]);
        ip = 18;
    }
    if ethertype != 0x0800 {
        return None;
    }
    let header = frame.get(ip..ip + 20)?;
    let ihl = usize::from(header[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let src = Ipv4Addr::new(header[12], header[13], header[14], header[15]);
    // The frame may be only a prefix of the packet: keep what it holds.
    let l4 = frame.get(ip + ihl..)?;
    let l4 = &l4[..l4.len().min(total.saturating_sub(ihl))];
    (header[0] >> 4 == 4 && ihl >= 20).then_some((header[9], src, l4))
}

#[cfg(test)]
mod test {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);

    /// An Ethernet frame with an IPv4 packet of `proto` from `src`.
    fn frame(proto: u8, src: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend([0x08, 0x00]);
        let total = (20 + payload.len()) as u16;
        f.extend([
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            0,
            0,
            0,
            64,
            proto,
            0,
            0,
        ]);
        f.extend(src.octets());
        f.extend(B.octets());
        f.extend(payload);
        f.extend([0u8; 6]); // Ethernet padding: not part of the datagram
        f
    }

    /// A pcap file, little-endian microseconds, holding `frames`.
    fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut f = 0xa1b2_c3d4u32.to_le_bytes().to_vec();
        f.extend([2, 0, 4, 0]); // version 2.4
        for v in [0u32, 0, 65535, LINKTYPE_ETHERNET] {
            f.extend(v.to_le_bytes());
        }
        for fr in frames {
            for v in [0u32, 0, fr.len() as u32, fr.len() as u32] {
                f.extend(v.to_le_bytes());
            }
            f.extend(fr);
        }
        f
    }

    #[test]
    fn counts_tcp_by_source_and_finds_the_marker() {
        let mut udp = vec![0u8; 8];
        udp.extend(b"END");
        let file = pcap(&[
            frame(6, A, &[0; 20]),
            frame(6, B, &[0; 20]),
            frame(6, A, &[0; 1460]),
            frame(17, A, &udp),
        ]);
        let s = scan(&file[..], A, b"END").unwrap();
        assert_eq!((s.frames, s.tcp_from, s.tcp_other, s.other), (4, 2, 1, 1));
        assert!(s.marker_seen && !s.truncated);
        assert!(!scan(&file[..], A, b"OTHER").unwrap().marker_seen);
        let path = std::env::temp_dir().join(format!("tcp-watch-scan-{}", std::process::id()));
        std::fs::write(&path, &file).unwrap();
        assert!(tail_contains(&path, b"END", 100));
        assert!(!tail_contains(&path, b"END", 2));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_cut_file_is_counted_up_to_the_cut_and_garbage_is_refused() {
        let file = pcap(&[frame(6, A, &[0; 20]), frame(6, A, &[0; 20])]);
        for cut in 0..file.len() {
            match scan(&file[..cut], A, b"x") {
                Ok(s) => assert!(s.tcp_from <= 2 && (s.truncated || s.frames <= 2)),
                Err(_) => assert!(cut < 4),
            }
        }
        let s = scan(&file[..file.len() - 1], A, b"x").unwrap();
        assert_eq!((s.tcp_from, s.truncated), (1, true));
        assert!(scan(&b"garbage garbage garbage garbage"[..], A, b"x").is_err());
        let mut be = file.clone();
        be[20..24].copy_from_slice(&113u32.to_le_bytes());
        assert!(scan(&be[..], A, b"x").unwrap_err().contains("113"));
    }
}
