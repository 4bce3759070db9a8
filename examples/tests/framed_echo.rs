//! The `framed-echo` and `tour` binaries, run as a user runs them.

use std::fmt::Display;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::thread;
use std::time::Duration;

use test_support::{Finished, Running, Stream, run};

/// `framed-echo server --listen 127.0.0.1:0 --json` with `extra`; its log
/// (stderr) says `listening on ADDR`, stdout carries only the JSON.
fn server_command(extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_framed-echo"));
    command
        .args(["server", "--listen", "127.0.0.1:0", "--json"])
        .args(extra)
        .env("RUST_LOG", "warn");
    command
}

/// Starts `command` (a server) and waits for the address it listens on.
fn start(command: &mut Command) -> (Running, SocketAddr) {
    let server = Running::spawn(command);
    let addr = server.wait_listening();
    (server, addr)
}

/// A `framed-echo server --json` on a free loopback port, killed on drop.
fn server(extra: &[&str]) -> (Running, SocketAddr) {
    start(&mut server_command(extra))
}

/// `command` with `RLIMIT_NOFILE` lowered to `nofile` in the child.
fn with_fd_limit(command: &mut Command, nofile: u64) -> &mut Command {
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between
    // fork and exec.
    unsafe {
        command.pre_exec(move || {
            let rlim = libc::rlimit {
                rlim_cur: nofile,
                rlim_max: nofile,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &rlim) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        })
    }
}

/// The peak resident memory of process `pid` so far, in KiB (`VmHWM`).
fn peak_rss_kib(pid: u32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in kB")
}

/// Sends `signal` to the server and waits for its end; its log has no
/// colour codes (stderr is a pipe).
fn end(server: Running, signal: libc::c_int) -> Finished {
    server.signal(signal);
    let end = server.finish();
    assert!(
        !end.stderr.contains('\x1b'),
        "colour codes on a pipe: {}",
        end.stderr
    );
    end
}

/// Stops the server with SIGTERM; returns its log and its counters.
fn stop(server: Running) -> (String, serde_json::Value) {
    let end = end(server, libc::SIGTERM);
    let log = &end.stderr;
    assert_eq!(end.code(), Some(130), "{log}");
    let doc = end.document();
    assert_eq!(doc["program"], "framed-echo", "{log}");
    assert_eq!(doc["role"], "server", "{log}");
    (end.stderr, doc["stats"].clone())
}

/// `framed-echo client --connect ADDR --json` with `args`.
fn client(addr: impl Display, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_framed-echo"));
    command
        .args(["client", "--connect", &addr.to_string(), "--json"])
        .args(args);
    command
}

#[test]
fn client_gets_every_frame_back_and_reports_rates() {
    let (_server, addr) = server(&[]);
    for (count, size) in [(5000u64, 0usize), (20_000, 64), (20, 300_000)] {
        let out = run(&mut client(
            addr,
            &["--count", &count.to_string(), "--size", &size.to_string()],
        ));
        assert!(out.status.success(), "client failed: {}", out.stderr);
        let report = out.document();
        assert_eq!(report["program"], "framed-echo");
        assert_eq!(report["schema"], 1);
        assert_eq!(report["role"], "client");
        assert_eq!(report["messages"], count);
        assert_eq!(report["size_bytes"], size);
        assert_eq!(report["payload_bytes"], count * size as u64);
        assert!(report["messages_per_s"].as_f64().unwrap() > 0.0);
        assert!(report["mb_per_s"].as_f64().unwrap() >= 0.0);
        assert!(report["duration_s"].as_f64().unwrap() > 0.0);
        // The summary for people is on stderr.
        let err = &out.stderr;
        assert!(err.contains("echoed and verified"), "{err}");
    }
}

#[test]
fn every_preset_echoes() {
    for preset in ["u32-be", "u16-be", "varint", "python"] {
        let (_server, addr) = server(&["--preset", preset]);
        let out = run(&mut client(
            addr,
            &["--preset", preset, "--count", "2000", "--size", "1000"],
        ));
        assert!(out.status.success(), "{preset}: {}", out.stderr);
        assert_eq!(out.document()["messages"], 2000);
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
    let (server, addr) = server(&["--max-frame", "65536", "--preset", "varint"]);
    let good = std::thread::spawn(move || {
        run(&mut client(
            addr,
            &["--preset", "varint", "--count", "50000", "--size", "512"],
        ))
    });
    // Over the limit; a varint that overflows 64 bits; EOF inside a body.
    hostile(addr, &[0x80, 0x80, 0x10]);
    hostile(addr, &[0xff; 11]);
    hostile(addr, &[0x0a, b'a', b'b']);
    let out = good.join().unwrap();
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.document()["messages"], 50000);
    // The server still serves new clients after dropping the bad ones.
    let again = run(&mut client(
        addr,
        &["--preset", "varint", "--count", "10", "--size", "10"],
    ));
    assert!(again.status.success());

    let (log, _) = stop(server);
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
    let (_server, addr) = server(&["--max-frame", "1000"]);
    let out = run(&mut client(addr, &["--count", "10", "--size", "5000"]));
    assert!(!out.status.success());
    let err = &out.stderr;
    assert!(err.contains("of 10 echoes"), "{err}");
}

#[test]
fn bad_arguments_are_explained() {
    let out = run(Command::new(env!("CARGO_BIN_EXE_framed-echo")).args([
        "client",
        "--connect",
        "not-an-address",
    ]));
    assert!(!out.status.success());
    assert!(out.stderr.contains("--connect"));
}

#[test]
fn tour_runs_and_passes() {
    let out = run(Command::new(env!("CARGO_BIN_EXE_tour")).args(["--quick", "--json"]));
    // With --json the report for people is on stderr.
    let text = &out.stderr;
    assert!(out.status.success(), "{text}");
    assert!(text.contains("3 of 3 hostile clients dropped"), "{text}");
    assert!(
        text.contains("msg 0 to N-1 each exactly once, in order"),
        "{text}"
    );
    assert!(text.contains("server processed 100; 900 lost"), "{text}");
    assert!(
        text.contains("accounting closes in all 10 trials"),
        "{text}"
    );
    assert!(text.contains("tour finished in"), "{text}");
    let report = out.document();
    assert_eq!(report["program"], "tour");
    assert_eq!(report["schema"], 1);
    assert_eq!(report["passed"], true);
    assert_eq!(report["interrupted"], false);
    assert!(report["duration_s"].as_f64().unwrap() > 0.0);
    let sections = report["sections"].as_object().unwrap();
    let ids: Vec<&str> = sections.keys().map(String::as_str).collect();
    for id in [
        "stream",
        "framing",
        "ack_demo",
        "buffer_demo",
        "udp_audio",
        "tcp_watch",
    ] {
        assert!(ids.contains(&id), "{id} in {ids:?}");
    }
    // The stream demo (issue 15): every message recovered, every byte there.
    let stream = &report["sections"]["stream"];
    assert_eq!(stream["passed"], true, "{stream}");
    for run in stream["runs"].as_array().unwrap() {
        if run.get("skipped").is_none() {
            assert_eq!(run["framing"]["identical"], run["messages"], "{run}");
            assert_eq!(run["read_bytes"], run["sent_bytes"], "{run}");
        }
    }
    let framing = &report["sections"]["framing"];
    assert!(framing["hostile_header_decoder_capacity"].as_u64().unwrap() <= 64 * 1024);
    assert!(framing["small"]["messages_per_s"].as_f64().unwrap() > 0.0);
}

/// One u32-be frame of `len` bytes of `fill`.
fn frame(len: usize, fill: u8) -> Vec<u8> {
    let mut bytes = (len as u32).to_be_bytes().to_vec();
    bytes.resize(4 + len, fill);
    bytes
}

/// Reads one echo of `sent` within `timeout`, or says what happened.
fn read_echo(stream: &mut TcpStream, sent: &[u8], timeout: Duration) -> Result<(), String> {
    stream.set_read_timeout(Some(timeout)).unwrap();
    let mut echo = vec![0u8; sent.len()];
    stream
        .read_exact(&mut echo)
        .map_err(|e| format!("no echo: {e}"))?;
    if echo == sent {
        Ok(())
    } else {
        Err("a different echo".to_owned())
    }
}

#[test]
fn queued_clients_are_served_once_descriptors_free_up() {
    // 64 descriptors: about 56 clients once the server has its own; the
    // other 244 wait in the listen backlog (over the standard 128).
    let (server, addr) = start(with_fd_limit(&mut server_command(&[]), 64));
    let clients = 300;
    let mut streams: Vec<TcpStream> = (0..clients)
        .map(|i| {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("client {i}: the backlog does not take it: {e}"));
            s.write_all(&frame(100, i as u8)).unwrap();
            s
        })
        .collect();
    // Served one after another: each close frees the descriptor the next
    // queued client needs.
    for (i, stream) in streams.iter_mut().enumerate() {
        if let Err(e) = read_echo(stream, &frame(100, i as u8), Duration::from_secs(10)) {
            panic!(
                "client {i} of {clients} not served: {e}; server log:\n{}",
                server.stderr()
            );
        }
        stream.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    }
    drop(streams);
    // And a new client after all that.
    let out = run(&mut client(addr, &["--count", "1000", "--size", "100"]));
    assert!(out.status.success(), "{}", out.stderr);
    let (log, stats) = stop(server);
    assert_eq!(stats["accepted"], clients + 1, "{log}");
    assert_eq!(stats["completed"], clients + 1, "{log}");
    assert!(stats["accept_exhausted"].as_u64().unwrap() >= 1, "{log}");
    assert!(stats["accept_failures"].as_u64().unwrap() >= 1, "{log}");
    // Logged once per time it ran out, not once per failed accept.
    assert_eq!(
        log.matches("accept failed").count() as u64,
        stats["accept_exhausted"].as_u64().unwrap(),
        "{log}"
    );
    assert!(log.contains("Too many open files"), "{log}");
}

#[test]
fn memory_budget_bounds_the_server_while_clients_send_huge_partial_frames() {
    const MIB: usize = 1024 * 1024;
    let hostile = 24;
    let (server, addr) = server(&[
        "--max-frame",
        &(4 * MIB).to_string(),
        "--max-buffered-total",
        &(16 * MIB).to_string(),
    ]);
    // Each declares a 4 MiB frame and sends all of it but the last byte.
    let senders: Vec<_> = (0..hostile)
        .map(|_| {
            thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                let mut bytes = frame(4 * MIB, b'x');
                bytes.pop();
                let _ = s.write_all(&bytes);
                s
            })
        })
        .collect();
    // A read buffer completing a 4 MiB frame grows to 8 MiB: at most two
    // fit the 16 MiB budget, so at least 22 are closed.
    server.wait_for_lines(Stream::Stderr, "over the memory budget", hostile - 2);
    let log = server.stderr();
    assert!(
        log.matches("over the memory budget").count() >= hostile - 2,
        "{log}"
    );
    let held: Vec<TcpStream> = senders.into_iter().map(|t| t.join().unwrap()).collect();
    // A good client is still served.
    let out = run(&mut client(addr, &["--count", "2000", "--size", "1000"]));
    assert!(out.status.success(), "{}", out.stderr);
    // Unbounded, the server held 24 x 8 MiB = 192 MiB; bounded, the budget
    // plus one connection's growth past it, plus the program.
    let peak_mib = peak_rss_kib(server.id()) / 1024;
    drop(held);
    let (log, stats) = stop(server);
    assert!(peak_mib < 48, "peak RSS {peak_mib} MiB\n{log}");
    assert!(stats["over_budget"].as_u64().unwrap() >= hostile as u64 - 2);
    assert!(stats["peak_buffered_bytes"].as_u64().unwrap() <= (16 + 8) * MIB as u64);
    eprintln!(
        "peak RSS {peak_mib} MiB, {} closed over budget, peak buffered {} bytes",
        stats["over_budget"], stats["peak_buffered_bytes"]
    );
}

#[test]
fn idle_connections_are_closed_after_the_idle_timeout() {
    let (server, addr) = server(&["--idle-timeout", "300ms"]);
    // Silent; half a header; a header and part of the body.
    let mut idle: Vec<TcpStream> = Vec::new();
    for i in 0..60 {
        let mut s = TcpStream::connect(addr).unwrap();
        match i % 3 {
            0 => {}
            1 => s.write_all(&[0, 0]).unwrap(),
            _ => s.write_all(&frame(1000, 1)[..500]).unwrap(),
        }
        idle.push(s);
    }
    // An active client is not idle, however long it runs.
    let out = run(&mut client(addr, &["--count", "100000", "--size", "64"]));
    assert!(out.status.success(), "{}", out.stderr);
    for (i, s) in idle.iter_mut().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 16];
        match s.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("idle client {i} not closed: {other:?}\n{}", server.stderr()),
        }
    }
    let (log, stats) = stop(server);
    assert_eq!(stats["timed_out"], 60, "{log}");
    assert_eq!(stats["completed"], 1, "{log}");
}

#[test]
fn client_gives_up_on_a_silent_server_and_says_so() {
    // Accepts and then neither reads nor writes.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let holder = thread::spawn(move || listener.accept().map(|(s, _)| s));
    // Enough frames to fill every buffer, so the writer blocks too.
    let out = run(&mut client(
        addr,
        &["--count", "1000000", "--size", "64", "--timeout", "500ms"],
    ));
    let _held = holder.join().unwrap();
    assert_eq!(out.code(), Some(1));
    let err = &out.stderr;
    assert!(
        err.contains(&format!("no answer from {addr} for 500 ms")),
        "{err}"
    );
    assert!(err.contains("after 0 of 1000000 echoes"), "{err}");
    // With --json the failed run still prints its one document.
    let doc = out.document();
    assert_eq!(doc["program"], "framed-echo");
    assert!(
        doc["error"].as_str().unwrap().contains("no answer from"),
        "{doc}"
    );
}

#[test]
fn settings_that_cannot_work_are_refused_with_exit_code_2() {
    for (args, named) in [
        (&["--max-queued", "0"][..], "--max-queued"),
        (&["--idle-timeout", "0"][..], "--idle-timeout"),
        (
            &["--max-frame", "1048576", "--max-buffered-total", "1048576"][..],
            "twice the maximum frame length",
        ),
    ] {
        let out = run(Command::new(env!("CARGO_BIN_EXE_framed-echo"))
            .args(["server", "--listen", "127.0.0.1:0"])
            .args(args));
        let err = &out.stderr;
        assert_eq!(out.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(named), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}: started anyway");
    }
}

#[test]
fn hostile_numeric_values_exit_2_naming_the_flag() {
    let server_args = ["server", "--listen", "127.0.0.1:0"];
    let client_args = ["client", "--connect", "127.0.0.1:9"];
    for (base, flag, value) in [
        (&server_args, "--max-queued", "-1"),
        (
            &server_args,
            "--max-queued",
            "340282366920938463463374607431768211456",
        ),
        (&server_args, "--max-frame", "1e30"),
        (&server_args, "--max-buffered-total", ""),
        (&server_args, "--idle-timeout", "nan"),
        (&server_args, "--idle-timeout", "inf"),
        (&client_args, "--timeout", "-1"),
        (&client_args, "--count", "18446744073709551616"),
        (&client_args, "--size", "-inf"),
    ] {
        let out = run(Command::new(env!("CARGO_BIN_EXE_framed-echo"))
            .args(base)
            .arg(format!("{flag}={value}")));
        let err = &out.stderr;
        assert_eq!(out.code(), Some(2), "{flag}={value}: {err}");
        assert!(err.contains(flag), "{flag}={value}: {err}");
        assert!(!err.contains("panicked"), "{flag}={value}: {err}");
    }
}

/// `--size 70000` with the 2-byte preset: on the previous main the writer
/// failed on the first frame and the reader waited for echoes for ever
/// (here an hour: `--timeout 1h`, and the server never closes it). Now a
/// usage error before connecting, naming the preset's limit.
#[test]
fn u16_oversize_is_refused_naming_the_presets_limit_and_never_hangs() {
    let (server, addr) = server(&["--preset", "u16-be", "--idle-timeout", "1h"]);
    // `finish` fails the test if the client still runs a minute later: it
    // hangs.
    let out = run(Command::new(env!("CARGO_BIN_EXE_framed-echo"))
        .args(["client", "--connect", &addr.to_string()])
        .args(["--preset", "u16-be", "--size", "70000", "--count", "10"])
        .args(["--timeout", "1h"]));
    let err = &out.stderr;
    assert_eq!(out.code(), Some(2), "{err}");
    assert!(err.contains("--size 70000"), "{err}");
    assert!(
        err.contains("u16-be") && err.contains("65535 bytes"),
        "{err}"
    );
    // Nothing was sent: the server saw no client.
    let (log, stats) = stop(server);
    assert_eq!(stats["accepted"], 0, "{log}");
}

#[test]
fn ctrl_c_prints_the_servers_report_and_exits_130() {
    let (server, addr) = server(&[]);
    let out = run(&mut client(addr, &["--count", "1000", "--size", "100"]));
    assert!(out.status.success(), "{}", out.stderr);
    let end = end(server, libc::SIGINT);
    let log = &end.stderr;
    assert_eq!(end.code(), Some(130), "{log}");
    assert!(log.contains("framed-echo server: interrupted"), "{log}");
    assert!(log.contains("1 accepted, 1 completed"), "{log}");
    assert!(log.contains("100000 payload bytes echoed"), "{log}");
    let doc = end.document();
    assert_eq!(doc["program"], "framed-echo");
    assert_eq!(doc["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(doc["schema"], 1);
    assert_eq!(doc["interrupted"], true);
    assert_eq!(doc["stats"]["completed"], 1);
    assert_eq!(doc["stats"]["frames"], 1000);
    assert_eq!(doc["stats"]["payload_bytes"], 100_000);
}

#[test]
fn host_names_are_accepted() {
    let (_server, addr) = server(&[]);
    let out = run(&mut client(
        format!("localhost:{}", addr.port()),
        &["--count", "10", "--size", "10"],
    ));
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.document()["messages"], 10);
}

#[test]
fn version_and_help_name_the_program_and_its_purpose() {
    for (bin, purpose) in [
        (
            env!("CARGO_BIN_EXE_framed-echo"),
            "echo length-prefixed frames",
        ),
        (env!("CARGO_BIN_EXE_tour"), "run every demo pair"),
    ] {
        let name = std::path::Path::new(bin)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        let version = run(Command::new(bin).arg("--version")).stdout;
        assert_eq!(
            version.trim(),
            format!("{name} {}", env!("CARGO_PKG_VERSION")),
            "{bin}"
        );
        let help = run(Command::new(bin).arg("--help")).stdout;
        let first = help.lines().next().unwrap_or_default();
        assert!(first.starts_with(&format!("{name}: ")), "{first}");
        assert!(first.contains(purpose), "{first}");
        assert!(!help.contains("Runnable demo pairs"), "{help}");
    }
}

/// Ctrl-C in a long client run: it stops sending, reads and checks the
/// echoes of what it sent, prints that report (and its one JSON document)
/// and exits 130.
#[test]
fn ctrl_c_stops_the_client_with_a_report_of_the_echoes_it_checked() {
    let (server, addr) = server(&[]);
    let running = Running::spawn(
        client(addr, &["--count", "1000000000000", "--size", "64"])
            // `progress` is logged each second of the run.
            .env("RUST_LOG", "info"),
    );
    // Fails the test, with the log, if no progress is logged.
    running.wait_for_line(Stream::Stderr, |l| l.contains("progress"));
    running.interrupt();
    // Fails the test if it still sends a minute after SIGINT.
    let out = running.finish();
    let err = &out.stderr;
    assert_eq!(out.code(), Some(130), "{err}");
    assert!(err.contains("interrupted (SIGINT/SIGTERM) after"), "{err}");
    let report = out.document();
    assert_eq!(report["interrupted"], true);
    let messages = report["messages"].as_u64().unwrap();
    assert!(messages > 0, "{report}");
    assert_eq!(report["payload_bytes"], messages * 64, "{report}");
    // The server echoed exactly what the client counted, and it ended cleanly.
    let (log, stats) = stop(server);
    assert_eq!(stats["frames"], messages, "{log}");
    assert_eq!(stats["completed"], 1, "{log}");
}
