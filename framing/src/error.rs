//! The crate's one error type.
//!
//! Every variant carries the numbers that explain it: the declared length and
//! the limit, how many bytes of how many arrived, the offending length value.

use std::io;

/// Everything that can go wrong while configuring, decoding, encoding or
/// moving frames.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A frame declared (or, when encoding, has) a length above the configured
    /// maximum. `declared` is the frame length after the length adjustment and
    /// stripping, the length `decode` would have returned.
    #[error("frame of {declared} bytes exceeds the maximum frame length of {limit} bytes")]
    FrameTooLarge {
        /// Length of the frame as it would have been delivered.
        declared: u64,
        /// The configured maximum frame length.
        limit: u64,
    },
    /// Under [`Oversized::Discard`](crate::Oversized::Discard): a frame of
    /// `declared` bytes was over `limit`; its bytes are being skipped and the
    /// stream stays usable. Reported once per skipped frame.
    #[error("discarding frame of {declared} bytes: over the maximum frame length of {limit} bytes")]
    Discarded {
        /// Length of the frame as it would have been delivered.
        declared: u64,
        /// The configured maximum frame length.
        limit: u64,
    },
    /// The stream ended inside a frame: `received` of the `expected` bytes
    /// (length field included) arrived before end of file.
    #[error("stream ended inside a frame: {received} of {expected} bytes arrived")]
    Truncated {
        /// Bytes the frame needs, header included (while still inside the
        /// header, the bytes needed to read the length field).
        expected: u64,
        /// Bytes of that frame that did arrive.
        received: u64,
    },
    /// The length field holds a value no valid frame can have.
    #[error("invalid length field: {0}")]
    InvalidLength(#[from] InvalidLength),
    /// A [`Config`](crate::Config) was built with settings that contradict
    /// each other or are out of range.
    #[error("invalid framing configuration: {0}")]
    InvalidConfig(String),
    /// The outgoing queue of a non-blocking stream holds `queued` bytes and
    /// the frame would take it past `limit`: wait until it drains.
    #[error("outgoing queue full: {queued} bytes queued, frame of {frame} bytes, limit {limit}")]
    QueueFull {
        /// Bytes waiting to be written.
        queued: usize,
        /// Bytes the refused frame would have added (header included).
        frame: usize,
        /// The configured bound on queued bytes.
        limit: usize,
    },
    /// The underlying reader or writer failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

/// Why a length field was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidLength {
    /// A LEB128 varint ran past 10 bytes or past 64 bits.
    #[error("varint length overflows 64 bits")]
    VarintOverflow,
    /// The length value plus the signed adjustment, or the frame minus the
    /// stripped bytes, is negative.
    #[error("length {value} with adjustment {adjustment} gives a negative frame length")]
    NegativeAfterAdjustment {
        /// The value read from the length field.
        value: u64,
        /// The configured length adjustment.
        adjustment: i64,
    },
    /// The frame is shorter than the bytes configured to be stripped from it.
    #[error("frame of {frame} bytes is shorter than the {strip} bytes to strip")]
    ShorterThanStrip {
        /// Wire length of the frame, header included.
        frame: u64,
        /// Bytes the layout strips.
        strip: u64,
    },
    /// A Python `multiprocessing.connection` header in `0x80000000..=0xfffffffe`:
    /// a negative signed length that Python itself would misread.
    #[error("Python-compatible header {value:#010x} is a negative length Python would misread")]
    PythonNegative {
        /// The raw 4-byte header value.
        value: u32,
    },
    /// When encoding: the length does not fit the configured field.
    #[error("length {value} does not fit a {width}-byte length field")]
    DoesNotFit {
        /// The length value to be written.
        value: u64,
        /// Width of the field in bytes.
        width: u8,
    },
}

impl Error {
    /// True when the stream cannot be used after this error.
    ///
    /// [`Discarded`](Error::Discarded) and [`QueueFull`](Error::QueueFull)
    /// leave the stream usable; everything else ends it.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, Error::Discarded { .. } | Error::QueueFull { .. })
    }
}
