//! The crate's one error type.

use std::net::SocketAddr;

/// Everything that can go wrong in `buffer-demo`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A socket call failed; `op` names it.
    #[error("{op}: {source}")]
    Socket {
        /// The call or option that failed (`bind`, `setsockopt(SO_RXQ_OVFL)`, ...).
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// Binding the sink's socket failed.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A datagram size outside what the header and the sink's slots allow.
    #[error("datagram size {size} bytes is not between {min} (the header alone) and {max} bytes")]
    DatagramSize {
        /// The size asked for.
        size: usize,
        /// The header's length.
        min: usize,
        /// The sink's receive slot size.
        max: usize,
    },
    /// A configuration value that cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A kernel statistics file could not be read or did not have the expected line.
    #[error("{path}: {reason}")]
    Proc {
        /// The file, e.g. `/proc/net/udp`.
        path: String,
        /// What was missing or unreadable.
        reason: String,
    },
    /// Network namespaces cannot be used here (not root, no `ip`, ...).
    #[error("network namespace unavailable: {reason}")]
    NetnsUnavailable {
        /// Why.
        reason: String,
    },
    /// An external command (`ip`, `tc`, `iperf3`, `strace`) failed.
    #[error("`{command}` failed: {detail}")]
    Command {
        /// The command line.
        command: String,
        /// Exit status and stderr, or the spawn error.
        detail: String,
    },
    /// Drawing the chart failed.
    #[error("chart {path}: {reason}")]
    Chart {
        /// The output file.
        path: String,
        /// The backend's message.
        reason: String,
    },
    /// A stop was requested (SIGINT, SIGTERM or [`crate::stop::Stop::request`])
    /// before the run finished.
    #[error("interrupted before {what} finished")]
    Interrupted {
        /// What was running.
        what: &'static str,
    },
    /// Any other I/O error (output files, threads).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// True for errors found before anything ran: a configuration that
    /// cannot work, or a facility this machine does not offer (exit code 2).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Error::Config(_) | Error::DatagramSize { .. } | Error::NetnsUnavailable { .. }
        )
    }

    pub(crate) fn socket(op: &'static str) -> impl FnOnce(std::io::Error) -> Error {
        move |source| Error::Socket { op, source }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn only_what_stops_a_run_before_it_starts_is_a_usage_error() {
        assert!(Error::Config("x".into()).is_usage());
        assert!(
            Error::DatagramSize {
                size: 1,
                min: 32,
                max: 9216
            }
            .is_usage()
        );
        assert!(Error::NetnsUnavailable { reason: "x".into() }.is_usage());
        let io = || std::io::Error::from(std::io::ErrorKind::AddrInUse);
        assert!(
            !Error::Bind {
                addr: ([127, 0, 0, 1], 1).into(),
                source: io()
            }
            .is_usage()
        );
        assert!(
            !Error::Socket {
                op: "recvmmsg",
                source: io()
            }
            .is_usage()
        );
        assert!(!Error::Interrupted { what: "x" }.is_usage());
    }
}
