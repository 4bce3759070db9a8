//! The crate's one error type, and the codes an `ERROR` message carries.

use std::io;

/// Why a peer was sent an `ERROR` (or sent us one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[repr(u16)]
pub enum ErrorCode {
    /// A frame that is not a well-formed message.
    Malformed = 1,
    /// A message type this version does not know.
    UnknownType = 2,
    /// A message not allowed in the current state (e.g. DATA before HELLO).
    UnexpectedMessage = 3,
    /// A seq ahead of the next expected one (a gap).
    SeqGap = 4,
    /// A seq or count going backwards where that is not allowed.
    SeqBackwards = 5,
    /// More messages unacknowledged than the granted window.
    WindowExceeded = 6,
    /// A protocol version the peer does not speak.
    Version = 7,
    /// A frame over the size limit, or bad framing.
    Framing = 8,
    /// The server failed to make messages durable.
    Storage = 9,
    /// Another connection of the session's owner (same token) took over.
    SessionTakenOver = 10,
    /// `HELLO` for a session bound to another token: refused, the owner's
    /// session goes on untouched.
    TokenMismatch = 11,
    /// The server holds as many sessions as it is allowed to.
    TooManySessions = 12,
    /// A code this version does not know.
    Other = 0xffff,
}

impl std::fmt::Display for ErrorCode {
    /// The code's name as the protocol documents it (`WindowExceeded`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ErrorCode::Malformed => "Malformed",
            ErrorCode::UnknownType => "UnknownType",
            ErrorCode::UnexpectedMessage => "UnexpectedMessage",
            ErrorCode::SeqGap => "SeqGap",
            ErrorCode::SeqBackwards => "SeqBackwards",
            ErrorCode::WindowExceeded => "WindowExceeded",
            ErrorCode::Version => "Version",
            ErrorCode::Framing => "Framing",
            ErrorCode::Storage => "Storage",
            ErrorCode::SessionTakenOver => "SessionTakenOver",
            ErrorCode::TokenMismatch => "TokenMismatch",
            ErrorCode::TooManySessions => "TooManySessions",
            ErrorCode::Other => "Other",
        })
    }
}

impl ErrorCode {
    /// The code for a wire value.
    pub fn from_u16(v: u16) -> ErrorCode {
        match v {
            1 => ErrorCode::Malformed,
            2 => ErrorCode::UnknownType,
            3 => ErrorCode::UnexpectedMessage,
            4 => ErrorCode::SeqGap,
            5 => ErrorCode::SeqBackwards,
            6 => ErrorCode::WindowExceeded,
            7 => ErrorCode::Version,
            8 => ErrorCode::Framing,
            9 => ErrorCode::Storage,
            10 => ErrorCode::SessionTakenOver,
            11 => ErrorCode::TokenMismatch,
            12 => ErrorCode::TooManySessions,
            _ => ErrorCode::Other,
        }
    }
}

/// Everything that can go wrong in `ack-demo`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// We received something that breaks the protocol; the connection gets
    /// an `ERROR{code, reason}` and is closed.
    #[error("protocol violation ({code}): {reason}")]
    Protocol {
        /// The code sent.
        code: ErrorCode,
        /// The reason sent.
        reason: String,
    },
    /// The peer sent us an `ERROR`.
    #[error("peer reported {code}: {reason}")]
    Peer {
        /// Its code.
        code: ErrorCode,
        /// Its reason.
        reason: String,
    },
    /// Nothing heard from the peer for three heartbeat intervals.
    #[error("peer silent for {silent_ms} ms (3 heartbeat intervals): declared dead")]
    PeerSilent {
        /// How long nothing arrived.
        silent_ms: u64,
    },
    /// The close handshake's figures differ from what was sent.
    #[error(
        "close handshake mismatch: server processed {processed} (store holds {count}, digest {digest:016x}), client sent {sent} (digest {expected_digest:016x})"
    )]
    CloseMismatch {
        /// Server's seq cursor.
        processed: u64,
        /// Server's stored count.
        count: u64,
        /// Server's digest.
        digest: u64,
        /// Messages the client sent.
        sent: u64,
        /// The client's digest.
        expected_digest: u64,
    },
    /// The out file or its journal failed or is inconsistent.
    #[error("store {path}: {detail}")]
    Store {
        /// The file.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// Framing failed (oversized or invalid frame, I/O under it).
    #[error(transparent)]
    Framing(#[from] framing::Error),
    /// A socket or file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// Settings that cannot work.
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

    /// A protocol violation.
    pub fn protocol(code: ErrorCode, reason: impl Into<String>) -> Error {
        Error::Protocol {
            code,
            reason: reason.into(),
        }
    }
}
