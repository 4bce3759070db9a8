//! The `tour` binary's failures say what failed.

use std::path::PathBuf;
use std::process::Command;

use test_support::{Running, Stream, is_root, run};

/// A temporary directory, removed on drop (also when the test fails).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_full_temp_dir_is_reported_with_the_ack_demo_servers_own_error() {
    if !is_root() {
        eprintln!("SKIPPED: mounting a tiny tmpfs needs root");
        return;
    }
    let mount_point = TempDir::new("tour-full-tmp");
    let dir = mount_point.0.display().to_string();
    // A private mount namespace: the tmpfs goes away with the shell, even
    // if the test fails half-way.
    let script = format!(
        "mount -t tmpfs -o size=64k tmpfs '{dir}' || exit 97
         dd if=/dev/zero of='{dir}/fill' bs=4k 2>/dev/null
         TMPDIR='{dir}' exec '{tour}' --quick --only ack-demo",
        tour = env!("CARGO_BIN_EXE_tour"),
    );
    if let Err(e) = Command::new("unshare").arg("--version").output() {
        eprintln!("SKIPPED: unshare is not available: {e}");
        return;
    }
    let out = run(Command::new("unshare").args(["--mount", "sh", "-c", &script]));
    if out.code() == Some(97) {
        eprintln!("SKIPPED: cannot mount a tmpfs here: {}", out.stderr);
        return;
    }
    let text = &out.stdout;
    assert_eq!(out.code(), Some(1), "{text}");
    assert!(text.contains("ack-demo server process exited"), "{text}");
    assert!(text.contains("No space left on device"), "{text}");
    assert!(text.contains(&dir), "the path is named: {text}");
    assert!(!text.contains("said \"\""), "{text}");
}

#[test]
fn an_unknown_section_is_a_usage_error() {
    let out = run(Command::new(env!("CARGO_BIN_EXE_tour")).args(["--only", "nosuch"]));
    assert_eq!(out.code(), Some(2));
    let err = &out.stderr;
    assert!(err.contains("--only") && !err.contains("panicked"), "{err}");
}

/// Ctrl-C during the tour: the section that runs finishes, the others are
/// not started, and the report of what ran (and its JSON) is printed
/// before exit code 130.
#[test]
fn ctrl_c_stops_the_tour_after_the_running_section_with_its_report() {
    let tour = Running::spawn(Command::new(env!("CARGO_BIN_EXE_tour")).args(["--quick", "--json"]));
    // The heading of a section is printed when the section ends; no such
    // line fails the test with what the tour printed.
    tour.wait_for_line(Stream::Stderr, |l| l.starts_with("== "));
    tour.interrupt();
    // Fails the test if the tour goes on after SIGINT.
    let out = tour.finish();
    let text = &out.stderr;
    assert_eq!(out.code(), Some(130), "{text}");
    assert!(text.contains("interrupted after"), "{text}");
    let doc = out.document();
    assert_eq!(doc["program"], "tour");
    assert_eq!(doc["interrupted"], true);
    let sections = doc["sections"].as_object().unwrap();
    // The stream demo is the first section since issue 15.
    assert!(sections.contains_key("stream"), "{doc}");
    assert!(sections.len() < 6, "every section ran: {doc}");
}
