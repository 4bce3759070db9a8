//! How every program of the workspace talks to its user, implemented once
//! (the rules are written down in `CONVENTIONS.md` at the workspace root).
//!
//! - [`json`]: with `--json`, stdout carries exactly one JSON document and
//!   nothing else, an object with `program`, `version` and `schema`
//!   beside the report's own keys; human text goes to stderr. Long runs may add rows as NDJSON.
//! - [`init_logs`]: `tracing` on stderr, filtered by `RUST_LOG`, coloured
//!   only when stderr is a terminal.
//! - [`exit`]: 0 success, 1 the run or its verdict failed, 2 usage or
//!   configuration, 130 interrupted (after the final report).
//! - [`Interrupt`]: SIGINT and SIGTERM set a flag the run loops check, so
//!   that a long-running role stops, prints its final report and exits
//!   130; a second Ctrl-C ends the process at once.
//!
//! Binaries depend on this crate; libraries do not.

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

/// Exit codes.
pub mod exit {
    use std::process::ExitCode;

    /// The run did what was asked and its verdict passed.
    pub const SUCCESS: u8 = 0;
    /// The run failed, or its verdict did (account open, data lost).
    pub const FAILED: u8 = 1;
    /// Usage or configuration error: nothing was run.
    pub const USAGE: u8 = 2;
    /// Interrupted by SIGINT or SIGTERM, after the final report.
    pub const INTERRUPTED: u8 = 130;

    /// The exit code of a run that ended with `ok` as its verdict, or was
    /// interrupted.
    pub fn verdict(ok: bool, interrupted: bool) -> ExitCode {
        ExitCode::from(if interrupted {
            INTERRUPTED
        } else if ok {
            SUCCESS
        } else {
            FAILED
        })
    }
}

/// The identity every JSON document starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Program {
    /// The binary's name, as typed (`ack-demo`, `framed-echo`).
    pub name: &'static str,
    /// Its version.
    pub version: &'static str,
    /// The version of its JSON layout: raised when a key changes meaning
    /// or goes away.
    pub schema: u32,
}

/// `Program` for the calling crate's version: `program!("ack-demo", 1)`.
#[macro_export]
macro_rules! program {
    ($name:expr, $schema:expr) => {
        $crate::Program {
            name: $name,
            version: env!("CARGO_PKG_VERSION"),
            schema: $schema,
        }
    };
}

/// JSON output.
pub mod json {
    use super::*;

    /// `report` as one JSON document for `program`: an object with
    /// `program`, `version` and `schema` beside the report's own keys (a
    /// report that is not an object goes under `report`; a report key of
    /// the same name is dropped).
    pub fn document<T: Serialize + ?Sized>(
        program: &Program,
        report: &T,
    ) -> serde_json::Result<serde_json::Value> {
        let mut doc = serde_json::Map::new();
        doc.insert("program".into(), program.name.into());
        doc.insert("version".into(), program.version.into());
        doc.insert("schema".into(), program.schema.into());
        match serde_json::to_value(report)? {
            serde_json::Value::Object(fields) => {
                for (k, v) in fields {
                    if !doc.contains_key(&k) {
                        doc.insert(k, v);
                    }
                }
            }
            other => {
                doc.insert("report".into(), other);
            }
        }
        Ok(serde_json::Value::Object(doc))
    }

    /// Prints `report` as the one JSON document of this run on stdout,
    /// pretty-printed, followed by a newline.
    ///
    /// # Errors
    /// Serialising failed (a map with non-string keys) or stdout is gone.
    pub fn print<T: Serialize + ?Sized>(program: &Program, report: &T) -> io::Result<()> {
        let doc = document(program, report).map_err(io::Error::other)?;
        let mut out = io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &doc).map_err(io::Error::other)?;
        writeln!(out)?;
        out.flush()
    }

    /// Prints one NDJSON row (one line) on stdout: progress rows of a long
    /// run given `--interval`.
    ///
    /// # Errors
    /// As [`print`].
    pub fn print_row<T: Serialize + ?Sized>(program: &Program, row: &T) -> io::Result<()> {
        let doc = document(program, row).map_err(io::Error::other)?;
        let mut out = io::stdout().lock();
        serde_json::to_writer(&mut out, &doc).map_err(io::Error::other)?;
        writeln!(out)?;
        out.flush()
    }
}

/// Installs the `tracing` subscriber: stderr, filtered by `RUST_LOG` or by
/// `default` (e.g. `"info"`) when it is unset, ANSI colours only when
/// stderr is a terminal. A second call keeps the first subscriber.
pub fn init_logs(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(io::stderr().is_terminal())
        .with_writer(io::stderr)
        .try_init();
}

/// SIGINT / SIGTERM as a flag. See the crate docs.
#[derive(Debug, Clone, Default)]
pub struct Interrupt {
    /// Set by a signal or by [`request`](Interrupt::request).
    stop: Arc<AtomicBool>,
    /// Set by a signal only.
    signalled: Arc<AtomicBool>,
}

impl Interrupt {
    /// A flag that nothing sets but [`request`](Interrupt::request): for
    /// library callers and tests.
    pub fn new() -> Interrupt {
        Interrupt::default()
    }

    /// A flag SIGINT and SIGTERM set from now on (they no longer end the
    /// process by themselves); a second signal while the flag is set ends
    /// the process at once with exit code 130.
    ///
    /// # Errors
    /// `sigaction` failed.
    pub fn install() -> io::Result<Interrupt> {
        let i = Interrupt::new();
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // Registered first, so it sees the flag as the earlier signal
            // left it.
            signal_hook::flag::register_conditional_shutdown(
                signal,
                i32::from(exit::INTERRUPTED),
                Arc::clone(&i.signalled),
            )?;
            signal_hook::flag::register(signal, Arc::clone(&i.signalled))?;
            signal_hook::flag::register(signal, Arc::clone(&i.stop))?;
        }
        Ok(i)
    }

    /// Sets the stop flag, as a signal would (a timer that ends the run,
    /// a test); [`interrupted`](Interrupt::interrupted) stays false.
    pub fn request(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for, by a signal or by
    /// [`request`](Interrupt::request).
    pub fn requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Whether SIGINT or SIGTERM arrived.
    pub fn interrupted(&self) -> bool {
        self.signalled.load(Ordering::SeqCst)
    }

    /// The stop flag itself, for code that takes an `Arc<AtomicBool>`.
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    /// The exit code for a run that ended with verdict `ok`: 130 if a stop
    /// was requested (signal or [`request`](Interrupt::request)), else 0
    /// or 1. Say "interrupted" in the report first. A program whose run
    /// also ends by itself on the same flag (a duration) uses
    /// `exit::verdict(ok, i.interrupted())` instead.
    pub fn exit_code(&self, ok: bool) -> ExitCode {
        exit::verdict(ok, self.requested())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Report {
        messages: u64,
        seconds_s: f64,
        program: &'static str,
    }

    #[test]
    fn a_document_starts_with_the_program_and_keeps_the_reports_keys() {
        let p = program!("demo", 3);
        let doc = json::document(
            &p,
            &Report {
                messages: 7,
                seconds_s: 1.5,
                program: "not this",
            },
        )
        .unwrap();
        assert_eq!(doc["program"], "demo");
        assert_eq!(doc["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(doc["schema"], 3);
        assert_eq!(doc["messages"], 7);
        assert_eq!(doc["seconds_s"], 1.5);
        let text = serde_json::to_string(&doc).unwrap();
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, doc);
    }

    #[test]
    fn a_report_that_is_not_an_object_goes_under_report() {
        let doc = json::document(&program!("demo", 1), &[1, 2, 3]).unwrap();
        assert_eq!(doc["report"], serde_json::json!([1, 2, 3]));
    }

    #[test]
    fn a_signal_sets_both_flags_and_does_not_end_the_process() {
        let i = Interrupt::install().unwrap();
        assert!(!i.requested() && !i.interrupted());
        // SAFETY: raising a signal whose handler is installed above.
        assert_eq!(unsafe { libc_raise(signal_hook::consts::SIGTERM) }, 0);
        assert!(i.requested());
        assert!(i.interrupted());
        assert_eq!(i.exit_code(true), ExitCode::from(130));
    }

    unsafe extern "C" {
        #[link_name = "raise"]
        fn libc_raise(signal: i32) -> i32;
    }

    #[test]
    fn exit_codes_follow_the_verdict_and_the_interruption() {
        let i = Interrupt::new();
        assert_eq!(i.exit_code(true), ExitCode::from(0));
        assert_eq!(i.exit_code(false), ExitCode::from(1));
        i.clone().request();
        assert!(i.requested());
        assert!(!i.interrupted(), "a request is not a signal");
        assert_eq!(i.exit_code(true), ExitCode::from(130));
        assert_eq!(exit::verdict(true, i.interrupted()), ExitCode::from(0));
    }
}
