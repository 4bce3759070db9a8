//! Real processes: the server is SIGKILLed at seeded random points and
//! restarted, while sixteen clients keep their sessions going at once
//! (their lines share one out file and one group commit); at the end the
//! out file holds every session's `msg 0` .. `msg N-1`, each exactly once,
//! in order.

#[path = "../../tests/common/mod.rs"]
mod common;
mod process;

use std::time::Duration;

use common::{expected_line, lines, temp_dir};
use process::{ServerProcess, ack_demo};
use proptest::prelude::RngCore;
use proptest::test_runner::{RngAlgorithm, TestRng};
use test_support::Running;

/// A seeded choice in `lo..hi` (proptest's RNG: no other dependency).
fn pick(rng: &mut TestRng, lo: u64, hi: u64) -> u64 {
    lo + rng.next_u64() % (hi - lo)
}

const KILLS: usize = 50;
/// Sessions running at once, each with its own payload size so that its
/// lines can be told apart in the shared FILE.
const SESSIONS: usize = 16;
const COUNT: u64 = 2_500;
const SIZE: usize = 24;

#[test]
fn server_killed_fifty_times_under_sixteen_sessions_loses_and_repeats_nothing() {
    killed_fifty_times(&[]);
}

/// The same with the write-ahead log: FILE is never synced by a commit and
/// is restored from the journal at each restart.
#[test]
fn with_the_write_ahead_log_too() {
    killed_fifty_times(&["--wal"]);
}

fn killed_fifty_times(extra: &[&str]) {
    let dir = temp_dir("crash");
    let out = dir.join("out.txt");
    // Slow processing keeps the sessions running through every kill.
    let mut server_args = vec!["--process-delay-us", "600", "--heartbeat-ms", "300"];
    server_args.extend_from_slice(extra);
    let mut server = ServerProcess::start("127.0.0.1:0", &out, &server_args);
    let listen = server.addr.to_string();
    let clients: Vec<Running> = (0..SESSIONS)
        .map(|k| {
            Running::spawn(
                ack_demo()
                    .args(["client", "--connect", &listen, "--json"])
                    .args(["--count", &COUNT.to_string()])
                    .args(["--size", &(SIZE + k).to_string()])
                    .args(["--window", "16", "--session", &(42 + k).to_string()])
                    .args(["--reconnect-for", "60", "--heartbeat-ms", "300"])
                    .env("RUST_LOG", "error"),
            )
        })
        .collect();

    let seed = std::env::var("ACK_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_u64);
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    let mut kills_during_sessions = 0;
    for _ in 0..KILLS {
        // The crash point: a seeded random moment in the run.
        std::thread::sleep(Duration::from_millis(pick(&mut rng, 2, 40)));
        // A client prints its report (its only stdout) as it ends.
        if clients.iter().any(|c| c.stdout().is_empty()) {
            kills_during_sessions += 1;
        }
        server.kill();
        server = ServerProcess::start(&listen, &out, &server_args);
    }
    let outputs: Vec<_> = clients.into_iter().map(Running::finish).collect();
    server.kill();
    assert!(
        kills_during_sessions >= KILLS,
        "only {kills_during_sessions} of {KILLS} kills hit running sessions"
    );

    let got = lines(&out);
    for (k, output) in outputs.iter().enumerate() {
        assert_eq!(
            output.code(),
            Some(0),
            "client {k} failed (seed {seed}):\n{}{}",
            output.stdout,
            output.stderr
        );
        let report = output.document();
        assert_eq!(report["completed"], true);
        assert_eq!(report["acked"], COUNT);
        assert!(
            report["reconnects"].as_u64().unwrap() >= 1,
            "session {k} was never hit"
        );
        // Exactly once, in order: this session's lines are its own size.
        let mine: Vec<&String> = got.iter().filter(|l| l.len() == SIZE + k).collect();
        assert_eq!(mine.len() as u64, COUNT, "session {k}, seed {seed}");
        for (seq, line) in mine.iter().enumerate() {
            assert_eq!(
                *line,
                &expected_line(seq as u64, SIZE + k),
                "session {k} line {seq}, seed {seed}"
            );
        }
    }
    assert_eq!(got.len(), SESSIONS * COUNT as usize, "nothing else in FILE");
}
