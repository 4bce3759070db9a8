//! Blocking adapters over `std::io::Read` and `std::io::Write`.
//!
//! [`FramedReader`] reads until a frame is complete, retrying `Interrupted`
//! and taking short reads in its stride; it tells a clean end of stream
//! between frames (`Ok(None)`) from one inside a frame
//! ([`Error::Truncated`], with how many bytes of how many arrived).
//! [`FramedWriter`] writes a large payload behind its header in one vectored
//! write, never copying it; a small one (up to [`COPY_MAX`]) is copied behind
//! its header and sent with one plain `write`, which on Linux costs less than
//! a `writev`. Partial writes are finished either way.

use std::io::{self, IoSlice, Read, Write};

use crate::codec::{Decoder, Encoder};
use crate::config::Config;
use crate::error::Error;

/// Reads frames from a blocking byte stream.
///
/// ```
/// use framing::{Config, io::FramedReader};
/// let wire: &[u8] = b"\x00\x00\x00\x02hi\x00\x00\x00\x00";
/// let mut reader = FramedReader::new(wire, Config::u32_be());
/// assert_eq!(reader.read_frame().unwrap(), Some(&b"hi"[..]));
/// assert_eq!(reader.read_frame().unwrap(), Some(&b""[..]));
/// assert_eq!(reader.read_frame().unwrap(), None); // clean end of stream
/// ```
#[derive(Debug)]
pub struct FramedReader<R> {
    inner: R,
    decoder: Decoder,
}

impl<R: Read> FramedReader<R> {
    /// Wraps `inner`, reading frames laid out as `config` says.
    pub fn new(inner: R, config: Config) -> Self {
        FramedReader {
            inner,
            decoder: Decoder::new(config),
        }
    }

    /// Reads the next frame, borrowed until the next call.
    ///
    /// Returns `Ok(None)` when the stream ends cleanly between frames.
    ///
    /// # Errors
    /// [`Error::Truncated`] when it ends inside a frame; the decoder's errors;
    /// [`Error::Io`] from the reader (`Interrupted` is retried).
    pub fn read_frame(&mut self) -> Result<Option<&[u8]>, Error> {
        loop {
            if let Some(range) = self.decoder.advance()? {
                return Ok(Some(self.decoder.frame_at(range)));
            }
            if self.fill()? == 0 {
                self.decoder.finish()?;
                return Ok(None);
            }
        }
    }

    /// Reads the next frame as an owned `Vec`; same results as
    /// [`read_frame`](FramedReader::read_frame).
    ///
    /// # Errors
    /// As [`read_frame`](FramedReader::read_frame).
    pub fn read_frame_owned(&mut self) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.read_frame()?.map(<[u8]>::to_vec))
    }

    /// One read into the decoder; `Ok(0)` at end of stream.
    fn fill(&mut self) -> Result<usize, Error> {
        loop {
            match self.inner.read(self.decoder.read_buf()) {
                Ok(n) => {
                    self.decoder.commit(n);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
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

    /// The wrapped reader, mutably; reading from it directly loses framing.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Unwraps the reader; bytes already buffered are lost.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

/// Writes frames to a blocking byte stream.
///
/// ```
/// use framing::{Config, io::FramedWriter};
/// let mut writer = FramedWriter::new(Vec::new(), Config::u16_be());
/// writer.write_frame(b"abc").unwrap();
/// assert_eq!(writer.get_ref(), b"\x00\x03abc");
/// ```
#[derive(Debug)]
pub struct FramedWriter<W> {
    inner: W,
    encoder: Encoder,
    /// Header and payload of a small frame, written with one `write`.
    scratch: Vec<u8>,
}

/// Payloads up to this size are copied behind their header and written with
/// one `write`; larger ones go out in a vectored write. On Linux a `writev`
/// on a TCP socket costs more than a `send` (about 140 ns more per call on
/// loopback), and more than copying a few KiB.
pub const COPY_MAX: usize = 8 * 1024;

impl<W: Write> FramedWriter<W> {
    /// Wraps `inner`, writing frames laid out as `config` says (no offset).
    pub fn new(inner: W, config: Config) -> Self {
        FramedWriter {
            inner,
            encoder: Encoder::new(config),
            scratch: Vec::new(),
        }
    }

    /// Writes one frame, all of it. Payloads over [`COPY_MAX`] bytes go out
    /// with their header in vectored writes, not copied; smaller ones are
    /// copied behind the header into a reused buffer and sent with one write.
    ///
    /// # Errors
    /// The encoder's errors (too large, does not fit); [`Error::Io`] from the
    /// writer, `WriteZero` if it accepts nothing.
    pub fn write_frame(&mut self, payload: &[u8]) -> Result<(), Error> {
        if payload.len() <= COPY_MAX && self.encoder.config().offset() == 0 {
            self.scratch.clear();
            self.encoder.encode(payload, &mut self.scratch)?;
            self.inner.write_all(&self.scratch)?;
            return Ok(());
        }
        let header = self.encoder.header(payload.len())?;
        write_all_vectored(
            &mut self.inner,
            &mut [IoSlice::new(&header), IoSlice::new(payload)],
        )?;
        Ok(())
    }

    /// Flushes the writer.
    ///
    /// # Errors
    /// [`Error::Io`] from the writer.
    pub fn flush(&mut self) -> Result<(), Error> {
        Ok(self.inner.flush()?)
    }

    /// The wrapped writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The wrapped writer, mutably.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Unwraps the writer.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

/// Writes every byte of `bufs`, finishing partial vectored writes and
/// retrying `Interrupted`.
pub(crate) fn write_all_vectored(
    w: &mut impl Write,
    mut bufs: &mut [IoSlice<'_>],
) -> io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match w.write_vectored(bufs) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "writer accepted no bytes of a frame",
                ));
            }
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Returns at most `max` bytes per read and fails every other read with
    /// `Interrupted`.
    struct Trickle<'a> {
        data: &'a [u8],
        max: usize,
        interrupt: bool,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.interrupt = !self.interrupt;
            if self.interrupt {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let n = self.max.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// Accepts at most `max` bytes per write.
    struct Narrow {
        out: Vec<u8>,
        max: usize,
    }

    impl Write for Narrow {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = self.max.min(buf.len());
            self.out.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn short_reads_and_interrupts() {
        let mut w = FramedWriter::new(
            Narrow {
                out: vec![],
                max: 3,
            },
            Config::u32_be(),
        );
        let frames: Vec<Vec<u8>> = (0..20).map(|i| vec![i as u8; i * 7]).collect();
        for f in &frames {
            w.write_frame(f).unwrap();
        }
        let wire = w.into_inner().out;
        let mut r = FramedReader::new(
            Trickle {
                data: &wire,
                max: 1,
                interrupt: false,
            },
            Config::u32_be(),
        );
        for f in &frames {
            assert_eq!(r.read_frame().unwrap().unwrap(), &f[..]);
        }
        assert!(r.read_frame().unwrap().is_none());
    }

    #[test]
    fn eof_inside_body_and_header() {
        let mut r = FramedReader::new(&b"\x00\x00\x00\x0aabc"[..], Config::u32_be());
        match r.read_frame() {
            Err(Error::Truncated { expected, received }) => {
                assert_eq!((expected, received), (14, 7));
            }
            other => panic!("expected truncated, got {other:?}"),
        }
        let mut r = FramedReader::new(&b"\x00\x00"[..], Config::u32_be());
        match r.read_frame() {
            Err(Error::Truncated { expected, received }) => {
                assert_eq!((expected, received), (4, 2));
            }
            other => panic!("expected truncated, got {other:?}"),
        }
    }

    #[test]
    fn write_zero_is_an_error() {
        let mut w = FramedWriter::new(
            Narrow {
                out: vec![],
                max: 0,
            },
            Config::u32_be(),
        );
        assert!(
            matches!(w.write_frame(b"x"), Err(Error::Io(e)) if e.kind() == io::ErrorKind::WriteZero)
        );
    }
}
