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
//! Layers, one directory each:
//! - **Wire** ([`wire`]: [`rtp`], [`rtcp`], [`l16`], [`sdp`]): RTP header views and emit
//!   (RFC 3550 §5.1), the RTCP sender report and BYE (§6.4.1, §6.6), L16 payloads and
//!   payload-type choice (RFC 3551 §4.5.11), SDP (RFC 4566).
//! - **Sans-IO cores** ([`core`](mod@crate::core): [`seq`], [`source`], [`jitter`], [`check`],
//!   [`conceal`], [`sender`], [`impair::Impairer`]): state machines that take times as
//!   arguments; they never read a clock or touch a socket, so every test of them runs on a
//!   simulated clock.
//! - **Drivers** ([`driver`]: [`net`], [`impair::Relay`]): blocking sockets,
//!   `clock_nanosleep` to absolute deadlines, the wall clock, signals.
//! - **Measures** ([`eval`], [`quality`], [`synth`]): SNR and segmental SNR after alignment,
//!   the concealment matrix, and seeded test signals.
//! - **Files** ([`files`], [`wav`]): inputs must be regular files, opened without blocking
//!   (a FIFO with no writer is refused at once).
//!
//! The modules of each layer are re-exported at the crate root (`udp_audio::jitter`,
//! `udp_audio::rtp`, ...), the paths programs use.
//!
//! The receiver checks the stream against the format it was given ([`check`]): RTP
//! timestamps advancing at another rate than `--rate`, or packets carrying another channel
//! count than `--channels`, are reported with the value that fits.
//!
//! It does not do RTCP receiver reports, SRTP or any codec other than L16.
pub mod core;
pub mod driver;
pub mod error;
pub mod eval;
pub mod files;
pub mod quality;
pub mod synth;
pub mod wav;
pub mod wire;

pub use crate::core::{check, conceal, jitter, seq, source};
pub use driver::net;
pub use error::{Error, Result};
pub use wire::{l16, rtcp, rtp, sdp};

/// The sender: its sans-IO core ([`crate::core::sender`]) and the wall clock its driver
/// reads ([`ntp_now`]).
pub mod sender {
    pub use crate::core::sender::*;
    pub use crate::driver::net::ntp_now;
}

/// The impairment relay: its sans-IO core ([`crate::core::impair`]) and the blocking driver
/// ([`crate::driver::relay`]).
pub mod impair {
    pub use crate::core::impair::*;
    pub use crate::driver::relay::*;
}
