//! `versus-iperf3`: iperf3's UDP receiver and ours, measured in one run.
//!
//! 1. `iperf3 -u -b 0 -l 64` on loopback: its offered rate, its receiver's
//!    delivered rate and its reported loss.
//! 2. Our blast at iperf3's offered rate into our split sink: our loss.
//! 3. A [`RateSearch`] for the highest rate our split sink takes with at
//!    most 0.01 % drops.
//! 4. Optionally (`strace`), receive syscalls per datagram: iperf3's server
//!    under `strace -f -c` (a separate, slower run) against our sink's own
//!    count of `recvmmsg` calls.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::loadgen::{BlastConfig, blast};
use crate::sink::{Mode, Sink, SinkConfig};
use crate::sweep::{LOSS_FREE, RateSearch, SinkSetup, run_trial};

/// How to compare.
#[derive(Debug, Clone)]
pub struct VersusConfig {
    /// Seconds for iperf3 and for our run at its rate.
    pub secs: f64,
    /// Seconds per search trial.
    pub search_secs: f64,
    /// Count iperf3's receive syscalls with strace (a separate run).
    pub strace: bool,
    /// Our sink's receive buffer request.
    pub rcvbuf: Option<usize>,
}

impl Default for VersusConfig {
    fn default() -> VersusConfig {
        VersusConfig {
            secs: 5.0,
            search_secs: 2.0,
            strace: true,
            rcvbuf: Some(4 << 20),
        }
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
    pub secs: f64,
    /// sent / secs.
    pub offered_rate: f64,
    /// (sent - lost) / secs.
    pub delivered_rate: f64,
}

/// The comparison.
#[derive(Debug, Clone, Serialize)]
pub struct VersusReport {
    /// iperf3's run.
    pub iperf3: Iperf3Run,
    /// Our blast's achieved rate at iperf3's offered rate.
    pub ours_offered_rate: f64,
    /// Datagrams our blast sent.
    pub ours_sent: u64,
    /// Our loss at that rate, percent.
    pub ours_lost_percent: f64,
    /// Our account closed.
    pub ours_residual: Option<i64>,
    /// Our datagrams per receive call in that run.
    pub ours_datagrams_per_call: f64,
    /// Our highest rate with at most 0.01 % drops.
    pub ours_max_loss_free_rate: Option<f64>,
    /// The search stopped at the sender's limit.
    pub sender_limited: bool,
    /// iperf3 server's receive syscalls per datagram (strace), if counted.
    pub iperf3_recv_syscalls_per_datagram: Option<f64>,
    /// Ours.
    pub ours_recv_syscalls_per_datagram: f64,
    /// Our SO_RCVBUF request.
    pub rcvbuf: Option<usize>,
}

fn command_error(cmd: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::Command {
        command: cmd.to_string(),
        detail: e.to_string(),
    }
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(Error::io("bind a probe port"))?;
    Ok(l.local_addr().map_err(Error::io("probe port"))?.port())
}

/// Runs an iperf3 server (once, `-1`) with `prefix` before it, waits for
/// "Server listening", then the UDP client. Returns the client's JSON.
fn iperf3_pair(prefix: &[&str], secs: f64) -> Result<serde_json::Value> {
    let port = free_port()?.to_string();
    let mut args: Vec<&str> = prefix.to_vec();
    args.extend([
        "iperf3",
        "-s",
        "-1",
        "--forceflush",
        "-p",
        &port,
        "-B",
        "127.0.0.1",
    ]);
    let line = args.join(" ");
    let mut server = Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(command_error(&line))?;
    // A reader thread signals "Server listening", then drains the rest so
    // the server never blocks on a full pipe.
    let out = BufReader::new(server.stdout.take().expect("piped"));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        for text in out.lines() {
            let Ok(text) = text else { break };
            if text.contains("Server listening") {
                let _ = ready_tx.send(());
            }
        }
    });
    if ready_rx.recv_timeout(Duration::from_secs(20)).is_err() {
        let _ = server.kill();
        let _ = server.wait();
        return Err(Error::Command {
            command: line,
            detail: "did not say \"Server listening\" within 20 s".into(),
        });
    }
    let t = format!("{secs}");
    let client_args = [
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
    let client_line = format!("iperf3 {}", client_args.join(" "));
    let client = Command::new("iperf3")
        .args(client_args)
        .output()
        .map_err(command_error(&client_line))?;
    let _ = server.wait();
    serde_json::from_slice(&client.stdout).map_err(|e| Error::Command {
        command: client_line,
        detail: format!("{}: {e}", client.status),
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

/// Runs the comparison. Needs `iperf3` (and `strace` when asked).
pub fn versus_iperf3(cfg: &VersusConfig) -> Result<VersusReport> {
    let v = iperf3_pair(&[], cfg.secs)?;
    let iperf3 = parse_iperf3(&v).ok_or_else(|| Error::Command {
        command: "iperf3 -c ... --json".into(),
        detail: "no end.sum_received / sum_sent in its JSON".into(),
    })?;
    tracing::info!(?iperf3, "iperf3 done");

    let sink = Sink::bind(SinkConfig {
        rcvbuf: cfg.rcvbuf,
        mode: Mode::Split,
        timeout: Some(Duration::from_secs_f64(cfg.secs + 30.0)),
        ..SinkConfig::default()
    })?;
    let to = sink.local_addr();
    let (r, b) = std::thread::scope(|s| {
        let h = s.spawn(move || sink.run());
        let b = blast(&BlastConfig {
            to,
            rate: iperf3.offered_rate,
            size: 64,
            duration: Duration::from_secs_f64(cfg.secs),
            ..BlastConfig::default()
        });
        (h.join().expect("sink thread panicked"), b)
    });
    let (r, b) = (r?, b?);

    let setup = SinkSetup {
        mode: Mode::Split,
        rcvbuf: cfg.rcvbuf,
        batch: 32,
    };
    let mut search = RateSearch::new(iperf3.delivered_rate, 10_000.0, 4_000_000.0, 0.05, 8);
    while let Some(rate) = search.next_rate() {
        let t = run_trial(setup, 0.0, rate, cfg.search_secs, 64, None)?;
        tracing::info!(rate, drops = t.drop_fraction, "search trial");
        search.record(t.offered, t.achieved, t.drop_fraction <= LOSS_FREE);
    }

    let iperf3_calls = if cfg.strace {
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
            cfg.secs.min(2.0),
        )?;
        let text = std::fs::read_to_string(&file).map_err(Error::io(format!("read {f}")))?;
        let _ = std::fs::remove_file(&file);
        let calls = parse_strace_calls(&text, &["read", "recv", "recvfrom", "recvmsg", "recvmmsg"]);
        parse_iperf3(&v).map(|run| calls as f64 / run.sent.saturating_sub(run.lost).max(1) as f64)
    } else {
        None
    };
    let l = &r.ledger;
    Ok(VersusReport {
        ours_offered_rate: b.achieved_rate,
        ours_sent: b.sent,
        ours_lost_percent: l.drop_fraction().unwrap_or(1.0) * 100.0,
        ours_residual: l.residual,
        ours_datagrams_per_call: r.datagrams_per_call,
        ours_recv_syscalls_per_datagram: if r.ledger.received == 0 {
            0.0
        } else {
            r.recv_calls as f64 / r.ledger.received as f64
        },
        ours_max_loss_free_rate: search.best(),
        sender_limited: search.sender_limited(),
        iperf3_recv_syscalls_per_datagram: iperf3_calls,
        rcvbuf: cfg.rcvbuf,
        iperf3,
    })
}

impl std::fmt::Display for VersusReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = &self.iperf3;
        writeln!(f, "64-byte UDP datagrams on loopback, one run:")?;
        writeln!(
            f,
            "| | iperf3 -u -b 0 -l 64 | buffer-demo (split sink, recvmmsg) |"
        )?;
        writeln!(f, "|---|---:|---:|")?;
        writeln!(
            f,
            "| offered rate | {:.0}/s | {:.0}/s (paced to iperf3's) |",
            i.offered_rate, self.ours_offered_rate
        )?;
        writeln!(
            f,
            "| loss at that rate | {:.3} % ({} of {}) | {:.4} % (residual {}) |",
            i.lost_percent,
            i.lost,
            i.sent,
            self.ours_lost_percent,
            self.ours_residual
                .map_or("unknown".into(), |r| r.to_string())
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
            "| receive syscalls per datagram | {} | {:.3} |",
            self.iperf3_recv_syscalls_per_datagram
                .map_or("not counted".into(), |v| format!("{v:.3} (strace -c)")),
            self.ours_recv_syscalls_per_datagram
        )?;
        writeln!(f)?;
        let ratio = self
            .ours_max_loss_free_rate
            .map(|r| r / i.delivered_rate.max(1.0));
        writeln!(
            f,
            "target: max loss-free rate >= 1.5x iperf3's delivered rate: {} ({})",
            ratio.map_or("n/a".into(), |r| format!("{r:.2}x")),
            verdict(ratio.is_some_and(|r| r >= 1.5))
        )?;
        writeln!(
            f,
            "target: loss at iperf3's rate <= half of iperf3's: {:.4} % vs {:.3} % ({})",
            self.ours_lost_percent,
            i.lost_percent,
            verdict(self.ours_lost_percent <= i.lost_percent / 2.0)
        )?;
        match self.iperf3_recv_syscalls_per_datagram {
            Some(theirs) => write!(
                f,
                "target: receive syscalls per datagram <= 1/16 of iperf3's: {:.3} vs {:.3} = 1/{:.0} ({})",
                self.ours_recv_syscalls_per_datagram,
                theirs,
                theirs / self.ours_recv_syscalls_per_datagram.max(1e-9),
                verdict(self.ours_recv_syscalls_per_datagram <= theirs / 16.0)
            ),
            None => write!(f, "target: syscalls per datagram not measured (no strace)"),
        }
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
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
