//! The `tour` binary's failures say what failed.

use std::path::PathBuf;
use std::process::Command;

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

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
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
    let out = match Command::new("unshare")
        .args(["--mount", "sh", "-c", &script])
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("SKIPPED: unshare is not available: {e}");
            return;
        }
    };
    if out.status.code() == Some(97) {
        eprintln!(
            "SKIPPED: cannot mount a tmpfs here: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("ack-demo server process exited"), "{text}");
    assert!(text.contains("No space left on device"), "{text}");
    assert!(text.contains(&dir), "the path is named: {text}");
    assert!(!text.contains("said \"\""), "{text}");
}

#[test]
fn an_unknown_section_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_tour"))
        .args(["--only", "nosuch"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--only") && !err.contains("panicked"), "{err}");
}
