//! Property tests: any sequence of frames, under every preset and random
//! layouts, split at arbitrary read boundaries (1-byte reads included),
//! round-trips exactly through every decoding path.

mod common;

use std::io::{self, Read};

use common::{Case, case, chunking, chunks, presets, random_layout};
use framing::Decoder;
use framing::io::FramedReader;
use proptest::prelude::*;

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
