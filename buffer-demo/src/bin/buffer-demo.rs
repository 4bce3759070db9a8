//! `buffer-demo`: see why a UDP receiver drops datagrams, and where each went.
//!
//! cargo run --release -p buffer-demo --bin buffer-demo -- sink --bind 127.0.0.1:7200 &
//! cargo run --release -p buffer-demo --bin buffer-demo -- blast --to 127.0.0.1:7200 --rate 300000 --duration 5

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use buffer_demo::{BlastConfig, Mode, SinkConfig};
use clap::{Parser, Subcommand};

/// A UDP sink that does not drop, a paced load generator, and an account of
/// every datagram: delivered, dropped in the application queue, dropped by
/// the kernel at the socket (SO_RXQ_OVFL, /proc/net/udp), or unexplained.
///
/// Start `sink`, then `blast` at it: the sink reports when blast's sentinel
/// (sent after the stream) arrives. `RUST_LOG=debug` shows more.
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Receive one blast stream, then print the account.
    ///
    /// Prints `listening on ADDR` first, a progress line on stderr every
    /// second, and the report (with --json: one JSON object on the last line).
    /// Exits 0 when the account closes (residual 0), 1 otherwise.
    Sink {
        /// Address to bind; port 0 picks one (printed).
        #[arg(long, default_value = "127.0.0.1:7200")]
        bind: SocketAddr,
        /// SO_RCVBUF request in bytes (Linux doubles it, capped at
        /// net.core.rmem_max); default: the system's rmem_default.
        #[arg(long)]
        rcvbuf: Option<usize>,
        /// Use SO_RCVBUFFORCE (needs CAP_NET_ADMIN) to pass rmem_max; the
        /// report says when it was refused.
        #[arg(long)]
        force: bool,
        /// split: a receiver thread drains the socket into a bounded queue,
        /// a processing thread works; inline: the receiving thread does the
        /// work between receive calls.
        #[arg(long, value_enum, default_value_t = Mode::Split)]
        mode: Mode,
        /// CPU work per datagram, microseconds.
        #[arg(long, default_value_t = 0.0)]
        work_us: f64,
        /// Queue capacity in datagrams (split mode).
        #[arg(long, default_value_t = 65536)]
        queue: usize,
        /// Datagrams per recvmmsg call.
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Give up after this many seconds without a sentinel.
        #[arg(long)]
        timeout: Option<f64>,
        /// Progress line interval in seconds (0: none).
        #[arg(long, default_value_t = 1.0)]
        progress: f64,
        /// Create the socket in this existing network namespace (`ip netns add NAME`).
        #[arg(long)]
        netns: Option<String>,
        /// After a receive call returning under half a batch, sleep this many
        /// microseconds so the next call gets more per syscall (only with a
        /// buffer of at least 4 batches x 1 KiB; 0: never).
        #[arg(long, default_value_t = 50)]
        nap_us: u64,
        /// Print the report as one JSON object on the last line.
        #[arg(long)]
        json: bool,
    },
    /// Send a paced stream of numbered datagrams, then the sentinel.
    ///
    /// Datagram k is due at start + k/rate (absolute deadlines: no drift);
    /// batches go out with sendmmsg. After the stream and a drain pause,
    /// 5 sentinel copies carry the number of datagrams sent.
    Blast {
        /// Destination.
        #[arg(long)]
        to: SocketAddr,
        /// Datagrams per second (0: as fast as the kernel takes them).
        #[arg(long, default_value_t = 100_000.0)]
        rate: f64,
        /// Bytes per datagram including the 24-byte header.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Seconds of sending.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// Datagrams per sendmmsg call.
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Pause before the sentinel, milliseconds.
        #[arg(long, default_value_t = 100)]
        drain_ms: u64,
        /// One JSON object on the last line.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    buffer_demo::init_tracing("warn");
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("buffer-demo: {e}");
            ExitCode::from(2)
        }
    }
}

fn print_json(value: &impl serde::Serialize) -> buffer_demo::Result<()> {
    let line =
        serde_json::to_string(value).map_err(|e| buffer_demo::Error::Config(e.to_string()))?;
    println!("{line}");
    Ok(())
}

fn run(cmd: Cmd) -> buffer_demo::Result<ExitCode> {
    match cmd {
        Cmd::Sink {
            bind,
            rcvbuf,
            force,
            mode,
            work_us,
            queue,
            batch,
            timeout,
            progress,
            netns,
            nap_us,
            json,
        } => {
            let sink = buffer_demo::Sink::bind(SinkConfig {
                bind,
                rcvbuf,
                force,
                mode,
                work_us,
                queue,
                batch,
                progress: (progress > 0.0).then(|| Duration::from_secs_f64(progress)),
                timeout: timeout.map(Duration::from_secs_f64),
                netns,
                nap: Duration::from_micros(nap_us),
                ..SinkConfig::default()
            })?;
            println!("listening on {}", sink.local_addr());
            println!("{}", sink.rcvbuf());
            let report = sink.run()?;
            println!("{report}");
            if json {
                print_json(&report)?;
            }
            Ok(if report.ledger.closes() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::Blast {
            to,
            rate,
            size,
            duration,
            batch,
            drain_ms,
            json,
        } => {
            let report = buffer_demo::blast(&BlastConfig {
                to,
                rate,
                size,
                duration: Duration::from_secs_f64(duration),
                batch,
                drain: Duration::from_millis(drain_ms),
                ..BlastConfig::default()
            })?;
            println!("{report}");
            if json {
                print_json(&report)?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
