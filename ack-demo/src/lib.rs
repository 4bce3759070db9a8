//! Acknowledged messaging over framed TCP.
//!
//! A successful `send()` only means the local kernel took the bytes. This
//! crate adds what TCP does not give: an application-level `ACK` that means
//! *processed and durable*, resumption after a crash on either side without
//! losing or repeating a message, a heartbeat that finds a dead peer in
//! seconds, and a close handshake (`CLOSE` / `CLOSE_ACK` with count and
//! digest) that proves everything was processed before either side closes.
//!
//! Layers:
//! - [`wire`]: the messages and their byte layouts;
//! - [`sender`], [`receiver`]: sans-IO state machines (`handle(msg, now)`,
//!   `poll_transmit()`, `poll_timeout()`);
//! - [`store`]: the server's durable out file and journal;
//! - [`client`], [`server`]: thin blocking drivers; [`naive`]: the classic
//!   send-shutdown-close without acknowledgements, for comparison;
//! - [`kernel`]: what the kernel says about a socket (SIOCOUTQ, TCP_INFO,
//!   ...), beside what the application knows;
//! - [`relay`]: a TCP relay adding delay or blackholing, for experiments;
//! - [`bench`](mod@bench): acknowledged messages/s against the window, loopback and
//!   through the relay, beside an unacknowledged stream.

pub mod bench;
pub mod client;
pub mod error;
pub mod heartbeat;
pub mod kernel;
pub mod naive;
pub mod receiver;
pub mod relay;
pub mod sender;
pub mod server;
pub mod store;
pub mod wire;

pub use error::{Error, ErrorCode};

/// The frame layout: the 4-byte big-endian preset, frames up to 1 MiB plus
/// the message header.
pub fn framing_config() -> framing::Config {
    framing::Config::u32_be()
        .to_builder()
        .max_frame_len(MAX_PAYLOAD + wire::DATA_HEADER_LEN)
        .build()
        .expect("a valid layout")
}

/// Largest DATA payload.
pub const MAX_PAYLOAD: usize = 1024 * 1024;

/// Installs a `tracing` subscriber on stderr, filtered by `RUST_LOG` or
/// `default`.
pub fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
