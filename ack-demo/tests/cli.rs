//! The `ack-demo` binary as users run it: the benchmark end to end (small),
//! and errors for bad arguments.

use std::process::Command;

fn ack_demo(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ack-demo"))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .unwrap()
}

#[test]
fn bench_runs_every_window_and_reports_both_ratios() {
    let dir = std::env::temp_dir().join(format!("ack-cli-bench-{}", std::process::id()));
    let out = ack_demo(&[
        "bench",
        "--scale",
        "5",
        "--json",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(report["rows"].as_array().unwrap().len(), 9);
    assert!(report["relay_w32_over_w1"].as_f64().unwrap() > 0.0);
    assert!(report["loopback_w128_over_unacked"].as_f64().unwrap() > 0.0);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_arguments_are_explained() {
    let out = ack_demo(&[
        "client",
        "--connect",
        "127.0.0.1:9",
        "--size",
        "3",
        "--count",
        "100",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--size 3 must be"), "{err}");
    let out = ack_demo(&["client", "--connect", "nowhere"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--connect"));
}
