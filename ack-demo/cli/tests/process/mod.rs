//! The `ack-demo` binary as a child of the tests (through test-support's
//! [`Running`]: output read as it comes, killed and reaped on drop).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use test_support::Running;

/// The binary under test.
pub(crate) fn ack_demo() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ack-demo"))
}

/// `ack-demo server` on `out`, once it says where it listens.
pub(crate) struct ServerProcess {
    pub(crate) running: Running,
    pub(crate) addr: SocketAddr,
}

impl ServerProcess {
    /// Starts `ack-demo server --listen LISTEN --out OUT EXTRA..` and waits
    /// for its `listening on ADDR` line.
    pub(crate) fn start(listen: &str, out: &Path, extra: &[&str]) -> ServerProcess {
        let running = Running::spawn(
            ack_demo()
                .args(["server", "--listen", listen, "--out"])
                .arg(out)
                .args(extra)
                .env("RUST_LOG", "warn"),
        );
        let addr = running.wait_listening();
        ServerProcess { running, addr }
    }

    /// SIGKILL (a crash: no cleanup at all), and reap.
    pub(crate) fn kill(self) {
        self.running.signal(libc::SIGKILL);
        let _ = self.running.finish();
    }
}
