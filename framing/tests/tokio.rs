//! The `bytes` and `tokio` decoder paths: property tests (any frames, every
//! preset and random layouts, any read boundaries) through `BytesDecoder`,
//! through tokio-util's `Framed` and through the async `FramedReader` and
//! `FramedWriter`, over an in-memory duplex pipe and over real loopback
//! `TcpStream`s; then hostile input through `Framed`.

mod common;

use bytes::{Bytes, BytesMut};
use common::{Case, case, chunking, chunks, frame, limited, presets, random_layout};
use framing::bytes::BytesDecoder;
use framing::tokio::{Codec, Decoded, FramedReader, FramedWriter, ReportingCodec};
use framing::{Config, Error, InvalidLength, Oversized};
use futures_util::{FutureExt, SinkExt, StreamExt};
use proptest::prelude::*;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Takes every frame of `case` through a `BytesDecoder`, the bytes arriving
/// in `sizes`-byte pieces. (That frames share the buffer's allocation is
/// checked by the unit tests.)
fn decode_bytes(case: &Case, sizes: &[usize]) -> Vec<Vec<u8>> {
    let mut dec = BytesDecoder::new(case.config);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks(&case.wire, sizes) {
        buf.extend_from_slice(chunk);
        while let Some(frame) = dec.decode(&mut buf).unwrap() {
            out.push(frame.to_vec());
        }
    }
    dec.finish(&buf).expect("the stream ends between frames");
    out
}

/// Writes `wire` to `w` in `sizes`-byte writes, then shuts it down.
async fn write_in_pieces(mut w: impl AsyncWrite + Unpin, wire: Vec<u8>, sizes: Vec<usize>) {
    for chunk in chunks(&wire, &sizes) {
        w.write_all(chunk).await.unwrap();
        w.flush().await.unwrap();
    }
    w.shutdown().await.unwrap();
}

/// Every frame `FramedRead` with our codec takes out of `r` until the end.
async fn read_all(r: impl AsyncRead + Unpin, config: Config) -> Vec<Vec<u8>> {
    let mut framed = FramedRead::new(r, Codec::new(config));
    let mut out = Vec::new();
    while let Some(frame) = framed.next().await {
        out.push(frame.expect("a well-formed stream").to_vec());
    }
    out
}

/// The case's frames through `FramedWrite` with our codec, as wire bytes.
async fn encode_all(case: &Case) -> Vec<u8> {
    let mut framed = FramedWrite::new(Vec::new(), Codec::new(case.config));
    for (prefix, payload) in &case.frames {
        if case.config.offset() == 0 {
            // Alternate the two item types.
            if payload.len() % 2 == 0 {
                framed.send(Bytes::from(payload.clone())).await.unwrap();
            } else {
                framed.send(&payload[..]).await.unwrap();
            }
        } else {
            framed.send((&prefix[..], &payload[..])).await.unwrap();
        }
    }
    framed.into_inner()
}

/// Every frame the async `FramedReader` takes out of `r` until the end.
async fn read_all_borrowed(r: impl AsyncRead + Unpin, config: Config) -> Vec<Vec<u8>> {
    let mut reader = FramedReader::new(r, config);
    let mut out = Vec::new();
    while let Some(frame) = reader.read_frame().await.expect("a well-formed stream") {
        out.push(frame.to_vec());
    }
    out
}

/// Through `Framed` over a duplex pipe whose buffer is smaller than most
/// frames, so that reads end at arbitrary places as well as at the writes'.
fn framed_duplex(case: &Case, sizes: &[usize], pipe: usize) -> (Vec<Vec<u8>>, Vec<u8>) {
    runtime().block_on(async {
        let (a, b) = tokio::io::duplex(pipe);
        let writer = tokio::spawn(write_in_pieces(a, case.wire.clone(), sizes.to_vec()));
        let frames = read_all(b, case.config).await;
        writer.await.unwrap();
        let (a, b) = tokio::io::duplex(pipe);
        let writer = tokio::spawn(write_in_pieces(a, case.wire.clone(), sizes.to_vec()));
        assert_eq!(
            read_all_borrowed(b, case.config).await,
            frames,
            "FramedReader"
        );
        writer.await.unwrap();
        (frames, encode_all(case).await)
    })
}

/// The case's frames through the async `FramedWriter` (layouts without an
/// offset), over a duplex pipe of `pipe` bytes, read back as wire bytes.
fn framed_writer_wire(case: &Case, pipe: usize) -> Vec<u8> {
    runtime().block_on(async {
        let (a, mut b) = tokio::io::duplex(pipe);
        let frames = case.frames.clone();
        let config = case.config;
        let writer = tokio::spawn(async move {
            let mut w = FramedWriter::new(a, config);
            for (_, payload) in &frames {
                w.write_frame(payload).await.unwrap();
            }
            w.shutdown().await.unwrap();
        });
        let mut wire = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut b, &mut wire)
            .await
            .unwrap();
        writer.await.unwrap();
        wire
    })
}

/// Through `Framed` over a real loopback TCP connection.
fn framed_tcp(case: &Case, sizes: &[usize]) -> Vec<Vec<u8>> {
    runtime().block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (client, (server, _)) = (client.unwrap(), accepted.unwrap());
        client.set_nodelay(true).unwrap();
        let writer = tokio::spawn(write_in_pieces(client, case.wire.clone(), sizes.to_vec()));
        let frames = read_all(server, case.config).await;
        writer.await.unwrap();
        frames
    })
}

/// Large payloads (over `COPY_MAX`, sent in vectored writes) and small ones
/// through the async `FramedWriter` and `FramedReader` over loopback TCP.
fn async_adapters_tcp(config: Config, lens: &[usize]) -> Vec<usize> {
    runtime().block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (client, (server, _)) = (client.unwrap(), accepted.unwrap());
        let payloads: Vec<Vec<u8>> = lens
            .iter()
            .map(|&len| (0..len).map(|i| (i * 13 + len) as u8).collect())
            .collect();
        let sent = payloads.clone();
        let writer = tokio::spawn(async move {
            let mut w = FramedWriter::new(client, config);
            for p in &sent {
                w.write_frame(p).await.unwrap();
            }
            w.shutdown().await.unwrap();
        });
        let mut reader = FramedReader::new(server, config);
        let mut got = Vec::new();
        while let Some(frame) = reader.read_frame().await.unwrap() {
            assert!(
                frame == &payloads[got.len()][..],
                "frame {} differs",
                got.len()
            );
            got.push(frame.len());
        }
        writer.await.unwrap();
        got
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn bytes_decoder_round_trips(case in prop_oneof![case(presets()), case(random_layout())], sizes in chunking()) {
        prop_assert_eq!(&decode_bytes(&case, &sizes), &case.expected);
    }

    #[test]
    fn framed_duplex_round_trips(
        case in prop_oneof![case(presets()), case(random_layout())],
        sizes in chunking(),
        pipe in prop_oneof![Just(1usize), 2usize..64, Just(64 * 1024)],
    ) {
        let (frames, wire) = framed_duplex(&case, &sizes, pipe);
        prop_assert_eq!(&frames, &case.expected);
        prop_assert_eq!(&wire, &case.wire, "FramedWrite writes what Encoder writes");
        if case.config.offset() == 0 {
            prop_assert_eq!(&framed_writer_wire(&case, pipe), &case.wire, "FramedWriter");
        }
    }
}

proptest! {
    // Each case opens a connection: fewer of them.
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn framed_tcp_round_trips(case in prop_oneof![case(presets()), case(random_layout())], sizes in chunking()) {
        prop_assert_eq!(&framed_tcp(&case, &sizes), &case.expected);
    }
}

#[test]
fn async_adapters_over_tcp_small_and_vectored() {
    let lens = [
        0usize,
        1,
        100,
        8 * 1024,
        8 * 1024 + 1,
        200_000,
        3,
        1 << 20,
        0,
    ];
    for config in [Config::u32_be(), Config::varint(), Config::python()] {
        assert_eq!(
            async_adapters_tcp(config, &lens),
            lens.to_vec(),
            "{config:?}"
        );
    }
}

/// A `read_frame` dropped while half a frame has arrived loses nothing.
#[test]
fn read_frame_is_cancel_safe() {
    runtime().block_on(async {
        let (mut a, b) = tokio::io::duplex(1024);
        let mut reader = FramedReader::new(b, Config::u32_be());
        a.write_all(b"\x00\x00\x00\x06hal").await.unwrap();
        // Reads the 7 bytes, then waits for more: dropped there.
        assert!(reader.read_frame().now_or_never().is_none());
        assert_eq!(reader.decoder().buffered(), 7);
        a.write_all(b"ves\x00\x00\x00\x01!").await.unwrap();
        drop(a);
        assert_eq!(reader.read_frame().await.unwrap(), Some(&b"halves"[..]));
        assert_eq!(reader.read_frame().await.unwrap(), Some(&b"!"[..]));
        assert_eq!(reader.read_frame().await.unwrap(), None);
    });
}

/// A full echo over loopback TCP, `Framed` on both ends, frames from empty
/// to 1 MiB (Python's long form is not needed below 2 GiB).
#[test]
fn framed_echo_over_tcp() {
    runtime().block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut framed = tokio_util::codec::Framed::new(stream, Codec::new(Config::varint()));
            while let Some(frame) = framed.next().await {
                framed.send(frame.unwrap()).await.unwrap();
            }
        });
        let stream = TcpStream::connect(addr).await.unwrap();
        let mut framed = tokio_util::codec::Framed::new(stream, Codec::new(Config::varint()));
        for len in [0usize, 1, 127, 128, 16_384, 16_385, 300_000, 1 << 20] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 31 + len) as u8).collect();
            framed.send(&payload[..]).await.unwrap();
            let echo = framed.next().await.unwrap().unwrap();
            assert_eq!(echo.len(), len);
            assert!(echo[..] == payload[..], "echo of {len} bytes differs");
        }
        drop(framed);
        server.await.unwrap();
    });
}

// --- hostile input through Framed -------------------------------------------------

/// Everything a `FramedRead` with `decoder` yields for `wire` (written in
/// 1000-byte pieces through a 1 KiB pipe, then closed), errors included, and
/// the largest read-buffer capacity seen.
fn run_framed<D>(decoder: D, wire: Vec<u8>) -> (Vec<Result<D::Item, Error>>, usize)
where
    D: tokio_util::codec::Decoder<Error = Error>,
{
    runtime().block_on(async move {
        let (a, b) = tokio::io::duplex(1024);
        let writer = tokio::spawn(write_in_pieces(a, wire, vec![1000]));
        let mut framed = FramedRead::new(b, decoder);
        let mut items = Vec::new();
        let mut peak = 0;
        while let Some(item) = framed.next().await {
            peak = peak.max(framed.read_buffer().capacity());
            items.push(item);
        }
        peak = peak.max(framed.read_buffer().capacity());
        // `Framed` ends the stream after an error, but polled again it
        // reads on: what follows must never be taken for frames.
        if let Some(Ok(_)) = framed.next().await {
            panic!("a frame after the stream ended");
        }
        writer.await.unwrap();
        (items, peak)
    })
}

fn frames_of(items: &[Result<Bytes, Error>]) -> Vec<&[u8]> {
    items
        .iter()
        .filter_map(|i| i.as_ref().ok())
        .map(|b| &b[..])
        .collect()
}

#[test]
fn oversized_with_fail_ends_the_stream_with_the_lengths() {
    let config = limited(100, Oversized::Fail);
    let mut wire = frame(config, b"first");
    wire.extend_from_slice(&101u32.to_be_bytes());
    wire.extend_from_slice(&[0; 101]);
    wire.extend_from_slice(&frame(config, b"never"));
    let (items, _) = run_framed(Codec::new(config), wire);
    assert_eq!(frames_of(&items), vec![&b"first"[..]]);
    assert_eq!(items.len(), 2, "one frame, then the error, then the end");
    let err = items[1].as_ref().unwrap_err();
    assert!(
        matches!(
            err,
            Error::FrameTooLarge {
                declared: 101,
                limit: 100
            }
        ),
        "{err}"
    );
}

/// The discarded frame is larger than the pipe and than any read: its bytes
/// are dropped as they arrive, never buffered whole.
#[test]
fn oversized_with_discard_goes_on_and_is_reported() {
    let config = limited(1000, Oversized::Discard);
    let big = 200_000usize;
    let mut wire = frame(config, b"before");
    wire.extend_from_slice(&(big as u32).to_be_bytes());
    wire.extend((0..big).map(|i| i as u8));
    wire.extend_from_slice(&frame(config, b"after"));

    let (items, peak) = run_framed(Codec::new(config), wire.clone());
    assert_eq!(frames_of(&items), vec![&b"before"[..], &b"after"[..]]);
    assert_eq!(
        items.len(),
        2,
        "the discarded frame is no item and no error"
    );
    assert!(peak <= 64 * 1024, "read buffer grew to {peak} bytes");

    let (items, _) = run_framed(ReportingCodec::new(config), wire);
    let items: Vec<Decoded> = items.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        items,
        vec![
            Decoded::Frame(Bytes::from_static(b"before")),
            Decoded::Discarded {
                declared: big as u64,
                limit: 1000
            },
            Decoded::Frame(Bytes::from_static(b"after")),
        ]
    );
}

#[test]
fn discarded_frames_are_counted_on_the_codec() {
    let config = limited(4, Oversized::Discard);
    runtime().block_on(async {
        let mut wire = frame(config, b"ok");
        wire.extend_from_slice(b"\x00\x00\x00\x05hello\x00\x00\x00\x06world!");
        wire.extend_from_slice(&frame(config, b"ok"));
        let mut framed = FramedRead::new(&wire[..], Codec::new(config));
        let mut frames = Vec::new();
        while let Some(f) = framed.next().await {
            frames.push(f.unwrap());
        }
        assert_eq!(frames, vec![Bytes::from_static(b"ok"); 2]);
        assert_eq!(framed.decoder().discarded_frames(), 2);
    });
}

#[test]
fn varint_overflow_is_an_error() {
    let mut wire = frame(Config::varint(), b"fine");
    wire.extend_from_slice(&[0xff; 9]);
    wire.push(0x02);
    let (items, _) = run_framed(Codec::new(Config::varint()), wire);
    assert_eq!(frames_of(&items), vec![&b"fine"[..]]);
    assert!(
        matches!(
            items.last().unwrap(),
            Err(Error::InvalidLength(InvalidLength::VarintOverflow))
        ),
        "{:?}",
        items.last()
    );
}

#[test]
fn eof_inside_a_frame_says_how_many_of_how_many_bytes() {
    let config = Config::u32_be();
    // Inside the body: 4 + 3 of 4 + 10 bytes.
    let mut wire = frame(config, b"whole");
    wire.extend_from_slice(b"\x00\x00\x00\x0aabc");
    let (items, _) = run_framed(Codec::new(config), wire);
    assert_eq!(frames_of(&items), vec![&b"whole"[..]]);
    let err = items.last().unwrap().as_ref().unwrap_err();
    assert!(
        matches!(
            err,
            Error::Truncated {
                expected: 14,
                received: 7
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "stream ended inside a frame: 7 of 14 bytes arrived"
    );
    // Inside the header: 2 of the 4 bytes of the length field.
    let (items, _) = run_framed(Codec::new(config), b"\x00\x00".to_vec());
    assert!(matches!(
        items[..],
        [Err(Error::Truncated {
            expected: 4,
            received: 2
        })]
    ));
}

/// A 4-byte header declaring 8 MiB followed by one byte: our read buffer
/// stays at most 64 KiB while the connection waits for the rest;
/// `LengthDelimitedCodec` reserves the whole declared length.
#[test]
fn a_lying_header_costs_at_most_64_kib() {
    runtime().block_on(async {
        let hostile = b"\x00\x80\x00\x00x";
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(hostile).await.unwrap();
        let mut ours = FramedRead::new(b, Codec::new(Config::u32_be()));
        // The bytes are there: the first poll reads them all and then waits.
        assert!(ours.next().now_or_never().is_none());
        assert_eq!(ours.read_buffer().len(), hostile.len());
        let ours_cap = ours.read_buffer().capacity();
        assert!(ours_cap <= 64 * 1024, "our buffer: {ours_cap} bytes");

        let (mut a2, b2) = tokio::io::duplex(64);
        a2.write_all(hostile).await.unwrap();
        let mut theirs = FramedRead::new(b2, LengthDelimitedCodec::new());
        assert!(theirs.next().now_or_never().is_none());
        let theirs_cap = theirs.read_buffer().capacity();
        assert!(
            theirs_cap >= 8 << 20,
            "tokio-util's buffer: {theirs_cap} bytes (the comparison in the README assumes it reserves the declared length)"
        );

        // The connection is closed: the frame is reported cut short.
        drop(a);
        match ours.next().await {
            Some(Err(Error::Truncated { expected, received })) => {
                assert_eq!((expected, received), (4 + (8 << 20), 5));
            }
            other => panic!("expected Truncated, got {other:?}"),
        }
        drop(a2);
    });
}

#[test]
fn sending_a_frame_over_the_limit_fails_and_writes_nothing() {
    runtime().block_on(async {
        let config = limited(10, Oversized::Fail);
        let mut framed = FramedWrite::new(Vec::new(), Codec::new(config));
        framed.send(&b"0123456789"[..]).await.unwrap();
        let err = framed.send(&b"0123456789a"[..]).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::FrameTooLarge {
                    declared: 11,
                    limit: 10
                }
            ),
            "{err}"
        );
        assert_eq!(framed.get_ref().len(), 14, "only the first frame went out");
        // A layout with an offset needs the prefix.
        let offset = Config::builder().offset(2).build().unwrap();
        let mut framed = FramedWrite::new(Vec::new(), Codec::new(offset));
        assert!(matches!(
            framed.send(&b"x"[..]).await,
            Err(Error::InvalidConfig(_))
        ));
        framed.send((&b"hi"[..], &b"x"[..])).await.unwrap();
        assert_eq!(framed.get_ref(), b"hi\x00\x00\x00\x01x");
    });
}
