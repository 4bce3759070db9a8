//! The sans-IO core: a [`Decoder`] that takes bytes and gives back frames, and
//! an [`Encoder`] that writes length fields.
//!
//! Neither touches a socket. The decoder owns one buffer that grows only with
//! bytes actually received: a header declaring 8 MiB reserves nothing, so a
//! hostile peer cannot make it allocate more than it sends.
//!
//! Decoding is a small state machine:
//!
//! ```text
//!            feed / commit                 next_frame
//!   bytes ──────────────────▶ [buffer] ──────────────────▶ Ok(Some(frame))
//!                                 │   not all there yet  ─▶ Ok(None)
//!                                 │   over the limit     ─▶ Err(FrameTooLarge)      (fail)
//!                                 │                      ─▶ Err(Discarded), skip it (discard)
//!                                 └── bad length field   ─▶ Err(InvalidLength)
//! ```

use byteorder::{BigEndian, ByteOrder, LittleEndian};

use crate::config::{Config, Endian, LengthField, Oversized, Strip};
use crate::error::{Error, InvalidLength};

/// Initial buffer and read size of a decoder: large enough for many small
/// frames per read, small enough that an idle connection costs little.
pub const READ_CHUNK: usize = 8 * 1024;

/// Largest read size the decoder grows to while reads keep filling it.
pub const MAX_READ_CHUNK: usize = 64 * 1024;

/// Where the next frame lies in the buffer.
#[derive(Debug, Clone, Copy)]
struct Head {
    /// Wire bytes of the whole frame, from the first offset byte.
    total: u64,
    /// Bytes removed from the front before handing it over.
    strip: u64,
}

impl Head {
    fn delivered(self) -> u64 {
        self.total - self.strip
    }
}

/// Outcome of looking at the start of the buffer.
enum Peek {
    /// Not enough bytes to read the length field: at least this many are needed.
    NeedHeader(u64),
    Head(Head),
}

/// Why the decoder stopped for good (kept so that every later call says it again).
#[derive(Debug, Clone)]
enum Dead {
    TooLarge { declared: u64, limit: u64 },
    Invalid(InvalidLength),
}

impl Dead {
    fn error(&self) -> Error {
        match self {
            Dead::TooLarge { declared, limit } => Error::FrameTooLarge {
                declared: *declared,
                limit: *limit,
            },
            Dead::Invalid(e) => Error::InvalidLength(e.clone()),
        }
    }
}

/// Reads the length field at the start of `buf` (offset already skipped).
/// Returns the value and the field's size, or `None` if `buf` is too short.
#[inline]
fn read_length(field: LengthField, buf: &[u8]) -> Result<Option<(u64, usize)>, InvalidLength> {
    match field {
        LengthField::Fixed { width, endian } => {
            let w = width as usize;
            if buf.len() < w {
                return Ok(None);
            }
            let v = match (w, endian) {
                (4, Endian::Big) => u64::from(BigEndian::read_u32(buf)),
                (2, Endian::Big) => u64::from(BigEndian::read_u16(buf)),
                (_, Endian::Big) => BigEndian::read_uint(buf, w),
                (_, Endian::Little) => LittleEndian::read_uint(buf, w),
            };
            Ok(Some((v, w)))
        }
        LengthField::Varint => {
            let mut value: u64 = 0;
            for (i, &b) in buf.iter().enumerate().take(10) {
                let bits = u64::from(b & 0x7f);
                // The tenth byte may only carry the 64th bit.
                if i == 9 && b > 1 {
                    return Err(InvalidLength::VarintOverflow);
                }
                value |= bits << (7 * i);
                if b & 0x80 == 0 {
                    return Ok(Some((value, i + 1)));
                }
            }
            if buf.len() >= 10 {
                Err(InvalidLength::VarintOverflow)
            } else {
                Ok(None)
            }
        }
        LengthField::Python => {
            if buf.len() < 4 {
                return Ok(None);
            }
            let v = BigEndian::read_u32(buf);
            if v == u32::MAX {
                if buf.len() < 12 {
                    return Ok(None);
                }
                Ok(Some((BigEndian::read_u64(&buf[4..]), 12)))
            } else if v > i32::MAX as u32 {
                Err(InvalidLength::PythonNegative { value: v })
            } else {
                Ok(Some((u64::from(v), 4)))
            }
        }
    }
}

/// Bytes of header needed before the length can be read, given `have` bytes
/// buffered (for variable-length fields, one more than we have).
fn header_need(config: &Config, have: u64) -> u64 {
    let min = match config.length {
        LengthField::Fixed { width, .. } => u64::from(width),
        LengthField::Varint => 1,
        LengthField::Python => 4,
    };
    (config.offset as u64 + min).max(have + 1)
}

/// Looks at the start of `buf` and says where the first frame ends.
#[inline]
fn peek(config: &Config, buf: &[u8]) -> Result<Peek, InvalidLength> {
    let offset = config.offset;
    if buf.len() < offset {
        return Ok(Peek::NeedHeader(header_need(config, buf.len() as u64)));
    }
    let Some((value, field_len)) = read_length(config.length, &buf[offset..])? else {
        return Ok(Peek::NeedHeader(header_need(config, buf.len() as u64)));
    };
    let header = (offset + field_len) as u64;
    let body = i128::from(value) + i128::from(config.adjustment);
    if body < 0 {
        return Err(InvalidLength::NegativeAfterAdjustment {
            value,
            adjustment: config.adjustment,
        });
    }
    let total = i128::from(header) + body;
    let strip = match config.strip {
        Strip::Header => header,
        Strip::Bytes(n) => n as u64,
    };
    if i128::from(strip) > total {
        return Err(InvalidLength::ShorterThanStrip {
            frame: u64::try_from(total).unwrap_or(u64::MAX),
            strip,
        });
    }
    // Past 2^64 bytes a frame is over any limit: saturate and let the limit say so.
    let total = u64::try_from(total).unwrap_or(u64::MAX);
    Ok(Peek::Head(Head { total, strip }))
}

/// What [`Finder::step`] found at the front of the buffered bytes.
#[derive(Debug)]
pub(crate) enum Step {
    /// A complete frame: its wire bytes are the first `total` buffered
    /// bytes, of which the first `strip` are not handed over.
    Frame { total: usize, strip: usize },
    /// More bytes are needed. `Some(total)` when the next frame's wire length
    /// is known (so that the caller can make room for it).
    Pending(Option<u64>),
    /// A frame over the limit under [`Oversized::Discard`]: the caller drops
    /// the first `drop` buffered bytes (the part of it already received)
    /// and reports `error`; the rest is skipped as it arrives.
    Discard { drop: usize, error: Error },
}

/// The frame-finding state every decoder shares, whoever owns the buffer:
/// what the next frame needs, a discard in progress, the error that ended
/// the stream. It reads the buffered bytes and never holds them.
#[derive(Debug, Clone)]
pub(crate) struct Finder {
    pub(crate) config: Config,
    /// Buffered bytes needed before the next frame can complete.
    need: u64,
    /// Bytes of a discarded frame still to skip, and that frame's size.
    skip: u64,
    skip_total: u64,
    dead: Option<Dead>,
    pub(crate) discarded: u64,
}

impl Finder {
    pub(crate) fn new(config: Config) -> Finder {
        Finder {
            config,
            need: 0,
            skip: 0,
            skip_total: 0,
            dead: None,
            discarded: 0,
        }
    }

    /// Of `n` newly received bytes, how many belong to a frame being
    /// discarded (they are counted as skipped and must not be buffered).
    #[inline]
    pub(crate) fn skip_incoming(&mut self, n: usize) -> usize {
        let k = self.skip.min(n as u64);
        self.skip -= k;
        k as usize
    }

    /// Looks at the buffered bytes `buf` (the same bytes as last time, plus
    /// any received since, minus the frames and discards it reported).
    #[inline]
    pub(crate) fn step(&mut self, buf: &[u8]) -> Result<Step, Error> {
        if let Some(dead) = &self.dead {
            return Err(dead.error());
        }
        let avail = buf.len() as u64;
        if avail < self.need || self.skip > 0 {
            return Ok(Step::Pending(None));
        }
        match peek(&self.config, buf) {
            Ok(Peek::NeedHeader(n)) => {
                self.need = n;
                Ok(Step::Pending(None))
            }
            Ok(Peek::Head(head)) => {
                if head.delivered() > self.config.max_frame_len as u64 {
                    return self.oversized(head, avail);
                }
                if avail < head.total {
                    self.need = head.total;
                    return Ok(Step::Pending(Some(head.total)));
                }
                self.need = 0;
                Ok(Step::Frame {
                    total: head.total as usize,
                    strip: head.strip as usize,
                })
            }
            Err(e) => {
                tracing::warn!(error = %e, "rejected frame: invalid length field");
                self.dead = Some(Dead::Invalid(e.clone()));
                Err(Error::InvalidLength(e))
            }
        }
    }

    #[cold]
    fn oversized(&mut self, head: Head, avail: u64) -> Result<Step, Error> {
        let declared = head.delivered();
        let limit = self.config.max_frame_len as u64;
        match self.config.oversized {
            Oversized::Fail => {
                tracing::warn!(declared, limit, "rejected frame: too large, ending stream");
                self.dead = Some(Dead::TooLarge { declared, limit });
                Err(Error::FrameTooLarge { declared, limit })
            }
            Oversized::Discard => {
                tracing::warn!(declared, limit, "rejected frame: too large, discarding it");
                let dropped = avail.min(head.total);
                self.skip = head.total - dropped;
                self.skip_total = head.total;
                self.need = 0;
                self.discarded += 1;
                Ok(Step::Discard {
                    drop: dropped as usize,
                    error: Error::Discarded { declared, limit },
                })
            }
        }
    }

    /// Buffered bytes the next frame (or header) needs before it completes,
    /// as last seen by [`step`](Finder::step).
    #[cfg(feature = "bytes")]
    #[inline]
    pub(crate) fn need(&self) -> u64 {
        self.need
    }

    /// Whether the stream may end with `buf` still buffered.
    pub(crate) fn finish(&self, buf: &[u8]) -> Result<(), Error> {
        if self.skip > 0 {
            return Err(Error::Truncated {
                expected: self.skip_total,
                received: self.skip_total - self.skip,
            });
        }
        if buf.is_empty() {
            return Ok(());
        }
        let expected = match peek(&self.config, buf) {
            Ok(Peek::Head(head)) => head.total,
            Ok(Peek::NeedHeader(n)) => n,
            Err(e) => return Err(e.into()),
        };
        Err(Error::Truncated {
            expected,
            received: buf.len() as u64,
        })
    }
}

/// Turns a stream of bytes into frames.
///
/// Feed it bytes with [`feed`](Decoder::feed), or read straight into
/// [`read_buf`](Decoder::read_buf) and [`commit`](Decoder::commit); take
/// frames out with [`next_frame`](Decoder::next_frame) (borrowed, zero-copy)
/// or [`next_frame_owned`](Decoder::next_frame_owned) until they return
/// `Ok(None)`. At end of stream, [`finish`](Decoder::finish) tells a clean end
/// from a truncated frame. (With the `bytes` feature,
/// `framing::bytes::BytesDecoder` hands out frames as `Bytes` without
/// copying them.)
///
/// ```
/// use framing::{Config, Decoder};
/// let mut dec = Decoder::new(Config::u32_be());
/// dec.feed(b"\x00\x00\x00\x03abc\x00\x00"); // one frame and half a header
/// assert_eq!(dec.next_frame().unwrap(), Some(&b"abc"[..]));
/// assert_eq!(dec.next_frame().unwrap(), None);
/// dec.feed(b"\x00\x01z");
/// assert_eq!(dec.next_frame_owned().unwrap(), Some(b"z".to_vec()));
/// assert!(dec.finish().is_ok());
/// ```
#[derive(Debug)]
pub struct Decoder {
    finder: Finder,
    /// Initialised storage; the data is `buf[start..end]`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Space `read_buf` offers: doubles, up to `MAX_READ_CHUNK`, each time a
    /// read fills it, so a busy stream takes few large reads and an idle
    /// one keeps a small buffer.
    read_chunk: usize,
}

impl Decoder {
    /// A decoder for this layout with an empty buffer.
    pub fn new(config: Config) -> Decoder {
        Decoder {
            finder: Finder::new(config),
            buf: Vec::new(),
            start: 0,
            end: 0,
            read_chunk: READ_CHUNK,
        }
    }

    /// The layout this decoder reads.
    pub fn config(&self) -> &Config {
        &self.finder.config
    }

    /// Bytes received and not yet handed out as frames.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Bytes of memory the buffer holds (its capacity).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Frames skipped so far under [`Oversized::Discard`].
    pub fn discarded_frames(&self) -> u64 {
        self.finder.discarded
    }

    /// Appends received bytes. Bytes that belong to a frame being discarded
    /// are dropped here without being buffered.
    pub fn feed(&mut self, bytes: &[u8]) {
        let bytes = &bytes[self.finder.skip_incoming(bytes.len())..];
        if bytes.is_empty() {
            return;
        }
        self.make_room(bytes.len());
        self.buf[self.end..self.end + bytes.len()].copy_from_slice(bytes);
        self.end += bytes.len();
    }

    /// Spare buffer space to read into, at least [`READ_CHUNK`] bytes; follow
    /// with [`commit`](Decoder::commit) of the bytes written. Each read that
    /// fills the space doubles the space offered next time, up to
    /// [`MAX_READ_CHUNK`], so a busy stream takes few large reads while an
    /// idle one keeps a small buffer. The buffer grows only when the space is
    /// full of received bytes.
    pub fn read_buf(&mut self) -> &mut [u8] {
        self.make_room(self.read_chunk);
        &mut self.buf[self.end..]
    }

    /// Marks `n` bytes written into [`read_buf`](Decoder::read_buf) as received.
    ///
    /// # Panics
    /// If `n` is more than the space `read_buf` returned.
    pub fn commit(&mut self, n: usize) {
        assert!(self.end + n <= self.buf.len(), "commit past read_buf");
        if n >= self.read_chunk {
            self.read_chunk = (self.read_chunk * 2).min(MAX_READ_CHUNK);
        }
        let k = self.finder.skip_incoming(n);
        if k > 0 {
            // The first `k` new bytes finish a discarded frame.
            self.buf.copy_within(self.end + k..self.end + n, self.end);
        }
        self.end += n - k;
    }

    /// Ensures `additional` bytes of space after `end`, first by moving the
    /// data to the front, then by growing.
    fn make_room(&mut self, additional: usize) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.buf.len() - self.end >= additional {
            return;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.buf.len() - self.end >= additional {
                return;
            }
        }
        // Grow by doubling what is held, never towards a declared length.
        let cap = (self.end + additional)
            .max(self.buf.len() * 2)
            .max(READ_CHUNK);
        self.buf.resize(cap, 0);
    }

    /// Takes the next complete frame out of the buffer, borrowed.
    ///
    /// `Ok(None)` means more bytes are needed.
    ///
    /// # Errors
    /// - [`Error::FrameTooLarge`] (policy fail) and [`Error::InvalidLength`]:
    ///   the stream is unusable and every later call returns the same error;
    /// - [`Error::Discarded`] (policy discard): the frame's bytes are being
    ///   skipped; call again to go on.
    #[inline]
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, Error> {
        match self.advance()? {
            Some(range) => Ok(Some(self.frame_at(range))),
            None => Ok(None),
        }
    }

    /// The bytes of a frame that [`advance`](Decoder::advance) just consumed.
    #[inline]
    pub(crate) fn frame_at(&self, (from, to): (usize, usize)) -> &[u8] {
        &self.buf[from..to]
    }

    /// Takes the next complete frame out of the buffer as an owned `Vec`.
    /// Same results as [`next_frame`](Decoder::next_frame).
    ///
    /// # Errors
    /// As [`next_frame`](Decoder::next_frame).
    #[inline]
    pub fn next_frame_owned(&mut self) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.next_frame()?.map(<[u8]>::to_vec))
    }

    /// Finds the next frame, consumes it and returns its byte range, valid
    /// until the next call that takes `&mut self`.
    #[inline]
    pub(crate) fn advance(&mut self) -> Result<Option<(usize, usize)>, Error> {
        match self.finder.step(&self.buf[self.start..self.end])? {
            Step::Frame { total, strip } => {
                let from = self.start + strip;
                self.start += total;
                Ok(Some((from, self.start)))
            }
            Step::Pending(Some(total)) => {
                // Move the frame to the front now, while only the bytes of it
                // received so far have to move, rather than when the tail
                // runs out with most of it buffered.
                if self.start > 0 && ((self.buf.len() - self.start) as u64) < total {
                    self.buf.copy_within(self.start..self.end, 0);
                    self.end -= self.start;
                    self.start = 0;
                }
                Ok(None)
            }
            Step::Pending(None) => Ok(None),
            Step::Discard { drop, error } => {
                self.start += drop;
                Err(error)
            }
        }
    }

    /// Says whether the stream may end here: `Ok` when nothing is buffered,
    /// [`Error::Truncated`] with how many bytes of how many arrived when a frame
    /// (or a header) was cut short.
    ///
    /// # Errors
    /// [`Error::Truncated`] as above.
    pub fn finish(&self) -> Result<(), Error> {
        self.finder.finish(&self.buf[self.start..self.end])
    }
}

/// The length field of one frame, ready to be written before its payload.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    bytes: [u8; 12],
    len: u8,
}

impl std::ops::Deref for Header {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl AsRef<[u8]> for Header {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

/// Writes length fields. Stateless and cheap to copy.
///
/// The payload is the bytes that follow the length field. With an offset, the
/// caller writes the `offset` bytes before the header
/// ([`encode_with_prefix`](Encoder::encode_with_prefix)).
#[derive(Debug, Clone, Copy)]
pub struct Encoder {
    config: Config,
    /// Payload lengths `lo..=hi` that a fixed-width field takes without any
    /// check failing; empty (`lo > hi`) for other fields.
    fast_lo: usize,
    fast_hi: usize,
}

impl Encoder {
    /// An encoder for this layout.
    pub fn new(config: Config) -> Encoder {
        let (fast_lo, fast_hi) = match config.length {
            LengthField::Fixed { width, .. } => {
                let w = i128::from(width);
                let adj = i128::from(config.adjustment);
                let field_max = if width == 8 {
                    i128::from(u64::MAX)
                } else {
                    (1i128 << (8 * w)) - 1
                };
                let strip = match config.strip {
                    Strip::Header => config.offset as i128 + w,
                    Strip::Bytes(n) => n as i128,
                };
                // value = payload - adj in 0..=field_max;
                // delivered = offset + w + payload - strip in 0..=max_frame_len.
                let before = config.offset as i128 + w - strip;
                let lo = 0.max(adj).max(-before);
                let hi = (field_max + adj)
                    .min(config.max_frame_len as i128 - before)
                    .min(usize::MAX as i128);
                if lo <= hi {
                    (lo as usize, hi as usize)
                } else {
                    (1, 0)
                }
            }
            _ => (1, 0),
        };
        Encoder {
            config,
            fast_lo,
            fast_hi,
        }
    }

    /// The layout this encoder writes.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The length field for a payload of `payload_len` bytes, for a vectored
    /// write of header and payload without copying the payload.
    ///
    /// # Errors
    /// [`Error::FrameTooLarge`] when the frame would exceed the maximum frame
    /// length; [`Error::InvalidLength`] when the adjusted length is negative or
    /// does not fit the field.
    #[inline]
    pub fn header(&self, payload_len: usize) -> Result<Header, Error> {
        if let Some((word, width)) = self.fast_field(payload_len) {
            let mut h = Header {
                bytes: [0; 12],
                len: width,
            };
            h.bytes[..8].copy_from_slice(&word.to_ne_bytes());
            return Ok(h);
        }
        self.header_checked(payload_len)
    }

    /// The length field for a fixed-width layout and a payload length no
    /// check can fail on: the field's bytes are the first `width` of
    /// `word.to_ne_bytes()`, to be written as one 8-byte store. `None` for
    /// every other case ([`header_checked`](Encoder::header_checked)).
    ///
    /// Returned in registers, not as a [`Header`] moved through a `Result`:
    /// copying that struct field by field and reading it back whole stalled
    /// store forwarding on the hot path of the tokio `Codec`.
    #[inline]
    pub(crate) fn fast_field(&self, payload_len: usize) -> Option<(u64, u8)> {
        if let (LengthField::Fixed { width, endian }, true) = (
            self.config.length,
            (self.fast_lo..=self.fast_hi).contains(&payload_len),
        ) {
            let value = (payload_len as u64).wrapping_sub(self.config.adjustment as u64);
            let bytes = match endian {
                Endian::Big => (value << (64 - 8 * u32::from(width))).to_be_bytes(),
                Endian::Little => value.to_le_bytes(),
            };
            return Some((u64::from_ne_bytes(bytes), width));
        }
        None
    }

    /// [`header`](Encoder::header) for every layout, checking as it goes.
    #[inline(never)]
    fn header_checked(&self, payload_len: usize) -> Result<Header, Error> {
        let c = &self.config;
        let mut h = Header {
            bytes: [0; 12],
            len: 0,
        };
        let value = i128::from(payload_len as u64) - i128::from(c.adjustment);
        let Ok(value) = u64::try_from(value) else {
            return Err(InvalidLength::NegativeAfterAdjustment {
                value: payload_len as u64,
                adjustment: -c.adjustment,
            }
            .into());
        };
        match c.length {
            LengthField::Fixed { width, endian } => {
                if width < 8 && value >> (8 * u32::from(width)) != 0 {
                    return Err(InvalidLength::DoesNotFit { value, width }.into());
                }
                let w = width as usize;
                match endian {
                    Endian::Big => BigEndian::write_uint(&mut h.bytes, value, w),
                    Endian::Little => LittleEndian::write_uint(&mut h.bytes, value, w),
                }
                h.len = width;
            }
            LengthField::Varint => {
                let mut v = value;
                let mut i = 0;
                loop {
                    let byte = (v & 0x7f) as u8;
                    v >>= 7;
                    if v == 0 {
                        h.bytes[i] = byte;
                        i += 1;
                        break;
                    }
                    h.bytes[i] = byte | 0x80;
                    i += 1;
                }
                h.len = i as u8;
            }
            LengthField::Python => {
                if value > i32::MAX as u64 {
                    h.bytes[..4].copy_from_slice(&[0xff; 4]);
                    BigEndian::write_u64(&mut h.bytes[4..], value);
                    h.len = 12;
                } else {
                    BigEndian::write_u32(&mut h.bytes, value as u32);
                    h.len = 4;
                }
            }
        }
        let header = (c.offset + h.len as usize) as u64;
        let strip = match c.strip {
            Strip::Header => header,
            Strip::Bytes(n) => n as u64,
        };
        let total = header + payload_len as u64;
        let Some(delivered) = total.checked_sub(strip) else {
            return Err(InvalidLength::ShorterThanStrip {
                frame: total,
                strip,
            }
            .into());
        };
        if delivered > c.max_frame_len as u64 {
            tracing::warn!(
                declared = delivered,
                limit = c.max_frame_len,
                "refused to encode frame: too large"
            );
            return Err(Error::FrameTooLarge {
                declared: delivered,
                limit: c.max_frame_len as u64,
            });
        }
        Ok(h)
    }

    /// Appends header and payload to `dst`. The layout must have no offset.
    ///
    /// # Errors
    /// As [`header`](Encoder::header); [`Error::InvalidConfig`] when the layout
    /// has an offset (use [`encode_with_prefix`](Encoder::encode_with_prefix)).
    #[inline]
    pub fn encode(&self, payload: &[u8], dst: &mut Vec<u8>) -> Result<(), Error> {
        self.check_no_offset()?;
        if let Some((word, width)) = self.fast_field(payload.len()) {
            dst.reserve(8 + payload.len());
            let at = dst.len();
            dst.extend_from_slice(&word.to_ne_bytes());
            dst.truncate(at + usize::from(width));
            dst.extend_from_slice(payload);
            return Ok(());
        }
        let h = self.header(payload.len())?;
        dst.reserve(h.bytes.len() + payload.len());
        // A fixed-size copy and a truncate cost less than a copy of `h.len` bytes.
        let at = dst.len();
        dst.extend_from_slice(&h.bytes);
        dst.truncate(at + h.len as usize);
        dst.extend_from_slice(payload);
        Ok(())
    }

    /// Appends `prefix` (the `offset` bytes before the length field), header
    /// and payload to `dst`.
    ///
    /// # Errors
    /// As [`header`](Encoder::header); [`Error::InvalidConfig`] when `prefix`
    /// is not exactly `offset` bytes long.
    pub fn encode_with_prefix(
        &self,
        prefix: &[u8],
        payload: &[u8],
        dst: &mut Vec<u8>,
    ) -> Result<(), Error> {
        self.check_prefix(prefix)?;
        let h = self.header(payload.len())?;
        dst.reserve(prefix.len() + h.len as usize + payload.len());
        dst.extend_from_slice(prefix);
        dst.extend_from_slice(&h);
        dst.extend_from_slice(payload);
        Ok(())
    }

    /// An encode without a prefix needs a layout without an offset.
    #[inline]
    pub(crate) fn check_no_offset(&self) -> Result<(), Error> {
        if self.config.offset != 0 {
            return Err(Error::InvalidConfig(format!(
                "layout has a {}-byte offset; use encode_with_prefix",
                self.config.offset
            )));
        }
        Ok(())
    }

    /// A prefix must be exactly the layout's offset long.
    pub(crate) fn check_prefix(&self, prefix: &[u8]) -> Result<(), Error> {
        if prefix.len() != self.config.offset {
            return Err(Error::InvalidConfig(format!(
                "prefix of {} bytes given; the layout's offset is {} bytes",
                prefix.len(),
                self.config.offset
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DEFAULT_MAX_FRAME_LEN, Oversized};
    use proptest::prelude::*;

    proptest! {
        /// The fast fixed-width header path writes exactly what the checked
        /// path writes, and refuses nothing the checked path accepts.
        #[test]
        fn fast_header_matches_checked_header(
            width in 1u8..=8,
            little in any::<bool>(),
            offset in 0usize..4,
            adjustment in -16i64..16,
            strip in prop::option::of(0usize..16),
            max in prop::sample::select(vec![0usize, 1, 255, 256, 65_535, 65_536, 1 << 24, DEFAULT_MAX_FRAME_LEN]),
            len in prop::sample::select(vec![0usize, 1, 2, 15, 16, 17, 254, 255, 256, 257, 65_534, 65_535, 65_536, 65_537, (1 << 24) - 1, 1 << 24]),
        ) {
            let mut builder = Config::builder().width(width).offset(offset).adjustment(adjustment).max_frame_len(max);
            builder = if little { builder.little_endian() } else { builder.big_endian() };
            if let Some(n) = strip {
                builder = builder.strip(n);
            }
            let Ok(config) = builder.build() else { return Ok(()); };
            let encoder = Encoder::new(config);
            for l in [len, len.saturating_sub(adjustment.unsigned_abs() as usize), len + adjustment.unsigned_abs() as usize] {
                let fast = encoder.header(l).map(|h| h.to_vec()).map_err(|e| e.to_string());
                let checked = encoder.header_checked(l).map(|h| h.to_vec()).map_err(|e| e.to_string());
                prop_assert_eq!(fast, checked, "payload {}", l);
            }
        }
    }

    fn encode(config: Config, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Encoder::new(config).encode(payload, &mut out).unwrap();
        out
    }

    fn decode_all(config: Config, wire: &[u8]) -> Vec<Vec<u8>> {
        let mut dec = Decoder::new(config);
        dec.feed(wire);
        let mut out = Vec::new();
        while let Some(f) = dec.next_frame().unwrap() {
            out.push(f.to_vec());
        }
        dec.finish().unwrap();
        out
    }

    /// Known wire images, checked both ways.
    #[test]
    fn wire_images() {
        let le3 = Config::builder().width(3).little_endian().build().unwrap();
        let cases: &[(Config, &[u8], &[u8])] = &[
            (Config::u32_be(), b"hello", b"\x00\x00\x00\x05hello"),
            (Config::u32_be(), b"", b"\x00\x00\x00\x00"),
            (Config::u16_be(), b"ab", b"\x00\x02ab"),
            (le3, b"xyz", b"\x03\x00\x00xyz"),
            (Config::varint(), b"", b"\x00"),
            (Config::python(), b"hi", b"\x00\x00\x00\x02hi"),
        ];
        for (config, payload, wire) in cases {
            assert_eq!(&encode(*config, payload), wire, "{config:?}");
            assert_eq!(decode_all(*config, wire), vec![payload.to_vec()]);
        }
    }

    #[test]
    fn varint_boundaries() {
        let enc = Encoder::new(
            Config::varint()
                .to_builder()
                .max_frame_len(usize::MAX >> 2)
                .build()
                .unwrap(),
        );
        let cases: &[(usize, &[u8])] = &[
            (0, &[0x00]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (16383, &[0xff, 0x7f]),
            (16384, &[0x80, 0x80, 0x01]),
        ];
        for (len, bytes) in cases {
            assert_eq!(&*enc.header(*len).unwrap(), *bytes, "len {len}");
        }
        // u64::MAX takes all ten bytes, the last carrying one bit.
        let max = read_length(
            LengthField::Varint,
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        );
        assert_eq!(max, Ok(Some((u64::MAX, 10))));
        let over = read_length(
            LengthField::Varint,
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
        );
        assert_eq!(over, Err(InvalidLength::VarintOverflow));
        let long = read_length(LengthField::Varint, &[0x80; 10]);
        assert_eq!(long, Err(InvalidLength::VarintOverflow));
        assert_eq!(read_length(LengthField::Varint, &[0x80; 9]), Ok(None));
    }

    #[test]
    fn python_long_form() {
        let config = Config::python()
            .to_builder()
            .max_frame_len(usize::MAX >> 2)
            .build()
            .unwrap();
        let enc = Encoder::new(config);
        assert_eq!(&*enc.header(0x7fff_ffff).unwrap(), b"\x7f\xff\xff\xff");
        assert_eq!(
            &*enc.header(0x8000_0000).unwrap(),
            b"\xff\xff\xff\xff\x00\x00\x00\x00\x80\x00\x00\x00"
        );
        // Python never sees a negative 4-byte header from us, and we refuse one.
        let mut dec = Decoder::new(config);
        dec.feed(b"\x80\x00\x00\x00");
        assert!(matches!(
            dec.next_frame(),
            Err(Error::InvalidLength(InvalidLength::PythonNegative {
                value: 0x8000_0000
            }))
        ));
        let mut dec = Decoder::new(config);
        dec.feed(b"\xff\xff\xff\xfe");
        assert!(dec.next_frame().is_err());
    }

    #[test]
    fn offset_adjustment_strip() {
        // 2 prefix bytes, 2-byte length counting the whole frame, keep everything.
        let config = Config::builder()
            .offset(2)
            .width(2)
            .adjustment(-4)
            .strip(0)
            .build()
            .unwrap();
        let mut wire = Vec::new();
        Encoder::new(config)
            .encode_with_prefix(b"\xca\xfe", b"abc", &mut wire)
            .unwrap();
        assert_eq!(wire, b"\xca\xfe\x00\x07abc");
        assert_eq!(decode_all(config, &wire), vec![wire.clone()]);
        assert!(matches!(
            Encoder::new(config).encode(b"abc", &mut Vec::new()),
            Err(Error::InvalidConfig(_))
        ));
    }

    #[test]
    fn limit_counts_the_delivered_frame() {
        // The length field counts the header too (adjustment -4): a 10-byte
        // payload carries the value 14 and must pass a 10-byte limit.
        let config = Config::builder()
            .adjustment(-4)
            .max_frame_len(10)
            .build()
            .unwrap();
        let wire = encode(config, &[1; 10]);
        assert_eq!(&wire[..4], &[0, 0, 0, 14]);
        assert_eq!(decode_all(config, &wire), vec![vec![1; 10]]);
        assert!(matches!(
            Encoder::new(config).header(11),
            Err(Error::FrameTooLarge {
                declared: 11,
                limit: 10
            })
        ));
    }

    #[test]
    fn commit_skips_discarded_bytes() {
        let config = Config::builder()
            .max_frame_len(4)
            .oversized(Oversized::Discard)
            .build()
            .unwrap();
        let mut dec = Decoder::new(config);
        dec.feed(b"\x00\x00\x00\x08abc");
        assert!(matches!(
            dec.next_frame(),
            Err(Error::Discarded {
                declared: 8,
                limit: 4
            })
        ));
        // The rest of the big frame and a good one arrive in one read.
        let more = b"defgh\x00\x00\x00\x02ok";
        let buf = dec.read_buf();
        buf[..more.len()].copy_from_slice(more);
        dec.commit(more.len());
        assert_eq!(dec.next_frame().unwrap(), Some(&b"ok"[..]));
        assert_eq!(dec.discarded_frames(), 1);
        dec.finish().unwrap();
    }
}
