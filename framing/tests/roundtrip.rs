//! Property tests: any sequence of frames, under every preset and random
//! layouts, split at arbitrary read boundaries (1-byte reads included),
//! round-trips exactly through every decoding path.

use std::io::{self, Read};

use framing::io::FramedReader;
use framing::{Config, Decoder, Encoder, Endian, LengthField, Strip};
use proptest::prelude::*;

/// A layout and frames that fit it, with the wire image and what decoding
/// must give back.
#[derive(Debug, Clone)]
struct Case {
    config: Config,
    wire: Vec<u8>,
    expected: Vec<Vec<u8>>,
}

fn presets() -> impl Strategy<Value = Config> {
    prop_oneof![
        Just(Config::u32_be()),
        Just(Config::u16_be()),
        Just(Config::varint()),
        Just(Config::python()),
    ]
}

fn random_layout() -> impl Strategy<Value = Config> {
    let field = prop_oneof![
        (1u8..=8, any::<bool>()).prop_map(|(width, big)| LengthField::Fixed {
            width,
            endian: if big { Endian::Big } else { Endian::Little },
        }),
        Just(LengthField::Varint),
    ];
    (
        field,
        0usize..4,
        -8i64..=8,
        any::<bool>(),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(field, offset, adjustment, custom_strip, strip_pick)| {
            let min_field = match field {
                LengthField::Fixed { width, .. } => width as usize,
                _ => 1,
            };
            let mut b = Config::builder()
                .length_field(field)
                .offset(offset)
                .adjustment(adjustment);
            if custom_strip {
                b = b.strip(strip_pick.index(offset + min_field + 1));
            }
            b.build().expect("generated layouts are valid")
        })
}

/// Largest payload the layout's field can express, capped for speed.
fn max_payload(config: &Config) -> usize {
    let cap = 600usize;
    match config.length_field() {
        LengthField::Fixed { width, .. } if width < 2 => {
            let field_max = (1i64 << (8 * width)) - 1;
            (field_max + config.adjustment()).clamp(0, cap as i64) as usize
        }
        _ => cap,
    }
}

fn case(config: impl Strategy<Value = Config>) -> impl Strategy<Value = Case> {
    config.prop_flat_map(|config| {
        let min = config.adjustment().max(0) as usize;
        let max = max_payload(&config).max(min);
        let frame = (
            prop::collection::vec(any::<u8>(), config.offset()),
            prop::collection::vec(any::<u8>(), min..=max),
        );
        prop::collection::vec(frame, 0..12).prop_map(move |frames| {
            let enc = Encoder::new(config);
            let mut wire = Vec::new();
            let mut expected = Vec::new();
            for (prefix, payload) in frames {
                let start = wire.len();
                enc.encode_with_prefix(&prefix, &payload, &mut wire)
                    .expect("payload fits the layout");
                let strip = match config.strip() {
                    Strip::Header => wire.len() - start - payload.len(),
                    Strip::Bytes(n) => n,
                };
                expected.push(wire[start + strip..].to_vec());
            }
            Case {
                config,
                wire,
                expected,
            }
        })
    })
}

/// Read sizes: all 1-byte reads, or random sizes including 1.
fn chunking() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        Just(vec![1]),
        prop::collection::vec(1usize..64, 1..16),
        prop::collection::vec(1usize..5000, 1..4),
    ]
}

fn chunks<'a>(wire: &'a [u8], sizes: &'a [usize]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut at = 0;
    let mut i = 0;
    std::iter::from_fn(move || {
        if at >= wire.len() {
            return None;
        }
        let n = sizes[i % sizes.len()].min(wire.len() - at);
        i += 1;
        at += n;
        Some(&wire[at - n..at])
    })
}

/// Feeds by copying and by reading into the spare buffer, alternately, and
/// takes frames borrowed and owned, alternately.
fn decode_chunked(case: &Case, sizes: &[usize]) -> Vec<Vec<u8>> {
    let mut dec = Decoder::new(case.config);
    let mut out = Vec::new();
    for (i, chunk) in chunks(&case.wire, sizes).enumerate() {
        if i % 2 == 0 {
            dec.feed(chunk);
        } else {
            dec.read_buf()[..chunk.len()].copy_from_slice(chunk);
            dec.commit(chunk.len());
        }
        loop {
            let frame = if out.len() % 2 == 0 {
                dec.next_frame().unwrap().map(<[u8]>::to_vec)
            } else {
                dec.next_frame_owned().unwrap()
            };
            match frame {
                Some(f) => out.push(f),
                None => break,
            }
        }
    }
    dec.finish().expect("the stream ends between frames");
    out
}

/// A reader that hands out the wire in the given read sizes.
struct Chunked<'a> {
    wire: &'a [u8],
    sizes: &'a [usize],
    i: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.sizes[self.i % self.sizes.len()]
            .min(buf.len())
            .min(self.wire.len());
        self.i += 1;
        buf[..n].copy_from_slice(&self.wire[..n]);
        self.wire = &self.wire[n..];
        Ok(n)
    }
}

fn decode_reader(case: &Case, sizes: &[usize]) -> Vec<Vec<u8>> {
    let mut reader = FramedReader::new(
        Chunked {
            wire: &case.wire,
            sizes,
            i: 0,
        },
        case.config,
    );
    let mut out = Vec::new();
    while let Some(f) = reader.read_frame().unwrap() {
        out.push(f.to_vec());
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn presets_round_trip(case in case(presets()), sizes in chunking()) {
        prop_assert_eq!(&decode_chunked(&case, &sizes), &case.expected);
        prop_assert_eq!(&decode_reader(&case, &sizes), &case.expected);
    }

    #[test]
    fn random_layouts_round_trip(case in case(random_layout()), sizes in chunking()) {
        prop_assert_eq!(&decode_chunked(&case, &sizes), &case.expected);
        prop_assert_eq!(&decode_reader(&case, &sizes), &case.expected);
    }

    /// A stream cut anywhere inside a frame ends with `Truncated`, never a
    /// frame that was not sent.
    #[test]
    fn cut_streams_are_truncated(case in case(presets()), cut in any::<prop::sample::Index>()) {
        prop_assume!(!case.wire.is_empty());
        let cut = cut.index(case.wire.len());
        let mut dec = Decoder::new(case.config);
        dec.feed(&case.wire[..cut]);
        let mut got = Vec::new();
        while let Some(f) = dec.next_frame().unwrap() {
            got.push(f.to_vec());
        }
        prop_assert_eq!(&got[..], &case.expected[..got.len()]);
        match dec.finish() {
            Ok(()) => prop_assert_eq!(dec.buffered(), 0),
            Err(framing::Error::Truncated { expected, received }) => {
                prop_assert!(received < expected);
                prop_assert_eq!(received, dec.buffered() as u64);
            }
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }
}
