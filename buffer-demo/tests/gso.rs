//! UDP GSO from the blaster (`UDP_SEGMENT`) and several sending threads:
//! real sockets on loopback. A GSO message whose last segment is short is
//! split by the kernel into the right datagrams, and counted right.

mod common;

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::time::Duration;

use buffer_demo::account::Tally;
use buffer_demo::account::Verdict;
use buffer_demo::mmsg::{RecvBatch, send_segmented};
use buffer_demo::wire::Datagram;
use buffer_demo::{Mode, SinkConfig};
use common::{blast_cfg, trial};

/// Three datagrams of 64 bytes and a short one of 40, seqs 0..4, laid out
/// back to back as one GSO message of segment size 64.
fn short_tail_message(nonce: u64) -> Vec<u8> {
    let mut buf = vec![0u8; 3 * 64 + 40];
    for (seq, seg) in buf.chunks_mut(64).enumerate() {
        Datagram::emit_data(seg, nonce, seq as u64, 1);
    }
    buf
}

fn connected_pair() -> (UdpSocket, UdpSocket) {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.connect(rx.local_addr().unwrap()).unwrap();
    (rx, tx)
}

/// Feeds datagrams to a tally and returns the seqs of the data ones.
fn count(tally: &mut Tally, datagrams: &[Vec<u8>], from: std::net::SocketAddr) -> Vec<u64> {
    datagrams
        .iter()
        .filter_map(|d| match tally.on_datagram(d, Some(from), None) {
            Verdict::Data { seq, .. } => Some(seq),
            _ => None,
        })
        .collect()
}

#[test]
fn gso_message_with_a_short_last_segment_is_split_and_counted() {
    let (rx, tx) = connected_pair();
    let msg = short_tail_message(7);
    assert_eq!(send_segmented(tx.as_raw_fd(), &msg, 64).unwrap(), msg.len());
    // Without UDP_GRO on the receiver, the kernel hands over each segment.
    let mut batch = RecvBatch::new(8);
    let mut got = Vec::new();
    while got.len() < 4 {
        let n = batch.recv(rx.as_raw_fd()).unwrap();
        got.extend((0..n).map(|i| batch.get(i).0.to_vec()));
    }
    let lens: Vec<usize> = got.iter().map(Vec::len).collect();
    assert_eq!(lens, [64, 64, 64, 40]);
    let mut tally = Tally::new();
    let seqs = count(&mut tally, &got, tx.local_addr().unwrap());
    assert_eq!(seqs, [0, 1, 2, 3]);
    assert_eq!((tally.data, tally.foreign), (4, 0));
    // Nothing else came.
    assert!(batch.recv_nowait(rx.as_raw_fd()).is_err());
}

#[test]
fn gso_stream_not_a_multiple_of_the_segments_closes() {
    // 1003 datagrams in messages of 8: the last message holds 3.
    let mut b = blast_cfg(10_030.0, 0.1);
    b.gso = 8;
    b.batch = 4;
    let (r, b) = trial(
        SinkConfig {
            rcvbuf: Some(4 << 20),
            ..SinkConfig::default()
        },
        b,
    );
    assert_eq!(b.sent, 1003, "{b}");
    assert!(b.send_calls < 1003 / 8, "{b}");
    common::assert_closes(&r, &b);
    assert_eq!(r.ledger.delivered, 1003, "{r}");
}

#[test]
fn several_threads_one_stream_close_under_overload() {
    // Two threads, GSO 16, into an inline sink with 20 µs of work per
    // datagram and a small buffer: the kernel drops, the books close.
    let mut b = blast_cfg(100_000.0, 0.2);
    b.threads = 2;
    b.gso = 16;
    b.batch = 2;
    let (r, b) = trial(
        SinkConfig {
            mode: Mode::Inline,
            work_us: 20.0,
            rcvbuf: Some(16 * 1024),
            ..SinkConfig::default()
        },
        b,
    );
    let l = &r.ledger;
    assert_eq!(l.sent, Some(b.sent), "{r}");
    assert_eq!(l.residual, Some(0), "{r}");
    assert!(l.kernel_dropped.unwrap() > 0, "{r}");
    assert_eq!(l.proc_drops_data, l.kernel_dropped, "{r}");
    assert_eq!(l.received, l.delivered, "{r}");
    assert_eq!(l.late, 0, "{r}");
}

#[test]
fn gro_receiver_gets_the_short_tail_message_whole_and_splits_it() {
    let rx = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    buffer_demo::sockopt::enable_gro(&rx).unwrap();
    rx.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let to = rx.local_addr().unwrap().as_socket().unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.connect(to).unwrap();
    let msg = short_tail_message(9);
    send_segmented(tx.as_raw_fd(), &msg, 64).unwrap();
    let mut batch = RecvBatch::with_slot(4, buffer_demo::mmsg::GRO_SLOT);
    assert_eq!(batch.recv(rx.as_raw_fd()).unwrap(), 1);
    let (bytes, _) = batch.get(0);
    assert_eq!(bytes.len(), msg.len());
    assert_eq!(batch.gro_size(0), Some(64));
    let parts: Vec<Vec<u8>> = buffer_demo::mmsg::segments(bytes, batch.gro_size(0))
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(
        parts.iter().map(Vec::len).collect::<Vec<_>>(),
        [64, 64, 64, 40]
    );
    let mut tally = Tally::new();
    assert_eq!(
        count(&mut tally, &parts, tx.local_addr().unwrap()),
        [0, 1, 2, 3]
    );
    assert_eq!((tally.data, tally.foreign), (4, 0));
}

fn gso_blast(rate: f64, secs: f64, gso: usize) -> buffer_demo::BlastConfig {
    let mut b = blast_cfg(rate, secs);
    b.gso = gso;
    b.batch = 4;
    b
}

/// The checks every GRO / several-receiver run must pass: the books close,
/// the kernel's own count (per message with GRO) agrees.
fn assert_closes_multi(r: &buffer_demo::SinkReport, b: &buffer_demo::BlastReport) {
    let l = &r.ledger;
    assert!(l.closes(), "{r}");
    assert_eq!(l.sent, Some(b.sent), "{r}");
    assert_eq!(l.residual, Some(0), "{r}");
    assert_eq!(
        l.delivered + l.queue_dropped + l.kernel_dropped.unwrap(),
        b.sent,
        "{r}"
    );
    assert_eq!(l.received, l.delivered + l.queue_dropped, "{r}");
    assert_eq!(l.late, 0, "{r}");
    if r.gro {
        assert_eq!(l.kernel_messages_dropped, l.messages_missing, "{r}");
        assert_eq!(l.proc_drops_data, l.kernel_messages_dropped, "{r}");
    } else {
        assert_eq!(l.proc_drops_data, l.kernel_dropped, "{r}");
    }
}

#[test]
fn gro_sink_closes_exactly_without_drops() {
    let (r, b) = trial(
        SinkConfig {
            gro: true,
            rcvbuf: Some(4 << 20),
            ..SinkConfig::default()
        },
        gso_blast(10_030.0, 0.1, 8),
    );
    assert_eq!(b.sent, 1003, "{b}");
    assert_closes_multi(&r, &b);
    assert_eq!(r.ledger.delivered, 1003, "{r}");
    // Coalesced: 126 messages (+ the sentinel copies), not 1003 buffers.
    assert!(r.buffers <= 126 + 5, "{r}");
}

#[test]
fn gro_sink_closes_exactly_under_twice_its_capacity() {
    // 20 µs of work per datagram inline: about 50 000/s; offer 100 000/s.
    for mode in [Mode::Inline, Mode::Split] {
        let (r, b) = trial(
            SinkConfig {
                gro: true,
                mode,
                work_us: 20.0,
                queue: 256,
                rcvbuf: Some(16 * 1024),
                ..SinkConfig::default()
            },
            gso_blast(100_000.0, 0.2, 16),
        );
        assert_closes_multi(&r, &b);
        let l = &r.ledger;
        assert!(l.kernel_dropped.unwrap() + l.queue_dropped > 0, "{r}");
        if mode == Mode::Inline {
            assert!(l.kernel_messages_dropped.unwrap() > 0, "{r}");
        }
    }
}

#[test]
fn several_receivers_close_exactly_with_and_without_gro() {
    for gro in [false, true] {
        let (r, b) = trial(
            SinkConfig {
                gro,
                receivers: 3,
                rcvbuf: Some(4 << 20),
                ..SinkConfig::default()
            },
            gso_blast(20_000.0, 0.1, 4),
        );
        assert_eq!(r.receivers, 3);
        // The reuseport program spreads the one stream over every socket.
        assert!(r.per_receiver.iter().all(|&d| d > 0), "{r}");
        assert_closes_multi(&r, &b);
        assert_eq!(r.ledger.delivered, b.sent, "{r}");
    }
}

#[test]
fn several_receivers_close_exactly_under_twice_their_capacity() {
    // Two inline receivers of 20 µs a datagram: about 100 000/s together
    // (less on 2 cores shared with the sender); offer 200 000/s.
    for gro in [false, true] {
        for mode in [Mode::Inline, Mode::Split] {
            let mut blast = gso_blast(200_000.0, 0.2, 8);
            blast.threads = 2;
            let (r, b) = trial(
                SinkConfig {
                    gro,
                    mode,
                    receivers: 2,
                    work_us: 20.0,
                    queue: 256,
                    rcvbuf: Some(16 * 1024),
                    ..SinkConfig::default()
                },
                blast,
            );
            assert_closes_multi(&r, &b);
            let l = &r.ledger;
            assert!(l.kernel_dropped.unwrap() + l.queue_dropped > 0, "{r}");
            if gro && mode == Mode::Inline {
                println!("{r}");
            }
        }
    }
}
