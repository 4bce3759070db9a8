//! Sentinels belong to the stream they close: forged ones (another nonce,
//! another source address, a total below what arrived) over real loopback
//! sockets neither stop the sink nor change its account.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use buffer_demo::wire::Datagram;
use buffer_demo::{Mode, Sink, SinkConfig, SinkReport};
use common::{assert_closes, blast_cfg, trial_with};

const FORGED_TOTAL: u64 = 1_000_000_000_000;

fn sink_cfg() -> SinkConfig {
    SinkConfig {
        mode: Mode::Split,
        rcvbuf: Some(1 << 20),
        linger: Duration::from_millis(200),
        ..SinkConfig::default()
    }
}

/// A hand-driven stream from one socket: data datagrams and sentinels with
/// the nonce chosen here.
struct Sender {
    socket: UdpSocket,
    nonce: u64,
    seq: u64,
}

impl Sender {
    fn new(to: std::net::SocketAddr, nonce: u64) -> Sender {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.connect(to).unwrap();
        Sender {
            socket,
            nonce,
            seq: 0,
        }
    }

    fn data(&mut self, n: u64) {
        let mut buf = [0u8; 64];
        for _ in 0..n {
            Datagram::emit_data(&mut buf, self.nonce, self.seq, 0);
            self.socket.send(&buf).unwrap();
            self.seq += 1;
        }
    }

    fn sentinel(&self, total: u64, copy: u32, copies: u32) {
        let s = Datagram::sentinel(self.nonce, total, copy, copies, 0);
        self.socket.send(&s).unwrap();
    }
}

/// Runs a sink and `drive(addr)` against it; returns the sink's report.
fn with_sink(drive: impl FnOnce(std::net::SocketAddr)) -> SinkReport {
    let sink = Sink::bind(SinkConfig {
        timeout: Some(Duration::from_secs(30)),
        ..sink_cfg()
    })
    .unwrap();
    let to = sink.local_addr();
    let h = std::thread::spawn(move || sink.run());
    drive(to);
    h.join().unwrap().unwrap()
}

#[test]
fn a_forged_total_does_not_stop_the_sink() {
    let forged = Datagram::sentinel(0x0bad, FORGED_TOTAL, 0, 1, 0);
    let (r, b) = trial_with(sink_cfg(), blast_cfg(50_000.0, 0.05), &[&forged]);
    assert_closes(&r, &b);
    let l = &r.ledger;
    assert_eq!(l.sent, Some(2_500), "{r}");
    assert_eq!((l.foreign, l.other_sentinels), (1, 1), "{r}");
    assert_eq!(l.stream.unwrap().nonce, b.nonce, "{r}");
    assert_eq!(l.stream.unwrap().source, b.source, "{r}");
}

#[test]
fn several_forged_sentinels_before_the_real_one() {
    let forged: Vec<[u8; 40]> = (0..3u32)
        .map(|i| Datagram::sentinel(0x0bad + u64::from(i), FORGED_TOTAL, i, 3, 0))
        .collect();
    let before: Vec<&[u8]> = forged.iter().map(|f| &f[..]).collect();
    let (r, b) = trial_with(sink_cfg(), blast_cfg(50_000.0, 0.05), &before);
    assert_closes(&r, &b);
    assert!(r.ledger.closes(), "{r}");
    assert_eq!(r.ledger.other_sentinels, 3, "{r}");
    assert_eq!(r.ledger.sentinel.unwrap().copies_received, 5, "{r}");
}

#[test]
fn a_sentinel_with_the_nonce_from_another_address_is_foreign() {
    let nonce = 0x1234_5678_9abc_def0;
    let r = with_sink(|to| {
        let mut real = Sender::new(to, nonce);
        real.data(100);
        // Knows the nonce, cannot send from the stream's address.
        Sender::new(to, nonce).sentinel(FORGED_TOTAL, 0, 1);
        real.data(100);
        real.sentinel(200, 0, 1);
    });
    let l = &r.ledger;
    assert_eq!(l.sent, Some(200), "{r}");
    assert_eq!(l.delivered, 200, "{r}");
    assert_eq!((l.foreign, l.other_sentinels), (1, 1), "{r}");
    assert_eq!(l.late, 0, "{r}");
    assert!(l.closes(), "{r}");
}

#[test]
fn a_total_below_what_arrived_is_refused() {
    let r = with_sink(|to| {
        let mut real = Sender::new(to, 77);
        real.data(100);
        real.sentinel(10, 0, 1);
        real.sentinel(100, 0, 1);
    });
    let l = &r.ledger;
    assert_eq!(l.sent, Some(100), "{r}");
    assert_eq!(l.rejected_sentinels, 1, "{r}");
    assert!(l.closes(), "{r}");
    assert!(
        r.to_string()
            .contains("claimed 10 sent, but 100 had arrived"),
        "{r}"
    );
}

#[test]
fn conflicting_totals_are_reported_and_keep_the_books_open() {
    let r = with_sink(|to| {
        let mut real = Sender::new(to, 78);
        real.data(50);
        real.sentinel(50, 0, 2);
        real.sentinel(FORGED_TOTAL, 1, 2);
    });
    let l = &r.ledger;
    assert_eq!(l.sent, Some(50), "{r}");
    assert_eq!(l.residual, Some(0), "{r}");
    assert!(!l.closes(), "{r}");
    let s = l.sentinel.unwrap();
    assert_eq!((s.conflicts, s.conflicting_total), (1, Some(FORGED_TOTAL)));
    assert!(r.to_string().contains("SENTINELS CONFLICT"), "{r}");
}

#[test]
fn datagrams_of_another_stream_are_not_counted() {
    let r = with_sink(|to| {
        let mut real = Sender::new(to, 1);
        real.data(30);
        let mut other = Sender::new(to, 2);
        other.data(40);
        real.data(30);
        other.sentinel(40, 0, 1);
        real.sentinel(60, 0, 1);
    });
    let l = &r.ledger;
    assert_eq!((l.sent, l.delivered), (Some(60), 60), "{r}");
    assert_eq!((l.other_stream, l.other_sentinels), (41, 1), "{r}");
    assert!(l.closes(), "{r}");
}
