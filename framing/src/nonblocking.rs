//! A non-blocking framed stream for `mio` event loops.
//!
//! [`FramedStream`] wraps any non-blocking `Read + Write` (a
//! `mio::net::TcpStream` in practice). On a readable event,
//! [`read_frames`](FramedStream::read_frames) reads until `WouldBlock` and
//! hands over every complete frame; frames to send go to an [`Outbox`] that
//! [`write_ready`](FramedStream::write_ready) drains on writable events,
//! finishing partial writes.
//!
//! Backpressure: the outbox has a bound on queued bytes. Past it,
//! [`Outbox::try_send`] refuses frames ([`Error::QueueFull`]) and
//! `read_frames` stops reading from the socket ([`ReadStatus::Paused`]) so
//! that TCP flow control slows the peer down instead of memory growing.
//!
//! Edge-triggered readiness: `mio` reports readable only when new bytes
//! arrive, so after `Paused` call `read_frames` again once the outbox has
//! drained below its bound, without waiting for an event.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};

use crate::codec::{Decoder, Encoder};
use crate::config::Config;
use crate::error::Error;

/// Default bound on bytes queued for writing: 1 MiB.
pub const DEFAULT_MAX_QUEUED: usize = 1024 * 1024;

/// Payloads at least this large given by value are queued without a copy;
/// smaller ones are coalesced so that many frames go out in one write.
const OWN_SEGMENT: usize = 16 * 1024;

/// Most segments handed to one vectored write.
const MAX_IOVECS: usize = 64;

/// What the read side of the stream is doing after
/// [`read_frames`](FramedStream::read_frames).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadStatus {
    /// Read until `WouldBlock`; wait for the next readable event.
    Open,
    /// Stopped reading because the outbox is over its bound; call
    /// `read_frames` again once [`Outbox::is_full`] is false.
    Paused,
    /// The peer closed its side cleanly, between frames.
    Closed,
}

/// Frames waiting to be written, with a bound on their bytes.
#[derive(Debug)]
pub struct Outbox {
    encoder: Encoder,
    segments: VecDeque<Vec<u8>>,
    /// Bytes of the front segment already written.
    front_written: usize,
    queued: usize,
    limit: usize,
    /// Whether the back segment may take more small frames.
    back_open: bool,
    spare: Vec<u8>,
}

impl Outbox {
    fn new(config: Config, limit: usize) -> Outbox {
        Outbox {
            encoder: Encoder::new(config),
            segments: VecDeque::new(),
            front_written: 0,
            queued: 0,
            limit,
            back_open: false,
            spare: Vec::new(),
        }
    }

    /// Bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.queued
    }

    /// The bound on queued bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// True when the queue has reached its bound: stop producing until it
    /// drains.
    pub fn is_full(&self) -> bool {
        self.queued >= self.limit
    }

    /// True when nothing is waiting to be written.
    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Queues a frame (copying the payload), even past the bound: for frames
    /// already received that must not be lost. Check
    /// [`is_full`](Outbox::is_full) to stop producing more.
    ///
    /// # Errors
    /// The encoder's errors (frame too large, length does not fit).
    pub fn send(&mut self, payload: &[u8]) -> Result<(), Error> {
        let header = self.encoder.header(payload.len())?;
        let back = self.open_back(header.len() + payload.len());
        back.extend_from_slice(&header);
        back.extend_from_slice(payload);
        self.queued += header.len() + payload.len();
        Ok(())
    }

    /// Queues a frame only if it keeps the queue within its bound (a frame
    /// into an empty queue is always taken, so large frames still go out).
    ///
    /// # Errors
    /// [`Error::QueueFull`] with the queued bytes and the bound, the frame
    /// not queued; the encoder's errors.
    pub fn try_send(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.check_room(payload.len())?;
        self.send(payload)
    }

    /// Queues a frame without copying a large payload; bounded as
    /// [`try_send`](Outbox::try_send).
    ///
    /// # Errors
    /// As [`try_send`](Outbox::try_send).
    pub fn try_send_owned(&mut self, payload: Vec<u8>) -> Result<(), Error> {
        self.check_room(payload.len())?;
        if payload.len() < OWN_SEGMENT {
            return self.send(&payload);
        }
        let header = self.encoder.header(payload.len())?;
        self.open_back(header.len()).extend_from_slice(&header);
        self.queued += header.len() + payload.len();
        self.segments.push_back(payload);
        self.back_open = false;
        Ok(())
    }

    fn check_room(&self, payload_len: usize) -> Result<(), Error> {
        let frame = payload_len + self.encoder.config().length_field().max_len();
        if self.queued > 0 && self.queued + frame > self.limit {
            return Err(Error::QueueFull {
                queued: self.queued,
                frame,
                limit: self.limit,
            });
        }
        Ok(())
    }

    /// The segment to append `len` bytes to: the open back one, or a new one.
    fn open_back(&mut self, len: usize) -> &mut Vec<u8> {
        let reuse = self.back_open
            && self
                .segments
                .back()
                .is_some_and(|b| b.len() + len <= OWN_SEGMENT.max(b.capacity()));
        if !reuse {
            let mut seg = std::mem::take(&mut self.spare);
            seg.clear();
            self.segments.push_back(seg);
            self.back_open = true;
        }
        self.segments
            .back_mut()
            .expect("a back segment was just ensured")
    }

    /// Writes as much as the writer takes. `Ok(true)` when the queue is empty.
    fn write_to(&mut self, w: &mut impl Write) -> io::Result<bool> {
        while !self.segments.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            for (i, seg) in self.segments.iter().take(MAX_IOVECS).enumerate() {
                let from = if i == 0 { self.front_written } else { 0 };
                slices[i] = IoSlice::new(&seg[from..]);
                count += 1;
            }
            match w.write_vectored(&slices[..count]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "socket accepted no bytes",
                    ));
                }
                Ok(n) => self.consume(n),
                Err(e) if would_block(&e) => return Ok(false),
                Err(e) if interrupted(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Drops `n` written bytes from the front of the queue.
    fn consume(&mut self, mut n: usize) {
        self.queued -= n;
        while n > 0 {
            let front = self.segments.front().expect("written bytes were queued");
            let left = front.len() - self.front_written;
            if n < left {
                self.front_written += n;
                return;
            }
            n -= left;
            self.front_written = 0;
            let done = self.segments.pop_front().expect("front exists");
            if self.segments.is_empty() {
                self.back_open = false;
            }
            if done.capacity() <= 4 * OWN_SEGMENT {
                self.spare = done;
            }
        }
    }
}

/// A framed, non-blocking stream: a decoder on the read side, an [`Outbox`]
/// on the write side.
#[derive(Debug)]
pub struct FramedStream<S> {
    io: S,
    decoder: Decoder,
    outbox: Outbox,
    /// Bytes read from and written to `io`, for idle detection.
    bytes_read: u64,
    bytes_written: u64,
}

impl<S: Read + Write> FramedStream<S> {
    /// Wraps a non-blocking stream, with the default bound on queued bytes.
    pub fn new(io: S, config: Config) -> Self {
        Self::with_max_queued(io, config, DEFAULT_MAX_QUEUED)
    }

    /// Wraps a non-blocking stream with this bound on queued bytes.
    pub fn with_max_queued(io: S, config: Config, max_queued: usize) -> Self {
        FramedStream {
            io,
            decoder: Decoder::new(config),
            outbox: Outbox::new(config, max_queued),
            bytes_read: 0,
            bytes_written: 0,
        }
    }

    /// Reads until the socket would block, calling `on_frame` with every
    /// complete frame and the outbox (to answer it). Stops early, with
    /// [`ReadStatus::Paused`], while the outbox is full.
    ///
    /// # Errors
    /// - [`Error::Discarded`] (discard policy): a frame is being skipped; the
    ///   stream is still usable, call `read_frames` again at once;
    /// - [`Error::Truncated`]: the peer closed inside a frame;
    /// - the decoder's fatal errors, `on_frame`'s errors, [`Error::Io`].
    pub fn read_frames<F>(&mut self, mut on_frame: F) -> Result<ReadStatus, Error>
    where
        F: FnMut(&[u8], &mut Outbox) -> Result<(), Error>,
    {
        loop {
            // Frames already buffered first: a previous call may have paused
            // or stopped at a discarded frame.
            while !self.outbox.is_full() {
                match self.decoder.advance()? {
                    Some(range) => on_frame(self.decoder.frame_at(range), &mut self.outbox)?,
                    None => break,
                }
            }
            if self.outbox.is_full() {
                return Ok(ReadStatus::Paused);
            }
            match self.io.read(self.decoder.read_buf()) {
                Ok(0) => {
                    self.decoder.finish()?;
                    return Ok(ReadStatus::Closed);
                }
                Ok(n) => {
                    self.bytes_read += n as u64;
                    self.decoder.commit(n);
                }
                Err(e) if would_block(&e) => return Ok(ReadStatus::Open),
                Err(e) if interrupted(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Writes queued frames until the socket would block. `Ok(true)` when
    /// everything queued is written (stop asking for writable events).
    ///
    /// # Errors
    /// [`Error::Io`] from the socket.
    pub fn write_ready(&mut self) -> Result<bool, Error> {
        let before = self.outbox.queued;
        let result = self.outbox.write_to(&mut self.io);
        self.bytes_written += (before - self.outbox.queued) as u64;
        Ok(result?)
    }

    /// Bytes read from the stream so far (frames, partial frames and bytes
    /// of discarded frames alike): a peer that makes progress moves it.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Bytes written to the stream so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Gives back the read buffer's memory when nothing is buffered and it
    /// holds more than `keep` bytes, so that a connection that once received
    /// a large frame does not hold its buffer while idle. Returns the bytes
    /// released.
    ///
    /// Only a decoder between frames (nothing buffered, no frame being
    /// discarded, no fatal error: those keep the offending header buffered)
    /// is replaced by a fresh one, so no framing state is lost; its
    /// [`discarded_frames`](Decoder::discarded_frames) count restarts at 0
    /// and its read size starts small again.
    pub fn release_read_buffer(&mut self, keep: usize) -> usize {
        let held = self.decoder.capacity();
        if held <= keep || self.decoder.buffered() > 0 || self.decoder.finish().is_err() {
            return 0;
        }
        self.decoder = Decoder::new(*self.decoder.config());
        held - self.decoder.capacity()
    }

    /// The outgoing queue.
    pub fn outbox(&mut self) -> &mut Outbox {
        &mut self.outbox
    }

    /// The decoder, to inspect what is buffered.
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// The wrapped stream (to register it with a `mio::Poll`).
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// The wrapped stream, mutably (to register it with a `mio::Registry`).
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }

    /// Unwraps the stream; buffered and queued bytes are lost.
    pub fn into_inner(self) -> S {
        self.io
    }
}

/// `WouldBlock`: the socket is not actually ready, wait for the next event.
fn would_block(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::WouldBlock
}

/// `Interrupted`: a signal arrived mid-call; try again.
fn interrupted(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::Interrupted
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An in-memory peer: reads come from `input` then `WouldBlock`; writes
    /// are kept.
    struct Pipe {
        input: Vec<u8>,
        at: usize,
        output: Vec<u8>,
    }

    impl Read for Pipe {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.at == self.input.len() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.input.len() - self.at);
            buf[..n].copy_from_slice(&self.input[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn frame(len: usize) -> Vec<u8> {
        let mut bytes = (len as u32).to_be_bytes().to_vec();
        bytes.resize(4 + len, 7);
        bytes
    }

    fn echo(stream: &mut FramedStream<Pipe>) -> ReadStatus {
        stream
            .read_frames(|frame, outbox| outbox.send(frame))
            .unwrap()
    }

    #[test]
    fn counts_bytes_moved_both_ways() {
        let mut input = frame(10);
        input.extend_from_slice(&[0, 0]); // half a header
        let pipe = Pipe {
            input,
            at: 0,
            output: Vec::new(),
        };
        let mut stream = FramedStream::new(pipe, Config::u32_be());
        assert_eq!(echo(&mut stream), ReadStatus::Open);
        assert_eq!(stream.bytes_read(), 16);
        assert_eq!(stream.bytes_written(), 0);
        assert!(stream.write_ready().unwrap());
        assert_eq!(stream.bytes_written(), 14);
        assert_eq!(stream.get_ref().output, frame(10));
    }

    #[test]
    fn releases_a_large_read_buffer_only_between_frames() {
        let big = 3 * 1024 * 1024;
        let pipe = Pipe {
            input: frame(big),
            at: 0,
            output: Vec::new(),
        };
        let mut stream = FramedStream::with_max_queued(pipe, Config::u32_be(), 16 << 20);
        // All but the last byte: a partial frame is never released.
        stream.get_mut().input.pop();
        assert_eq!(echo(&mut stream), ReadStatus::Open);
        let held = stream.decoder().capacity();
        assert!(held > big);
        assert_eq!(stream.release_read_buffer(1024), 0);
        assert_eq!(stream.decoder().capacity(), held);
        // The last byte completes it: now the buffer goes.
        stream.get_mut().input.push(7);
        assert_eq!(echo(&mut stream), ReadStatus::Open);
        assert_eq!(stream.decoder().buffered(), 0);
        assert_eq!(stream.release_read_buffer(held), 0, "not above keep");
        assert_eq!(stream.release_read_buffer(1024), held);
        assert_eq!(stream.decoder().capacity(), 0);
        // The stream still frames.
        stream.get_mut().input.extend_from_slice(&frame(5));
        assert_eq!(echo(&mut stream), ReadStatus::Open);
        assert!(stream.write_ready().unwrap());
        assert_eq!(stream.get_ref().output.len(), 4 + big + 4 + 5);
    }

    #[test]
    fn keeps_a_decoder_that_holds_a_fatal_header() {
        let pipe = Pipe {
            input: vec![0xff, 0xff, 0xff, 0xff],
            at: 0,
            output: Vec::new(),
        };
        let mut stream = FramedStream::new(pipe, Config::u32_be());
        assert!(stream.read_frames(|f, o| o.send(f)).is_err());
        assert_eq!(stream.release_read_buffer(0), 0);
        assert!(stream.read_frames(|f, o| o.send(f)).is_err());
    }
}
