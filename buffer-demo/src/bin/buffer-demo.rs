//! `buffer-demo`: see why a UDP receiver drops datagrams, and where each went.
//!
//! cargo run --release -p buffer-demo --bin buffer-demo -- sink --bind 127.0.0.1:7200 &
//! cargo run --release -p buffer-demo --bin buffer-demo -- blast --to 127.0.0.1:7200 --rate 300000 --duration 5

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use buffer_demo::sweep::SweepConfig;
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
    /// Sink + blast in-process for every configuration (inline/split x
    /// SO_RCVBUF 8 KiB/default/4 MiB x batch 1/32) at a grid of rates, then
    /// a search for each one's highest rate with at most 0.01 % drops.
    ///
    /// Writes DIR/results.csv, DIR/results.md, DIR/drops.svg and
    /// DIR/drops.png (the chart needs the fonts-dejavu-core package or
    /// BUFFER_DEMO_FONT=path.ttf). Takes a few minutes.
    Sweep {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Run the sink in its own network namespace behind a veth pair
        /// (root only), so that `Udp: RcvbufErrors` is its own.
        #[arg(long)]
        netns: bool,
        /// With --netns: a tbf rate limit on the host side (a tc rate, e.g. 200mbit).
        #[arg(long, requires = "netns")]
        tbf: Option<String>,
        /// CPU work per datagram, microseconds.
        #[arg(long, default_value_t = 1.0)]
        work_us: f64,
        /// Seconds of sending per trial.
        #[arg(long, default_value_t = 1.0)]
        secs: f64,
        /// Only the tour's short grid (inline/split x 8 KiB/4 MiB, 3 rates, no search).
        #[arg(long)]
        short: bool,
        /// One JSON object (the whole table) on the last line.
        #[arg(long)]
        json: bool,
    },
    /// iperf3 -u -b 0 -l 64, then our blast at its offered rate into our
    /// split sink, a search for our highest loss-free rate, and (with
    /// strace) receive syscalls per datagram: printed side by side with the
    /// targets. Needs iperf3 (and strace).
    VersusIperf3 {
        /// Seconds for iperf3 and for our run at its rate.
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
        /// Seconds per trial of our rate search.
        #[arg(long, default_value_t = 2.0)]
        search_secs: f64,
        /// Do not count iperf3's syscalls with strace.
        #[arg(long)]
        no_strace: bool,
        /// Our sink's SO_RCVBUF request in bytes.
        #[arg(long, default_value_t = 4 << 20)]
        rcvbuf: usize,
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
        Cmd::Sweep {
            out,
            netns,
            tbf,
            work_us,
            secs,
            short,
            json,
        } => {
            let mut cfg = SweepConfig::full(work_us);
            if short {
                let quick = buffer_demo::sweep::short_sweep_config();
                cfg.setups = quick.setups;
                cfg.grid = quick.grid;
                cfg.search = false;
            }
            cfg.secs = secs;
            cfg.netns = netns;
            cfg.tbf = tbf;
            let table = buffer_demo::sweep::sweep(&cfg, |t| {
                eprintln!(
                    "{:<32} offered {:>8.0}/s achieved {:>8.0}/s drops {:>9.5} % (queue {}, kernel {}), residual {}",
                    t.label,
                    t.offered,
                    t.achieved,
                    t.drop_fraction * 100.0,
                    t.queue_dropped,
                    t.kernel_dropped,
                    t.residual.map_or("unknown".into(), |r| r.to_string())
                )
            })?;
            table.write_outputs(&out)?;
            println!("{table}");
            println!(
                "wrote {}/results.csv, results.md, drops.svg, drops.png",
                out.display()
            );
            if json {
                print_json(&table)?;
            }
            let closed = table.trials.iter().all(|t| t.residual == Some(0));
            Ok(if closed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::VersusIperf3 {
            secs,
            search_secs,
            no_strace,
            rcvbuf,
            json,
        } => {
            let report = buffer_demo::versus::versus_iperf3(&buffer_demo::versus::VersusConfig {
                secs,
                search_secs,
                strace: !no_strace,
                rcvbuf: Some(rcvbuf),
            })?;
            println!("{report}");
            if json {
                print_json(&report)?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
