//! The window benchmark: acknowledged messages/s for several windows, on
//! loopback and through a relay adding delay each way, beside an
//! unacknowledged framed stream of the same messages to the same server.
//!
//! Every run is a fresh session against an in-process server whose out file
//! lives in `dir` (real files, real `fdatasync`).
//!
//! The same run measures the `fdatasync` latency of `dir`'s disk
//! (`t_fsync`: the median of appending a line and syncing, repeated), and
//! sets each acknowledged rate against the physical limit of one commit per
//! window: `W / t_fsync` for one session. Then `N` sessions (1, 8, 64,
//! 1000) run at once with W=128 and their aggregate rate is reported,
//! against one session's and against `N x W / t_fsync` (every session's
//! window in every commit).

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::info;

use crate::client::{self, ClientSettings};
use crate::error::Error;
use crate::naive;
use crate::relay::Relay;
use crate::server::{Server, ServerSettings};
use crate::store::{Disk, RealDisk};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchSettings {
    /// Windows to measure.
    pub windows: Vec<u32>,
    /// Payload bytes per message.
    pub size: usize,
    /// Delay the relay adds each way.
    pub delay: Duration,
    /// Messages per run are `scale x window` (at least a floor), so every
    /// run lasts about as long.
    pub scale: u64,
    /// Where the servers' out files go.
    pub dir: PathBuf,
    /// Concurrent session counts for the aggregate runs (W=128).
    pub sessions: Vec<usize>,
    /// Servers use the write-ahead log ([`crate::store::StoreOptions::wal`]).
    pub wal: bool,
}

/// One aggregate run: `sessions` sessions at once, W=128, loopback.
#[derive(Debug, Clone, Serialize)]
pub struct SessionsRow {
    /// Concurrent sessions.
    pub sessions: usize,
    /// Messages, all sessions.
    pub messages: u64,
    /// Acknowledged messages per second, all sessions together.
    pub messages_per_sec: f64,
    /// Over one session's rate in this table.
    pub over_one_session: f64,
    /// Over `sessions x 128 / t_fsync`.
    pub over_limit: f64,
}

/// One measured run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    /// `loopback` or `relay`.
    pub path: &'static str,
    /// Window (0 for the unacknowledged stream).
    pub window: u32,
    /// Messages.
    pub messages: u64,
    /// Acknowledged (or, unacknowledged: processed) messages per second.
    pub messages_per_sec: f64,
}

/// The whole benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Every run.
    pub rows: Vec<BenchRow>,
    /// Relay round-trip added, ms.
    pub added_rtt_ms: f64,
    /// Through the relay: W=32 over W=1 (target at least 16).
    pub relay_w32_over_w1: Option<f64>,
    /// Loopback: W=128 acked over the unacknowledged stream (target at
    /// least 0.8).
    pub loopback_w128_over_unacked: Option<f64>,
    /// `dir`'s file system (`statfs` type: `tmpfs`, `ext4`, ...).
    pub filesystem: String,
    /// Median latency of one `fdatasync` after appending a line in `dir`,
    /// milliseconds (the mean of the medians measured before and after the
    /// window runs).
    pub t_fsync_ms: f64,
    /// Median latency of appending to two files in `dir` and syncing both
    /// at the same time (a commit's FILE and journal), milliseconds.
    pub t_commit_ms: f64,
    /// Loopback, one session: each window's rate over `W / t_fsync`
    /// (target at W=128 on disk: at least 0.8).
    pub loopback_over_limit: Vec<(u32, f64)>,
    /// The aggregate runs.
    pub session_rows: Vec<SessionsRow>,
    /// 64 sessions over one session, W=128 (target at least 10).
    pub sessions64_over_one: Option<f64>,
    /// The servers used the write-ahead log.
    pub wal: bool,
    /// Stopped early (Ctrl-C): the rows are the runs that completed.
    pub interrupted: bool,
}

impl BenchReport {
    /// The report as a markdown table plus the two ratios.
    pub fn render(&self) -> String {
        let mut s = String::from("| path | window | messages | msg/s |\n|---|---:|---:|---:|\n");
        for r in &self.rows {
            let w = if r.window == 0 {
                "unacked".to_owned()
            } else {
                r.window.to_string()
            };
            s.push_str(&format!(
                "| {} | {w} | {} | {:.0} |\n",
                r.path, r.messages, r.messages_per_sec
            ));
        }
        if let Some(x) = self.relay_w32_over_w1 {
            s.push_str(&format!(
                "\nrelay ({:.0} ms RTT added): W=32 / W=1 = {x:.1}x\n",
                self.added_rtt_ms
            ));
        }
        if let Some(x) = self.loopback_w128_over_unacked {
            s.push_str(&format!(
                "loopback: W=128 acked / unacknowledged stream = {x:.2}x\n"
            ));
        }
        s.push_str(&format!(
            "\n{}: t_fsync = {:.3} ms (median fdatasync after an append); \
             two files synced at the same time (a commit) = {:.3} ms\n",
            self.filesystem, self.t_fsync_ms, self.t_commit_ms
        ));
        // Under a microsecond (tmpfs) there is no flush to wait for: the
        // limit is the CPU, and `W / t_fsync` says nothing.
        let flushes = self.t_fsync_ms >= 1e-3;
        if flushes {
            s.push_str("\n| window | W / t_fsync msg/s | acked / limit |\n|---:|---:|---:|\n");
            for &(w, x) in &self.loopback_over_limit {
                s.push_str(&format!(
                    "| {w} | {:.0} | {x:.2}x |\n",
                    f64::from(w) / (self.t_fsync_ms / 1e3)
                ));
            }
        } else {
            s.push_str("no flush to wait for: the limit is the CPU, not W / t_fsync\n");
        }
        if !self.session_rows.is_empty() {
            s.push_str("\n| sessions (W=128) | messages | msg/s | / one session |");
            s.push_str(if flushes {
                " / (N x 128 / t_fsync) |\n|---:|---:|---:|---:|---:|\n"
            } else {
                "\n|---:|---:|---:|---:|\n"
            });
            for r in &self.session_rows {
                s.push_str(&format!(
                    "| {} | {} | {:.0} | {:.1}x |",
                    r.sessions, r.messages, r.messages_per_sec, r.over_one_session
                ));
                if flushes {
                    s.push_str(&format!(" {:.2}x |", r.over_limit));
                }
                s.push('\n');
            }
        }
        if let Some(x) = self.sessions64_over_one {
            s.push_str(&format!("64 sessions / one session = {x:.1}x\n"));
        }
        s
    }
}

/// Runs the benchmark.
///
/// # Errors
/// Starting a server or the relay failed, or a run did not complete.
pub fn run(settings: &BenchSettings) -> Result<BenchReport, Error> {
    run_until(settings, &AtomicBool::new(false))
}

/// [`run`], ending early once `stop` is set (Ctrl-C): the run in progress
/// is dropped and the report holds the runs that completed.
///
/// # Errors
/// As [`run`].
pub fn run_until(settings: &BenchSettings, stop: &AtomicBool) -> Result<BenchReport, Error> {
    let stopped = || stop.load(Ordering::SeqCst);
    // The disk is measured before and after the runs (other load on it
    // changes its latency): the medians of both rounds together.
    std::fs::create_dir_all(&settings.dir)
        .map_err(|e| Error::io(format!("creating {}", settings.dir.display()), e))?;
    let before = measure_fsync(&settings.dir)?;
    let loopback_dir = settings.dir.join("bench-loopback");
    let _ = std::fs::remove_dir_all(&loopback_dir);
    std::fs::create_dir_all(&loopback_dir)
        .map_err(|e| Error::io(format!("creating {}", loopback_dir.display()), e))?;
    let server = Server::bind(SocketAddr::from(([127, 0, 0, 1], 0)), {
        let mut s = ServerSettings::new(loopback_dir.join("out.txt"));
        s.store.wal = settings.wal;
        s
    })?;
    let addr = server.local_addr();
    let server_stop = server.stop_handle();
    let serving = thread::spawn(move || server.run());
    let relay = Relay::start(SocketAddr::from(([127, 0, 0, 1], 0)), addr, settings.delay)
        .map_err(|e| Error::io("starting the relay", e))?;

    let mut rows = Vec::new();
    let mut session = 1000;
    // Progress: the window runs on both paths, the unacknowledged stream,
    // and the aggregate runs.
    let total = 2 * settings.windows.len() + 1 + settings.sessions.len();
    let result = (|| -> Result<(), Error> {
        for (path, target, floor) in [("loopback", addr, 2000), ("relay", relay.local_addr(), 200)]
        {
            for &w in &settings.windows {
                if stopped() {
                    return Ok(());
                }
                session += 1;
                let messages = (settings.scale * u64::from(w)).max(floor);
                let mut s = ClientSettings::new(target);
                s.count = messages;
                s.size = settings.size;
                s.window = w;
                s.session = session;
                s.heartbeat = Duration::from_secs(2);
                let r = client::run_until(&s, stop);
                if !r.completed && stopped() {
                    return Ok(());
                }
                if !r.completed {
                    return Err(Error::Settings(format!(
                        "{path} W={w} did not complete: {}",
                        r.error.unwrap_or_default()
                    )));
                }
                rows.push(BenchRow {
                    path,
                    window: w,
                    messages,
                    messages_per_sec: r.messages_per_sec,
                });
                info!(
                    "bench: {path} W={w}: {:.0} msg/s ({} of {total} runs)",
                    r.messages_per_sec,
                    rows.len()
                );
            }
        }
        // The same messages, unacknowledged, to the same server: the
        // server still processes and syncs them; nobody waits.
        if stopped() {
            return Ok(());
        }
        session += 1;
        let messages = settings.scale * 128;
        let n = naive::run(
            addr,
            session,
            messages,
            settings.size,
            Duration::from_secs(30),
        )?;
        if n.accepted_messages != messages {
            return Err(Error::Settings(format!(
                "unacknowledged stream: {} of {messages} accepted",
                n.accepted_messages
            )));
        }
        rows.push(BenchRow {
            path: "loopback",
            window: 0,
            messages,
            messages_per_sec: messages as f64 / n.seconds.max(1e-9),
        });
        info!(
            "bench: loopback unacknowledged: {:.0} msg/s ({} of {total} runs)",
            messages as f64 / n.seconds.max(1e-9),
            rows.len()
        );
        Ok(())
    })();
    server_stop.stop();
    let _ = serving.join();
    result?;

    let after = measure_fsync(&settings.dir)?;
    let (t_fsync, t_commit) = ((before.0 + after.0) / 2, (before.1 + after.1) / 2);
    let filesystem = filesystem_name(&settings.dir);
    let session_rows = run_sessions(settings, (before.0 + after.0) / 2, stop)?;
    let limit = |w: u32| f64::from(w) / t_fsync.as_secs_f64();
    let loopback_over_limit = rows
        .iter()
        .filter(|r| r.path == "loopback" && r.window > 0)
        .map(|r| (r.window, r.messages_per_sec / limit(r.window)))
        .collect();
    let sessions64_over_one = session_rows
        .iter()
        .find(|r| r.sessions == 64)
        .map(|r| r.over_one_session);
    let rate = |path: &str, w: u32| {
        rows.iter()
            .find(|r| r.path == path && r.window == w)
            .map(|r| r.messages_per_sec)
    };
    Ok(BenchReport {
        added_rtt_ms: 2.0 * settings.delay.as_secs_f64() * 1e3,
        relay_w32_over_w1: rate("relay", 32).zip(rate("relay", 1)).map(|(a, b)| a / b),
        loopback_w128_over_unacked: rate("loopback", 128)
            .zip(rate("loopback", 0))
            .map(|(a, b)| a / b),
        rows,
        filesystem,
        t_fsync_ms: t_fsync.as_secs_f64() * 1e3,
        t_commit_ms: t_commit.as_secs_f64() * 1e3,
        loopback_over_limit,
        session_rows,
        sessions64_over_one,
        wal: settings.wal,
        interrupted: stopped(),
    })
}

/// Medians of 200 rounds in `dir`: one `fdatasync` after appending a
/// 64-byte line to a file (`t_fsync`, what one commit asks of FILE's
/// disk), and appending to two files then syncing both at the same time as
/// a commit does ([`Disk::sync_both`]).
///
/// # Errors
/// A file cannot be created, written or synced.
pub fn measure_fsync(dir: &Path) -> Result<(Duration, Duration), Error> {
    let open = |name: &str| {
        let path = dir.join(name);
        OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .map(|f| (f, path.clone()))
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))
    };
    let (a, a_path) = open("bench-fsync-a.probe")?;
    let (b, b_path) = open("bench-fsync-b.probe")?;
    let line = [b'x'; 64];
    let io = |e| Error::io(format!("writing or syncing {}", a_path.display()), e);
    let mut one = Vec::with_capacity(200);
    let mut both = Vec::with_capacity(200);
    let mut disk = RealDisk;
    for i in 0..200u64 {
        a.write_all_at(&line, i * line.len() as u64).map_err(io)?;
        let t = Instant::now();
        a.sync_data().map_err(io)?;
        one.push(t.elapsed());
    }
    for i in 200..400u64 {
        a.write_all_at(&line, i * line.len() as u64).map_err(io)?;
        b.write_all_at(&line, i * line.len() as u64).map_err(io)?;
        let t = Instant::now();
        let (x, y) = disk.sync_both(&a, &b);
        x.and(y).map_err(io)?;
        both.push(t.elapsed());
    }
    drop((a, b));
    let _ = std::fs::remove_file(&a_path);
    let _ = std::fs::remove_file(&b_path);
    let median = |mut v: Vec<Duration>| {
        v.sort_unstable();
        v[v.len() / 2].max(Duration::from_nanos(1))
    };
    Ok((median(one), median(both)))
}

/// `statfs(2)`'s file system type of `dir`, by name where known.
fn filesystem_name(dir: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return "unknown".into();
    };
    // SAFETY: statfs fills the zeroed struct; `c` is a valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return "unknown".into();
    }
    #[allow(clippy::unnecessary_cast)]
    match st.f_type as i64 {
        0x0102_1994 => "tmpfs".into(),
        0xEF53 => "ext4".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        t => format!("fs type {t:#x}"),
    }
}

/// `N` sessions at once, W=128, against one fresh server: the aggregate
/// acknowledged rate.
fn run_sessions(
    settings: &BenchSettings,
    t_fsync: Duration,
    stop: &AtomicBool,
) -> Result<Vec<SessionsRow>, Error> {
    let stopped = || stop.load(Ordering::SeqCst);
    if settings.sessions.is_empty() || stopped() {
        return Ok(Vec::new());
    }
    let dir = settings.dir.join("bench-sessions");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let server = Server::bind(SocketAddr::from(([127, 0, 0, 1], 0)), {
        let mut s = ServerSettings::new(dir.join("out.txt"));
        s.store.wal = settings.wal;
        s
    })?;
    let addr = server.local_addr();
    let server_stop = server.stop_handle();
    let serving = thread::spawn(move || server.run());
    let mut out: Vec<SessionsRow> = Vec::new();
    let mut next_session = 1_000_000u64;
    let result = (|| -> Result<(), Error> {
        for &n in &settings.sessions {
            if stopped() {
                return Ok(());
            }
            // As many messages in all as one session's run, at least 8
            // windows per session.
            let per = (settings.scale * 128 / n as u64).max(8 * 128);
            let start = Instant::now();
            // Scoped: the client threads watch `stop` itself.
            let reports = thread::scope(|scope| {
                let handles: Vec<_> = (0..n)
                    .map(|_| {
                        next_session += 1;
                        let mut s = ClientSettings::new(addr);
                        s.count = per;
                        s.size = settings.size;
                        s.window = 128;
                        s.session = next_session;
                        s.heartbeat = Duration::from_secs(5);
                        thread::Builder::new()
                            .stack_size(256 * 1024)
                            .spawn_scoped(scope, move || client::run_until(&s, stop))
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| Error::io("starting a client thread", e))?;
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .map_err(|_| Error::Settings("a client thread panicked".into()))
                    })
                    .collect::<Result<Vec<_>, Error>>()
            })?;
            let mut acked = 0;
            for r in reports {
                if !r.completed && stopped() {
                    return Ok(());
                }
                if !r.completed {
                    return Err(Error::Settings(format!(
                        "{n} sessions: session {} did not complete: {}",
                        r.session,
                        r.error.unwrap_or_default()
                    )));
                }
                acked += r.stats.acked;
            }
            let rate = acked as f64 / start.elapsed().as_secs_f64().max(1e-9);
            let one = out.first().map_or(rate, |r| r.messages_per_sec);
            out.push(SessionsRow {
                sessions: n,
                messages: acked,
                messages_per_sec: rate,
                over_one_session: rate / one,
                over_limit: rate / (n as f64 * 128.0 / t_fsync.as_secs_f64()),
            });
            info!("bench: {n} sessions at W=128: {rate:.0} msg/s in all");
        }
        Ok(())
    })();
    server_stop.stop();
    let _ = serving.join();
    result.map(|()| out)
}
