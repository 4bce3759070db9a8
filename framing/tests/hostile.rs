//! Hostile input: lengths at and over the limit, varint overflow, adjustment
//! underflow, EOF inside header and body, discard mode followed by good
//! frames, and the memory bound against a header that lies.

mod common;

use common::{frame, limited};
use framing::io::FramedReader;
use framing::{Config, Decoder, Encoder, Error, InvalidLength, Oversized};

#[test]
fn maximum_length_passes_one_more_fails() {
    let config = limited(100, Oversized::Fail);
    let mut dec = Decoder::new(config);
    dec.feed(&frame(config, &[7; 100]));
    assert_eq!(dec.next_frame().unwrap().unwrap().len(), 100);

    dec.feed(&101u32.to_be_bytes());
    let err = dec.next_frame().unwrap_err();
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
    assert_eq!(
        err.to_string(),
        "frame of 101 bytes exceeds the maximum frame length of 100 bytes"
    );
    assert!(err.is_fatal());
    // The stream stays ended, even if good bytes follow.
    dec.feed(&frame(config, b"ok"));
    assert!(matches!(dec.next_frame(), Err(Error::FrameTooLarge { .. })));
    assert!(Encoder::new(config).header(101).is_err());
}

#[test]
fn largest_declared_length_is_rejected_without_overflow() {
    for config in [
        Config::builder().width(8).build().unwrap(),
        Config::builder()
            .width(8)
            .adjustment(1 << 40)
            .build()
            .unwrap(),
        Config::varint(),
    ] {
        let mut dec = Decoder::new(config);
        if config == Config::varint() {
            dec.feed(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        } else {
            dec.feed(&[0xff; 8]);
        }
        let err = dec.next_frame().unwrap_err();
        assert!(
            matches!(err, Error::FrameTooLarge { limit, .. } if limit == 8 << 20),
            "{err}"
        );
    }
}

#[test]
fn varint_overflow() {
    let mut dec = Decoder::new(Config::varint());
    dec.feed(&[0x80; 11]);
    assert!(matches!(
        dec.next_frame(),
        Err(Error::InvalidLength(InvalidLength::VarintOverflow))
    ));
    // Fed one byte at a time, the overflow is seen at the tenth byte.
    let mut dec = Decoder::new(Config::varint());
    for i in 0..9 {
        dec.feed(&[0xff]);
        assert!(dec.next_frame().unwrap().is_none(), "byte {i}");
    }
    dec.feed(&[0x7f]);
    assert!(matches!(
        dec.next_frame(),
        Err(Error::InvalidLength(InvalidLength::VarintOverflow))
    ));
}

#[test]
fn adjustment_underflow() {
    // Length counts the 4-byte header; a value under 4 cannot be a frame.
    let config = Config::builder().adjustment(-4).build().unwrap();
    let mut dec = Decoder::new(config);
    dec.feed(&[0, 0, 0, 3]);
    let err = dec.next_frame().unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidLength(InvalidLength::NegativeAfterAdjustment {
                value: 3,
                adjustment: -4
            })
        ),
        "{err}"
    );
    // Encoding a payload shorter than a positive adjustment fails the same way.
    let config = Config::builder().adjustment(8).build().unwrap();
    assert!(matches!(
        Encoder::new(config).header(3),
        Err(Error::InvalidLength(
            InvalidLength::NegativeAfterAdjustment { .. }
        ))
    ));
}

#[test]
fn strip_longer_than_frame() {
    let config = Config::builder().strip(10).build().unwrap();
    let mut dec = Decoder::new(config);
    dec.feed(b"\x00\x00\x00\x02ab");
    assert!(matches!(
        dec.next_frame(),
        Err(Error::InvalidLength(InvalidLength::ShorterThanStrip {
            frame: 6,
            strip: 10
        }))
    ));
}

#[test]
fn eof_inside_header_and_body() {
    let cases: &[(&[u8], u64, u64)] = &[
        (b"\x00", 4, 1),
        (b"\x00\x00\x00", 4, 3),
        (b"\x00\x00\x00\x05he", 9, 6),
        (b"\x00\x00\x00\x01a\x00\x00\x00\x05hell", 9, 8),
    ];
    for (wire, expected, received) in cases {
        let mut reader = FramedReader::new(*wire, Config::u32_be());
        let err = loop {
            match reader.read_frame() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("{wire:?} ended cleanly"),
                Err(e) => break e,
            }
        };
        match err {
            Error::Truncated {
                expected: e,
                received: r,
            } => assert_eq!((e, r), (*expected, *received), "{wire:?}"),
            other => panic!("{wire:?}: {other}"),
        }
    }
    let err = FramedReader::new(&b"\x00\x00\x00\x05he"[..], Config::u32_be())
        .read_frame()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "stream ended inside a frame: 6 of 9 bytes arrived"
    );
}

#[test]
fn discard_then_good_frames_across_reads() {
    let config = limited(16, Oversized::Discard);
    let mut wire = frame(config, b"first");
    wire.extend_from_slice(&1000u32.to_be_bytes());
    wire.extend_from_slice(&[0xee; 1000]);
    wire.extend_from_slice(&frame(config, b"second"));
    wire.extend_from_slice(&20u32.to_be_bytes());
    wire.extend_from_slice(&[0xdd; 20]);
    wire.extend_from_slice(&frame(config, b""));
    wire.extend_from_slice(&frame(config, b"third"));

    for read_size in [1, 3, 7, 100, 4096] {
        let mut dec = Decoder::new(config);
        let mut frames = Vec::new();
        let mut discarded = Vec::new();
        for chunk in wire.chunks(read_size) {
            dec.feed(chunk);
            loop {
                match dec.next_frame() {
                    Ok(Some(f)) => frames.push(f.to_vec()),
                    Ok(None) => break,
                    Err(Error::Discarded { declared, limit }) => {
                        assert_eq!(limit, 16);
                        discarded.push(declared);
                    }
                    Err(e) => panic!("read size {read_size}: {e}"),
                }
            }
            // Skipped bytes are never held.
            assert!(dec.buffered() < 30, "holds {} bytes", dec.buffered());
        }
        dec.finish().unwrap();
        assert_eq!(
            frames,
            [&b"first"[..], b"second", b"", b"third"],
            "read size {read_size}"
        );
        assert_eq!(discarded, [1000, 20]);
        assert_eq!(dec.discarded_frames(), 2);
    }
}

#[test]
fn eof_while_discarding_is_truncated() {
    let config = limited(16, Oversized::Discard);
    let mut dec = Decoder::new(config);
    dec.feed(&100u32.to_be_bytes());
    dec.feed(&[0; 30]);
    assert!(matches!(
        dec.next_frame(),
        Err(Error::Discarded { declared: 100, .. })
    ));
    assert!(matches!(
        dec.finish(),
        Err(Error::Truncated {
            expected: 104,
            received: 34
        })
    ));
}

#[test]
fn python_negative_header_is_refused() {
    for header in [0x8000_0000u32, 0xdead_beef, 0xffff_fffe] {
        let mut dec = Decoder::new(Config::python());
        dec.feed(&header.to_be_bytes());
        match dec.next_frame() {
            Err(Error::InvalidLength(InvalidLength::PythonNegative { value })) => {
                assert_eq!(value, header);
            }
            other => panic!("{header:#x}: {other:?}"),
        }
    }
}

/// A 4-byte header declaring 8 MiB, then one byte: the decoder must not
/// reserve the declared length.
#[test]
fn lying_header_reserves_nothing() {
    const BOUND: usize = 64 * 1024;
    let mut wire = (8u32 << 20).to_be_bytes().to_vec();
    wire.push(0xaa);

    let mut dec = Decoder::new(Config::u32_be());
    dec.feed(&wire);
    assert!(dec.next_frame().unwrap().is_none());
    assert!(dec.capacity() <= BOUND, "feed: capacity {}", dec.capacity());

    let mut dec = Decoder::new(Config::u32_be());
    let buf = dec.read_buf();
    buf[..wire.len()].copy_from_slice(&wire);
    dec.commit(wire.len());
    assert!(dec.next_frame().unwrap().is_none());
    assert!(
        dec.capacity() <= BOUND,
        "read_buf: capacity {}",
        dec.capacity()
    );

    let mut reader = FramedReader::new(&wire[..], Config::u32_be());
    assert!(matches!(
        reader.read_frame(),
        Err(Error::Truncated { expected, received: 5 }) if expected == (8 << 20) + 4
    ));
    assert!(reader.decoder().capacity() <= BOUND);
}

/// While a large frame trickles in, capacity stays within twice what arrived
/// (plus one read chunk).
#[test]
fn buffer_grows_only_with_received_bytes() {
    let mut dec = Decoder::new(Config::u32_be());
    dec.feed(&(8u32 << 20).to_be_bytes());
    let mut received = 4;
    for _ in 0..2000 {
        dec.feed(&[0; 1460]);
        received += 1460;
        assert!(dec.next_frame().unwrap().is_none());
        assert!(dec.capacity() <= 2 * received + framing::codec::READ_CHUNK);
    }
}
