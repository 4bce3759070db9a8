//! The sans-IO pair under simulated time: a [`Sender`] and a [`Receiver`]
//! joined by two in-memory links with random per-message delays, an
//! in-memory model of the server's durable store, connection drops (both
//! directions lose what was in flight) and server crashes (everything not
//! durable is lost, durable state survives) at random instants.
//!
//! Whatever happens, once the faults stop the session completes, every seq
//! `0..N` is processed exactly once and in order, and the close handshake's
//! count and digest match. No sockets, no sleeps: time is `start` plus
//! simulated durations.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ack_demo::receiver::{Durable, Event, Receiver, ReceiverConfig};
use ack_demo::sender::{DemoPayloads, Payloads, Sender, SenderConfig};
use ack_demo::wire::{Digest, Token};
use proptest::prelude::*;

const SESSION: u64 = 7;
const SIZE: usize = 16;
const HEARTBEAT: Duration = Duration::from_millis(100);
/// Simulated time after which a run that has not completed is a failure.
const GIVE_UP: Duration = Duration::from_secs(3600);

/// One direction of a connection: frames arrive in order (it is TCP), each
/// no earlier than its own delay allows.
#[derive(Default)]
struct Link {
    queue: VecDeque<(Instant, Vec<u8>)>,
}

impl Link {
    fn push(&mut self, at: Instant, frame: Vec<u8>) {
        let at = self.queue.back().map_or(at, |&(last, _)| at.max(last));
        self.queue.push_back((at, frame));
    }

    fn next_at(&self) -> Option<Instant> {
        self.queue.front().map(|&(at, _)| at)
    }

    fn pop_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.next_at()? <= now {
            self.queue.pop_front().map(|(_, f)| f)
        } else {
            None
        }
    }
}

/// The server's durable store as a model: the lines of one session, those
/// made durable and those appended since the last sync.
struct MemStore {
    durable_lines: Vec<Vec<u8>>,
    pending: Vec<Vec<u8>>,
    durable: Durable,
    /// Digest over durable and pending lines.
    digest: Digest,
    syncs: u64,
    crashes: u64,
}

impl MemStore {
    fn new() -> MemStore {
        let durable = Durable::default();
        MemStore {
            durable_lines: Vec::new(),
            pending: Vec::new(),
            durable,
            digest: Digest::from_value(durable.digest),
            syncs: 0,
            crashes: 0,
        }
    }

    /// Next seq the store takes.
    fn appended(&self) -> u64 {
        self.durable.processed + self.pending.len() as u64
    }

    fn append(&mut self, seq: u64, payload: &[u8]) {
        assert_eq!(
            seq,
            self.appended(),
            "the receiver delivered seq {seq} out of order or twice"
        );
        self.pending.push(payload.to_vec());
        self.digest.update(payload);
    }

    fn sync(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        self.durable_lines.append(&mut self.pending);
        self.durable = Durable {
            processed: self.durable_lines.len() as u64,
            count: self.durable_lines.len() as u64,
            digest: self.digest.value(),
        };
        self.syncs += 1;
    }

    fn crash(&mut self) {
        self.pending.clear();
        self.digest = Digest::from_value(self.durable.digest);
        self.crashes += 1;
    }
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// The connection breaks; the server process lives on.
    Drop,
    /// The server process dies: connection gone, non-durable lines lost.
    Crash,
    /// The path stops forwarding in both directions, what was in flight
    /// included, and nobody is told: only the heartbeat finds out.
    Blackhole,
}

struct Conn {
    rx: Receiver,
    to_server: Link,
    to_client: Link,
    blackholed: bool,
    /// The server's heartbeat gave up on a blackholed path: its side is
    /// closed, and the client cannot know.
    server_closed: bool,
}

/// What a run is made of; every number comes from proptest.
#[derive(Debug, Clone)]
struct Plan {
    count: u64,
    window: u32,
    max_window: u32,
    /// Milliseconds, used in turn for link delays, sync delays and
    /// reconnect delays.
    delays: Vec<u8>,
    /// (when, in per-mille of the estimated fault-free run; what happens).
    faults: Vec<(u16, Fault)>,
    /// Whether the server makes pending lines durable when a HELLO arrives
    /// (the blocking server does; the protocol must not depend on it).
    sync_on_hello: bool,
}

struct Sim {
    plan: Plan,
    start: Instant,
    now: Instant,
    next_delay: usize,
    sender: Sender<DemoPayloads>,
    conn: Option<Conn>,
    reconnect_at: Option<Instant>,
    sync_at: Option<Instant>,
    store: MemStore,
    faults: VecDeque<(Instant, Fault)>,
    connects: u64,
    /// The first blackhole that hit a connection.
    blackholed_at: Option<Instant>,
    /// When the sender's heartbeat declared the server dead.
    sender_declared_dead: Vec<Instant>,
}

impl Sim {
    fn new(plan: Plan) -> Sim {
        let start = Instant::now();
        // Fault instants are per-mille of a rough estimate of the fault-free
        // run, so that most of them land while the session is busy.
        let estimate_ms = (plan.count / u64::from(plan.window) + 2) * 60;
        let mut faults: Vec<(Instant, Fault)> = plan
            .faults
            .iter()
            .map(|&(permille, f)| {
                let ms = estimate_ms * u64::from(permille) / 1000;
                (start + Duration::from_millis(ms), f)
            })
            .collect();
        faults.sort_by_key(|&(at, _)| at);
        let sender = Sender::new(
            SenderConfig {
                token: Token([3; 16]),
                session: SESSION,
                window: plan.window,
                count: plan.count,
                heartbeat: HEARTBEAT,
            },
            DemoPayloads { size: SIZE },
            start,
        );
        Sim {
            plan,
            start,
            now: start,
            next_delay: 0,
            sender,
            conn: None,
            reconnect_at: Some(start),
            sync_at: None,
            store: MemStore::new(),
            faults: faults.into(),
            connects: 0,
            blackholed_at: None,
            sender_declared_dead: Vec::new(),
        }
    }

    fn delay(&mut self) -> Duration {
        let d = if self.plan.delays.is_empty() {
            0
        } else {
            self.plan.delays[self.next_delay % self.plan.delays.len()]
        };
        self.next_delay += 1;
        Duration::from_millis(u64::from(d))
    }

    /// Moves everything both sides want to send onto the links.
    fn pump(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let mut buf = Vec::new();
        while self.sender.poll_transmit(&mut buf) {
            let at = self.now + self.delay();
            if !conn.blackholed {
                conn.to_server.push(at, buf.clone());
            }
        }
        while !conn.server_closed && conn.rx.poll_transmit(&mut buf) {
            let at = self.now + self.delay();
            if !conn.blackholed {
                conn.to_client.push(at, buf.clone());
            }
        }
        assert!(
            !self.sender.is_failed(),
            "the sender failed on honest input"
        );
        assert!(
            conn.server_closed || !conn.rx.is_failed(),
            "the receiver failed on honest input"
        );
        self.conn = Some(conn);
    }

    fn next_event(&self) -> Option<Instant> {
        let mut at: Vec<Instant> = Vec::new();
        if let Some(c) = &self.conn {
            at.extend(c.to_server.next_at());
            at.extend(c.to_client.next_at());
            if !c.server_closed {
                at.extend(c.rx.poll_timeout());
            }
            at.extend(self.sender.poll_timeout());
        }
        at.extend(self.reconnect_at);
        at.extend(self.sync_at);
        at.extend(self.faults.front().map(|&(t, _)| t));
        at.into_iter().min()
    }

    fn disconnect(&mut self) {
        if self.conn.take().is_some() {
            self.sender.on_disconnected();
            let d = self.delay();
            self.reconnect_at = Some(self.now + d);
        }
    }

    fn sync(&mut self) {
        self.sync_at = None;
        self.store.sync();
        if let Some(c) = &mut self.conn {
            if c.rx.session() == Some(SESSION) {
                c.rx.on_durable(self.store.durable);
            }
        }
    }

    /// Everything due at `self.now`. Returns false when nothing was.
    fn step(&mut self) -> bool {
        let mut progressed = false;
        while let Some(&(at, fault)) = self.faults.front() {
            if at > self.now {
                break;
            }
            self.faults.pop_front();
            progressed = true;
            match fault {
                Fault::Drop => self.disconnect(),
                Fault::Crash => {
                    self.disconnect();
                    self.store.crash();
                    self.sync_at = None;
                }
                Fault::Blackhole => {
                    if let Some(c) = &mut self.conn {
                        c.blackholed = true;
                        c.to_server.queue.clear();
                        c.to_client.queue.clear();
                        self.blackholed_at.get_or_insert(self.now);
                    }
                }
            }
        }
        if self.reconnect_at.is_some_and(|t| t <= self.now) {
            self.reconnect_at = None;
            progressed = true;
            self.connects += 1;
            self.conn = Some(Conn {
                rx: Receiver::new(
                    ReceiverConfig {
                        max_window: self.plan.max_window,
                        heartbeat: HEARTBEAT,
                    },
                    self.now,
                ),
                to_server: Link::default(),
                to_client: Link::default(),
                blackholed: false,
                server_closed: false,
            });
            self.sender.on_connected(self.now);
        }
        if self.sync_at.is_some_and(|t| t <= self.now) {
            progressed = true;
            self.sync();
        }
        let Some(mut conn) = self.conn.take() else {
            return progressed;
        };
        while let Some(frame) = conn.to_server.pop_due(self.now) {
            progressed = true;
            match conn.rx.handle(&frame, self.now) {
                Ok(None) => {}
                Ok(Some(Event::Hello { session, .. })) => {
                    assert_eq!(session, SESSION);
                    if self.plan.sync_on_hello {
                        self.store.sync();
                        self.sync_at = None;
                    }
                    conn.rx.welcome(self.store.durable, self.store.appended());
                }
                Ok(Some(Event::Deliver { seq, payload })) => {
                    self.store.append(seq, payload);
                    if self.sync_at.is_none() {
                        let d = self.delay() / 2;
                        self.sync_at = Some(self.now + d);
                    }
                }
                Err(e) => panic!("the receiver rejected honest input: {e}"),
            }
        }
        while let Some(frame) = conn.to_client.pop_due(self.now) {
            progressed = true;
            if let Err(e) = self.sender.handle(&frame, self.now) {
                panic!("the sender rejected the receiver's message: {e}");
            }
        }
        let mut lost = false;
        if self.sender.poll_timeout().is_some_and(|t| t <= self.now) {
            progressed = true;
            if self.sender.handle_timeout(self.now).is_err() {
                lost = true;
                self.sender_declared_dead.push(self.now);
            }
        }
        if !conn.server_closed && conn.rx.poll_timeout().is_some_and(|t| t <= self.now) {
            progressed = true;
            if conn.rx.handle_timeout(self.now).is_err() {
                // The server closes; the client hears of it unless the path
                // is a blackhole.
                conn.server_closed = true;
                lost |= !conn.blackholed;
            }
        }
        self.conn = Some(conn);
        if lost {
            // Declared dead by a heartbeat: the drivers close and reconnect.
            self.disconnect();
        }
        progressed
    }

    /// Runs to the end of the close handshake.
    fn run(&mut self) {
        while !self.sender.is_done() {
            self.pump();
            if self.sender.is_done() {
                break;
            }
            if !self.step() {
                let next = self.next_event().expect("something is always pending");
                assert!(next > self.now, "time must move");
                self.now = next;
            }
            assert!(
                self.now - self.start < GIVE_UP,
                "not done after {GIVE_UP:?} simulated: stats {:?}, unconfirmed {:?}",
                self.sender.stats(),
                self.sender.unconfirmed()
            );
        }
    }
}

fn expected(count: u64) -> Vec<Vec<u8>> {
    let p = DemoPayloads { size: SIZE };
    (0..count)
        .map(|seq| {
            let mut v = Vec::new();
            p.payload(seq, &mut v);
            v
        })
        .collect()
}

fn check(plan: Plan) -> Result<(), TestCaseError> {
    let count = plan.count;
    let mut sim = Sim::new(plan);
    sim.run();
    // Exactly once, in order: what is durable is seqs 0..N, nothing else.
    prop_assert_eq!(&sim.store.durable_lines, &expected(count));
    prop_assert!(sim.store.pending.is_empty());
    let stats = sim.sender.stats();
    prop_assert_eq!(stats.sent, count);
    prop_assert_eq!(stats.acked, count);
    prop_assert!(sim.sender.unconfirmed().is_empty());
    prop_assert_eq!(stats.reconnects, sim.connects - 1);
    // The CLOSE_ACK the sender accepted carried the same figures.
    prop_assert_eq!(sim.store.durable.count, count);
    prop_assert_eq!(sim.store.durable.digest, sim.sender.digest().value());
    let conn = sim.conn.as_ref().expect("the closing connection");
    prop_assert!(conn.rx.is_done());
    Ok(())
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        Just(Fault::Drop),
        Just(Fault::Crash),
        Just(Fault::Blackhole)
    ]
}

fn plan() -> impl Strategy<Value = Plan> {
    (
        0u64..120,
        1u32..=16,
        1u32..=20,
        prop::collection::vec(0u8..=40, 1..32),
        prop::collection::vec((0u16..1200, fault()), 0..8),
        any::<bool>(),
    )
        .prop_map(
            |(count, window, max_window, delays, faults, sync_on_hello)| Plan {
                count,
                window,
                max_window,
                delays,
                faults,
                sync_on_hello,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_seq_is_processed_exactly_once_in_order(plan in plan()) {
        check(plan)?;
    }
}

#[test]
fn a_quiet_run_needs_no_resend() {
    let mut sim = Sim::new(Plan {
        count: 50,
        window: 8,
        max_window: 8,
        delays: vec![1, 3, 2],
        faults: vec![],
        sync_on_hello: true,
    });
    sim.run();
    assert_eq!(sim.store.durable_lines, expected(50));
    let stats = sim.sender.stats();
    assert_eq!((stats.sent, stats.acked, stats.resent), (50, 50, 0));
    assert_eq!(stats.reconnects, 0);
}

#[test]
fn a_crash_mid_session_resends_only_what_was_not_durable() {
    let mut sim = Sim::new(Plan {
        count: 200,
        window: 16,
        max_window: 16,
        delays: vec![5, 9, 2, 14, 0, 7],
        faults: vec![(48, Fault::Crash), (107, Fault::Drop), (108, Fault::Crash)],
        sync_on_hello: false,
    });
    sim.run();
    assert_eq!(sim.store.durable_lines, expected(200));
    assert_eq!(sim.store.crashes, 2);
    let stats = sim.sender.stats();
    // The second crash hit a server with no connection: two reconnects.
    assert_eq!(stats.reconnects, 2);
    assert!(stats.resent > 0, "{stats:?}");
    // Never more than a window per reconnect.
    assert!(stats.resent <= 3 * 16, "{stats:?}");
}

#[test]
fn an_empty_session_still_closes_with_matching_figures() {
    let mut sim = Sim::new(Plan {
        count: 0,
        window: 4,
        max_window: 4,
        delays: vec![1],
        faults: vec![],
        sync_on_hello: true,
    });
    sim.run();
    assert!(sim.store.durable_lines.is_empty());
    assert_eq!(sim.sender.digest().value(), sim.store.durable.digest);
}

#[test]
fn a_blackholed_path_is_found_within_three_heartbeats_and_the_session_resumes() {
    let mut sim = Sim::new(Plan {
        count: 300,
        window: 4,
        max_window: 8,
        delays: vec![4, 11, 6],
        faults: vec![(100, Fault::Blackhole)],
        sync_on_hello: true,
    });
    sim.run();
    assert_eq!(sim.store.durable_lines, expected(300));
    let hole = sim
        .blackholed_at
        .expect("the blackhole hit a live connection");
    let dead = sim.sender_declared_dead[0];
    assert!(dead > hole);
    assert!(
        dead - hole <= 3 * HEARTBEAT,
        "declared dead {:?} after the blackhole",
        dead - hole
    );
    assert_eq!(sim.sender.stats().reconnects, 1);
}
