//! A session's token on the command line: `ack-demo client` without
//! `--token` cannot resume a session the server holds, and says how to;
//! with the token it resumes where the server is, also after the server
//! was killed and restarted. (The protocol's side, a stranger guessing a
//! session id: ack-demo's `tests/tokens.rs`.)

#[path = "../../tests/common/mod.rs"]
mod common;
mod process;

use common::{expected_line, lines, temp_dir};
use process::{ServerProcess, ack_demo};
use test_support::{Finished, run};

const TOKEN: &str = "0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a";
const COUNT: u64 = 300;

/// `ack-demo client` for session 42 with `count` messages and `extra`.
fn client(server: &ServerProcess, count: u64, extra: &[&str]) -> Finished {
    run(ack_demo()
        .args([
            "client",
            "--connect",
            &server.addr.to_string(),
            "--session",
            "42",
        ])
        .args(["--count", &count.to_string(), "--size", "24"])
        .args(extra)
        .env("RUST_LOG", "error"))
}

#[test]
fn a_resume_without_the_token_is_refused_and_says_how_and_with_it_goes_on() {
    let dir = temp_dir("cli-tokens");
    let out = dir.join("out.txt");
    let server = ServerProcess::start("127.0.0.1:0", &out, &[]);
    let first = client(&server, COUNT, &["--token", TOKEN]);
    assert_eq!(first.code(), Some(0), "{}", first.stderr);
    assert_eq!(lines(&out).len() as u64, COUNT);

    // The binding survives a crash of the server: it is in the journal.
    server.kill();
    let server = ServerProcess::start("127.0.0.1:0", &out, &[]);
    let refused = client(&server, COUNT + 5, &[]);
    let stderr = &refused.stderr;
    assert_eq!(refused.code(), Some(1), "{stderr}");
    // It drew a token of its own, and says which session and how to resume.
    assert!(stderr.contains("session 42 token "), "{stderr}");
    assert!(
        stderr.contains("TokenMismatch") && stderr.contains("client --token HEX"),
        "{stderr}"
    );
    assert_eq!(
        lines(&out).len() as u64,
        COUNT,
        "the stranger changed nothing"
    );

    let resumed = client(&server, COUNT + 5, &["--token", TOKEN]);
    assert_eq!(resumed.code(), Some(0), "{}", resumed.stderr);
    let got = lines(&out);
    assert_eq!(got.len() as u64, COUNT + 5);
    for (seq, line) in got.iter().enumerate() {
        assert_eq!(line, &expected_line(seq as u64, 24), "line {seq}");
    }
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}
