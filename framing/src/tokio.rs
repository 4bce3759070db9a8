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
//! errors that carry their lengths, and
//! [`Oversized::Discard`](crate::Oversized::Discard).
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
//! Two things `Framed` cannot do are done by the async adapters, the
//! equivalents of [`io`](crate::io)'s blocking ones:
//! - [`FramedReader::read_frame`] lends each frame from its buffer, with no
//!   allocation and no reference count per frame (a `Stream` item must be
//!   owned), for code that handles a frame before it asks for the next;
//!   it is cancel-safe, so it can sit in a `select!`.
//! - [`FramedWriter::write_frame`] sends a payload over
//!   [`COPY_MAX`] behind its header in vectored writes,
//!   never copied; `Framed` copies every payload into its write buffer.
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

use std::io::{self, IoSlice};

use ::bytes::{Bytes, BytesMut};
use ::tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use ::tokio_util::codec;

use crate::bytes::BytesDecoder;
use crate::codec::{Decoder, Encoder};
use crate::config::Config;
use crate::error::Error;
use crate::io::COPY_MAX;

/// A length-prefix codec for `Framed`: [`Bytes`] frames out, `Bytes`,
/// `&[u8]` or (for layouts with an offset) `(prefix, payload)` in.
///
/// `send` and `feed` take the item type from their argument. `flush` and
/// `close` have no argument, and with three item types the compiler cannot
/// choose one: name it, as in `SinkExt::<Bytes>::flush(&mut framed)`.
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

/// Reads frames from an async byte stream, lending each from its buffer.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use framing::{Config, tokio::FramedReader};
/// let wire: &[u8] = b"\x00\x02hi\x00\x00";
/// let mut reader = FramedReader::new(wire, Config::u16_be());
/// assert_eq!(reader.read_frame().await.unwrap(), Some(&b"hi"[..]));
/// assert_eq!(reader.read_frame().await.unwrap(), Some(&b""[..]));
/// assert_eq!(reader.read_frame().await.unwrap(), None); // clean end
/// # });
/// ```
#[derive(Debug)]
pub struct FramedReader<R> {
    inner: R,
    decoder: Decoder,
}

impl<R: AsyncRead + Unpin> FramedReader<R> {
    /// Wraps `inner`, reading frames laid out as `config` says.
    pub fn new(inner: R, config: Config) -> Self {
        FramedReader {
            inner,
            decoder: Decoder::new(config),
        }
    }

    /// Reads the next frame, borrowed until the next call. `Ok(None)` when
    /// the stream ends cleanly between frames.
    ///
    /// Cancel-safe: dropping the future loses no bytes; the next call goes
    /// on where this one stopped.
    ///
    /// # Errors
    /// [`Error::Truncated`] when the stream ends inside a frame; the
    /// decoder's errors ([`Error::Discarded`] is not fatal: call again);
    /// [`Error::Io`] from the reader.
    pub async fn read_frame(&mut self) -> Result<Option<&[u8]>, Error> {
        loop {
            if let Some(range) = self.decoder.advance()? {
                return Ok(Some(self.decoder.frame_at(range)));
            }
            // Bytes are committed only once a read has completed, so a
            // future dropped while waiting here has changed nothing.
            let n = self.inner.read(self.decoder.read_buf()).await?;
            if n == 0 {
                self.decoder.finish()?;
                return Ok(None);
            }
            self.decoder.commit(n);
        }
    }

    /// The decoder, to inspect what is buffered.
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// The wrapped reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Unwraps the reader; bytes already buffered are lost.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

/// Writes frames to an async byte stream; payloads over
/// [`COPY_MAX`] go out behind their header in vectored
/// writes, never copied.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use framing::{Config, tokio::FramedWriter};
/// let mut writer = FramedWriter::new(Vec::new(), Config::u16_be());
/// writer.write_frame(b"abc").await.unwrap();
/// assert_eq!(writer.get_ref(), b"\x00\x03abc");
/// # });
/// ```
#[derive(Debug)]
pub struct FramedWriter<W> {
    inner: W,
    encoder: Encoder,
    /// Header and payload of a small frame, written with one `write`.
    scratch: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> FramedWriter<W> {
    /// Wraps `inner`, writing frames laid out as `config` says (no offset).
    pub fn new(inner: W, config: Config) -> Self {
        FramedWriter {
            inner,
            encoder: Encoder::new(config),
            scratch: Vec::new(),
        }
    }

    /// Writes one frame, all of it.
    ///
    /// Not cancel-safe: a future dropped mid-frame leaves part of the frame
    /// written, and the stream can only be closed.
    ///
    /// # Errors
    /// The encoder's errors (too large, does not fit, a layout with an
    /// offset); [`Error::Io`] from the writer, `WriteZero` if it accepts
    /// nothing.
    pub async fn write_frame(&mut self, payload: &[u8]) -> Result<(), Error> {
        if payload.len() <= COPY_MAX {
            self.scratch.clear();
            self.encoder.encode(payload, &mut self.scratch)?;
            self.inner.write_all(&self.scratch).await?;
            return Ok(());
        }
        self.encoder.check_no_offset()?;
        let header = self.encoder.header(payload.len())?;
        let mut bufs = [IoSlice::new(&header), IoSlice::new(payload)];
        let mut bufs = &mut bufs[..];
        while !bufs.is_empty() {
            match self.inner.write_vectored(bufs).await {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "writer accepted no bytes of a frame",
                    )
                    .into());
                }
                Ok(n) => IoSlice::advance_slices(&mut bufs, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Flushes the writer.
    ///
    /// # Errors
    /// [`Error::Io`] from the writer.
    pub async fn flush(&mut self) -> Result<(), Error> {
        Ok(self.inner.flush().await?)
    }

    /// Flushes and shuts down the write side (a TCP FIN).
    ///
    /// # Errors
    /// [`Error::Io`] from the writer.
    pub async fn shutdown(&mut self) -> Result<(), Error> {
        Ok(self.inner.shutdown().await?)
    }

    /// The wrapped writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// Unwraps the writer.
    pub fn into_inner(self) -> W {
        self.inner
    }
}
