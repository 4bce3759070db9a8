//! SIGINT and SIGTERM end a run cleanly: the built binary removes every
//! namespace, veth pair and child process it created, prints its report
//! (with --json, one JSON document) and exits 130. A SIGKILLed run's iperf3 children die with it
//! (`PR_SET_PDEATHSIG`). The namespace tests need root and iproute2, the
//! iperf3 ones need iperf3 (scripts/test installs it); each says so and
//! skips when they are missing.

use std::process::Command;
use std::time::{Duration, Instant};

use buffer_demo::netns;
use test_support::{Running, Stream};

#[path = "../../tests/common/mod.rs"]
mod common;

const BIN: &str = env!("CARGO_BIN_EXE_buffer-demo");

/// Polls `cond` every 20 ms until it holds or `limit` passes (for what
/// only `/proc` and `ip` tell: no process says when its child started or
/// a namespace went).
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

/// What a test run must not leave behind even when it fails: the child,
/// and (only on failure, so as not to touch a slot another run claimed
/// since) the namespace and link it named, and any iperf3 it started.
#[derive(Default)]
struct Leftovers {
    child: Option<Running>,
    netns: Option<String>,
    link: Option<String>,
    iperf3: Vec<u32>,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        // Killed and reaped first, so that it no longer uses what is removed next.
        drop(self.child.take());
        if !std::thread::panicking() {
            return;
        }
        for &pid in &self.iperf3 {
            if alive(pid, "iperf3") {
                // SAFETY: kill has no memory preconditions; the pid was our
                // iperf3 grandchild, alive (not reaped) a moment ago.
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
    let child = left.child.insert(Running::spawn(
        Command::new(BIN)
            .args([
                "sweep",
                "--netns",
                "--work-us",
                "0",
                "--trial-duration",
                "0.2",
                "--out",
            ])
            .arg(&out),
    ));
    let line = child.wait_for_line(Stream::Stderr, |l| l.starts_with("namespace "));
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
    let child = left.child.take().unwrap();
    child.wait_for_line(Stream::Stderr, |l| l.contains("offered"));
    child.signal(sig);
    let end = child.finish();
    let printed = &end.stdout;
    assert_eq!(
        end.code(),
        Some(130),
        "stdout {printed} stderr {}",
        end.stderr
    );
    assert!(
        printed.contains("INTERRUPTED"),
        "no final report: {printed}"
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

/// Starts `versus-iperf3` (and `more` flags) and waits until its iperf3
/// server and client run; returns the child (still in `left`, which kills
/// it and them should the test fail) and their pids.
fn versus_with_iperf3_running(left: &mut Leftovers, more: &[&str]) -> (Running, Vec<u32>) {
    let child = Running::spawn(
        Command::new(BIN)
            .args(["versus-iperf3", "--duration", "30", "--no-strace"])
            .args(more),
    );
    let pid = child.id();
    left.child = Some(child);
    let mut pids = Vec::new();
    let both = wait_for(Duration::from_secs(30), || {
        pids = children_named(pid, "iperf3");
        pids.len() >= 2
    });
    left.iperf3 = pids.clone();
    assert!(both, "iperf3 server and client never both ran: {pids:?}");
    (left.child.take().unwrap(), pids)
}

fn interrupted_versus_leaves_no_iperf3(sig: i32, name: &str) {
    if common::iperf3_missing() {
        eprintln!("{name} did not run: iperf3 is not installed (scripts/test installs it)");
        return;
    }
    let mut left = Leftovers::default();
    let (child, pids) = versus_with_iperf3_running(&mut left, &[]);
    child.signal(sig);
    let code = child.finish().code();
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
    if common::iperf3_missing() {
        eprintln!(
            "versus_sigint_with_json_prints_one_document did not run: iperf3 is not installed (scripts/test installs it)"
        );
        return;
    }
    let mut left = Leftovers::default();
    let (child, _) = versus_with_iperf3_running(&mut left, &["--json"]);
    child.interrupt();
    let end = child.finish();
    let err = &end.stderr;
    assert_eq!(end.code(), Some(130), "{err}");
    let doc = end.document();
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
