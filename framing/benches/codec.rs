//! Codec benchmarks, ours and tokio-util's `LengthDelimitedCodec` side by side
//! in the same run, on the same 4-byte big-endian layout with the header
//! stripped (`Config::u32_be()` and `LengthDelimitedCodec::new()`).
//!
//! ```text
//! cargo bench -p framing --all-features --bench codec && scripts/bench-ratios
//! ```
//!
//! `ours_bytes` needs the `bytes` feature; without it the other functions
//! still run.
//!
//! Every group reports `Throughput::Elements(frames)`, so the functions of a
//! group compare directly in frames/s. The IDs are read by
//! `scripts/bench-ratios` and must stay as they are:
//!
//! | group                                  | functions                                            |
//! |----------------------------------------|------------------------------------------------------|
//! | `decode_prefilled/{16B,64B,1KiB,1MiB}` | `tokio`, `ours_borrowed`, `ours_owned`, `ours_bytes` |
//! | `decode_chunked/{16B,64B,1KiB,1MiB}`   | `tokio`, `ours_borrowed`, `ours_owned`, `ours_bytes` |
//! | `encode/{16B,64B}`                     | `tokio`, `ours`, `ours_header`                       |
//!
//! - `tokio`: `LengthDelimitedCodec` over its own `BytesMut`; frames are
//!   `BytesMut` splits of it.
//! - `ours_borrowed`: [`Decoder::next_frame`], frames borrowed from its buffer.
//! - `ours_owned`: [`Decoder::next_frame_owned`], each frame copied into a `Vec`.
//! - `ours_bytes`: `framing::bytes::BytesDecoder` over its own `BytesMut`,
//!   frames `Bytes` split off it: the same buffer and the same calls as
//!   `tokio`, so that this pair compares the codecs alone.
//!
//! Both sides do the same work per iteration: append the wire bytes to the
//! decoder's own buffer (one copy, timed on both sides, since a real decoder
//! must receive its bytes somewhere) and take out every frame, passing each
//! through `black_box`. Decoders and buffers live across iterations, as on a
//! long-lived connection, so what is measured includes each side's own
//! buffer management (tokio's `BytesMut` reclaiming or reallocating, our
//! compaction).

mod common;

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use framing::{Config, Decoder, Encoder};
use tokio_util::codec::{Decoder as _, Encoder as _, LengthDelimitedCodec};

/// Payload sizes of the decode groups: label in the group ID, bytes.
const DECODE_SIZES: [(&str, usize); 4] = [
    ("16B", 16),
    ("64B", 64),
    ("1KiB", 1024),
    ("1MiB", 1024 * 1024),
];

/// Payload sizes of the encode groups.
const ENCODE_SIZES: [(&str, usize); 2] = [("16B", 16), ("64B", 64)];

/// Wire bytes per iteration for frames up to 1 KiB: many frames per buffer,
/// and small enough to stay in L2 so that memory bandwidth does not hide the
/// per-frame cost.
const SMALL_FRAMES_WIRE: usize = 256 * 1024;

/// Frames per iteration for 1 MiB payloads.
const LARGE_FRAMES: usize = 4;

/// Bytes per `feed` in the chunked groups: one Ethernet TCP segment's payload.
const CHUNK: usize = 1460;

/// Frames encoded per iteration.
const ENCODE_FRAMES: usize = 1024;

/// Length of the 4-byte big-endian header of both codecs.
const HEADER: usize = 4;

/// Largest encode payload, as a static so that tokio's `Bytes` is built with
/// `from_static` and cloning it costs no reference count.
static ENCODE_PAYLOAD: [u8; 64] = [0xa5; 64];

/// How many frames one decode iteration carries.
fn frames_for(payload: usize) -> usize {
    if payload >= 1024 * 1024 {
        LARGE_FRAMES
    } else {
        SMALL_FRAMES_WIRE / (payload + HEADER)
    }
}

/// `frames` frames of `payload` bytes each, back to back on the wire.
fn wire(payload: usize, frames: usize) -> Vec<u8> {
    let enc = Encoder::new(Config::u32_be());
    let body: Vec<u8> = (0..payload).map(|i| i as u8).collect();
    let mut out = Vec::with_capacity(frames * (payload + HEADER));
    for _ in 0..frames {
        enc.encode(&body, &mut out).unwrap();
    }
    out
}

/// One decoder under test: takes received bytes, hands out every complete
/// frame to `black_box`, and says how many there were.
trait FrameSink {
    /// The function name in the benchmark ID.
    const NAME: &'static str;
    fn new() -> Self;
    fn push(&mut self, bytes: &[u8]) -> usize;
}

/// tokio-util's `LengthDelimitedCodec` over a `BytesMut` (frames are
/// zero-copy `BytesMut` splits of the read buffer).
struct Tokio {
    codec: LengthDelimitedCodec,
    buf: BytesMut,
}

impl FrameSink for Tokio {
    const NAME: &'static str = "tokio";

    fn new() -> Self {
        Tokio {
            codec: LengthDelimitedCodec::new(),
            buf: BytesMut::new(),
        }
    }

    #[inline]
    fn push(&mut self, bytes: &[u8]) -> usize {
        self.buf.extend_from_slice(bytes);
        let mut n = 0;
        while let Some(frame) = self.codec.decode(&mut self.buf).unwrap() {
            black_box(frame);
            n += 1;
        }
        n
    }
}

/// Our decoder, frames borrowed from its buffer.
struct OursBorrowed(Decoder);

impl FrameSink for OursBorrowed {
    const NAME: &'static str = "ours_borrowed";

    fn new() -> Self {
        OursBorrowed(Decoder::new(Config::u32_be()))
    }

    #[inline]
    fn push(&mut self, bytes: &[u8]) -> usize {
        self.0.feed(bytes);
        let mut n = 0;
        while let Some(frame) = self.0.next_frame().unwrap() {
            black_box(frame);
            n += 1;
        }
        n
    }
}

/// Our decoder, each frame copied into its own `Vec`.
struct OursOwned(Decoder);

impl FrameSink for OursOwned {
    const NAME: &'static str = "ours_owned";

    fn new() -> Self {
        OursOwned(Decoder::new(Config::u32_be()))
    }

    #[inline]
    fn push(&mut self, bytes: &[u8]) -> usize {
        self.0.feed(bytes);
        let mut n = 0;
        while let Some(frame) = self.0.next_frame_owned().unwrap() {
            black_box(frame);
            n += 1;
        }
        n
    }
}

/// Our `BytesDecoder` over a `BytesMut`, exactly as `Tokio` does it: the
/// received bytes appended with `extend_from_slice`, each frame a `Bytes`
/// split off the buffer.
#[cfg(feature = "bytes")]
struct OursBytes {
    decoder: framing::bytes::BytesDecoder,
    buf: BytesMut,
}

#[cfg(feature = "bytes")]
impl FrameSink for OursBytes {
    const NAME: &'static str = "ours_bytes";

    fn new() -> Self {
        OursBytes {
            decoder: framing::bytes::BytesDecoder::new(Config::u32_be()),
            buf: BytesMut::new(),
        }
    }

    #[inline]
    fn push(&mut self, bytes: &[u8]) -> usize {
        self.buf.extend_from_slice(bytes);
        let mut n = 0;
        while let Some(frame) = self.decoder.decode(&mut self.buf).unwrap() {
            black_box(frame);
            n += 1;
        }
        n
    }
}

/// How the wire bytes reach the decoder in one iteration.
#[derive(Clone, Copy)]
enum Arrival {
    /// All at once, then every frame is taken out.
    Prefilled,
    /// In `CHUNK`-byte pieces, draining complete frames after each.
    Chunked,
}

impl Arrival {
    fn group(self) -> &'static str {
        match self {
            Arrival::Prefilled => "decode_prefilled",
            Arrival::Chunked => "decode_chunked",
        }
    }

    /// Delivers `wire` to `sink`; returns the frames taken out.
    #[inline]
    fn deliver<S: FrameSink>(self, sink: &mut S, wire: &[u8]) -> usize {
        match self {
            Arrival::Prefilled => sink.push(wire),
            Arrival::Chunked => wire.chunks(CHUNK).map(|chunk| sink.push(chunk)).sum(),
        }
    }
}

/// Adds one decoder to `group`, after checking on a fresh one that it yields
/// every frame.
fn bench_decoder<S: FrameSink>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    arrival: Arrival,
    wire: &[u8],
    frames: usize,
) {
    assert_eq!(arrival.deliver(&mut S::new(), wire), frames, "{}", S::NAME);
    group.bench_function(S::NAME, |b| {
        let mut sink = S::new();
        b.iter(|| arrival.deliver(&mut sink, black_box(wire)));
    });
}

fn decode(c: &mut Criterion) {
    for arrival in [Arrival::Prefilled, Arrival::Chunked] {
        for (label, payload) in DECODE_SIZES {
            let frames = frames_for(payload);
            let wire = wire(payload, frames);
            let mut group = c.benchmark_group(format!("{}/{label}", arrival.group()));
            group.throughput(Throughput::Elements(frames as u64));
            bench_decoder::<Tokio>(&mut group, arrival, &wire, frames);
            bench_decoder::<OursBorrowed>(&mut group, arrival, &wire, frames);
            bench_decoder::<OursOwned>(&mut group, arrival, &wire, frames);
            #[cfg(feature = "bytes")]
            bench_decoder::<OursBytes>(&mut group, arrival, &wire, frames);
            group.finish();
        }
    }
}

fn encode(c: &mut Criterion) {
    for (label, payload) in ENCODE_SIZES {
        let mut group = c.benchmark_group(format!("encode/{label}"));
        group.throughput(Throughput::Elements(ENCODE_FRAMES as u64));
        let body = &ENCODE_PAYLOAD[..payload];
        let wire_len = ENCODE_FRAMES * (payload + HEADER);

        group.bench_function("tokio", |b| {
            let mut codec = LengthDelimitedCodec::new();
            let bytes = Bytes::from_static(body);
            let mut dst = BytesMut::with_capacity(wire_len);
            b.iter(|| {
                dst.clear();
                for _ in 0..ENCODE_FRAMES {
                    codec.encode(black_box(bytes.clone()), &mut dst).unwrap();
                }
                black_box(&dst);
            });
            assert_eq!(dst.len(), wire_len);
        });

        group.bench_function("ours", |b| {
            let enc = Encoder::new(Config::u32_be());
            let mut dst = Vec::with_capacity(wire_len);
            b.iter(|| {
                dst.clear();
                for _ in 0..ENCODE_FRAMES {
                    enc.encode(black_box(body), &mut dst).unwrap();
                }
                black_box(&dst);
            });
            assert_eq!(dst.len(), wire_len);
        });

        // The vectored path: only the header is produced, the payload goes
        // out untouched in a second `IoSlice`.
        group.bench_function("ours_header", |b| {
            let enc = Encoder::new(Config::u32_be());
            b.iter(|| {
                for _ in 0..ENCODE_FRAMES {
                    black_box(enc.header(black_box(payload)).unwrap());
                }
            });
        });
        group.finish();
    }
}

/// Short runs: the whole file must finish in about two minutes on a noisy
/// two-core machine. Plots and the default 100 000 bootstrap resamples cost
/// more time than the measurements; the ratios need neither.
fn config() -> Criterion {
    common::short_runs(Duration::from_secs(2), 30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = decode, encode
}
criterion_main!(benches);
