//! The server's side of one connection as a sans-IO state machine.
//!
//! The driver hands it every frame ([`Receiver::handle`]) and acts on the
//! [`Event`]s: on [`Event::Hello`] it looks the session up in its durable
//! store and answers with [`Receiver::welcome`]; on [`Event::Deliver`] it
//! processes the payload (appends it to the store). Before it waits for more
//! input it makes what it processed durable and reports it with
//! [`Receiver::on_durable`]: only then does the receiver send
//! `ACK{processed}`, and once everything through `CLOSE{count}` is durable,
//! `CLOSE_ACK`.
//!
//! Every violation (DATA before HELLO, a seq gap, more than the window
//! unacknowledged, an unknown type, ...) produces an `ERROR{code, reason}`
//! to send, an [`Error::Protocol`] for the driver, and nothing delivered.

use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::{trace, warn};

use crate::error::{Error, ErrorCode};
use crate::heartbeat::Heartbeat;
use crate::wire::{Digest, Message, VERSION};

/// What the server has made durable for a session.
///
/// [`Durable::default()`] is a session with nothing processed: counts 0 and
/// the digest of no payloads ([`Digest::default`]), so that a session closed
/// with zero messages still verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Durable {
    /// Seqs `0..processed` are durable.
    pub processed: u64,
    /// Messages the store holds for the session.
    pub count: u64,
    /// [`Digest`] of their payloads.
    pub digest: u64,
}

impl Default for Durable {
    fn default() -> Durable {
        Durable {
            processed: 0,
            count: 0,
            digest: Digest::default().value(),
        }
    }
}

/// What the driver must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// A client opened `session`: look it up, then call
    /// [`Receiver::welcome`].
    Hello {
        /// The session id.
        session: u64,
    },
    /// Process this message (exactly once: duplicates are not delivered).
    Deliver {
        /// Its seq.
        seq: u64,
        /// Its payload.
        payload: &'a [u8],
    },
}

/// Limits of the receiving side.
#[derive(Debug, Clone, Copy)]
pub struct ReceiverConfig {
    /// Largest window granted.
    pub max_window: u32,
    /// Heartbeat interval (as the sender's).
    pub heartbeat: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitHello,
    AwaitState,
    Running,
    /// `CLOSE_ACK` sent.
    Done,
    Failed,
}

/// One connection's protocol state. See the module docs.
#[derive(Debug)]
pub struct Receiver {
    config: ReceiverConfig,
    phase: Phase,
    session: Option<u64>,
    asked_window: u32,
    window: u32,
    /// Next seq to deliver.
    delivered: u64,
    /// Last seq received on this connection: seqs must increase.
    last_seq: Option<u64>,
    /// `processed` last sent (WELCOME or ACK).
    acked: u64,
    durable: Durable,
    close_count: Option<u64>,
    welcome_due: bool,
    ping_due: bool,
    pong_due: Option<u64>,
    error_due: Option<(ErrorCode, String)>,
    heartbeat: Heartbeat,
    nonce: u64,
}

impl Receiver {
    /// A receiver for a fresh connection, waiting for `HELLO`.
    pub fn new(config: ReceiverConfig, now: Instant) -> Receiver {
        Receiver {
            config,
            phase: Phase::AwaitHello,
            session: None,
            asked_window: 0,
            window: 0,
            delivered: 0,
            last_seq: None,
            acked: 0,
            durable: Durable::default(),
            close_count: None,
            welcome_due: false,
            ping_due: false,
            pong_due: None,
            error_due: None,
            heartbeat: Heartbeat::new(config.heartbeat, now),
            nonce: 0,
        }
    }

    /// The session, once `HELLO` arrived.
    pub fn session(&self) -> Option<u64> {
        self.session
    }

    /// Takes one received frame.
    ///
    /// # Errors
    /// [`Error::Protocol`] (an `ERROR` is queued, nothing is delivered, close
    /// after sending it); [`Error::Peer`] when the client sent `ERROR`.
    pub fn handle<'a>(
        &mut self,
        frame: &'a [u8],
        now: Instant,
    ) -> Result<Option<Event<'a>>, Error> {
        self.heartbeat.heard(now);
        if self.phase == Phase::Failed {
            return Ok(None);
        }
        let result = Message::decode(frame).and_then(|msg| self.on_message(msg));
        if let Err(e) = &result {
            warn!(session = ?self.session, error = %e, "rejecting client");
            self.fail(e);
        }
        result
    }

    fn on_message<'a>(&mut self, msg: Message<'a>) -> Result<Option<Event<'a>>, Error> {
        trace!(%msg, "received");
        match (self.phase, msg) {
            (_, Message::Error { code, reason }) => Err(Error::Peer {
                code,
                reason: reason.to_owned(),
            }),
            (
                Phase::AwaitHello,
                Message::Hello {
                    session,
                    version,
                    window,
                },
            ) => {
                if version != VERSION {
                    return Err(Error::protocol(
                        ErrorCode::Version,
                        format!("version {version} not supported, expected {VERSION}"),
                    ));
                }
                if window == 0 {
                    return Err(Error::protocol(
                        ErrorCode::WindowExceeded,
                        "window 0: no message could ever be sent",
                    ));
                }
                self.session = Some(session);
                self.asked_window = window;
                self.phase = Phase::AwaitState;
                Ok(Some(Event::Hello { session }))
            }
            (Phase::AwaitHello, msg) => Err(Error::protocol(
                ErrorCode::UnexpectedMessage,
                format!("{msg} before HELLO"),
            )),
            (Phase::Running, Message::Data { seq, payload }) => {
                if let Some(count) = self.close_count {
                    return Err(Error::protocol(
                        ErrorCode::UnexpectedMessage,
                        format!("DATA seq {seq} after CLOSE{{count {count}}}"),
                    ));
                }
                if let Some(last) = self.last_seq.filter(|&last| seq <= last) {
                    return Err(Error::protocol(
                        ErrorCode::SeqBackwards,
                        format!("DATA seq {seq} after seq {last} on this connection"),
                    ));
                }
                self.last_seq = Some(seq);
                if seq < self.delivered {
                    // A resend, after a reconnect, of something already
                    // processed (or being made durable): not delivered again.
                    trace!(seq, "duplicate ignored");
                    return Ok(None);
                }
                if seq > self.delivered {
                    return Err(Error::protocol(
                        ErrorCode::SeqGap,
                        format!("DATA seq {seq} skips ahead, expected {}", self.delivered),
                    ));
                }
                if self.delivered - self.acked >= u64::from(self.window) {
                    return Err(Error::protocol(
                        ErrorCode::WindowExceeded,
                        format!(
                            "DATA seq {seq} with {} unacknowledged, window {}",
                            self.delivered - self.acked,
                            self.window
                        ),
                    ));
                }
                self.delivered += 1;
                Ok(Some(Event::Deliver { seq, payload }))
            }
            (Phase::Running, Message::Close { count }) => {
                if self.close_count.is_some() {
                    return Err(Error::protocol(
                        ErrorCode::UnexpectedMessage,
                        "a second CLOSE",
                    ));
                }
                if count != self.delivered {
                    let code = if count < self.delivered {
                        ErrorCode::SeqBackwards
                    } else {
                        ErrorCode::SeqGap
                    };
                    return Err(Error::protocol(
                        code,
                        format!(
                            "CLOSE{{count {count}}} but {} messages arrived",
                            self.delivered
                        ),
                    ));
                }
                self.close_count = Some(count);
                Ok(None)
            }
            (Phase::Running | Phase::AwaitState, Message::Ping { nonce }) => {
                self.pong_due = Some(nonce);
                Ok(None)
            }
            (_, Message::Pong { .. }) | (Phase::Done, Message::Ping { .. }) => Ok(None),
            (phase, msg) => Err(Error::protocol(
                ErrorCode::UnexpectedMessage,
                format!("{msg} is not expected while {phase:?}"),
            )),
        }
    }

    fn fail(&mut self, error: &Error) {
        self.phase = Phase::Failed;
        if let Error::Protocol { code, reason } = error {
            self.error_due = Some((*code, reason.clone()));
        }
    }

    /// Answers `HELLO` with the session's durable state. `appended` is the
    /// next seq the store would take (at least `durable.processed`: messages
    /// appended by an earlier connection and not yet durable are not
    /// delivered again).
    pub fn welcome(&mut self, durable: Durable, appended: u64) {
        if self.phase != Phase::AwaitState {
            return;
        }
        self.durable = durable;
        self.acked = durable.processed;
        self.delivered = appended.max(durable.processed);
        self.window = self.asked_window.min(self.config.max_window).max(1);
        self.welcome_due = true;
        self.phase = Phase::Running;
    }

    /// Refuses the session (e.g. the store failed): an `ERROR` is queued.
    pub fn refuse(&mut self, code: ErrorCode, reason: impl Into<String>) {
        self.fail(&Error::protocol(code, reason));
    }

    /// The store made the session durable up to `durable`.
    pub fn on_durable(&mut self, durable: Durable) {
        if durable.processed >= self.durable.processed {
            self.durable = durable;
        }
    }

    /// The next message to send, written into `out` (cleared first);
    /// `false` when there is nothing to send now.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool {
        out.clear();
        // WELCOME answers a HELLO that came before any violation.
        if self.welcome_due {
            self.welcome_due = false;
            Message::Welcome {
                processed: self.acked,
                window: self.window,
            }
            .encode(out);
            return true;
        }
        if let Some((code, reason)) = self.error_due.take() {
            Message::Error {
                code,
                reason: &reason,
            }
            .encode(out);
            return true;
        }
        if !matches!(self.phase, Phase::Running | Phase::AwaitState) {
            return false;
        }
        if let Some(nonce) = self.pong_due.take() {
            Message::Pong { nonce }.encode(out);
            return true;
        }
        if self.ping_due {
            self.ping_due = false;
            self.nonce += 1;
            Message::Ping { nonce: self.nonce }.encode(out);
            return true;
        }
        if self.phase != Phase::Running {
            return false;
        }
        if self
            .close_count
            .is_some_and(|count| self.durable.processed >= count)
        {
            self.acked = self.durable.processed;
            self.phase = Phase::Done;
            Message::CloseAck {
                processed: self.durable.processed,
                count: self.durable.count,
                digest: self.durable.digest,
            }
            .encode(out);
            return true;
        }
        if self.durable.processed > self.acked {
            self.acked = self.durable.processed;
            Message::Ack {
                processed: self.acked,
            }
            .encode(out);
            return true;
        }
        false
    }

    /// When [`handle_timeout`](Receiver::handle_timeout) must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::AwaitHello | Phase::AwaitState | Phase::Running => {
                Some(self.heartbeat.deadline())
            }
            Phase::Done | Phase::Failed => None,
        }
    }

    /// Heartbeat duty, as the sender's.
    ///
    /// # Errors
    /// [`Error::PeerSilent`]: close the connection.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Error> {
        if self.poll_timeout().is_none() {
            return Ok(());
        }
        match self.heartbeat.tick(now) {
            Ok(due) => {
                self.ping_due |= due && self.phase == Phase::Running;
                Ok(())
            }
            Err(e) => {
                self.phase = Phase::Failed;
                Err(e)
            }
        }
    }

    /// True once `CLOSE_ACK` is sent.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// True after a protocol failure: send what is queued, then close.
    pub fn is_failed(&self) -> bool {
        self.phase == Phase::Failed
    }

    /// Messages delivered so far on this connection's session.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }
}
