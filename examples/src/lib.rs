//! Runnable demo pairs for the workspace, and the tour that runs them all.
//!
//! Each demo lives in a module with a library API (so the tour and the tests
//! drive it in-process) and a thin binary under `src/bin` that only parses
//! arguments:
//!
//! - [`echo`]: `framed-echo`, a mio echo server over [`framing`] and a
//!   pipelined client that verifies every echo.
//! - [`ack_tour`]: the tour's `ack-demo` section.
//! - [`audio_tour`]: the tour's `udp-audio` section.
//! - [`tcp_tour`]: the tour's `tcp-watch` section (root).
//! - [`tour`]: runs every demo on loopback and prints one report.

pub mod ack_tour;
pub mod audio_tour;
pub mod echo;
pub mod error;
pub mod preset;
pub mod tcp_tour;
pub mod tour;

pub use error::Error;
pub use preset::Preset;

/// Installs a `tracing` subscriber writing to stderr, filtered by `RUST_LOG`,
/// or by `default` (e.g. `"info"`) when `RUST_LOG` is not set.
pub fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // A second call (tests, the tour) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
