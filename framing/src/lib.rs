//! Length-prefixed message framing over a TCP byte stream.
//!
//! TCP delivers bytes, not messages: one read may return half a message or
//! three at once. This crate puts a length in front of each message and finds
//! the messages again, at any read boundary, against any peer.
//!
//! ```text
//! +--------+----------------+-------------------------------+
//! | offset | length field L | L + adjustment bytes          |
//! +--------+----------------+-------------------------------+
//!  e.g. the 4-byte big-endian preset, "hello":
//! +-------------+----------------+
//! | 00 00 00 05 | 68 65 6c 6c 6f |
//! +-------------+----------------+
//! ```
//!
//! Layers, from the inside out:
//! - [`config`]: the layout, built with a builder and checked when built;
//!   presets for 4- and 2-byte big-endian, LEB128 varint and Python
//!   `multiprocessing.connection`.
//! - [`codec`]: the sans-IO core. [`Decoder`] takes bytes and hands back
//!   frames (borrowed or owned); [`Encoder`] writes length fields so that the
//!   payload can go out in a vectored write, never copied.
//!   ([`io::FramedWriter`] still copies payloads of a few KiB behind their
//!   header: one `write` costs less than a `writev` there.)
//! - [`io`]: blocking adapters over `std::io::Read` and `Write`.
//! - [`nonblocking`]: a `mio` adapter with a bounded outgoing queue.
//! - `bytes` (feature `bytes`): frames as `bytes::Bytes` split off a
//!   `BytesMut` without copying, and encoding into `BytesMut`.
//! - `tokio` (feature `tokio`): `framing::tokio::Codec`, a drop-in for
//!   tokio-util's `LengthDelimitedCodec` in `Framed`, `FramedRead` and
//!   `FramedWrite`, with every layout, limit and policy of [`Config`].
//!
//! What it does not do: it never reads the clock, spawns threads, or decides
//! what a frame means.
//!
//! Against hostile peers: the decoder's memory grows only with bytes received,
//! the limit is checked on the frame as delivered (after adjustment), an
//! oversized frame either ends the stream or is skipped exactly
//! ([`Oversized::Discard`]), and every error carries the lengths that explain
//! it. Every rejected frame is logged with `tracing`.

#[cfg(feature = "bytes")]
pub mod bytes;
pub mod codec;
pub mod config;
pub mod error;
pub mod io;
pub mod nonblocking;
#[cfg(feature = "tokio")]
pub mod tokio;

pub use codec::{Decoder, Encoder, Header};
pub use config::{Builder, Config, DEFAULT_MAX_FRAME_LEN, Endian, LengthField, Oversized, Strip};
pub use error::{Error, InvalidLength};

/// The crate README's examples, run as doctests so that they stay true.
#[cfg(all(doctest, feature = "tokio"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
