//! The account closes exactly (residual 0) in every design, with and
//! without drops, and each drop is counted where it happened.

mod common;

use std::time::Duration;

use buffer_demo::{Mode, SinkConfig};
use common::{assert_closes, blast_cfg, trial, trial_with};

fn sink(mode: Mode, rcvbuf: usize) -> SinkConfig {
    SinkConfig {
        mode,
        rcvbuf: Some(rcvbuf),
        ..SinkConfig::default()
    }
}

#[test]
fn closes_split_and_inline_small_and_large_buffers() {
    for mode in [Mode::Split, Mode::Inline] {
        for rcvbuf in [8 * 1024, 4 << 20] {
            let (r, b) = trial(sink(mode, rcvbuf), blast_cfg(200_000.0, 0.1));
            // Every due datagram, unless the sender was starved of CPU and
            // cut at its deadline (it then says so); the books close either way.
            assert!(b.sent == 20_000 || b.sender_limited, "{b}");
            assert_closes(&r, &b);
            if mode == Mode::Inline {
                assert_eq!(r.ledger.queue_dropped, 0);
            }
        }
    }
}

#[test]
fn closes_under_overload_at_twice_capacity() {
    // 20 µs of work per datagram: capacity about 50 000/s; offer 100 000/s
    // into a buffer of a few datagrams, so the kernel must drop.
    for mode in [Mode::Inline, Mode::Split] {
        let cfg = SinkConfig {
            work_us: 20.0,
            queue: 256,
            ..sink(mode, 4096)
        };
        let (r, b) = trial(cfg, blast_cfg(100_000.0, 0.2));
        assert_closes(&r, &b);
        let l = &r.ledger;
        assert!(l.delivered < b.sent, "{r}");
        match mode {
            Mode::Inline => assert!(l.kernel_dropped.unwrap() > 0, "{r}"),
            Mode::Split => assert!(l.kernel_dropped.unwrap() + l.queue_dropped > 0, "{r}"),
        }
        assert_eq!(l.rxq_ovfl_last, l.proc_drops.unwrap(), "{r}");
    }
}

#[test]
fn queue_full_drops_counted_exactly() {
    // A slow processing thread (100 µs per datagram) behind a 16-slot queue,
    // a buffer large enough that the kernel keeps everything: the queue drops.
    let cfg = SinkConfig {
        work_us: 100.0,
        queue: 16,
        ..sink(Mode::Split, 4 << 20)
    };
    let (r, b) = trial(cfg, blast_cfg(50_000.0, 0.1));
    assert_closes(&r, &b);
    let l = &r.ledger;
    assert!(l.queue_dropped > 0, "{r}");
    assert_eq!(l.queue_dropped, l.received - l.delivered);
    assert!(r.peak_queue_depth <= 16);
}

#[test]
fn foreign_datagrams_are_counted_and_harmless() {
    let mut wrong_len = vec![0u8; 64];
    buffer_demo::wire::Datagram::emit_data(&mut wrong_len, 1, 0, 0);
    let truncated = &wrong_len[..40];
    let mut bad_kind = wrong_len.clone();
    bad_kind[4] = 7;
    let junk: [&[u8]; 5] = [b"", b"hello", &[0u8; 64], truncated, &bad_kind];
    let big = vec![0x42u8; 9000];
    let mut all: Vec<&[u8]> = junk.to_vec();
    all.push(&big);
    let (r, b) = trial_with(sink(Mode::Split, 1 << 20), blast_cfg(50_000.0, 0.05), &all);
    assert_closes(&r, &b);
    assert_eq!(r.ledger.foreign, all.len() as u64);
}

#[test]
fn no_sentinel_leaves_the_account_open() {
    let s = buffer_demo::Sink::bind(SinkConfig {
        timeout: Some(Duration::from_millis(100)),
        ..SinkConfig::default()
    })
    .unwrap();
    let r = s.run().unwrap();
    assert_eq!(r.ledger.residual, None);
    assert!(!r.ledger.closes());
}
