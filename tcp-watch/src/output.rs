//! The `--json` document (schema [`SCHEMA`], documented in the crate
//! README) and the totals over every stream.
//!
//! The document is written as the run goes: the header, then each stream
//! as it ends, then the per-input counts and the totals. Nothing is held
//! per stream but the running totals, so a capture with a million streams
//! costs no more memory than one with ten.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::analysis::RetransmissionCounts;
use crate::capture::Format;
use crate::pipeline::{DirectionOut, Holes, RunSummary, StreamReport};
use crate::reassembly::{GapCause, Stats};

/// Version of the JSON layout: a field removed or changed in meaning
/// bumps it; fields added do not.
pub const SCHEMA: u32 = 1;

/// Every count summed over streams and directions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Streams reported.
    pub streams: u64,
    /// Distinct payload bytes seen.
    pub bytes: u64,
    /// Bytes delivered in order by the reassembler.
    pub delivered: u64,
    /// Segments.
    pub segments: u64,
    /// Segments occupying sequence space.
    pub data_segments: u64,
    /// Retransmissions by cause.
    pub retransmissions: RetransmissionCounts,
    /// Retransmission-timeout episodes.
    pub rto_episodes: u64,
    /// Duplicate ACKs.
    pub duplicate_acks: u64,
    /// Out-of-order segments.
    pub out_of_order: u64,
    /// Holes at the capture point.
    pub lost_segments: u64,
    /// Bytes in them.
    pub lost_bytes: u64,
    /// ACKs for data never seen.
    pub acked_unseen: u64,
    /// Zero-window episodes.
    pub zero_windows: u64,
    /// Segments advertising a zero window.
    pub zero_window_segments: u64,
    /// Window probes.
    pub zero_window_probes: u64,
    /// Keep-alives.
    pub keep_alives: u64,
    /// Segments that filled the peer's window.
    pub window_full: u64,
    /// Copies made by the capture.
    pub capture_duplicates: u64,
    /// RST segments.
    pub resets: u64,
    /// SACK blocks.
    pub sack_blocks: u64,
    /// D-SACK blocks.
    pub dsack_blocks: u64,
    /// Payload bytes cut by the snap length.
    pub not_captured_bytes: u64,
    /// Holes and how they ended.
    pub holes: Holes,
    /// Gaps the reassembler declared.
    pub gaps: u64,
    /// Bytes in them.
    pub gap_bytes: u64,
    /// Overlaps with different bytes.
    pub conflicts: u64,
}

impl Totals {
    /// Adds one stream.
    pub fn add(&mut self, r: &StreamReport) {
        self.streams += 1;
        for d in [
            &r.directions.client_to_server,
            &r.directions.server_to_client,
        ] {
            self.add_direction(d);
        }
    }

    fn add_direction(&mut self, d: &DirectionOut) {
        let a = &d.analysis;
        self.bytes += a.bytes;
        self.delivered += d.reassembly.delivered;
        self.segments += a.segments;
        self.data_segments += a.data_segments;
        let (t, x) = (&mut self.retransmissions, &a.retransmissions);
        t.total += x.total;
        t.rto += x.rto;
        t.fast += x.fast;
        t.sack += x.sack;
        t.tlp += x.tlp;
        t.spurious += x.spurious;
        self.rto_episodes += a.rto_episodes.len() as u64;
        self.duplicate_acks += a.duplicate_acks;
        self.out_of_order += a.out_of_order;
        self.lost_segments += a.lost_segments;
        self.lost_bytes += a.lost_bytes;
        self.acked_unseen += a.acked_unseen;
        self.zero_windows += a.zero_windows;
        self.zero_window_segments += a.zero_window_segments;
        self.zero_window_probes += a.zero_window_probes;
        self.keep_alives += a.keep_alives;
        self.window_full += a.window_full;
        self.capture_duplicates += a.capture_duplicates;
        self.resets += a.resets;
        self.sack_blocks += a.sack_blocks;
        self.dsack_blocks += a.dsack_blocks;
        self.not_captured_bytes += a.not_captured_bytes;
        self.holes.count += d.holes.count;
        self.holes.bytes += d.holes.bytes;
        self.holes.filled += d.holes.filled;
        self.holes.unfilled += d.holes.unfilled;
        self.gaps += d.reassembly.gaps_total;
        self.gap_bytes += d.reassembly.gap_bytes;
        self.conflicts += d.reassembly.conflicts_total;
    }
}

/// The counts of one input, as JSON.
pub fn input_json(s: &RunSummary) -> Value {
    let format = match s.format {
        Format::Pcap { nanos, big_endian } => json!({
            "name": "pcap", "nanosecond": nanos, "big_endian": big_endian
        }),
        Format::PcapNg => json!({ "name": "pcapng" }),
    };
    let mut decode = Map::new();
    for (k, v) in s.decode.named_counts() {
        decode.insert(k.to_string(), v.into());
    }
    json!({
        "path": s.path,
        "format": format,
        "bytes": s.bytes_read,
        "frames": s.capture.frames,
        "stopped_early": s.stopped,
        "streams": s.streams,
        "late_segments": s.late_segments,
        "decode": decode,
        "malformed_total": s.decode.malformed_total(),
        "reassembly": reassembly_json(&s.reassembly),
    })
}

/// The reassembler's counts, as JSON.
pub fn reassembly_json(r: &Stats) -> Value {
    let mut by_cause = Map::new();
    for c in GapCause::ALL {
        by_cause.insert(
            crate::pipeline::cause_name(c).to_string(),
            json!({ "gaps": r.gaps[c as usize], "bytes": r.gap_bytes[c as usize] }),
        );
    }
    json!({
        "segments": r.segments,
        "streams": r.streams,
        "delivered_bytes": r.delivered_bytes,
        "gaps": by_cause,
        "conflicts": r.conflicts,
        "old_bytes": r.old_bytes,
        "before_start_bytes": r.before_start_bytes,
        "out_of_window": r.out_of_window,
        "after_close": r.after_close,
        "cap_flushes": r.cap_flushes,
        "idle_closed": r.idle_closed,
        "evicted": r.evicted,
        "peak_held_bytes": r.peak_held_bytes,
    })
}

/// Writes the `--json` document as the run goes.
#[derive(Debug)]
pub struct JsonWriter<W: Write> {
    w: W,
    written: u64,
}

impl<W: Write> JsonWriter<W> {
    /// Writes the header.
    pub fn begin(mut w: W) -> io::Result<Self> {
        write!(
            w,
            "{{\"program\":\"tcp-watch\",\"version\":\"{}\",\"schema\":{},\"streams\":[",
            env!("CARGO_PKG_VERSION"),
            SCHEMA
        )?;
        Ok(JsonWriter { w, written: 0 })
    }

    /// Writes one stream.
    pub fn stream(&mut self, r: &StreamReport) -> io::Result<()> {
        self.w
            .write_all(if self.written == 0 { b"\n" } else { b",\n" })?;
        self.written += 1;
        serde_json::to_writer(&mut self.w, r)?;
        Ok(())
    }

    /// Writes the inputs' counts and the totals, and ends the document.
    pub fn end(mut self, inputs: &[RunSummary], totals: &Totals) -> io::Result<W> {
        let inputs: Vec<Value> = inputs.iter().map(input_json).collect();
        write!(self.w, "\n],\"inputs\":")?;
        serde_json::to_writer(&mut self.w, &inputs)?;
        write!(self.w, ",\"totals\":")?;
        serde_json::to_writer(&mut self.w, totals)?;
        writeln!(self.w, "}}")?;
        self.w.flush()?;
        Ok(self.w)
    }
}
