//! The `tcp-watch` binary on captures these tests write: the JSON
//! document's schema and counts, stdin, extraction with each gap mode, the
//! plain-language account, several inputs, and bad input (exit codes and
//! messages, never a panic).

#[path = "../../tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{ACK, FIN, PSH, Rec, SYN, Tcp};
use serde_json::Value;
use sha2::{Digest, Sha256};

const BIN: &str = env!("CARGO_BIN_EXE_tcp-watch");
const C: &str = "10.0.0.1:40000";
const S: &str = "10.0.0.2:80";
const C_ISN: u32 = 1_000;
const S_ISN: u32 = 9_000;
const SEG: usize = 1000;

fn scratch(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tcp-watch-cli-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The client's bytes: five segments of a pattern.
fn payload() -> Vec<u8> {
    (0..5 * SEG).map(|i| (i % 251) as u8).collect()
}

fn seg(from_client: bool, seq: u32, ack: u32, flags: u8, data: &[u8], sack: &[(u32, u32)]) -> Tcp {
    let (src, dst) = if from_client { (C, S) } else { (S, C) };
    let mut t = Tcp::data(src, dst, seq, data);
    t.ack = ack;
    t.flags = flags;
    if flags & SYN != 0 {
        t.options = vec![2, 4, 0x05, 0xb4, 1, 1, 4, 2];
    }
    if !sack.is_empty() {
        t.options = vec![1, 1, 5, 2 + 8 * sack.len() as u8];
        for (l, r) in sack {
            t.options.extend(l.to_be_bytes());
            t.options.extend(r.to_be_bytes());
        }
    }
    t
}

/// A connection whose second data segment is lost before the capture
/// point. With `repaired`, the receiver sends three duplicate ACKs with
/// SACK and the sender fast-retransmits; without, the receiver ACKs
/// everything (the capture lost the segment, the receiver did not).
fn capture(repaired: bool) -> Vec<u8> {
    let p = payload();
    let d = |i: usize| &p[i * SEG..(i + 1) * SEG];
    let seq = |i: usize| C_ISN + 1 + (i * SEG) as u32;
    let s1 = S_ISN + 1;
    let mut t: Vec<Tcp> = vec![
        seg(true, C_ISN, 0, SYN, &[], &[]),
        seg(false, S_ISN, C_ISN + 1, SYN | ACK, &[], &[]),
        seg(true, C_ISN + 1, s1, ACK, &[], &[]),
        seg(true, seq(0), s1, ACK | PSH, d(0), &[]),
        seg(false, s1, seq(1), ACK, &[], &[]),
    ];
    // Segment 1 never reaches the capture point.
    for i in 2..5 {
        t.push(seg(true, seq(i), s1, ACK | PSH, d(i), &[]));
        if repaired {
            t.push(seg(false, s1, seq(1), ACK, &[], &[(seq(2), seq(i + 1))]));
        }
    }
    if repaired {
        t.push(seg(true, seq(1), s1, ACK | PSH, d(1), &[]));
    }
    let reply = b"HTTP/1.1 200 OK\r\n\r\n";
    t.push(seg(false, s1, seq(5), ACK | PSH, reply, &[]));
    let s_end = s1 + reply.len() as u32;
    t.push(seg(true, seq(5), s_end, FIN | ACK, &[], &[]));
    t.push(seg(false, s_end, seq(5) + 1, FIN | ACK, &[], &[]));
    t.push(seg(true, seq(5) + 1, s_end + 1, ACK, &[], &[]));
    let recs: Vec<Rec> = t
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Rec::new(
                1_000_000_000 + i as u64 * 1_000_000,
                common::ethernet(&s.ip(), &[]),
            )
        })
        .collect();
    common::pcap(common::ETHERNET, 65535, false, false, &recs)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON document")
}

fn sha(bytes: &[u8]) -> String {
    tcp_watch::lab::transfer::hex(&Sha256::digest(bytes))
}

#[test]
fn json_document_carries_the_schema_and_the_repair() {
    let dir = scratch("json");
    let f = write(&dir, "a.pcap", &capture(true));
    let doc = json(&run(&["analyze", "--json", f.to_str().unwrap()]));
    assert_eq!(doc["program"], "tcp-watch");
    assert_eq!(doc["schema"], 1);
    assert!(doc["version"].is_string());
    let streams = doc["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 1);
    let s = &streams[0];
    assert_eq!(s["id"], 0);
    assert_eq!(s["client"], C);
    assert_eq!(s["server"], S);
    assert_eq!(s["close"], "fin");
    let c2s = &s["directions"]["client_to_server"];
    let s2c = &s["directions"]["server_to_client"];
    assert_eq!(c2s["bytes"], 5 * SEG as u64);
    assert_eq!(c2s["retransmissions"]["total"], 1);
    assert_eq!(c2s["retransmissions"]["fast"], 1, "{}", c2s["events"]);
    let r = &c2s["events"]["retransmissions"][0];
    assert_eq!(r["kind"], "fast");
    assert_eq!(r["duplicate_acks"], 3);
    assert_eq!(
        r["repeats_frame"],
        Value::Null,
        "the original never reached the capture"
    );
    assert_eq!(c2s["holes"]["count"], 1);
    assert_eq!(c2s["holes"]["bytes"], SEG as u64);
    assert_eq!(c2s["holes"]["filled"], 1);
    assert_eq!(c2s["holes"]["unfilled"], 0);
    assert_eq!(c2s["reassembly"]["delivered"], 5 * SEG as u64);
    assert_eq!(c2s["reassembly"]["gaps_total"], 0);
    assert_eq!(s2c["duplicate_acks"], 3);
    let run = &s2c["events"]["duplicate_ack_runs"][0];
    assert_eq!(run["count"], 3);
    assert_eq!(run["ack"], C_ISN + 1 + SEG as u32);
    assert!(run["retransmission_frame"].is_u64());
    for key in ["rto_episodes", "out_of_order", "zero_windows", "rtt_ms"] {
        assert!(!c2s[key].is_null(), "{key} missing");
    }
    let t = &doc["totals"];
    assert_eq!(t["streams"], 1);
    assert_eq!(t["retransmissions"]["fast"], 1);
    assert_eq!(t["duplicate_acks"], 3);
    assert_eq!(t["segments"], 16);
    assert_eq!(doc["inputs"][0]["frames"], 16);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn stdin_reads_as_a_file_does() {
    let bytes = capture(true);
    let mut child = Command::new(BIN)
        .args(["analyze", "--json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    let doc = json(&out);
    assert_eq!(doc["inputs"][0]["path"], "-");
    assert_eq!(
        doc["totals"]["retransmissions"]["fast"], 1,
        "{}",
        doc["totals"]
    );
    assert_eq!(doc["totals"]["bytes"], 5 * SEG as u64 + 19);
}

#[test]
fn extract_writes_both_directions_and_the_index() {
    let dir = scratch("extract");
    let f = write(&dir, "a.pcap", &capture(true));
    let out_dir = dir.join("out");
    let out = run(&[
        "extract",
        f.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c2s = std::fs::read(out_dir.join("0.c2s")).unwrap();
    assert_eq!(
        c2s,
        payload(),
        "retransmitted bytes delivered once, in order"
    );
    let s2c = std::fs::read(out_dir.join("0.s2c")).unwrap();
    assert_eq!(s2c, b"HTTP/1.1 200 OK\r\n\r\n");
    let index: Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("streams.json")).unwrap()).unwrap();
    let e = &index["streams"][0];
    assert_eq!(e["client"], C);
    assert_eq!(e["client_to_server"]["bytes"], 5 * SEG as u64);
    assert_eq!(e["client_to_server"]["sha256"], sha(&payload()));
    assert_eq!(e["server_to_client"]["sha256"], sha(&s2c));
    assert_eq!(e["client_to_server"]["gaps"].as_array().unwrap().len(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_hole_never_filled_is_logged_and_filled_only_as_asked() {
    let dir = scratch("gaps");
    let f = write(&dir, "a.pcap", &capture(false));
    let p = payload();
    for mode in ["skip", "zeros", "marker"] {
        let out_dir = dir.join(mode);
        let doc = json(&run(&[
            "analyze",
            "--json",
            f.to_str().unwrap(),
            "--extract",
            out_dir.to_str().unwrap(),
            "--gaps",
            mode,
        ]));
        let c2s = &doc["streams"][0]["directions"]["client_to_server"];
        let gaps = c2s["reassembly"]["gaps"].as_array().unwrap();
        assert_eq!(gaps.len(), 1, "{mode}: {gaps:?}");
        let g = &gaps[0];
        assert_eq!(g["offset"], SEG as u64);
        assert_eq!(g["len"], SEG as u64);
        assert_eq!(g["seq"], C_ISN + 1 + SEG as u32);
        assert_eq!(g["cause"], "not_captured_but_acked");
        assert!(g["frame_before"].is_u64() && g["acked_by_frame"].is_u64());
        assert_eq!(c2s["holes"]["unfilled"], 1);
        let file = std::fs::read(out_dir.join("0.c2s")).unwrap();
        match mode {
            "skip" => {
                assert_eq!(g["file_offset"], SEG as u64);
                assert_eq!(file.len(), 4 * SEG);
                assert_eq!(&file[..SEG], &p[..SEG]);
                assert_eq!(
                    &file[SEG..],
                    &p[2 * SEG..],
                    "the bytes after the hole follow"
                );
            }
            "zeros" => {
                assert_eq!(file.len(), 5 * SEG);
                assert!(file[SEG..2 * SEG].iter().all(|&b| b == 0));
                assert_eq!(&file[2 * SEG..], &p[2 * SEG..], "offsets kept");
            }
            _ => {
                assert_eq!(file.len(), 5 * SEG);
                assert!(file[SEG..].starts_with(b"[tcp-watch gap: 1000 bytes at offset 1000"));
                assert_eq!(&file[2 * SEG..], &p[2 * SEG..], "offsets kept");
            }
        }
        let index: Value =
            serde_json::from_slice(&std::fs::read(out_dir.join("streams.json")).unwrap()).unwrap();
        assert_eq!(index["gaps"], mode);
        assert_eq!(
            index["streams"][0]["client_to_server"]["sha256"],
            sha(&file)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_account_tells_what_happened_with_the_frames() {
    let dir = scratch("text");
    let f = write(&dir, "a.pcap", &capture(true));
    let out = run(&["analyze", f.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    // Frames: 6 data 2, 7 dup ACK, 8 data 3, 9 dup ACK, 10 data 4, 11 dup
    // ACK, 12 the retransmission.
    assert!(
        text.contains(
            "bytes 2001-3000 (1000 B) from 10.0.0.1:40000 did not reach the capture point"
        ),
        "{text}"
    );
    assert!(
        text.contains("3 duplicate ACKs (frames 7, 9, 11) with SACK 3001-"),
        "{text}"
    );
    assert!(
        text.contains("complete at frame 12: fast retransmission after 3 duplicate ACKs"),
        "{text}"
    );
    assert!(text.contains("total: 1 streams"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn several_inputs_are_reported_apart_and_summed() {
    let dir = scratch("several");
    let a = write(&dir, "a.pcap", &capture(true));
    let b = write(&dir, "b.pcap", &capture(false));
    let doc = json(&run(&[
        "analyze",
        "--json",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]));
    let inputs: Vec<u64> = doc["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["input"].as_u64().unwrap())
        .collect();
    assert_eq!(inputs, [0, 1]);
    assert_eq!(doc["totals"]["streams"], 2);
    assert_eq!(doc["totals"]["retransmissions"]["total"], 1);
    assert_eq!(doc["totals"]["gaps"], 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_input_is_an_error_naming_it_never_a_panic() {
    let dir = scratch("bad");
    let garbage = write(&dir, "garbage.pcap", b"this is not a capture at all");
    let out = run(&["analyze", garbage.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("garbage.pcap"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let missing = dir.join("missing.pcap");
    let out = run(&["analyze", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.pcap"));
    // With --json, nothing on stdout rather than half a document; a later
    // input that fails still leaves one whole document.
    let out = run(&["analyze", "--json", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let good = write(&dir, "good.pcap", &capture(true));
    let out = run(&[
        "analyze",
        "--json",
        good.to_str().unwrap(),
        missing.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("one whole document");
    assert_eq!(doc["totals"]["streams"], 1);

    // Cut in the middle of a packet: counted, and what came before is
    // reported.
    let mut cut = capture(true);
    cut.truncate(cut.len() - 30);
    let cut = write(&dir, "cut.pcap", &cut);
    let doc = json(&run(&["analyze", "--json", cut.to_str().unwrap()]));
    assert_eq!(doc["inputs"][0]["decode"]["capture.truncated"], 1);
    assert_eq!(doc["inputs"][0]["frames"], 15);

    for (flag, value) in [
        ("--direction-cap", "-1"),
        ("--memory-cap", "1e30"),
        ("--idle-timeout", "nan"),
        ("--max-streams", "18446744073709551616"),
    ] {
        let arg = format!("{flag}={value}");
        let out = run(&["analyze", cut.to_str().unwrap(), &arg]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(err.contains(flag), "{flag} {value}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    for value in ["inf", "-0.1", "nan"] {
        let out = run(&["lab", &format!("--loss={value}")]);
        assert_eq!(out.status.code(), Some(2), "--loss {value}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
