//! `tcp-watch`: reads captures, reassembles every TCP stream in both
//! directions, and says for each hole and each repeated segment what
//! happened and how it was repaired. This file only parses arguments; the
//! work is in the library ([`tcp_watch::commands`]).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use cli_conventions::exit;
use tcp_watch::commands::{self, Analyze};
use tcp_watch::pipeline::{GapFill, Options};
use tcp_watch::reassembly::{Config, OverlapPolicy};

/// Passive TCP reassembly and loss analysis from captures.
///
/// Every stream of a pcap or pcapng capture, both directions, reassembled
/// exactly; every hole, retransmission, duplicate ACK, SACK block and zero
/// window explained with the frames as evidence.
///
///   tcp-watch analyze trace.pcap
///   tcpdump -i eth0 -w - port 80 | tcp-watch analyze -
///   tcp-watch extract trace.pcapng --out streams/
///   tcp-watch lab --loss 0.01 --blackhole 3s     (root)
///
/// Logs go to stderr, filtered by RUST_LOG (default: warn).
#[derive(Debug, Parser)]
#[command(name = "tcp-watch", version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Gaps {
    /// Nothing where a hole is: the bytes after it follow at once (the
    /// index gives both offsets).
    Skip,
    /// Zero bytes as long as the hole (offsets kept).
    Zeros,
    /// A text marker naming the hole, padded with zeros to its length
    /// (offsets kept).
    Marker,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Policy {
    /// The copy held first wins (Suricata's and tcpflow's default).
    First,
    /// The later copy wins.
    Last,
    /// BSD: a copy starting earlier wins.
    Bsd,
    /// Linux: a copy starting earlier, or as early and longer, wins.
    Linux,
}

/// Reassembly settings shared by `analyze` and `extract`.
#[derive(Debug, clap::Args)]
struct Reassembly {
    /// What the extracted files hold where a hole is.
    #[arg(long, value_enum, default_value = "skip")]
    gaps: Gaps,
    /// Which copy wins when overlapping segments carry different bytes
    /// (every conflict is logged either way).
    #[arg(long, value_enum, default_value = "first")]
    policy: Policy,
    /// Bytes one direction may hold out of order before the lowest hole is
    /// declared a gap (memory cap).
    #[arg(long, default_value_t = 8 << 20, value_parser = clap::value_parser!(u64).range(4096..=(1u64 << 32)))]
    direction_cap: u64,
    /// Bytes all streams may hold out of order together.
    #[arg(long, default_value_t = 32 << 20, value_parser = clap::value_parser!(u64).range(4096..=(1u64 << 34)))]
    memory_cap: u64,
    /// A stream silent this long (capture time) is closed: `300s`, `5m`.
    #[arg(long, default_value = "300s", value_parser = cli_values::seconds(0.001, 86_400.0 * 365.0))]
    idle_timeout: std::time::Duration,
    /// Most streams followed at once (the least recently active are closed
    /// past it).
    #[arg(long, default_value_t = 1 << 16, value_parser = clap::value_parser!(u64).range(16..=(1u64 << 24)))]
    max_streams: u64,
    /// Most extraction files open at once.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    max_open_files: u64,
}

impl Reassembly {
    fn options(&self, extract: Option<PathBuf>) -> Options {
        Options {
            reassembly: Config {
                policy: match self.policy {
                    Policy::First => OverlapPolicy::First,
                    Policy::Last => OverlapPolicy::Last,
                    Policy::Bsd => OverlapPolicy::Bsd,
                    Policy::Linux => OverlapPolicy::Linux,
                },
                direction_cap: self.direction_cap as usize,
                global_cap: self.memory_cap as usize,
                idle_timeout_ns: self.idle_timeout.as_nanos().min(u64::MAX as u128) as u64,
                max_streams: self.max_streams as usize,
                ..Config::default()
            },
            extract,
            gaps: match self.gaps {
                Gaps::Skip => GapFill::Skip,
                Gaps::Zeros => GapFill::Zeros,
                Gaps::Marker => GapFill::Marker,
            },
            max_open_files: self.max_open_files as usize,
            ..Options::default()
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Explain every stream of the captures: holes, retransmissions by
    /// cause (timeout with its backoff, fast, SACK, tail-loss probe,
    /// spurious), duplicate ACKs, zero windows, RTT; then a table.
    Analyze {
        /// pcap or pcapng files; `-` reads stdin (`tcpdump -w - | tcp-watch
        /// analyze -`).
        #[arg(required = true)]
        captures: Vec<PathBuf>,
        /// Print exactly one JSON document on stdout (schema in the crate
        /// README); text goes to stderr.
        #[arg(long)]
        json: bool,
        /// Only this stream (its id, as the account numbers them).
        #[arg(long, value_parser = clap::value_parser!(u64).range(0..(1u64 << 53)))]
        stream: Option<u64>,
        /// Every event line of each stream, not the first 12 per direction.
        #[arg(long)]
        all: bool,
        /// Also write every stream's bytes here, in the same pass (as
        /// `extract`).
        #[arg(long, value_name = "DIR")]
        extract: Option<PathBuf>,
        #[command(flatten)]
        reassembly: Reassembly,
    },
    /// Write every stream's two directions to DIR/<id>.c2s and
    /// DIR/<id>.s2c, and the index DIR/streams.json (endpoints, bytes,
    /// sha256, gaps with offsets and causes, overlap conflicts).
    Extract {
        /// A pcap or pcapng file, or `-` for stdin.
        capture: PathBuf,
        /// Output directory (created if missing).
        #[arg(long, short)]
        out: PathBuf,
        #[command(flatten)]
        reassembly: Reassembly,
    },
    /// Capture from an interface (AF_PACKET; root or CAP_NET_RAW) and
    /// analyse as `analyze` does; Ctrl-C or --duration ends it with the
    /// report.
    Live {
        /// Device name as `ip link` lists it, or `any`.
        #[arg(long, short)]
        interface: String,
        /// Which connections to keep: `port N`, `host ADDR`, `src|dst port
        /// N`, `src|dst host ADDR`, `tcp`, joined by and/or/not and
        /// parentheses. Default: every TCP connection.
        #[arg(long, short, default_value = "")]
        filter: String,
        /// Also write the kept frames to this pcap file.
        #[arg(long, short, value_name = "FILE.pcap")]
        write: Option<PathBuf>,
        /// Stop after this long (`30s`, `5m`).
        #[arg(long, value_parser = cli_values::seconds(0.001, 86_400.0 * 365.0))]
        duration: Option<std::time::Duration>,
        /// Bytes kept per frame (0: 262144).
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=262_144))]
        snaplen: u32,
        /// Print exactly one JSON document on stdout.
        #[arg(long)]
        json: bool,
        /// Every event line of each stream.
        #[arg(long)]
        all: bool,
        /// Also write every stream's bytes here.
        #[arg(long, value_name = "DIR")]
        extract: Option<PathBuf>,
        #[command(flatten)]
        reassembly: Reassembly,
    },
    /// The lab (root): a real TCP transfer from namespace A to B through a
    /// router R that drops a random fraction of A's packets (nft), limits
    /// the rate (tc tbf) or blackholes the path for a while; captures at A
    /// and at B; then our counts beside the sender kernel's (nstat), R's
    /// drops, the receiver's sha256 and tshark's.
    Lab {
        /// Fraction of A->B data segments R drops at random, 0 to 0.5
        /// (resolution 0.001).
        #[arg(long, default_value_t = 0.01, value_parser = cli_values::float_in(0.0, 0.5, "a loss fraction"))]
        loss: f64,
        /// Rate limit of R's link to B, as tc writes it (`100mbit`).
        #[arg(long)]
        rate: Option<String>,
        /// Drop everything R forwards for this long once half the data is
        /// sent (`3s`), so the retransmission timer's backoff shows.
        #[arg(long, value_parser = cli_values::seconds(0.1, 20.0))]
        blackhole: Option<std::time::Duration>,
        /// SACK in A and B.
        #[arg(long, value_enum, default_value = "on")]
        sack: OnOff,
        /// Bytes A sends.
        #[arg(long, default_value_t = 4 << 20, value_parser = clap::value_parser!(u64).range(1..=(1u64 << 32)))]
        bytes: u64,
        /// Seed of the payload.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..(1u64 << 53)))]
        seed: u64,
        /// Keep the captures in this directory (default: a temporary one,
        /// removed after).
        #[arg(long, value_name = "DIR")]
        keep: Option<PathBuf>,
        /// Print exactly one JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OnOff {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

fn main() -> ExitCode {
    cli_conventions::init_logs("warn");
    let cli = Cli::parse();
    // Ctrl-C stops reading; the report covers what was read, then exit 130.
    let interrupt = match cli_conventions::Interrupt::install() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("tcp-watch: cannot handle SIGINT/SIGTERM: {e}");
            cli_conventions::Interrupt::new()
        }
    };
    let stop = interrupt.flag();
    let result = match cli.command {
        Command::Analyze {
            captures,
            json,
            stream,
            all,
            extract,
            reassembly,
        } => commands::analyze(
            &Analyze {
                captures,
                json,
                stream,
                all,
                options: reassembly.options(extract),
                summary_only: false,
            },
            &stop,
        )
        .map(|_| ()),
        Command::Extract {
            capture,
            out,
            reassembly,
        } => commands::analyze(
            &Analyze {
                captures: vec![capture],
                json: false,
                stream: None,
                all: false,
                options: reassembly.options(Some(out)),
                summary_only: true,
            },
            &stop,
        )
        .map(|_| ()),
        Command::Live {
            interface,
            filter,
            write,
            duration,
            snaplen,
            json,
            all,
            extract,
            reassembly,
        } => match tcp_watch::live::Filter::parse(&filter) {
            Err(e) => {
                eprintln!("tcp-watch live: --filter: {e}");
                return ExitCode::from(exit::USAGE);
            }
            Ok(filter) => commands::live(
                &Analyze {
                    captures: Vec::new(),
                    json,
                    stream: None,
                    all,
                    options: reassembly.options(extract),
                    summary_only: false,
                },
                &commands::Live {
                    interface,
                    filter,
                    snaplen,
                    write,
                    duration,
                },
                &stop,
            )
            .map(|_| ()),
        },
        Command::Lab {
            loss,
            rate,
            blackhole,
            sack,
            bytes,
            seed,
            keep,
            json,
        } => {
            let config = tcp_watch::lab::LabConfig {
                loss,
                rate,
                blackhole,
                sack: sack == OnOff::On,
                bytes,
                seed,
                dir: keep,
            };
            match tcp_watch::lab::account::command(&config, json) {
                Ok(true) => Ok(()),
                Ok(false) => {
                    eprintln!("tcp-watch lab: the account did not close (see above)");
                    return ExitCode::from(exit::FAILED);
                }
                Err(e) => Err(e),
            }
        }
    };
    if interrupt.interrupted() {
        eprintln!("tcp-watch: interrupted");
    }
    match result {
        Ok(()) => exit::verdict(true, interrupt.interrupted()),
        // A reader that went away (`| head`) is not a failure.
        Err(tcp_watch::Error::Io { source, .. })
            if source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tcp-watch: {e}");
            ExitCode::from(exit::FAILED)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_numeric_flag_refuses_hostile_values() {
        cli_values::assert_numeric_flags_refuse_hostile_values(&Cli::command());
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
