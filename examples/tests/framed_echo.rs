//! The `framed-echo` and `tour` binaries, run as a user runs them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};

/// A `framed-echo server` child on a free loopback port, killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_framed-echo"))
            .args(["server", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("framed-echo starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout is piped"))
            .read_line(&mut line)
            .expect("server prints its address");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .expect("a socket address");
        Server { child, addr }
    }

    /// Kills the server and returns what it logged.
    fn stop(mut self) -> String {
        self.child.kill().expect("kill the server");
        self.child.wait().expect("reap the server");
        let mut log = String::new();
        self.child
            .stderr
            .take()
            .expect("stderr is piped")
            .read_to_string(&mut log)
            .expect("read the log");
        log
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client(addr: SocketAddr, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_framed-echo"))
        .args(["client", "--connect", &addr.to_string(), "--json"])
        .args(args)
        .output()
        .expect("framed-echo client runs")
}

fn last_json(stdout: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(stdout);
    let last = text.lines().last().expect("the client printed something");
    serde_json::from_str(last).expect("the last line is JSON")
}

#[test]
fn client_gets_every_frame_back_and_reports_rates() {
    let server = Server::start(&[]);
    for (count, size) in [(5000u64, 0usize), (20_000, 64), (20, 300_000)] {
        let out = client(
            server.addr,
            &["--count", &count.to_string(), "--size", &size.to_string()],
        );
        assert!(
            out.status.success(),
            "client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report = last_json(&out.stdout);
        assert_eq!(report["messages"], count);
        assert_eq!(report["payload_bytes"], count * size as u64);
        assert!(report["messages_per_sec"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn every_preset_echoes() {
    for preset in ["u32-be", "u16-be", "varint", "python"] {
        let server = Server::start(&["--preset", preset]);
        let out = client(
            server.addr,
            &["--preset", preset, "--count", "2000", "--size", "1000"],
        );
        assert!(
            out.status.success(),
            "{preset}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(last_json(&out.stdout)["messages"], 2000);
    }
}

/// Sends `bytes`, then reads until the server closes on us.
fn hostile(addr: SocketAddr, bytes: &[u8]) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(bytes).unwrap();
    let _ = stream.shutdown(Shutdown::Write);
    let mut sink = [0u8; 256];
    loop {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[test]
fn bad_clients_are_dropped_with_the_reason_logged_and_others_served() {
    let server = Server::start(&["--max-frame", "65536", "--preset", "varint"]);
    let addr = server.addr;
    let good = std::thread::spawn(move || {
        client(
            addr,
            &["--preset", "varint", "--count", "50000", "--size", "512"],
        )
    });
    // Over the limit; a varint that overflows 64 bits; EOF inside a body.
    hostile(addr, &[0x80, 0x80, 0x10]);
    hostile(addr, &[0xff; 11]);
    hostile(addr, &[0x0a, b'a', b'b']);
    let out = good.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(last_json(&out.stdout)["messages"], 50000);
    // The server still serves new clients after dropping the bad ones.
    let again = client(
        addr,
        &["--preset", "varint", "--count", "10", "--size", "10"],
    );
    assert!(again.status.success());

    let log = server.stop();
    assert!(
        log.contains("frame of 262144 bytes exceeds the maximum frame length of 65536"),
        "{log}"
    );
    assert!(log.contains("varint length overflows 64 bits"), "{log}");
    assert!(
        log.contains("stream ended inside a frame: 3 of 11 bytes arrived"),
        "{log}"
    );
    assert_eq!(log.matches("dropping client").count(), 3, "{log}");
}

#[test]
fn client_over_the_server_limit_is_told_it_was_dropped() {
    let server = Server::start(&["--max-frame", "1000"]);
    let out = client(server.addr, &["--count", "10", "--size", "5000"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("of 10 echoes"), "{err}");
}

#[test]
fn bad_arguments_are_explained() {
    let out = Command::new(env!("CARGO_BIN_EXE_framed-echo"))
        .args(["client", "--connect", "not-an-address"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--connect"));
}

#[test]
fn tour_runs_and_passes() {
    let out = Command::new(env!("CARGO_BIN_EXE_tour"))
        .args(["--quick", "--json"])
        .output()
        .expect("tour runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("3 of 3 hostile clients dropped"), "{text}");
    assert!(
        text.contains("msg 0..N-1 each exactly once, in order"),
        "{text}"
    );
    assert!(text.contains("server processed 100; 900 lost"), "{text}");
    assert!(text.contains("accounting closes in all 8 trials"), "{text}");
    let report = last_json(&out.stdout);
    assert_eq!(report["passed"], true);
    let framing = &report["sections"]["framing: framed-echo over loopback TCP"];
    assert!(framing["hostile_header_decoder_capacity"].as_u64().unwrap() <= 64 * 1024);
}
