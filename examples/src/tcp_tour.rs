//! The tour's `tcp-watch` section: loss on a real path. A small lab run
//! (three network namespaces, R dropping 1 % of A's data segments, a 2 MB
//! transfer A→B captured at both ends) through `tcp-watch`'s account: our
//! retransmissions in A's capture against the sender kernel's
//! `TcpRetransSegs`, R's drops against the segments missing at B, the
//! bytes extracted from both captures against the receiver's sha256, and
//! tshark's flags beside ours.
//!
//! ```text
//!   A ──veth── R (nft: drop 1 %) ──veth── B
//!   tcpdump                               tcpdump
//! ```
//!
//! The lab needs root (namespaces, nft, tcpdump): elsewhere the section is
//! skipped, saying why, and counts as passed.

use serde_json::json;
use tcp_watch::lab::{self, LabConfig, account};

use crate::tour::{Part, Section};

/// The section's heading.
pub const TITLE: &str = "tcp-watch: loss on a real path";

/// Bytes A sends (the quick tour sends half).
const BYTES: u64 = 2_000_000;
/// R's random loss.
const LOSS: f64 = 0.01;

/// The section: the account's lines, passed when every line closes.
pub fn section(quick: bool) -> Section {
    let config = LabConfig {
        loss: LOSS,
        bytes: if quick { BYTES / 2 } else { BYTES },
        ..LabConfig::default()
    };
    if let Some(why) = lab::unavailable(&config) {
        return Section {
            id: Part::TcpWatch.id(),
            title: TITLE.to_owned(),
            lines: vec![format!("skipped: {why}")],
            passed: true,
            figures: json!({ "skipped": why }),
        };
    }
    match account::run_and_account(&config) {
        Ok((run, acc)) => Section {
            id: Part::TcpWatch.id(),
            title: TITLE.to_owned(),
            lines: account::text(&run, &acc),
            passed: acc.closes,
            figures: serde_json::to_value(account::document(&config, &run, &acc))
                .unwrap_or_default(),
        },
        Err(e) => Section {
            id: Part::TcpWatch.id(),
            title: TITLE.to_owned(),
            lines: vec![format!("FAILED: {e}")],
            passed: false,
            figures: json!({ "error": e.to_string() }),
        },
    }
}
