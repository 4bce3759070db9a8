//! `framed-echo`: a framed echo server and a pipelined client that checks
//! every echo.
//!
//! The server is one `mio` event loop over many connections, each a
//! [`framing::nonblocking::FramedStream`]. Every frame read is queued back
//! to its sender; when a client stops reading, its outgoing queue fills, the
//! server stops reading from it and TCP flow control pushes back on that
//! client alone. A client that sends a frame over the limit or a length no
//! frame can have is logged with the reason and dropped; the others carry
//! on.
//!
//! The client writes from one thread and reads from another, so frames are
//! pipelined (no waiting for each echo), and compares each echo byte for
//! byte with what it sent. A server that goes silent for the client's
//! timeout is reported as such rather than waited on for ever.

mod client;
mod server;

pub use client::{ClientReport, ClientSettings, DEFAULT_TIMEOUT, run_client, run_client_until};
pub use server::{
    ACCEPT_RETRY, DEFAULT_BACKLOG, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_BUFFERED_TOTAL, DroppedClient,
    EchoServer, ServerSettings, ServerStats, StopHandle,
};
