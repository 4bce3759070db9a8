//! The tour's first section, the first question people ask: does one
//! `send()` come out as one `recv()`? No: the [`crate::stream`] demo on
//! loopback, with a slow reader, and (root) across an MTU 576 path, side by
//! side, then `framing` giving back every message.

use std::sync::atomic::AtomicBool;

use serde_json::json;

use crate::stream::{self, DEFAULT_SETTINGS, DemoSettings, Setting};
use crate::tour::{Part, Section};

/// The section's heading.
pub const TITLE: &str = "TCP is a byte stream: what send() calls become at the reader";

/// The section: the demo's table, passed when every setting that ran got
/// every byte back and framing recovered every message.
pub fn section(quick: bool) -> Section {
    let settings = DemoSettings {
        messages: if quick {
            100
        } else {
            DEFAULT_SETTINGS.messages
        },
        ..DEFAULT_SETTINGS
    };
    // The tour stops between sections; one setting takes about a second.
    let demo = stream::demo(&settings, &Setting::ALL, &AtomicBool::new(false), |_| {});
    let mut lines = vec![format!(
        "{} messages, one send() each (4-byte length + payload of 4 B to 64 KiB, seeded); \
         the reader asks for {} KiB per read()",
        settings.messages,
        settings.read_buffer_bytes >> 10
    )];
    lines.extend(demo.table().lines().map(str::to_owned));
    let right: Vec<String> = demo
        .runs
        .iter()
        .filter_map(|o| o.ran())
        .map(|r| {
            format!(
                "{} of {} on {}",
                r.counts.reads_exactly_one_message,
                r.counts.messages,
                r.setting.id()
            )
        })
        .collect();
    lines.push(format!(
        "a reader taking each read() as one message gets {}; framing gets every one",
        right.join(", ")
    ));
    Section {
        id: Part::Stream.id(),
        title: TITLE.to_owned(),
        passed: demo.passed,
        figures: serde_json::to_value(&demo).unwrap_or_else(|e| json!({ "error": e.to_string() })),
        lines,
    }
}
