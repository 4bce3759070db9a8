//! Echo over loopback TCP through tokio-util's `Framed`: our codec against
//! `LengthDelimitedCodec`, in the same run, with the same harness.
//!
//! ```text
//! cargo bench -p framing --all-features --bench tokio_echo && scripts/bench-ratios
//! ```
//!
//! | group                   | functions        | throughput                   |
//! |-------------------------|------------------|------------------------------|
//! | `tokio_echo/64B`        | `tokio`, `ours`  | `Elements`: frames echoed    |
//! | `tokio_echo/64KiB`      | `tokio`, `ours`  | `Bytes`: payload bytes echoed|
//!
//! - `tokio`: `LengthDelimitedCodec::new()` on both ends.
//! - `ours`: `framing::tokio::Codec::new(Config::u32_be())` on both ends.
//!
//! Both are the 4-byte big-endian layout with the header stripped, so the
//! bytes on the wire are the same. `scripts/bench-ratios` reads the IDs.
//!
//! # The harness
//!
//! Everything runs on one current-thread tokio runtime: a client and a
//! server task joined by one connection on 127.0.0.1 (`TCP_NODELAY` on both
//! ends), set up once per function and living across iterations, as a
//! long-lived connection does. The server task is spawned on the runtime;
//! it runs while the benchmark drives the client with `block_on`.
//!
//! - Server: echoes each frame back. It feeds every frame that is ready
//!   into the `Framed` write buffer (which writes itself out whenever it
//!   passes `Framed`'s 8 KiB backpressure boundary) and flushes only when
//!   the stream has nothing more ready: one write answers a whole read's
//!   worth of frames, which is what a good server does.
//! - Client: keeps a window of frames in flight (`WINDOW_SMALL` = 1024 frames
//!   at 64 B, `WINDOW_LARGE` = 4 at 64 KiB), sends a new frame for each echo
//!   until an iteration's frames are all sent, and, like the server, flushes
//!   when it has nothing more to read. It polls reading and writing
//!   together, so that it never stops reading while a write waits: with a
//!   window larger than the socket buffers the two ends cannot block on
//!   each other.
//! - One iteration moves `FRAMES_SMALL` or `FRAMES_LARGE` frames there and
//!   back and waits for the last echo; the window fills and drains once per
//!   iteration. Payloads are shared `Bytes`, so sending one copies nothing
//!   before the codec; each echo is passed through `black_box`.
//!
//! Before the timed runs, one exchange on the same connection checks that
//! every echo equals, byte for byte, the frame sent in its place
//! (`PAYLOADS` distinct payloads in turn, so a lost or reordered frame is
//! seen).
//!
//! On Linux the process is pinned to one CPU (the first it may use), as in
//! `loopback.rs`: the runtime is one thread, and loopback's receive
//! processing runs on the sender's CPU, so pinning only stops the scheduler
//! from moving the thread between CPUs mid-sample, which on a small virtual
//! machine made samples spread more. `TOKIO_ECHO_UNPINNED=1` measures
//! without pinning.

mod common;

use std::fmt::Debug;
use std::future::poll_fn;
use std::hint::black_box;
use std::io;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use framing::Config;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio_util::codec::{Decoder, Encoder, Framed, LengthDelimitedCodec};

/// Small payload and its label in the group ID.
const SMALL: (&str, usize) = ("64B", 64);

/// Large payload and its label in the group ID.
const LARGE: (&str, usize) = ("64KiB", 64 * 1024);

/// Frames in flight at 64 B: 68 KiB of wire bytes, so that reads and writes
/// can fill `Framed`'s 8 KiB buffers and syscalls do not hide the per-frame
/// cost. (Measured on a 2-vCPU VM: 128 in flight gave ~2.1 M frames/s and
/// ours/tokio 1.05-1.10; 1024 gave 3.1-3.9 M frames/s.)
const WINDOW_SMALL: usize = 1024;

/// Frames in flight at 64 KiB: enough to keep both directions busy.
const WINDOW_LARGE: usize = 4;

/// Frames echoed per iteration at 64 B (16 windows).
const FRAMES_SMALL: usize = 16384;

/// Frames echoed per iteration at 64 KiB (4 MiB of payload each way).
const FRAMES_LARGE: usize = 64;

/// Distinct payloads sent in turn; prime, so that it divides no window.
const PAYLOADS: usize = 7;

/// One codec under test, used on both ends of the connection.
trait Side {
    /// The function name in the benchmark ID.
    const NAME: &'static str;
    /// What the decoder hands out.
    type Item;
    /// The codec's error, for both directions.
    type Error: From<io::Error> + Debug + Send + 'static;
    /// The codec itself.
    type Codec: Decoder<Item = Self::Item, Error = Self::Error>
        + Encoder<Bytes, Error = Self::Error>
        + Send
        + Unpin
        + 'static;
    /// A fresh codec for one end.
    fn codec() -> Self::Codec;
    /// A decoded frame as the `Bytes` the encoder takes back.
    fn into_bytes(item: Self::Item) -> Bytes;
}

/// tokio-util's `LengthDelimitedCodec`; frames come out as `BytesMut`.
struct Tokio;

impl Side for Tokio {
    const NAME: &'static str = "tokio";
    type Item = BytesMut;
    type Error = io::Error;
    type Codec = LengthDelimitedCodec;

    fn codec() -> LengthDelimitedCodec {
        LengthDelimitedCodec::new()
    }

    #[inline]
    fn into_bytes(item: BytesMut) -> Bytes {
        item.freeze()
    }
}

/// Our `framing::tokio::Codec`; frames come out as `Bytes`.
struct Ours;

impl Side for Ours {
    const NAME: &'static str = "ours";
    type Item = Bytes;
    type Error = framing::Error;
    type Codec = framing::tokio::Codec;

    fn codec() -> framing::tokio::Codec {
        framing::tokio::Codec::new(Config::u32_be())
    }

    #[inline]
    fn into_bytes(item: Bytes) -> Bytes {
        item
    }
}

/// The client's end of one connection.
type Client<S> = Framed<TcpStream, <S as Side>::Codec>;

/// Connects a client to a fresh echo server task spawned on `rt`.
fn connect<S: Side>(rt: &Runtime) -> Client<S> {
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        for stream in [&client, &server] {
            stream.set_nodelay(true).unwrap();
        }
        let server = Framed::new(server, S::codec());
        tokio::spawn(async move {
            // The client then sees the connection close and stops too.
            if let Err(e) = echo::<S>(server).await {
                panic!("{}: echo server failed: {e:?}", S::NAME);
            }
        });
        Framed::new(client, S::codec())
    })
}

/// Echoes every frame until the client closes. Returns `Ok` at a clean end.
///
/// Frames are fed as they are decoded; the write buffer is flushed when no
/// further frame is ready, and reading stops while a write is blocked
/// (`poll_ready` pending), which is the server's backpressure.
async fn echo<S: Side>(mut framed: Framed<TcpStream, S::Codec>) -> Result<(), S::Error> {
    poll_fn(|cx| {
        loop {
            if framed.poll_ready_unpin(cx)?.is_pending() {
                return Poll::Pending;
            }
            match framed.poll_next_unpin(cx) {
                Poll::Ready(Some(frame)) => framed.start_send_unpin(S::into_bytes(frame?))?,
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => {
                    // Nothing more to read now: answer what was read so far.
                    // When the flush is done the read waker is the one left.
                    let _ = framed.poll_flush_unpin(cx)?;
                    return Poll::Pending;
                }
            }
        }
    })
    .await
}

/// Sends `frames` frames, `payloads[i % PAYLOADS]` as frame `i`, with at
/// most `window` unanswered, and takes every echo; with `check`, compares
/// each echo with the frame sent in its place. Returns the echoes taken.
///
/// Reading and writing are polled together: a write that has to wait never
/// keeps the client from reading echoes, so the server is never left blocked
/// on a full socket.
async fn exchange<S: Side>(
    client: &mut Client<S>,
    payloads: &[Bytes],
    frames: usize,
    window: usize,
    check: bool,
) -> usize {
    let (mut sent, mut received, mut unflushed) = (0, 0, false);
    poll_fn(|cx| {
        loop {
            let mut progress = false;
            while sent < frames && sent - received < window {
                match client.poll_ready_unpin(cx) {
                    Poll::Ready(ready) => ready.expect("client write failed"),
                    Poll::Pending => break,
                }
                let payload = payloads[sent % payloads.len()].clone();
                client
                    .start_send_unpin(payload)
                    .expect("client encode failed");
                sent += 1;
                unflushed = true;
                progress = true;
            }
            match client.poll_next_unpin(cx) {
                Poll::Ready(Some(frame)) => {
                    let frame = S::into_bytes(frame.expect("client read failed"));
                    if check {
                        assert_eq!(
                            frame,
                            payloads[received % payloads.len()],
                            "{}: echo {received} differs from the frame sent",
                            S::NAME
                        );
                    }
                    black_box(frame);
                    received += 1;
                    if received == frames {
                        return Poll::Ready(received);
                    }
                    progress = true;
                }
                Poll::Ready(None) => panic!(
                    "{}: server closed after {received} of {frames} echoes",
                    S::NAME
                ),
                Poll::Pending => {
                    // Nothing more to read now: send what was fed so far.
                    if unflushed {
                        if let Poll::Ready(done) = client.poll_flush_unpin(cx) {
                            done.expect("client flush failed");
                            unflushed = false;
                        }
                    }
                }
            }
            if !progress {
                return Poll::Pending;
            }
        }
    })
    .await
}

/// `PAYLOADS` payloads of `size` bytes, each with its own byte pattern.
fn payloads(size: usize) -> Vec<Bytes> {
    (0..PAYLOADS)
        .map(|p| {
            let body: Vec<u8> = (0..size).map(|i| (i * 31 + p * 101) as u8).collect();
            Bytes::from(body)
        })
        .collect()
}

/// Adds one codec to `group`: connects, checks one exchange, then times
/// `iters` exchanges per sample on the same connection.
fn bench_side<S: Side>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    payloads: &[Bytes],
    frames: usize,
    window: usize,
) {
    let mut client = connect::<S>(rt);
    let checked = rt.block_on(exchange::<S>(&mut client, payloads, frames, window, true));
    assert_eq!(checked, frames, "{}", S::NAME);
    group.bench_function(S::NAME, |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    exchange::<S>(&mut client, payloads, frames, window, false).await;
                }
                start.elapsed()
            })
        });
    });
}

/// The `tokio_echo` groups.
fn tokio_echo(c: &mut Criterion) {
    common::pin_to_one_cpu("TOKIO_ECHO_UNPINNED");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    for ((label, size), frames, window, throughput) in [
        (
            SMALL,
            FRAMES_SMALL,
            WINDOW_SMALL,
            Throughput::Elements(FRAMES_SMALL as u64),
        ),
        (
            LARGE,
            FRAMES_LARGE,
            WINDOW_LARGE,
            Throughput::Bytes((FRAMES_LARGE * LARGE.1) as u64),
        ),
    ] {
        let payloads = payloads(size);
        let mut group = c.benchmark_group(format!("tokio_echo/{label}"));
        group
            .throughput(throughput)
            .sampling_mode(SamplingMode::Flat);
        bench_side::<Tokio>(&mut group, &rt, &payloads, frames, window);
        bench_side::<Ours>(&mut group, &rt, &payloads, frames, window);
        group.finish();
    }
}

/// Short runs, as in `codec.rs`: the file takes well under two minutes.
/// No plots, fewer bootstrap resamples: the ratios need neither.
fn config() -> Criterion {
    common::short_runs(Duration::from_secs(3), 30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = tokio_echo
}
criterion_main!(benches);
