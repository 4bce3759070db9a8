//! `ack-demo`: acknowledged messaging with crash-safe resume and a close
//! handshake, beside the naive send-and-close it fixes.
//!
//! ```text
//! ack-demo server --listen 127.0.0.1:7100 --out out.txt
//! ack-demo client --connect 127.0.0.1:7100 --count 100000 --size 64 --window 32 --json
//! ack-demo client --connect 127.0.0.1:7100 --count 10000 --naive   # vs --stop-reading-after
//! ack-demo client --connect 127.0.0.1:7100 --session 7 --token HEX  # resume session 7
//! ack-demo server --listen 127.0.0.1:7100 --out out.txt --repair    # after journal damage
//! ```
//!
//! A client without `--token` draws a fresh session token and prints it on
//! stderr (`session 7 token 3f..; resume it with --session 7 --token 3f..`):
//! resuming a session the server holds needs that token.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ack_demo::client::{self, ClientReport, ClientSettings};
use ack_demo::naive;
use ack_demo::server::{Server, ServerSettings, ServerStats};
use clap::{Args, Parser, Subcommand};
use cli_conventions::{Interrupt, Program, exit, json};
use serde::Serialize;

/// Who this is, in every JSON document.
const PROGRAM: Program = cli_conventions::program!("ack-demo", 1);

/// How often the server's main thread looks at the Ctrl-C flag.
const INTERRUPT_POLL: Duration = Duration::from_millis(50);

/// ack-demo: acknowledged messaging over TCP, with ACKs that mean "processed
/// and durable", resume after a crash of either side without losing or
/// repeating a message, and a close handshake (count + digest) that proves
/// everything was processed. `--naive` shows the classic
/// send/shutdown/close losing messages without anyone noticing.
#[derive(Parser)]
#[command(name = "ack-demo", version, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Process messages by appending each payload as one line to FILE;
    /// acknowledge only what is fsynced. Prints `listening on ADDR`; serves
    /// until SIGINT/SIGTERM, then prints its report (exit code 130).
    Server(ServerArgs),
    /// Send COUNT messages `msg <seq> ...` with W in flight, resume across
    /// reconnects, finish with the close handshake, report.
    Client(ClientArgs),
    /// Acknowledged msg/s for windows 1, 8, 32, 128 on loopback and through
    /// a relay adding delay each way, beside an unacknowledged stream.
    Bench(BenchArgs),
}

#[derive(Args)]
struct BenchArgs {
    /// Directory for the servers' out files [default: the temp dir].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Delay the relay adds each way, in milliseconds (0 to 10000; units
    /// such as `500us` or `1s` are accepted too).
    #[arg(long, value_name = "MS", default_value = "1", value_parser = cli_values::millis(0.0, 10_000.0))]
    delay_ms: Duration,
    /// Messages per run are SCALE x window (1 to 1000000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    scale: u64,
    /// Payload bytes per message (at most 1 MiB).
    #[arg(long, value_name = "BYTES", default_value_t = 64, value_parser = payload_bytes())]
    size: usize,
    /// Concurrent session counts for the aggregate runs at W=128, comma
    /// separated (each 1 to 10000; `none` skips them).
    #[arg(long, value_name = "N,N,...", default_value = "1,8,64,1000", value_parser = session_counts)]
    sessions: SessionCounts,
    /// Run the servers with the write-ahead log (`server --wal`).
    #[arg(long)]
    wal: bool,
    /// Print the report as one JSON document on stdout (the tables go to
    /// stderr).
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Debug)]
struct SessionCounts(Vec<usize>);

fn session_counts(s: &str) -> Result<SessionCounts, String> {
    if s.trim() == "none" {
        return Ok(SessionCounts(Vec::new()));
    }
    s.split(',')
        .map(|p| {
            let p = p.trim();
            match p.parse::<usize>() {
                Ok(n) if (1..=10_000).contains(&n) => Ok(n),
                _ => Err(format!(
                    "`{p}` is not a session count from 1 to 10000 (e.g. `--sessions 1,8,64`)"
                )),
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(SessionCounts)
}

#[derive(Args)]
struct ServerArgs {
    /// Address to listen on, HOST:PORT (port 0 picks a free one).
    #[arg(long, value_name = "ADDR", value_parser = cli_values::socket_addr)]
    listen: SocketAddr,
    /// The out file; its journal is FILE.journal. Recovered at start.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Simulated processing time per message, in microseconds (at most
    /// 1000000).
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    process_delay_us: u64,
    /// Stop reading each connection after N messages and close it with the
    /// rest unread (shows what a naive sender loses).
    #[arg(long, value_name = "N")]
    stop_reading_after: Option<u64>,
    /// Heartbeat interval in milliseconds, 1 to 3600000 (silence for 3 =
    /// dead).
    #[arg(long, value_name = "MS", default_value_t = 1000, value_parser = heartbeat_ms())]
    heartbeat_ms: u64,
    /// Print the kernel's view of each connection when it ends.
    #[arg(long)]
    show_kernel: bool,
    /// Start even though the journal is damaged or missing: keep the state
    /// that verifies, move the rest of FILE to FILE.unverified-<time>.
    #[arg(long)]
    repair: bool,
    /// Write-ahead log: each commit carries its lines in the journal and
    /// syncs only the journal (one flush per commit instead of two); FILE
    /// is restored from the journal after a crash.
    #[arg(long)]
    wal: bool,
    /// Forget a session idle (no connection, no new line) this long
    /// (seconds, or with a unit: `90m`, `24h`).
    #[arg(long, value_name = "DURATION", default_value = "24h",
          value_parser = cli_values::seconds(1.0, 10.0 * 365.0 * 86400.0))]
    session_expiry: Duration,
    /// Sessions held at most; a new one beyond is refused.
    #[arg(long, value_name = "N", default_value_t = 1 << 20,
          value_parser = clap::value_parser!(u64).range(1..=1 << 24))]
    max_sessions: u64,
    /// At exit (Ctrl-C included), print the server's report as one JSON
    /// document on stdout; `listening on ADDR` then goes to stderr.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ClientArgs {
    /// Server address, HOST:PORT.
    #[arg(long, value_name = "ADDR", value_parser = cli_values::socket_addr)]
    connect: SocketAddr,
    /// Messages to send (seqs 0 to N-1).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    count: u64,
    /// Payload bytes per message (at least the length of `msg <N-1> `, at
    /// most 1 MiB).
    #[arg(long, value_name = "BYTES", default_value_t = 64, value_parser = payload_bytes())]
    size: usize,
    /// Messages in flight (unacknowledged) at most, 1 to 65536.
    #[arg(long, value_name = "W", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    window: u32,
    /// Session id; the same id resumes the session where the server's
    /// durable state says it is.
    #[arg(long, value_name = "ID", default_value_t = 1)]
    session: u64,
    /// The session's token (32 hex digits), printed on stderr when the
    /// session began: needed to resume a session the server holds. Without
    /// it a fresh token is drawn (a new session).
    #[arg(long, value_name = "HEX", value_parser = ack_demo::wire::Token::from_hex)]
    token: Option<ack_demo::wire::Token>,
    /// Keep reconnecting for this long while the server is down or does not
    /// answer (seconds, or with a unit: `500ms`, `2m`; at most 7 days). The
    /// time runs from the server's last answer: a connection the server's
    /// kernel accepts but the server never answers does not extend it.
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = cli_values::seconds(0.0, 7.0 * 86_400.0))]
    reconnect_for: Duration,
    /// Heartbeat interval in milliseconds, 1 to 3600000 (silence for 3 =
    /// dead).
    #[arg(long, value_name = "MS", default_value_t = 1000, value_parser = heartbeat_ms())]
    heartbeat_ms: u64,
    /// Show the kernel's view of the socket (SIOCOUTQ, SIOCOUTQNSD,
    /// FIONREAD, TCP_INFO) beside what the application knows.
    #[arg(long)]
    show_kernel: bool,
    /// Send, shutdown(SHUT_WR), close: no acknowledgements.
    #[arg(long)]
    naive: bool,
    /// Print the report as one JSON document on one line of stdout (the
    /// summary goes to stderr).
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    cli_conventions::init_logs("info");
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ack-demo: {e}");
            ExitCode::from(match e {
                ack_demo::Error::Settings(_) => exit::USAGE,
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

fn print_json<T: Serialize + ?Sized>(report: &T) -> Result<(), ack_demo::Error> {
    json::print(&PROGRAM, report).map_err(|e| ack_demo::Error::io("printing the JSON report", e))
}

/// The client's document on one line: scripts and tests read the last
/// line of stdout.
fn print_json_line<T: Serialize + ?Sized>(report: &T) -> Result<(), ack_demo::Error> {
    let line = json::document(&PROGRAM, report)
        .and_then(|doc| serde_json::to_string(&doc))
        .map_err(|e| ack_demo::Error::io("printing the JSON report", e.into()))?;
    println!("{line}");
    Ok(())
}

fn install_interrupt() -> Result<Interrupt, ack_demo::Error> {
    Interrupt::install()
        .map_err(|e| ack_demo::Error::io("installing the SIGINT/SIGTERM handlers", e))
}

/// The server's JSON document.
#[derive(Serialize)]
struct ServerReport<'a> {
    role: &'static str,
    /// Stopped by SIGINT/SIGTERM.
    interrupted: bool,
    #[serde(flatten)]
    stats: &'a ServerStats,
    /// Sessions the store holds at the end.
    sessions_held: usize,
}

/// Runs the server on a thread until SIGINT/SIGTERM (or until its event
/// loop fails), then prints its report.
fn serve(a: ServerArgs) -> Result<ExitCode, ack_demo::Error> {
    let mut settings = ServerSettings::new(a.out);
    settings.process_delay = Duration::from_micros(a.process_delay_us);
    settings.stop_reading_after = a.stop_reading_after;
    settings.heartbeat = Duration::from_millis(a.heartbeat_ms);
    settings.show_kernel = a.show_kernel;
    settings.store.repair = a.repair;
    settings.store.wal = a.wal;
    settings.store.session_expiry = a.session_expiry;
    settings.store.max_sessions = usize::try_from(a.max_sessions).unwrap_or(usize::MAX);
    let interrupt = install_interrupt()?;
    let server = Server::bind(a.listen, settings)?;
    say(a.json, &format!("listening on {}", server.local_addr()));
    let stop = server.stop_handle();
    let served = std::thread::scope(|scope| {
        let serving = scope.spawn(|| server.serve());
        while !interrupt.requested() && !serving.is_finished() {
            std::thread::sleep(INTERRUPT_POLL);
        }
        if interrupt.requested() {
            eprintln!(
                "ack-demo server: interrupted; waiting for open connections to end (three heartbeats at most)"
            );
            stop.stop();
        }
        serving.join().expect("the server thread does not panic")
    });
    let stats = server.stats();
    let sessions_held = server.sessions();
    let interrupted = interrupt.requested();
    eprintln!(
        "ack-demo server: {}{} connections ({} at once at most), {} messages processed, \
         {} sessions closed with the handshake, {} connections ended by a protocol violation, \
         {} by silence; {sessions_held} sessions held",
        if interrupted {
            "interrupted (SIGINT/SIGTERM); "
        } else {
            ""
        },
        load(&stats.connections),
        load(&stats.peak_open),
        load(&stats.processed),
        load(&stats.closed_sessions),
        load(&stats.violations),
        load(&stats.silent),
    );
    if a.json {
        print_json(&ServerReport {
            role: "server",
            interrupted,
            stats: &stats,
            sessions_held,
        })?;
    }
    served?;
    Ok(interrupt.exit_code(true))
}

fn load(counter: &std::sync::atomic::AtomicU64) -> u64 {
    counter.load(std::sync::atomic::Ordering::Relaxed)
}

/// The client's JSON document: the report with unit-suffixed keys.
fn client_json(r: &ClientReport, interrupted: bool) -> serde_json::Value {
    let mut doc = serde_json::to_value(r).unwrap_or_default();
    if let Some(fields) = doc.as_object_mut() {
        for (old, new) in [
            ("seconds", "duration_s"),
            ("messages_per_sec", "messages_per_s"),
        ] {
            if let Some(v) = fields.remove(old) {
                fields.insert(new.to_owned(), v);
            }
        }
        fields.insert("role".to_owned(), "client".into());
        fields.insert("interrupted".to_owned(), interrupted.into());
    }
    doc
}

fn run(cli: Cli) -> Result<ExitCode, ack_demo::Error> {
    match cli.command {
        Command::Server(a) => serve(a),
        Command::Bench(a) => {
            let settings = ack_demo::bench::BenchSettings {
                windows: vec![1, 8, 32, 128],
                size: a.size,
                delay: a.delay_ms,
                scale: a.scale,
                dir: a.dir.unwrap_or_else(std::env::temp_dir),
                sessions: a.sessions.0,
                wal: a.wal,
            };
            // Ctrl-C drops the run in progress and reports the ones done.
            let interrupt = install_interrupt()?;
            let report = ack_demo::bench::run_until(&settings, &interrupt.flag())?;
            if a.json {
                eprint!("{}", report.render());
                print_json(&report)?;
            } else {
                print!("{}", report.render());
            }
            if report.interrupted {
                eprintln!("ack-demo bench: interrupted; the tables hold the runs that completed");
            }
            Ok(interrupt.exit_code(true))
        }
        Command::Client(a) if a.naive => {
            let r = naive::run(
                a.connect,
                a.session,
                a.count,
                a.size,
                Duration::from_secs(2),
            )?;
            say(
                a.json,
                &format!(
                    "naive: {} of {} messages accepted by send() ({} bytes){}",
                    r.accepted_messages,
                    r.count,
                    r.accepted_bytes,
                    r.send_error
                        .as_ref()
                        .map_or(String::new(), |e| format!("; send() failed: {e}"))
                ),
            );
            if let Some(k) = &r.kernel_at_close {
                say(a.json, &format!("naive: at close the {k}"));
            }
            say(a.json, &format!("naive: after close: {}", r.after_close));
            say(
                a.json,
                "naive: the sender believes all accepted messages were delivered; only the server's out file knows",
            );
            if a.json {
                print_json(&r)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Client(a) => {
            let mut s = ClientSettings::new(a.connect);
            s.count = a.count;
            s.size = a.size;
            s.window = a.window;
            s.session = a.session;
            s.reconnect_for = a.reconnect_for;
            s.heartbeat = Duration::from_millis(a.heartbeat_ms);
            s.show_kernel = a.show_kernel;
            // A usage error (exit 2) before a token is drawn or a
            // connection made.
            client::check(&s)?;
            let token = match a.token {
                Some(t) => t,
                None => {
                    let t = ack_demo::wire::Token::random()?;
                    eprintln!(
                        "ack-demo: session {} token {t}; resume it with --session {} --token {t}",
                        a.session, a.session
                    );
                    t
                }
            };
            s.token = Some(token);
            let interrupt = install_interrupt()?;
            let r = client::run_until(&s, &interrupt.flag());
            let interrupted = interrupt.requested();
            say(
                a.json,
                &format!(
                    "session {}: {}sent {}, acked {}, resent {}, reconnects {}, {:.0} msg/s acked, close handshake {}",
                    r.session,
                    if interrupted { "interrupted; " } else { "" },
                    r.stats.sent,
                    r.stats.acked,
                    r.stats.resent,
                    r.stats.reconnects,
                    r.messages_per_sec,
                    r.close_handshake_ms
                        .map_or("not completed".to_owned(), |ms| format!("{ms:.2} ms"))
                ),
            );
            if !r.unconfirmed.is_empty() {
                let n = r.unconfirmed.end - r.unconfirmed.start;
                say(
                    a.json,
                    &format!(
                        "unconfirmed: {} ({n} messages) sent but never confirmed processed",
                        if n == 1 {
                            format!("seq {}", r.unconfirmed.start)
                        } else {
                            format!("seqs {} to {}", r.unconfirmed.start, r.unconfirmed.end - 1)
                        }
                    ),
                );
            }
            if let Some(e) = &r.error {
                eprintln!("ack-demo: {e}");
            }
            if a.json {
                print_json_line(&client_json(&r, interrupted))?;
            }
            Ok(interrupt.exit_code(r.completed))
        }
    }
}

/// A heartbeat interval in milliseconds: three of them (the dead-peer
/// bound) must fit any clock, so at most an hour.
fn heartbeat_ms() -> clap::builder::RangedU64ValueParser<u64> {
    clap::value_parser!(u64).range(1..=3_600_000)
}

/// Payload bytes: what one DATA frame carries at most.
fn payload_bytes() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(0..=ack_demo::MAX_PAYLOAD as u64)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_numeric_flag_refuses_hostile_values() {
        cli_values::assert_numeric_flags_refuse_hostile_values(&super::Cli::command());
    }
}
