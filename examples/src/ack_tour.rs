//! The tour's `ack-demo` section: an acknowledged session through a server
//! crash (a real SIGKILL of a real process), and the naive close losing
//! messages beside it.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use ack_demo::client::{self, ClientSettings};
use ack_demo::server::{Server, ServerSettings};
use serde_json::json;

use crate::Error;
use crate::tour::{Part, Section};

/// The section's heading.
pub const TITLE: &str = "ack-demo: acknowledged session through a crash; the naive close beside it";

/// The hidden flag that makes the tour binary an `ack-demo` server, so that
/// the tour can kill a real process.
pub const SERVER_FLAG: &str = "--internal-ack-server";

/// Runs an `ack-demo` server (the child side of [`SERVER_FLAG`]): `listen`,
/// `out`, and the per-message processing delay in microseconds.
///
/// # Errors
/// The server's start-up errors.
pub fn serve(listen: SocketAddr, out: PathBuf, delay_us: u64) -> Result<(), ack_demo::Error> {
    let mut settings = ServerSettings::new(out);
    settings.process_delay = Duration::from_micros(delay_us);
    let server = Server::bind(listen, settings)?;
    println!("listening on {}", server.local_addr());
    server.run();
    Ok(())
}

/// A helper process, killed on drop.
struct Child_ {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Child_ {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long a helper that printed no address may take to exit before it is
/// killed (its stderr is read once it has gone).
const CHILD_EXIT_WAIT: Duration = Duration::from_secs(5);

fn spawn_server(listen: &str, out: &Path) -> Result<Child_, Error> {
    let exe = std::env::current_exe().map_err(|e| Error::io("finding the tour binary", e))?;
    let mut command = Command::new(exe);
    command
        .args([SERVER_FLAG, listen])
        .arg(out)
        .arg("100")
        .env("RUST_LOG", "error");
    start_listening_child(command, "the ack-demo server process", CHILD_EXIT_WAIT)
}

/// Starts `command`, which prints `listening on ADDR` when ready. If it
/// prints anything else, or nothing, the error carries its exit status and
/// what it wrote on stderr (the real cause: a full disk, a port in use).
fn start_listening_child(
    mut command: Command,
    what: &str,
    exit_wait: Duration,
) -> Result<Child_, Error> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("starting {what}"), e))?;
    // Drained for the child's whole life, so that it never blocks on a
    // full pipe; the text is only looked at if it fails to start.
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let said = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout is piped");
    let read = BufReader::new(stdout).read_line(&mut line);
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok());
    if let (Ok(_), Some(addr)) = (&read, addr) {
        return Ok(Child_ { child, addr });
    }
    let status = match wait_for_exit(&mut child, exit_wait) {
        Some(status) => status.to_string(),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            format!("still running after {} ms, killed", exit_wait.as_millis())
        }
    };
    let said = said.join().unwrap_or_default();
    let said = said.trim();
    let stderr = match (said.is_empty(), &read) {
        (false, _) => said.to_owned(),
        (true, Err(e)) => format!("nothing on stderr; reading its stdout failed: {e}"),
        (true, Ok(_)) => format!(
            "nothing on stderr; its first line was {line:?}, expected \"listening on ADDR\""
        ),
    };
    Err(Error::ChildFailed {
        what: what.to_owned(),
        status,
        stderr,
    })
}

/// The child's exit status, polled until `limit`; `None` if it is still
/// running.
fn wait_for_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            Ok(None) | Err(_) => return None,
        }
    }
}

fn out_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A range of seqs for people: `seqs 100 to 999`, `seq 7`, `no seqs`.
fn seq_span(seqs: &std::ops::Range<u64>) -> String {
    match seqs.end.saturating_sub(seqs.start) {
        0 => "no seqs".to_owned(),
        1 => format!("seq {}", seqs.start),
        _ => format!("seqs {} to {}", seqs.start, seqs.end - 1),
    }
}

/// The section.
pub fn section(quick: bool) -> Result<Section, Error> {
    let dir = std::env::temp_dir().join(format!("tour-ack-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("creating the directory {}", dir.display()), e))?;
    let out = dir.join("out.txt");
    let count: u64 = if quick { 2000 } else { 10_000 };
    let size = 32;

    // 1. Acknowledged session, server SIGKILLed mid-way and restarted.
    let server = spawn_server("127.0.0.1:0", &out)?;
    let addr = server.addr;
    let mut settings = ClientSettings::new(addr);
    settings.count = count;
    settings.size = size;
    settings.window = 32;
    settings.session = 7;
    settings.reconnect_for = Duration::from_secs(20);
    settings.heartbeat = Duration::from_millis(500);
    let session = thread::spawn(move || client::run(&settings));
    // Kill once a third of the messages are durable lines.
    while (out_lines(&out).len() as u64) < count / 3 && !session.is_finished() {
        thread::sleep(Duration::from_millis(5));
    }
    let lines_at_kill = out_lines(&out).len();
    drop(server); // SIGKILL
    let restarted = spawn_server(&addr.to_string(), &out)?;
    let report = session.join().expect("client thread does not panic");
    drop(restarted);
    let lines = out_lines(&out);
    let exact = lines.len() as u64 == count
        && lines.iter().enumerate().all(|(seq, l)| {
            let mut want = Vec::new();
            ack_demo::wire::demo_payload(seq as u64, size, &mut want);
            l.as_bytes() == want
        });

    // 2. The naive close against a server that stops reading after 100.
    let naive_out = dir.join("naive.txt");
    let mut s = ServerSettings::new(naive_out.clone());
    s.stop_reading_after = Some(100);
    s.heartbeat = Duration::from_millis(300);
    let server = Server::bind(SocketAddr::from(([127, 0, 0, 1], 0)), s)?;
    let naive_addr = server.local_addr();
    let stop = server.stop_handle();
    let serving = thread::spawn(move || server.run());
    let naive = ack_demo::naive::run(naive_addr, 1, 1000, 64, Duration::from_secs(3))?;
    let naive_processed = out_lines(&naive_out).len();
    // The acknowledged client against the same early-closing server.
    let mut acked = ClientSettings::new(naive_addr);
    acked.count = 1000;
    acked.session = 2;
    acked.window = 8;
    acked.heartbeat = Duration::from_millis(300);
    let acked = client::run(&acked);
    stop.stop();
    let _ = serving.join();
    let _ = std::fs::remove_dir_all(&dir);

    let passed = report.completed
        && exact
        && report.stats.reconnects >= 1
        && naive.accepted_messages == 1000
        && naive_processed == 100
        && !acked.completed;
    let lines_out = vec![
        format!(
            "acked session: {count} x {size} B, window 32; server SIGKILLed with {lines_at_kill} lines durable, restarted on {addr}"
        ),
        format!(
            "  client: reconnects {}, resent {}, acked {}/{count}, close handshake {} -> out file: {} lines, {}",
            report.stats.reconnects,
            report.stats.resent,
            report.stats.acked,
            report
                .close_handshake_ms
                .map_or("not completed".to_owned(), |ms| format!(
                    "{ms:.2} ms (count + digest matched)"
                )),
            lines.len(),
            if exact {
                "msg 0 to N-1 each exactly once, in order"
            } else {
                "NOT exact"
            }
        ),
        format!(
            "naive close: send() accepted {} of 1000 messages ({} bytes), then shutdown + close",
            naive.accepted_messages, naive.accepted_bytes
        ),
        format!(
            "  server processed {naive_processed}; {} lost, and the sender never knew. After close: {}",
            1000 - naive_processed as u64,
            naive.after_close
        ),
        format!(
            "acked client, same server: stopped with {} of 1000 confirmed; it reports {} unconfirmed",
            acked.stats.acked,
            seq_span(&acked.unconfirmed)
        ),
    ];
    Ok(Section {
        id: Part::AckDemo.id(),
        title: TITLE.to_owned(),
        lines: lines_out,
        passed,
        figures: json!({
            "acked_session": report,
            "lines_at_kill": lines_at_kill,
            "out_file_exact": exact,
            "naive": naive,
            "naive_processed": naive_processed,
            "acked_vs_early_close": acked,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_spans_read_as_words() {
        assert_eq!(seq_span(&(100..1000)), "seqs 100 to 999");
        assert_eq!(seq_span(&(7..8)), "seq 7");
        assert_eq!(seq_span(&(5..5)), "no seqs");
    }

    fn shell(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    #[test]
    fn a_child_that_fails_to_start_is_reported_with_its_stderr_and_status() {
        let err = start_listening_child(
            shell(
                "echo 'store /tmp/t/out.txt: opening: No space left on device (os error 28)' >&2; exit 3",
            ),
            "the ack-demo server process",
            CHILD_EXIT_WAIT,
        )
        .err()
        .expect("the child failed");
        let text = err.to_string();
        assert!(
            text.contains("No space left on device") && text.contains("/tmp/t/out.txt"),
            "{text}"
        );
        assert!(text.contains("exit status: 3"), "{text}");
        assert!(text.contains("the ack-demo server process"), "{text}");
    }

    #[test]
    fn a_child_that_says_something_else_is_quoted() {
        let err = start_listening_child(shell("echo hello; exit 0"), "the helper", CHILD_EXIT_WAIT)
            .err()
            .expect("no address");
        let text = err.to_string();
        assert!(
            text.contains("\"hello\\n\"") && text.contains("listening on ADDR"),
            "{text}"
        );
    }

    #[test]
    fn a_child_that_hangs_without_an_address_is_killed() {
        let err = start_listening_child(
            shell("echo wrong; exec sleep 60"),
            "the helper",
            Duration::from_millis(200),
        )
        .err()
        .expect("no address");
        assert!(err.to_string().contains("killed"), "{err}");
    }

    #[test]
    fn a_child_that_listens_is_started() {
        let child = start_listening_child(
            shell("echo 'listening on 127.0.0.1:9'; exec sleep 60"),
            "the helper",
            CHILD_EXIT_WAIT,
        )
        .expect("it listens");
        assert_eq!(child.addr, SocketAddr::from(([127, 0, 0, 1], 9)));
    }
}
