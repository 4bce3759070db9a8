//! The plain-language account of `tcp-watch analyze`: per stream, what
//! happened to each hole and each repeated segment, with the frames as
//! evidence, then a table of the stream's counts; at the end, the totals.
//!
//! Written from a [`StreamReport`] alone, as each stream ends, so the text
//! costs no memory beyond the stream it describes.

use std::io::{self, Write};

use crate::analysis::{DirectionReport, RetransmissionKind};
use crate::output::Totals;
use crate::pipeline::{DirectionOut, RunSummary, StreamReport};
use crate::reassembly::Dir;

/// Event lines per direction unless all are asked for.
pub const DEFAULT_LINES: usize = 12;

fn kind_phrase(kind: RetransmissionKind, dupacks: u32) -> String {
    match kind {
        RetransmissionKind::Rto => "after a retransmission timeout".into(),
        RetransmissionKind::Fast if dupacks > 0 => {
            format!("fast retransmission after {dupacks} duplicate ACKs")
        }
        RetransmissionKind::Fast => "fast retransmission (NewReno, in a recovery)".into(),
        RetransmissionKind::Sack => "SACK-driven recovery of a hole the receiver reported".into(),
        RetransmissionKind::Tlp => "tail-loss probe (the last segment, resent early)".into(),
        RetransmissionKind::Spurious => "spurious: the receiver already had every byte".into(),
    }
}

fn ms(s: f64) -> String {
    let m = s * 1e3;
    if m < 10.0 {
        format!("{m:.2} ms")
    } else if m < 10_000.0 {
        format!("{m:.0} ms")
    } else {
        format!("{s:.1} s")
    }
}

fn frames(list: &[u64], count: u64) -> String {
    let mut s: Vec<String> = list.iter().map(u64::to_string).collect();
    if count > list.len() as u64 {
        s.push(format!("and {} more", count - list.len() as u64));
    }
    s.join(", ")
}

/// The lines telling what happened in one direction (`sender` sends its
/// data; `receiver` is the other direction's report, which holds the ACKs).
fn direction_lines(
    r: &StreamReport,
    dir: Dir,
    d: &DirectionOut,
    receiver: &DirectionReport,
) -> Vec<String> {
    let (from, to) = match dir {
        Dir::ClientToServer => (r.client, r.server),
        Dir::ServerToClient => (r.server, r.client),
    };
    let a = &d.analysis;
    let ev = &a.events;
    let mut lines = Vec::new();
    // Holes at the capture point: the bytes never reached it (or came late).
    for h in &ev.lost_segments {
        let mut s = if h.acked_unseen {
            format!(
                "bytes {} ({} B) from {from} were ACKed by {to} (frame {}) but never reached the capture point",
                seq_span(h.seq, h.len),
                h.len,
                h.frame
            )
        } else {
            format!(
                "bytes {} ({} B) from {from} did not reach the capture point in order (the jump is at frame {}{})",
                seq_span(h.seq, h.len),
                h.len,
                h.frame,
                h.previous_frame
                    .map(|p| format!(", after frame {p}"))
                    .unwrap_or_default()
            )
        };
        // The run about this hole: the one that triggered its repair, else
        // the first after it opened and before it filled, else any.
        let runs = || {
            receiver
                .events
                .duplicate_ack_runs
                .iter()
                .filter(|run| run.ack == h.seq)
        };
        let within = |run: &&crate::analysis::DuplicateAckRun| {
            run.frames
                .first()
                .is_some_and(|&f| f >= h.frame && h.filled_frame.is_none_or(|filled| f <= filled))
        };
        let run = runs()
            .find(|run| h.filled_frame.is_some() && run.retransmission_frame == h.filled_frame)
            .or_else(|| runs().find(within))
            .or_else(|| runs().next());
        if let Some(run) = run {
            s.push_str(&format!(
                "; the receiver sent {} duplicate ACK{} ({} {})",
                run.count,
                if run.count == 1 { "" } else { "s" },
                if run.count == 1 { "frame" } else { "frames" },
                frames(&run.frames, u64::from(run.count))
            ));
            if let Some(&(l, rr)) = run.sack.first() {
                // A SACK block's right edge is the byte after it.
                let len = u64::from(rr.wrapping_sub(l));
                s.push_str(&format!(" with SACK {}", seq_span(l, len)));
            }
        }
        match (h.filled_by, h.filled_frame) {
            (Some("retransmission"), Some(f)) => {
                let how = ev
                    .retransmissions
                    .iter()
                    .find(|x| x.frame == f)
                    .map(|x| format!(": {}", kind_phrase(x.kind, x.duplicate_acks)))
                    .unwrap_or_default();
                s.push_str(&format!(
                    "; the sender retransmitted it, complete at frame {f}{how}"
                ));
            }
            (Some(_), Some(f)) => s.push_str(&format!(
                "; it arrived late, out of order, at frame {f} (reordered on the path, not lost)"
            )),
            _ => s.push_str("; it never arrived: the capture lost it, or the flow ended first"),
        }
        if let Some(f) = run.and_then(|r| r.ended_frame) {
            s.push_str(&format!(
                "; the stream recovered at frame {f} (the first ACK past the hole)"
            ));
        }
        lines.push(s);
    }
    // Timeouts with their backoff.
    for e in &a.rto_episodes {
        let waits: Vec<String> = e.intervals_s.iter().map(|w| format!("{w:.3}")).collect();
        let ratios: Vec<String> = e.ratios.iter().map(|x| format!("{x:.2}")).collect();
        let mut s = format!(
            "seq {} from {from} was retransmitted {} time{} by the retransmission timer (frames {}): waits {} s",
            e.seq,
            e.attempts,
            if e.attempts == 1 { "" } else { "s" },
            frames(&e.frames, u64::from(e.attempts)),
            waits.join(", ")
        );
        if !ratios.is_empty() {
            s.push_str(&format!(
                " (each over the one before: {}; 2.00 is the doubling backoff of RFC 6298)",
                ratios.join(", ")
            ));
        }
        match e.recovered_frame {
            Some(f) => s.push_str(&format!("; the ACK at frame {f} ended it")),
            None => s.push_str("; no ACK ended it in the capture"),
        }
        lines.push(s);
    }
    // Other retransmissions of data the capture had seen.
    for x in &ev.retransmissions {
        // Timeouts were told as episodes, hole repairs with their hole.
        let told = ev
            .lost_segments
            .iter()
            .any(|h| h.filled_frame == Some(x.frame));
        if x.kind == RetransmissionKind::Rto || told {
            continue;
        }
        let mut s = format!(
            "frame {} from {from} resent bytes {} ({} B){}: {}",
            x.frame,
            seq_span(x.seq, u64::from(x.len)),
            x.len,
            x.repeats_frame
                .map(|f| format!(", first sent at frame {f}"))
                .unwrap_or_default(),
            kind_phrase(x.kind, x.duplicate_acks)
        );
        if let (Some(before), Some(f)) = (x.classified_before, x.dsack_frame) {
            s.push_str(&format!(
                " (taken for {before:?} until the D-SACK at frame {f})"
            ));
        }
        lines.push(s);
    }
    for z in &receiver.events.zero_windows {
        lines.push(format!(
            "{to} advertised a zero window at frame {} for {}; {from} probed it {} time{}{}",
            z.frame,
            ms(z.duration_s),
            z.probes,
            if z.probes == 1 { "" } else { "s" },
            z.reopened_frame
                .map(|f| format!("; it reopened at frame {f}"))
                .unwrap_or_else(|| "; it never reopened in the capture".into())
        ));
    }
    for g in &d.reassembly.gaps {
        let cause = match g.cause {
            "not_captured_but_acked" => {
                "the receiver ACKed it, so it was sent and received: the capture lost it"
            }
            "never_sent_or_acked" => "never seen nor ACKed: not sent, or the capture ended first",
            "snap_length" => "sent, but cut from the frames by the snap length",
            _ => "dropped by the memory cap on out-of-order data",
        };
        lines.push(format!(
            "gap in the reassembled bytes from {from}: offset {} ({} B, seq {}), {cause}{}",
            g.offset,
            g.len,
            seq_span(g.seq, g.len),
            match (g.frame_before, g.frame_after) {
                (Some(b), Some(a)) => format!(" (between frames {b} and {a})"),
                (Some(b), None) => format!(" (after frame {b})"),
                (None, Some(a)) => format!(" (before frame {a})"),
                (None, None) => String::new(),
            }
        ));
    }
    for c in &d.reassembly.conflicts {
        lines.push(format!(
            "frames {} and {} from {from} carried different bytes for offsets {}; kept the {} copy",
            c.held.frame,
            c.arriving.frame,
            offset_span(c.offset, c.len),
            if c.kept == "held" { "first" } else { "later" }
        ));
    }
    lines
}

/// One line of a stream's table: the heading and each direction share
/// the column widths.
fn table_row(w: &mut dyn Write, c: [String; 14]) -> io::Result<()> {
    writeln!(
        w,
        "  {:<7} {:>12} {:>8} {:>6} {:>5} {:>5} {:>5} {:>5} {:>5} {:>7} {:>5} {:>11} {:>6} {:>22}",
        c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11], c[12], c[13]
    )
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.2}"))
}

/// Writes one stream's account and table; `limit` caps the event lines per
/// direction (`None`: all).
pub fn write_stream(w: &mut dyn Write, r: &StreamReport, limit: Option<usize>) -> io::Result<()> {
    let h = &r.handshake;
    writeln!(
        w,
        "stream {}: {} -> {}, frames {} to {}, {:.3} s, ended by {}",
        r.id,
        r.client,
        r.server,
        r.first_frame,
        r.last_frame,
        r.duration_s,
        r.close.replace('_', " ")
    )?;
    if r.start_known {
        let opt = |o: &crate::analysis::SynOptions| {
            format!(
                "ISN {}, MSS {}, window scale {}, SACK {}, timestamps {}",
                o.isn.map_or("-".into(), |v| v.to_string()),
                o.mss.map_or("-".into(), |v| v.to_string()),
                o.window_scale.map_or("-".into(), |v| v.to_string()),
                if o.sack_permitted { "yes" } else { "no" },
                if o.timestamps { "yes" } else { "no" }
            )
        };
        writeln!(w, "  client SYN: {}", opt(&h.client))?;
        writeln!(w, "  server SYN-ACK: {}", opt(&h.server))?;
        if let Some(rtt) = h.initial_rtt_ms {
            writeln!(
                w,
                "  initial RTT {rtt:.2} ms (SYN to the ACK of the SYN-ACK)"
            )?;
        }
    } else {
        writeln!(
            w,
            "  no SYN in the capture: offsets start at the first byte captured; the true start is unknown"
        )?;
    }
    let dirs = &r.directions;
    for (dir, d, other) in [
        (
            Dir::ClientToServer,
            &dirs.client_to_server,
            &dirs.server_to_client,
        ),
        (
            Dir::ServerToClient,
            &dirs.server_to_client,
            &dirs.client_to_server,
        ),
    ] {
        let lines = direction_lines(r, dir, d, &other.analysis);
        let shown = limit.unwrap_or(usize::MAX).min(lines.len());
        for l in &lines[..shown] {
            writeln!(w, "  - {l}")?;
        }
        if shown < lines.len() {
            writeln!(
                w,
                "  - ... {} more (use --stream {} --all, or --json)",
                lines.len() - shown,
                r.id
            )?;
        }
        let dropped = d.analysis.records_dropped;
        if dropped > 0 {
            writeln!(
                w,
                "  - ({dropped} event records beyond the first 1024 per kind are counted, not listed)"
            )?;
        }
    }
    table_row(
        w,
        [
            "dir",
            "bytes",
            "segs",
            "retx",
            "rto",
            "fast",
            "sack",
            "tlp",
            "spur",
            "dupacks",
            "ooo",
            "holes f/u",
            "zerow",
            "rtt ms min/med/p95",
        ]
        .map(String::from),
    )?;
    for (name, d) in [
        ("c->s", &dirs.client_to_server),
        ("s->c", &dirs.server_to_client),
    ] {
        let a = &d.analysis;
        let x = &a.retransmissions;
        table_row(
            w,
            [
                name.to_string(),
                a.bytes.to_string(),
                a.segments.to_string(),
                x.total.to_string(),
                x.rto.to_string(),
                x.fast.to_string(),
                x.sack.to_string(),
                x.tlp.to_string(),
                x.spurious.to_string(),
                a.duplicate_acks.to_string(),
                a.out_of_order.to_string(),
                format!("{}/{}", d.holes.filled, d.holes.unfilled),
                a.zero_windows.to_string(),
                format!(
                    "{}/{}/{}",
                    opt_ms(a.rtt_ms.min),
                    opt_ms(a.rtt_ms.median),
                    opt_ms(a.rtt_ms.p95)
                ),
            ],
        )?;
    }
    writeln!(w)
}

/// Writes the closing summary of a run.
pub fn write_summary(w: &mut dyn Write, inputs: &[RunSummary], t: &Totals) -> io::Result<()> {
    for s in inputs {
        let malformed: Vec<String> = s
            .decode
            .named_counts()
            .into_iter()
            .filter(|(k, v)| *v > 0 && crate::packet::Malformed::ALL.iter().any(|m| m.name() == *k))
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        writeln!(
            w,
            "{}: {} frames, {} TCP segments, {} streams{}{}",
            s.path,
            s.capture.frames,
            s.decode.segments,
            s.streams,
            if malformed.is_empty() {
                String::new()
            } else {
                format!("; malformed: {}", malformed.join(", "))
            },
            if s.stopped { " (stopped early)" } else { "" }
        )?;
    }
    let x = &t.retransmissions;
    writeln!(
        w,
        "total: {} streams, {} B, {} segments; {} retransmissions ({} rto, {} fast, {} sack, {} tlp, {} spurious) in {} timeout episodes; {} duplicate ACKs, {} out of order; {} holes ({} B; {} filled, {} not), {} gaps in the bytes ({} B); {} zero windows",
        t.streams,
        t.bytes,
        t.segments,
        x.total,
        x.rto,
        x.fast,
        x.sack,
        x.tlp,
        x.spurious,
        t.rto_episodes,
        t.duplicate_acks,
        t.out_of_order,
        t.holes.count,
        t.holes.bytes,
        t.holes.filled,
        t.holes.unfilled,
        t.gaps,
        t.gap_bytes,
        t.zero_windows
    )
}

/// `len` bytes from sequence number `seq`, as people write them: the
/// first and the last (inclusive, across the wrap), or the one.
fn seq_span(seq: u32, len: u64) -> String {
    match len {
        0 => format!("at {seq}"),
        1 => seq.to_string(),
        // Sequence numbers count modulo 2^32.
        _ => format!("{seq}-{}", seq.wrapping_add((len - 1) as u32)),
    }
}

/// `len` bytes from stream offset `offset`, as [`seq_span`] writes them.
fn offset_span(offset: u64, len: u64) -> String {
    match len {
        0 => format!("at {offset}"),
        1 => offset.to_string(),
        _ => format!("{offset}-{}", offset + (len - 1)),
    }
}
