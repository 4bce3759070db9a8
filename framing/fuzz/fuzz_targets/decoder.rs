//! Fuzzes the decoder: the first bytes choose a layout and a read size, the
//! rest is the stream. Decoding must never panic, never hold more memory than
//! the received bytes justify, and give the same frames whatever the read
//! boundaries; `BytesDecoder` must give what `Decoder` gives. Run:
//! `cargo fuzz run decoder` from `framing/`.
#![no_main]

use bytes::BytesMut;
use framing::bytes::BytesDecoder;
use framing::codec::{MAX_READ_CHUNK, READ_CHUNK};
use framing::{Config, Decoder, Endian, Error, LengthField, Oversized};
use libfuzzer_sys::fuzz_target;

fn layout(b: &[u8; 4]) -> Option<Config> {
    let field = match b[0] % 10 {
        0 => LengthField::Varint,
        1 => LengthField::Python,
        w => LengthField::Fixed {
            width: w - 1,
            endian: if b[1] & 1 == 0 {
                Endian::Big
            } else {
                Endian::Little
            },
        },
    };
    let mut builder = Config::builder()
        .length_field(field)
        .max_frame_len(usize::from(b[2]) * 4)
        .oversized(if b[1] & 2 == 0 {
            Oversized::Fail
        } else {
            Oversized::Discard
        });
    if field != LengthField::Python {
        builder = builder
            .offset(usize::from(b[1] >> 6))
            .adjustment(i64::from(b[3] as i8 / 16));
    }
    builder.build().ok()
}

fn decode(config: Config, bytes: &[u8], read: usize) -> Vec<Result<Vec<u8>, String>> {
    let mut dec = Decoder::new(config);
    let mut out = Vec::new();
    let mut received = 0;
    for chunk in bytes.chunks(read) {
        dec.feed(chunk);
        received += chunk.len();
        assert!(dec.capacity() <= 2 * received + READ_CHUNK);
        loop {
            match dec.next_frame() {
                Ok(Some(f)) => out.push(Ok(f.to_vec())),
                Ok(None) => break,
                Err(e @ Error::Discarded { .. }) => out.push(Err(e.to_string())),
                Err(e) => {
                    out.push(Err(e.to_string()));
                    return out;
                }
            }
        }
    }
    out.push(dec.finish().map(|()| Vec::new()).map_err(|e| e.to_string()));
    out
}

/// [`decode`] through `BytesDecoder` over a `BytesMut`.
fn decode_bytes(config: Config, bytes: &[u8], read: usize) -> Vec<Result<Vec<u8>, String>> {
    let mut dec = BytesDecoder::new(config);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut received = 0;
    for chunk in bytes.chunks(read) {
        buf.extend_from_slice(chunk);
        received += chunk.len();
        loop {
            let step = dec.decode(&mut buf);
            assert!(buf.capacity() <= 2 * received + MAX_READ_CHUNK);
            match step {
                Ok(Some(f)) => out.push(Ok(f.to_vec())),
                Ok(None) => break,
                Err(e @ Error::Discarded { .. }) => out.push(Err(e.to_string())),
                Err(e) => {
                    out.push(Err(e.to_string()));
                    return out;
                }
            }
        }
    }
    out.push(
        dec.finish(&buf)
            .map(|()| Vec::new())
            .map_err(|e| e.to_string()),
    );
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((head, stream)) = data.split_first_chunk::<5>() else {
        return;
    };
    let Some(config) = layout(&[head[0], head[1], head[2], head[3]]) else {
        return;
    };
    let read = usize::from(head[4] % 64) + 1;
    let whole = decode(config, stream, stream.len().max(1));
    assert_eq!(whole, decode(config, stream, read));
    assert_eq!(whole, decode_bytes(config, stream, read));
});
