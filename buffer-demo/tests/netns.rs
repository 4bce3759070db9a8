//! The sink in its own network namespace behind a veth pair: the namespace's
//! `Udp: RcvbufErrors` is its alone and agrees with the other two witnesses.
//! Runs when root with iproute2; otherwise says why it did not.

mod common;

use buffer_demo::netns::{self, Netns};
use buffer_demo::{Mode, SinkConfig};
use common::{assert_closes, blast_cfg};

/// Runs `sink` in `ns` (bound to its sink address, 30 s timeout) while
/// `blast` sends to it from the host; returns both reports.
fn sink_in(
    ns: &Netns,
    sink: SinkConfig,
    mut blast: buffer_demo::BlastConfig,
) -> (buffer_demo::SinkReport, buffer_demo::BlastReport) {
    let sink = buffer_demo::Sink::bind(SinkConfig {
        bind: ns.sink_addr(0),
        netns: Some(ns.name().to_string()),
        timeout: Some(std::time::Duration::from_secs(30)),
        ..sink
    })
    .unwrap();
    blast.to = sink.local_addr();
    let h = std::thread::spawn(move || sink.run());
    let b = buffer_demo::blast(&blast).unwrap();
    (h.join().unwrap().unwrap(), b)
}

#[test]
fn netns_third_witness() {
    if let Some(why) = netns::unavailable() {
        eprintln!("netns_third_witness did not run: {why}");
        return;
    }
    let ns = Netns::create(None).unwrap();
    let sink = SinkConfig {
        mode: Mode::Inline,
        work_us: 20.0,
        rcvbuf: Some(4096),
        ..SinkConfig::default()
    };
    let (r, b) = sink_in(&ns, sink, blast_cfg(100_000.0, 0.2));
    assert_closes(&r, &b);
    let l = &r.ledger;
    assert!(l.kernel_dropped.unwrap() > 0, "{r}");
    assert_eq!(l.rcvbuf_errors, l.proc_drops, "{r}");
    assert!(r.to_string().contains("netns"));
}

/// GSO from two threads into two GRO receivers in the namespace, under
/// overload: the kernel counts drops per message, and the namespace's
/// `RcvbufErrors` (per message too) is the third witness.
#[test]
fn netns_third_witness_with_gro_and_two_receivers() {
    if let Some(why) = netns::unavailable() {
        eprintln!("netns_third_witness_with_gro_and_two_receivers did not run: {why}");
        return;
    }
    let ns = Netns::create(None).unwrap();
    let sink = SinkConfig {
        mode: Mode::Inline,
        gro: true,
        receivers: 2,
        work_us: 20.0,
        rcvbuf: Some(16 * 1024),
        ..SinkConfig::default()
    };
    let mut blast = blast_cfg(200_000.0, 0.2);
    blast.threads = 2;
    blast.gso = 8;
    blast.batch = 4;
    let (r, b) = sink_in(&ns, sink, blast);
    let l = &r.ledger;
    assert!(l.closes(), "{r}");
    assert_eq!(l.sent, Some(b.sent), "{r}");
    assert_eq!(l.delivered + l.kernel_dropped.unwrap(), b.sent, "{r}");
    assert!(l.kernel_messages_dropped.unwrap() > 0, "{r}");
    assert_eq!(l.kernel_messages_dropped, l.messages_missing, "{r}");
    assert_eq!(l.rcvbuf_errors, l.proc_drops, "{r}");
}

#[test]
fn netns_sweep_trial_with_tbf() {
    if let Some(why) = netns::unavailable() {
        eprintln!("netns_sweep_trial_with_tbf did not run: {why}");
        return;
    }
    let ns = Netns::create(Some("500mbit")).unwrap();
    let setup = buffer_demo::sweep::SinkSetup::plain(Mode::Split, Some(4 << 20), 32);
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

/// Two runs that start looking at the same slot (as two sweeps whose pids
/// differ by 2032 used to) get different namespaces and addresses, and both
/// carry a trial whose books close.
#[test]
fn runs_starting_at_the_same_slot_get_distinct_namespaces() {
    if let Some(why) = netns::unavailable() {
        eprintln!("runs_starting_at_the_same_slot_get_distinct_namespaces did not run: {why}");
        return;
    }
    let first = 5000 + std::process::id() % 1000;
    let a = Netns::create_from(first, None).unwrap();
    let b = Netns::create_from(first, None).unwrap();
    assert_ne!(a.name(), b.name());
    assert_ne!(a.host_addr(), b.host_addr());
    assert_ne!(a.sink_addr(0), b.sink_addr(0));
    let setup = buffer_demo::sweep::SinkSetup::plain(Mode::Split, Some(1 << 20), 32);
    let stop = buffer_demo::Stop::new();
    // 250 datagrams each: never more than a veth backlog (1000) holds, so
    // nothing is dropped before the socket, where the books cannot see.
    std::thread::scope(|s| {
        let ta = s.spawn(|| {
            buffer_demo::sweep::run_trial(setup, 0.0, 5_000.0, 0.05, 64, Some(&a), &stop)
        });
        let tb =
            buffer_demo::sweep::run_trial(setup, 0.0, 5_000.0, 0.05, 64, Some(&b), &stop).unwrap();
        let ta = ta.join().unwrap().unwrap();
        assert_eq!(tb.residual, Some(0), "{tb:?}");
        assert_eq!(ta.residual, Some(0), "{ta:?}");
    });
}

/// A veth pair that deletes itself.
struct Squatter(String);

impl Drop for Squatter {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.0])
            .output();
    }
}

/// A slot whose /30 is already on a host interface (someone else's) is
/// skipped, not shared.
#[test]
fn a_slot_whose_addresses_are_in_use_is_skipped() {
    if let Some(why) = netns::unavailable() {
        eprintln!("a_slot_whose_addresses_are_in_use_is_skipped did not run: {why}");
        return;
    }
    let slot = 9000 + std::process::id() % 1000;
    let (third, fourth) = (1 + slot / 64, (slot % 64) * 4 + 1);
    let name = format!("bdtA{}", std::process::id());
    let ok = |args: &[&str]| {
        let out = std::process::Command::new("ip")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let peer = format!("bdtB{}", std::process::id());
    ok(&["link", "add", &name, "type", "veth", "peer", "name", &peer]);
    let _squatter = Squatter(name.clone());
    ok(&[
        "addr",
        "add",
        &format!("169.254.{third}.{fourth}/30"),
        "dev",
        &name,
    ]);
    let ns = Netns::create_from(slot, None).unwrap();
    assert_ne!(ns.slot(), slot);
    assert_ne!(ns.host_addr().octets()[2..], [third as u8, fourth as u8]);
}
