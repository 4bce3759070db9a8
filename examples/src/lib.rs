//! Runnable demo pairs for the workspace, and the tour that runs them all.
//!
//! Each demo lives in a module with a library API (so the tour and the tests
//! drive it in-process) and a thin binary under `src/bin` that only parses
//! arguments:
//!
//! - [`echo`]: `framed-echo`, a mio echo server over [`framing`] and a
//!   pipelined client that verifies every echo.
//! - [`stream`]: `framed-echo stream-demo`, what `send()` calls become at
//!   the reader, on loopback, with a slow reader and across MTU 576.
//! - [`stream_tour`]: the tour's first section, the stream demo.
//! - [`framing_tour`]: the tour's `framing` section.
//! - [`ack_tour`]: the tour's `ack-demo` section.
//! - [`buffer_tour`]: the tour's `buffer-demo` section.
//! - [`audio_tour`]: the tour's `udp-audio` section.
//! - [`tcp_tour`]: the tour's `tcp-watch` section (root).
//! - [`tour`]: runs every demo on loopback and prints one report.

pub mod ack_tour;
pub mod audio_tour;
pub mod buffer_tour;
pub mod echo;
pub mod error;
pub mod framing_tour;
pub mod preset;
pub mod stream;
pub mod stream_tour;
pub mod tcp_tour;
pub mod tour;

pub use error::Error;
pub use preset::Preset;

/// Installs the workspace's `tracing` subscriber
/// ([`cli_conventions::init_logs`]): stderr, filtered by `RUST_LOG` or by
/// `default` (e.g. `"info"`) when it is unset, coloured only on a terminal.
pub fn init_tracing(default: &str) {
    cli_conventions::init_logs(default);
}

/// A `--listen` / `--connect` value: `HOST:PORT`, where HOST is an IP
/// address or a name (`localhost:7000`). A name resolving to several
/// addresses gives its first IPv4 one, else its first.
///
/// # Errors
/// The value has no port, or the name does not resolve; the message says
/// what was expected.
pub fn socket_addr(value: &str) -> Result<std::net::SocketAddr, String> {
    cli_values::socket_addr(value)
}
