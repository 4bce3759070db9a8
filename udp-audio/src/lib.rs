//! RTP/L16 audio over UDP: a paced streamer, a receiver with an adaptive jitter buffer and
//! loss concealment, an impairment relay and objective quality measures.
//!
//! ```text
//!  WAV ─▶ wav ─▶ sender::Packetizer ─▶ rtp + l16 ─▶ net::send_audio (absolute deadlines)
//!                                                        │ UDP (optionally through impair::Relay)
//!                                                        ▼
//!  WAV ◀─ wav::WavSink ◀─ jitter::JitterBuffer (source, seq: RFC 3550 A.1/A.8, conceal) ◀─ net::Receiver
//! ```
//!
//! Layers:
//! - **Wire** ([`rtp`], [`l16`]): RTP header views and emit (RFC 3550 §5.1), L16 payloads,
//!   payload-type choice and SDP (RFC 3551 §4.5.11, RFC 4566).
//! - **Sans-IO cores** ([`seq`], [`source`], [`jitter`], [`check`], [`conceal`], [`sender`],
//!   [`impair::Impairer`]): state machines that take times as arguments; they never read a clock or touch a socket,
//!   so every test of them runs on a simulated clock.
//! - **Drivers** ([`net`], [`impair::Relay`]): blocking sockets, `clock_nanosleep` to absolute
//!   deadlines, signals.
//! - **Measures** ([`eval`], [`quality`], [`synth`]): SNR and segmental SNR after alignment,
//!   the concealment matrix, and seeded test signals.
//! - **Files** ([`files`], [`wav`]): inputs must be regular files, opened without blocking
//!   (a FIFO with no writer is refused at once).
//!
//! The receiver checks the stream against the format it was given ([`check`]): RTP
//! timestamps advancing at another rate than `--rate`, or packets carrying another channel
//! count than `--channels`, are reported with the value that fits.
//!
//! It does not do RTCP receiver reports, SRTP or any codec other than L16.
pub mod check;
pub mod conceal;
pub mod error;
pub mod eval;
pub mod files;
pub mod impair;
pub mod jitter;
pub mod l16;
pub mod net;
pub mod quality;
pub mod rtp;
pub mod sender;
pub mod seq;
pub mod source;
pub mod synth;
pub mod wav;
pub use error::{Error, Result};
