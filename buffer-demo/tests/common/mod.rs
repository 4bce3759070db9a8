//! Shared helpers: run a sink and a blast at it, in-process, on 127.0.0.1:0;
//! whether iperf3 is there. The program's tests (`cli/tests`) include this
//! file too.
#![allow(dead_code)] // each test file uses a different subset

use std::time::Duration;

use buffer_demo::{BlastConfig, BlastReport, Sink, SinkConfig, SinkReport};

/// A blast of `rate` datagrams/s for `secs` at whatever address the sink gets.
pub(crate) fn blast_cfg(rate: f64, secs: f64) -> BlastConfig {
    BlastConfig {
        rate,
        duration: Duration::from_secs_f64(secs),
        drain: Duration::from_millis(50),
        sentinel_gap: Duration::from_millis(5),
        ..BlastConfig::default()
    }
}

/// Binds the sink, sends `before` raw datagrams from another socket, runs the blast, and
/// returns both reports once the sink has closed its books.
pub(crate) fn trial_with(
    sink: SinkConfig,
    mut blast: BlastConfig,
    before: &[&[u8]],
) -> (SinkReport, BlastReport) {
    let sink = Sink::bind(SinkConfig {
        timeout: Some(Duration::from_secs(30)),
        ..sink
    })
    .expect("sink binds");
    blast.to = sink.local_addr();
    let to = blast.to;
    let handle = std::thread::spawn(move || sink.run());
    if !before.is_empty() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for d in before {
            s.send_to(d, to).unwrap();
        }
    }
    let b = buffer_demo::blast(&blast).expect("blast runs");
    let r = handle.join().unwrap().expect("sink runs");
    (r, b)
}

/// [`trial_with`] without foreign datagrams.
pub(crate) fn trial(sink: SinkConfig, blast: BlastConfig) -> (SinkReport, BlastReport) {
    trial_with(sink, blast, &[])
}

/// Checks that every term adds up, with the witnesses agreeing.
pub(crate) fn assert_closes(r: &SinkReport, b: &BlastReport) {
    let l = &r.ledger;
    assert_eq!(l.sent, Some(b.sent), "{r}");
    assert_eq!(l.residual, Some(0), "{r}");
    let kernel = l.kernel_dropped.unwrap();
    assert_eq!(l.delivered + l.queue_dropped + kernel, b.sent, "{r}");
    assert_eq!(l.received, l.delivered + l.queue_dropped, "{r}");
    assert_eq!(l.proc_drops_data, Some(kernel), "{r}");
    assert_eq!(l.late, 0, "{r}");
    assert_eq!(l.out_of_order, 0, "{r}");
}

/// True when `iperf3 --version` does not run (the tests that need it say
/// so and skip; scripts/test installs it).
pub(crate) fn iperf3_missing() -> bool {
    std::process::Command::new("iperf3")
        .arg("--version")
        .output()
        .map_or(true, |o| !o.status.success())
}
