//! `buffer-demo`: see why a UDP receiver drops datagrams, and where each went.
//!
//! cargo run --release -p buffer-demo-cli -- sink --listen 127.0.0.1:7200 &
//! cargo run --release -p buffer-demo-cli -- blast --connect localhost:7200 --rate 300000 --duration 5
//!
//! The program only: what it runs is the `buffer-demo` library (`..`).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use buffer_demo::account::Expect;
use buffer_demo::netns::Netns;
use buffer_demo::sweep::SweepConfig;
use buffer_demo::wire::HEADER_LEN;
use buffer_demo::{BlastConfig, Error, Mode, SinkConfig, Stop};
use clap::builder::RangedU64ValueParser;
use clap::{Parser, Subcommand, ValueEnum};
use cli_conventions::{Interrupt, Program, exit, json};
use cli_values::{float_in, seconds};

/// The identity every JSON document of this program starts with.
const PROGRAM: Program = cli_conventions::program!("buffer-demo", 1);

/// What `--version` says: the version and what the program is for.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    ": why a UDP receiver drops datagrams under load, and where each one went"
);

/// The largest `blast --size`: a datagram fills one receive slot.
const MAX_PAYLOAD: usize = buffer_demo::mmsg::SLOT - HEADER_LEN;

/// `HOST:PORT`, the host a name (`localhost:7200`) or an address
/// (`127.0.0.1:7200`, `[::1]:7200`): [`cli_values::socket_addr`].
fn address(s: &str) -> Result<SocketAddr, String> {
    cli_values::socket_addr(s)
}

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

/// `sink --mode`: the library's [`Mode`], as the flag names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ModeFlag {
    /// Receiver thread + processing thread joined by a bounded queue.
    Split,
    /// Work done in the receiving thread (the design that drops).
    Inline,
}

impl From<ModeFlag> for Mode {
    fn from(m: ModeFlag) -> Mode {
        match m {
            ModeFlag::Split => Mode::Split,
            ModeFlag::Inline => Mode::Inline,
        }
    }
}

/// buffer-demo: why a UDP receiver drops datagrams under load, and where each one went.
///
/// A UDP sink that does not drop, a paced load generator, and an account of
/// every datagram: delivered, dropped in the application queue, dropped by
/// the kernel at the socket (SO_RXQ_OVFL, /proc/net/udp), or unexplained.
///
/// Start `sink`, then `blast` at it: the sink reports when blast's sentinel
/// (sent after the stream) arrives. With --json, stdout carries one JSON
/// document and everything else goes to stderr. Exit codes: 0 the run did
/// what was asked (the books close), 1 it did not, 2 usage or
/// configuration error, 130 interrupted (after the report). `RUST_LOG=debug`
/// shows more.
#[derive(Parser)]
#[command(name = "buffer-demo", version = VERSION)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Receive one blast stream, then print the account.
    ///
    /// Prints `listening on ADDR` first (on stderr with --json), a progress
    /// line on stderr every second, and the report (with --json: one JSON
    /// document on stdout). Exits 0 when the account closes (residual 0), 1
    /// otherwise, 130 after Ctrl-C (with the report of what arrived).
    Sink {
        /// Address to listen on (HOST:PORT, `localhost:7200` works); port 0
        /// picks one (printed).
        #[arg(long = "listen", alias = "bind", default_value = "127.0.0.1:7200", value_parser = address)]
        listen: SocketAddr,
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
        #[arg(long, value_enum, default_value_t = ModeFlag::Split)]
        mode: ModeFlag,
        /// CPU work per datagram, microseconds (up to 1 s).
        #[arg(long, default_value_t = 0.0,
              value_parser = float_in(0.0, buffer_demo::sink::MAX_WORK_US, "microseconds of work"))]
        work_us: f64,
        /// Queue capacity in datagrams (split mode), up to 16 M.
        #[arg(long, default_value_t = 65536,
              value_parser = RangedU64ValueParser::<usize>::new().range(1..=buffer_demo::sink::MAX_QUEUE as u64))]
        queue: usize,
        /// Buffers per recvmmsg call (1 to 1024); with --gro each buffer may
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
        /// queue to the processing thread (1 to 64).
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
        /// Count only datagrams from this address (HOST:PORT); default: the
        /// source of the first data datagram. Anything else is foreign: it
        /// can neither add to the stream nor close it.
        #[arg(long, value_parser = address)]
        from: Option<SocketAddr>,
        /// Print the report as one JSON document on stdout (the text goes to stderr).
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
    /// keep up with --rate stops at --duration all the same: it says so
    /// while it runs ("fell behind"), reports the rate it reached against
    /// the rate asked, and exits 1. A run over 2 s shows the rate it
    /// reaches every second on stderr.
    Blast {
        /// Where to send (HOST:PORT, `localhost:7200` works).
        #[arg(long = "connect", alias = "to", value_parser = address)]
        connect: SocketAddr,
        /// Datagrams per second, up to 50 M (0: as fast as the kernel takes them).
        #[arg(long, default_value_t = 100_000.0,
              value_parser = float_in(0.0, buffer_demo::loadgen::MAX_RATE, "datagrams per second"))]
        rate: f64,
        /// Payload bytes per datagram, after the 32-byte header (0 to 9184;
        /// the report gives the whole datagram as datagram_bytes).
        #[arg(long, default_value_t = 32,
              value_parser = RangedU64ValueParser::<usize>::new().range(0..=MAX_PAYLOAD as u64))]
        size: usize,
        /// How long to send (seconds, or 500ms, 2m; up to a day).
        #[arg(long, default_value = "5", value_parser = seconds(0.001, 86_400.0))]
        duration: Duration,
        /// Messages per sendmmsg call (1 to 1024); each message is one
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
        /// Print the report as one JSON document on stdout (the text goes to stderr).
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
    /// BUFFER_DEMO_FONT=path.ttf). Takes a few minutes: each trial is
    /// printed on stderr as it ends, with N of M and the time left.
    /// Ctrl-C ends it after the trial under way, with the table of the
    /// trials that finished.
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
        #[arg(long = "trial-duration", aliases = ["duration", "secs"], default_value = "1",
              value_parser = seconds(0.01, buffer_demo::sweep::MAX_TRIAL_SECS))]
        trial_duration: Duration,
        /// Only the tour's short grid (inline/split x 8 KiB/4 MiB, 3 rates, no search).
        #[arg(long)]
        short: bool,
        /// Print the whole table as one JSON document on stdout (the text goes to stderr).
        #[arg(long)]
        json: bool,
    },
    /// iperf3 -u -b 0 -l 64, then our blast at its offered rate into our
    /// split sink, a search for our highest loss-free rate (plain; and
    /// 2 sending threads with GSO 32 into a GRO sink on 1 and 2 receivers),
    /// and (with strace) receive syscalls per datagram, printed
    /// side by side. Needs iperf3 (and strace). Ctrl-C ends it with the
    /// report of what was measured.
    VersusIperf3 {
        /// Whole seconds for iperf3 and for our run at its rate (1 to 3600).
        #[arg(long = "duration", alias = "secs", default_value_t = 5,
              value_parser = clap::value_parser!(u64).range(1..=buffer_demo::versus::MAX_SECS))]
        duration: u64,
        /// Length of each trial of our rate search (seconds, or 500ms; up to 600).
        #[arg(long = "trial-duration", alias = "search-secs", default_value = "2",
              value_parser = seconds(0.01, buffer_demo::sweep::MAX_TRIAL_SECS))]
        trial_duration: Duration,
        /// Do not count iperf3's syscalls with strace.
        #[arg(long)]
        no_strace: bool,
        /// Our sink's SO_RCVBUF request in bytes.
        #[arg(long, default_value_t = 4 << 20, value_parser = rcvbuf_bytes())]
        rcvbuf: usize,
        /// Print the report as one JSON document on stdout (the text goes to stderr).
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    cli_conventions::init_logs("warn");
    let cli = Cli::parse();
    let interrupt = match Interrupt::install() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("buffer-demo: cannot catch SIGINT/SIGTERM: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    // The library's run loops look at the interrupt's own flag.
    let stop = Stop::from(interrupt.flag());
    match run(cli.command, &stop) {
        Ok(code) => code,
        Err(Error::Interrupted { what }) => {
            eprintln!("buffer-demo: interrupted before {what} started");
            ExitCode::from(exit::INTERRUPTED)
        }
        Err(e) if e.is_usage() => {
            eprintln!("buffer-demo: {e}");
            ExitCode::from(exit::USAGE)
        }
        Err(e) => {
            eprintln!("buffer-demo: {e}");
            ExitCode::from(exit::FAILED)
        }
    }
}

/// Where the human text goes: stdout, or stderr when stdout carries the
/// JSON document.
struct Out {
    json: bool,
}

impl Out {
    /// Prints text for people.
    fn say(&self, text: impl std::fmt::Display) {
        if self.json {
            eprintln!("{text}");
        } else {
            println!("{text}");
            let _ = std::io::stdout().flush();
        }
    }

    /// With --json, prints `report` as the run's one JSON document.
    fn document(&self, report: &impl serde::Serialize) -> buffer_demo::Result<()> {
        if self.json {
            json::print(&PROGRAM, report).map_err(|source| Error::Io {
                context: "print the JSON report".into(),
                source,
            })?;
        }
        Ok(())
    }
}

fn run(cmd: Cmd, stop: &Stop) -> buffer_demo::Result<ExitCode> {
    match cmd {
        Cmd::Sink {
            listen,
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
            let out = Out { json };
            let sink = buffer_demo::Sink::bind(SinkConfig {
                bind: listen,
                rcvbuf,
                force,
                mode: mode.into(),
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
            out.say(format_args!("listening on {}", sink.local_addr()));
            out.say(sink.rcvbuf());
            let report = sink.run()?;
            out.say(&report);
            out.document(&report)?;
            Ok(exit::verdict(
                report.ledger.closes(),
                report.interrupted || stop.requested(),
            ))
        }
        Cmd::Blast {
            connect,
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
            let out = Out { json };
            let report = buffer_demo::blast(&BlastConfig {
                to: connect,
                rate,
                size: size + HEADER_LEN,
                duration,
                batch,
                gso,
                threads,
                drain: Duration::from_millis(drain_ms),
                nonce,
                stop: stop.clone(),
                progress: true,
                ..BlastConfig::default()
            })?;
            out.say(&report);
            out.document(&report)?;
            Ok(exit::verdict(
                !report.sender_limited,
                report.interrupted || stop.requested(),
            ))
        }
        Cmd::Sweep {
            out: dir,
            netns,
            tbf,
            work_us,
            trial_duration,
            short,
            json,
        } => {
            let out = Out { json };
            let mut cfg = SweepConfig::full(work_us);
            if short {
                let quick = buffer_demo::sweep::short_sweep_config();
                cfg.setups = quick.setups;
                cfg.grid = quick.grid;
                cfg.search = false;
            }
            cfg.secs = trial_duration.as_secs_f64();
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
            // The grid is known; a search runs at most max_trials per
            // configuration in all, so the total is then a bound.
            let total = cfg.setups.len()
                * if cfg.search {
                    cfg.max_trials.max(cfg.grid.len())
                } else {
                    cfg.grid.len()
                };
            let bound = if cfg.search { "at most " } else { "" };
            let started = Instant::now();
            let mut done = 0usize;
            let table = buffer_demo::sweep::sweep_in(&cfg, ns.as_ref(), |t| {
                done += 1;
                let per_trial = started.elapsed().as_secs_f64() / done as f64;
                let left = per_trial * total.saturating_sub(done) as f64;
                eprintln!(
                    "[{done} of {bound}{total}, {bound}{left:.0} s left] {:<32} offered {:>8.0}/s achieved {:>8.0}/s drops {:>9.5} % (queue {}, kernel {}), residual {}, limited by {}",
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
                table.write_outputs(&dir)?;
            }
            out.say(&table);
            if !table.trials.is_empty() {
                out.say(format_args!(
                    "wrote {}/results.csv, results.md, drops.svg, drops.png",
                    dir.display()
                ));
            }
            out.document(&table)?;
            let closed = table.trials.iter().all(|t| t.residual == Some(0));
            Ok(exit::verdict(closed, table.interrupted || stop.requested()))
        }
        Cmd::VersusIperf3 {
            duration,
            trial_duration,
            no_strace,
            rcvbuf,
            json,
        } => {
            let out = Out { json };
            let report = buffer_demo::versus::versus_iperf3(&buffer_demo::versus::VersusConfig {
                secs: duration,
                search_secs: trial_duration,
                strace: !no_strace,
                rcvbuf: Some(rcvbuf),
                setups: buffer_demo::versus::default_setups(),
                stop: stop.clone(),
            })?;
            out.say(&report);
            out.document(&report)?;
            let closed = report
                .ours_at_iperf3_rate
                .as_ref()
                .is_none_or(|o| o.residual == Some(0))
                && report.searches.iter().all(|s| s.all_closed);
            Ok(exit::verdict(
                closed,
                report.interrupted || stop.requested(),
            ))
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
    fn mode_flags_name_the_library_modes_as_its_reports_do() {
        for (flag, mode) in [
            (ModeFlag::Split, Mode::Split),
            (ModeFlag::Inline, Mode::Inline),
        ] {
            assert_eq!(Mode::from(flag), mode);
            let name = mode.to_string();
            assert_eq!(ModeFlag::from_str(&name, false), Ok(flag), "{name}");
        }
        assert_eq!(ModeFlag::value_variants().len(), 2);
    }

    #[test]
    fn an_interrupt_and_its_stop_share_one_flag() {
        let interrupt = Interrupt::new();
        let stop = Stop::from(interrupt.flag());
        assert!(!stop.requested());
        interrupt.request();
        assert!(stop.requested());
        let other = Interrupt::new();
        Stop::from(other.flag()).request();
        assert!(other.requested());
    }

    #[test]
    fn addresses_take_host_names() {
        assert_eq!(address("127.0.0.1:7200"), Ok(([127, 0, 0, 1], 7200).into()));
        assert_eq!(address("localhost:7200"), Ok(([127, 0, 0, 1], 7200).into()));
        assert_eq!(
            address("[::1]:7"),
            Ok("[::1]:7".parse::<SocketAddr>().unwrap())
        );
        for bad in ["localhost", ":7200", "localhost:-1", "localhost:65536", ""] {
            assert!(address(bad).is_err(), "{bad}");
        }
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
