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

/// Ctrl-C during the tour: the section that runs finishes, the others are
/// not started, and the report of what ran (and its JSON) is printed
/// before exit code 130.
#[test]
fn ctrl_c_stops_the_tour_after_the_running_section_with_its_report() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    let mut tour = Command::new(env!("CARGO_BIN_EXE_tour"))
        .args(["--quick", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = tour.stderr.take().unwrap();
    let (first_section, ended) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        let mut tx = Some(first_section);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            // The heading of a section is printed when the section ends.
            if line.starts_with("== ")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let started = ended.recv_timeout(Duration::from_secs(300));
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(tour.id() as libc::pid_t, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = tour.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = tour.kill();
            let _ = tour.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    tour.stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let text = reader.join().unwrap();
    assert!(started.is_ok(), "no section ended: {text}");
    let status = status.unwrap_or_else(|| panic!("the tour went on after SIGINT: {text}"));
    assert_eq!(status.code(), Some(130), "{text}");
    assert!(text.contains("interrupted after"), "{text}");
    let doc: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {stdout}"));
    assert_eq!(doc["program"], "tour");
    assert_eq!(doc["interrupted"], true);
    let sections = doc["sections"].as_object().unwrap();
    assert!(sections.contains_key("framing"), "{doc}");
    assert!(sections.len() < 5, "every section ran: {doc}");
}
