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
    /// The server went silent: no byte within the client's timeout.
    #[error(
        "no answer from {addr} for {waited_ms} ms while {doing}, after {received} of {expected} echoes: \
         the server accepted but stays silent (raise --timeout if it is only slow)"
    )]
    Timeout {
        /// The server.
        addr: std::net::SocketAddr,
        /// The timeout, in milliseconds.
        waited_ms: u64,
        /// What the client was waiting for.
        doing: String,
        /// Echoes received intact.
        received: u64,
        /// Echoes expected.
        expected: u64,
    },
    /// A helper process (the tour's `ack-demo` server) failed to start.
    #[error("{what} exited ({status}) before it was ready; it said: {stderr}")]
    ChildFailed {
        /// Which process.
        what: String,
        /// Its exit status, or how it was found wanting.
        status: String,
        /// Its standard error (trimmed), or a note that it printed nothing.
        stderr: String,
    },
    /// An `ack-demo` run failed.
    #[error(transparent)]
    Ack(#[from] ack_demo::Error),
    /// A `udp-audio` run failed.
    #[error(transparent)]
    Audio(#[from] udp_audio::Error),
    /// A command the stream demo's namespaces need (`ip`, `tc`,
    /// `ethtool`) failed, as `tcp-watch`'s lab runner reports it.
    #[error(transparent)]
    Command(#[from] tcp_watch::Error),
    /// A stream demo's receiver saw something other than what was sent.
    #[error("{0}")]
    StreamMismatch(String),
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
