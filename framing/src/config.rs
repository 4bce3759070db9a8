//! Frame layout: where the length field sits, how wide it is, what it counts,
//! and how large a frame may be.
//!
//! A [`Config`] is built with [`Config::builder`] and checked when built, so a
//! decoder or encoder never meets an impossible layout. The presets cover the
//! peers that already speak a length prefix.

use crate::error::Error;

/// Default maximum frame length: 8 MiB, as tokio-util's `LengthDelimitedCodec`.
pub const DEFAULT_MAX_FRAME_LEN: usize = 8 * 1024 * 1024;

/// Byte order of a fixed-width length field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endian {
    /// Most significant byte first (network byte order).
    Big,
    /// Least significant byte first.
    Little,
}

/// How the length itself is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthField {
    /// An unsigned integer of `width` bytes, 1 to 8.
    Fixed {
        /// Width in bytes, 1..=8.
        width: u8,
        /// Byte order.
        endian: Endian,
    },
    /// An unsigned LEB128 varint: 7 bits a byte, least significant group
    /// first, high bit set on every byte but the last; at most 10 bytes.
    Varint,
    /// Python `multiprocessing.connection`: a signed 4-byte big-endian length,
    /// or `ff ff ff ff` followed by an 8-byte big-endian length for frames over
    /// `0x7fffffff` bytes.
    Python,
}

impl LengthField {
    /// Most bytes the field can take.
    pub const fn max_len(self) -> usize {
        match self {
            LengthField::Fixed { width, .. } => width as usize,
            LengthField::Varint => 10,
            LengthField::Python => 12,
        }
    }
}

/// What to do with a frame longer than the maximum frame length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Oversized {
    /// End the stream with [`Error::FrameTooLarge`].
    #[default]
    Fail,
    /// Skip exactly that frame's bytes, across as many reads as it takes,
    /// report it once with [`Error::Discarded`] and go on with the next frame.
    Discard,
}

/// How many bytes to remove from the front of each frame before handing it
/// over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strip {
    /// Everything up to the end of the length field (offset bytes and the
    /// field): the caller sees the payload only.
    #[default]
    Header,
    /// Exactly this many bytes.
    Bytes(usize),
}

/// A validated frame layout. Build one with [`Config::builder`] or take a
/// preset.
///
/// ```text
/// +---------- offset ----------+-- length field --+----- length + adjustment -----+
/// | bytes before the field     | L                | bytes after the field         |
/// +----------------------------+------------------+-------------------------------+
/// |<-- strip -->|<------------- frame handed to the caller ---------------------->|
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub(crate) length: LengthField,
    pub(crate) offset: usize,
    pub(crate) adjustment: i64,
    pub(crate) strip: Strip,
    pub(crate) max_frame_len: usize,
    pub(crate) oversized: Oversized,
}

impl Default for Config {
    /// The 4-byte big-endian preset, [`Config::u32_be`].
    fn default() -> Self {
        Config::u32_be()
    }
}

impl Config {
    /// Starts a builder with the defaults: 4-byte big-endian length counting
    /// the payload only, no offset, header stripped, 8 MiB limit, fail on
    /// oversized frames.
    pub fn builder() -> Builder {
        Builder {
            config: Config::u32_be(),
        }
    }

    /// 4-byte big-endian length of the payload: Thrift's framed transport,
    /// Erlang's `{packet, 4}`, and Python `multiprocessing.connection` for
    /// frames under 2 GiB.
    ///
    /// ```
    /// use framing::{Config, Decoder, Encoder};
    /// let mut wire = Vec::new();
    /// Encoder::new(Config::u32_be()).encode(b"hello", &mut wire).unwrap();
    /// assert_eq!(wire, b"\x00\x00\x00\x05hello");
    /// let mut dec = Decoder::new(Config::u32_be());
    /// dec.feed(&wire);
    /// assert_eq!(dec.next_frame().unwrap(), Some(&b"hello"[..]));
    /// ```
    pub const fn u32_be() -> Config {
        Config::fixed(4, Endian::Big)
    }

    /// 2-byte big-endian length of the payload (frames up to 65535 bytes).
    ///
    /// ```
    /// use framing::{Config, Decoder, Encoder};
    /// let mut wire = Vec::new();
    /// Encoder::new(Config::u16_be()).encode(b"hi", &mut wire).unwrap();
    /// assert_eq!(wire, b"\x00\x02hi");
    /// let mut dec = Decoder::new(Config::u16_be());
    /// dec.feed(&wire);
    /// assert_eq!(dec.next_frame().unwrap(), Some(&b"hi"[..]));
    /// ```
    pub const fn u16_be() -> Config {
        Config::fixed(2, Endian::Big)
    }

    /// LEB128 varint length of the payload, as protobuf's delimited messages.
    ///
    /// ```
    /// use framing::{Config, Decoder, Encoder};
    /// let payload = vec![7u8; 300];
    /// let mut wire = Vec::new();
    /// Encoder::new(Config::varint()).encode(&payload, &mut wire).unwrap();
    /// assert_eq!(&wire[..2], &[0xac, 0x02]); // 300 = 0b10_0101100
    /// let mut dec = Decoder::new(Config::varint());
    /// dec.feed(&wire);
    /// assert_eq!(dec.next_frame().unwrap(), Some(&payload[..]));
    /// ```
    pub const fn varint() -> Config {
        Config {
            length: LengthField::Varint,
            ..Config::u32_be()
        }
    }

    /// Python `multiprocessing.connection` (`Client`/`Listener` with
    /// `authkey=None`): reads and writes the `ff ff ff ff` + 8-byte form for
    /// frames over `0x7fffffff` bytes, and rejects the negative headers
    /// `0x80000000..=0xfffffffe` that Python would misread instead of
    /// desynchronising. Raise [`Builder::max_frame_len`] to carry frames over
    /// 2 GiB.
    ///
    /// ```
    /// use framing::{Config, Decoder, Encoder};
    /// let mut wire = Vec::new();
    /// Encoder::new(Config::python()).encode(b"hello", &mut wire).unwrap();
    /// assert_eq!(wire, b"\x00\x00\x00\x05hello"); // what send_bytes(b"hello") writes
    /// let mut dec = Decoder::new(Config::python());
    /// dec.feed(b"\xff\xff\xff\xff\x00\x00\x00\x00\x00\x00\x00\x02ok");
    /// assert_eq!(dec.next_frame().unwrap(), Some(&b"ok"[..]));
    /// ```
    pub const fn python() -> Config {
        Config {
            length: LengthField::Python,
            ..Config::u32_be()
        }
    }

    const fn fixed(width: u8, endian: Endian) -> Config {
        Config {
            length: LengthField::Fixed { width, endian },
            offset: 0,
            adjustment: 0,
            strip: Strip::Header,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            oversized: Oversized::Fail,
        }
    }

    /// A builder that starts from this configuration.
    pub fn to_builder(self) -> Builder {
        Builder { config: self }
    }

    /// How the length is written.
    pub fn length_field(&self) -> LengthField {
        self.length
    }

    /// Bytes before the length field.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Added to the length field's value to get the number of bytes that
    /// follow the field.
    pub fn adjustment(&self) -> i64 {
        self.adjustment
    }

    /// Bytes removed from the front of each frame.
    pub fn strip(&self) -> Strip {
        self.strip
    }

    /// Largest frame, as handed to the caller, that is accepted.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// What happens to frames over the limit.
    pub fn oversized(&self) -> Oversized {
        self.oversized
    }
}

/// Builds a [`Config`]; [`Builder::build`] checks it.
#[derive(Debug, Clone)]
#[must_use]
pub struct Builder {
    config: Config,
}

impl Builder {
    /// Length field of `width` bytes (1..=8), keeping the byte order.
    pub fn width(mut self, width: u8) -> Self {
        let endian = match self.config.length {
            LengthField::Fixed { endian, .. } => endian,
            _ => Endian::Big,
        };
        self.config.length = LengthField::Fixed { width, endian };
        self
    }

    /// Big-endian fixed-width length field.
    pub fn big_endian(self) -> Self {
        self.endian(Endian::Big)
    }

    /// Little-endian fixed-width length field.
    pub fn little_endian(self) -> Self {
        self.endian(Endian::Little)
    }

    /// Fixed-width length field in this byte order, keeping the width.
    pub fn endian(mut self, endian: Endian) -> Self {
        let width = match self.config.length {
            LengthField::Fixed { width, .. } => width,
            _ => 4,
        };
        self.config.length = LengthField::Fixed { width, endian };
        self
    }

    /// LEB128 varint length field.
    pub fn varint(self) -> Self {
        self.length_field(LengthField::Varint)
    }

    /// Any length field.
    pub fn length_field(mut self, length: LengthField) -> Self {
        self.config.length = length;
        self
    }

    /// Bytes before the length field (default 0).
    pub fn offset(mut self, offset: usize) -> Self {
        self.config.offset = offset;
        self
    }

    /// Signed value added to the length field to get the number of bytes that
    /// follow it; `-(width)` when the length counts the field itself.
    pub fn adjustment(mut self, adjustment: i64) -> Self {
        self.config.adjustment = adjustment;
        self
    }

    /// Strip exactly `n` bytes from the front of each frame (default: the
    /// offset and the length field).
    pub fn strip(mut self, n: usize) -> Self {
        self.config.strip = Strip::Bytes(n);
        self
    }

    /// Strip the offset bytes and the length field (the default).
    pub fn strip_header(mut self) -> Self {
        self.config.strip = Strip::Header;
        self
    }

    /// Largest frame accepted, measured as handed to the caller: after the
    /// adjustment and after stripping (default 8 MiB).
    pub fn max_frame_len(mut self, max: usize) -> Self {
        self.config.max_frame_len = max;
        self
    }

    /// What to do with frames over the limit (default [`Oversized::Fail`]).
    pub fn oversized(mut self, policy: Oversized) -> Self {
        self.config.oversized = policy;
        self
    }

    /// Checks the settings against each other.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the setting when a width is outside
    /// 1..=8, the Python layout is combined with an offset, adjustment or
    /// custom strip, or the offset or limit is so large that a frame's size
    /// could overflow.
    pub fn build(self) -> Result<Config, Error> {
        let c = self.config;
        if let LengthField::Fixed { width, .. } = c.length
            && !(1..=8).contains(&width)
        {
            return Err(Error::InvalidConfig(format!(
                "length field width is {width} bytes; expected 1 to 8"
            )));
        }
        if c.length == LengthField::Python
            && (c.offset != 0 || c.adjustment != 0 || c.strip != Strip::Header)
        {
            return Err(Error::InvalidConfig(
                "the Python layout has no offset, adjustment or custom strip; \
                 expected offset 0, adjustment 0, strip header"
                    .into(),
            ));
        }
        const LIMIT: u64 = 1 << 62;
        if c.offset as u64 > LIMIT || c.max_frame_len as u64 > LIMIT {
            return Err(Error::InvalidConfig(format!(
                "offset {} or max frame length {} is above 2^62 bytes",
                c.offset, c.max_frame_len
            )));
        }
        if let Strip::Bytes(n) = c.strip
            && n as u64 > LIMIT
        {
            return Err(Error::InvalidConfig(format!(
                "strip of {n} bytes is above 2^62 bytes"
            )));
        }
        if c.adjustment.unsigned_abs() > LIMIT {
            return Err(Error::InvalidConfig(format!(
                "adjustment {} is beyond ±2^62",
                c.adjustment
            )));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_width() {
        for w in [0u8, 9, 200] {
            let err = Config::builder().width(w).build().unwrap_err();
            assert!(err.to_string().contains(&format!("{w} bytes")), "{err}");
        }
        for w in 1..=8 {
            assert!(Config::builder().width(w).build().is_ok());
        }
    }

    #[test]
    fn python_layout_is_fixed() {
        let err = Config::python().to_builder().offset(2).build().unwrap_err();
        assert!(matches!(err, Error::InvalidConfig(_)));
        assert!(
            Config::python()
                .to_builder()
                .max_frame_len(1 << 33)
                .build()
                .is_ok()
        );
    }

    #[test]
    fn huge_values_rejected() {
        assert!(Config::builder().offset(usize::MAX).build().is_err());
        assert!(Config::builder().adjustment(i64::MIN).build().is_err());
        assert!(Config::builder().strip(usize::MAX).build().is_err());
    }
}
