//! The settings side by side, as text: one column per setting, then the
//! send and read sizes as histograms.

use super::run::Outcome;
use super::{SizeHistogram, StreamCounts, ledger::BUCKETS};

/// One figure of a run's counts.
type Count = fn(&StreamCounts) -> u64;

/// The table of every outcome, with a line under it saying what it shows.
pub fn render(outcomes: &[Outcome]) -> String {
    let heads: Vec<String> = outcomes
        .iter()
        .map(|o| o.setting().id().to_owned())
        .collect();
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut row = |label: &str, cell: &dyn Fn(&super::SettingRun) -> String| {
        let cells = outcomes
            .iter()
            .map(|o| o.ran().map_or_else(|| "-".to_owned(), cell))
            .collect();
        rows.push((label.to_owned(), cells));
    };
    row("path", &|r| r.path.clone());
    row("reader sleeps before each read", &|r| {
        if r.read_delay_ms > 0.0 {
            format!("{:.0} ms", r.read_delay_ms)
        } else {
            "no".to_owned()
        }
    });
    row("MSS, TCP_MAXSEG (bytes)", &|r| {
        r.counts.mss_bytes.map_or("?".to_owned(), |m| m.to_string())
    });
    let counted: [(&str, Count); 11] = [
        ("messages (one send() each)", |c| c.messages),
        ("send() calls", |c| c.send_calls),
        ("bytes sent", |c| c.sent_bytes),
        ("read() calls", |c| c.read_calls),
        ("bytes read", |c| c.read_bytes),
        ("reads that were one whole message", |c| {
            c.reads_exactly_one_message
        }),
        ("reads ending inside a message", |c| {
            c.reads_ending_inside_a_message
        }),
        ("reads holding 2+ messages", |c| {
            c.reads_holding_several_messages
        }),
        ("most messages in one read", |c| c.most_messages_in_one_read),
        ("messages split across reads", |c| {
            c.messages_split_across_reads
        }),
        ("most reads for one message", |c| {
            c.most_reads_for_one_message
        }),
    ];
    for (label, count) in counted {
        row(label, &|r| count(&r.counts).to_string());
    }
    row("messages over the MSS, split", &|r| {
        format!(
            "{} of {}",
            r.counts.messages_over_mss_split, r.counts.messages_over_mss
        )
    });
    row("framing: messages recovered", &|r| {
        format!("{} of {}", r.framing.identical, r.counts.messages)
    });
    row("bytes read = bytes sent", &|r| {
        if r.counts.adds_up() { "yes" } else { "NO" }.to_owned()
    });
    row("duration (s)", &|r| format!("{:.2}", r.duration_s));

    let mut out = grid("", &heads, &rows);
    for o in outcomes.iter().filter(|o| o.ran().is_none()) {
        out.push_str(&o.summary());
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&histograms(outcomes));
    out
}

/// Sends and reads by size, a pair of columns per setting.
fn histograms(outcomes: &[Outcome]) -> String {
    let runs: Vec<&super::SettingRun> = outcomes.iter().filter_map(Outcome::ran).collect();
    let mut heads = Vec::new();
    for r in &runs {
        heads.push(format!("{} sends", r.setting.id()));
        heads.push("reads".to_owned());
    }
    let used = |h: &SizeHistogram, k: usize| h.counts[k] > 0;
    let rows: Vec<(String, Vec<String>)> = (0..BUCKETS)
        .filter(|&k| {
            runs.iter()
                .any(|r| used(&r.counts.send_sizes, k) || used(&r.counts.read_sizes, k))
        })
        .map(|k| {
            let cells = runs
                .iter()
                .flat_map(|r| {
                    [
                        r.counts.send_sizes.counts[k].to_string(),
                        r.counts.read_sizes.counts[k].to_string(),
                    ]
                })
                .collect();
            (SizeHistogram::label(k), cells)
        })
        .collect();
    grid("size", &heads, &rows)
}

/// A left-aligned label column and right-aligned value columns.
fn grid(corner: &str, heads: &[String], rows: &[(String, Vec<String>)]) -> String {
    let label_w = rows
        .iter()
        .map(|(l, _)| l.len())
        .chain([corner.len()])
        .max()
        .unwrap_or(0);
    let widths: Vec<usize> = (0..heads.len())
        .map(|i| {
            rows.iter()
                .map(|(_, cells)| cells[i].len())
                .chain([heads[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = format!("{corner:<label_w$}");
    for (h, w) in heads.iter().zip(&widths) {
        out.push_str(&format!("  {h:>w$}"));
    }
    out.push('\n');
    for (label, cells) in rows {
        out.push_str(&format!("{label:<label_w$}"));
        for (cell, w) in cells.iter().zip(&widths) {
            out.push_str(&format!("  {cell:>w$}"));
        }
        out.push('\n');
    }
    out
}
