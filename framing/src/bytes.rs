//! Frames as [`Bytes`] without copying (feature `bytes`).
//!
//! [`BytesDecoder`] finds frames in a [`BytesMut`] the caller reads into,
//! the way a tokio-util decoder does, and hands each one out as a `Bytes`
//! split off the buffer's allocation: no copy however large the frame, and
//! the frame can be kept, cloned or sent to another thread while the buffer
//! goes on receiving. [`Encoder::encode_bytes_mut`] writes a frame into a
//! `BytesMut`.
//!
//! The buffer still grows only with bytes received: for a frame whose header
//! has arrived, the decoder reserves room for the rest of it a doubling at a
//! time (at most twice what is buffered, or [`MAX_READ_CHUNK`] if more),
//! never the whole declared length at once. A 4-byte header declaring 8 MiB
//! followed by one byte costs at most 64 KiB. Memory the buffer already
//! owns (grown by an earlier large frame, and no longer shared with the
//! frames split off it) is taken back for a whole frame at once.
//!
//! ```
//! use bytes::{BufMut, BytesMut};
//! use framing::Config;
//! use framing::bytes::BytesDecoder;
//!
//! let mut dec = BytesDecoder::new(Config::u32_be());
//! let mut buf = BytesMut::new();
//! buf.put_slice(b"\x00\x00\x00\x05hello\x00\x00");
//! let frame = dec.decode(&mut buf).unwrap().unwrap(); // a `Bytes`, not a copy
//! assert_eq!(&frame[..], b"hello");
//! assert_eq!(dec.decode(&mut buf).unwrap(), None); // half a header so far
//! assert!(dec.finish(&buf).is_err());
//! ```

use ::bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::codec::{Encoder, Finder, MAX_READ_CHUNK, Step};
use crate::config::Config;
use crate::error::Error;

/// Takes frames off the front of a [`BytesMut`] as [`Bytes`], without
/// copying them.
///
/// Give it the same buffer on every call, with the bytes received since
/// appended (as tokio-util's `Framed` does). Results are those of
/// [`Decoder::next_frame`](crate::Decoder::next_frame): the same limits,
/// oversize policies and errors.
#[derive(Debug, Clone)]
pub struct BytesDecoder {
    finder: Finder,
}

impl BytesDecoder {
    /// A decoder for this layout.
    pub fn new(config: Config) -> BytesDecoder {
        BytesDecoder {
            finder: Finder::new(config),
        }
    }

    /// The layout this decoder reads.
    pub fn config(&self) -> &Config {
        &self.finder.config
    }

    /// Frames skipped so far under [`Oversized::Discard`](crate::Oversized::Discard).
    pub fn discarded_frames(&self) -> u64 {
        self.finder.discarded
    }

    /// Takes the next complete frame off the front of `src`, split off its
    /// allocation. `Ok(None)` means more bytes are needed; `src` may then
    /// have been given room for more of the frame (see the module docs for
    /// how much).
    ///
    /// # Errors
    /// As [`Decoder::next_frame`](crate::Decoder::next_frame):
    /// [`Error::FrameTooLarge`] and [`Error::InvalidLength`] end the stream;
    /// after [`Error::Discarded`], call again to go on.
    #[inline]
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, Error> {
        let skipped = self.finder.skip_incoming(src.len());
        if skipped > 0 {
            src.advance(skipped);
        }
        match self.finder.step(src)? {
            Step::Frame { total, strip } => {
                let mut frame = src.split_to(total);
                frame.advance(strip);
                Ok(Some(frame.freeze()))
            }
            Step::Pending(Some(total)) => {
                reserve_towards(src, total);
                Ok(None)
            }
            Step::Pending(None) => {
                // Full, with a frame still due: grow here, to the frame's
                // measure, rather than let the caller's `reserve(1)` double.
                if src.len() == src.capacity() && self.finder.need() > src.len() as u64 {
                    reserve_towards(src, self.finder.need());
                }
                Ok(None)
            }
            Step::Discard { drop, error } => {
                src.advance(drop);
                Err(error)
            }
        }
    }

    /// Says whether the stream may end with `src` as it is: `Ok` when
    /// nothing is left, [`Error::Truncated`] with how many bytes of how many
    /// arrived when a frame (or a header) was cut short.
    ///
    /// # Errors
    /// [`Error::Truncated`] as above.
    pub fn finish(&self, src: &BytesMut) -> Result<(), Error> {
        self.finder.finish(src)
    }
}

/// Room a read may use beyond a small frame's end, so that a stream of small
/// frames is read many at a time (tokio-util's `Framed` starts at 8 KiB).
const READ_AHEAD: usize = 8 * 1024;

/// Makes room in `src` for more of a frame of `total` wire bytes.
///
/// Memory the buffer already owns is taken back for the whole frame when it
/// is enough (`try_reclaim` never allocates: on a long-lived connection the
/// allocation an earlier frame grew is reused, the bytes buffered so far
/// moving to its front). Otherwise a new allocation replaces the buffer,
/// sized to the frame's measure: the whole frame, or twice what is buffered
/// (at least [`MAX_READ_CHUNK`]) while that is less. A header alone never
/// allocates towards its declared length. The new allocation is exactly
/// that size, not a doubling of the old one as `BytesMut::reserve` would
/// make: a buffer much larger than its frames lets reads run into the next
/// frame, whose bytes must then be moved to the front before it can be
/// split off whole.
#[cold]
fn reserve_towards(src: &mut BytesMut, total: u64) {
    let len = src.len();
    let total = usize::try_from(total).unwrap_or(usize::MAX);
    let goal = total.max(len.saturating_add(READ_AHEAD));
    if src.capacity() >= goal || src.try_reclaim(goal - len) {
        return;
    }
    let want = goal.min((2 * len).max(MAX_READ_CHUNK));
    if src.capacity() >= want || src.try_reclaim(want - len) {
        return;
    }
    let mut grown = BytesMut::with_capacity(want);
    grown.put_slice(src);
    *src = grown;
}

impl Encoder {
    /// Appends header and payload to `dst`. The layout must have no offset.
    ///
    /// # Errors
    /// As [`Encoder::encode`].
    #[inline]
    pub fn encode_bytes_mut(&self, payload: &[u8], dst: &mut BytesMut) -> Result<(), Error> {
        self.check_no_offset()?;
        if let Some((word, width)) = self.fast_field(payload.len()) {
            // One 8-byte store and a truncate cost less than a copy of
            // `width` bytes.
            dst.reserve(8 + payload.len());
            let at = dst.len();
            dst.put_u64_ne(word);
            dst.truncate(at + usize::from(width));
            dst.put_slice(payload);
            return Ok(());
        }
        let h = self.header(payload.len())?;
        dst.reserve(h.len() + payload.len());
        dst.put_slice(&h);
        dst.put_slice(payload);
        Ok(())
    }

    /// Appends `prefix` (the `offset` bytes before the length field), header
    /// and payload to `dst`.
    ///
    /// # Errors
    /// As [`Encoder::encode_with_prefix`].
    pub fn encode_with_prefix_bytes_mut(
        &self,
        prefix: &[u8],
        payload: &[u8],
        dst: &mut BytesMut,
    ) -> Result<(), Error> {
        self.check_prefix(prefix)?;
        let h = self.header(payload.len())?;
        dst.reserve(prefix.len() + h.len() + payload.len());
        dst.put_slice(prefix);
        dst.put_slice(&h);
        dst.put_slice(payload);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Oversized;

    #[test]
    fn frames_share_the_buffer_allocation() {
        let mut dec = BytesDecoder::new(Config::u16_be());
        let mut buf = BytesMut::from(&b"\x00\x03abc\x00\x02de"[..]);
        let base = buf.as_ptr() as usize;
        let a = dec.decode(&mut buf).unwrap().unwrap();
        let b = dec.decode(&mut buf).unwrap().unwrap();
        assert_eq!((&a[..], &b[..]), (&b"abc"[..], &b"de"[..]));
        // Zero-copy: each frame points into the buffer it arrived in.
        assert_eq!(a.as_ptr() as usize, base + 2);
        assert_eq!(b.as_ptr() as usize, base + 7);
        assert!(buf.is_empty());
        dec.finish(&buf).unwrap();
    }

    #[test]
    fn hostile_header_reserves_little() {
        let mut dec = BytesDecoder::new(Config::u32_be());
        let mut buf = BytesMut::new();
        buf.put_slice(b"\x00\x80\x00\x00x"); // declares 8 MiB, sends one byte
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
        assert!(buf.capacity() <= 64 * 1024, "capacity {}", buf.capacity());
        assert!(matches!(
            dec.finish(&buf),
            Err(Error::Truncated {
                expected: 0x80_0004,
                received: 5
            })
        ));
    }

    /// Feeds one frame of `len` payload bytes in 1460-byte reads; returns it.
    fn feed_in_segments(dec: &mut BytesDecoder, buf: &mut BytesMut, len: usize) -> Bytes {
        let wire = [&(len as u32).to_be_bytes()[..], &vec![0xa5; len]].concat();
        let mut got = None;
        for piece in wire.chunks(1460) {
            buf.put_slice(piece);
            if let Some(frame) = dec.decode(buf).unwrap() {
                got = Some(frame);
            }
        }
        got.expect("the whole frame was fed")
    }

    #[test]
    fn a_large_frame_reuses_what_the_last_one_grew() {
        const LEN: usize = 300_000;
        let mut dec = BytesDecoder::new(Config::u32_be());
        let mut buf = BytesMut::new();
        let first = feed_in_segments(&mut dec, &mut buf, LEN);
        assert_eq!(first.len(), LEN);
        let base = first.as_ptr() as usize - 4;
        drop(first);
        // The next header: the allocation is the buffer's alone again, so it
        // takes the whole frame at once (no growing, no copying later) ...
        buf.put_slice(&(LEN as u32).to_be_bytes());
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
        assert!(buf.capacity() >= LEN + 4, "capacity {}", buf.capacity());
        assert_eq!(
            buf.as_ptr() as usize,
            base,
            "moved to the front of the same allocation"
        );
        // ... while a frame still held keeps its bytes: nothing is taken
        // back from under it, and the buffer is not given the whole frame.
        let mut dec = BytesDecoder::new(Config::u32_be());
        let mut buf = BytesMut::new();
        let held = feed_in_segments(&mut dec, &mut buf, LEN);
        buf.put_slice(&(LEN as u32).to_be_bytes());
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
        assert!(buf.capacity() < LEN + 4, "capacity {}", buf.capacity());
        buf.put_slice(&[0; 1460]);
        assert!(held.iter().all(|&b| b == 0xa5));
    }

    #[test]
    fn discard_skips_bytes_arriving_later() {
        let config = Config::builder()
            .max_frame_len(4)
            .oversized(Oversized::Discard)
            .build()
            .unwrap();
        let mut dec = BytesDecoder::new(config);
        let mut buf = BytesMut::from(&b"\x00\x00\x00\x08abc"[..]);
        assert!(matches!(
            dec.decode(&mut buf),
            Err(Error::Discarded {
                declared: 8,
                limit: 4
            })
        ));
        assert!(buf.is_empty());
        buf.put_slice(b"def");
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
        assert!(
            dec.finish(&buf).is_err(),
            "two bytes of the big frame are still due"
        );
        buf.put_slice(b"gh\x00\x00\x00\x02ok");
        assert_eq!(dec.decode(&mut buf).unwrap().as_deref(), Some(&b"ok"[..]));
        assert_eq!(dec.discarded_frames(), 1);
        dec.finish(&buf).unwrap();
    }

    #[test]
    fn encodes_into_bytes_mut_as_into_vec() {
        let offset = Config::builder().offset(2).build().unwrap();
        let le3 = Config::builder()
            .width(3)
            .little_endian()
            .adjustment(-3)
            .build()
            .unwrap();
        let le8 = Config::builder().width(8).little_endian().build().unwrap();
        let configs = [
            Config::u32_be(),
            Config::u16_be(),
            Config::varint(),
            Config::python(),
            offset,
            le3,
            le8,
        ];
        for config in configs {
            let enc = Encoder::new(config);
            // Around the fast path's edges too: 2^16 - 1 fits a 2-byte field, 2^16 does not.
            for len in [0usize, 1, 127, 128, 300, 65_535, 65_536, 70_000] {
                let payload = vec![0x5a; len];
                let (mut vec, mut bm) = (Vec::new(), BytesMut::new());
                if config.offset() == 0 {
                    let (a, b) = (
                        enc.encode(&payload, &mut vec),
                        enc.encode_bytes_mut(&payload, &mut bm),
                    );
                    assert_eq!(a.is_ok(), b.is_ok(), "{config:?} {len}");
                    assert_eq!(&bm[..], &vec[..]);
                }
                vec.clear();
                bm.clear();
                let prefix = vec![7; config.offset()];
                let (a, b) = (
                    enc.encode_with_prefix(&prefix, &payload, &mut vec),
                    enc.encode_with_prefix_bytes_mut(&prefix, &payload, &mut bm),
                );
                assert_eq!(a.is_ok(), b.is_ok(), "{config:?} {len}");
                assert_eq!(&bm[..], &vec[..]);
                if config == Config::u16_be() {
                    assert_eq!(b.is_ok(), len <= 65_535);
                }
            }
        }
        let enc = Encoder::new(Config::builder().offset(2).build().unwrap());
        assert!(matches!(
            enc.encode_bytes_mut(b"x", &mut BytesMut::new()),
            Err(Error::InvalidConfig(_))
        ));
    }
}
