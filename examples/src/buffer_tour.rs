//! The tour's `buffer-demo` section: a short sweep of the UDP sink.

use serde_json::json;

use crate::tour::{Part, Section};

/// `buffer-demo`: a short sweep, inline vs split, two receive buffers, and
/// a GRO sink on two receivers fed by two GSO threads, at three offered
/// rates; every trial's accounting must close.
pub fn section(quick: bool) -> Section {
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
