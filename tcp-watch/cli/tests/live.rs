//! The `tcp-watch live` process (root, in a network namespace the test
//! makes and removes): Ctrl-C ends it with the report and exit code 130,
//! its own `--duration` with 0.

use test_support::{Netns, Running, Stream};

/// Runs `tcp-watch live` in namespace `ns` with `args` and waits for its
/// "capturing on" line.
fn spawn_live(ns: &Netns, args: &[&str]) -> Running {
    let live = Running::spawn(
        ns.command(env!("CARGO_BIN_EXE_tcp-watch"))
            .arg("live")
            .args(args),
    );
    live.wait_for_line(Stream::Stderr, |l| l.contains("capturing on"));
    live
}

#[test]
fn ctrl_c_ends_live_with_the_report_and_exit_130_and_a_duration_with_0() {
    let Some(ns) = Netns::new("ctrl_c_ends_live_with_the_report_and_exit_130") else {
        return;
    };
    let live = spawn_live(&ns, &["--interface", "lo", "--json"]);
    live.interrupt();
    let end = live.finish();
    assert_eq!(end.code(), Some(130), "{}", end.stderr);
    assert!(end.stderr.contains("interrupted"), "{}", end.stderr);
    let doc = end.document();
    assert_eq!(doc["program"], "tcp-watch");
    assert!(doc["totals"].is_object(), "{}", end.stdout);

    // Ended by its own --duration: a success, not an interruption.
    let end = spawn_live(&ns, &["--interface", "lo", "--duration", "200ms"]).finish();
    assert_eq!(end.code(), Some(0), "{}", end.stderr);
    assert!(!end.stderr.contains("interrupted"), "{}", end.stderr);
}
