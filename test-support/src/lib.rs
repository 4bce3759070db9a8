//! Driving the workspace's real binaries from tests.
//!
//! [`Running::spawn`] starts a command with its stdout and stderr read by
//! threads (so the child never blocks on a full pipe) into a log the test
//! can look at while it runs; [`Running::wait_listening`] waits for the
//! `listening on ADDR` line every server prints; [`Running::interrupt`]
//! sends SIGINT as Ctrl-C would; [`Running::finish`] waits with a deadline
//! (killing the child and failing past it, never hanging a test run) and
//! returns its exit status and output; the child is killed on drop.
//! [`one_document`] checks the workspace's `--json` convention: stdout is
//! exactly one JSON document with `program`, `version` and `schema`.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long a test waits for a child before it gives up: far beyond what a
/// loaded 2-core machine needs.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Which of the child's streams a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

#[derive(Debug, Default)]
struct Output {
    stdout: String,
    stderr: String,
    /// Both streams closed.
    closed: u8,
}

#[derive(Debug, Default)]
struct Shared {
    out: Mutex<Output>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Output> {
        self.out.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A child process of the test; killed and reaped on drop.
#[derive(Debug)]
pub struct Running {
    child: Child,
    what: String,
    shared: Arc<Shared>,
    readers: Vec<thread::JoinHandle<()>>,
}

/// How a child ended.
#[derive(Debug)]
pub struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

impl Finished {
    /// The exit code (`None` when a signal ended it).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Stdout as the one JSON document of the `--json` convention; panics
    /// saying what was wrong (with stderr) otherwise.
    pub fn document(&self) -> serde_json::Value {
        one_document(&self.stdout)
            .unwrap_or_else(|e| panic!("{e}\nstdout: {}\nstderr: {}", self.stdout, self.stderr))
    }
}

fn read_lines(
    stream: impl Read + Send + 'static,
    which: Stream,
    shared: Arc<Shared>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        loop {
            line.clear();
            let n = reader.read_line(&mut line).unwrap_or(0);
            let mut out = shared.lock();
            if n == 0 {
                out.closed += 1;
                shared.changed.notify_all();
                return;
            }
            match which {
                Stream::Stdout => out.stdout.push_str(&line),
                Stream::Stderr => out.stderr.push_str(&line),
            }
            shared.changed.notify_all();
        }
    })
}

impl Running {
    /// Starts `cmd` with stdout and stderr piped and read as it runs.
    pub fn spawn(cmd: &mut Command) -> Running {
        let what = format!("{cmd:?}");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let shared = Arc::new(Shared::default());
        let readers = vec![
            read_lines(
                child.stdout.take().expect("piped"),
                Stream::Stdout,
                Arc::clone(&shared),
            ),
            read_lines(
                child.stderr.take().expect("piped"),
                Stream::Stderr,
                Arc::clone(&shared),
            ),
        ];
        Running {
            child,
            what,
            shared,
            readers,
        }
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// What it wrote to stdout so far.
    pub fn stdout(&self) -> String {
        self.shared.lock().stdout.clone()
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.shared.lock().stderr.clone()
    }

    /// Waits (up to [`DEADLINE`]) for a line of `stream` that satisfies
    /// `want`, and returns it; panics with the output so far if the child
    /// closed its streams or the deadline passed first.
    pub fn wait_for_line(&self, stream: Stream, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        let mut out = self.shared.lock();
        loop {
            let text = match stream {
                Stream::Stdout => &out.stdout,
                Stream::Stderr => &out.stderr,
            };
            if let Some(line) = text.lines().find(|l| want(l)) {
                return line.to_owned();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if out.closed == 2 || left.is_zero() {
                panic!(
                    "{}: no such line on {stream:?} ({})\nstdout: {}\nstderr: {}",
                    self.what,
                    if out.closed == 2 {
                        "it closed its output"
                    } else {
                        "deadline"
                    },
                    out.stdout,
                    out.stderr
                );
            }
            out = self
                .shared
                .changed
                .wait_timeout(out, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits for `count` distinct lines of `stream` containing `needle` (a
    /// program that logs one such line per client it closes, per socket it
    /// opens) and returns them; panics as [`Running::wait_for_line`] does.
    pub fn wait_for_lines(&self, stream: Stream, needle: &str, count: usize) -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        while seen.len() < count {
            let line = self.wait_for_line(stream, |l| {
                l.contains(needle) && !seen.iter().any(|s| s == l)
            });
            seen.push(line);
        }
        seen
    }

    /// Waits for the `listening on ADDR` line (stdout or stderr) and
    /// returns ADDR.
    pub fn wait_listening(&self) -> SocketAddr {
        let deadline = Instant::now() + DEADLINE;
        let mut out = self.shared.lock();
        loop {
            let found = out
                .stdout
                .lines()
                .chain(out.stderr.lines())
                .find_map(|l| l.split("listening on ").nth(1))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|a| a.trim_end_matches([',', ';', ':']).parse().ok());
            if let Some(addr) = found {
                return addr;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if out.closed == 2 || left.is_zero() {
                panic!(
                    "{}: no 'listening on ADDR' line\nstdout: {}\nstderr: {}",
                    self.what, out.stdout, out.stderr
                );
            }
            out = self
                .shared
                .changed
                .wait_timeout(out, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Sends `signal` to the child.
    pub fn signal(&self, signal: i32) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid");
        // SAFETY: kill(2) on our own child, not yet reaped (we hold it).
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "{}: kill({signal})", self.what);
    }

    /// Sends SIGINT, as Ctrl-C in a terminal would.
    pub fn interrupt(&self) {
        self.signal(libc::SIGINT);
    }

    /// Waits (up to [`DEADLINE`]) for the child to exit and its output to
    /// close; kills it and panics past the deadline.
    pub fn finish(mut self) -> Finished {
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    // The child gives no signal we could wait on here but
                    // its exit: poll it, briefly.
                    thread::sleep(Duration::from_millis(10));
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!(
                        "{}: still running after {DEADLINE:?}\nstderr: {}",
                        self.what,
                        self.stderr()
                    );
                }
                Err(e) => panic!("{}: waiting: {e}", self.what),
            }
        };
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let out = self.shared.lock();
        Finished {
            status,
            stdout: out.stdout.clone(),
            stderr: out.stderr.clone(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Runs `cmd` to its end (with the deadline of [`Running::finish`]).
pub fn run(cmd: &mut Command) -> Finished {
    Running::spawn(cmd).finish()
}

/// `stdout` as exactly one JSON document with `program`, `version` and
/// `schema` (the workspace's `--json` convention), or what is wrong.
///
/// # Errors
/// Not JSON, more than one document, or a field missing.
pub fn one_document(stdout: &str) -> Result<serde_json::Value, String> {
    let mut docs = serde_json::Deserializer::from_str(stdout).into_iter::<serde_json::Value>();
    let doc = match docs.next() {
        Some(Ok(doc)) => doc,
        Some(Err(e)) => return Err(format!("stdout is not one JSON document: {e}")),
        None => return Err("stdout holds no JSON document".into()),
    };
    if let Some(next) = docs.next() {
        return Err(format!(
            "stdout holds more than one JSON document (then {})",
            next.map_or_else(|e| e.to_string(), |v| v.to_string())
        ));
    }
    for key in ["program", "version", "schema"] {
        if doc.get(key).is_none() {
            return Err(format!("the JSON document has no `{key}`"));
        }
    }
    Ok(doc)
}

/// Whether the test runs as root (network namespaces, packet sockets).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A network namespace with `lo` up, made for one test and deleted on
/// drop, also when the test fails.
#[derive(Debug)]
pub struct Netns(String);

impl Netns {
    /// A fresh namespace named after `test`, or `None` (and the reason
    /// said on stderr) when the test cannot make one: not root, or no `ip`.
    pub fn new(test: &str) -> Option<Netns> {
        use std::sync::atomic::{AtomicU32, Ordering};
        if !is_root() {
            eprintln!("{test} did not run: it needs root (network namespaces)");
            return None;
        }
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let prefix: String = test
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(8)
            .collect();
        let name = format!(
            "ts-{prefix}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let made = Command::new("ip").args(["netns", "add", &name]).status();
        if !made.as_ref().is_ok_and(|s| s.success()) {
            eprintln!("{test} did not run: `ip netns add {name}` failed ({made:?})");
            return None;
        }
        let ns = Netns(name);
        let up = Command::new("ip")
            .args(["-n", &ns.0, "link", "set", "lo", "up"])
            .status();
        assert!(
            up.as_ref().is_ok_and(|s| s.success()),
            "lo up in {}: {up:?}",
            ns.0
        );
        Some(ns)
    }

    /// Its name, for `ip netns exec NAME` and `ip -n NAME`.
    pub fn name(&self) -> &str {
        &self.0
    }

    /// `program` to be run inside the namespace (`ip netns exec`).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let deleted = Command::new("ip").args(["netns", "del", &self.0]).status();
        if !deleted.as_ref().is_ok_and(|s| s.success()) {
            eprintln!("namespace {} not removed: {deleted:?}", self.0);
        }
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago, for peers that
/// cannot report the port they bound (prefer `127.0.0.1:0` and reading
/// the bound address back).
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// As [`free_tcp_port`], for UDP.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Lines sent over a channel as `stream` produces them (for tests that
/// consume a child's output line by line).
pub fn lines_of(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    #[test]
    fn a_listening_line_on_either_stream_gives_the_address() {
        let r = Running::spawn(&mut sh(
            "echo starting >&2; echo 'listening on 127.0.0.1:4242 (udp)' >&2; exec sleep 30",
        ));
        assert_eq!(r.wait_listening(), "127.0.0.1:4242".parse().unwrap());
        assert!(r.stderr().contains("starting"));
        r.interrupt();
        let f = r.finish();
        assert_eq!(f.status.code(), None, "ended by SIGINT");
    }

    #[test]
    fn finish_collects_both_streams_and_the_exit_code() {
        let f = run(&mut sh("echo out; echo err >&2; exit 3"));
        assert_eq!(f.code(), Some(3));
        assert_eq!(f.stdout, "out\n");
        assert_eq!(f.stderr, "err\n");
    }

    #[test]
    #[should_panic(expected = "no 'listening on ADDR' line")]
    fn a_child_that_ends_without_listening_fails_the_test_at_once() {
        let r = Running::spawn(&mut sh("echo nope"));
        r.wait_listening();
    }

    #[test]
    fn one_document_means_exactly_one_with_the_identity_fields() {
        let good = r#"{"program":"x","version":"1","schema":1,"n":2}"#;
        assert_eq!(one_document(good).unwrap()["n"], 2);
        assert!(
            one_document(&format!("{good}\n{good}"))
                .unwrap_err()
                .contains("more than one")
        );
        assert!(one_document(&format!("human text\n{good}")).is_err());
        assert!(
            one_document(r#"{"program":"x","version":"1"}"#)
                .unwrap_err()
                .contains("schema")
        );
        assert!(one_document("").unwrap_err().contains("no JSON"));
    }
}
