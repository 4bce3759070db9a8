//! What the property tests share: layouts (presets and random ones), frames
//! that fit them with their wire image, and read boundaries.

// Each test file uses its own subset.
#![allow(dead_code)]

use framing::{Config, Encoder, Endian, LengthField, Oversized, Strip};
use proptest::prelude::*;

/// A layout and frames that fit it, with the wire image and what decoding
/// must give back.
#[derive(Debug, Clone)]
pub(crate) struct Case {
    /// The layout.
    pub(crate) config: Config,
    /// The frames as sent: the `offset` bytes before the length field, and
    /// the payload.
    pub(crate) frames: Vec<(Vec<u8>, Vec<u8>)>,
    /// Every frame encoded, back to back.
    pub(crate) wire: Vec<u8>,
    /// What decoding must hand out, frame by frame.
    pub(crate) expected: Vec<Vec<u8>>,
}

pub(crate) fn presets() -> impl Strategy<Value = Config> {
    prop_oneof![
        Just(Config::u32_be()),
        Just(Config::u16_be()),
        Just(Config::varint()),
        Just(Config::python()),
    ]
}

pub(crate) fn random_layout() -> impl Strategy<Value = Config> {
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

pub(crate) fn case(config: impl Strategy<Value = Config>) -> impl Strategy<Value = Case> {
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
            for (prefix, payload) in &frames {
                let start = wire.len();
                enc.encode_with_prefix(prefix, payload, &mut wire)
                    .expect("payload fits the layout");
                let strip = match config.strip() {
                    Strip::Header => wire.len() - start - payload.len(),
                    Strip::Bytes(n) => n,
                };
                expected.push(wire[start + strip..].to_vec());
            }
            Case {
                config,
                frames,
                wire,
                expected,
            }
        })
    })
}

/// Read sizes: all 1-byte reads, or random sizes including 1.
pub(crate) fn chunking() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        Just(vec![1]),
        prop::collection::vec(1usize..64, 1..16),
        prop::collection::vec(1usize..5000, 1..4),
    ]
}

pub(crate) fn chunks<'a>(
    wire: &'a [u8],
    sizes: &'a [usize],
) -> impl Iterator<Item = &'a [u8]> + 'a {
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

/// The default layout with this limit and oversize policy.
pub(crate) fn limited(max: usize, oversized: Oversized) -> Config {
    Config::builder()
        .max_frame_len(max)
        .oversized(oversized)
        .build()
        .unwrap()
}

/// One frame's wire bytes (a layout without an offset).
pub(crate) fn frame(config: Config, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    Encoder::new(config).encode(payload, &mut out).unwrap();
    out
}
