//! The tour: every demo pair on loopback, one report.
//!
//! Each crate contributes a section, in a module of its own
//! ([`crate::stream_tour`], [`crate::framing_tour`], [`crate::ack_tour`], [`crate::buffer_tour`],
//! [`crate::audio_tour`], [`crate::tcp_tour`]): a function that runs its
//! demo in-process on `127.0.0.1:0`, checks what must hold, and returns the
//! lines to print and the figures as JSON. This module runs them in order.

use std::time::Instant;

use serde_json::json;

use crate::Error;

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
    /// `stream`: what send() calls become at the reader (the MTU 576
    /// setting needs root).
    Stream,
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
    pub const ALL: [Part; 6] = [
        Part::Stream,
        Part::Framing,
        Part::AckDemo,
        Part::BufferDemo,
        Part::UdpAudio,
        Part::TcpWatch,
    ];

    /// The section's key in the JSON report (`ack_demo`).
    pub fn id(self) -> &'static str {
        match self {
            Part::Stream => "stream",
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
            if !line.is_empty() {
                out.push_str("   ");
            }
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
            Part::Stream => crate::stream_tour::section(settings.quick),
            Part::Framing => crate::framing_tour::section(settings.quick)
                .unwrap_or_else(|e| Section::failed(part, crate::framing_tour::TITLE, &e)),
            Part::AckDemo => crate::ack_tour::section(settings.quick)
                .unwrap_or_else(|e| Section::failed(part, crate::ack_tour::TITLE, &e)),
            Part::BufferDemo => crate::buffer_tour::section(settings.quick),
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
