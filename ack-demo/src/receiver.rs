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
use tracing::{debug, trace, warn};

use crate::error::{Error, ErrorCode};
use crate::heartbeat::Heartbeat;
use crate::wire::{Digest, Message, Token, VERSION};

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
        /// The secret the client presents (see [`Token`]).
        token: Token,
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

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::AwaitHello => "waiting for HELLO",
            Phase::AwaitState => "looking the session up",
            Phase::Running => "running",
            Phase::Done => "closed",
            Phase::Failed => "failed",
        })
    }
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
            debug!(
                bytes = frame.len(),
                "ignoring a frame after the connection failed"
            );
            return Ok(None);
        }
        let result = Message::decode(frame).and_then(|msg| self.on_message(msg));
        if let Err(e) = &result {
            warn!(session = %crate::session_name(self.session), error = %e, "rejecting client");
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
                    token,
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
                Ok(Some(Event::Hello { session, token }))
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
                format!("{msg} is not expected while {phase}"),
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
    /// delivered again). Call it after [`Event::Hello`] and before handing
    /// over the next frame: until then anything but `PING` is refused.
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

    /// Messages delivered and not yet acknowledged, and the window granted
    /// (0 before `WELCOME`): a driver batching reads before its sync keeps
    /// the first well below the second.
    pub fn unacknowledged(&self) -> (u64, u32) {
        (self.delivered.saturating_sub(self.acked), self.window)
    }

    /// Messages delivered so far on this connection's session.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HB: Duration = Duration::from_millis(100);

    fn frame(msg: Message<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        msg.encode(&mut out);
        out
    }

    fn hello(window: u32) -> Vec<u8> {
        frame(Message::Hello {
            session: 9,
            version: VERSION,
            window,
            token: Token([1; 16]),
        })
    }

    fn data(seq: u64) -> Vec<u8> {
        frame(Message::Data {
            seq,
            payload: format!("msg {seq}").as_bytes(),
        })
    }

    /// Everything queued to send, as frames.
    fn sent(rx: &mut Receiver) -> Vec<Vec<u8>> {
        let mut all = Vec::new();
        let mut buf = Vec::new();
        while rx.poll_transmit(&mut buf) {
            all.push(buf.clone());
        }
        all
    }

    fn decoded(frames: &[Vec<u8>]) -> Vec<Message<'_>> {
        frames.iter().map(|f| Message::decode(f).unwrap()).collect()
    }

    /// A receiver past HELLO / WELCOME with `window` granted and
    /// `processed` already durable.
    fn running(window: u32, processed: u64, now: Instant) -> Receiver {
        let mut rx = Receiver::new(
            ReceiverConfig {
                max_window: 64,
                heartbeat: HB,
            },
            now,
        );
        assert_eq!(
            rx.handle(&hello(window), now).unwrap(),
            Some(Event::Hello {
                session: 9,
                token: Token([1; 16])
            })
        );
        let durable = Durable {
            processed,
            count: processed,
            digest: 1,
        };
        rx.welcome(durable, processed);
        let welcome = sent(&mut rx);
        assert_eq!(
            decoded(&welcome),
            [Message::Welcome {
                processed,
                window: window.min(64)
            }]
        );
        rx
    }

    /// Feeds `bad`, expects an ERROR with `code` whose reason contains
    /// `reason`, then checks that a following good DATA is not delivered.
    fn rejects(mut rx: Receiver, bad: &[u8], code: ErrorCode, reason: &str, now: Instant) {
        match rx.handle(bad, now) {
            Err(Error::Protocol { code: c, reason: r }) => {
                assert_eq!(c, code, "{r}");
                assert!(r.contains(reason), "{r:?} lacks {reason:?}");
            }
            other => panic!("accepted: {other:?}"),
        }
        assert!(rx.is_failed());
        let out = sent(&mut rx);
        match decoded(&out).as_slice() {
            [Message::Error { code: c, reason: r }] => {
                assert_eq!(*c, code);
                assert!(r.contains(reason));
            }
            other => panic!("sent {other:?}"),
        }
        for seq in 0..3 {
            assert_eq!(rx.handle(&data(seq), now).unwrap(), None);
        }
        assert!(sent(&mut rx).is_empty());
        assert_eq!(rx.poll_timeout(), None);
    }

    fn fresh(now: Instant) -> Receiver {
        Receiver::new(
            ReceiverConfig {
                max_window: 64,
                heartbeat: HB,
            },
            now,
        )
    }

    #[test]
    fn garbage_and_unknown_types_are_refused() {
        let now = Instant::now();
        rejects(
            fresh(now),
            &[0xde, 0xad, 0xbe, 0xef],
            ErrorCode::UnknownType,
            "unknown message type 0xde",
            now,
        );
        rejects(fresh(now), &[], ErrorCode::Malformed, "empty frame", now);
        rejects(
            running(4, 0, now),
            &[0x42],
            ErrorCode::UnknownType,
            "0x42",
            now,
        );
        rejects(
            running(4, 0, now),
            &[3, 0, 0],
            ErrorCode::Malformed,
            "DATA truncated",
            now,
        );
    }

    #[test]
    fn data_before_hello_is_refused() {
        let now = Instant::now();
        rejects(
            fresh(now),
            &data(0),
            ErrorCode::UnexpectedMessage,
            "DATA{seq 0, 5 bytes} before HELLO",
            now,
        );
    }

    #[test]
    fn a_second_hello_a_bad_version_and_a_zero_window_are_refused() {
        let now = Instant::now();
        rejects(
            running(4, 0, now),
            &hello(4),
            ErrorCode::UnexpectedMessage,
            "HELLO",
            now,
        );
        let v2 = frame(Message::Hello {
            session: 1,
            version: VERSION + 1,
            window: 4,
            token: Token::default(),
        });
        rejects(fresh(now), &v2, ErrorCode::Version, "version 3", now);
        rejects(
            fresh(now),
            &hello(0),
            ErrorCode::WindowExceeded,
            "window 0",
            now,
        );
    }

    #[test]
    fn a_seq_skipping_ahead_is_refused() {
        let now = Instant::now();
        let mut rx = running(8, 0, now);
        assert!(matches!(
            rx.handle(&data(0), now),
            Ok(Some(Event::Deliver { seq: 0, .. }))
        ));
        rejects(
            rx,
            &data(2),
            ErrorCode::SeqGap,
            "DATA seq 2 skips ahead, expected 1",
            now,
        );
    }

    #[test]
    fn a_seq_going_backwards_on_one_connection_is_refused() {
        let now = Instant::now();
        let mut rx = running(8, 0, now);
        for seq in 0..2 {
            assert!(rx.handle(&data(seq), now).unwrap().is_some());
        }
        rejects(
            rx,
            &data(0),
            ErrorCode::SeqBackwards,
            "DATA seq 0 after seq 1",
            now,
        );
    }

    #[test]
    fn more_than_the_window_unacknowledged_is_refused() {
        let now = Instant::now();
        let mut rx = running(2, 0, now);
        for seq in 0..2 {
            assert!(rx.handle(&data(seq), now).unwrap().is_some());
        }
        rejects(
            rx,
            &data(2),
            ErrorCode::WindowExceeded,
            "DATA seq 2 with 2 unacknowledged, window 2",
            now,
        );
    }

    #[test]
    fn the_window_reopens_once_acked() {
        let now = Instant::now();
        let mut rx = running(2, 0, now);
        for seq in 0..2 {
            assert!(rx.handle(&data(seq), now).unwrap().is_some());
        }
        rx.on_durable(Durable {
            processed: 2,
            count: 2,
            digest: 3,
        });
        assert_eq!(decoded(&sent(&mut rx)), [Message::Ack { processed: 2 }]);
        assert!(rx.handle(&data(2), now).unwrap().is_some());
    }

    #[test]
    fn acks_follow_durability_only_and_are_batched() {
        let now = Instant::now();
        let mut rx = running(16, 0, now);
        for seq in 0..5 {
            assert!(rx.handle(&data(seq), now).unwrap().is_some());
        }
        assert!(
            sent(&mut rx).is_empty(),
            "no ACK before anything is durable"
        );
        rx.on_durable(Durable {
            processed: 3,
            count: 3,
            digest: 0,
        });
        rx.on_durable(Durable {
            processed: 5,
            count: 5,
            digest: 0,
        });
        assert_eq!(decoded(&sent(&mut rx)), [Message::Ack { processed: 5 }]);
        // Durability going backwards (a stale report) changes nothing.
        rx.on_durable(Durable {
            processed: 4,
            count: 4,
            digest: 0,
        });
        assert!(sent(&mut rx).is_empty());
    }

    #[test]
    fn resent_duplicates_after_a_reconnect_are_not_delivered_again() {
        let now = Instant::now();
        let mut rx = fresh(now);
        rx.handle(&hello(8), now).unwrap();
        // Seqs 0..2 durable, 2..4 appended by an earlier connection and not
        // durable yet.
        rx.welcome(
            Durable {
                processed: 2,
                count: 2,
                digest: 0,
            },
            4,
        );
        assert_eq!(
            decoded(&sent(&mut rx)),
            [Message::Welcome {
                processed: 2,
                window: 8
            }]
        );
        for seq in 2..4 {
            assert_eq!(rx.handle(&data(seq), now).unwrap(), None);
        }
        assert!(matches!(
            rx.handle(&data(4), now),
            Ok(Some(Event::Deliver { seq: 4, .. }))
        ));
    }

    #[test]
    fn close_ack_waits_for_everything_to_be_durable() {
        let now = Instant::now();
        let mut rx = running(8, 0, now);
        for seq in 0..3 {
            assert!(rx.handle(&data(seq), now).unwrap().is_some());
        }
        assert_eq!(
            rx.handle(&frame(Message::Close { count: 3 }), now).unwrap(),
            None
        );
        rx.on_durable(Durable {
            processed: 2,
            count: 2,
            digest: 0,
        });
        assert_eq!(decoded(&sent(&mut rx)), [Message::Ack { processed: 2 }]);
        assert!(!rx.is_done());
        rx.on_durable(Durable {
            processed: 3,
            count: 3,
            digest: 77,
        });
        assert_eq!(
            decoded(&sent(&mut rx)),
            [Message::CloseAck {
                processed: 3,
                count: 3,
                digest: 77
            }]
        );
        assert!(rx.is_done());
    }

    #[test]
    fn a_close_that_disagrees_with_what_arrived_is_refused() {
        let now = Instant::now();
        let mut rx = running(8, 0, now);
        assert!(rx.handle(&data(0), now).unwrap().is_some());
        rejects(
            rx,
            &frame(Message::Close { count: 5 }),
            ErrorCode::SeqGap,
            "CLOSE{count 5} but 1 messages arrived",
            now,
        );
        let mut rx = running(8, 0, now);
        rx.handle(&frame(Message::Close { count: 0 }), now).unwrap();
        rejects(
            rx,
            &data(0),
            ErrorCode::UnexpectedMessage,
            "DATA seq 0 after CLOSE",
            now,
        );
    }

    #[test]
    fn ping_gets_pong_and_silence_is_death() {
        let start = Instant::now();
        let mut rx = running(8, 0, start);
        rx.handle(&frame(Message::Ping { nonce: 42 }), start)
            .unwrap();
        assert_eq!(decoded(&sent(&mut rx)), [Message::Pong { nonce: 42 }]);
        // Our own PING every interval.
        let t = rx.poll_timeout().unwrap();
        assert_eq!(t, start + HB);
        rx.handle_timeout(t).unwrap();
        assert!(matches!(
            decoded(&sent(&mut rx)).as_slice(),
            [Message::Ping { .. }]
        ));
        rx.handle_timeout(start + 2 * HB).unwrap();
        let _ = sent(&mut rx);
        match rx.handle_timeout(start + 3 * HB) {
            Err(Error::PeerSilent { silent_ms }) => assert_eq!(silent_ms, 300),
            other => panic!("{other:?}"),
        }
        assert_eq!(rx.poll_timeout(), None);
    }

    #[test]
    fn the_peers_error_is_reported_and_not_answered() {
        let now = Instant::now();
        let mut rx = running(8, 0, now);
        let e = frame(Message::Error {
            code: ErrorCode::Storage,
            reason: "disk",
        });
        assert!(matches!(
            rx.handle(&e, now),
            Err(Error::Peer {
                code: ErrorCode::Storage,
                ..
            })
        ));
        assert!(rx.is_failed());
        assert!(sent(&mut rx).is_empty());
    }
}
