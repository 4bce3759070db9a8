//! Helpers shared by the integration tests (ack-demo's, and ack-demo-cli's,
//! which include this file by its path).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A fresh directory under the system temp dir.
pub(crate) fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ack-demo-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The out file's lines.
pub(crate) fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The line `msg <seq> ` padded with dots to `size`.
pub(crate) fn expected_line(seq: u64, size: usize) -> String {
    let mut out = Vec::new();
    ack_demo::wire::demo_payload(seq, size, &mut out);
    String::from_utf8(out).unwrap()
}
