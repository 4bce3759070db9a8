//! Errors that stop a whole run (a capture that cannot be read, a lab that
//! cannot be set up). What is wrong with one packet is not an error: it is
//! counted by kind ([`crate::packet::Malformed`]) and the run goes on.

use std::path::PathBuf;

/// Why a run of `tcp-watch` stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be opened, read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The input is not a capture this program reads.
    #[error("{what}: {reason}")]
    Capture {
        /// The file (or `-` for stdin).
        what: String,
        /// What was wrong, and what was expected.
        reason: String,
    },
    /// A command the lab runs failed or could not be started.
    #[error("`{command}` failed: {reason}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status and stderr, or why it did not start.
        reason: String,
    },
    /// Settings that cannot work.
    #[error("{0}")]
    Settings(String),
}
