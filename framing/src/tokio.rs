//! A codec for tokio-util's `Framed`, `FramedRead` and `FramedWrite`
//! (feature `tokio`).
//!
//! [`Codec`] takes the place of `LengthDelimitedCodec`: frames come out as
//! [`Bytes`] split off `Framed`'s read buffer without copying, and go in as
//! `Bytes` or `&[u8]`. What it adds is everything [`Config`] says: every
//! layout and preset (varint and Python's long form included), the limit
//! checked on the frame as delivered, memory that grows only with bytes
//! received (a 4-byte header declaring 8 MiB followed by one byte costs at
//! most 64 KiB of buffer, where `LengthDelimitedCodec` reserves the 8 MiB),
//! errors that carry their lengths, and [`Oversized::Discard`]
//! (crate::Oversized::Discard).
//!
//! `Framed` ends its stream at the first decoder error, so a discarded frame
//! cannot be an error there. [`Codec`] skips it, logs it with `tracing` and
//! counts it ([`Codec::discarded_frames`], reachable through
//! `Framed::codec`); [`ReportingCodec`] hands it to the caller as
//! [`Decoded::Discarded`] in the stream of frames, which goes on.
//!
//! At end of stream inside a frame, the error says how many of how many
//! bytes arrived ([`Error::Truncated`]), where `LengthDelimitedCodec` says
//! "bytes remaining on stream".
//!
//! ```no_run
//! use futures_util::{SinkExt, StreamExt};
//! use tokio_util::codec::Framed;
//! use framing::{Config, tokio::Codec};
//!
//! # async fn echo(stream: tokio::net::TcpStream) -> Result<(), framing::Error> {
//! let mut framed = Framed::new(stream, Codec::new(Config::u32_be()));
//! while let Some(frame) = framed.next().await {
//!     framed.send(frame?).await?; // a `Bytes`: echoed without a copy in between
//! }
//! # Ok(())
//! # }
//! ```

use ::bytes::{Bytes, BytesMut};
use ::tokio_util::codec;

use crate::bytes::BytesDecoder;
use crate::codec::Encoder;
use crate::config::Config;
use crate::error::Error;

/// A length-prefix codec for `Framed`: [`Bytes`] frames out, `Bytes`,
/// `&[u8]` or (for layouts with an offset) `(prefix, payload)` in.
///
/// Discarded frames (under [`Oversized::Discard`](crate::Oversized::Discard))
/// are skipped and counted; use [`ReportingCodec`] to see each one in the
/// stream.
#[derive(Debug, Clone)]
pub struct Codec {
    decoder: BytesDecoder,
    encoder: Encoder,
}

impl Codec {
    /// A codec for this layout.
    pub fn new(config: Config) -> Codec {
        Codec {
            decoder: BytesDecoder::new(config),
            encoder: Encoder::new(config),
        }
    }

    /// The layout this codec reads and writes.
    pub fn config(&self) -> &Config {
        self.decoder.config()
    }

    /// Frames skipped so far under [`Oversized::Discard`](crate::Oversized::Discard).
    pub fn discarded_frames(&self) -> u64 {
        self.decoder.discarded_frames()
    }

    /// The same codec, reporting each discarded frame as an item.
    pub fn reporting(self) -> ReportingCodec {
        ReportingCodec(self)
    }

    #[inline]
    fn decode_or_discard(&mut self, src: &mut BytesMut) -> Result<Option<Decoded>, Error> {
        match self.decoder.decode(src) {
            Ok(frame) => Ok(frame.map(Decoded::Frame)),
            Err(Error::Discarded { declared, limit }) => {
                Ok(Some(Decoded::Discarded { declared, limit }))
            }
            Err(e) => Err(e),
        }
    }

    /// At end of stream: the last frame, or a clean end, or how much of a
    /// frame was cut off.
    fn at_eof(&mut self, src: &mut BytesMut) -> Result<Option<Decoded>, Error> {
        match self.decode_or_discard(src)? {
            Some(item) => Ok(Some(item)),
            None => {
                self.decoder.finish(src)?;
                Ok(None)
            }
        }
    }
}

impl Default for Codec {
    /// The 4-byte big-endian preset, as `LengthDelimitedCodec::new()`.
    fn default() -> Self {
        Codec::new(Config::u32_be())
    }
}

impl codec::Decoder for Codec {
    type Item = Bytes;
    type Error = Error;

    #[inline]
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, Error> {
        loop {
            match self.decode_or_discard(src)? {
                Some(Decoded::Frame(frame)) => return Ok(Some(frame)),
                Some(Decoded::Discarded { .. }) => continue,
                None => return Ok(None),
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, Error> {
        loop {
            match self.at_eof(src)? {
                Some(Decoded::Frame(frame)) => return Ok(Some(frame)),
                Some(Decoded::Discarded { .. }) => continue,
                None => return Ok(None),
            }
        }
    }
}

impl codec::Encoder<Bytes> for Codec {
    type Error = Error;

    #[inline]
    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), Error> {
        self.encoder.encode_bytes_mut(&item, dst)
    }
}

impl codec::Encoder<&[u8]> for Codec {
    type Error = Error;

    #[inline]
    fn encode(&mut self, item: &[u8], dst: &mut BytesMut) -> Result<(), Error> {
        self.encoder.encode_bytes_mut(item, dst)
    }
}

/// `(prefix, payload)`: for layouts with an offset, the `offset` bytes
/// before the length field and the payload after it.
impl codec::Encoder<(&[u8], &[u8])> for Codec {
    type Error = Error;

    fn encode(
        &mut self,
        (prefix, payload): (&[u8], &[u8]),
        dst: &mut BytesMut,
    ) -> Result<(), Error> {
        self.encoder
            .encode_with_prefix_bytes_mut(prefix, payload, dst)
    }
}

/// What [`ReportingCodec`] takes out of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A frame.
    Frame(Bytes),
    /// A frame over the limit was skipped (its bytes are dropped as they
    /// arrive); the stream goes on.
    Discarded {
        /// Length of the frame as it would have been delivered.
        declared: u64,
        /// The configured maximum frame length.
        limit: u64,
    },
}

/// [`Codec`] with each discarded frame reported as an item,
/// [`Decoded::Discarded`], in the stream of frames. Encodes as [`Codec`].
#[derive(Debug, Clone)]
pub struct ReportingCodec(Codec);

impl ReportingCodec {
    /// A reporting codec for this layout.
    pub fn new(config: Config) -> ReportingCodec {
        ReportingCodec(Codec::new(config))
    }

    /// The codec inside.
    pub fn codec(&self) -> &Codec {
        &self.0
    }
}

impl codec::Decoder for ReportingCodec {
    type Item = Decoded;
    type Error = Error;

    #[inline]
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Decoded>, Error> {
        self.0.decode_or_discard(src)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Decoded>, Error> {
        self.0.at_eof(src)
    }
}

impl<T> codec::Encoder<T> for ReportingCodec
where
    Codec: codec::Encoder<T, Error = Error>,
{
    type Error = Error;

    #[inline]
    fn encode(&mut self, item: T, dst: &mut BytesMut) -> Result<(), Error> {
        self.0.encode(item, dst)
    }
}
