//! The crate's one error type.

use std::io;

/// What can go wrong running a demo.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Framing failed: a bad frame from the peer, or an I/O error under it.
    #[error(transparent)]
    Framing(#[from] framing::Error),
    /// A socket operation outside the framing layer failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// An echoed frame differs from the frame sent.
    #[error("echo #{index} differs from what was sent: {detail}")]
    EchoMismatch {
        /// Index of the frame, from 0.
        index: u64,
        /// Where it differs.
        detail: String,
    },
    /// The server closed the connection before echoing everything.
    #[error("server closed the connection after {received} of {expected} echoes")]
    ServerClosed {
        /// Echoes received.
        received: u64,
        /// Echoes expected.
        expected: u64,
    },
    /// The connection failed part way through the echoes.
    #[error("after {received} of {expected} echoes: {source}")]
    Interrupted {
        /// Echoes received intact.
        received: u64,
        /// Echoes expected.
        expected: u64,
        /// What failed.
        source: framing::Error,
    },
    /// An `ack-demo` run failed.
    #[error(transparent)]
    Ack(#[from] ack_demo::Error),
    /// A `udp-audio` run failed.
    #[error(transparent)]
    Audio(#[from] udp_audio::Error),
    /// Arguments that cannot work together.
    #[error("invalid settings: {0}")]
    Settings(String),
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
