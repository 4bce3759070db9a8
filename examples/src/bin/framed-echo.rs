//! `framed-echo`: a length-prefixed echo server and a pipelined client.
//!
//! ```text
//! framed-echo server --listen 127.0.0.1:7000
//! framed-echo client --connect 127.0.0.1:7000 --count 100000 --size 64 --json
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use examples::echo::{ClientSettings, EchoServer, ServerSettings, run_client};
use examples::{Preset, init_tracing};
use framing::nonblocking::DEFAULT_MAX_QUEUED;

/// Echo length-prefixed frames over TCP: a mio server for many clients and a
/// pipelined client that checks every echo and reports messages/s and MB/s.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve until killed; prints `listening on ADDR` when ready. A client
    /// that sends an oversized or invalid frame is logged and dropped.
    Server(ServerArgs),
    /// Send COUNT frames of SIZE bytes, pipelined, and verify every echo.
    Client(ClientArgs),
}

/// Frame layout options shared by both sides (they must match).
#[derive(Args)]
struct FramingArgs {
    /// Frame layout.
    #[arg(long, value_enum, default_value_t = Preset::U32Be)]
    preset: Preset,
    /// Largest frame accepted, in bytes [default: 8 MiB].
    #[arg(long, value_name = "BYTES")]
    max_frame: Option<usize>,
}

#[derive(Args)]
struct ServerArgs {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    #[command(flatten)]
    framing: FramingArgs,
    /// Bytes queued for one client before the server stops reading from it.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_QUEUED)]
    max_queued: usize,
}

#[derive(Args)]
struct ClientArgs {
    /// Server address.
    #[arg(long, value_name = "ADDR")]
    connect: SocketAddr,
    /// Frames to send.
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// Payload bytes per frame.
    #[arg(long, value_name = "BYTES", default_value_t = 64)]
    size: usize,
    #[command(flatten)]
    framing: FramingArgs,
    /// Print the report as one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    init_tracing("info");
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("framed-echo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), examples::Error> {
    match cli.command {
        Command::Server(args) => {
            let framing = args.framing.preset.config(args.framing.max_frame)?;
            let mut server = EchoServer::bind(
                args.listen,
                ServerSettings {
                    framing,
                    max_queued: args.max_queued,
                },
            )?;
            println!("listening on {}", server.local_addr());
            server.run()?;
            Ok(())
        }
        Command::Client(args) => {
            let framing = args.framing.preset.config(args.framing.max_frame)?;
            let report = run_client(
                args.connect,
                ClientSettings {
                    count: args.count,
                    size: args.size,
                    framing,
                },
            )?;
            println!(
                "{} frames of {} B echoed and verified in {:.3} s: {:.0} msg/s, {:.1} MB/s",
                report.messages,
                report.size,
                report.seconds,
                report.messages_per_sec,
                report.mb_per_sec
            );
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string(&report).expect("a report serializes")
                );
            }
            Ok(())
        }
    }
}
