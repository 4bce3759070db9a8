//! Fuzzes the two cores without the decoder: the bytes are a list of
//! segments (any flags, sequence and acknowledgment numbers, lengths, cut
//! payloads, both directions of three connections sharing ports, capture
//! time moving at any pace) fed straight to the reassembler and the
//! analyzer. Nothing may panic, each direction's events must tile
//! `[0, end)`, and the analyzer must see every segment once.
//! Run: `cargo fuzz run segments` from `tcp-watch/`.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use tcp_watch::analysis::Analyzer;
use tcp_watch::reassembly::{Config, OverlapPolicy, Reassembler};
use tcp_watch::segment::MAX_SACK_BLOCKS;
use tcp_watch::{FlowKey, Segment, TcpFlags, TcpOptions, Timestamp};

/// Bytes of one segment's description, before its payload.
const HEAD: usize = 16;

/// Takes `n` bytes, or what is left.
fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, rest) = data.split_at(n.min(data.len()));
    *data = rest;
    head
}

fn word(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let setup = take(&mut data, 4);
    if setup.len() < 4 {
        return;
    }
    let cfg = Config {
        policy: [
            OverlapPolicy::First,
            OverlapPolicy::Last,
            OverlapPolicy::Bsd,
            OverlapPolicy::Linux,
        ][usize::from(setup[0] % 4)],
        direction_cap: usize::from(setup[1]) * 64 + 64,
        global_cap: usize::from(setup[2]) * 128 + 64,
        idle_timeout_ns: u64::from(setup[3]) * 10_000_000 + 1,
        max_streams: usize::from(setup[3] % 8) + 1,
        ..Config::default()
    };
    let ends = ["10.0.0.1:1000", "10.0.0.2:80", "10.0.0.1:1001"]
        .map(|a| a.parse::<std::net::SocketAddr>().unwrap());
    let mut reasm = Reassembler::new(cfg);
    let mut analyzer = Analyzer::new();
    let mut sink = common::Tiler::default();
    let mut ts = 0u64;
    let mut frame = 0u64;
    let mut last_seq = [0u32; 6];
    while data.len() >= HEAD {
        let h = take(&mut data, HEAD);
        // h[0]: connection and direction; h[1]: flags; h[2..6]: sequence
        // (relative to the last in this direction when h[0] bit 7 is set);
        // h[6..10]: ack; h[10..12]: payload length; h[12]: bytes captured
        // out of it; h[13]: window; h[14]: time step; h[15]: options.
        let conn = usize::from(h[0] % 3);
        let reverse = h[0] & 0x08 != 0;
        let (a, b) = match conn {
            0 => (ends[0], ends[1]),
            1 => (ends[2], ends[1]),
            _ => (ends[0], ends[2]),
        };
        let key = if reverse {
            FlowKey { src: b, dst: a }
        } else {
            FlowKey { src: a, dst: b }
        };
        let slot = conn * 2 + usize::from(reverse);
        let raw_seq = word(&h[2..6]);
        let seq = if h[0] & 0x80 != 0 {
            last_seq[slot]
                .wrapping_add(raw_seq % 4096)
                .wrapping_sub(1024)
        } else {
            raw_seq
        };
        last_seq[slot] = seq;
        let payload_len = u32::from(u16::from_be_bytes([h[10], h[11]]) % 3000);
        let captured = take(&mut data, usize::from(h[12]).min(payload_len as usize));
        let mut options = TcpOptions::default();
        if h[15] & 1 != 0 {
            options.timestamps = Some((raw_seq, word(&h[6..10])));
        }
        let blocks = usize::from(h[15] >> 1) % (MAX_SACK_BLOCKS + 1);
        for (i, blk) in options.sack.iter_mut().take(blocks).enumerate() {
            let ack = word(&h[6..10]);
            *blk = (
                ack.wrapping_add(i as u32 * 700),
                ack.wrapping_add(i as u32 * 700 + 350),
            );
        }
        options.sack_len = blocks as u8;
        if h[1] & 0x02 != 0 {
            options.mss = Some(1460);
            options.window_scale = Some(h[15] % 16);
            options.sack_permitted = true;
        }
        ts = ts.saturating_add(u64::from(h[14]).pow(3) * 1000);
        frame += 1;
        let seg = Segment {
            frame,
            ts: Timestamp(ts),
            key,
            seq,
            ack: word(&h[6..10]),
            flags: TcpFlags(h[1]),
            window: u16::from(h[13]) << 8,
            options,
            payload_len,
            payload: captured,
        };
        reasm.segment(&seg, &mut sink);
        analyzer.push(&seg);
    }
    reasm.finish(&mut sink);
    sink.all_closed();
    assert_eq!(reasm.stats().held_bytes, 0);
    assert!(reasm.stats().peak_held_bytes <= cfg.global_cap);
    let analysed: u64 = analyzer
        .finish()
        .iter()
        .map(|r| r.client_to_server.segments + r.server_to_client.segments)
        .sum();
    assert_eq!(analysed, frame);
});
