//! Shared helpers for the udp-audio integration tests: test signals, running our binary and
//! the real peers, and reading WAV samples.
#![allow(dead_code, unreachable_pub, unused_imports)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
pub use test_support::{Finished, Running, Stream, run};

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

/// A running child of ours that printed "listening on ADDR ..." on stderr (`recv`,
/// `impair`): the address it bound, and the child, whose output test-support reads as it
/// comes (so the pipes never fill) and which is killed if the test fails first.
pub struct Listening {
    pub run: Running,
    pub addr: SocketAddr,
}

impl Listening {
    /// Spawns `cmd` and waits (up to test-support's deadline, no sleeping) for its
    /// "listening on ADDR" line.
    pub fn spawn(cmd: &mut Command) -> Listening {
        let run = Running::spawn(cmd);
        let addr = run.wait_listening();
        Listening { run, addr }
    }

    /// Starts `udp-audio recv --listen 127.0.0.1:0 --json` with `args`, listening.
    pub fn recv(args: &[&str]) -> Listening {
        Listening::spawn(
            bin()
                .args(["recv", "--listen", "127.0.0.1:0", "--json"])
                .args(args),
        )
    }

    /// Waits for the child to exit with 0 and returns its one JSON document.
    pub fn finish_json(self) -> Value {
        let end = self.run.finish();
        assert_eq!(end.code(), Some(0), "failed: {}", end.stderr);
        our_document(&end)
    }
}

/// Stdout of `end` as the one JSON document of this program (`--json`): the whole of stdout
/// is the document, which names the program, its version and the schema.
pub fn our_document(end: &Finished) -> Value {
    let doc = end.document();
    assert_eq!(doc["program"], "udp-audio", "{doc}");
    assert_eq!(doc["schema"], 1, "{doc}");
    assert_eq!(doc["version"], env!("CARGO_PKG_VERSION"), "{doc}");
    doc
}

/// Runs a command to its end (test-support's deadline), panicking with its stderr when it
/// fails; returns its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let end = run(cmd);
    assert_eq!(end.code(), Some(0), "{cmd:?} failed:\n{}", end.stderr);
    end.stdout
}

/// Runs `cmd` to its end and returns its one JSON document (it must succeed).
pub fn run_json(cmd: &mut Command) -> Value {
    let end = run(cmd);
    assert_eq!(end.code(), Some(0), "{cmd:?} failed:\n{}", end.stderr);
    our_document(&end)
}

/// Runs a command that must fail cleanly: non-zero exit code (not a signal), no panic.
/// Returns its stderr.
pub fn run_fails(cmd: &mut Command) -> String {
    let end = run(cmd);
    assert!(
        matches!(end.code(), Some(c) if c != 0),
        "{cmd:?} should fail with an exit code, got {:?}; stderr:\n{}",
        end.status,
        end.stderr
    );
    assert!(
        !end.stderr.contains("panicked") && !end.stderr.contains("RUST_BACKTRACE"),
        "{cmd:?} panicked:\n{}",
        end.stderr
    );
    end.stderr
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
