//! What each `tcp-watch` command does, given its settings: the binary only
//! parses arguments into these and reports errors.
//!
//! Standard output carries the result (the account, or with `json` exactly
//! one JSON document); progress and notes go to standard error.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use crate::account;
use crate::capture::{self, CaptureReader};
use crate::error::Error;
use crate::output::{JsonWriter, Totals};
use crate::pipeline::{self, Options, Progress, RunSummary, StreamReport};

/// `tcp-watch analyze` (and `extract`, which is `analyze` with extraction
/// and a short summary).
#[derive(Debug, Clone)]
pub struct Analyze {
    /// Captures (`-` for stdin), each analysed on its own.
    pub captures: Vec<PathBuf>,
    /// One JSON document on stdout instead of the account.
    pub json: bool,
    /// Only this stream id in the account or the document's `streams`.
    pub stream: Option<u64>,
    /// Every event line, not the first [`account::DEFAULT_LINES`].
    pub all: bool,
    /// The pipeline's settings (extraction directory included).
    pub options: Options,
    /// No per-stream account: the summary only (`extract`).
    pub summary_only: bool,
}

fn stdout_error(e: io::Error) -> Error {
    Error::Io {
        path: "standard output".into(),
        source: e,
    }
}

/// Progress on standard error, at most twice a second, only on a terminal.
struct Meter {
    on: bool,
    last: Instant,
    started: Instant,
}

impl Meter {
    fn new() -> Meter {
        let now = Instant::now();
        Meter {
            on: io::stderr().is_terminal(),
            last: now,
            started: now,
        }
    }

    fn tick(&mut self, name: &str, p: &Progress) {
        if !self.on || self.last.elapsed().as_millis() < 500 {
            return;
        }
        self.last = Instant::now();
        let s = self.started.elapsed().as_secs_f64().max(1e-9);
        eprint!(
            "\r{name}: {:.0} MB, {} frames ({:.0} MB/s), {} streams open, {} done   ",
            p.bytes as f64 / 1e6,
            p.frames,
            p.bytes as f64 / 1e6 / s,
            p.open_streams,
            p.reported
        );
    }

    fn done(&self) {
        if self.on {
            eprint!("\r{:100}\r", "");
        }
    }
}

/// Runs `analyze`; `stop` ends the reading early (Ctrl-C), with the report
/// of what was read.
pub fn analyze(cmd: &Analyze, stop: &AtomicBool) -> Result<(Vec<RunSummary>, Totals), Error> {
    let names: Vec<String> = cmd
        .captures
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    run_inputs(
        cmd,
        &names,
        &mut |i| capture::open_path(&cmd.captures[i]),
        stop,
    )
}

/// `tcp-watch live`: the capture settings; the rest is [`Analyze`]'s.
#[derive(Debug, Clone)]
pub struct Live {
    /// Device name, or `any`.
    pub interface: String,
    /// Which connections to keep.
    pub filter: crate::live::Filter,
    /// Bytes kept per frame (0: the most).
    pub snaplen: u32,
    /// Also write the kept frames to this pcap file.
    pub write: Option<PathBuf>,
    /// Stop after this long.
    pub duration: Option<std::time::Duration>,
}

/// Runs `live`: captures until `stop` (Ctrl-C) or the duration, analysing
/// as it goes; the report covers everything captured.
pub fn live(
    cmd: &Analyze,
    live: &Live,
    stop: &std::sync::Arc<AtomicBool>,
) -> Result<(Vec<RunSummary>, Totals), Error> {
    use crate::live::LiveCapture;
    let capture = LiveCapture::open(
        &live.interface,
        live.filter.clone(),
        live.snaplen,
        std::sync::Arc::clone(stop),
    )?;
    let stats = capture.stats_handle();
    let source: Box<dyn io::Read> = match &live.write {
        Some(path) => {
            let file = std::fs::File::create(path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            Box::new(capture.tee(file))
        }
        None => Box::new(capture),
    };
    if let Some(d) = live.duration {
        let stop = std::sync::Arc::clone(stop);
        std::thread::spawn(move || {
            std::thread::sleep(d);
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
    }
    eprintln!(
        "capturing on {} ({}); Ctrl-C ends it with the report",
        live.interface,
        if live.filter.is_all() {
            "every TCP connection".to_string()
        } else {
            format!("filter `{}`", live.filter)
        }
    );
    let name = format!("live:{}", live.interface);
    let mut source = Some(source);
    // The capture ends the stream when stopped, so the pipeline itself is
    // never stopped: what the socket had queued is still analysed.
    let never = AtomicBool::new(false);
    let result = run_inputs(
        cmd,
        std::slice::from_ref(&name),
        &mut |_| {
            let s = source
                .take()
                .ok_or_else(|| Error::Settings("the live capture can only be read once".into()))?;
            CaptureReader::new(name.clone(), s)
        },
        &never,
    );
    let s = stats.get();
    eprintln!(
        "{}: {} frames seen, {} kept by the filter, {} cut by the snap length, {} dropped by the kernel{}",
        name,
        s.frames,
        s.matched,
        s.truncated,
        s.kernel_drops,
        match &live.write {
            Some(p) => format!("; written to {}", p.display()),
            None => String::new(),
        }
    );
    result
}

fn run_inputs(
    cmd: &Analyze,
    names: &[String],
    open: &mut dyn FnMut(usize) -> Result<CaptureReader<Box<dyn io::Read>>, Error>,
    stop: &AtomicBool,
) -> Result<(Vec<RunSummary>, Totals), Error> {
    // The first input is opened before anything is written, so that an
    // unreadable capture leaves stdout empty rather than half a document.
    let mut first = Some(open(0)?);
    let stdout = io::stdout().lock();
    let mut out = io::BufWriter::with_capacity(1 << 16, stdout);
    let mut json = if cmd.json {
        Some(JsonWriter::begin(&mut out).map_err(stdout_error)?)
    } else {
        None
    };
    let mut totals = Totals::default();
    let mut summaries = Vec::new();
    let several = names.len() > 1;
    let outcome: Result<(), Error> = 'inputs: {
        for (i, name) in names.iter().enumerate() {
            let opened = match first.take() {
                Some(r) => Ok(r),
                None => open(i),
            };
            let mut reader = match opened {
                Ok(r) => r,
                Err(e) => break 'inputs Err(e),
            };
            let mut options = cmd.options.clone();
            if several {
                options.extract = options.extract.map(|d| d.join(i.to_string()));
            }
            let mut meter = Meter::new();
            // The account goes out in id order: a stream's text waits for
            // those before it (only text waits, and only behind a stream still
            // open).
            let mut pending: std::collections::BTreeMap<u64, Vec<u8>> = Default::default();
            let mut next = 0u64;
            let clear = meter.on;
            let mut each = |r: StreamReport| -> Result<(), Error> {
                totals.add(&r);
                if cmd.stream.is_some_and(|s| s != r.id) {
                    return Ok(());
                }
                match &mut json {
                    Some(j) => j.stream(&r).map_err(stdout_error),
                    None if cmd.summary_only => Ok(()),
                    None => {
                        let mut text = Vec::new();
                        if several {
                            writeln!(text, "[{name}]").map_err(stdout_error)?;
                        }
                        let limit = (!cmd.all).then_some(account::DEFAULT_LINES);
                        account::write_stream(&mut text, &r, limit).map_err(stdout_error)?;
                        pending.insert(r.id, text);
                        if cmd.stream.is_some() {
                            next = r.id;
                        }
                        if clear {
                            eprint!("\r{:100}\r", "");
                        }
                        let mut stdout = io::stdout().lock();
                        while let Some(text) = pending.remove(&next) {
                            stdout.write_all(&text).map_err(stdout_error)?;
                            next += 1;
                        }
                        Ok(())
                    }
                }
            };
            let mut tick = |p: &Progress| meter.tick(name, p);
            let summary = match pipeline::run(i, &mut reader, &options, stop, &mut each, &mut tick)
            {
                Ok(s) => s,
                Err(e) => break 'inputs Err(e),
            };
            meter.done();
            // Streams after a gap in the ids (none expected: each is reported
            // once) still go out, in order.
            let mut stdout = io::stdout().lock();
            for text in pending.into_values() {
                stdout.write_all(&text).map_err(stdout_error)?;
            }
            drop(stdout);
            summaries.push(summary);
        }
        Ok(())
    };
    if let Err(e) = outcome {
        // The document still ends, with what was read.
        if let Some(j) = json.take() {
            let _ = j.end(&summaries, &totals);
        }
        return Err(e);
    }
    match json {
        Some(j) => {
            j.end(&summaries, &totals).map_err(stdout_error)?;
            // The human summary, on stderr, so that stdout is the document.
            account::write_summary(&mut io::stderr().lock(), &summaries, &totals)
                .map_err(stdout_error)?;
        }
        None => {
            account::write_summary(&mut out, &summaries, &totals).map_err(stdout_error)?;
            if let Some(dir) = &cmd.options.extract {
                writeln!(
                    out,
                    "extracted {} streams to {} (index: {}); gaps {}",
                    totals.streams,
                    dir.display(),
                    dir.join(if several {
                        "<input>/streams.json"
                    } else {
                        "streams.json"
                    })
                    .display(),
                    cmd.options.gaps.name()
                )
                .map_err(stdout_error)?;
            }
        }
    }
    out.flush().map_err(stdout_error)?;
    for s in &summaries {
        if s.stopped {
            eprintln!("{}: stopped early; the report covers what was read", s.path);
        }
    }
    Ok((summaries, totals))
}
