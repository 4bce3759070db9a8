//! Real processes: the server is SIGKILLed at seeded random points and
//! restarted, while one client keeps its session going; at the end the out
//! file holds `msg 0` .. `msg N-1`, each exactly once, in order.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{ServerProcess, expected_line, lines, temp_dir};
use proptest::prelude::RngCore;
use proptest::test_runner::{RngAlgorithm, TestRng};

/// A seeded choice in `lo..hi` (proptest's RNG: no other dependency).
fn pick(rng: &mut TestRng, lo: u64, hi: u64) -> u64 {
    lo + rng.next_u64() % (hi - lo)
}

const KILLS: usize = 50;
const COUNT: u64 = 20_000;
const SIZE: usize = 24;

#[test]
fn server_killed_fifty_times_loses_and_repeats_nothing() {
    let dir = temp_dir("crash");
    let out = dir.join("out.txt");
    // Slow processing keeps the session running through every kill.
    let server_args = ["--process-delay-us", "150", "--heartbeat-ms", "300"];
    let mut server = ServerProcess::start("127.0.0.1:0", &out, &server_args);
    let listen = server.addr.to_string();
    let mut client = Command::new(env!("CARGO_BIN_EXE_ack-demo"))
        .args(["client", "--connect", &listen, "--json"])
        .args(["--count", &COUNT.to_string(), "--size", &SIZE.to_string()])
        .args(["--window", "16", "--session", "42", "--reconnect-for", "30"])
        .args(["--heartbeat-ms", "300"])
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let seed = std::env::var("ACK_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_u64);
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    let mut kills_during_session = 0;
    for _ in 0..KILLS {
        // The crash point: a seeded random moment in the run.
        std::thread::sleep(Duration::from_millis(pick(&mut rng, 2, 40)));
        if client.try_wait().unwrap().is_none() {
            kills_during_session += 1;
        }
        server.kill();
        server = ServerProcess::start(&listen, &out, &server_args);
    }
    let output = client.wait_with_output().unwrap();
    server.kill();

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "client failed (seed {seed}):\n{stdout}"
    );
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(report["completed"], true);
    assert_eq!(report["acked"], COUNT);
    assert!(
        kills_during_session >= KILLS,
        "only {kills_during_session} of {KILLS} kills hit the running session"
    );
    assert!(report["reconnects"].as_u64().unwrap() >= 1);

    let got = lines(&out);
    assert_eq!(got.len() as u64, COUNT, "seed {seed}");
    for (seq, line) in got.iter().enumerate() {
        assert_eq!(
            line,
            &expected_line(seq as u64, SIZE),
            "line {seq}, seed {seed}"
        );
    }
}
