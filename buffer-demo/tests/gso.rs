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
