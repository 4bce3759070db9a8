//! The journal as the server finds it at start: deleted, emptied or with a
//! byte flipped while FILE holds acknowledged lines, the server refuses to
//! start, says which file, where, and how to recover, and changes nothing;
//! `--repair` starts and moves what does not verify aside. (A journal of
//! more than 2^20 sessions: `store::tests::more_than_2_pow_20_sessions_*`.)

#[path = "../../tests/common/mod.rs"]
mod common;
mod process;

use std::path::Path;

use ack_demo::store::journal_path;
use common::{expected_line, lines, temp_dir};
use process::{ServerProcess, ack_demo};
use test_support::run;

const COUNT: u64 = 2000;
const SIZE: usize = 24;

/// Runs the server binary on `out` and expects it to refuse to start;
/// returns its stderr.
fn refused_start(out: &Path, extra: &[&str]) -> String {
    let end = run(ack_demo()
        .args(["server", "--listen", "127.0.0.1:0", "--out"])
        .arg(out)
        .args(extra)
        .env("RUST_LOG", "error"));
    assert_ne!(end.code(), Some(0), "{}", end.stderr);
    assert!(
        !end.stdout.contains("listening on"),
        "the server started on a damaged journal"
    );
    assert!(!end.stderr.contains("panicked"), "{}", end.stderr);
    end.stderr
}

fn assert_all_lines(out: &Path) {
    let got = lines(out);
    assert_eq!(got.len() as u64, COUNT, "lines in {}", out.display());
    for (seq, line) in got.iter().enumerate() {
        assert_eq!(line, &expected_line(seq as u64, SIZE), "line {seq}");
    }
}

#[test]
fn a_deleted_emptied_or_flipped_journal_refuses_to_start_and_repair_moves_lines_aside() {
    let dir = temp_dir("journal");
    let out = dir.join("out.txt");
    let jpath = journal_path(&out);
    let server = ServerProcess::start("127.0.0.1:0", &out, &[]);
    let client = run(ack_demo()
        .args(["client", "--connect", &server.addr.to_string()])
        .args(["--count", &COUNT.to_string(), "--size", &SIZE.to_string()])
        .args(["--session", "1", "--token", &"ab".repeat(16)])
        .env("RUST_LOG", "error"));
    assert_eq!(client.code(), Some(0), "{}", client.stderr);
    server.kill();
    // A clean start folds the journal into its base; then SIGKILL again.
    ServerProcess::start("127.0.0.1:0", &out, &[]).kill();
    assert_all_lines(&out);
    let file = std::fs::read(&out).unwrap();
    let journal = std::fs::read(&jpath).unwrap();

    let mut damages: Vec<(String, Option<Vec<u8>>)> = vec![
        ("deleted".into(), None),
        ("emptied".into(), Some(Vec::new())),
    ];
    for at in [0, 5, 12, 20, journal.len() / 2, journal.len() - 1] {
        let mut bad = journal.clone();
        bad[at] ^= 0x04;
        damages.push((format!("byte {at} flipped"), Some(bad)));
    }
    for (what, damaged) in &damages {
        match damaged {
            None => std::fs::remove_file(&jpath).unwrap(),
            Some(bytes) => std::fs::write(&jpath, bytes).unwrap(),
        }
        let stderr = refused_start(&out, &[]);
        assert!(
            stderr.contains(&jpath.display().to_string()),
            "{what}: names the journal: {stderr}"
        );
        assert!(stderr.contains("at byte"), "{what}: says where: {stderr}");
        assert!(stderr.contains("--repair"), "{what}: says how: {stderr}");
        assert_eq!(std::fs::read(&out).unwrap(), file, "{what}: FILE untouched");
        std::fs::write(&jpath, &journal).unwrap();
    }
    // Intact again: starts, and every line is still there.
    ServerProcess::start("127.0.0.1:0", &out, &[]).kill();
    assert_all_lines(&out);

    // --repair keeps what verifies (nothing, with the base damaged) and
    // moves the rest aside, whole.
    let mut bad = journal.clone();
    bad[journal.len() / 2] ^= 0x04;
    std::fs::write(&jpath, &bad).unwrap();
    ServerProcess::start("127.0.0.1:0", &out, &["--repair"]).kill();
    assert_eq!(lines(&out).len(), 0);
    let aside: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("out.txt.unverified-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_all_lines(&aside[0]);
    // And the repaired store starts normally afterwards.
    ServerProcess::start("127.0.0.1:0", &out, &[]).kill();
}
