//! SIGINT and SIGTERM end a run cleanly: the built binary removes every
//! namespace, veth pair and child process it created, prints its report
//! (with --json, one JSON document) and exits 130. A SIGKILLed run's iperf3 children die with it
//! (`PR_SET_PDEATHSIG`). The namespace tests need root and iproute2, the
//! iperf3 ones need iperf3 (scripts/test installs it); each says so and
//! skips when they are missing.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use buffer_demo::netns;

const BIN: &str = env!("CARGO_BIN_EXE_buffer-demo");

/// Polls `cond` every 20 ms until it holds or `limit` passes.
fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ip(args: &[&str]) -> (bool, String) {
    let out = Command::new("ip").args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn netns_exists(name: &str) -> bool {
    ip(&["netns", "list"])
        .1
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name))
}

fn link_exists(name: &str) -> bool {
    ip(&["-o", "link", "show"]).1.lines().any(|l| {
        l.split(':')
            .nth(1)
            .map(|n| n.trim().split('@').next() == Some(name))
            == Some(true)
    })
}

/// (state, parent pid, command name) of a process, from `/proc/PID/stat`.
fn proc_stat(pid: u32) -> Option<(char, u32, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_string();
    let mut rest = text[close + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((state, ppid, comm))
}

/// Running (not zombie) children of `parent` named `comm`.
fn children_named(parent: u32, comm: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            proc_stat(pid)
                .is_some_and(|(state, ppid, c)| ppid == parent && c == comm && state != 'Z')
        })
        .collect()
}

/// True while `pid` is a live (not zombie) process called `comm`.
fn alive(pid: u32, comm: &str) -> bool {
    proc_stat(pid).is_some_and(|(state, _, c)| c == comm && state != 'Z')
}

/// Sends `signal` to the child.
fn signal(child: &Child, signal: i32) {
    // SAFETY: kill has no memory preconditions; the pid is our own child's.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
}

/// Lines of a child's pipe, delivered through a channel by a thread.
fn lines(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Every line `rx` yields until its pipe closes (or `limit` passes).
fn drain(rx: &mpsc::Receiver<String>, limit: Duration) -> Vec<String> {
    let until = Instant::now() + limit;
    let mut got = Vec::new();
    while let Ok(line) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
        got.push(line);
    }
    got
}

/// Waits for a line that `pred` accepts; returns it (all lines seen go to `seen`).
fn expect_line(
    rx: &mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    limit: Duration,
    pred: impl Fn(&str) -> bool,
) -> String {
    let until = Instant::now() + limit;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen.push(line.clone());
                if pred(&line) {
                    return line;
                }
            }
            Err(e) => panic!("no such line within {limit:?} ({e}); seen: {seen:#?}"),
        }
    }
}

/// Waits (polling) for the child to exit; its exit code.
fn wait_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let mut status = None;
    let exited = wait_for(limit, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    assert!(exited, "still running {limit:?} after the signal");
    status.unwrap().code()
}

/// What a test run must not leave behind even when it fails: the child,
/// and (only on failure, so as not to touch a slot another run claimed
/// since) the namespace and link it named, and any iperf3 it started.
#[derive(Default)]
struct Leftovers {
    child: Option<Child>,
    netns: Option<String>,
    link: Option<String>,
    iperf3: Vec<u32>,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
        if !std::thread::panicking() {
            return;
        }
        for &pid in &self.iperf3 {
            if alive(pid, "iperf3") {
                // SAFETY: as in `signal`; the pid was our iperf3 grandchild.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
        if let Some(l) = &self.link {
            let _ = Command::new("ip").args(["link", "del", l]).output();
        }
        if let Some(n) = &self.netns {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

fn interrupted_sweep_leaves_nothing(sig: i32, name: &str) {
    if let Some(why) = netns::unavailable() {
        eprintln!("{name} did not run: {why}");
        return;
    }
    let out = std::env::temp_dir().join(format!("bd-signals-{}-{sig}", std::process::id()));
    let mut left = Leftovers::default();
    let mut child = Command::new(BIN)
        .args([
            "sweep",
            "--netns",
            "--work-us",
            "0",
            "--trial-duration",
            "0.2",
            "--out",
        ])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = lines(child.stderr.take().unwrap());
    let stdout = lines(child.stdout.take().unwrap());
    left.child = Some(child);
    let mut seen = Vec::new();
    let line = expect_line(&err, &mut seen, Duration::from_secs(60), |l| {
        l.starts_with("namespace ")
    });
    // "namespace bdemoK (veth bdhK A -> sink B)"
    let words: Vec<&str> = line.split_whitespace().collect();
    let (ns, host_if) = (words[1].to_string(), words[3].to_string());
    left.netns = Some(ns.clone());
    left.link = Some(host_if.clone());
    assert!(
        wait_for(Duration::from_secs(10), || netns_exists(&ns)),
        "{ns} never listed"
    );
    assert!(link_exists(&host_if), "{host_if} not in `ip link`");
    // Mid-sweep: a trial has finished and the next is running.
    expect_line(&err, &mut seen, Duration::from_secs(60), |l| {
        l.contains("offered")
    });
    let child = left.child.as_mut().unwrap();
    signal(child, sig);
    let code = wait_exit(child, Duration::from_secs(60));
    // The child has exited, but its reader thread may not have passed on the last
    // lines yet: read until its pipe closes.
    let printed = drain(&stdout, Duration::from_secs(10));
    assert_eq!(code, Some(130), "stdout {printed:#?} stderr {seen:#?}");
    assert!(
        printed.iter().any(|l| l.contains("INTERRUPTED")),
        "no final report: {printed:#?}"
    );
    assert!(
        !netns_exists(&ns),
        "{ns} left behind: {}",
        ip(&["netns", "list"]).1
    );
    assert!(!link_exists(&host_if), "{host_if} left behind");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn sweep_netns_sigint_leaves_no_namespace_or_veth() {
    interrupted_sweep_leaves_nothing(
        libc::SIGINT,
        "sweep_netns_sigint_leaves_no_namespace_or_veth",
    );
}

#[test]
fn sweep_netns_sigterm_leaves_no_namespace_or_veth() {
    interrupted_sweep_leaves_nothing(
        libc::SIGTERM,
        "sweep_netns_sigterm_leaves_no_namespace_or_veth",
    );
}

fn iperf3_missing() -> bool {
    Command::new("iperf3")
        .arg("--version")
        .output()
        .map_or(true, |o| !o.status.success())
}

/// Starts `versus-iperf3` and waits until its iperf3 server and client
/// run; returns the child and their pids.
fn versus_with_iperf3_running(left: &mut Leftovers) -> Vec<u32> {
    let mut child = Command::new(BIN)
        .args(["versus-iperf3", "--duration", "30", "--no-strace"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut pids = Vec::new();
    let both = wait_for(Duration::from_secs(30), || {
        pids = children_named(pid, "iperf3");
        pids.len() >= 2
    });
    if !both {
        let _ = child.kill();
    }
    left.child = Some(child);
    left.iperf3 = pids.clone();
    assert!(both, "iperf3 server and client never both ran: {pids:?}");
    pids
}

fn interrupted_versus_leaves_no_iperf3(sig: i32, name: &str) {
    if iperf3_missing() {
        eprintln!("{name} did not run: iperf3 is not installed (scripts/test installs it)");
        return;
    }
    let mut left = Leftovers::default();
    let pids = versus_with_iperf3_running(&mut left);
    let child = left.child.as_mut().unwrap();
    signal(child, sig);
    let code = wait_exit(child, Duration::from_secs(30));
    let expected = if sig == libc::SIGKILL {
        None
    } else {
        Some(130)
    };
    assert_eq!(code, expected);
    let gone = wait_for(Duration::from_secs(10), || {
        pids.iter().all(|&p| !alive(p, "iperf3"))
    });
    assert!(
        gone,
        "iperf3 survived: {:?}",
        pids.iter()
            .filter(|&&p| alive(p, "iperf3"))
            .collect::<Vec<_>>()
    );
}

/// SIGINT while iperf3 runs, with --json: exit 130, and stdout is one JSON
/// document saying the comparison was interrupted before iperf3's run ended.
#[test]
fn versus_sigint_with_json_prints_one_document() {
    if iperf3_missing() {
        eprintln!(
            "versus_sigint_with_json_prints_one_document did not run: iperf3 is not installed (scripts/test installs it)"
        );
        return;
    }
    let mut left = Leftovers::default();
    let mut child = Command::new(BIN)
        .args(["versus-iperf3", "--duration", "30", "--no-strace", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = lines(child.stdout.take().unwrap());
    let stderr = lines(child.stderr.take().unwrap());
    let pid = child.id();
    left.child = Some(child);
    let mut pids = Vec::new();
    assert!(
        wait_for(Duration::from_secs(30), || {
            pids = children_named(pid, "iperf3");
            pids.len() >= 2
        }),
        "iperf3 server and client never both ran: {pids:?}"
    );
    left.iperf3 = pids;
    let child = left.child.as_mut().unwrap();
    signal(child, libc::SIGINT);
    let code = wait_exit(child, Duration::from_secs(30));
    let out = drain(&stdout, Duration::from_secs(10)).join("\n");
    let err = drain(&stderr, Duration::from_secs(10)).join("\n");
    assert_eq!(code, Some(130), "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {out}"));
    assert_eq!(doc["program"], "buffer-demo");
    assert_eq!(doc["schema"], 1);
    assert_eq!(doc["interrupted"], true, "{doc}");
    assert!(doc["iperf3"].is_null(), "{doc}");
    assert!(err.contains("interrupted"), "{err}");
}

#[test]
fn versus_sigint_leaves_no_iperf3() {
    interrupted_versus_leaves_no_iperf3(libc::SIGINT, "versus_sigint_leaves_no_iperf3");
}

#[test]
fn versus_sigterm_leaves_no_iperf3() {
    interrupted_versus_leaves_no_iperf3(libc::SIGTERM, "versus_sigterm_leaves_no_iperf3");
}

#[test]
fn versus_sigkill_takes_its_iperf3_along() {
    interrupted_versus_leaves_no_iperf3(libc::SIGKILL, "versus_sigkill_takes_its_iperf3_along");
}
