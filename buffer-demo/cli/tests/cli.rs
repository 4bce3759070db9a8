//! The built binary, as a user runs it: `sink` on port 0 says where it
//! listens, `blast` sends to it, and with `--json` each prints one JSON
//! document on stdout (everything else on stderr); Ctrl-C still prints the
//! report and exits 130; `blast` ends at `--duration` whatever `--rate` asks.

use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

use test_support::{Finished, Running, Stream};

#[path = "../../tests/common/mod.rs"]
mod common;

const BIN: &str = env!("CARGO_BIN_EXE_buffer-demo");

/// The run's one JSON document (test-support checks there is exactly one,
/// with the identity fields), and the identity this program gives it.
fn document(run: &Finished) -> serde_json::Value {
    let doc = run.document();
    assert_eq!(doc["program"], "buffer-demo", "{doc}");
    assert_eq!(doc["version"], env!("CARGO_PKG_VERSION"), "{doc}");
    assert_eq!(doc["schema"], 1, "{doc}");
    doc
}

/// A sink started with `--listen 127.0.0.1:0 --json` and `args`, and the
/// address it said it listens on (on stderr, since stdout carries only
/// the JSON document).
struct JsonSink {
    sink: Running,
    addr: String,
}

impl JsonSink {
    fn start(args: &[&str]) -> JsonSink {
        let sink = Running::spawn(
            Command::new(BIN)
                .args(["sink", "--listen", "127.0.0.1:0", "--json"])
                .args(args),
        );
        let addr = sink.wait_listening().to_string();
        JsonSink { sink, addr }
    }

    /// Waits for the sink to end: its exit code, its one JSON document, its stderr.
    fn finish(self) -> (Option<i32>, serde_json::Value, String) {
        let end = self.sink.finish();
        (end.code(), document(&end), end.stderr)
    }
}

fn blast(args: &[&str]) -> Finished {
    test_support::run(Command::new(BIN).arg("blast").args(args))
}

#[test]
fn sink_and_blast_binaries_close_the_books() {
    let sink = JsonSink::start(&["--progress", "0.05", "--timeout", "30"]);
    let out = blast(&[
        "--connect",
        &sink.addr,
        "--rate",
        "50000",
        "--duration",
        "0.2",
        "--json",
    ]);
    let b = document(&out);
    let sent = b["sent"].as_u64().unwrap();
    // A loaded machine may fall behind even 50000/s: then it says so and exits 1.
    if b["sender_limited"] == true {
        assert_eq!(out.status.code(), Some(1), "{b}");
    } else {
        assert_eq!(out.status.code(), Some(0), "{b}");
        assert_eq!(sent, 10_000, "{b}");
    }
    // The human report went to stderr.
    let berr = &out.stderr;
    assert!(berr.contains("datagrams of 32 B payload"), "{berr}");
    let (code, report, err) = sink.finish();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(report["ledger"]["residual"], 0);
    assert_eq!(report["ledger"]["sent"], sent);
    assert_eq!(report["interrupted"], false);
    assert!(
        report["delivered_per_s"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert!(report["rcvbuf"]["granted_bytes"].as_u64().unwrap() > 0);
    // Both name the stream by the same nonce, as 16 hex digits.
    assert_eq!(report["ledger"]["stream"]["nonce"], b["nonce"]);
    assert_eq!(b["nonce"].as_str().unwrap().len(), 16, "{b}");
    assert!(err.contains("the books close"), "{err}");
    assert!(err.contains("dgr/s in"), "no progress line: {err}");
}

/// The binaries with GSO from two threads into a GRO sink on two
/// reuseport receivers: exit 0, the books close.
#[test]
fn gso_blast_into_gro_receivers_closes_the_books() {
    let sink = JsonSink::start(&[
        "--progress",
        "0",
        "--timeout",
        "30",
        "--gro",
        "--receivers",
        "2",
        "--rcvbuf",
        "4194304",
    ]);
    let out = blast(&[
        "--connect",
        &sink.addr,
        "--rate",
        "100000",
        "--duration",
        "0.2",
        "--gso",
        "16",
        "--threads",
        "2",
        "--batch",
        "4",
    ]);
    let text = &out.stdout;
    assert!(text.contains("2 threads, gso 16"), "{text}");
    let (code, report, err) = sink.finish();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(report["ledger"]["residual"], 0);
    let sent = report["ledger"]["sent"].as_u64().unwrap();
    assert!(sent == 20_000 || out.status.code() == Some(1), "{report}");
    assert_eq!(report["gro"], true);
    assert_eq!(report["receivers"], 2);
}

/// The old flag names still work (hidden), and host names are taken:
/// `--bind localhost:0` listens on 127.0.0.1, `--to localhost:PORT` sends there.
#[test]
fn old_flag_names_and_host_names_work() {
    let sink = Running::spawn(
        Command::new(BIN)
            .args(["sink", "--bind", "localhost:0", "--progress", "0"])
            .args(["--timeout", "30"]),
    );
    // Without --json the line is on stdout.
    let line = sink.wait_for_line(Stream::Stdout, |l| l.starts_with("listening on "));
    assert!(line.starts_with("listening on 127.0.0.1:"), "{line}");
    let port = sink.wait_listening().port();
    let b = blast(&[
        "--to",
        &format!("localhost:{port}"),
        "--rate",
        "20000",
        "--duration",
        "0.1",
    ]);
    assert!(matches!(b.code(), Some(0 | 1)), "{}", b.stderr);
    let end = sink.finish();
    let text = &end.stdout;
    assert_eq!(end.code(), Some(0), "{text}{}", end.stderr);
    assert!(text.contains("the books close"), "{text}");
}

/// `--size` is the payload: each datagram is the 32-byte header plus it,
/// and the report gives both.
#[test]
fn size_is_the_payload_and_the_report_gives_the_datagram_size() {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let port = rx.local_addr().unwrap().port();
    let out = blast(&[
        "--connect",
        &format!("localhost:{port}"),
        "--size",
        "100",
        "--rate",
        "1000",
        "--duration",
        "10ms",
        "--drain-ms",
        "0",
        "--json",
    ]);
    let doc = document(&out);
    assert_eq!(doc["payload_bytes"], 100, "{doc}");
    assert_eq!(doc["datagram_bytes"], 132, "{doc}");
    let mut buf = [0u8; 9216];
    let n = rx.recv(&mut buf).unwrap();
    assert_eq!(n, 132, "a data datagram is header + --size");
}

#[test]
fn help_and_version_name_the_program_and_its_purpose() {
    let out = test_support::run(Command::new(BIN).args(["sink", "--help"]));
    let text = &out.stdout;
    assert!(
        text.contains("SO_RCVBUFFORCE") && text.contains("recvmmsg") && text.contains("--listen"),
        "{text}"
    );
    let out = test_support::run(Command::new(BIN).arg("--help"));
    let text = &out.stdout;
    assert!(text.contains("SO_RXQ_OVFL"), "{text}");
    assert!(
        text.starts_with("buffer-demo: why a UDP receiver drops datagrams"),
        "{text}"
    );
    let out = test_support::run(Command::new(BIN).arg("--version"));
    let text = &out.stdout;
    assert!(
        text.starts_with(&format!("buffer-demo {}", env!("CARGO_PKG_VERSION")))
            && text.contains("UDP receiver drops datagrams"),
        "{text}"
    );
}

/// Values that used to panic (`Duration::from_secs_f64`, capacity
/// overflow) or run for ever: each is refused with exit code 2 and a
/// message naming the flag, without a panic.
#[test]
fn hostile_flag_values_exit_2_naming_the_flag() {
    let to = ["blast", "--connect", "127.0.0.1:9"];
    let blast =
        |more: &[&'static str]| -> Vec<&'static str> { to.iter().chain(more).copied().collect() };
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (blast(&["--duration=-1"]), "--duration"),
        (blast(&["--rate", "1e30"]), "--rate"),
        (blast(&["--rate", "nan"]), "--rate"),
        (blast(&["--batch", "18446744073709551615"]), "--batch"),
        (blast(&["--size", "9185"]), "--size"),
        (blast(&["--size=-1"]), "--size"),
        (vec!["blast", "--connect", "nohost"], "--connect"),
        (vec!["blast", "--connect", ":7200"], "--connect"),
        (vec!["sink", "--listen", "127.0.0.1:99999"], "--listen"),
        (vec!["sink", "--timeout=-1"], "--timeout"),
        (vec!["sink", "--progress=inf"], "--progress"),
        (vec!["sink", "--queue", "18446744073709551615"], "--queue"),
        (vec!["sink", "--batch", "4294967296"], "--batch"),
        (vec!["sink", "--work-us", "1e30"], "--work-us"),
        (vec!["sink", "--nonce", "1e30"], "--nonce"),
        (vec!["sink", "--receivers", "0"], "--receivers"),
        (vec!["sink", "--receivers", "65"], "--receivers"),
        (blast(&["--gso", "65"]), "--gso"),
        (blast(&["--threads", "0"]), "--threads"),
        // 64 segments of 2032 bytes do not fit one GSO message (found by
        // the library, before anything is sent: still a usage error).
        (blast(&["--gso", "64", "--size", "2000"]), "--gso"),
        (
            vec!["sweep", "--out", "/nonexistent", "--secs=-1"],
            "--trial-duration",
        ),
        (
            vec!["sweep", "--out", "/nonexistent", "--trial-duration=0"],
            "--trial-duration",
        ),
        (vec!["versus-iperf3", "--secs", "0"], "--duration"),
        (vec!["versus-iperf3", "--duration", "inf"], "--duration"),
        (
            vec!["versus-iperf3", "--search-secs", "nan"],
            "--trial-duration",
        ),
    ];
    for (args, flag) in &cases {
        let out = test_support::run(Command::new(BIN).args(args));
        let err = &out.stderr;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?} does not name {flag}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

/// A run that fails (the address is taken) exits 1, not 2: nothing was
/// wrong with the command line.
#[test]
fn a_failed_run_exits_1() {
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = test_support::run(Command::new(BIN).args(["sink", "--listen", &addr, "--json"]));
    let err = &out.stderr;
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&addr), "{err}");
    assert!(out.stdout.is_empty(), "no half document on stdout");
}

/// A rate no single thread reaches, for 1 s: blast ends at its duration
/// (not when the rate asked would have sent everything), says while it
/// runs that it fell behind, reports the rate it reached against the rate
/// asked, exits 1, and its sentinel still closes the sink's books.
#[test]
fn blast_stops_at_its_duration_and_says_it_fell_behind() {
    let sink = buffer_demo::Sink::bind(buffer_demo::SinkConfig {
        rcvbuf: Some(4 << 20),
        timeout: Some(Duration::from_secs(30)),
        ..buffer_demo::SinkConfig::default()
    })
    .unwrap();
    let to = sink.local_addr().to_string();
    let h = std::thread::spawn(move || sink.run());
    let started = Instant::now();
    let out = blast(&[
        "--connect",
        &to,
        "--rate",
        "50000000",
        "--duration",
        "1",
        "--json",
    ]);
    let took = started.elapsed();
    let json = document(&out);
    let err = &out.stderr;
    assert_eq!(out.status.code(), Some(1), "{err}");
    // 1 s + the 100 ms drain + the sentinel copies; generous for a loaded machine.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let sending = json["sending_s"].as_f64().unwrap();
    assert!(sending <= 1.25, "sent for {sending} s");
    assert_eq!(json["sender_limited"], true);
    assert_eq!(json["offered_per_s"], 50_000_000.0);
    assert!(
        json["achieved_per_s"].as_f64().unwrap() < 50_000_000.0,
        "{json}"
    );
    // It said so while it ran, not only at the end.
    assert!(json["behind_warnings"].as_u64().unwrap() >= 1, "{json}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("blast: ") && l.contains("fell behind")),
        "{err}"
    );
    assert!(err.contains("fell behind: this sender reached"), "{err}");
    let sent = json["sent"].as_u64().unwrap();
    let r = h.join().unwrap().unwrap();
    assert_eq!(r.ledger.sent, Some(sent), "{r}");
}

/// A rate a little above what this sender reaches (measured first): the
/// stream still ends at --duration. Before, a sender that could send the
/// backlog within a grace of a second went on for that second.
#[test]
fn blast_a_little_behind_still_ends_at_its_duration() {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = rx.local_addr().unwrap().to_string();
    let unpaced = blast(&[
        "--connect",
        &to,
        "--rate",
        "0",
        "--duration",
        "0.3",
        "--drain-ms",
        "0",
        "--json",
    ]);
    let reach = document(&unpaced)["achieved_per_s"].as_f64().unwrap();
    let asked = format!("{:.0}", reach * 1.3);
    let out = blast(&[
        "--connect",
        &to,
        "--rate",
        &asked,
        "--duration",
        "2",
        "--drain-ms",
        "0",
        "--json",
    ]);
    let json = document(&out);
    let sending = json["sending_s"].as_f64().unwrap();
    assert!(
        sending <= 2.25,
        "asked {asked}/s for 2 s, sent for {sending} s: {json}"
    );
}

/// SIGINT while the sink waits: the report is printed, it says
/// "interrupted", and the exit code is 130.
#[test]
fn sink_interrupted_prints_its_report_and_exits_130() {
    let sink = Running::spawn(Command::new(BIN).args([
        "sink",
        "--listen",
        "127.0.0.1:0",
        "--progress",
        "0",
    ]));
    sink.wait_listening();
    sink.interrupt();
    let end = sink.finish();
    let text = &end.stdout;
    assert_eq!(end.code(), Some(130), "{text}{}", end.stderr);
    assert!(text.contains("interrupted"), "{text}");
    assert!(text.contains("no sentinel arrived"), "{text}");
}

/// The same with --json, after part of a stream arrived: the one JSON
/// document has what arrived and `interrupted`.
#[test]
fn sink_interrupted_with_json_prints_one_document_and_exits_130() {
    let sink = JsonSink::start(&["--progress", "0"]);
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut datagram = [0u8; 64];
    buffer_demo::wire::Datagram::emit_data(&mut datagram, 7, 0, 0);
    tx.send_to(&datagram, &sink.addr).unwrap();
    sink.sink.interrupt();
    let (code, doc, err) = sink.finish();
    assert_eq!(code, Some(130), "{err}");
    assert_eq!(doc["interrupted"], true, "{doc}");
    assert!(doc["ledger"]["residual"].is_null(), "{doc}");
    assert!(err.contains("interrupted"), "{err}");
}

/// SIGINT while blast sends: its report (and the JSON document) says how
/// much went out and that it was interrupted; exit code 130.
#[test]
fn blast_interrupted_prints_its_report_and_exits_130() {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let child = Running::spawn(
        Command::new(BIN)
            .args(["blast", "--connect"])
            .arg(rx.local_addr().unwrap().to_string())
            .args(["--rate", "1000", "--duration", "1m", "--json"]),
    );
    // The progress line it prints every second of a long run.
    child.wait_for_line(Stream::Stderr, |l| l.starts_with("blast: "));
    let started = Instant::now();
    child.interrupt();
    let end = child.finish();
    let text = &end.stderr;
    assert_eq!(end.code(), Some(130), "{text}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let doc = document(&end);
    assert_eq!(doc["interrupted"], true, "{doc}");
    assert!(doc["sent"].as_u64().unwrap() > 0, "{doc}");
    assert!(doc["sending_s"].as_f64().unwrap() < 30.0, "{doc}");
    assert!(
        text.contains("interrupted: the stream was cut short"),
        "{text}"
    );
}

/// `sweep --json`: one JSON document with every trial, the table on stderr.
#[test]
fn sweep_json_is_one_document() {
    let dir = std::env::temp_dir().join(format!("bd-cli-sweep-{}", std::process::id()));
    let out = test_support::run(
        Command::new(BIN)
            .args([
                "sweep",
                "--short",
                "--work-us",
                "0",
                "--trial-duration",
                "20ms",
                "--json",
                "--out",
            ])
            .arg(&dir),
    );
    let err = &out.stderr;
    assert_eq!(out.status.code(), Some(0), "{err}");
    let doc = document(&out);
    let trials = doc["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 15, "{doc}");
    assert!(trials.iter().all(|t| t["residual"] == 0), "{doc}");
    assert!(trials[0]["offered_per_s"].as_f64().unwrap() > 0.0, "{doc}");
    assert_eq!(doc["trial_duration_s"], 0.02);
    assert!(err.contains("[1 of 15,"), "no N of M progress: {err}");
    assert!(
        err.contains("| configuration |"),
        "the table goes to stderr: {err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `versus-iperf3 --json`: one JSON document (needs iperf3; scripts/test
/// installs it).
#[test]
fn versus_iperf3_json_is_one_document() {
    if common::iperf3_missing() {
        eprintln!(
            "versus_iperf3_json_is_one_document did not run: iperf3 is not installed (scripts/test installs it)"
        );
        return;
    }
    let out = test_support::run(Command::new(BIN).args([
        "versus-iperf3",
        "--duration",
        "1",
        "--trial-duration",
        "50ms",
        "--no-strace",
        "--json",
    ]));
    let err = &out.stderr;
    assert!(matches!(out.status.code(), Some(0 | 1)), "{err}");
    let doc = document(&out);
    assert!(
        doc["iperf3"]["offered_per_s"].as_f64().unwrap() > 0.0,
        "{doc}"
    );
    assert_eq!(doc["searches"].as_array().unwrap().len(), 3, "{doc}");
    assert_eq!(doc["interrupted"], false);
}

/// SIGINT during a sweep: it ends after the trial under way with the
/// table of the trials that finished, as one JSON document; exit code 130.
#[test]
fn sweep_interrupted_with_json_prints_the_finished_trials_and_exits_130() {
    let dir = std::env::temp_dir().join(format!("bd-cli-sweep-int-{}", std::process::id()));
    let child = Running::spawn(
        Command::new(BIN)
            .args([
                "sweep",
                "--short",
                "--work-us",
                "0",
                "--trial-duration",
                "200ms",
                "--json",
                "--out",
            ])
            .arg(&dir),
    );
    child.wait_for_line(Stream::Stderr, |l| l.starts_with("[1 of 15,"));
    child.interrupt();
    let end = child.finish();
    let text = &end.stderr;
    assert_eq!(end.code(), Some(130), "{text}");
    let doc = document(&end);
    assert_eq!(doc["interrupted"], true, "{doc}");
    let trials = doc["trials"].as_array().unwrap().len();
    assert!((1..15).contains(&trials), "{doc}");
    assert!(text.contains("INTERRUPTED"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGINT while the processing thread has a long queue of slow work
/// (0.2 s per datagram, 30 queued): the sink ends at once instead of
/// working through the queue, and counts what it left as dropped in the queue.
#[test]
fn sink_interrupted_with_a_full_queue_ends_without_working_through_it() {
    interrupted_with_slow_work_ends_at_once("split");
}

/// The same inline: the receiving thread stops working through its batch.
#[test]
fn inline_sink_interrupted_ends_without_working_through_its_batch() {
    interrupted_with_slow_work_ends_at_once("inline");
}

fn interrupted_with_slow_work_ends_at_once(mode: &str) {
    let sink = JsonSink::start(&["--progress", "0.05", "--work-us", "200000", "--mode", mode]);
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut datagram = [0u8; 64];
    for seq in 0..30 {
        buffer_demo::wire::Datagram::emit_data(&mut datagram, 7, seq, 0);
        tx.send_to(&datagram, &sink.addr).unwrap();
    }
    // Wait until at least two datagrams arrived and are not processed yet
    // (split: queued; inline: counted in the batch being worked through),
    // so that a stop now leaves at least one not worked through.
    sink.sink.wait_for_line(Stream::Stderr, |l| {
        let (received, processed) = (counter(l, "received"), counter(l, "processed"));
        received.zip(processed).is_some_and(|(r, p)| r >= p + 2)
    });
    let started = Instant::now();
    sink.sink.interrupt();
    let (code, doc, err) = sink.finish();
    let took = started.elapsed();
    assert_eq!(code, Some(130), "{err}");
    // One datagram's work (0.2 s) may be under way; the other 5 s are not done.
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let abandoned = doc["abandoned_at_stop"].as_u64().unwrap();
    assert!(abandoned >= 1, "{doc}");
    let ledger = &doc["ledger"];
    let received = ledger["received"].as_u64().unwrap();
    assert_eq!(
        ledger["delivered"].as_u64().unwrap() + ledger["queue_dropped"].as_u64().unwrap(),
        received,
        "{doc}"
    );
    assert!(err.contains("datagrams still queued"), "{err}");
}

/// The number before `name` in a sink progress line
/// ("sink: 0 dgr/s in, 30 received, 2 processed, ...").
fn counter(line: &str, name: &str) -> Option<u64> {
    line.strip_prefix("sink: ")?
        .split(", ")
        .find_map(|part| part.trim().strip_suffix(name)?.trim().parse().ok())
}
