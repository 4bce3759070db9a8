//! The sink in its own network namespace behind a veth pair: the namespace's
//! `Udp: RcvbufErrors` is its alone and agrees with the other two witnesses.
//! Runs when root with iproute2; otherwise says why it did not.

mod common;

use buffer_demo::netns::{self, Netns};
use buffer_demo::{Mode, SinkConfig};
use common::{assert_closes, blast_cfg};

#[test]
fn netns_third_witness() {
    if let Some(why) = netns::unavailable() {
        eprintln!("netns_third_witness did not run: {why}");
        return;
    }
    let ns = Netns::create(None).unwrap();
    let sink = buffer_demo::Sink::bind(SinkConfig {
        bind: ns.sink_addr(0),
        netns: Some(ns.name().to_string()),
        mode: Mode::Inline,
        work_us: 20.0,
        rcvbuf: Some(4096),
        timeout: Some(std::time::Duration::from_secs(30)),
        ..SinkConfig::default()
    })
    .unwrap();
    let mut blast = blast_cfg(100_000.0, 0.2);
    blast.to = sink.local_addr();
    let h = std::thread::spawn(move || sink.run());
    let b = buffer_demo::blast(&blast).unwrap();
    let r = h.join().unwrap().unwrap();
    assert_closes(&r, &b);
    let l = &r.ledger;
    assert!(l.kernel_dropped.unwrap() > 0, "{r}");
    assert_eq!(l.rcvbuf_errors, l.proc_drops, "{r}");
    assert!(r.to_string().contains("netns"));
}

#[test]
fn netns_sweep_trial_with_tbf() {
    if let Some(why) = netns::unavailable() {
        eprintln!("netns_sweep_trial_with_tbf did not run: {why}");
        return;
    }
    let ns = Netns::create(Some("500mbit")).unwrap();
    let setup = buffer_demo::sweep::SinkSetup {
        mode: Mode::Split,
        rcvbuf: Some(4 << 20),
        batch: 32,
    };
    let t = buffer_demo::sweep::run_trial(
        setup,
        0.0,
        20_000.0,
        0.05,
        64,
        Some(&ns),
        &buffer_demo::Stop::new(),
    )
    .unwrap();
    assert_eq!(t.residual, Some(0), "{t:?}");
    assert_eq!(t.rcvbuf_errors, Some(t.kernel_dropped), "{t:?}");
    assert!(ns.qdisc_drops().is_some());
}
