//! The lab on a real path (root): a lossy transfer with SACK on and off,
//! and a blackhole, each checked against the sender kernel's counters, and
//! nothing of a run left behind. Skipped, with the reason, when not root.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use tcp_watch::lab::{self, LabConfig, LabRun};

/// Runs the lab with `config` in a fresh directory, or `None` (and says
/// why) when it cannot run here. The directory is removed after.
fn run(test: &str, config: LabConfig) -> Option<LabRun> {
    if let Some(why) = lab::unavailable(&config) {
        eprintln!("{test} did not run: {why}");
        return None;
    }
    let dir = std::env::temp_dir().join(format!("tcp-watch-{test}-{}", std::process::id()));
    let config = LabConfig {
        dir: Some(dir.clone()),
        ..config
    };
    let result = lab::run(&config);
    let _ = std::fs::remove_dir_all(&dir);
    let run = result.unwrap_or_else(|e| panic!("{test}: {e}"));
    assert_nothing_left(&run);
    // The figures, for a reader of `cargo test -- --nocapture`.
    eprintln!(
        "{test}: {:.2} s, A sent {} (OutSegs {} + RetransSegs {}), A's capture {}, B's {}, \
         R dropped {:?}, kernel {:?}",
        run.transfer.duration_s,
        run.check.sent_by_a,
        run.kernel.out_segs,
        run.kernel.retrans_segs,
        run.capture_a.tcp_from_a,
        run.capture_b.tcp_from_a,
        run.router,
        run.kernel
    );
    Some(run)
}

/// The run's namespaces and tcpdump children are gone.
fn assert_nothing_left(run: &LabRun) {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    for name in &run.namespaces {
        assert!(
            !list.split_whitespace().any(|n| n == name),
            "namespace {name} left: {list}"
        );
    }
    for pid in [run.capture_a.pid, run.capture_b.pid] {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        assert_ne!(comm.trim(), "tcpdump", "tcpdump {pid} left running");
    }
}

/// What every run must show: the data arrived intact, and the captures are
/// complete (A's holds every segment A's kernel sent; B's every one R let
/// through), which is what the analysis's comparison rests on.
fn assert_intact_and_complete(run: &LabRun) {
    let t = &run.transfer;
    assert_eq!(t.bytes_received, t.bytes_sent, "{run:#?}");
    assert_eq!(t.receiver_sha256, t.sender_sha256, "{run:#?}");
    let (a, b) = (&run.capture_a, &run.capture_b);
    assert_eq!(a.stats.dropped_by_kernel, 0, "{run:#?}");
    assert_eq!(b.stats.dropped_by_kernel, 0, "{run:#?}");
    assert_eq!(
        a.tcp_from_a,
        run.kernel.out_segs + run.kernel.retrans_segs,
        "A's capture against TcpOutSegs + TcpRetransSegs: {run:#?}"
    );
    assert_eq!(
        a.tcp_from_a - b.tcp_from_a,
        run.router.a_to_b(),
        "segments lost between the captures against R's drops: {run:#?}"
    );
    // What B sent, A received: R drops nothing B→A outside a blackhole.
    assert_eq!(
        b.tcp_from_b,
        a.tcp_from_b + run.router.blackhole_b_to_a,
        "{run:#?}"
    );
    assert!(run.check.a_complete && run.check.b_complete, "{run:#?}");
    if let Some(n) = a.tcp_from_a_by_tcpdump {
        assert_eq!(n, a.tcp_from_a, "tcpdump -r counts A's capture otherwise");
    }
}

fn lossy(test: &str, sack: bool, rate: Option<&str>) -> Option<LabRun> {
    let run = run(
        test,
        LabConfig {
            loss: 0.02,
            sack,
            rate: rate.map(String::from),
            bytes: 3 << 20,
            ..LabConfig::default()
        },
    )?;
    assert_intact_and_complete(&run);
    assert!(run.router.loss > 0, "R dropped nothing: {run:#?}");
    assert!(run.kernel.retrans_segs > 0, "no retransmission: {run:#?}");
    assert_eq!(run.router.blackhole_a_to_b + run.router.blackhole_b_to_a, 0);
    Some(run)
}

#[test]
fn a_lossy_transfer_with_sack_arrives_intact_and_its_capture_is_complete() {
    if let Some(run) = lossy("lab-sack", true, None) {
        // Every loss is repaired by a retransmission the kernel counted,
        // and with SACK it recovers with SACK.
        assert!(run.kernel.retrans_segs >= run.router.loss, "{run:#?}");
        assert!(run.kernel.sack_recovery > 0, "{run:#?}");
    }
}

#[test]
fn a_lossy_rate_limited_transfer_without_sack_arrives_intact_and_its_capture_is_complete() {
    // 3 MiB (25 Mbit with headers) at 30 Mbit/s: at least 0.8 s on the
    // wire. The tbf queue's own drops, if any, join R's A→B account.
    if let Some(run) = lossy("lab-nosack", false, Some("30mbit")) {
        assert!(
            run.transfer.duration_s > 0.8,
            "the rate did not hold: {run:#?}"
        );
        assert_eq!(run.kernel.sack_recovery, 0, "SACK was off: {run:#?}");
        assert_eq!(run.kernel.dsack_recv, 0, "SACK was off: {run:#?}");
    }
}

#[test]
fn a_blackhole_shows_retransmission_timeouts() {
    let Some(run) = run(
        "lab-blackhole",
        LabConfig {
            loss: 0.0,
            blackhole: Some(Duration::from_millis(1200)),
            bytes: 2 << 20,
            ..LabConfig::default()
        },
    ) else {
        return;
    };
    assert_intact_and_complete(&run);
    assert_eq!(run.router.loss, 0);
    assert!(run.router.blackhole_a_to_b > 0, "{run:#?}");
    // Linux's RTO starts at 200 ms at least and doubles: 1.2 s of silence
    // is at least two firings (0.2 + 0.4 s) and the run lasts the hole.
    assert!(run.kernel.timeouts >= 2, "{run:#?}");
    assert!(run.transfer.duration_s >= 1.2, "{run:#?}");
}

#[test]
fn settings_that_cannot_work_are_refused_naming_the_setting() {
    let config = LabConfig {
        loss: 1.5,
        ..LabConfig::default()
    };
    let e = lab::run(&config).unwrap_err().to_string();
    // Not root: the reason is root; root: the reason is the loss.
    assert!(e.contains("root") || e.contains("loss 1.5"), "{e}");
    let _: Option<PathBuf> = config.dir;
}
