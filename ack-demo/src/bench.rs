//! The window benchmark: acknowledged messages/s for several windows, on
//! loopback and through a relay adding delay each way, beside an
//! unacknowledged framed stream of the same messages to the same server.
//!
//! Every run is a fresh session against an in-process server whose out file
//! lives in `dir` (real files, real `fdatasync`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use serde::Serialize;

use crate::client::{self, ClientSettings};
use crate::error::Error;
use crate::naive;
use crate::relay::Relay;
use crate::server::{Server, ServerSettings};

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
                "\nrelay ({:.0} ms RTT added): W=32 / W=1 = {x:.1}x (target >= 16x)\n",
                self.added_rtt_ms
            ));
        }
        if let Some(x) = self.loopback_w128_over_unacked {
            s.push_str(&format!(
                "loopback: W=128 acked / unacknowledged stream = {x:.2}x (target >= 0.8x)\n"
            ));
        }
        s
    }
}

/// Runs the benchmark.
///
/// # Errors
/// Starting a server or the relay failed, or a run did not complete.
pub fn run(settings: &BenchSettings) -> Result<BenchReport, Error> {
    let loopback_dir = settings.dir.join("bench-loopback");
    let _ = std::fs::remove_dir_all(&loopback_dir);
    std::fs::create_dir_all(&loopback_dir)
        .map_err(|e| Error::io(format!("creating {}", loopback_dir.display()), e))?;
    let server = Server::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        ServerSettings::new(loopback_dir.join("out.txt")),
    )?;
    let addr = server.local_addr();
    let stop = server.stop_handle();
    let serving = thread::spawn(move || server.run());
    let relay = Relay::start(SocketAddr::from(([127, 0, 0, 1], 0)), addr, settings.delay)
        .map_err(|e| Error::io("starting the relay", e))?;

    let mut rows = Vec::new();
    let mut session = 1000;
    let result = (|| -> Result<(), Error> {
        for (path, target, floor) in [("loopback", addr, 2000), ("relay", relay.local_addr(), 200)]
        {
            for &w in &settings.windows {
                session += 1;
                let messages = (settings.scale * u64::from(w)).max(floor);
                let mut s = ClientSettings::new(target);
                s.count = messages;
                s.size = settings.size;
                s.window = w;
                s.session = session;
                s.heartbeat = Duration::from_secs(2);
                let r = client::run(&s);
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
            }
        }
        // The same messages, unacknowledged, to the same server: the
        // server still processes and syncs them; nobody waits.
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
        Ok(())
    })();
    stop.stop();
    let _ = serving.join();
    result?;

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
    })
}
