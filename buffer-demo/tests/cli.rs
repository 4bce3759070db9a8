//! The built binary: `sink` on port 0 prints its address, `blast` sends to
//! it, the sink's last stdout line is the JSON report with residual 0.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_buffer-demo");

/// Starts `sink --bind 127.0.0.1:0 --json` with `args`; returns it, its
/// stdout past the first line, and the address that line names.
fn sink(args: &[&str], stderr: Stdio) -> (Child, BufReader<ChildStdout>, String) {
    let mut sink = Command::new(BIN)
        .args(["sink", "--bind", "127.0.0.1:0", "--json"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(sink.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let addr = first
        .trim()
        .strip_prefix("listening on ")
        .expect(&first)
        .to_string();
    (sink, out, addr)
}

#[test]
fn sink_and_blast_binaries_close_the_books() {
    let (mut sink, out, addr) = sink(&["--progress", "0.05", "--timeout", "30"], Stdio::piped());
    let blast = Command::new(BIN)
        .args([
            "blast",
            "--to",
            &addr,
            "--rate",
            "50000",
            "--duration",
            "0.2",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(blast.status.success());
    let blast_json: serde_json::Value = serde_json::from_str(
        String::from_utf8_lossy(&blast.stdout)
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    let sent = blast_json["sent"].as_u64().unwrap();
    assert!(
        sent == 10_000 || blast_json["sender_limited"] == true,
        "{blast_json}"
    );
    let rest: Vec<String> = out.lines().map(|l| l.unwrap()).collect();
    let status = sink.wait().unwrap();
    assert!(status.success(), "{rest:?}");
    let report: serde_json::Value = serde_json::from_str(rest.last().unwrap()).unwrap();
    assert_eq!(report["ledger"]["residual"], 0);
    assert_eq!(report["ledger"]["sent"], sent);
    assert!(rest.iter().any(|l| l.contains("the books close")));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut sink.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("dgr/s in"), "no progress line: {err}");
}

/// The binaries with GSO from two threads into a GRO sink on two
/// reuseport receivers: exit 0, the books close.
#[test]
fn gso_blast_into_gro_receivers_closes_the_books() {
    let (mut sink, out, addr) = sink(
        &[
            "--progress",
            "0",
            "--timeout",
            "30",
            "--gro",
            "--receivers",
            "2",
            "--rcvbuf",
            "4194304",
        ],
        Stdio::inherit(),
    );
    let blast = Command::new(BIN)
        .args([
            "blast",
            "--to",
            &addr,
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
        ])
        .output()
        .unwrap();
    assert!(blast.status.success());
    let text = String::from_utf8_lossy(&blast.stdout);
    assert!(text.contains("2 threads, gso 16"), "{text}");
    let rest: Vec<String> = out.lines().map(|l| l.unwrap()).collect();
    assert!(sink.wait().unwrap().success(), "{rest:?}");
    let report: serde_json::Value = serde_json::from_str(rest.last().unwrap()).unwrap();
    assert_eq!(report["ledger"]["residual"], 0);
    assert_eq!(report["ledger"]["sent"], 20_000);
    assert_eq!(report["gro"], true);
    assert_eq!(report["receivers"], 2);
}

#[test]
fn help_explains() {
    let out = Command::new(BIN).args(["sink", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("SO_RCVBUFFORCE") && text.contains("recvmmsg"),
        "{text}"
    );
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("SO_RXQ_OVFL"));
}

/// Values that used to panic (`Duration::from_secs_f64`, capacity
/// overflow) or run for ever: each is refused with exit code 2 and a
/// message naming the flag, without a panic.
#[test]
fn hostile_flag_values_exit_2_naming_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["blast", "--to", "127.0.0.1:9", "--duration=-1"],
            "--duration",
        ),
        (
            &["blast", "--to", "127.0.0.1:9", "--rate", "1e30"],
            "--rate",
        ),
        (&["blast", "--to", "127.0.0.1:9", "--rate", "nan"], "--rate"),
        (
            &[
                "blast",
                "--to",
                "127.0.0.1:9",
                "--batch",
                "18446744073709551615",
            ],
            "--batch",
        ),
        (&["blast", "--to", "127.0.0.1:9", "--size", "1"], "--size"),
        (&["sink", "--timeout=-1"], "--timeout"),
        (&["sink", "--progress=inf"], "--progress"),
        (&["sink", "--queue", "18446744073709551615"], "--queue"),
        (&["sink", "--batch", "4294967296"], "--batch"),
        (&["sink", "--work-us", "1e30"], "--work-us"),
        (&["sink", "--nonce", "1e30"], "--nonce"),
        (&["sink", "--receivers", "0"], "--receivers"),
        (&["sink", "--receivers", "65"], "--receivers"),
        (&["blast", "--to", "127.0.0.1:9", "--gso", "65"], "--gso"),
        (
            &["blast", "--to", "127.0.0.1:9", "--threads", "0"],
            "--threads",
        ),
        // 64 segments of 2000 bytes do not fit one GSO message.
        (
            &[
                "blast",
                "--to",
                "127.0.0.1:9",
                "--gso",
                "64",
                "--size",
                "2000",
            ],
            "--gso",
        ),
        (&["sweep", "--out", "/nonexistent", "--secs=-1"], "--secs"),
        (&["versus-iperf3", "--secs", "0"], "--secs"),
        (&["versus-iperf3", "--secs", "inf"], "--secs"),
        (&["versus-iperf3", "--search-secs", "nan"], "--search-secs"),
    ];
    for (args, flag) in cases {
        let out = Command::new(BIN).args(*args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?} does not name {flag}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// A rate no sender reaches: blast still stops shortly after --duration,
/// says it was sender-limited, and its sentinel still closes the sink's books.
#[test]
fn blast_stops_at_its_duration_whatever_the_rate() {
    let sink = buffer_demo::Sink::bind(buffer_demo::SinkConfig {
        rcvbuf: Some(4 << 20),
        timeout: Some(std::time::Duration::from_secs(30)),
        ..buffer_demo::SinkConfig::default()
    })
    .unwrap();
    let to = sink.local_addr().to_string();
    let h = std::thread::spawn(move || sink.run());
    let started = std::time::Instant::now();
    let out = Command::new(BIN)
        .args([
            "blast",
            "--to",
            &to,
            "--rate",
            "50000000",
            "--duration",
            "0.2",
            "--json",
        ])
        .output()
        .unwrap();
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // 0.2 s + at most 1 s of grace + the sentinel; generous for a loaded machine.
    assert!(took.as_secs_f64() < 8.0, "took {took:?}");
    assert!(text.contains("SENDER-LIMITED"), "{text}");
    let json: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(json["sender_limited"], true);
    // It said so while it ran, not only at the end.
    assert!(json["behind_warnings"].as_u64().unwrap() >= 1, "{json}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the blaster is behind its schedule"), "{err}");
    // Cut at the duration itself: what was left could not go out in the grace.
    let secs = json["secs"].as_f64().unwrap();
    assert!(secs < 1.2, "sent for {secs} s");
    let sent = json["sent"].as_u64().unwrap();
    assert!(sent < 10_000_000, "{json}");
    let r = h.join().unwrap().unwrap();
    assert_eq!(r.ledger.sent, Some(sent), "{r}");
}

/// SIGINT while the sink waits: the report is printed and the exit code is 130.
#[test]
fn sink_interrupted_prints_its_report_and_exits_130() {
    let mut sink = Command::new(BIN)
        .args(["sink", "--bind", "127.0.0.1:0", "--progress", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(sink.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.starts_with("listening on "), "{first}");
    // SAFETY: kill has no memory preconditions; the pid is our child's.
    assert_eq!(unsafe { libc::kill(sink.id() as i32, libc::SIGINT) }, 0);
    let rest: Vec<String> = out.lines().map(|l| l.unwrap()).collect();
    let status = sink.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{rest:?}");
    let text = rest.join("\n");
    assert!(text.contains("interrupted"), "{text}");
    assert!(text.contains("no sentinel arrived"), "{text}");
}
