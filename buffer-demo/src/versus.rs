//! `versus-iperf3`: iperf3's UDP receiver and ours, measured in one run.
//!
//! 1. `iperf3 -u -b 0 -l 64` on loopback: its offered rate, its receiver's
//!    delivered rate and its reported loss.
//! 2. Our blast at iperf3's offered rate into our split sink: our loss.
//! 3. A [`RateSearch`] for the highest rate our split sink takes with at
//!    most 0.01 % drops, for each configuration in [`VersusConfig::setups`]:
//!    the plain sink, and the blaster at its limit (threads, GSO) into a
//!    sink with GRO, on one and on several receivers.
//! 4. Optionally (`strace`), receive syscalls per datagram: iperf3's server
//!    under `strace -f -c` (a separate, slower run) against our sink's own
//!    count of `recvmmsg` calls.
//!
//! Every iperf3 (and strace) process runs in a process group of its own
//! under a [`Guarded`] handle that kills the whole group and reaps it when
//! dropped: on success, on error, and on a stop request (SIGINT/SIGTERM
//! through [`Stop`]), which every wait here checks. Each child also gets
//! `PR_SET_PDEATHSIG` = SIGKILL, so that it dies with us even when we are
//! killed with SIGKILL; the server also gets `--idle-timeout`, so that one
//! left behind by a killed strace (whose tracee is detached, not killed)
//! ends by itself.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::account::Expect;
use crate::error::{Error, Result};
use crate::loadgen::{BlastConfig, MAX_RATE, blast, random_nonce};
use crate::sink::{Mode, Sink, SinkConfig};
use crate::stop::{POLL, Stop};
use crate::sweep::{LOSS_FREE, Limit, MAX_TRIAL_SECS, RateSearch, SinkSetup, run_trial};

/// The longest iperf3 run, seconds.
pub const MAX_SECS: u64 = 3600;

/// How to compare.
#[derive(Debug, Clone)]
pub struct VersusConfig {
    /// Whole seconds for iperf3 (its `-t`, where 0 would mean for ever) and
    /// for our run at its rate: 1..=[`MAX_SECS`].
    pub secs: u64,
    /// Length of each search trial.
    pub search_secs: Duration,
    /// Count iperf3's receive syscalls with strace (a separate run).
    pub strace: bool,
    /// Our sink's receive buffer request.
    pub rcvbuf: Option<usize>,
    /// The configurations searched (their `rcvbuf` is replaced by `rcvbuf`).
    pub setups: Vec<SinkSetup>,
    /// Stops the comparison (children are killed and reaped).
    pub stop: Stop,
}

impl Default for VersusConfig {
    fn default() -> VersusConfig {
        VersusConfig {
            secs: 5,
            search_secs: Duration::from_secs(2),
            strace: true,
            rcvbuf: Some(4 << 20),
            setups: default_setups(),
            stop: Stop::new(),
        }
    }
}

/// The plain split sink (batch 32, one sender thread), then two sending
/// threads with GSO 32 into a split sink with GRO on 1 and on 2 receivers.
pub fn default_setups() -> Vec<SinkSetup> {
    let fast = SinkSetup {
        gro: true,
        threads: 2,
        gso: 32,
        ..SinkSetup::default()
    };
    vec![
        SinkSetup::default(),
        fast,
        SinkSetup {
            receivers: 2,
            ..fast
        },
    ]
}

/// One configuration's search.
#[derive(Debug, Clone, Serialize)]
pub struct VersusSearch {
    /// The configuration.
    pub setup: SinkSetup,
    /// Its label.
    pub label: String,
    /// Highest offered rate with at most 0.01 % drops, datagrams/s.
    #[serde(rename = "max_loss_free_per_s")]
    pub max_loss_free_rate: Option<f64>,
    /// What the blaster reached in that trial, datagrams/s.
    #[serde(rename = "achieved_per_s")]
    pub achieved: Option<f64>,
    /// Every `recvmmsg` call per datagram received in that trial.
    pub recv_syscalls_per_datagram: Option<f64>,
    /// Its account closed (residual 0) in every trial.
    pub all_closed: bool,
    /// The search stopped at the sender's limit.
    pub sender_limited: bool,
    /// What stopped the search going higher.
    pub ceiling: Limit,
    /// Trials run.
    pub trials: usize,
}

/// A child process in a process group of its own; dropping it kills the
/// group (SIGKILL) and reaps the child.
pub struct Guarded {
    child: Child,
    line: String,
}

impl Guarded {
    /// Spawns `args` (program first) in a new process group, with
    /// `PR_SET_PDEATHSIG` = SIGKILL (it fires when the spawning *thread*
    /// ends: spawn from the thread that outlives the child).
    pub fn spawn(args: &[&str], stdout: Stdio) -> Result<Guarded> {
        let line = args.join(" ");
        let parent = std::process::id();
        let mut cmd = Command::new(args[0]);
        cmd.args(&args[1..])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::null())
            .process_group(0);
        // SAFETY: the closure runs in the forked child before exec and only
        // makes async-signal-safe system calls (prctl, getppid).
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before the prctl took effect.
                if libc::getppid() as u32 != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| Error::Command {
            command: line.clone(),
            detail: e.to_string(),
        })?;
        tracing::debug!(pid = child.id(), %line, "child started");
        Ok(Guarded { child, line })
    }

    /// The child's pid (also its process group id).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the child to exit, at most `limit`, checking `stop`
    /// every [`POLL`].
    pub fn wait(&mut self, limit: Duration, stop: &Stop) -> Result<ExitStatus> {
        let until = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().map_err(Error::io("waitpid"))? {
                return Ok(status);
            }
            if stop.requested() {
                return Err(Error::Interrupted { what: "iperf3" });
            }
            if Instant::now() >= until {
                return Err(Error::Command {
                    command: self.line.clone(),
                    detail: format!("still running after {} s", limit.as_secs_f64()),
                });
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        let pgid = self.child.id() as libc::pid_t;
        // The whole group: strace's tracee, or anything iperf3 forked.
        // SAFETY: kill has no memory preconditions; ESRCH (group gone) is fine.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        tracing::debug!(pid = pgid, line = %self.line, "child reaped");
    }
}

/// What iperf3 reported.
#[derive(Debug, Clone, Serialize)]
pub struct Iperf3Run {
    /// Datagrams its client sent.
    pub sent: u64,
    /// Datagrams its server counted lost.
    pub lost: u64,
    /// Its loss, percent.
    pub lost_percent: f64,
    /// Seconds of the test.
    #[serde(rename = "duration_s")]
    pub secs: f64,
    /// sent / secs, datagrams/s.
    #[serde(rename = "offered_per_s")]
    pub offered_rate: f64,
    /// (sent - lost) / secs, datagrams/s.
    #[serde(rename = "delivered_per_s")]
    pub delivered_rate: f64,
}

/// Our blast at iperf3's offered rate into our split sink.
#[derive(Debug, Clone, Serialize)]
pub struct OursAtIperf3Rate {
    /// The rate our blast reached, datagrams/s.
    pub offered_per_s: f64,
    /// Datagrams our blast sent.
    pub sent: u64,
    /// Our loss at that rate, percent.
    pub lost_percent: f64,
    /// Our account's residual (0: it closed; `None`: no sentinel).
    pub residual: Option<i64>,
    /// Our datagrams per receive call in that run.
    pub datagrams_per_call: f64,
    /// Our `recvmmsg` calls per datagram in that run.
    pub recv_syscalls_per_datagram: f64,
}

/// The comparison: what was measured before it ended (an interrupted run
/// leaves later parts `None` or empty and says `interrupted`).
#[derive(Debug, Clone, Serialize)]
pub struct VersusReport {
    /// iperf3's run (`None`: interrupted before it ended).
    pub iperf3: Option<Iperf3Run>,
    /// Our run at iperf3's offered rate.
    pub ours_at_iperf3_rate: Option<OursAtIperf3Rate>,
    /// Our highest rate with at most 0.01 % drops (the plain sink's search).
    #[serde(rename = "ours_max_loss_free_per_s")]
    pub ours_max_loss_free_rate: Option<f64>,
    /// The plain sink's search stopped at the sender's limit.
    pub sender_limited: bool,
    /// iperf3 server's receive syscalls per datagram (strace), if counted.
    pub iperf3_recv_syscalls_per_datagram: Option<f64>,
    /// Our SO_RCVBUF request, bytes.
    #[serde(rename = "rcvbuf_bytes")]
    pub rcvbuf: Option<usize>,
    /// Every configuration's search (an interrupted one holds the trials
    /// that finished).
    pub searches: Vec<VersusSearch>,
    /// A stop was requested (SIGINT, SIGTERM) before the comparison ended.
    pub interrupted: bool,
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(Error::io("bind a probe port"))?;
    Ok(l.local_addr().map_err(Error::io("probe port"))?.port())
}

/// Runs an iperf3 server (once, `-1`) with `prefix` before it, waits for
/// "Server listening", then the UDP client for `secs` whole seconds.
/// Returns the client's JSON. Both children are killed and reaped on every
/// way out.
fn iperf3_pair(prefix: &[&str], secs: u64, stop: &Stop) -> Result<serde_json::Value> {
    let port = free_port()?.to_string();
    let mut args: Vec<&str> = prefix.to_vec();
    args.extend([
        "iperf3",
        "-s",
        "-1",
        "--forceflush",
        "--idle-timeout",
        "60",
        "-p",
        &port,
        "-B",
        "127.0.0.1",
    ]);
    let line = args.join(" ");
    let mut server = Guarded::spawn(&args, Stdio::piped())?;
    // A reader thread signals "Server listening", then drains the rest so
    // the server never blocks on a full pipe; it ends when the pipe closes.
    let out = BufReader::new(server.child.stdout.take().expect("piped"));
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        for text in out.lines() {
            let Ok(text) = text else { break };
            if text.contains("Server listening") {
                let _ = ready_tx.send(());
            }
        }
    });
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        match ready_rx.recv_timeout(POLL) {
            Ok(()) => break,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(Error::Command {
                    command: line,
                    detail: "exited before saying \"Server listening\"".into(),
                });
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if stop.requested() {
            return Err(Error::Interrupted { what: "iperf3" });
        }
        if Instant::now() >= until {
            return Err(Error::Command {
                command: line,
                detail: "did not say \"Server listening\" within 20 s".into(),
            });
        }
    }
    let t = secs.to_string();
    let client_args = [
        "iperf3",
        "-c",
        "127.0.0.1",
        "-p",
        &port,
        "-u",
        "-b",
        "0",
        "-l",
        "64",
        "-t",
        &t,
        "--json",
    ];
    let client_line = client_args.join(" ");
    let mut client = Guarded::spawn(&client_args, Stdio::piped())?;
    let mut stdout = client.child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    // iperf3 ends its test after `secs`; the rest is generous slack for a
    // loaded machine, not a wait we expect.
    let status = client.wait(Duration::from_secs(secs + 30), stop)?;
    let json = reader.join().unwrap_or_default();
    server.wait(Duration::from_secs(10), stop)?;
    serde_json::from_slice(&json).map_err(|e| Error::Command {
        command: client_line,
        detail: format!("{status}: {e}"),
    })
}

fn parse_iperf3(v: &serde_json::Value) -> Option<Iperf3Run> {
    let sum = &v["end"]["sum_received"];
    let sent = v["end"]["sum_sent"]["packets"].as_u64()?;
    let lost = sum["lost_packets"].as_u64()?;
    let secs = sum["seconds"].as_f64()?;
    Some(Iperf3Run {
        sent,
        lost,
        lost_percent: sum["lost_percent"].as_f64()?,
        secs,
        offered_rate: sent as f64 / secs,
        delivered_rate: sent.saturating_sub(lost) as f64 / secs,
    })
}

/// Parses `strace -c` output: total calls of the named syscalls.
pub fn parse_strace_calls(text: &str, names: &[&str]) -> u64 {
    text.lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let name = *cols.last()?;
            if cols.len() >= 5 && names.contains(&name) {
                cols[3].parse::<u64>().ok()
            } else {
                None
            }
        })
        .sum()
}

/// Runs the comparison. Needs `iperf3` (and `strace` when asked). A stop
/// request ends it early with the report of what was measured
/// (`interrupted` set); its children are killed and reaped either way.
pub fn versus_iperf3(cfg: &VersusConfig) -> Result<VersusReport> {
    if !(1..=MAX_SECS).contains(&cfg.secs) {
        return Err(Error::Config(format!(
            "--duration {} s is not between 1 and {MAX_SECS} whole seconds (iperf3 -t 0 runs for ever)",
            cfg.secs
        )));
    }
    let search_secs = cfg.search_secs.as_secs_f64();
    if !(search_secs > 0.0 && search_secs <= MAX_TRIAL_SECS) {
        return Err(Error::Config(format!(
            "--trial-duration {search_secs} s is not above 0 and at most {MAX_TRIAL_SECS} s"
        )));
    }
    let mut report = VersusReport {
        iperf3: None,
        ours_at_iperf3_rate: None,
        ours_max_loss_free_rate: None,
        sender_limited: false,
        iperf3_recv_syscalls_per_datagram: None,
        rcvbuf: cfg.rcvbuf,
        searches: Vec::new(),
        interrupted: false,
    };
    match compare(cfg, search_secs, &mut report) {
        Ok(()) => {}
        Err(Error::Interrupted { what }) => {
            tracing::info!(what, "comparison interrupted");
            report.interrupted = true;
        }
        Err(e) => return Err(e),
    }
    let plain = report.searches.first();
    report.ours_max_loss_free_rate = plain.and_then(|p| p.max_loss_free_rate);
    report.sender_limited = plain.is_some_and(|p| p.sender_limited);
    Ok(report)
}

/// The comparison's steps, each adding to `report` as it ends.
fn compare(cfg: &VersusConfig, search_secs: f64, report: &mut VersusReport) -> Result<()> {
    let stop = &cfg.stop;
    let v = iperf3_pair(&[], cfg.secs, stop)?;
    let iperf3 = parse_iperf3(&v).ok_or_else(|| Error::Command {
        command: "iperf3 -c ... --json".into(),
        detail: "no end.sum_received / sum_sent in its JSON".into(),
    })?;
    tracing::info!(
        sent = iperf3.sent,
        lost = iperf3.lost,
        offered_per_s = iperf3.offered_rate,
        "iperf3 done"
    );
    if !(iperf3.offered_rate.is_finite() && iperf3.offered_rate > 0.0) {
        return Err(Error::Command {
            command: "iperf3 -c ... --json".into(),
            detail: format!("its offered rate {} is not a rate", iperf3.offered_rate),
        });
    }
    report.iperf3 = Some(iperf3.clone());
    eprintln!(
        "iperf3: {:.0}/s offered, {:.3} % lost; now ours at that rate",
        iperf3.offered_rate, iperf3.lost_percent
    );

    let nonce = random_nonce()?;
    let sink = Sink::bind(SinkConfig {
        rcvbuf: cfg.rcvbuf,
        mode: Mode::Split,
        timeout: Some(Duration::from_secs(cfg.secs + 30)),
        expect: Expect {
            nonce: Some(nonce),
            source: None,
        },
        stop: stop.clone(),
        ..SinkConfig::default()
    })?;
    let to = sink.local_addr();
    let (r, b) = std::thread::scope(|s| {
        let h = s.spawn(move || sink.run());
        let b = blast(&BlastConfig {
            to,
            rate: iperf3.offered_rate.min(MAX_RATE),
            size: 64,
            duration: Duration::from_secs(cfg.secs),
            nonce: Some(nonce),
            stop: stop.clone(),
            ..BlastConfig::default()
        });
        (h.join().expect("sink thread panicked"), b)
    });
    let (r, b) = (r?, b?);
    if stop.requested() {
        return Err(Error::Interrupted {
            what: "our run at iperf3's rate",
        });
    }
    let l = &r.ledger;
    report.ours_at_iperf3_rate = Some(OursAtIperf3Rate {
        offered_per_s: b.achieved_rate,
        sent: b.sent,
        lost_percent: l.drop_fraction().unwrap_or(1.0) * 100.0,
        residual: l.residual,
        datagrams_per_call: r.datagrams_per_call,
        recv_syscalls_per_datagram: r.recv_syscalls_per_datagram,
    });

    for &setup in &cfg.setups {
        let setup = SinkSetup {
            rcvbuf: cfg.rcvbuf,
            ..setup
        };
        let mut search = RateSearch::new(iperf3.delivered_rate, 10_000.0, 40_000_000.0, 0.05, 10);
        let mut best: Option<crate::sweep::Trial> = None;
        let (mut all_closed, mut trials) = (true, 0);
        let mut ceiling = Limit::Neither;
        let mut outcome = Ok(());
        while let Some(rate) = search.next_rate() {
            let t = match run_trial(setup, 0.0, rate, search_secs, 64, None, stop) {
                Ok(t) => t,
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            };
            tracing::info!(label = %t.label, rate, achieved = t.achieved, drops = t.drop_fraction, limited_by = %t.limited_by, "search trial");
            eprintln!(
                "{:<48} asked {:>10.0}/s reached {:>10.0}/s drops {:>9.5} % limited by {} (residual {})",
                t.label,
                t.offered,
                t.achieved,
                t.drop_fraction * 100.0,
                t.limited_by,
                t.residual.map_or("unknown".into(), |r| r.to_string())
            );
            trials += 1;
            all_closed &= t.residual == Some(0);
            let passed = t.drop_fraction <= LOSS_FREE;
            search.record(t.offered, t.achieved, passed);
            if passed {
                if t.limited_by == Limit::Sender {
                    ceiling = Limit::Sender;
                }
                if best.as_ref().is_none_or(|b| t.offered > b.offered) {
                    best = Some(t);
                }
            } else if ceiling != Limit::Sender {
                ceiling = Limit::Sink;
            }
        }
        if trials > 0 || outcome.is_ok() {
            report.searches.push(VersusSearch {
                setup,
                label: setup.label(),
                max_loss_free_rate: search.best(),
                achieved: best.as_ref().map(|t| t.achieved),
                recv_syscalls_per_datagram: best.as_ref().map(|t| t.recv_syscalls_per_datagram),
                all_closed,
                sender_limited: search.sender_limited(),
                ceiling: if search.sender_limited() {
                    Limit::Sender
                } else {
                    ceiling
                },
                trials,
            });
        }
        outcome?;
    }

    if cfg.strace {
        let file = std::env::temp_dir().join(format!("buffer-demo-strace-{}", std::process::id()));
        let f = file.display().to_string();
        let v = iperf3_pair(
            &[
                "strace",
                "-f",
                "-c",
                "-o",
                &f,
                "-e",
                "trace=read,recv,recvfrom,recvmsg,recvmmsg",
            ],
            cfg.secs.min(2),
            stop,
        );
        let text = std::fs::read_to_string(&file);
        let _ = std::fs::remove_file(&file);
        let v = v?;
        let text = text.map_err(Error::io(format!("read {f}")))?;
        let calls = parse_strace_calls(&text, &["read", "recv", "recvfrom", "recvmsg", "recvmmsg"]);
        report.iperf3_recv_syscalls_per_datagram = parse_iperf3(&v)
            .map(|run| calls as f64 / run.sent.saturating_sub(run.lost).max(1) as f64);
    }
    Ok(())
}

impl std::fmt::Display for VersusReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Some(i) = &self.iperf3 else {
            return write!(
                f,
                "interrupted before iperf3's run ended: nothing was measured"
            );
        };
        let none = "not measured (interrupted)".to_string();
        let ours = self.ours_at_iperf3_rate.as_ref();
        writeln!(f, "64-byte UDP datagrams on loopback, one run:")?;
        writeln!(
            f,
            "| | iperf3 -u -b 0 -l 64 | buffer-demo (split sink, recvmmsg) |"
        )?;
        writeln!(f, "|---|---:|---:|")?;
        writeln!(
            f,
            "| offered rate | {:.0}/s | {} |",
            i.offered_rate,
            ours.map_or(none.clone(), |o| format!(
                "{:.0}/s (paced to iperf3's)",
                o.offered_per_s
            ))
        )?;
        writeln!(
            f,
            "| loss at that rate | {:.3} % ({} of {}) | {} |",
            i.lost_percent,
            i.lost,
            i.sent,
            ours.map_or(none.clone(), |o| format!(
                "{:.4} % (residual {})",
                o.lost_percent,
                o.residual.map_or("unknown".into(), |r| r.to_string())
            ))
        )?;
        writeln!(
            f,
            "| delivered / max rate with <= 0.01 % drops | {:.0}/s delivered | {} |",
            i.delivered_rate,
            self.ours_max_loss_free_rate
                .map_or("none".into(), |r| format!(
                    "{r:.0}/s{}",
                    if self.sender_limited {
                        " (sender-limited)"
                    } else {
                        ""
                    }
                ))
        )?;
        writeln!(
            f,
            "| receive syscalls per datagram | {} | {} |",
            self.iperf3_recv_syscalls_per_datagram
                .map_or("not counted".into(), |v| format!("{v:.3} (strace -c)")),
            ours.map_or(none, |o| format!("{:.3}", o.recv_syscalls_per_datagram))
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "| configuration | max rate with <= 0.01 % drops | blaster reached | x iperf3 delivered | limited by | recvmmsg calls per datagram | trials | books closed |"
        )?;
        writeln!(f, "|---|---:|---:|---:|---|---:|---:|---|")?;
        for s in &self.searches {
            writeln!(
                f,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                s.label,
                s.max_loss_free_rate
                    .map_or("none".into(), |r| format!("{r:.0}/s")),
                s.achieved.map_or("-".into(), |a| format!("{a:.0}/s")),
                s.max_loss_free_rate.map_or("-".into(), |r| format!(
                    "{:.2}x",
                    r / i.delivered_rate.max(1.0)
                )),
                s.ceiling,
                s.recv_syscalls_per_datagram
                    .map_or("-".into(), |v| format!("{v:.5}")),
                s.trials,
                if s.all_closed { "yes" } else { "NO" }
            )?;
        }
        writeln!(f)?;
        let best = self
            .searches
            .iter()
            .filter_map(|s| s.max_loss_free_rate)
            .fold(None, |a: Option<f64>, r| Some(a.map_or(r, |a| a.max(r))));
        writeln!(
            f,
            "highest loss-free rate: {} iperf3's delivered rate",
            best.map_or("n/a:".into(), |r| format!(
                "{:.2}x",
                r / i.delivered_rate.max(1.0)
            ))
        )?;
        let gro_calls = self
            .searches
            .iter()
            .filter(|s| s.setup.gro)
            .filter_map(|s| s.recv_syscalls_per_datagram)
            .fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.min(v))));
        if let (Some(ours), Some(theirs)) = (gro_calls, self.iperf3_recv_syscalls_per_datagram) {
            writeln!(
                f,
                "receive syscalls per datagram with GRO: {ours:.5}, iperf3's {theirs:.3} (1/{:.0} of it)",
                theirs / ours.max(1e-9)
            )?;
        }
        if let Some(o) = ours {
            writeln!(
                f,
                "loss at iperf3's rate: ours {:.4} %, iperf3's {:.3} %",
                o.lost_percent, i.lost_percent
            )?;
        }
        if let (Some(o), Some(theirs)) = (ours, self.iperf3_recv_syscalls_per_datagram) {
            writeln!(
                f,
                "receive syscalls per datagram at that rate: ours {:.3}, iperf3's {theirs:.3} (1/{:.0} of it)",
                o.recv_syscalls_per_datagram,
                theirs / o.recv_syscalls_per_datagram.max(1e-9)
            )?;
        }
        if self.interrupted {
            write!(f, "interrupted: only what finished is shown")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn strace_summary() {
        let text = "% time     seconds  usecs/call     calls    errors syscall\n\
------ ----------- ----------- --------- --------- ----------------\n\
 98.00    0.500000           1    400000        12 read\n\
  2.00    0.010000           2      5000           recvfrom\n\
------ ----------- ----------- --------- --------- ----------------\n\
100.00    0.510000           1    405000        12 total\n";
        assert_eq!(parse_strace_calls(text, &["read", "recvfrom"]), 405_000);
    }

    #[test]
    fn iperf3_json() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"end":{"sum_sent":{"packets":1000},"sum_received":{"packets":1000,"lost_packets":20,"lost_percent":2.0,"seconds":2.0}}}"#,
        )
        .unwrap();
        let r = parse_iperf3(&v).unwrap();
        assert_eq!((r.sent, r.lost), (1000, 20));
        assert_eq!(r.offered_rate, 500.0);
        assert_eq!(r.delivered_rate, 490.0);
    }
}
