//! `buffer-demo`: see why a UDP receiver drops datagrams, and where each went.
//!
//! cargo run --release -p buffer-demo --bin buffer-demo -- sink --bind 127.0.0.1:7200 &
//! cargo run --release -p buffer-demo --bin buffer-demo -- blast --to 127.0.0.1:7200 --rate 300000 --duration 5

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use buffer_demo::account::Expect;
use buffer_demo::netns::Netns;
use buffer_demo::sweep::SweepConfig;
use buffer_demo::{BlastConfig, Error, Mode, SinkConfig, Stop};
use clap::builder::RangedU64ValueParser;
use clap::{Parser, Subcommand};
use cli_values::{float_in, seconds};

/// Exit code after SIGINT/SIGTERM, once the report is printed.
const INTERRUPTED: u8 = 130;

/// A stream nonce as `blast` prints it: 16 hex digits, `0x` allowed.
fn nonce(s: &str) -> Result<u64, String> {
    let t = s.strip_prefix("0x").unwrap_or(s);
    if t.len() != 16 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "expected a stream nonce of 16 hex digits (as blast prints it), got {s:?}"
        ));
    }
    u64::from_str_radix(t, 16).map_err(|e| e.to_string())
}

/// A receive buffer request, bytes (the kernel doubles it into a C int).
fn rcvbuf_bytes() -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::<usize>::new().range(1..=1 << 30)
}

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
        #[arg(long, value_parser = rcvbuf_bytes())]
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
        /// CPU work per datagram, microseconds (up to 1 s).
        #[arg(long, default_value_t = 0.0,
              value_parser = float_in(0.0, buffer_demo::sink::MAX_WORK_US, "microseconds of work"))]
        work_us: f64,
        /// Queue capacity in datagrams (split mode), up to 16 M.
        #[arg(long, default_value_t = 65536,
              value_parser = RangedU64ValueParser::<usize>::new().range(1..=buffer_demo::sink::MAX_QUEUE as u64))]
        queue: usize,
        /// Buffers per recvmmsg call (1..=1024); with --gro each buffer may
        /// hold a whole GSO message.
        #[arg(long, default_value_t = 32,
              value_parser = RangedU64ValueParser::<usize>::new().range(1..=buffer_demo::sink::MAX_BATCH as u64))]
        batch: usize,
        /// UDP_GRO on the socket(s): a GSO message (blast --gso) arrives as
        /// one buffer, split here by its segment size; the kernel then
        /// counts drops per message and the account converts them.
        #[arg(long)]
        gro: bool,
        /// Receiver threads, each with its own SO_REUSEPORT socket on the
        /// address (a BPF program spreads the stream by seq) and its own
        /// queue to the processing thread (1..=64).
        #[arg(long, default_value_t = 1,
              value_parser = RangedU64ValueParser::<usize>::new().range(1..=buffer_demo::sink::MAX_RECEIVERS as u64))]
        receivers: usize,
        /// Give up after this long without a sentinel (seconds, or 250ms, 2m; up to a day).
        #[arg(long, value_parser = seconds(0.001, 86_400.0))]
        timeout: Option<Duration>,
        /// Progress line interval (seconds, or 500ms; 0: none).
        #[arg(long, default_value = "1", value_parser = seconds(0.0, 3600.0))]
        progress: Duration,
        /// Create the socket in this existing network namespace (`ip netns add NAME`).
        #[arg(long)]
        netns: Option<String>,
        /// After a receive call returning under half a batch, sleep this many
        /// microseconds so the next call gets more per syscall (only with a
        /// buffer of at least 4 batches x 1 KiB; 0: never).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
        nap_us: u64,
        /// Count only the stream with this nonce (16 hex digits, as blast
        /// prints it); default: the nonce of the first data datagram.
        #[arg(long, value_parser = nonce)]
        nonce: Option<u64>,
        /// Count only datagrams from this address; default: the source of
        /// the first data datagram. Anything else is foreign: it can
        /// neither add to the stream nor close it.
        #[arg(long)]
        from: Option<SocketAddr>,
        /// Print the report as one JSON object on the last line.
        #[arg(long)]
        json: bool,
    },
    /// Send a paced stream of numbered datagrams, then the sentinel.
    ///
    /// Datagram k is due at start + k/rate (absolute deadlines: no drift);
    /// batches go out with sendmmsg. After the stream and a drain pause,
    /// 5 sentinel copies carry the number of datagrams sent. Every datagram
    /// carries a nonce drawn for this run, which (with our source address)
    /// is the only thing a sink takes a sentinel from. A sender that cannot
    /// keep up with --rate stops shortly after --duration all the same, and
    /// says so.
    Blast {
        /// Destination.
        #[arg(long)]
        to: SocketAddr,
        /// Datagrams per second, up to 50 M (0: as fast as the kernel takes them).
        #[arg(long, default_value_t = 100_000.0,
              value_parser = float_in(0.0, buffer_demo::loadgen::MAX_RATE, "datagrams per second"))]
        rate: f64,
        /// Bytes per datagram including the 32-byte header (32..=9216).
        #[arg(long, default_value_t = 64,
              value_parser = RangedU64ValueParser::<usize>::new()
                  .range(buffer_demo::wire::HEADER_LEN as u64..=buffer_demo::mmsg::SLOT as u64))]
        size: usize,
        /// How long to send (seconds, or 500ms, 2m; up to a day).
        #[arg(long, default_value = "5", value_parser = seconds(0.001, 86_400.0))]
        duration: Duration,
        /// Messages per sendmmsg call (1..=1024); each message is one
        /// datagram, or --gso datagrams.
        #[arg(long, default_value_t = 32,
              value_parser = RangedU64ValueParser::<usize>::new().range(1..=buffer_demo::loadgen::MAX_BATCH as u64))]
        batch: usize,
        /// UDP GSO: datagrams per message (UDP_SEGMENT), split by the
        /// kernel (1: no GSO; up to 64, and 65507 bytes a message).
        #[arg(long, default_value_t = 1,
              value_parser = RangedU64ValueParser::<usize>::new().range(1..=buffer_demo::mmsg::MAX_GSO_SEGMENTS as u64))]
        gso: usize,
        /// Sending threads, sharing one socket (one stream, one source).
        #[arg(long, default_value_t = 1,
              value_parser = RangedU64ValueParser::<usize>::new().range(1..=buffer_demo::loadgen::MAX_THREADS as u64))]
        threads: usize,
        /// Pause before the sentinel, milliseconds (up to 60000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=60_000))]
        drain_ms: u64,
        /// Use this stream nonce (16 hex digits) instead of a random one,
        /// e.g. to tell it to `sink --nonce` in advance.
        #[arg(long, value_parser = nonce)]
        nonce: Option<u64>,
        /// One JSON object on the last line.
        #[arg(long)]
        json: bool,
    },
    /// Sink + blast in-process for every configuration (inline/split x
    /// SO_RCVBUF 8 KiB/default/4 MiB x batch 1/32, then split 4 MiB fed by
    /// 2 threads with GSO 32: plain, GRO, GRO on 2 receivers) at a grid of
    /// rates, then a search for each one's highest rate with at most
    /// 0.01 % drops; every trial says which side limited it.
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
        /// CPU work per datagram, microseconds (up to 1 s).
        #[arg(long, default_value_t = 1.0,
              value_parser = float_in(0.0, buffer_demo::sink::MAX_WORK_US, "microseconds of work"))]
        work_us: f64,
        /// Sending time per trial (seconds, or 300ms; up to 600).
        #[arg(long, default_value = "1", value_parser = seconds(0.01, buffer_demo::sweep::MAX_TRIAL_SECS))]
        secs: Duration,
        /// Only the tour's short grid (inline/split x 8 KiB/4 MiB, 3 rates, no search).
        #[arg(long)]
        short: bool,
        /// One JSON object (the whole table) on the last line.
        #[arg(long)]
        json: bool,
    },
    /// iperf3 -u -b 0 -l 64, then our blast at its offered rate into our
    /// split sink, a search for our highest loss-free rate (plain; and
    /// 2 sending threads with GSO 32 into a GRO sink on 1 and 2 receivers),
    /// and (with strace) receive syscalls per datagram: printed side by
    /// side with the targets. Needs iperf3 (and strace).
    VersusIperf3 {
        /// Whole seconds for iperf3 and for our run at its rate (1..=3600).
        #[arg(long, default_value_t = 5,
              value_parser = clap::value_parser!(u64).range(1..=buffer_demo::versus::MAX_SECS))]
        secs: u64,
        /// Length of each trial of our rate search (seconds, or 500ms; up to 600).
        #[arg(long, default_value = "2", value_parser = seconds(0.01, buffer_demo::sweep::MAX_TRIAL_SECS))]
        search_secs: Duration,
        /// Do not count iperf3's syscalls with strace.
        #[arg(long)]
        no_strace: bool,
        /// Our sink's SO_RCVBUF request in bytes.
        #[arg(long, default_value_t = 4 << 20, value_parser = rcvbuf_bytes())]
        rcvbuf: usize,
        /// One JSON object on the last line.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    buffer_demo::init_tracing("warn");
    let cli = Cli::parse();
    let stop = match Stop::on_signals() {
        Ok(stop) => stop,
        Err(e) => {
            eprintln!("buffer-demo: {e}");
            return ExitCode::from(1);
        }
    };
    match run(cli.command, &stop) {
        Ok(code) => code,
        Err(Error::Interrupted { what }) => {
            eprintln!("buffer-demo: interrupted before {what} finished; no report");
            ExitCode::from(INTERRUPTED)
        }
        Err(e @ (Error::Config(_) | Error::DatagramSize { .. })) => {
            eprintln!("buffer-demo: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("buffer-demo: {e}");
            ExitCode::from(1)
        }
    }
}

fn print_json(value: &impl serde::Serialize) -> buffer_demo::Result<()> {
    let line =
        serde_json::to_string(value).map_err(|e| buffer_demo::Error::Config(e.to_string()))?;
    println!("{line}");
    Ok(())
}

fn run(cmd: Cmd, stop: &Stop) -> buffer_demo::Result<ExitCode> {
    match cmd {
        Cmd::Sink {
            bind,
            rcvbuf,
            force,
            mode,
            work_us,
            queue,
            batch,
            gro,
            receivers,
            timeout,
            progress,
            netns,
            nap_us,
            nonce,
            from,
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
                gro,
                receivers,
                progress: (!progress.is_zero()).then_some(progress),
                timeout,
                netns,
                nap: Duration::from_micros(nap_us),
                expect: Expect {
                    nonce,
                    source: from,
                },
                stop: stop.clone(),
                ..SinkConfig::default()
            })?;
            println!("listening on {}", sink.local_addr());
            println!("{}", sink.rcvbuf());
            let report = sink.run()?;
            println!("{report}");
            if json {
                print_json(&report)?;
            }
            Ok(if report.interrupted {
                ExitCode::from(INTERRUPTED)
            } else if report.ledger.closes() {
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
            gso,
            threads,
            drain_ms,
            nonce,
            json,
        } => {
            let report = buffer_demo::blast(&BlastConfig {
                to,
                rate,
                size,
                duration,
                batch,
                gso,
                threads,
                drain: Duration::from_millis(drain_ms),
                nonce,
                stop: stop.clone(),
                ..BlastConfig::default()
            })?;
            println!("{report}");
            if json {
                print_json(&report)?;
            }
            Ok(if report.interrupted {
                ExitCode::from(INTERRUPTED)
            } else {
                ExitCode::SUCCESS
            })
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
            cfg.secs = secs.as_secs_f64();
            cfg.stop = stop.clone();
            // Made here, not in the library, to say its name before the
            // trials; dropped (deleted) when this arm ends, however it ends.
            let ns = if netns {
                let ns = Netns::create(tbf.as_deref())?;
                eprintln!(
                    "namespace {} (veth {} {} -> sink {})",
                    ns.name(),
                    ns.host_if(),
                    ns.host_addr(),
                    ns.sink_addr(0).ip()
                );
                Some(ns)
            } else {
                None
            };
            let table = buffer_demo::sweep::sweep_in(&cfg, ns.as_ref(), |t| {
                eprintln!(
                    "{:<32} offered {:>8.0}/s achieved {:>8.0}/s drops {:>9.5} % (queue {}, kernel {}), residual {}, limited by {}",
                    t.label,
                    t.offered,
                    t.achieved,
                    t.drop_fraction * 100.0,
                    t.queue_dropped,
                    t.kernel_dropped,
                    t.residual.map_or("unknown".into(), |r| r.to_string()),
                    t.limited_by
                )
            })?;
            drop(ns);
            if !table.trials.is_empty() {
                table.write_outputs(&out)?;
            }
            println!("{table}");
            if !table.trials.is_empty() {
                println!(
                    "wrote {}/results.csv, results.md, drops.svg, drops.png",
                    out.display()
                );
            }
            if json {
                print_json(&table)?;
            }
            let closed = table.trials.iter().all(|t| t.residual == Some(0));
            Ok(if table.interrupted {
                ExitCode::from(INTERRUPTED)
            } else if closed {
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
                setups: buffer_demo::versus::default_setups(),
                stop: stop.clone(),
            })?;
            println!("{report}");
            if json {
                print_json(&report)?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn every_numeric_flag_refuses_hostile_values() {
        cli_values::assert_numeric_flags_refuse_hostile_values(&Cli::command());
    }

    #[test]
    fn nonce_takes_sixteen_hex_digits() {
        assert_eq!(nonce("00000000cafef00d"), Ok(0xcafe_f00d));
        assert_eq!(nonce("0xffffffffffffffff"), Ok(u64::MAX));
        assert!(nonce("1e30").is_err());
        assert!(nonce("cafef00d").is_err());
        assert!(nonce("000000000000000g").is_err());
    }
}
