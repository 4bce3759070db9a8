//! A real full disk under the real server and client (root: a tmpfs of a
//! few pages): the server hits `ENOSPC` and says so (`ERROR{Storage}`),
//! never acknowledges what it did not write; once space is freed the same
//! session resumes and completes, and after a SIGKILL and restart FILE
//! holds every line exactly once, in order. (The same faults injected
//! through the store's `Disk` seam: ack-demo's `tests/faults.rs`.)

#[path = "../../tests/common/mod.rs"]
mod common;
mod process;

use std::path::PathBuf;

use process::{ServerProcess, ack_demo};
use test_support::{is_root, run};

/// A tmpfs of a few pages mounted for the test (root only), unmounted on
/// drop even when the test fails.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: PathBuf, kib: u64) -> Option<Tmpfs> {
        if !is_root() {
            eprintln!("not root: skipping the real ENOSPC part (it mounts a tmpfs)");
            return None;
        }
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("mount -t tmpfs failed: skipping the real ENOSPC part");
            return None;
        }
        Some(Tmpfs { dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}

/// The run, with a real full disk: the server hits `ENOSPC`, the
/// client is told (`ERROR{Storage}`); space is freed, the same session
/// resumes and completes; after a SIGKILL and restart FILE holds every
/// line exactly once, in order.
#[test]
fn a_real_full_disk_then_freed_loses_and_repeats_nothing_across_sigkill() {
    real_full_disk("enospc", &[]);
}

/// The same with the write-ahead log (`server --wal`): the journal then
/// holds the lines too, and the restart writes FILE from it.
#[test]
fn wal_a_real_full_disk_then_freed_loses_and_repeats_nothing_across_sigkill() {
    real_full_disk("enospc-wal", &["--wal"]);
}

fn real_full_disk(name: &str, server_args: &[&str]) {
    const COUNT: u64 = 2000;
    const SIZE: usize = 24;
    let dir = common::temp_dir(name).join("mnt");
    std::fs::create_dir_all(&dir).unwrap();
    let Some(fs) = Tmpfs::mount(dir, 256) else {
        return;
    };
    let ballast = fs.dir.join("ballast");
    std::fs::write(&ballast, vec![0u8; 232 * 1024]).unwrap();
    let out = fs.dir.join("out.txt");
    let server = ServerProcess::start("127.0.0.1:0", &out, server_args);
    let client = || {
        run(ack_demo()
            .args(["client", "--connect", &server.addr.to_string(), "--json"])
            .args(["--count", &COUNT.to_string(), "--size", &SIZE.to_string()])
            .args([
                "--window",
                "16",
                "--session",
                "7",
                "--token",
                &"5a".repeat(16),
            ])
            .env("RUST_LOG", "error"))
    };
    let first = client();
    assert_eq!(first.code(), Some(1), "the disk was full: {}", first.stderr);
    let report = first.document();
    assert!(
        report["error"]
            .as_str()
            .unwrap_or_default()
            .contains("Storage"),
        "{report}"
    );
    let written = common::lines(&out).len() as u64;
    assert!(written < COUNT, "{written}");
    // Never an ACK for what was not written: what the client saw
    // acknowledged is in FILE.
    let acked = report["acked"].as_u64().expect("acked in the report");
    assert!(
        acked <= written,
        "acked {acked}, FILE holds {written} lines"
    );

    std::fs::remove_file(&ballast).unwrap();
    let second = client();
    assert_eq!(second.code(), Some(0), "{}", second.stderr);
    let check = |what: &str| {
        let got = common::lines(&out);
        assert_eq!(got.len() as u64, COUNT, "{what}");
        for (seq, line) in got.iter().enumerate() {
            assert_eq!(
                line,
                &common::expected_line(seq as u64, SIZE),
                "{what}: line {seq}"
            );
        }
    };
    check("after the resume");
    server.kill();
    ServerProcess::start("127.0.0.1:0", &out, server_args).kill();
    check("after SIGKILL and restart");
}
