//! Fuzzes the whole input path: the bytes are a capture file, read by
//! `CaptureReader` from memory, every frame decoded, every segment given to
//! the reassembler (small caps, so that flushes happen) and the analyzer.
//! Nothing may panic; every frame must be accounted for once by the
//! decoder's counts; the reassembler's events must tile each direction.
//! Run: `cargo fuzz run capture` from `tcp-watch/`.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use tcp_watch::Error;
use tcp_watch::analysis::Analyzer;
use tcp_watch::capture::CaptureReader;
use tcp_watch::packet::{Decoder, Malformed};
use tcp_watch::reassembly::{Config, Reassembler};

fuzz_target!(|data: &[u8]| {
    let mut reader = match CaptureReader::new("fuzz", data) {
        Ok(r) => r,
        // Refused at the header, with the input named.
        Err(Error::Capture { what, .. }) => {
            assert_eq!(what, "fuzz");
            return;
        }
        Err(e) => panic!("unexpected error: {e}"),
    };
    let cfg = Config {
        direction_cap: 2048,
        global_cap: 8192,
        idle_timeout_ns: 1_000_000_000,
        max_streams: 16,
        ..Config::default()
    };
    let mut decoder = Decoder::new();
    let mut reasm = Reassembler::new(cfg);
    let mut analyzer = Analyzer::new();
    let mut sink = common::Tiler::default();
    let mut segments = 0u64;
    while let Some(frame) = reader.next_frame().expect("reading memory cannot fail") {
        if let Some(seg) = decoder.decode(&frame) {
            assert!(seg.payload.len() <= seg.payload_len as usize);
            segments += 1;
            reasm.segment(&seg, &mut sink);
            analyzer.push(&seg);
        }
    }
    reasm.finish(&mut sink);
    sink.all_closed();
    assert_eq!(reasm.stats().held_bytes, 0);
    let d = decoder.finish();
    assert_eq!(d.frames, reader.stats().frames);
    assert_eq!(d.segments, segments);
    // Frames not accounted for are fragments held for a datagram.
    let accounted =
        d.segments + d.non_tcp + d.malformed_total() - d.malformed(Malformed::BadTcpOption);
    assert!(
        accounted <= d.frames && d.frames - accounted <= d.fragments,
        "{d:?}"
    );
    let analysed: u64 = analyzer
        .finish()
        .iter()
        .map(|r| r.client_to_server.segments + r.server_to_client.segments)
        .sum();
    assert_eq!(analysed, segments);
});
