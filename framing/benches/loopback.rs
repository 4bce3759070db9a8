//! Loopback TCP throughput: framed against raw, over real `std::net` sockets.
//!
//! ```text
//! cargo bench -p framing --bench loopback && scripts/bench-ratios
//! ```
//!
//! Each iteration moves the same 64 MiB of payload from a writer thread to
//! the benchmark thread over one connection on 127.0.0.1, in payloads of
//! 64 KiB or 1 KiB (groups `loopback/64KiB` and `loopback/1KiB`):
//!
//! - `raw`: each payload with `write_all`; the reader calls `read` into a
//!   64 KiB buffer until the byte count is reached;
//! - `framed`: each payload with `FramedWriter::write_frame` (one vectored
//!   write of header and payload); the reader takes every frame with
//!   `FramedReader::read_frame`.
//!
//! Both report `Throughput::Bytes` of payload (headers not counted), so the
//! ratio is what framing costs in useful bytes per second. Both sockets have
//! `TCP_NODELAY` set in both functions: without it, the last short segment of
//! an iteration can wait for a delayed ACK and the measurement becomes one of
//! timers. The connection and the reader's buffers live across iterations;
//! only the writer thread is spawned per iteration, the same for both.
//!
//! On Linux both threads are pinned to one CPU (the first the process may
//! use). On a small virtual machine, a writer and a reader on different CPUs
//! run either at ~5 GB/s or at ~1.2 GB/s depending on how the hypervisor
//! wakes idle vCPUs, switching every few hundred milliseconds: the spread
//! between samples was 4x, larger than any framing cost. On one CPU the
//! result is the CPU cost of moving the bytes, steady to a few percent, which
//! is what framing changes. `LOOPBACK_UNPINNED=1` measures without pinning.

mod common;

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use framing::Config;
use framing::io::{FramedReader, FramedWriter};

/// Payload bytes moved per iteration.
const TOTAL: usize = 64 * 1024 * 1024;

/// Payload sizes: label in the group ID, bytes.
const SIZES: [(&str, usize); 2] = [("64KiB", 64 * 1024), ("1KiB", 1024)];

/// The raw reader's buffer: a common choice for bulk `read` loops.
const RAW_READ_BUF: usize = 64 * 1024;

/// A connected pair over 127.0.0.1: (client, server), `TCP_NODELAY` on both.
fn connected_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    for stream in [&client, &server] {
        stream.set_nodelay(true).unwrap();
    }
    (client, server)
}

/// Reads until `total` bytes arrived; returns how many did.
fn read_raw(rx: &mut TcpStream, buf: &mut [u8], total: usize) -> usize {
    let mut got = 0;
    while got < total {
        let n = rx.read(buf).unwrap();
        assert!(n > 0, "peer closed after {got} of {total} bytes");
        black_box(&buf[..n]);
        got += n;
    }
    got
}

/// Reads `frames` frames; returns their payload bytes.
fn read_framed(rx: &mut FramedReader<TcpStream>, frames: usize) -> usize {
    let mut got = 0;
    for _ in 0..frames {
        let frame = rx.read_frame().unwrap().expect("peer closed mid-run");
        got += frame.len();
        black_box(frame);
    }
    got
}

fn loopback(c: &mut Criterion) {
    common::pin_to_one_cpu("LOOPBACK_UNPINNED");
    for (label, size) in SIZES {
        let frames = TOTAL / size;
        let payload = vec![0x5a_u8; size];
        let mut group = c.benchmark_group(format!("loopback/{label}"));
        group
            .throughput(Throughput::Bytes(TOTAL as u64))
            .sampling_mode(SamplingMode::Flat);

        group.bench_function("raw", |b| {
            let (mut tx, mut rx) = connected_pair();
            let mut buf = vec![0; RAW_READ_BUF];
            b.iter(|| {
                thread::scope(|s| {
                    s.spawn(|| {
                        for _ in 0..frames {
                            tx.write_all(&payload).unwrap();
                        }
                    });
                    assert_eq!(read_raw(&mut rx, &mut buf, TOTAL), TOTAL);
                });
            });
        });

        group.bench_function("framed", |b| {
            let (tx, rx) = connected_pair();
            let mut tx = FramedWriter::new(tx, Config::u32_be());
            let mut rx = FramedReader::new(rx, Config::u32_be());
            b.iter(|| {
                thread::scope(|s| {
                    s.spawn(|| {
                        for _ in 0..frames {
                            tx.write_frame(&payload).unwrap();
                        }
                    });
                    assert_eq!(read_framed(&mut rx, frames), TOTAL);
                });
            });
        });
        group.finish();
    }
}

/// Few, long samples: one iteration moves 64 MiB. No plots, fewer bootstrap
/// resamples: the ratios need neither.
fn config() -> Criterion {
    common::short_runs(Duration::from_secs(4), 10)
}

criterion_group! {
    name = benches;
    config = config();
    targets = loopback
}
criterion_main!(benches);
