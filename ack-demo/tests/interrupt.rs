//! Ctrl-C (SIGINT) and SIGTERM on the real `ack-demo` binary: the server
//! and the client print their final report (and their one JSON document
//! with `--json`), say they were interrupted, and exit with code 130.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Sends `signal` to `child`.
fn signal(child: &Child, signal: libc::c_int) {
    // SAFETY: kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    assert_eq!(rc, 0, "signal the child");
}

/// Waits for `child` to exit within `limit`; past it, kills it and
/// returns `None`.
fn wait_or_kill(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Reads `child`'s stderr on a thread: every line is kept, and the first
/// line containing `wanted` is sent on the returned channel.
fn watch_stderr(
    child: &mut Child,
    wanted: &'static str,
) -> (mpsc::Receiver<String>, thread::JoinHandle<String>) {
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        let mut all = String::new();
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains(wanted)
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(line.clone());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    (rx, reader)
}

fn read_stdout(child: &mut Child) -> String {
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout is piped")
        .read_to_string(&mut out)
        .unwrap();
    out
}

#[test]
fn ctrl_c_ends_the_server_with_its_report_and_json_and_code_130() {
    let dir = common::temp_dir("sigint-server");
    let mut server = Command::new(env!("CARGO_BIN_EXE_ack-demo"))
        .args(["server", "--listen", "127.0.0.1:0", "--json", "--out"])
        .arg(dir.join("out.txt"))
        // Its debug lines name the session: `session=7`, not `Some(7)`.
        .env("RUST_LOG", "warn,ack_demo::server=debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (listening, log) = watch_stderr(&mut server, "listening on ");
    let Ok(line) = listening.recv_timeout(Duration::from_secs(60)) else {
        let _ = server.kill();
        panic!("the server printed no address: {}", log.join().unwrap());
    };
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .parse()
        .unwrap();
    // One session to completion, so the report has something to say.
    let client = Command::new(env!("CARGO_BIN_EXE_ack-demo"))
        .args(["client", "--connect", &addr.to_string()])
        .args(["--count", "200", "--size", "32", "--session", "7"])
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(
        client.status.success(),
        "{}",
        String::from_utf8_lossy(&client.stderr)
    );

    signal(&server, libc::SIGINT);
    let status = wait_or_kill(&mut server, Duration::from_secs(60));
    let stdout = read_stdout(&mut server);
    let log = log.join().unwrap();
    let status = status.unwrap_or_else(|| panic!("still serving a minute after SIGINT: {log}"));
    assert_eq!(status.code(), Some(130), "{log}");
    assert!(
        log.contains("ack-demo server: interrupted (SIGINT/SIGTERM); 1 connections"),
        "{log}"
    );
    assert!(log.contains("200 messages processed"), "{log}");
    assert!(log.contains("session=7"), "{log}");
    assert!(!log.contains("Some("), "no Rust Debug output: {log}");
    assert!(!log.contains('\x1b'), "no colour codes on a pipe: {log}");
    let doc: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {stdout}"));
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
    let mut server = common::ServerProcess::start("127.0.0.1:0", &dir.join("out.txt"), &[]);
    signal(&server.child, libc::SIGTERM);
    let status = wait_or_kill(&mut server.child, Duration::from_secs(60))
        .expect("the server ends within a minute of SIGTERM");
    assert_eq!(status.code(), Some(130));
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn ctrl_c_ends_the_client_with_its_report_and_json_and_code_130() {
    let dir = common::temp_dir("sigint-client");
    // 2 ms a message: 100000 messages would take minutes.
    let server = common::ServerProcess::start(
        "127.0.0.1:0",
        &dir.join("out.txt"),
        &["--process-delay-us", "2000"],
    );
    let mut client = Command::new(env!("CARGO_BIN_EXE_ack-demo"))
        .args(["client", "--connect", &server.addr.to_string(), "--json"])
        .args(["--count", "100000", "--size", "32"])
        // The sender logs `session resumed` once the server has welcomed it.
        .env("RUST_LOG", "error,ack_demo::sender=debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (running, log) = watch_stderr(&mut client, "session resumed");
    if running.recv_timeout(Duration::from_secs(60)).is_err() {
        let _ = client.kill();
        panic!("the client never got going: {}", log.join().unwrap());
    }

    signal(&client, libc::SIGINT);
    let status = wait_or_kill(&mut client, Duration::from_secs(60));
    let stdout = read_stdout(&mut client);
    let log = log.join().unwrap();
    let status = status.unwrap_or_else(|| panic!("still sending a minute after SIGINT: {log}"));
    assert_eq!(status.code(), Some(130), "{log}");
    assert!(log.contains("session 1: interrupted; sent"), "{log}");
    assert!(log.contains("stopped by SIGINT/SIGTERM"), "{log}");
    // One document, on one line.
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let doc: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {stdout}"));
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
