//! Ctrl-C (SIGINT) and SIGTERM on the real `ack-demo` binary: the server,
//! the client and the bench print their final report (and their one JSON
//! document with `--json`), say they were interrupted, and exit with code
//! 130.

#[path = "../../tests/common/mod.rs"]
mod common;
mod process;

use process::{ServerProcess, ack_demo};
use test_support::{Running, Stream, run};

#[test]
fn ctrl_c_ends_the_server_with_its_report_and_json_and_code_130() {
    let dir = common::temp_dir("sigint-server");
    let server = Running::spawn(
        ack_demo()
            .args(["server", "--listen", "127.0.0.1:0", "--json", "--out"])
            .arg(dir.join("out.txt"))
            // Its debug lines name the session: `session=7`, not `Some(7)`.
            .env("RUST_LOG", "warn,ack_demo::server=debug"),
    );
    let addr = server.wait_listening();
    // One session to completion, so the report has something to say.
    let client = run(ack_demo()
        .args(["client", "--connect", &addr.to_string()])
        .args(["--count", "200", "--size", "32", "--session", "7"])
        .env("RUST_LOG", "error"));
    assert_eq!(client.code(), Some(0), "{}", client.stderr);

    server.interrupt();
    let end = server.finish();
    let log = &end.stderr;
    assert_eq!(end.code(), Some(130), "{log}");
    assert!(
        log.contains("ack-demo server: interrupted (SIGINT/SIGTERM); 1 connections"),
        "{log}"
    );
    assert!(log.contains("200 messages processed"), "{log}");
    assert!(log.contains("session=7"), "{log}");
    assert!(!log.contains("Some("), "no Rust Debug output: {log}");
    assert!(!log.contains('\x1b'), "no colour codes on a pipe: {log}");
    let doc = end.document();
    assert_eq!(doc["program"], "ack-demo");
    assert_eq!(doc["schema"], 1);
    assert_eq!(doc["role"], "server");
    assert_eq!(doc["interrupted"], true);
    assert_eq!(doc["connections"], 1);
    assert_eq!(doc["processed"], 200);
    assert_eq!(doc["closed_sessions"], 1);
    assert_eq!(common::lines(&dir.join("out.txt")).len(), 200);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sigterm_ends_the_server_without_json_too() {
    let dir = common::temp_dir("sigterm-server");
    let server = Running::spawn(
        ack_demo()
            .args(["server", "--listen", "127.0.0.1:0", "--out"])
            .arg(dir.join("out.txt")),
    );
    server.wait_listening();
    server.signal(libc::SIGTERM);
    let end = server.finish();
    assert_eq!(end.code(), Some(130), "{}", end.stderr);
    assert!(end.stderr.contains("interrupted"), "{}", end.stderr);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn ctrl_c_ends_the_client_with_its_report_and_json_and_code_130() {
    let dir = common::temp_dir("sigint-client");
    // 2 ms a message: 100000 messages would take minutes.
    let server = ServerProcess::start(
        "127.0.0.1:0",
        &dir.join("out.txt"),
        &["--process-delay-us", "2000"],
    );
    let client = Running::spawn(
        ack_demo()
            .args(["client", "--connect", &server.addr.to_string(), "--json"])
            .args(["--count", "100000", "--size", "32"])
            // The sender logs `session resumed` once the server has welcomed it.
            .env("RUST_LOG", "error,ack_demo::sender=debug"),
    );
    client.wait_for_line(Stream::Stderr, |l| l.contains("session resumed"));

    client.interrupt();
    let end = client.finish();
    let log = &end.stderr;
    assert_eq!(end.code(), Some(130), "{log}");
    assert!(log.contains("session 1: interrupted; sent"), "{log}");
    assert!(log.contains("stopped by SIGINT/SIGTERM"), "{log}");
    // One document, on one line.
    assert_eq!(end.stdout.lines().count(), 1, "{}", end.stdout);
    let doc = end.document();
    assert_eq!(doc["program"], "ack-demo");
    assert_eq!(doc["role"], "client");
    assert_eq!(doc["interrupted"], true);
    assert_eq!(doc["completed"], false);
    assert!(
        doc["error"].as_str().unwrap().contains("interrupted"),
        "{doc}"
    );
    let acked = doc["acked"].as_u64().unwrap();
    assert!(acked < 100_000, "{doc}");
    assert!(doc["duration_s"].as_f64().unwrap() > 0.0, "{doc}");
    assert!(doc["messages_per_s"].is_number(), "{doc}");
    // What it reports as unconfirmed starts where the acknowledgements end.
    assert_eq!(doc["unconfirmed"]["start"], acked, "{doc}");
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn ctrl_c_ends_the_bench_with_the_runs_done_and_code_130() {
    let dir = common::temp_dir("sigint-bench");
    // Through the relay at 50 ms each way, W=1 takes 200 messages x 100 ms:
    // the bench is stopped during it, once the loopback runs are done.
    let bench = Running::spawn(
        ack_demo()
            .args(["bench", "--json", "--scale", "1", "--sessions", "none"])
            .args(["--delay-ms", "50", "--dir"])
            .arg(&dir)
            .env("RUST_LOG", "error,ack_demo::bench=info"),
    );
    bench.wait_for_line(Stream::Stderr, |l| l.contains("bench: loopback W=128"));
    bench.interrupt();
    let end = bench.finish();
    assert_eq!(end.code(), Some(130), "{}", end.stderr);
    assert!(end.stderr.contains("interrupted"), "{}", end.stderr);
    let doc = end.document();
    assert_eq!(doc["interrupted"], true);
    let rows = doc["rows"].as_array().unwrap();
    // The four loopback windows, and not the relay run it was stopped in.
    assert_eq!(rows.len(), 4, "{doc}");
    assert!(rows.iter().all(|r| r["path"] == "loopback"), "{doc}");
    let _ = std::fs::remove_dir_all(dir);
}
