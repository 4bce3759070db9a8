//! `framed-echo stream-demo`: TCP delivers bytes, not messages. Real
//! sockets on loopback, and (root) a real MTU 576 path between two network
//! namespaces the demo makes and removes.

use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use examples::stream::{
    DEFAULT_SETTINGS, DemoSettings, Outcome, PREFIX_BYTES, Setting, SettingRun, Sizes, run_setting,
};
use test_support::{Running, Stream};

fn settings(messages: usize, sizes: Sizes) -> DemoSettings {
    DemoSettings {
        messages,
        sizes,
        slow_reader_delay: Duration::from_millis(10),
        ..DEFAULT_SETTINGS
    }
}

fn ran(outcome: Outcome) -> Box<SettingRun> {
    match outcome {
        Outcome::Ran(run) => run,
        other => panic!("the setting did not run: {}", other.summary()),
    }
}

/// The bytes the plan puts on the wire, worked out from the plan alone.
fn wire_bytes(s: &DemoSettings) -> u64 {
    s.sizes
        .plan(s.messages)
        .iter()
        .map(|&len| (len + PREFIX_BYTES) as u64)
        .sum()
}

#[test]
fn a_slow_reader_gets_several_messages_in_one_read_and_framing_recovers_them_all() {
    let s = settings(300, Sizes::Mix(3));
    let run = ran(run_setting(Setting::SlowReader, &s, &AtomicBool::new(false)).unwrap());
    let c = &run.counts;
    assert!(
        c.reads_holding_several_messages >= 1,
        "no read held more than one message: {c:?}"
    );
    assert!(c.most_messages_in_one_read >= 2, "{c:?}");
    assert_eq!(c.messages, 300);
    assert_eq!(
        (run.framing.frames, run.framing.identical),
        (300, 300),
        "framing gives back every message, byte for byte: {:?}",
        run.framing
    );
    assert!(run.passed());
}

#[test]
fn the_sum_of_the_reads_is_the_sum_of_the_sends() {
    for (setting, sizes) in [
        (Setting::Loopback, Sizes::Mix(11)),
        (Setting::Loopback, Sizes::Fixed(70_000)),
        (Setting::SlowReader, Sizes::Fixed(1)),
    ] {
        let s = settings(200, sizes);
        let run = ran(run_setting(setting, &s, &AtomicBool::new(false)).unwrap());
        let c = &run.counts;
        let want = wire_bytes(&s);
        assert_eq!(c.message_bytes, want, "{setting:?} {sizes:?}");
        assert_eq!(c.sent_bytes, want, "{setting:?} {sizes:?}");
        assert_eq!(c.read_bytes, want, "{setting:?} {sizes:?}");
        assert_eq!(
            c.read_sizes.counts.iter().sum::<u64>(),
            c.read_calls,
            "every read is in the histogram"
        );
        assert_eq!(c.send_sizes.counts.iter().sum::<u64>(), c.send_calls);
        assert!(c.send_calls >= c.messages);
        assert!(run.framing.all_identical(200), "{:?}", run.framing);
    }
}

#[test]
fn across_mtu_576_a_message_over_the_mss_arrives_in_several_reads_and_framing_recovers_it() {
    if let Some(why) = examples::stream::path::unavailable() {
        eprintln!("the MTU 576 test did not run: {why}");
        return;
    }
    let before = namespaces();
    let s = settings(60, Sizes::Mix(5));
    let run = ran(run_setting(Setting::Mtu576, &s, &AtomicBool::new(false)).unwrap());
    let c = &run.counts;
    let mss = c.mss_bytes.expect("the kernel tells the MSS");
    assert!(mss <= 536, "MSS {mss} on an MTU 576 path");
    assert!(c.messages_over_mss >= 1, "{c:?}");
    assert!(
        c.messages_over_mss_split >= 1,
        "no message over the MSS came in more than one read: {c:?}"
    );
    assert!(run.framing.all_identical(60), "{:?}", run.framing);
    assert_eq!(c.read_bytes, wire_bytes(&s));
    assert_eq!(namespaces(), before, "the demo removes its namespaces");
}

/// The names of the network namespaces that exist now.
fn namespaces() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|n| n.starts_with("sdm"))
        .collect();
    names.sort();
    names
}

fn framed_echo() -> Command {
    Command::new(env!("CARGO_BIN_EXE_framed-echo"))
}

#[test]
fn json_is_one_document_whose_counts_add_up() {
    let finished = test_support::run(framed_echo().args([
        "stream-demo",
        "--json",
        "--settings",
        "loopback,slow-reader",
        "--messages",
        "150",
        "--read-delay",
        "5ms",
    ]));
    assert_eq!(finished.code(), Some(0));
    let doc = finished.document();
    assert_eq!(doc["role"], "stream_demo");
    assert_eq!(doc["passed"], true);
    let runs = doc["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for run in runs {
        let reads: u64 = run["read_sizes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["count"].as_u64().unwrap())
            .sum();
        assert_eq!(reads, run["read_calls"].as_u64().unwrap());
        assert_eq!(run["read_bytes"], run["sent_bytes"]);
        assert_eq!(run["framing"]["identical"], 150);
    }
}

#[test]
fn ctrl_c_during_the_slow_reader_prints_what_was_sent_and_exits_130() {
    let child = Running::spawn(framed_echo().args([
        "stream-demo",
        "--json",
        "--settings",
        "loopback,slow-reader",
        "--messages",
        "20000",
        "--read-delay",
        "50ms",
    ]));
    child.wait_for_line(Stream::Stderr, |l| l.starts_with("loopback:"));
    child.interrupt();
    let finished = child.finish();
    assert_eq!(finished.code(), Some(130));
    let doc = finished.document();
    assert_eq!(doc["interrupted"], true);
    let slow = &doc["runs"][1];
    assert_eq!(slow["setting"], "slow-reader");
    assert_eq!(slow["interrupted"], true);
    let sent = slow["messages"].as_u64().unwrap();
    assert!(sent < 20_000, "the sender stopped early: {sent}");
    assert_eq!(slow["framing"]["identical"].as_u64(), Some(sent));
    assert_eq!(slow["read_bytes"], slow["sent_bytes"]);
}
