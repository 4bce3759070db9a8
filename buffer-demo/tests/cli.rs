//! The built binary: `sink` on port 0 prints its address, `blast` sends to
//! it, the sink's last stdout line is the JSON report with residual 0.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_buffer-demo");

#[test]
fn sink_and_blast_binaries_close_the_books() {
    let mut sink = Command::new(BIN)
        .args([
            "sink",
            "--bind",
            "127.0.0.1:0",
            "--json",
            "--progress",
            "0.05",
            "--timeout",
            "30",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
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
    assert_eq!(blast_json["sent"], 10_000);
    let rest: Vec<String> = out.lines().map(|l| l.unwrap()).collect();
    let status = sink.wait().unwrap();
    assert!(status.success(), "{rest:?}");
    let report: serde_json::Value = serde_json::from_str(rest.last().unwrap()).unwrap();
    assert_eq!(report["ledger"]["residual"], 0);
    assert_eq!(report["ledger"]["sent"], 10_000);
    assert!(rest.iter().any(|l| l.contains("the books close")));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut sink.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("dgr/s in"), "no progress line: {err}");
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
