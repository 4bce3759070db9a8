//! Shared helpers for the udp-audio integration tests: test signals, running our binary and
//! the real peers, and reading WAV samples.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// Lines of a child's stream, delivered through a channel by a reader thread.
pub fn lines_of(stream: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Our binary.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_udp-audio"))
}

/// A fresh scratch directory under the target dir.
pub fn scratch(name: &str) -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Fails with a clear message when a peer program is missing.
pub fn require(program: &str) {
    let ok = Command::new(program)
        .arg(if program.starts_with("gst") {
            "--version"
        } else {
            "-version"
        })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{program} is not installed: run scripts/test, which installs it"
    );
}

/// A deterministic test signal: two tones with a slow glide plus a little noise, full-scale
/// enough to use every bit, `secs` long.
pub fn write_signal(path: &Path, rate: u32, channels: u16, secs: f64) -> Vec<i16> {
    let frames = (rate as f64 * secs) as usize;
    let mut samples = Vec::with_capacity(frames * channels as usize);
    let mut x: u32 = 0x1234_5678;
    for i in 0..frames {
        let t = i as f64 / rate as f64;
        for c in 0..channels {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let noise = (x % 2001) as f64 - 1000.0;
            let f = 220.0 * (1.0 + 0.5 * t) * (1.0 + c as f64 * 0.25);
            let v = 9000.0 * (2.0 * std::f64::consts::PI * f * t).sin()
                + 6000.0 * (2.0 * std::f64::consts::PI * 3.0 * f * t).sin()
                + noise;
            samples.push(v.round() as i16);
        }
    }
    write_samples(path, rate, channels, &samples);
    samples
}

/// The samples, rate and channels of a WAV file.
pub fn read_samples(path: &Path) -> (Vec<i16>, u32, u16) {
    let r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = r.spec();
    let s: Vec<i16> = r.into_samples::<i16>().map(|s| s.unwrap()).collect();
    (s, spec.sample_rate, spec.channels)
}

/// A running `udp-audio recv` and the address it listens on.
pub struct Recv {
    pub child: Child,
    pub addr: SocketAddr,
    pub stderr: mpsc::Receiver<String>,
}

impl Recv {
    /// Starts `udp-audio recv --listen 127.0.0.1:0 --json` with `args` and waits for its
    /// "listening on" line.
    pub fn start(args: &[&str]) -> Recv {
        let mut child = bin()
            .args(["recv", "--listen", "127.0.0.1:0", "--json"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let rx = lines_of(child.stderr.take().unwrap());
        let addr = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("recv printed no 'listening on' line");
            if let Some(rest) = line.strip_prefix("listening on ") {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        };
        Recv {
            child,
            addr,
            stderr: rx,
        }
    }

    /// Waits for the receiver to finish and returns its JSON report.
    pub fn finish(self) -> serde_json::Value {
        let out = self.child.wait_with_output().unwrap();
        let log: Vec<String> = self.stderr.try_iter().collect();
        assert!(out.status.success(), "recv failed: {}", log.join("\n"));
        let stdout = String::from_utf8(out.stdout).unwrap();
        let last = stdout
            .lines()
            .last()
            .unwrap_or_else(|| panic!("no JSON; log: {}", log.join("\n")));
        serde_json::from_str(last).unwrap()
    }
}

/// A port that was free a moment ago, for peers (GStreamer's udpsrc) that cannot report the
/// port they bound.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a command to completion, panicking with its stderr when it fails.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A running child of ours that printed "listening on ADDR ..." on stderr (`recv`, `impair`):
/// the address it bound and the rest of its stderr, read by a thread so the pipe never fills.
pub struct Listening {
    pub child: Child,
    pub addr: SocketAddr,
    pub stderr: mpsc::Receiver<String>,
    /// Stderr lines before the "listening on" line.
    pub early: Vec<String>,
}

impl Listening {
    /// Spawns `cmd` with piped stdout and stderr and waits (up to 60 s, no sleeping) for its
    /// "listening on ADDR" line.
    pub fn spawn(cmd: &mut Command) -> Listening {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        let rx = lines_of(child.stderr.take().unwrap());
        let mut early = Vec::new();
        let addr = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| {
                    let _ = child.kill();
                    panic!(
                        "{cmd:?} printed no 'listening on' line: {}",
                        early.join("\n")
                    )
                });
            if let Some(rest) = line.strip_prefix("listening on ") {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
            early.push(line);
        };
        Listening {
            child,
            addr,
            stderr: rx,
            early,
        }
    }

    /// Waits for the child to exit successfully and returns the JSON object on the last
    /// line of its stdout.
    pub fn finish_json(self) -> serde_json::Value {
        let out = self.child.wait_with_output().unwrap();
        let mut log = self.early;
        log.extend(self.stderr.try_iter());
        assert!(out.status.success(), "failed: {}", log.join("\n"));
        last_json(&String::from_utf8_lossy(&out.stdout), &log.join("\n"))
    }
}

/// The JSON object on the last line of `stdout`; `log` explains a failure.
pub fn last_json(stdout: &str, log: &str) -> serde_json::Value {
    let last = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no output; log: {log}"));
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: last line {last:?}; log: {log}"))
}

/// Runs a command that must fail cleanly: non-zero exit code (not a signal), no panic.
/// Returns its stderr.
pub fn run_fails(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        matches!(out.status.code(), Some(c) if c != 0),
        "{cmd:?} should fail with an exit code, got {:?}; stderr:\n{stderr}",
        out.status
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{cmd:?} panicked:\n{stderr}"
    );
    stderr
}

/// Writes interleaved 16-bit samples as a WAV file.
pub fn write_samples(path: &Path, rate: u32, channels: u16, samples: &[i16]) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

/// An RTP/L16 packet built by hand (RFC 3550 §5.1, RFC 3551 §4.5.11): V=2, no P/X/CC.
pub fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, samples: &[i16]) -> Vec<u8> {
    let mut v = vec![0x80, pt & 0x7f];
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&ts.to_be_bytes());
    v.extend_from_slice(&ssrc.to_be_bytes());
    for x in samples {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v
}

/// The JSON number at `key`, as u64, with the whole report in the failure message.
pub fn num(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no integer {key:?} in {v}"))
}
