//! Both state machines fed arbitrary input: random sequences of messages
//! with random fields, and garbage frames. Nothing panics, nothing is
//! delivered twice or out of order, nothing is delivered after a violation,
//! every violation queues exactly one `ERROR`, and what is queued to send
//! stays bounded.

use std::time::{Duration, Instant};

use ack_demo::Error;
use ack_demo::receiver::{Durable, Event, Receiver, ReceiverConfig};
use ack_demo::sender::{DemoPayloads, Sender, SenderConfig};
use ack_demo::wire::{Message, Token, VERSION};
use proptest::prelude::*;

const HB: Duration = Duration::from_millis(100);

/// One input step.
#[derive(Debug, Clone)]
enum Step {
    /// A message, mostly plausible: small seqs and counts.
    Msg(u8, u64, u64, u64),
    /// Raw bytes.
    Garbage(Vec<u8>),
    /// The server's store reports durability through this many seqs past
    /// what was delivered (clamped).
    Durable(u8),
    /// Time passes (milliseconds).
    Wait(u16),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (1u8..=10, 0u64..12, 0u64..12, any::<u64>())
            .prop_map(|(k, a, b, c)| Step::Msg(k, a, b, c)),
        1 => prop::collection::vec(any::<u8>(), 0..24).prop_map(Step::Garbage),
        2 => any::<u8>().prop_map(Step::Durable),
        1 => (0u16..400).prop_map(Step::Wait),
    ]
}

fn encode(kind: u8, a: u64, b: u64, c: u64) -> Vec<u8> {
    let payload = format!("msg {a}");
    let msg = match kind {
        1 => Message::Hello {
            session: a,
            version: if c % 8 == 0 { VERSION + 1 } else { VERSION },
            window: (b % 5) as u32,
            token: Token([a as u8; 16]),
        },
        2 => Message::Welcome {
            processed: a,
            window: b as u32,
        },
        3 | 10 => Message::Data {
            seq: a,
            payload: payload.as_bytes(),
        },
        4 => Message::Ack { processed: a },
        5 => Message::Close { count: a },
        6 => Message::CloseAck {
            processed: a,
            count: b,
            digest: c,
        },
        7 => Message::Ping { nonce: c },
        8 => Message::Pong { nonce: c },
        _ => Message::Error {
            code: ack_demo::ErrorCode::from_u16(b as u16),
            reason: "x",
        },
    };
    let mut out = Vec::new();
    msg.encode(&mut out);
    out
}

fn drain_receiver(rx: &mut Receiver) -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    let mut buf = Vec::new();
    while rx.poll_transmit(&mut buf) {
        all.push(buf.clone());
        assert!(all.len() < 16, "unbounded output");
    }
    all
}

fn drain_sender(tx: &mut Sender<DemoPayloads>) -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    let mut buf = Vec::new();
    while tx.poll_transmit(&mut buf) {
        all.push(buf.clone());
        assert!(all.len() < 64, "unbounded output");
    }
    all
}

fn is_error(frame: &[u8]) -> bool {
    matches!(Message::decode(frame), Ok(Message::Error { .. }))
}

fn is_welcome(frame: &[u8]) -> bool {
    matches!(Message::decode(frame), Ok(Message::Welcome { .. }))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_receiver_survives_anything(steps in prop::collection::vec(step(), 0..40)) {
        let start = Instant::now();
        let mut now = start;
        let mut rx = Receiver::new(ReceiverConfig { max_window: 4, heartbeat: HB }, now);
        let mut next_deliver: Option<u64> = None;
        let mut failed = false;
        for step in steps {
            match step {
                Step::Msg(k, a, b, c) => {
                    let frame = encode(k, a, b, c);
                    let r = rx.handle(&frame, now);
                    match r {
                        Ok(Some(Event::Hello { .. })) => {
                            prop_assert!(!failed);
                            // A store that had seqs 0..2 durable, 3 appended.
                            rx.welcome(Durable { processed: 2, count: 2, digest: 0 }, 3);
                            next_deliver = Some(3);
                        }
                        Ok(Some(Event::Deliver { seq, .. })) => {
                            prop_assert!(!failed, "delivered after a violation");
                            prop_assert_eq!(Some(seq), next_deliver, "out of order or twice");
                            next_deliver = Some(seq + 1);
                        }
                        Ok(None) => {}
                        Err(Error::Protocol { .. }) => {
                            prop_assert!(!failed);
                            failed = true;
                            let out = drain_receiver(&mut rx);
                            prop_assert_eq!(out.iter().filter(|f| is_error(f)).count(), 1);
                            prop_assert!(is_error(out.last().unwrap()));
                        }
                        Err(Error::Peer { .. }) => failed = true,
                        Err(e) => prop_assert!(false, "unexpected error {e}"),
                    }
                }
                Step::Garbage(bytes) => {
                    if rx.handle(&bytes, now).is_err() {
                        failed = true;
                    }
                }
                Step::Durable(n) => {
                    if let Some(next) = next_deliver {
                        let p = (2 + u64::from(n)).min(next);
                        rx.on_durable(Durable { processed: p, count: p, digest: 0 });
                    }
                }
                Step::Wait(ms) => {
                    now += Duration::from_millis(u64::from(ms));
                    if rx.handle_timeout(now).is_err() {
                        failed = true;
                    }
                }
            }
            let out = drain_receiver(&mut rx);
            if failed {
                prop_assert!(out.iter().all(|f| is_error(f) || is_welcome(f)), "sent after failing");
            }
        }
    }

    #[test]
    fn the_sender_survives_anything(steps in prop::collection::vec(step(), 0..40)) {
        let start = Instant::now();
        let mut now = start;
        let mut tx = Sender::new(
            SenderConfig { session: 1, token: Token([1; 16]), window: 4, count: 8, heartbeat: HB },
            DemoPayloads { size: 8 },
            now,
        );
        tx.on_connected(now);
        for step in steps {
            let before = tx.stats();
            match step {
                Step::Msg(k, a, b, c) => {
                    let _ = tx.handle(&encode(k, a, b, c), now);
                }
                Step::Garbage(bytes) => {
                    let _ = tx.handle(&bytes, now);
                }
                Step::Durable(_) => {
                    tx.on_disconnected();
                    tx.on_connected(now);
                }
                Step::Wait(ms) => {
                    now += Duration::from_millis(u64::from(ms));
                    if tx.handle_timeout(now).is_err() {
                        tx.on_disconnected();
                        tx.on_connected(now);
                    }
                }
            }
            let _ = drain_sender(&mut tx);
            let s = tx.stats();
            prop_assert!(s.acked <= s.sent && s.sent <= 8);
            prop_assert!(s.acked >= before.acked && s.sent >= before.sent);
            let u = tx.unconfirmed();
            prop_assert_eq!((u.start, u.end), (s.acked, s.sent));
        }
    }
}
