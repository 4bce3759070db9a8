//! The tour: every demo pair on loopback, one report.
//!
//! Each crate contributes a section: a function that runs its demo
//! in-process on `127.0.0.1:0`, checks what must hold, and returns the lines
//! to print and the figures as JSON.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::Instant;

use framing::{Config, Decoder};
use serde_json::json;

use crate::Error;
use crate::echo::{ClientReport, ClientSettings, EchoServer, ServerSettings, run_client};

/// How big the tour's runs are.
#[derive(Debug, Clone, Copy, Default)]
pub struct TourSettings {
    /// Smaller counts, for smoke tests of the tour itself.
    pub quick: bool,
    /// Run only this section (`None`: all of them).
    pub only: Option<Part>,
}

/// The tour's sections, to run one alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// `framing`: framed-echo over loopback TCP.
    Framing,
    /// `ack-demo`: the acknowledged session through a crash.
    AckDemo,
    /// `buffer-demo`: the UDP sink sweep.
    BufferDemo,
    /// `udp-audio`: speech over lossy UDP.
    UdpAudio,
    /// `tcp-watch`: loss on a real path (root; skipped otherwise).
    TcpWatch,
}

impl Part {
    /// Every section, in the order the tour runs them.
    pub const ALL: [Part; 5] = [
        Part::Framing,
        Part::AckDemo,
        Part::BufferDemo,
        Part::UdpAudio,
        Part::TcpWatch,
    ];

    /// The section's key in the JSON report (`ack_demo`).
    pub fn id(self) -> &'static str {
        match self {
            Part::Framing => "framing",
            Part::AckDemo => "ack_demo",
            Part::BufferDemo => "buffer_demo",
            Part::UdpAudio => "udp_audio",
            Part::TcpWatch => "tcp_watch",
        }
    }
}

/// One demo's part of the report.
#[derive(Debug, Clone)]
pub struct Section {
    /// The key of its figures in the JSON report ([`Part::id`]).
    pub id: &'static str,
    /// Heading.
    pub title: String,
    /// Lines of the report, already formatted.
    pub lines: Vec<String>,
    /// Whether everything the demo must show held.
    pub passed: bool,
    /// The figures, for `--json`.
    pub figures: serde_json::Value,
}

impl Section {
    /// The section as text: its heading with the verdict, then its lines.
    pub fn render(&self) -> String {
        let mark = match (self.passed, self.figures.get("skipped")) {
            (true, Some(_)) => "skipped",
            (true, None) => "ok",
            (false, _) => "FAILED",
        };
        let mut out = format!("== {} [{mark}]\n", self.title);
        for line in &self.lines {
            out.push_str("   ");
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
        out
    }

    pub(crate) fn failed(part: Part, title: &str, error: &Error) -> Section {
        Section {
            id: part.id(),
            title: title.to_owned(),
            lines: vec![format!("FAILED: {error}")],
            passed: false,
            figures: json!({ "error": error.to_string() }),
        }
    }
}

/// The whole tour's report.
#[derive(Debug, Clone)]
pub struct Report {
    /// Sections in the order run.
    pub sections: Vec<Section>,
    /// Wall time of the tour, in seconds.
    pub seconds: f64,
    /// Stopped by SIGINT/SIGTERM before every section ran.
    pub interrupted: bool,
}

impl Report {
    /// True when every section passed.
    pub fn passed(&self) -> bool {
        self.sections.iter().all(|s| s.passed)
    }

    /// The report as text: every section, then the verdict.
    pub fn render(&self) -> String {
        let mut out: String = self.sections.iter().map(Section::render).collect();
        out.push_str(&self.render_verdict());
        out
    }

    /// The last line of the report.
    pub fn render_verdict(&self) -> String {
        let verdict = match (self.interrupted, self.passed()) {
            (true, true) => format!(
                "interrupted after {} sections, all passed",
                self.sections.len()
            ),
            (true, false) => format!(
                "interrupted after {} sections, SOME FAILED",
                self.sections.len()
            ),
            (false, true) => "all sections passed".to_owned(),
            (false, false) => "SOME SECTIONS FAILED".to_owned(),
        };
        format!("tour finished in {:.1} s: {verdict}\n", self.seconds)
    }

    /// The figures of every section as one JSON object, each under its
    /// section's id (`framing`, `ack_demo`, ...).
    pub fn to_json(&self) -> serde_json::Value {
        let sections: serde_json::Map<String, serde_json::Value> = self
            .sections
            .iter()
            .map(|s| (s.id.to_owned(), s.figures.clone()))
            .collect();
        json!({
            "passed": self.passed(),
            "interrupted": self.interrupted,
            "duration_s": self.seconds,
            "sections": sections,
        })
    }
}

/// Runs every section.
pub fn run(settings: TourSettings) -> Report {
    run_with(settings, &cli_conventions::Interrupt::new(), |_| {})
}

/// Runs every section, handing each to `on_section` as it ends (progress
/// for a run of many seconds). Stops between sections once `interrupt` is
/// set; the report then has the sections that ran.
pub fn run_with(
    settings: TourSettings,
    interrupt: &cli_conventions::Interrupt,
    mut on_section: impl FnMut(&Section),
) -> Report {
    let start = Instant::now();
    let mut sections = Vec::new();
    let mut interrupted = false;
    for part in Part::ALL {
        if settings.only.is_some_and(|only| only != part) {
            continue;
        }
        if interrupt.requested() {
            interrupted = true;
            break;
        }
        let section = match part {
            Part::Framing => framing_section(settings)
                .unwrap_or_else(|e| Section::failed(part, FRAMING_TITLE, &e)),
            Part::AckDemo => crate::ack_tour::section(settings.quick)
                .unwrap_or_else(|e| Section::failed(part, crate::ack_tour::TITLE, &e)),
            Part::BufferDemo => buffer_section(settings.quick),
            Part::UdpAudio => crate::audio_tour::section(settings.quick)
                .unwrap_or_else(|e| Section::failed(part, crate::audio_tour::TITLE, &e)),
            Part::TcpWatch => crate::tcp_tour::section(settings.quick),
        };
        on_section(&section);
        sections.push(section);
    }
    Report {
        sections,
        seconds: start.elapsed().as_secs_f64(),
        interrupted: interrupted || interrupt.requested(),
    }
}

/// The framing section's heading.
const FRAMING_TITLE: &str = "framing: framed-echo over loopback TCP";

/// Largest frame the tour's server accepts.
const TOUR_MAX_FRAME: usize = 1024 * 1024;

fn framing_section(settings: TourSettings) -> Result<Section, Error> {
    let framing = Config::u32_be()
        .to_builder()
        .max_frame_len(TOUR_MAX_FRAME)
        .build()?;
    let server_settings = ServerSettings::for_framing(framing);
    let mut server = EchoServer::bind(SocketAddr::from(([127, 0, 0, 1], 0)), server_settings)?;
    let addr = server.local_addr();
    let stop = server.stop_handle();
    let serving = thread::spawn(move || server.run());

    let scale = if settings.quick { 10 } else { 1 };
    let runs = (|| -> Result<_, Error> {
        let small = run_client(addr, client(framing, 2_000_000 / scale / scale, 64))?;
        let large = run_client(addr, client(framing, 2_000 / scale / scale, 256 * 1024))?;
        let (good, hostile) = thread::scope(|scope| {
            let good = scope.spawn(|| run_client(addr, client(framing, 50_000 / scale, 1024)));
            let hostile = hostile_clients(addr);
            (good.join().expect("client thread does not panic"), hostile)
        });
        Ok((small, large, good?, hostile?))
    })();
    stop.stop()
        .map_err(|e| Error::io("stopping the server", e))?;
    let stats = serving.join().expect("server thread does not panic")?;
    let (small, large, good, hostile) = runs?;

    let memory = hostile_header_capacity();
    let mut lines = vec![
        format!("server on {addr}, 4-byte big-endian frames, limit {TOUR_MAX_FRAME} bytes"),
        rate_line("small frames", &small),
        rate_line("large frames", &large),
        format!(
            "hostile       {} of {} hostile clients dropped; a good client echoed {}/{} x 1 KiB meanwhile",
            stats.dropped,
            hostile.len(),
            good.messages,
            50_000 / scale,
        ),
    ];
    for dropped in &stats.dropped_clients {
        lines.push(format!(
            "              dropped {}: {}",
            dropped.peer, dropped.reason
        ));
    }
    lines.push(format!(
        "memory        a header declaring 8 MiB, then 1 byte: the decoder holds {memory} bytes"
    ));
    lines.push(format!(
        "limits        {} MiB buffered by all clients together (peak {:.1} MiB, {} closed over it), \
         idle timeout {} s ({} closed), backlog {}",
        server_settings.max_buffered_total >> 20,
        stats.peak_buffered_bytes as f64 / (1u64 << 20) as f64,
        stats.over_budget,
        server_settings.idle_timeout.as_secs_f64(),
        stats.timed_out,
        server_settings.backlog
    ));
    let passed = stats.dropped == hostile.len() as u64 && stats.completed == 3;
    if !passed {
        lines.push(format!(
            "expected {} drops and 3 clean clients, server saw {} drops and {} clean",
            hostile.len(),
            stats.dropped,
            stats.completed
        ));
    }
    Ok(Section {
        id: Part::Framing.id(),
        title: FRAMING_TITLE.to_owned(),
        lines,
        passed,
        figures: json!({
            "small": small, "large": large, "good_during_hostile": good,
            "server": stats, "hostile_header_decoder_capacity": memory,
        }),
    })
}

fn client(framing: Config, count: u64, size: usize) -> ClientSettings {
    ClientSettings {
        count,
        size,
        framing,
        timeout: crate::echo::DEFAULT_TIMEOUT,
    }
}

fn rate_line(label: &str, r: &ClientReport) -> String {
    format!(
        "{label:<13} {} x {} B echoed: {:.0} msg/s, {:.1} MB/s",
        r.messages, r.size, r.messages_per_sec, r.mb_per_sec
    )
}

/// Sends three kinds of bad frame, each on its own connection, and waits
/// for the server to close each. Returns what each sent.
fn hostile_clients(addr: SocketAddr) -> Result<Vec<&'static str>, Error> {
    let attacks: [(&'static str, &[u8]); 3] = [
        ("16 MiB length", &[0x01, 0x00, 0x00, 0x00, b'x']),
        ("4 GiB length", &[0xff, 0xff, 0xff, 0xff]),
        (
            "EOF inside a frame",
            &[0x00, 0x00, 0x00, 100, b'a', b'b', b'c'],
        ),
    ];
    let mut sent = Vec::new();
    for (what, bytes) in attacks {
        let mut stream =
            TcpStream::connect(addr).map_err(|e| Error::io("connecting a hostile client", e))?;
        stream
            .write_all(bytes)
            .and_then(|()| stream.shutdown(Shutdown::Write))
            .map_err(|e| Error::io("sending a hostile frame", e))?;
        // The server closes on us: EOF or a reset both mean it did.
        let mut sink = [0u8; 64];
        loop {
            match stream.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        sent.push(what);
    }
    Ok(sent)
}

/// Capacity of a decoder after a 4-byte header declaring 8 MiB and one byte.
fn hostile_header_capacity() -> usize {
    let mut decoder = Decoder::new(Config::u32_be());
    decoder.feed(&(8u32 * 1024 * 1024).to_be_bytes());
    decoder.feed(b"x");
    decoder.capacity()
}

/// `buffer-demo`: a short sweep, inline vs split, two receive buffers, and
/// a GRO sink on two receivers fed by two GSO threads, at three offered
/// rates; every trial's accounting must close.
fn buffer_section(quick: bool) -> Section {
    let title = "buffer-demo: UDP sink under load, inline vs split, GRO";
    let mut cfg = buffer_demo::sweep::short_sweep_config();
    if quick {
        cfg.secs = 0.1;
        cfg.grid.truncate(2);
    }
    let table = match buffer_demo::sweep::sweep(&cfg, |_| {}) {
        Ok(t) => t,
        Err(e) => {
            return Section {
                id: Part::BufferDemo.id(),
                title: title.to_owned(),
                lines: vec![format!("FAILED: {e}")],
                passed: false,
                figures: json!({ "error": e.to_string() }),
            };
        }
    };
    let open: Vec<String> = table
        .trials
        .iter()
        .filter(|t| t.residual != Some(0))
        .map(|t| {
            format!(
                "{} at {:.0}/s: residual {}",
                t.label,
                t.offered,
                t.residual
                    .map_or("unknown (counters unreadable)".to_owned(), |r| r
                        .to_string())
            )
        })
        .collect();
    let mut lines: Vec<String> = table.to_markdown().lines().map(str::to_owned).collect();
    lines.push(if open.is_empty() {
        format!(
            "accounting closes in all {} trials: sent = delivered + queue drops + kernel drops",
            table.trials.len()
        )
    } else {
        format!("accounting did NOT close: {}", open.join("; "))
    });
    Section {
        id: Part::BufferDemo.id(),
        title: title.to_owned(),
        passed: open.is_empty(),
        lines,
        figures: serde_json::to_value(&table).unwrap_or_default(),
    }
}
