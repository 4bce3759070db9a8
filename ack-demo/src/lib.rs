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

//!
//! # Driving the state machines
//!
//! Both machines are sans-IO: they never read the clock, sleep or touch a
//! socket; every call that depends on time takes `now`. Frames are the
//! [`framing`] 4-byte big-endian preset ([`framing_config`]); the machines
//! take and produce frame *contents* (type byte onwards).
//!
//! A client driver, per connection:
//!
//! ```text
//! sender.on_connected(now)                  // queues HELLO
//! loop {
//!     while sender.poll_transmit(&mut msg) { encode msg as a frame; write }
//!     if sender.is_done()   { shutdown(Write); read to EOF; close; return }
//!     if sender.is_failed() { write what is queued (ERROR); give up }
//!     read frames until sender.poll_timeout():
//!         frame      -> sender.handle(frame, now)?   (Err: see below)
//!         timed out -> sender.handle_timeout(now)   (Err(PeerSilent): lost)
//!         EOF/reset  -> lost
//! }
//! lost: sender.on_disconnected(); reconnect with backoff; on_connected again
//! ```
//!
//! `Sender::handle` errors: [`Error::Peer`] (the server's `ERROR`) and
//! [`Error::Protocol`] / [`Error::CloseMismatch`] leave the sender failed
//! ([`sender::Sender::is_failed`]); no reconnect helps. Anything else a
//! driver sees (I/O, EOF, [`Error::PeerSilent`]) is a lost connection: the
//! next connection's `WELCOME` says what the server has, and the rest of the
//! window is sent again ([`sender::SenderStats::resent`]). At any moment
//! [`sender::Sender::unconfirmed`] is the range of seqs sent and not
//! confirmed processed.
//!
//! A server driver, per connection (many connections share one
//! [`store::Store`]):
//!
//! ```text
//! rx = Receiver::new(config, now)
//! loop {
//!     for each frame already received: match rx.handle(frame, now)? {
//!         Some(Event::Hello { session, token }) ->
//!             store.sync(); c = store.claim(session, token, wall_clock)?  // Err: rx.refuse(code)
//!             rx.welcome(c.durable, c.appended)
//!         Some(Event::Deliver { seq, payload }) -> store.append(session, c.generation, seq, payload)
//!         None -> {}
//!     }
//!     before waiting for input: store.sync(); rx.on_durable(store.durable(session))
//!     while rx.poll_transmit(&mut msg) { write }      // ACK, CLOSE_ACK, PONG, ...
//!     if rx.is_failed() { shut down writing, drain (bounded), close }
//!     wait for input until rx.poll_timeout(); on timeout rx.handle_timeout(now)
//! }
//! at the end: store.release(session, c.generation, wall_clock)
//! ```
//!
//! A session belongs to the client holding its [`wire::Token`] (128 random
//! bits drawn with `getrandom` at the session's first `HELLO`): a `HELLO`
//! with another token gets `ERROR{TokenMismatch}` and changes nothing.
//! `ack-demo client` prints the token it drew on stderr; `--session N
//! --token HEX` resumes session N from another run.
//!
//! `ACK`s go out only after [`receiver::Receiver::on_durable`], so one sync
//! per read batch gives batched, cumulative acks. On a violation
//! `Receiver::handle` returns [`Error::Protocol`] with the code and reason it
//! queued as `ERROR`, delivers nothing more, and ignores later input.

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

/// A session id for the logs: the number, or `none` before `HELLO`.
pub(crate) fn session_name(session: Option<u64>) -> String {
    session.map_or_else(|| "none".to_owned(), |s| s.to_string())
}
