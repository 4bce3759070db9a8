//! The `tcp-watch lab` process (root): one JSON document whose account
//! closes, and the refusal without root. Skipped, with the reason, when
//! the lab cannot run here.

use std::process::Command;

use tcp_watch::lab::account;
use tcp_watch::lab::{self, LabConfig};

/// `tcp-watch lab --json`, the process: exit 0 and one document whose
/// account closes, with the settings and the run inside.
#[test]
fn the_lab_command_prints_one_json_document_whose_account_closes() {
    let config = LabConfig::default();
    if let Some(why) = lab::unavailable(&config) {
        eprintln!("the lab command test did not run: {why}");
        return;
    }
    let child = Command::new(env!("CARGO_BIN_EXE_tcp-watch"))
        .args(["lab", "--json", "--loss", "0.01", "--bytes", "1000000"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document: {e}: {stderr}"));
    assert_eq!(doc["program"], "tcp-watch");
    assert_eq!(doc["schema"], account::LAB_SCHEMA);
    assert_eq!(doc["kind"], "lab");
    assert_eq!(doc["config"]["bytes"], 1_000_000);
    assert_eq!(doc["config"]["loss"], 0.01);
    let (run, acc) = (&doc["run"], &doc["account"]);
    assert_eq!(run["transfer"]["bytes_received"], 1_000_000);
    assert_eq!(run["loss_per_mille"], 10);
    assert_eq!(acc["closes"], true, "{acc:#}");
    for line in ["retransmissions", "drops", "bytes", "rto"] {
        assert_eq!(acc[line]["closes"], true, "{line}: {acc:#}");
        assert_eq!(acc[line]["verdict"], "closes", "{line}");
    }
    assert_eq!(
        acc["retransmissions"]["ours"]["total"],
        run["kernel"]["retrans_segs"]
    );
    assert_eq!(
        acc["drops"]["missing_segments"],
        acc["drops"]["router_a_to_b"]
    );
    let sha = &run["transfer"]["receiver_sha256"];
    assert_eq!(&acc["bytes"]["from_a_sha256"], sha);
    assert_eq!(&acc["bytes"]["from_b_sha256"], sha);
    // The temporary captures are gone.
    let dir = std::env::temp_dir().join(format!("tcp-watch-lab-account-{pid}"));
    assert!(!dir.exists(), "{} left behind", dir.display());
}

/// Not root: the command says the lab needs root, and exits 1.
#[test]
fn the_lab_command_says_it_needs_root() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if root {
        // Drop to nobody, so the refusal is tested as a user meets it.
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_tcp-watch"));
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_tcp-watch"))
    };
    let out = match cmd.args(["lab", "--bytes", "1000"]).output() {
        Ok(out) => out,
        Err(e) => {
            eprintln!("the not-root test did not run: setpriv: {e}");
            return;
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if root && stderr.contains("setpriv:") {
        eprintln!("the not-root test did not run: {stderr}");
        return;
    }
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("needs root"), "{stderr}");
    assert!(out.stdout.is_empty());
}
