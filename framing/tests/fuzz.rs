//! Proptest-driven fuzzing of the decoder (the same property as the
//! cargo-fuzz target in `framing/fuzz`): arbitrary bytes under arbitrary
//! layouts never panic, never hold more memory than the bytes received
//! justify, and give the same frames and the same first error whatever the
//! read boundaries. With the `bytes` feature, `BytesDecoder` must give the
//! same events as `Decoder` on every input.

use framing::codec::READ_CHUNK;
use framing::{Config, Decoder, Endian, Error, LengthField, Oversized};
use proptest::prelude::*;

fn layout() -> impl Strategy<Value = Config> {
    let field = prop_oneof![
        (1u8..=8, any::<bool>()).prop_map(|(width, big)| LengthField::Fixed {
            width,
            endian: if big { Endian::Big } else { Endian::Little },
        }),
        Just(LengthField::Varint),
        Just(LengthField::Python),
    ];
    (
        field,
        0usize..3,
        -6i64..6,
        0usize..64,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(field, offset, adjustment, max, discard, header_strip)| {
            let mut b = Config::builder()
                .length_field(field)
                .max_frame_len(max)
                .oversized(if discard {
                    Oversized::Discard
                } else {
                    Oversized::Fail
                });
            if field != LengthField::Python {
                b = b.offset(offset).adjustment(adjustment);
                if !header_strip {
                    b = b.strip(offset);
                }
            }
            b.build().unwrap()
        })
}

/// What a decoder made of a stream: frames and non-fatal reports in order,
/// then how it ended.
#[derive(Debug, PartialEq)]
enum Event {
    Frame(Vec<u8>),
    Discarded(u64),
    Fatal(String),
    End(Option<String>),
}

/// What to do after one decoder call.
enum Next {
    /// Call again: there may be more in what was received.
    Call,
    /// Feed the next read.
    Read,
    /// The stream has ended with a fatal error.
    Over,
}

/// Records the result of one decoder call, checking the frame bound and
/// that only fatal errors end the stream.
fn record(events: &mut Vec<Event>, config: Config, step: Result<Option<&[u8]>, Error>) -> Next {
    match step {
        Ok(Some(f)) => {
            assert!(f.len() <= config.max_frame_len());
            events.push(Event::Frame(f.to_vec()));
            Next::Call
        }
        Ok(None) => Next::Read,
        Err(Error::Discarded { declared, .. }) => {
            events.push(Event::Discarded(declared));
            Next::Call
        }
        Err(e) => {
            assert!(e.is_fatal());
            events.push(Event::Fatal(e.to_string()));
            Next::Over
        }
    }
}

fn run(config: Config, bytes: &[u8], read: usize) -> Vec<Event> {
    let mut dec = Decoder::new(config);
    let mut events = Vec::new();
    let mut received = 0;
    for chunk in bytes.chunks(read.max(1)) {
        dec.feed(chunk);
        received += chunk.len();
        assert!(
            dec.capacity() <= 2 * received + READ_CHUNK,
            "capacity {} after {received} bytes",
            dec.capacity()
        );
        loop {
            match record(&mut events, config, dec.next_frame()) {
                Next::Call => {}
                Next::Read => break,
                Next::Over => return events,
            }
        }
    }
    events.push(Event::End(dec.finish().err().map(|e| e.to_string())));
    events
}

/// [`run`] through `BytesDecoder` over a `BytesMut` read buffer.
#[cfg(feature = "bytes")]
fn run_bytes(config: Config, bytes: &[u8], read: usize) -> Vec<Event> {
    use framing::codec::MAX_READ_CHUNK;
    let mut dec = framing::bytes::BytesDecoder::new(config);
    let mut buf = bytes::BytesMut::new();
    let mut events = Vec::new();
    let mut received = 0;
    for chunk in bytes.chunks(read.max(1)) {
        buf.extend_from_slice(chunk);
        received += chunk.len();
        loop {
            let step = dec.decode(&mut buf);
            assert!(
                buf.capacity() <= 2 * received + MAX_READ_CHUNK,
                "capacity {} after {received} bytes",
                buf.capacity()
            );
            let next = match step {
                Ok(f) => record(&mut events, config, Ok(f.as_deref())),
                Err(e) => record(&mut events, config, Err(e)),
            };
            match next {
                Next::Call => {}
                Next::Read => break,
                Next::Over => return events,
            }
        }
    }
    events.push(Event::End(dec.finish(&buf).err().map(|e| e.to_string())));
    events
}

/// The same events through every decoder there is.
fn check_decoders_agree(config: Config, bytes: &[u8], whole: &[Event], read: usize) {
    #[cfg(feature = "bytes")]
    {
        assert_eq!(
            whole,
            run_bytes(config, bytes, bytes.len()),
            "BytesDecoder, one read"
        );
        assert_eq!(
            whole,
            run_bytes(config, bytes, read),
            "BytesDecoder, {read}-byte reads"
        );
    }
    let _ = (config, bytes, whole, read);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes(config in layout(), bytes in prop::collection::vec(any::<u8>(), 0..400), read in 1usize..50) {
        let whole = run(config, &bytes, bytes.len());
        let pieces = run(config, &bytes, read);
        let ones = run(config, &bytes, 1);
        prop_assert_eq!(&whole, &pieces);
        prop_assert_eq!(&whole, &ones);
        check_decoders_agree(config, &bytes, &whole, read);
    }

    /// Bytes that start like frames of the layout, so that deep paths
    /// (discard across reads, strip, adjustment) are reached often.
    #[test]
    fn near_valid_bytes(config in layout(), lens in prop::collection::vec(0u8..80, 1..8), fill in any::<u8>(), read in 1usize..20) {
        let mut bytes = Vec::new();
        for len in lens {
            bytes.extend(std::iter::repeat_n(0u8, config.offset()));
            match config.length_field() {
                LengthField::Fixed { width, endian: Endian::Big } => {
                    bytes.extend(std::iter::repeat_n(0, width as usize - 1));
                    bytes.push(len);
                }
                LengthField::Fixed { width, endian: Endian::Little } => {
                    bytes.push(len);
                    bytes.extend(std::iter::repeat_n(0, width as usize - 1));
                }
                LengthField::Varint => bytes.push(len),
                LengthField::Python => bytes.extend_from_slice(&[0, 0, 0, len]),
            }
            bytes.extend(std::iter::repeat_n(fill, len as usize));
        }
        let whole = run(config, &bytes, bytes.len());
        prop_assert_eq!(&whole, &run(config, &bytes, read));
        prop_assert_eq!(&whole, &run(config, &bytes, 1));
        check_decoders_agree(config, &bytes, &whole, read);
    }
}
