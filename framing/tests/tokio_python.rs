//! Interop of the tokio example (`examples/tokio_echo.rs`, preset `python`)
//! with Python 3's `multiprocessing.connection`, both directions: the
//! example's server against Python's `Client`, and the example's client
//! against Python's `Listener`.
//!
//! ```text
//! cargo test -p framing --all-features --test tokio_python
//! ```
//!
//! The example binary is the one cargo builds into the target directory's
//! `debug/examples/`; run by cargo, the test first brings it up to date
//! itself (see [`example_binary`]).

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::OnceLock;

/// Sizes of the messages Python sends: empty, small, both sides of 16384
/// (where Python switches from one write to a header and a payload write),
/// and larger than any one read. Message `k` has byte `i` = `(7 i + k) % 256`.
const PY_MESSAGES: &str = r#"
import socket, sys
from multiprocessing.connection import Client, Listener
SIZES = [0, 5, 16384, 16385, 300000]
# Bounds every wait, so that a broken peer fails the test instead of hanging it.
TIMEOUT = 60
def message(k):
    return bytes((i * 7 + k) % 256 for i in range(SIZES[k]))
def recv(c, what):
    if not c.poll(TIMEOUT):
        sys.exit(f"no {what} within {TIMEOUT} s")
    return c.recv_bytes()
"#;

/// Messages the example's client sends to Python's listener: with its
/// sizes in turn, ten cover all of them (0 to 300 000 bytes).
const CLIENT_MESSAGES: usize = 10;

/// A child process killed and reaped however the test ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        // Already exited on the good path: both calls then do nothing harmful.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Reaped {
    /// Waits for the process and panics, with its stderr, unless it exits 0.
    fn expect_success(&mut self, who: &str) {
        let status = self.0.wait().expect("waiting for a child process");
        if !status.success() {
            let mut stderr = String::new();
            if let Some(pipe) = self.0.stderr.as_mut() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            panic!("{who} failed ({status}):\n{stderr}");
        }
    }

    /// Kills the process and returns what it wrote to stderr.
    fn kill_for_stderr(&mut self) -> String {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let mut stderr = String::new();
        if let Some(pipe) = self.0.stderr.as_mut() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        stderr
    }
}

/// The tokio example's binary, next to this test's: `cargo test` puts tests
/// in `<target>/<profile>/deps/` and examples in `<target>/<profile>/examples/`.
///
/// A plain `cargo test` builds the examples along with this test, so the
/// example is used as it is when it is newer than every file it is built
/// from (framing's sources, its manifest and the lock file). Otherwise
/// (`cargo test --test tokio_python` builds only this test) and when run by
/// cargo (`CARGO` set), it is first brought up to date with `cargo build`,
/// once for both tests. Not building it again when it is fresh matters: that
/// build resolves features for `framing` alone, so it compiles a second copy
/// of the dependencies next to the workspace's.
fn example_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("the test binary's own path");
            let profile_dir = exe
                .parent()
                .and_then(Path::parent)
                .expect("the test binary lies in <target>/<profile>/deps/");
            let path = profile_dir
                .join("examples")
                .join(format!("tokio_echo{}", std::env::consts::EXE_SUFFIX));
            if !is_newer_than_sources(&path) {
                if let Some(cargo) = std::env::var_os("CARGO") {
                    build_example(&cargo, profile_dir);
                }
            }
            assert!(
                path.is_file(),
                "example binary {} not found; build it with \
                 `cargo build -p framing --features tokio --example tokio_echo` \
                 (`cargo test -p framing --all-features` builds it too)",
                path.display()
            );
            path
        })
        .clone()
}

/// Whether `binary` exists and is newer than every file under framing's
/// `src/` and `examples/`, framing's `Cargo.toml` and the workspace's
/// `Cargo.lock`.
fn is_newer_than_sources(binary: &Path) -> bool {
    fn modified(path: &Path) -> Option<std::time::SystemTime> {
        std::fs::metadata(path).and_then(|m| m.modified()).ok()
    }
    fn newest(path: &Path, newest_seen: &mut Option<std::time::SystemTime>) {
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        if meta.is_dir() {
            for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
                newest(&entry.path(), newest_seen);
            }
        } else if let Ok(time) = meta.modified() {
            *newest_seen = (*newest_seen).max(Some(time));
        }
    }
    let Some(built) = modified(binary) else {
        return false;
    };
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = None;
    for part in ["src", "examples", "Cargo.toml", "../Cargo.lock"] {
        newest(&crate_dir.join(part), &mut sources);
    }
    sources.is_none_or(|newest_source| built > newest_source)
}

/// Runs `cargo build` for the example into the same target directory and
/// profile as this test.
fn build_example(cargo: &OsStr, profile_dir: &Path) {
    let profile = match profile_dir.file_name().and_then(OsStr::to_str) {
        Some("debug") | None => "dev",
        Some(name) => name,
    };
    let target_dir = profile_dir
        .parent()
        .expect("the profile directory lies in the target directory");
    let status = Command::new(cargo)
        .args(["build", "--quiet", "-p", "framing", "--features", "tokio"])
        .args(["--example", "tokio_echo", "--profile", profile])
        .arg("--target-dir")
        .arg(target_dir)
        .status()
        .expect("running cargo to build the tokio example");
    assert!(
        status.success(),
        "`cargo build -p framing --features tokio --example tokio_echo` failed ({status})"
    );
}

/// Starts `python3 -c` with the message definitions and `script`.
fn python(script: &str) -> Reaped {
    let child = Command::new("python3")
        .arg("-c")
        .arg(format!("{PY_MESSAGES}\n{script}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be installed (scripts/test installs it)");
    Reaped(child)
}

/// The first line a child printed, read without waiting for it to exit.
fn first_line(stdout: &mut Option<ChildStdout>, who: &str) -> String {
    let mut line = String::new();
    let n = BufReader::new(stdout.as_mut().expect("stdout is piped"))
        .read_line(&mut line)
        .expect("reading a child's stdout");
    assert!(n > 0, "{who} exited before printing its address");
    line.trim().to_string()
}

/// The example's server echoes what Python's `Client` sends.
#[test]
fn python_client_to_example_server() {
    let mut server = Reaped(
        Command::new(example_binary())
            .args(["server", "127.0.0.1:0", "--preset", "python"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the tokio example"),
    );
    let line = first_line(&mut server.0.stdout, "the example server");
    let addr = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("expected `listening on <addr>`, got {line:?}"));
    let port: u16 = addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr:?}"));

    let mut client = python(&format!(
        r#"
c = Client(("127.0.0.1", {port}), authkey=None)
for k in range(len(SIZES)):
    c.send_bytes(message(k))
    got = recv(c, f"echo {{k}}")
    assert got == message(k), f"echo {{k}}: {{len(got)}} bytes, expected {{SIZES[k]}}"
c.close()
"#
    ));
    client.expect_success("the Python client");
    let stderr = server.kill_for_stderr();
    assert!(
        stderr.is_empty(),
        "the example server logged errors:\n{stderr}"
    );
}

/// The example's client sends its messages to Python's `Listener`, which
/// echoes them; the client exits 0 only if every echo matched.
#[test]
fn example_client_to_python_listener() {
    let mut listener = python(
        r#"
socket.setdefaulttimeout(TIMEOUT)  # bounds accept()
with Listener(("127.0.0.1", 0), authkey=None) as l:
    print(l.address[1], flush=True)
    with l.accept() as c:
        n = 0
        while True:
            try:
                m = recv(c, f"message {n}")
            except EOFError:
                break
            c.send_bytes(m)
            n += 1
print(n, flush=True)
"#,
    );
    let port = first_line(&mut listener.0.stdout, "the Python listener");
    let port: u16 = port
        .parse()
        .unwrap_or_else(|_| panic!("expected a port from Python, got {port:?}"));

    let output = Command::new(example_binary())
        .args([
            "client",
            &format!("127.0.0.1:{port}"),
            &CLIENT_MESSAGES.to_string(),
            "--preset",
            "python",
        ])
        .output()
        .expect("running the tokio example's client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the example client failed ({}):\n{}{}",
        output.status,
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.starts_with(&format!("echoed {CLIENT_MESSAGES} frames, ")),
        "unexpected summary: {stdout:?}"
    );

    listener.expect_success("the Python listener");
    let echoed = first_line(&mut listener.0.stdout, "the Python listener");
    assert_eq!(
        echoed,
        CLIENT_MESSAGES.to_string(),
        "messages Python echoed"
    );
}
