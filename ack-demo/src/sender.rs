//! The client's side of the protocol as a sans-IO state machine.
//!
//! The driver owns the socket and the clock. It tells the sender when a
//! connection is up ([`Sender::on_connected`]) or lost
//! ([`Sender::on_disconnected`]), hands it every frame received
//! ([`Sender::handle`]), sends what [`Sender::poll_transmit`] produces, and
//! calls [`Sender::handle_timeout`] when [`Sender::poll_timeout`] passes.
//!
//! At most `window` messages are unacknowledged. After a reconnect the
//! sender says `HELLO` again; the server's `WELCOME{processed}` says what is
//! durable and everything after it that was sent is sent again (counted as
//! resent). Once every message is sent it says `CLOSE{count}` and waits for
//! `CLOSE_ACK`, whose count and digest must match what it sent.

use std::ops::Range;
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::{debug, trace, warn};

use crate::error::{Error, ErrorCode};
use crate::heartbeat::Heartbeat;
use crate::wire::{Digest, Message, Token, VERSION, demo_payload};

/// Produces the payload of each seq on demand, so that a run of millions of
/// messages holds none of them in memory.
pub trait Payloads {
    /// Writes the payload of `seq` into `out` (cleared first).
    fn payload(&self, seq: u64, out: &mut Vec<u8>);
}

/// The demo's payloads: `msg <seq> ` padded with `.` to `size` bytes.
#[derive(Debug, Clone, Copy)]
pub struct DemoPayloads {
    /// Bytes per payload.
    pub size: usize,
}

impl Payloads for DemoPayloads {
    fn payload(&self, seq: u64, out: &mut Vec<u8>) {
        demo_payload(seq, self.size, out);
    }
}

/// What the sender is configured to do.
#[derive(Debug, Clone, Copy)]
pub struct SenderConfig {
    /// Session id; the same id resumes the same session.
    pub session: u64,
    /// The session's secret, sent in every `HELLO`: draw it with
    /// [`Token::random`] when the session starts and keep it to resume.
    pub token: Token,
    /// Most unacknowledged messages (the server may grant fewer).
    pub window: u32,
    /// Messages in the session: seqs `0..count`.
    pub count: u64,
    /// Heartbeat interval: a `PING` this often; silence for three intervals
    /// declares the peer dead.
    pub heartbeat: Duration,
}

/// Counters for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SenderStats {
    /// Distinct messages sent at least once (for a session resumed from an
    /// earlier run, the ones that run had processed count as sent).
    pub sent: u64,
    /// Messages confirmed processed.
    pub acked: u64,
    /// Messages sent again after a reconnect.
    pub resent: u64,
    /// Connections after the first.
    pub reconnects: u64,
    /// `PING`s sent.
    pub pings: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Disconnected,
    /// `HELLO` sent or due; waiting for `WELCOME`.
    Hello,
    Running,
    Done,
    Failed,
}

/// The client's protocol state. See the module docs.
#[derive(Debug)]
pub struct Sender<P> {
    config: SenderConfig,
    payloads: P,
    phase: Phase,
    window: u32,
    /// Next seq never sent before.
    next_new: u64,
    /// Digest of payloads `0..next_new`.
    digest: Digest,
    /// Count confirmed processed.
    acked: u64,
    /// Next seq to send again; `next_new` when nothing is to be resent.
    resend: u64,
    hello_due: bool,
    close_sent: bool,
    ping_due: bool,
    pong_due: Option<u64>,
    error_due: Option<(ErrorCode, String)>,
    heartbeat: Heartbeat,
    nonce: u64,
    connections: u64,
    stats: SenderStats,
    scratch: Vec<u8>,
}

impl<P: Payloads> Sender<P> {
    /// A sender that has not connected yet.
    pub fn new(config: SenderConfig, payloads: P, now: Instant) -> Sender<P> {
        Sender {
            config,
            payloads,
            phase: Phase::Disconnected,
            window: config.window.max(1),
            next_new: 0,
            digest: Digest::default(),
            acked: 0,
            resend: 0,
            hello_due: false,
            close_sent: false,
            ping_due: false,
            pong_due: None,
            error_due: None,
            heartbeat: Heartbeat::new(config.heartbeat, now),
            nonce: 0,
            connections: 0,
            stats: SenderStats::default(),
            scratch: Vec::new(),
        }
    }

    /// A connection is up: say `HELLO`.
    pub fn on_connected(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Done | Phase::Failed) {
            return;
        }
        self.connections += 1;
        self.stats.reconnects = self.connections - 1;
        self.phase = Phase::Hello;
        self.hello_due = true;
        self.close_sent = false;
        self.ping_due = false;
        self.pong_due = None;
        self.heartbeat = Heartbeat::new(self.config.heartbeat, now);
    }

    /// The connection is gone; what was in flight and not acked will be sent
    /// again on the next connection.
    pub fn on_disconnected(&mut self) {
        if matches!(self.phase, Phase::Hello | Phase::Running) {
            self.phase = Phase::Disconnected;
        }
    }

    /// Takes one received frame.
    ///
    /// # Errors
    /// [`Error::Protocol`] for anything the server must not send (an
    /// `ERROR` to send back is then queued); [`Error::Peer`] for the server's
    /// `ERROR`; [`Error::CloseMismatch`] when `CLOSE_ACK` does not match.
    pub fn handle(&mut self, frame: &[u8], now: Instant) -> Result<(), Error> {
        self.heartbeat.heard(now);
        if self.phase == Phase::Failed {
            debug!(
                bytes = frame.len(),
                "ignoring a frame after a protocol failure"
            );
            return Ok(());
        }
        let result = Message::decode(frame).and_then(|msg| self.on_message(msg));
        if let Err(e) = &result {
            warn!(session = self.config.session, error = %e, "rejecting the server's message");
            self.fail(e);
        }
        result
    }

    fn on_message(&mut self, msg: Message<'_>) -> Result<(), Error> {
        trace!(%msg, "received");
        match (self.phase, msg) {
            (_, Message::Error { code, reason }) => Err(Error::Peer {
                code,
                reason: reason.to_owned(),
            }),
            (Phase::Hello, Message::Welcome { processed, window }) => {
                if processed > self.config.count {
                    return Err(Error::protocol(
                        ErrorCode::SeqGap,
                        format!(
                            "WELCOME says {processed} processed, the session has {}",
                            self.config.count
                        ),
                    ));
                }
                if processed < self.acked {
                    return Err(Error::protocol(
                        ErrorCode::SeqBackwards,
                        format!(
                            "WELCOME says {processed} processed, {} were acknowledged before: durable state was lost",
                            self.acked
                        ),
                    ));
                }
                // A resumed session from an earlier run of the client:
                // everything before `processed` is done; account for it.
                while self.next_new < processed {
                    self.payloads.payload(self.next_new, &mut self.scratch);
                    self.digest.update(&self.scratch);
                    self.next_new += 1;
                }
                self.stats.sent = self.stats.sent.max(self.next_new);
                self.acked = processed;
                self.stats.acked = processed;
                self.resend = processed;
                self.window = window.clamp(1, self.config.window.max(1));
                self.phase = Phase::Running;
                debug!(processed, window = self.window, "session resumed");
                Ok(())
            }
            (Phase::Running, Message::Ack { processed }) => {
                if processed < self.acked || processed > self.next_new {
                    return Err(Error::protocol(
                        ErrorCode::SeqBackwards,
                        format!(
                            "ACK {processed} outside the acknowledged {}..=sent {}",
                            self.acked, self.next_new
                        ),
                    ));
                }
                self.acked = processed;
                self.stats.acked = processed;
                self.resend = self.resend.max(processed);
                Ok(())
            }
            (
                Phase::Running,
                Message::CloseAck {
                    processed,
                    count,
                    digest,
                },
            ) if self.close_sent => {
                let n = self.config.count;
                if processed != n || count != n || digest != self.digest.value() {
                    return Err(Error::CloseMismatch {
                        processed,
                        count,
                        digest,
                        sent: n,
                        expected_digest: self.digest.value(),
                    });
                }
                self.acked = n;
                self.stats.acked = n;
                self.phase = Phase::Done;
                Ok(())
            }
            (Phase::Hello | Phase::Running, Message::Ping { nonce }) => {
                self.pong_due = Some(nonce);
                Ok(())
            }
            (_, Message::Pong { .. }) => Ok(()),
            (Phase::Done, Message::Ping { .. }) => Ok(()),
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

    /// The next message to send, written into `out` (cleared first);
    /// `false` when there is nothing to send now.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool {
        out.clear();
        if let Some((code, reason)) = self.error_due.take() {
            Message::Error {
                code,
                reason: &reason,
            }
            .encode(out);
            return true;
        }
        match self.phase {
            Phase::Disconnected | Phase::Done | Phase::Failed => return false,
            Phase::Hello | Phase::Running => {}
        }
        if self.hello_due {
            self.hello_due = false;
            Message::Hello {
                session: self.config.session,
                version: VERSION,
                window: self.config.window,
                token: self.config.token,
            }
            .encode(out);
            return true;
        }
        if let Some(nonce) = self.pong_due.take() {
            Message::Pong { nonce }.encode(out);
            return true;
        }
        if self.ping_due {
            self.ping_due = false;
            self.nonce += 1;
            self.stats.pings += 1;
            Message::Ping { nonce: self.nonce }.encode(out);
            return true;
        }
        if self.phase != Phase::Running {
            return false;
        }
        if self.resend < self.next_new {
            let seq = self.resend;
            self.resend += 1;
            self.stats.resent += 1;
            self.data(seq, out);
            return true;
        }
        let in_flight = self.next_new - self.acked;
        if self.next_new < self.config.count && in_flight < u64::from(self.window) {
            let seq = self.next_new;
            self.data(seq, out);
            self.digest.update(&self.scratch);
            self.next_new += 1;
            self.resend = self.next_new;
            self.stats.sent = self.stats.sent.max(self.next_new);
            return true;
        }
        if self.next_new == self.config.count && !self.close_sent {
            self.close_sent = true;
            Message::Close {
                count: self.config.count,
            }
            .encode(out);
            return true;
        }
        false
    }

    fn data(&mut self, seq: u64, out: &mut Vec<u8>) {
        self.payloads.payload(seq, &mut self.scratch);
        Message::Data {
            seq,
            payload: &self.scratch,
        }
        .encode(out);
    }

    /// When [`handle_timeout`](Sender::handle_timeout) must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Hello | Phase::Running => Some(self.heartbeat.deadline()),
            _ => None,
        }
    }

    /// Heartbeat duty: queue a `PING` when due; declare the peer dead after
    /// three silent intervals.
    ///
    /// # Errors
    /// [`Error::PeerSilent`]: drop the connection and reconnect.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Error> {
        if !matches!(self.phase, Phase::Hello | Phase::Running) {
            return Ok(());
        }
        match self.heartbeat.tick(now) {
            Ok(due) => {
                self.ping_due |= due;
                Ok(())
            }
            Err(e) => {
                self.phase = Phase::Disconnected;
                Err(e)
            }
        }
    }

    /// True once `CLOSE_ACK` matched: every message is processed.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// True once `CLOSE` has been queued on the current connection.
    pub fn close_sent(&self) -> bool {
        self.close_sent
    }

    /// True after a protocol failure (no reconnect will help).
    pub fn is_failed(&self) -> bool {
        self.phase == Phase::Failed
    }

    /// Seqs sent and not confirmed processed.
    pub fn unconfirmed(&self) -> Range<u64> {
        self.acked..self.next_new
    }

    /// Counters so far.
    pub fn stats(&self) -> SenderStats {
        self.stats
    }

    /// The digest of every payload sent so far, in seq order.
    pub fn digest(&self) -> Digest {
        self.digest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HB: Duration = Duration::from_millis(100);

    fn sender(count: u64, window: u32, now: Instant) -> Sender<DemoPayloads> {
        Sender::new(
            SenderConfig {
                session: 5,
                token: Token([5; 16]),
                window,
                count,
                heartbeat: HB,
            },
            DemoPayloads { size: 8 },
            now,
        )
    }

    fn frame(msg: Message<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        msg.encode(&mut out);
        out
    }

    fn sent(tx: &mut Sender<DemoPayloads>) -> Vec<Vec<u8>> {
        let mut all = Vec::new();
        let mut buf = Vec::new();
        while tx.poll_transmit(&mut buf) {
            all.push(buf.clone());
        }
        all
    }

    /// The seqs of the DATA frames among `frames`.
    fn seqs(frames: &[Vec<u8>]) -> Vec<u64> {
        frames
            .iter()
            .filter_map(|f| match Message::decode(f).unwrap() {
                Message::Data { seq, .. } => Some(seq),
                _ => None,
            })
            .collect()
    }

    fn connect(tx: &mut Sender<DemoPayloads>, processed: u64, window: u32, now: Instant) {
        tx.on_connected(now);
        let hello = sent(tx);
        assert_eq!(
            Message::decode(&hello[0]).unwrap(),
            Message::Hello {
                session: 5,
                version: VERSION,
                window: tx.config.window,
                token: Token([5; 16]),
            }
        );
        assert_eq!(hello.len(), 1, "nothing but HELLO before WELCOME");
        tx.handle(&frame(Message::Welcome { processed, window }), now)
            .unwrap();
    }

    fn digest_of(range: Range<u64>) -> u64 {
        let mut d = Digest::default();
        let mut p = Vec::new();
        for seq in range {
            DemoPayloads { size: 8 }.payload(seq, &mut p);
            d.update(&p);
        }
        d.value()
    }

    #[test]
    fn nothing_is_sent_before_a_connection() {
        let now = Instant::now();
        let mut tx = sender(3, 2, now);
        assert!(sent(&mut tx).is_empty());
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn the_window_limits_what_is_in_flight() {
        let now = Instant::now();
        let mut tx = sender(10, 3, now);
        connect(&mut tx, 0, 3, now);
        assert_eq!(seqs(&sent(&mut tx)), [0, 1, 2]);
        tx.handle(&frame(Message::Ack { processed: 2 }), now)
            .unwrap();
        assert_eq!(seqs(&sent(&mut tx)), [3, 4]);
        assert_eq!(tx.unconfirmed(), 2..5);
        let s = tx.stats();
        assert_eq!((s.sent, s.acked, s.resent), (5, 2, 0));
    }

    #[test]
    fn the_server_may_grant_a_smaller_window() {
        let now = Instant::now();
        let mut tx = sender(10, 8, now);
        connect(&mut tx, 0, 2, now);
        assert_eq!(seqs(&sent(&mut tx)), [0, 1]);
    }

    #[test]
    fn a_reconnect_resends_only_what_welcome_does_not_cover() {
        let now = Instant::now();
        let mut tx = sender(10, 4, now);
        connect(&mut tx, 0, 4, now);
        assert_eq!(seqs(&sent(&mut tx)), [0, 1, 2, 3]);
        tx.handle(&frame(Message::Ack { processed: 1 }), now)
            .unwrap();
        tx.on_disconnected();
        assert!(sent(&mut tx).is_empty());
        // The server had made seqs 0..2 durable before the connection broke.
        connect(&mut tx, 2, 4, now);
        let out = sent(&mut tx);
        assert_eq!(seqs(&out), [2, 3, 4, 5]);
        let s = tx.stats();
        assert_eq!((s.sent, s.acked, s.resent, s.reconnects), (6, 2, 2, 1));
        assert_eq!(tx.unconfirmed(), 2..6);
    }

    #[test]
    fn a_resumed_session_skips_what_an_earlier_run_had_processed() {
        let now = Instant::now();
        let mut tx = sender(5, 4, now);
        connect(&mut tx, 3, 4, now);
        assert_eq!(seqs(&sent(&mut tx)), [3, 4]);
        assert_eq!(tx.digest().value(), digest_of(0..5));
    }

    #[test]
    fn close_follows_the_last_message_and_close_ack_is_verified() {
        let now = Instant::now();
        let mut tx = sender(3, 8, now);
        connect(&mut tx, 0, 8, now);
        let out = sent(&mut tx);
        assert_eq!(seqs(&out), [0, 1, 2]);
        assert_eq!(
            Message::decode(out.last().unwrap()).unwrap(),
            Message::Close { count: 3 }
        );
        assert!(tx.close_sent());
        let ok = frame(Message::CloseAck {
            processed: 3,
            count: 3,
            digest: digest_of(0..3),
        });
        tx.handle(&ok, now).unwrap();
        assert!(tx.is_done());
        assert!(tx.unconfirmed().is_empty());
        assert_eq!(tx.stats().acked, 3);
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn a_close_ack_with_another_digest_or_count_is_a_mismatch() {
        let now = Instant::now();
        for (count, digest) in [(3, 1), (2, digest_of(0..3))] {
            let mut tx = sender(3, 8, now);
            connect(&mut tx, 0, 8, now);
            let _ = sent(&mut tx);
            let bad = frame(Message::CloseAck {
                processed: 3,
                count,
                digest,
            });
            match tx.handle(&bad, now) {
                Err(Error::CloseMismatch { sent, count: c, .. }) => {
                    assert_eq!((sent, c), (3, count));
                }
                other => panic!("{other:?}"),
            }
            assert!(tx.is_failed());
            assert!(!tx.is_done());
        }
    }

    #[test]
    fn an_ack_for_what_was_never_sent_is_a_protocol_error() {
        let now = Instant::now();
        let mut tx = sender(10, 2, now);
        connect(&mut tx, 0, 2, now);
        let _ = sent(&mut tx);
        let e = tx
            .handle(&frame(Message::Ack { processed: 9 }), now)
            .unwrap_err();
        assert!(e.to_string().contains("ACK 9 outside"), "{e}");
        let out = sent(&mut tx);
        assert!(matches!(
            Message::decode(&out[0]).unwrap(),
            Message::Error {
                code: ErrorCode::SeqBackwards,
                ..
            }
        ));
        assert_eq!(out.len(), 1, "nothing after the ERROR");
        // Later frames are ignored.
        tx.handle(&frame(Message::Ack { processed: 1 }), now)
            .unwrap();
        assert_eq!(tx.stats().acked, 0);
    }

    #[test]
    fn a_welcome_behind_what_was_acked_means_lost_durable_state() {
        let now = Instant::now();
        let mut tx = sender(10, 4, now);
        connect(&mut tx, 0, 4, now);
        let _ = sent(&mut tx);
        tx.handle(&frame(Message::Ack { processed: 3 }), now)
            .unwrap();
        tx.on_disconnected();
        tx.on_connected(now);
        let _ = sent(&mut tx);
        let e = tx
            .handle(
                &frame(Message::Welcome {
                    processed: 1,
                    window: 4,
                }),
                now,
            )
            .unwrap_err();
        assert!(e.to_string().contains("durable state was lost"), "{e}");
    }

    #[test]
    fn the_servers_error_ends_the_session() {
        let now = Instant::now();
        let mut tx = sender(10, 4, now);
        connect(&mut tx, 0, 4, now);
        let e = tx
            .handle(
                &frame(Message::Error {
                    code: ErrorCode::WindowExceeded,
                    reason: "too many",
                }),
                now,
            )
            .unwrap_err();
        assert!(matches!(
            e,
            Error::Peer {
                code: ErrorCode::WindowExceeded,
                ..
            }
        ));
        assert!(tx.is_failed());
    }

    #[test]
    fn heartbeat_pings_every_interval_and_declares_silence_dead() {
        let start = Instant::now();
        let mut tx = sender(0, 1, start);
        tx.on_connected(start);
        let _ = sent(&mut tx);
        assert_eq!(tx.poll_timeout(), Some(start + HB));
        tx.handle_timeout(start + HB).unwrap();
        let out = sent(&mut tx);
        assert!(matches!(
            Message::decode(&out[0]).unwrap(),
            Message::Ping { nonce: 1 }
        ));
        // Hearing anything pushes death back.
        tx.handle(&frame(Message::Pong { nonce: 1 }), start + HB)
            .unwrap();
        tx.handle_timeout(start + 3 * HB).unwrap();
        match tx.handle_timeout(start + 4 * HB) {
            Err(Error::PeerSilent { silent_ms }) => assert_eq!(silent_ms, 300),
            other => panic!("{other:?}"),
        }
        // The driver reconnects; the sender starts over with HELLO.
        tx.on_disconnected();
        tx.on_connected(start + 5 * HB);
        assert!(matches!(
            Message::decode(&sent(&mut tx)[0]).unwrap(),
            Message::Hello { .. }
        ));
        assert_eq!(tx.stats().reconnects, 1);
    }

    #[test]
    fn a_server_that_stops_acking_leaves_exactly_the_unconfirmed_seqs() {
        let now = Instant::now();
        let mut tx = sender(100, 8, now);
        connect(&mut tx, 0, 8, now);
        let _ = sent(&mut tx);
        tx.handle(&frame(Message::Ack { processed: 5 }), now)
            .unwrap();
        let _ = sent(&mut tx);
        tx.on_disconnected();
        assert_eq!(tx.unconfirmed(), 5..13);
    }
}
