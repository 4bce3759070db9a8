//! The workspace's conventions (`CONVENTIONS.md`) as the real binary follows them: a stream
//! that does not match `recv`'s `--rate` or `--channels` is an error that names the value to
//! use, Ctrl-C ends every long-running role with its final report and exit code 130, and
//! `--json` puts exactly one JSON document on stdout. Every socket is bound to 127.0.0.1:0;
//! processes are synchronised on the lines they print and the datagrams they send, never on
//! sleeps.

mod common;

use std::net::UdpSocket;
use std::path::Path;
use std::time::Duration;

use common::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs `udp-audio recv ARGS --json` against `udp-audio send INPUT`, to the end of both.
/// Returns how recv ended.
fn send_to_recv(input: &Path, recv_args: &[&str]) -> Finished {
    let recv = Listening::recv(&[&["--idle-timeout", "500ms"], recv_args].concat());
    let addr = recv.addr.to_string();
    run_ok(bin().args(["send", s(input), "--connect", &addr]));
    recv.run.finish()
}

/// A 22050 Hz stream received with `--rate 16000` used to be written as a pitched-down WAV
/// with exit code 0: now recv warns with the rate it measured from the RTP timestamps against
/// the arrival times, names the flag to use, and exits 1.
#[test]
fn a_stream_at_another_rate_is_an_error_naming_the_rate_measured() {
    let dir = scratch("conv-rate");
    let input = dir.join("in22k.wav");
    let out = dir.join("out.wav");
    write_signal(&input, 22050, 1, 2.5);
    let o = send_to_recv(
        &input,
        &["--rate", "16000", "--channels", "1", "--out", s(&out)],
    );
    let log = &o.stderr;
    assert_eq!(o.code(), Some(1), "{log}");
    assert!(
        log.contains("WARN") && log.contains("22050 Hz") && log.contains("use --rate 22050"),
        "{log}"
    );
    let doc = our_document(&o);
    let measured = doc["measured_rate_hz"].as_f64().unwrap();
    assert!((measured / 22050.0 - 1.0).abs() < 0.02, "{doc}");
    let warnings = doc["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{doc}");
    assert!(warnings[0].as_str().unwrap().contains("--rate 22050"));
    assert!(num(&doc, "frames_out") > 0, "the output is still written");
}

/// The same stream received with the right rate: no warning, exit 0, the rate measured.
#[test]
fn a_stream_at_the_given_rate_passes_and_reports_the_rate_measured() {
    let dir = scratch("conv-rate-ok");
    let input = dir.join("in22k.wav");
    let out = dir.join("out.wav");
    write_signal(&input, 22050, 1, 1.5);
    let o = send_to_recv(
        &input,
        &["--rate", "22050", "--channels", "1", "--out", s(&out)],
    );
    let log = &o.stderr;
    assert_eq!(o.code(), Some(0), "{log}");
    assert!(!log.contains("WARN"), "{log}");
    let doc = our_document(&o);
    assert_eq!(doc["warnings"], serde_json::json!([]), "{doc}");
    let measured = doc["measured_rate_hz"].as_f64().unwrap();
    assert!((measured / 22050.0 - 1.0).abs() < 0.02, "{doc}");
    assert_eq!(doc["payload_channels"], 1, "{doc}");
}

/// Mono sent, `recv --channels 2`: with 441-sample payloads (22050 Hz, 20 ms) every packet
/// used to be dropped as `partial_frame`, 0 frames written and exit 0; with 320-sample
/// payloads (16 kHz) the samples were paired into half as many stereo frames. Now both exit
/// 1 with a message naming `--channels 1`.
#[test]
fn mono_received_as_stereo_is_an_error_naming_the_channels_that_fit() {
    let dir = scratch("conv-channels");
    for (rate, nothing_written) in [(22050, true), (16000, false)] {
        let input = dir.join(format!("mono{rate}.wav"));
        let out = dir.join(format!("out{rate}.wav"));
        write_signal(&input, rate, 1, 1.0);
        let rate_s = rate.to_string();
        let o = send_to_recv(
            &input,
            &["--rate", &rate_s, "--channels", "2", "--out", s(&out)],
        );
        let log = &o.stderr;
        assert_eq!(o.code(), Some(1), "{rate}: {log}");
        assert!(log.contains("--channels 1"), "{rate}: {log}");
        if nothing_written {
            assert!(
                log.contains("would fit") && log.contains("no audio written"),
                "{rate}: {log}"
            );
        }
        let doc = our_document(&o);
        assert_eq!(num(&doc, "frames_out") == 0, nothing_written, "{doc}");
        assert_eq!(
            doc["warnings"].as_array().unwrap().len(),
            1,
            "{rate}: {doc}"
        );
    }
}

/// Ctrl-C during `send` of a 30 s file: the report says what was actually sent (packets and
/// seconds, fewer than the file's) and that it was interrupted, the JSON document follows,
/// and the exit code is 130. It used to report the whole file's duration.
#[test]
fn ctrl_c_during_send_reports_what_was_sent_and_exits_130() {
    let dir = scratch("conv-send-int");
    let input = dir.join("long.wav");
    write_signal(&input, 16000, 1, 30.0);
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    sink.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let to = sink.local_addr().unwrap().to_string();
    let child = Running::spawn(bin().args(["send", s(&input), "--connect", &to, "--json"]));
    child.wait_for_line(Stream::Stderr, |l| l.contains("sending 1500 packets"));
    // Three packets have left: the stream is running.
    let mut buf = [0u8; 2048];
    for _ in 0..3 {
        sink.recv_from(&mut buf).expect("send sends");
    }
    child.interrupt();
    let out = child.finish();
    let log = &out.stderr;
    assert_eq!(out.code(), Some(130), "{log}");
    assert!(
        log.contains("sent ") && log.contains("of 1500 packets") && log.contains("interrupted"),
        "{log}"
    );
    let doc = our_document(&out);
    assert_eq!(doc["interrupted"], true, "{doc}");
    let packets = doc["pacing"]["packets"].as_u64().unwrap();
    assert!((3..1500).contains(&packets), "{doc}");
    assert_eq!(num(&doc, "packets_total"), 1500, "{doc}");
    let audio = doc["audio_s"].as_f64().unwrap();
    assert!(
        (audio - packets as f64 * 0.02).abs() < 1e-9,
        "audio_s is what was sent: {doc}"
    );
    assert_eq!(doc["audio_secs"], doc["audio_s"], "{doc}");
    assert_eq!(doc["input_audio_s"], 30.0, "{doc}");
}

/// Ctrl-C during `recv`, once it is playing a stream: the WAV is finished, the report and the
/// JSON document are printed, the report says it was interrupted, and the exit code is 130.
#[test]
fn ctrl_c_during_recv_prints_the_report_and_exits_130() {
    let dir = scratch("conv-recv-int");
    let out = dir.join("out.wav");
    let child = Running::spawn(bin().env("RUST_LOG", "udp_audio=debug").args([
        "recv",
        "--listen",
        "127.0.0.1:0",
        "--rate",
        "16000",
        "--channels",
        "1",
        "--out",
        s(&out),
        "--json",
    ]));
    let addr = child.wait_listening();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let samples = vec![1000i16; 320];
    for k in 0..5u16 {
        tx.send_to(&rtp(96, k, u32::from(k) * 320, 0xabcd, &samples), addr)
            .unwrap();
    }
    // Logged when the second packet in sequence has passed probation: the stream plays.
    child.wait_for_line(Stream::Stderr, |l| l.contains("RTP source chosen"));
    child.interrupt();
    let o = child.finish();
    let log = &o.stderr;
    assert_eq!(o.code(), Some(130), "{log}");
    assert!(
        log.contains("received ") && log.contains("interrupted"),
        "{log}"
    );
    let doc = our_document(&o);
    assert_eq!(doc["interrupted"], true, "{doc}");
    assert!(num(&doc, "received") >= 2, "{doc}");
    let frames = num(&doc, "frames_out");
    assert!(frames >= 2 * 320, "{doc}");
    let (written, rate, channels) = read_samples(&out);
    assert_eq!(
        (written.len() as u64, rate, channels),
        (frames, 16000, 1),
        "the WAV is finished"
    );
}

/// Ctrl-C ends `impair`, which otherwise runs until then: the report is printed once (it
/// used to be printed twice, once in a log line), the JSON document follows, exit code 130.
#[test]
fn ctrl_c_ends_impair_with_one_report_and_exit_130() {
    let relay = Listening::spawn(bin().args([
        "impair",
        "--listen",
        "127.0.0.1:0",
        "--connect",
        "localhost:9",
        "--seed",
        "1",
        "--json",
    ]));
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.send_to(b"one datagram", relay.addr).unwrap();
    relay.run.interrupt();
    let o = relay.run.finish();
    let log = &o.stderr;
    assert_eq!(o.code(), Some(130), "{log}");
    assert_eq!(log.matches("received   ").count(), 1, "one report:\n{log}");
    assert!(log.contains("interrupted"), "{log}");
    assert!(
        !log.contains("ImpairConfig") && !log.contains("Some("),
        "no Debug output:\n{log}"
    );
    let doc = our_document(&o);
    assert_eq!(doc["interrupted"], true, "{doc}");
    assert!(doc["received"].as_u64().unwrap() <= 1, "{doc}");
}

/// `send → impair → recv` over host names, each with `--json`: every stdout is exactly one
/// JSON document (program, version, schema and the report's keys), the keys the scripts read
/// among them; human text is on stderr.
#[test]
fn json_is_one_document_on_stdout_for_every_role() {
    let dir = scratch("conv-json");
    let input = dir.join("in.wav");
    let out = dir.join("out.wav");
    write_signal(&input, 16000, 1, 0.5);
    let recv = Listening::spawn(bin().args([
        "recv",
        "--listen",
        "localhost:0",
        "--rate",
        "16000",
        "--channels",
        "1",
        "--idle-timeout",
        "500ms",
        "--out",
        s(&out),
        "--json",
    ]));
    let recv_at = format!("localhost:{}", recv.addr.port());
    let relay = Listening::spawn(bin().args([
        "impair",
        "--listen",
        "localhost:0",
        "--connect",
        &recv_at,
        "--seed",
        "1",
        "--idle-timeout",
        "500ms",
        "--json",
    ]));
    let relay_at = format!("localhost:{}", relay.addr.port());
    let sent = run(bin().args(["send", s(&input), "--connect", &relay_at, "--json"]));
    let send_log = &sent.stderr;
    assert_eq!(sent.code(), Some(0), "{send_log}");
    let send_doc = our_document(&sent);
    assert!(send_log.contains("sent 25 packets"), "{send_log}");
    for key in [
        "frames_per_packet",
        "ptime_us",
        "audio_secs",
        "audio_s",
        "rate_hz",
        "sent_bytes",
    ] {
        assert!(send_doc.get(key).is_some(), "{key}: {send_doc}");
    }
    for key in ["packets", "error_p99_us", "error_max_us", "drift_us"] {
        assert!(send_doc["pacing"].get(key).is_some(), "{key}: {send_doc}");
    }

    for (name, child) in [("impair", relay), ("recv", recv)] {
        let o = child.run.finish();
        let log = &o.stderr;
        assert_eq!(o.code(), Some(0), "{name}: {log}");
        let doc = our_document(&o);
        assert_eq!(doc["interrupted"], false, "{name}: {doc}");
        let keys: &[&str] = if name == "recv" {
            &[
                "datagrams",
                "late",
                "lost",
                "concealed_ms",
                "delay_p50_ms",
                "delay_p95_ms",
                "jitter_ms",
                "underruns",
                "audio_s",
            ]
        } else {
            &[
                "delay_min_us",
                "delay_mean_us",
                "delay_max_us",
                "reordered",
                "forwarded",
            ]
        };
        for key in keys {
            assert!(doc.get(key).is_some(), "{name}: {key}: {doc}");
        }
        if name == "recv" {
            assert_eq!(num(&doc, "received"), 25, "{doc}");
        }
    }

    let reference = dir.join("in.wav");
    let o = run(bin().args(["eval", s(&reference), s(&out), "--json"]));
    let log = &o.stderr;
    let doc = our_document(&o);
    assert!(
        doc["snr_db"].is_number() && log.contains("SNR"),
        "{doc} {log}"
    );
}

/// `--version` and `--help` name the program and what it is for.
#[test]
fn version_and_help_name_the_program_and_its_purpose() {
    let v = run_ok(bin().arg("--version"));
    assert!(
        v.starts_with(&format!("udp-audio {}", env!("CARGO_PKG_VERSION")))
            && v.contains("RTP/L16 over UDP"),
        "{v}"
    );
    let h = run_ok(bin().arg("--help"));
    assert!(h.starts_with("udp-audio: RTP/L16 audio over UDP"), "{h}");
    let h = run_ok(bin().args(["send", "--help"]));
    assert!(h.contains("--connect <ADDR>") && !h.contains("--to"), "{h}");
}

/// Ctrl-C during `quality`, whose runs are long: it logs each row as it finishes
/// (`row N/M`), and on the interrupt prints the rows finished so far, as a table and as the
/// JSON document with `interrupted: true`, says so, and exits 130.
#[test]
fn ctrl_c_during_quality_prints_the_rows_finished_and_exits_130() {
    let child = Running::spawn(bin().args([
        "quality", "--secs", "2", "--seeds", "1000", "--loss", "0.1", "--json",
    ]));
    let first = child.wait_for_line(Stream::Stderr, |l| l.contains("row 1/"));
    assert!(first.contains("speech-like: row 1/5000"), "{first}");
    child.interrupt();
    let o = child.finish();
    let log = &o.stderr;
    assert_eq!(o.code(), Some(130), "{log}");
    assert!(
        log.contains("| signal |") && log.contains("interrupted"),
        "{log}"
    );
    let doc = our_document(&o);
    assert_eq!(doc["interrupted"], true, "{doc}");
    let rows = doc["rows"].as_array().unwrap();
    assert!((1..5000 * 2).contains(&rows.len()), "{} rows", rows.len());
    for r in rows {
        assert_eq!(r["condition"], "random 10 %", "{r}");
        assert!(r["quality"]["snr_db"].is_number(), "{r}");
    }
}
