//! The `ack-demo` binary as users run it: the benchmark end to end (small),
//! errors for bad arguments, and a client that gives up on a frozen server.

#[path = "../../tests/common/mod.rs"]
mod common;
mod process;

use process::ServerProcess;
use test_support::{Finished, run};

/// Runs `ack-demo ARGS..` to its end.
fn ack_demo(args: &[&str]) -> Finished {
    run(process::ack_demo().args(args).env("RUST_LOG", "error"))
}

#[test]
fn bench_runs_every_window_and_reports_both_ratios() {
    let dir = std::env::temp_dir().join(format!("ack-cli-bench-{}", std::process::id()));
    let out = ack_demo(&[
        "bench",
        "--scale",
        "5",
        "--json",
        "--sessions",
        "1,3",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    // With --json the tables for people are on stderr.
    let tables = &out.stderr;
    assert_eq!(out.code(), Some(0), "{}{tables}", out.stdout);
    let report = out.document();
    assert_eq!(report["program"], "ack-demo");
    assert_eq!(report["schema"], 1);
    assert_eq!(report["rows"].as_array().unwrap().len(), 9);
    assert!(report["relay_w32_over_w1"].as_f64().unwrap() > 0.0);
    assert!(report["loopback_w128_over_unacked"].as_f64().unwrap() > 0.0);
    assert!(report["t_fsync_ms"].as_f64().unwrap() > 0.0);
    assert!(report["t_commit_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(report["loopback_over_limit"].as_array().unwrap().len(), 4);
    let sessions = report["session_rows"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[1]["sessions"], 3);
    assert!(sessions[1]["messages_per_sec"].as_f64().unwrap() > 0.0);
    assert!(tables.contains("t_fsync"), "{tables}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_arguments_are_explained() {
    let out = ack_demo(&[
        "client",
        "--connect",
        "127.0.0.1:9",
        "--size",
        "3",
        "--count",
        "100",
    ]);
    let err = &out.stderr;
    assert_eq!(out.code(), Some(2), "a usage error: {err}");
    assert!(err.contains("--size 3 must be"), "{err}");
    assert!(!err.contains("token"), "nothing was started: {err}");
    for bad in ["0", "1,x", "20000", "-1"] {
        let out = ack_demo(&["bench", &format!("--sessions={bad}")]);
        assert_ne!(out.code(), Some(0), "--sessions {bad}");
        let err = &out.stderr;
        assert!(
            err.contains("session count from 1 to 10000"),
            "{bad}: {err}"
        );
    }
    let out = ack_demo(&["client", "--connect", "nowhere"]);
    assert_ne!(out.code(), Some(0));
    assert!(out.stderr.contains("--connect"), "{}", out.stderr);
}

#[test]
fn hostile_numbers_are_usage_errors_not_panics() {
    for args in [
        &[
            "client",
            "--connect",
            "127.0.0.1:9",
            "--reconnect-for",
            "1e30",
        ][..],
        &["client", "--connect", "127.0.0.1:9", "--reconnect-for=-1"],
        &[
            "client",
            "--connect",
            "127.0.0.1:9",
            "--heartbeat-ms",
            "18446744073709551615",
        ],
        &["bench", "--delay-ms", "1e30"],
        &["bench", "--delay-ms", "nan"],
        &[
            "server",
            "--listen",
            "127.0.0.1:0",
            "--out",
            "x",
            "--heartbeat-ms",
            "0",
        ],
    ] {
        let out = ack_demo(args);
        let err = &out.stderr;
        assert_eq!(out.code(), Some(2), "{args:?}: {err}");
        let flag = args
            .iter()
            .find(|a| a.starts_with("--") && !matches!(**a, "--connect" | "--listen" | "--out"))
            .unwrap();
        let flag = flag.split('=').next().unwrap();
        assert!(
            err.contains(flag),
            "{args:?}: the message names {flag}: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// A stopped server (SIGSTOP): its kernel still completes handshakes from
/// the listen backlog, but nothing ever answers. `--reconnect-for 1` must
/// end the client, however many connects succeed.
#[test]
fn a_frozen_server_is_given_up_on_after_the_reconnect_budget() {
    let dir = common::temp_dir("frozen");
    let server = ServerProcess::start("127.0.0.1:0", &dir.join("out.txt"), &[]);
    server.running.signal(libc::SIGSTOP);
    // Generous: the budget is 1 s plus one 300 ms silence bound; past
    // test-support's deadline the client is killed and the test fails.
    let out = run(process::ack_demo()
        .args(["client", "--connect", &server.addr.to_string()])
        .args([
            "--count",
            "100",
            "--reconnect-for",
            "1",
            "--heartbeat-ms",
            "100",
        ])
        .env("RUST_LOG", "error"));
    // Resumed, so that its drop can end it as any other.
    server.running.signal(libc::SIGCONT);
    let err = &out.stderr;
    assert_eq!(out.code(), Some(1), "{err}");
    assert!(
        err.contains("never answered") || err.contains("without an answer"),
        "the error says the server did not answer: {err}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn version_and_help_name_the_program_and_its_purpose() {
    let version = ack_demo(&["--version"]);
    assert_eq!(
        version.stdout.trim(),
        format!("ack-demo {}", env!("CARGO_PKG_VERSION"))
    );
    let help = ack_demo(&["--help"]);
    let first = help.stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("ack-demo: acknowledged messaging over TCP"),
        "{first}"
    );
}

#[test]
fn host_names_are_accepted_for_listen_and_connect() {
    let dir = common::temp_dir("hostnames");
    let server = ServerProcess::start("localhost:0", &dir.join("out.txt"), &[]);
    assert!(server.addr.ip().is_loopback(), "{}", server.addr);
    let out = ack_demo(&[
        "client",
        "--connect",
        &format!("localhost:{}", server.addr.port()),
        "--count",
        "20",
        "--json",
    ]);
    assert_eq!(out.code(), Some(0), "{}{}", out.stdout, out.stderr);
    let report = out.document();
    assert_eq!(report["acked"], 20);
    assert_eq!(report["completed"], true);
    assert_eq!(report["interrupted"], false);
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}
