//! `framed-echo`: a length-prefixed echo server and a pipelined client.
//!
//! ```text
//! framed-echo server --listen 127.0.0.1:7000
//! framed-echo client --connect 127.0.0.1:7000 --count 100000 --size 64 --json
//! framed-echo stream-demo            # what send() calls become at the reader
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use cli_conventions::{Interrupt, Program, exit, json};
use examples::echo::{
    ClientReport, ClientSettings, DEFAULT_BACKLOG, EchoServer, ServerSettings, ServerStats,
    run_client_until,
};
use examples::preset::largest_payload;
use examples::stream::{DEFAULT_SETTINGS, DemoSettings, Setting, Sizes};
use examples::{Preset, init_tracing, socket_addr};
use framing::nonblocking::DEFAULT_MAX_QUEUED;
use serde::Serialize;

/// Who this is, in every JSON document.
const PROGRAM: Program = cli_conventions::program!("framed-echo", 1);

/// How often the server's watcher looks at the Ctrl-C flag.
const INTERRUPT_POLL: Duration = Duration::from_millis(50);

/// Largest `--max-frame`: 4 GiB (the Python preset's long form goes past
/// 2 GiB; buffers grow with the bytes that arrive, never to this value).
const MAX_FRAME_FLAG: u64 = 1 << 32;
/// Largest `--max-queued`: 1 GiB per client.
const MAX_QUEUED_FLAG: u64 = 1 << 30;
/// Largest `--max-buffered-total`: 1 TiB.
const MAX_BUFFERED_FLAG: u64 = 1 << 40;
/// Largest `--count`: 10^12 frames (days of echoing).
const MAX_COUNT_FLAG: u64 = 1_000_000_000_000;
/// Largest `stream-demo --messages`: a million sends.
const MAX_DEMO_MESSAGES: u64 = 1_000_000;
/// Largest `stream-demo --size` and `--read-buffer`: 16 MiB.
const MAX_DEMO_PAYLOAD: u64 = 16 << 20;
/// Largest timeouts, in seconds: a day for the server's idle timeout, an
/// hour for the client's.
const MAX_IDLE_S: f64 = 86_400.0;
const MAX_TIMEOUT_S: f64 = 3_600.0;

/// framed-echo: echo length-prefixed frames over TCP, a mio server for many
/// clients and a pipelined client that checks every echo and reports
/// messages/s and MB/s; and stream-demo, what send() calls become at the
/// reader, and how framing gets the messages back.
#[derive(Parser)]
#[command(name = "framed-echo", version, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve until SIGINT/SIGTERM, then print what it did (exit code 130);
    /// prints `listening on ADDR` when ready. A client that sends an
    /// oversized or invalid frame is logged and dropped.
    Server(ServerArgs),
    /// Send COUNT frames of SIZE bytes, pipelined, and verify every echo;
    /// SIGINT/SIGTERM stop sending, and the echoes of what was sent are
    /// checked and reported (exit code 130).
    Client(ClientArgs),
    /// Show that TCP is a byte stream: N send() calls of chosen sizes, and
    /// what the reader's read() calls returned, on loopback, with a slow
    /// reader, and across a path with MTU 576 (root: two network
    /// namespaces, a veth pair and a tbf rate limit). Then the same bytes
    /// through framing, which gives back every message. One table;
    /// SIGINT/SIGTERM print the settings done (exit code 130).
    StreamDemo(StreamDemoArgs),
}

/// Frame layout options shared by both sides (they must match).
#[derive(Args)]
struct FramingArgs {
    /// Frame layout.
    #[arg(long, value_enum, default_value_t = Preset::U32Be)]
    preset: Preset,
    /// Largest frame accepted, in bytes, up to 4 GiB [default: 8 MiB].
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..=MAX_FRAME_FLAG))]
    max_frame: Option<u64>,
}

impl FramingArgs {
    fn config(&self) -> Result<framing::Config, examples::Error> {
        Ok(self.preset.config(self.max_frame.map(to_usize))?)
    }
}

#[derive(Args)]
struct ServerArgs {
    /// Address to listen on, HOST:PORT (port 0 picks a free one).
    #[arg(long, value_name = "ADDR", value_parser = socket_addr)]
    listen: SocketAddr,
    #[command(flatten)]
    framing: FramingArgs,
    /// Bytes queued for one client before the server stops reading from it
    /// (1 to 1 GiB).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_QUEUED as u64,
          value_parser = clap::value_parser!(u64).range(1..=MAX_QUEUED_FLAG))]
    max_queued: u64,
    /// Bytes all clients together may hold (partial frames and queued
    /// echoes); over it, the client holding the most is closed. At least
    /// twice --max-frame [default: 64 MiB or 4 x --max-frame, the larger].
    #[arg(long, value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(1..=MAX_BUFFERED_FLAG))]
    max_buffered_total: Option<u64>,
    /// Close a client that moves no byte either way for this long (`1.5`,
    /// `500ms`, `30s`; 1 ms to 1 day).
    #[arg(long, value_name = "DURATION", default_value = "10s",
          value_parser = cli_values::seconds(0.001, MAX_IDLE_S))]
    idle_timeout: Duration,
    /// Listen backlog: clients the kernel holds while the server cannot
    /// accept (e.g. out of descriptors); capped by net.core.somaxconn.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BACKLOG,
          value_parser = clap::value_parser!(u32).range(1..=65535))]
    backlog: u32,
    /// At exit (Ctrl-C included), print the server's report as one JSON
    /// document on stdout; `listening on ADDR` then goes to stderr.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ClientArgs {
    /// Server address, HOST:PORT.
    #[arg(long, value_name = "ADDR", value_parser = socket_addr)]
    connect: SocketAddr,
    /// Frames to send (up to 10^12).
    #[arg(long, default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(0..=MAX_COUNT_FLAG))]
    count: u64,
    /// Payload bytes per frame (at most --max-frame, and at most 65535 with
    /// --preset u16-be).
    #[arg(long, value_name = "BYTES", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(0..=MAX_FRAME_FLAG))]
    size: u64,
    #[command(flatten)]
    framing: FramingArgs,
    /// Give up when the server answers nothing for this long, whether
    /// connecting, sending or waiting for an echo (1 ms to 1 hour).
    #[arg(long, value_name = "DURATION", default_value = "10s",
          value_parser = cli_values::seconds(0.001, MAX_TIMEOUT_S))]
    timeout: Duration,
    /// Print the report as one JSON document on stdout (the summary goes to
    /// stderr).
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct StreamDemoArgs {
    /// Messages to send, one send() each (prefix and payload; 1 to 10^6).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_SETTINGS.messages as u64,
          value_parser = clap::value_parser!(u64).range(1..=MAX_DEMO_MESSAGES))]
    messages: u64,
    /// Every payload this many bytes (up to 16 MiB) [default: a seeded
    /// mix from 4 B to 64 KiB, as many small payloads as large ones].
    #[arg(long, value_name = "BYTES", conflicts_with = "seed",
          value_parser = clap::value_parser!(u64).range(0..=MAX_DEMO_PAYLOAD))]
    size: Option<u64>,
    /// Seed of the payload-size mix.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64))]
    seed: u64,
    /// Set TCP_NODELAY on the sender (Nagle's algorithm off; on by default,
    /// as the kernel has it).
    #[arg(long)]
    nodelay: bool,
    /// Bytes the receiver asks for in each read() (1 B to 16 MiB).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_SETTINGS.read_buffer_bytes as u64,
          value_parser = clap::value_parser!(u64).range(1..=MAX_DEMO_PAYLOAD))]
    read_buffer: u64,
    /// How long the slow reader sleeps before each read (`20ms`, `0.1`;
    /// 1 ms to 10 s).
    #[arg(long, value_name = "DURATION", default_value = "20ms",
          value_parser = cli_values::seconds(0.001, 10.0))]
    read_delay: Duration,
    /// The tbf rate of the MTU 576 path, in Mbit/s (1 to 10000).
    #[arg(long, value_name = "MBIT_PER_S", default_value_t = DEFAULT_SETTINGS.path_rate_mbit_per_s,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    path_rate: u32,
    /// The settings to run, in this order (comma-separated). mtu576 needs
    /// root and is skipped, with a word, otherwise.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Setting::ALL)]
    settings: Vec<Setting>,
    /// Give up when no byte moves for this long (1 ms to 1 hour).
    #[arg(long, value_name = "DURATION", default_value = "10s",
          value_parser = cli_values::seconds(0.001, MAX_TIMEOUT_S))]
    timeout: Duration,
    /// Print the runs as one JSON document on stdout (the table goes to
    /// stderr).
    #[arg(long)]
    json: bool,
}

/// Values are bounded by clap far below `usize::MAX` on 64-bit targets;
/// saturate on smaller ones.
fn to_usize(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// The server's JSON document.
#[derive(Serialize)]
struct ServerReport<'a> {
    role: &'static str,
    /// Stopped by SIGINT/SIGTERM.
    interrupted: bool,
    stats: &'a ServerStats,
}

/// The client's JSON document.
#[derive(Serialize)]
struct ClientJson<'a> {
    role: &'static str,
    #[serde(flatten)]
    report: &'a ClientReport,
}

fn main() -> ExitCode {
    init_tracing("info");
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("framed-echo: {e}");
            ExitCode::from(match e {
                examples::Error::Settings(_)
                | examples::Error::Framing(framing::Error::InvalidConfig(_)) => exit::USAGE,
                _ => exit::FAILED,
            })
        }
    }
}

/// Text for people: stdout, or stderr when stdout carries the JSON.
fn say(json: bool, text: &str) {
    if json {
        eprintln!("{text}");
    } else {
        println!("{text}");
    }
}

fn print_json<T: Serialize>(report: &T) -> Result<(), examples::Error> {
    json::print(&PROGRAM, report).map_err(|e| examples::Error::io("printing the JSON report", e))
}

fn run(cli: Cli) -> Result<ExitCode, examples::Error> {
    match cli.command {
        Command::Server(args) => serve(args),
        Command::StreamDemo(args) => stream_demo(args),
        Command::Client(args) => {
            let framing = args.framing.config()?;
            let size = to_usize(args.size);
            // Checked before connecting: a frame the layout cannot carry
            // would fail the writer after the connection is made.
            let largest = largest_payload(&framing);
            if size > largest {
                let why = match args.framing.max_frame {
                    Some(max) if to_usize(max) == largest => format!("--max-frame {max}"),
                    _ => format!(
                        "the largest frame --preset {} carries: {largest} bytes",
                        args.framing.preset.name()
                    ),
                };
                return Err(examples::Error::Settings(format!(
                    "--size {size} is over {why}"
                )));
            }
            // Ctrl-C stops sending; the echoes of what was sent are still
            // read and checked, then reported.
            let interrupt = Interrupt::install()
                .map_err(|e| examples::Error::io("installing the SIGINT/SIGTERM handlers", e))?;
            let report = run_client_until(
                args.connect,
                ClientSettings {
                    count: args.count,
                    size,
                    framing,
                    timeout: args.timeout,
                },
                &interrupt.flag(),
            );
            let report = match report {
                Ok(report) => report,
                Err(e) => {
                    if args.json && !matches!(e, examples::Error::Settings(_)) {
                        // A run that failed still has its one document.
                        print_json(&serde_json::json!({
                            "role": "client",
                            "error": e.to_string(),
                            "interrupted": interrupt.requested(),
                        }))?;
                    }
                    return Err(e);
                }
            };
            say(
                args.json,
                &format!(
                    "{}{} frames of {} B echoed and verified in {:.3} s: {:.0} msg/s, {:.1} MB/s",
                    if report.interrupted {
                        format!(
                            "interrupted (SIGINT/SIGTERM) after {} of {} frames; ",
                            report.messages, args.count
                        )
                    } else {
                        String::new()
                    },
                    report.messages,
                    report.size,
                    report.seconds,
                    report.messages_per_sec,
                    report.mb_per_sec
                ),
            );
            if args.json {
                print_json(&ClientJson {
                    role: "client",
                    report: &report,
                })?;
            }
            Ok(interrupt.exit_code(true))
        }
    }
}

fn serve(args: ServerArgs) -> Result<ExitCode, examples::Error> {
    let framing = args.framing.config()?;
    let mut settings = ServerSettings::for_framing(framing);
    settings.max_queued = to_usize(args.max_queued);
    settings.idle_timeout = args.idle_timeout;
    settings.backlog = args.backlog;
    if let Some(total) = args.max_buffered_total {
        settings.max_buffered_total = to_usize(total);
    }
    let mut server = EchoServer::bind(args.listen, settings)?;

    // SIGINT/SIGTERM set the flag; the watcher stops the loop, and the
    // report is printed after it. A second signal ends the process at once.
    let interrupt = Interrupt::install()
        .map_err(|e| examples::Error::io("installing the SIGINT/SIGTERM handlers", e))?;
    let stop = server.stop_handle();
    let watched = interrupt.clone();
    std::thread::spawn(move || {
        while !watched.requested() {
            std::thread::sleep(INTERRUPT_POLL);
        }
        let _ = stop.stop();
    });

    say(args.json, &format!("listening on {}", server.local_addr()));
    let stats = server.run()?;
    let interrupted = interrupt.requested();
    eprintln!(
        "framed-echo server: {}{}",
        if interrupted {
            "interrupted (SIGINT/SIGTERM); "
        } else {
            ""
        },
        summary(&stats)
    );
    if args.json {
        print_json(&ServerReport {
            role: "server",
            interrupted,
            stats: &stats,
        })?;
    }
    Ok(interrupt.exit_code(true))
}

/// The stream demo's JSON document.
#[derive(Serialize)]
struct StreamDemoReport<'a> {
    role: &'static str,
    #[serde(flatten)]
    demo: &'a examples::stream::Demo,
}

fn stream_demo(args: StreamDemoArgs) -> Result<ExitCode, examples::Error> {
    let settings = DemoSettings {
        messages: to_usize(args.messages),
        sizes: args
            .size
            .map_or(Sizes::Mix(args.seed), |n| Sizes::Fixed(to_usize(n))),
        nodelay: args.nodelay,
        read_buffer_bytes: to_usize(args.read_buffer),
        slow_reader_delay: args.read_delay,
        path_rate_mbit_per_s: args.path_rate,
        timeout: args.timeout,
    };
    let which = args.settings;
    let interrupt = Interrupt::install()
        .map_err(|e| examples::Error::io("installing the SIGINT/SIGTERM handlers", e))?;
    let stop = interrupt.flag();
    // Each setting's line as it ends: the progress of a run of seconds.
    let demo = examples::stream::demo(&settings, &which, &stop, |outcome| {
        eprintln!("{}", outcome.summary());
    });
    let mut text = demo.table();
    if demo.interrupted {
        text.push_str(&format!(
            "interrupted (SIGINT/SIGTERM) after {} of {} settings\n",
            demo.runs.len(),
            which.len()
        ));
    }
    if args.json {
        eprint!("{text}");
        print_json(&StreamDemoReport {
            role: "stream_demo",
            demo: &demo,
        })?;
    } else {
        print!("{text}");
    }
    Ok(interrupt.exit_code(demo.passed))
}

fn summary(s: &ServerStats) -> String {
    format!(
        "{} accepted, {} completed, {} dropped for bad frames or errors, {} closed over the memory budget \
         (peak {} bytes buffered), {} closed idle; accept ran out of descriptors {} times ({} failed accepts); \
         {} frames, {} payload bytes echoed",
        s.accepted,
        s.completed,
        s.dropped,
        s.over_budget,
        s.peak_buffered_bytes,
        s.timed_out,
        s.accept_exhausted,
        s.accept_failures,
        s.frames,
        s.bytes
    )
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
    fn max_queued_zero_is_refused_at_parse_time() {
        let parsed = Cli::try_parse_from([
            "framed-echo",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--max-queued",
            "0",
        ]);
        let err = parsed.err().expect("--max-queued 0 is refused");
        assert!(err.to_string().contains("--max-queued"), "{err}");
    }
}
