//! The one pass over a capture (an I/O driver): frames from a
//! [`CaptureReader`], decoded ([`Decoder`]), each segment into the
//! [`Reassembler`] and into its stream's [`ConnectionAnalyzer`], bytes out to
//! files when extracting ([`extract`]), and one [`StreamReport`] per stream
//! as soon as the stream is over.
//!
//! The reassembler owns stream identity: one analyzer per reassembled
//! stream, so a report's analysis and its bytes always describe the same
//! connection (same id, same client). Reports leave as streams end, so
//! memory follows the streams open at once, never the capture's length.
//!
//! A stream's report waits a little after the reassembler closes it
//! ([`Options::linger_ns`] of capture time): the last ACK of a FIN handshake
//! and retransmitted FINs come after the close, and the analysis wants them.

pub mod extract;

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use crate::analysis::{ConnectionAnalyzer, ConnectionReport, DirectionReport, Handshake};
use crate::capture::{CaptureReader, CaptureStats, Format};
use crate::error::Error;
use crate::packet::{DecodeStats, Decoder};
use crate::reassembly::{
    CloseReason, Config, Conflict, Dir, Gap, GapCause, Kept, Reassembler, Stats, StreamEnd,
    StreamInfo, StreamSink,
};
use crate::segment::{FastMap, Timestamp};
pub use extract::{Extractor, GapFill};

/// Gap and conflict records kept per direction in a report; the counts stay
/// exact past it.
pub const MAX_REASSEMBLY_RECORDS: usize = 1024;

/// How a run reassembles and what it writes.
#[derive(Debug, Clone)]
pub struct Options {
    /// Reassembler limits and overlap policy.
    pub reassembly: Config,
    /// Write every stream's bytes under this directory.
    pub extract: Option<PathBuf>,
    /// What the extracted files hold where a hole is.
    pub gaps: GapFill,
    /// Most extraction files open at once (least recently written closed
    /// first, reopened to append).
    pub max_open_files: usize,
    /// Capture time a closed stream's analysis still takes segments.
    pub linger_ns: u64,
    /// Most closed streams lingering at once; past it the longest closed is
    /// reported (its analysis state is the memory a stream costs).
    pub max_lingering: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            reassembly: Config::default(),
            extract: None,
            gaps: GapFill::Skip,
            max_open_files: 64,
            linger_ns: 5_000_000_000,
            max_lingering: 64,
        }
    }
}

/// A hole in a direction's bytes, as reports and `streams.json` give it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GapRecord {
    /// Stream offset of the first missing byte.
    pub offset: u64,
    /// Missing bytes.
    pub len: u64,
    /// Sequence number of the first missing byte.
    pub seq: u32,
    /// Sequence number after the last missing byte.
    pub seq_end: u32,
    /// Why: `not_captured_but_acked`, `never_sent_or_acked`, `snap_length`,
    /// `memory_cap`.
    pub cause: &'static str,
    /// Frame of the last data before the hole.
    pub frame_before: Option<u64>,
    /// Frame of the data after it.
    pub frame_after: Option<u64>,
    /// The peer's frame that acknowledged past it (capture loss).
    pub acked_by_frame: Option<u64>,
    /// Where the hole is in the extracted file: with `--gaps skip` the bytes
    /// after it start here; with `zeros` or `marker`, `offset` and this are
    /// equal.
    pub file_offset: u64,
}

/// The name of a gap cause in reports.
pub fn cause_name(cause: GapCause) -> &'static str {
    match cause {
        GapCause::NotCapturedButAcked => "not_captured_but_acked",
        GapCause::NeverSentOrAcked => "never_sent_or_acked",
        GapCause::SnapLength => "snap_length",
        GapCause::MemoryCap => "memory_cap",
    }
}

/// One copy in a [`ConflictRecord`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CopyRecord {
    /// Stream offset of the segment.
    pub offset: u64,
    /// Its length.
    pub len: u64,
    /// Its frame.
    pub frame: u64,
}

/// Two segments with different bytes for the same offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ConflictRecord {
    /// First offset both cover.
    pub offset: u64,
    /// Bytes both cover.
    pub len: u64,
    /// The copy held first.
    pub held: CopyRecord,
    /// The copy that came later.
    pub arriving: CopyRecord,
    /// `held` or `arriving`: the one the policy kept.
    pub kept: &'static str,
}

/// One direction's bytes, as reassembled.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReassemblyReport {
    /// Whether offset 0 is ISN + 1 (the SYN was captured).
    pub start_known: bool,
    /// The ISN, when the SYN was captured.
    pub isn: Option<u32>,
    /// Sequence number of offset 0.
    pub base_seq: Option<u32>,
    /// Bytes delivered in order.
    pub delivered: u64,
    /// Offset after the last byte delivered or gapped.
    pub end: u64,
    /// Whether a FIN closed the direction.
    pub fin: bool,
    /// Gaps: maximal runs of missing bytes (holes that touch, with the same
    /// cause and nothing delivered between, are one).
    pub gaps_total: u64,
    /// Bytes in them.
    pub gap_bytes: u64,
    /// The gaps (first [`MAX_REASSEMBLY_RECORDS`]).
    pub gaps: Vec<GapRecord>,
    /// Overlaps with different bytes.
    pub conflicts_total: u64,
    /// The conflicts (first [`MAX_REASSEMBLY_RECORDS`]).
    pub conflicts: Vec<ConflictRecord>,
    /// The extracted file, when extracting.
    pub file: Option<String>,
    /// Its length.
    pub file_bytes: u64,
    /// sha256 of its content, when extracting.
    pub sha256: Option<String>,
}

/// Holes in one direction's data at the capture point, and how they ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Holes {
    /// Holes: jumps past the next expected byte, and bytes ACKed unseen.
    pub count: u64,
    /// Bytes in them.
    pub bytes: u64,
    /// Holes whose every byte later reached the capture.
    pub filled: u64,
    /// Holes still (wholly or partly) open at the end.
    pub unfilled: u64,
}

/// One direction of a [`StreamReport`]: the analysis, its holes, its bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DirectionOut {
    /// The analysis (counts, then event records).
    #[serde(flatten)]
    pub analysis: DirectionReport,
    /// Holes at the capture point.
    pub holes: Holes,
    /// Reassembled bytes and gaps.
    pub reassembly: ReassemblyReport,
}

/// Both directions.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Directions {
    /// From the client.
    pub client_to_server: DirectionOut,
    /// From the server.
    pub server_to_client: DirectionOut,
}

impl Directions {
    /// A direction by [`Dir`].
    pub fn get(&self, dir: Dir) -> &DirectionOut {
        match dir {
            Dir::ClientToServer => &self.client_to_server,
            Dir::ServerToClient => &self.server_to_client,
        }
    }
}

/// Everything about one stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamReport {
    /// Which input (0 for the first capture given).
    pub input: usize,
    /// Stream id within its input, from 0 in order of first appearance.
    pub id: u64,
    /// The side that opened the connection (or was seen first).
    pub client: SocketAddr,
    /// The other side.
    pub server: SocketAddr,
    /// Whether the handshake's SYN was captured.
    pub start_known: bool,
    /// First frame.
    pub first_frame: u64,
    /// Last frame.
    pub last_frame: u64,
    /// First to last frame, seconds.
    pub duration_s: f64,
    /// Why the stream ended: `fin`, `rst`, `idle_timeout`, `port_reuse`,
    /// `end_of_capture`, `evicted`.
    pub close: &'static str,
    /// The handshake.
    pub handshake: Handshake,
    /// Both directions.
    pub directions: Directions,
}

/// The name of a close reason in reports.
pub fn close_name(reason: CloseReason) -> &'static str {
    match reason {
        CloseReason::Fin => "fin",
        CloseReason::Rst => "rst",
        CloseReason::IdleTimeout => "idle_timeout",
        CloseReason::PortReuse => "port_reuse",
        CloseReason::EndOfCapture => "end_of_capture",
        CloseReason::Evicted => "evicted",
    }
}

/// What one run over one input counted besides streams.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The input's name (`-` for stdin).
    pub path: String,
    /// pcap or pcapng.
    pub format: Format,
    /// Bytes read from the input.
    pub bytes_read: u64,
    /// The capture reader's counts.
    pub capture: CaptureStats,
    /// The decoder's counts.
    pub decode: DecodeStats,
    /// The reassembler's counts.
    pub reassembly: Stats,
    /// Streams reported.
    pub streams: u64,
    /// Segments that came after their stream's report was made.
    pub late_segments: u64,
    /// Whether the run was stopped before the end of the input.
    pub stopped: bool,
}

/// Where a run is, for progress lines.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Frames read.
    pub frames: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Streams open.
    pub open_streams: usize,
    /// Streams reported.
    pub reported: u64,
}

/// A stream being followed.
struct Live {
    info: StreamInfo,
    analyzer: ConnectionAnalyzer,
    dirs: [ReassemblyReport; 2],
    end: Option<StreamEnd>,
    last_ts: Timestamp,
    /// Offset after the last gap, while no data followed it.
    gap_end: [Option<u64>; 2],
    /// Order of its close among lingering streams.
    closed_seq: Option<u64>,
}

/// The reassembler's sink: keeps each stream's reassembly record and
/// writes its bytes.
struct Streams<'o> {
    input: usize,
    /// Boxed: a table sized for the streams open at a peak holds only
    /// pointers once they are gone.
    live: FastMap<u64, Box<Live>>,
    /// Latest stream id per port pair, to end a closed stream's report as
    /// soon as its port pair is reused.
    by_pair: FastMap<(SocketAddr, SocketAddr), u64>,
    extractor: Option<Extractor>,
    ready: Vec<u64>,
    /// Closed streams still taking late segments, by close order.
    lingering: std::collections::BTreeSet<(u64, u64)>,
    close_count: u64,
    error: Option<Error>,
    out: &'o mut dyn FnMut(StreamReport) -> Result<(), Error>,
    reported: u64,
}

fn pair(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    if a <= b { (a, b) } else { (b, a) }
}

impl StreamSink for Streams<'_> {
    fn opened(&mut self, stream: &StreamInfo) {
        let key = pair(stream.client, stream.server);
        if let Some(old) = self.by_pair.insert(key, stream.id) {
            if self.live.get(&old).is_some_and(|l| l.end.is_some()) {
                self.ready.push(old);
            }
        }
        let mut dirs: [ReassemblyReport; 2] = Default::default();
        if let Some(x) = &mut self.extractor {
            for dir in [Dir::ClientToServer, Dir::ServerToClient] {
                dirs[dir.index()].file = Some(x.file_name(stream.id, dir));
            }
        }
        self.live.insert(
            stream.id,
            Box::new(Live {
                info: *stream,
                analyzer: ConnectionAnalyzer::new(stream.id),
                dirs,
                end: None,
                last_ts: stream.ts,
                gap_end: [None; 2],
                closed_seq: None,
            }),
        );
    }

    fn data(&mut self, stream: u64, dir: Dir, _offset: u64, bytes: &[u8]) {
        if let Some(l) = self.live.get_mut(&stream) {
            l.dirs[dir.index()].delivered += bytes.len() as u64;
            l.gap_end[dir.index()] = None;
        }
        if let Some(x) = &mut self.extractor {
            if let Err(e) = x.data(stream, dir, bytes) {
                self.error.get_or_insert(e);
            }
        }
    }

    fn gap(&mut self, gap: &Gap) {
        let file_offset = match &mut self.extractor {
            Some(x) => match x.gap(gap) {
                Ok(at) => at,
                Err(e) => {
                    self.error.get_or_insert(e);
                    0
                }
            },
            None => 0,
        };
        if let Some(l) = self.live.get_mut(&gap.stream) {
            let r = &mut l.dirs[gap.dir.index()];
            r.gap_bytes += gap.len;
            // Holes that touch, with the same cause and nothing delivered
            // between (every frame of a capture cut by its snap length), are
            // one gap to a reader.
            let cause = cause_name(gap.cause);
            let joined = l.gap_end[gap.dir.index()] == Some(gap.offset)
                && r.gaps.last_mut().is_some_and(|last| {
                    let touches = last.cause == cause && last.offset + last.len == gap.offset;
                    if touches {
                        last.len += gap.len;
                        last.seq_end = gap.seq_end;
                        last.frame_after = gap.frame_after;
                        last.acked_by_frame = gap.acked_by_frame.or(last.acked_by_frame);
                    }
                    touches
                });
            l.gap_end[gap.dir.index()] = Some(gap.offset + gap.len);
            if joined {
                return;
            }
            r.gaps_total += 1;
            if r.gaps.len() < MAX_REASSEMBLY_RECORDS {
                r.gaps.push(GapRecord {
                    offset: gap.offset,
                    len: gap.len,
                    seq: gap.seq,
                    seq_end: gap.seq_end,
                    cause: cause_name(gap.cause),
                    frame_before: gap.frame_before,
                    frame_after: gap.frame_after,
                    acked_by_frame: gap.acked_by_frame,
                    file_offset: if self.extractor.is_some() {
                        file_offset
                    } else {
                        gap.offset
                    },
                });
            }
        }
    }

    fn conflict(&mut self, c: &Conflict) {
        if let Some(l) = self.live.get_mut(&c.stream) {
            let r = &mut l.dirs[c.dir.index()];
            r.conflicts_total += 1;
            if r.conflicts.len() < MAX_REASSEMBLY_RECORDS {
                let copy = |v: crate::reassembly::Version| CopyRecord {
                    offset: v.offset,
                    len: v.len,
                    frame: v.frame,
                };
                r.conflicts.push(ConflictRecord {
                    offset: c.offset,
                    len: c.len,
                    held: copy(c.held),
                    arriving: copy(c.arriving),
                    kept: match c.kept {
                        Kept::Held => "held",
                        Kept::Arriving => "arriving",
                    },
                });
            }
        }
    }

    fn closed(&mut self, end: &StreamEnd) {
        if let Some(l) = self.live.get_mut(&end.id) {
            l.end = Some(*end);
            l.analyzer.compact();
            if l.closed_seq.is_none() {
                self.close_count += 1;
                l.closed_seq = Some(self.close_count);
                self.lingering.insert((self.close_count, end.id));
            }
            for (r, d) in l.dirs.iter_mut().zip(end.dirs.iter()) {
                r.start_known = d.start_known;
                r.isn = d.isn;
                r.base_seq = d.base_seq;
                r.end = d.end;
                r.fin = d.fin;
            }
        }
        if let Some(x) = &mut self.extractor {
            if let Err(e) = x.close_stream(end.id) {
                self.error.get_or_insert(e);
            }
        }
    }
}

impl Streams<'_> {
    /// Reports the streams made ready, in id order.
    fn flush_ready(&mut self) -> Result<(), Error> {
        if self.ready.is_empty() {
            return Ok(());
        }
        let mut ready = std::mem::take(&mut self.ready);
        ready.sort_unstable();
        ready.dedup();
        for id in ready {
            if let Some(live) = self.live.remove(&id) {
                if let Some(seq) = live.closed_seq {
                    self.lingering.remove(&(seq, id));
                }
                let key = pair(live.info.client, live.info.server);
                if self.by_pair.get(&key) == Some(&id) {
                    self.by_pair.remove(&key);
                }
                let report = self.report(*live)?;
                if let Some(x) = &mut self.extractor {
                    x.index(&report)?;
                }
                self.reported += 1;
                (self.out)(report)?;
            }
        }
        Ok(())
    }

    /// Marks ready the longest-closed streams past `max` lingering.
    fn bound_lingering(&mut self, max: usize) {
        let excess = self.lingering.len().saturating_sub(max);
        self.ready
            .extend(self.lingering.iter().take(excess).map(|&(_, id)| id));
    }

    /// Marks ready the closed streams silent for `linger_ns` before `now`.
    fn sweep(&mut self, now: Timestamp, linger_ns: u64) {
        for (id, l) in &self.live {
            if l.end.is_some() && now.0.saturating_sub(l.last_ts.0) > linger_ns {
                self.ready.push(*id);
            }
        }
    }

    fn report(&mut self, live: Live) -> Result<StreamReport, Error> {
        let Live {
            info,
            analyzer,
            mut dirs,
            end,
            ..
        } = live;
        if let Some(x) = &mut self.extractor {
            for dir in [Dir::ClientToServer, Dir::ServerToClient] {
                let (bytes, sha) = x.finish(info.id, dir)?;
                let r = &mut dirs[dir.index()];
                r.file_bytes = bytes;
                r.sha256 = Some(sha);
            }
        }
        let a: ConnectionReport = analyzer.report();
        // The analyzer names its client by the same rule as the
        // reassembler; should they ever differ, the reassembler's wins and
        // the analysis directions follow the addresses.
        let (c2s, s2c) = if a.client == info.client {
            (a.client_to_server, a.server_to_client)
        } else {
            (a.server_to_client, a.client_to_server)
        };
        let [r0, r1] = dirs;
        let out = |analysis: DirectionReport, reassembly: ReassemblyReport| {
            let holes = Holes {
                count: analysis.lost_segments,
                bytes: analysis.lost_bytes,
                filled: analysis.holes_filled.min(analysis.lost_segments),
                unfilled: analysis.lost_segments.saturating_sub(analysis.holes_filled),
            };
            DirectionOut {
                analysis,
                holes,
                reassembly,
            }
        };
        Ok(StreamReport {
            input: self.input,
            id: info.id,
            client: info.client,
            server: info.server,
            start_known: a.start_known,
            first_frame: a.first_frame,
            last_frame: a.last_frame,
            duration_s: a.duration_s,
            close: close_name(end.map_or(CloseReason::EndOfCapture, |e| e.reason)),
            handshake: a.handshake,
            directions: Directions {
                client_to_server: out(c2s, r0),
                server_to_client: out(s2c, r1),
            },
        })
    }
}

/// Runs one input through decoding, reassembly and analysis, handing each
/// stream's report to `out` as the stream ends (in the order streams end;
/// at the end of the input, the rest in id order). `progress` is called
/// every 65,536 frames. `stop` ends the run early (Ctrl-C): what was read
/// is still reported.
pub fn run<R: Read>(
    input: usize,
    reader: &mut CaptureReader<R>,
    opts: &Options,
    stop: &AtomicBool,
    out: &mut dyn FnMut(StreamReport) -> Result<(), Error>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<RunSummary, Error> {
    let extractor = match &opts.extract {
        Some(dir) => Some(Extractor::new(dir, opts.gaps, opts.max_open_files)?),
        None => None,
    };
    let mut streams = Streams {
        input,
        live: FastMap::default(),
        by_pair: FastMap::default(),
        extractor,
        ready: Vec::new(),
        lingering: Default::default(),
        close_count: 0,
        error: None,
        out,
        reported: 0,
    };
    let mut decoder = Decoder::new();
    let mut reasm = Reassembler::new(opts.reassembly);
    let mut late_segments = 0;
    let mut next_sweep = 0u64;
    let mut stopped = false;
    let mut frames = 0u64;
    loop {
        if frames & 0xffff == 0 {
            if stop.load(Ordering::Relaxed) {
                stopped = true;
                break;
            }
            if frames > 0 {
                progress(&Progress {
                    frames,
                    bytes: reader.bytes_read(),
                    open_streams: streams.live.len(),
                    reported: streams.reported,
                });
            }
        }
        let Some(frame) = reader.next_frame()? else {
            break;
        };
        frames += 1;
        let Some(seg) = decoder.decode(&frame) else {
            continue;
        };
        let ts = seg.ts;
        if let Some((id, _)) = reasm.segment(&seg, &mut streams) {
            match streams.live.get_mut(&id) {
                Some(l) => {
                    l.analyzer.push(&seg);
                    l.last_ts = ts;
                }
                None => late_segments += 1,
            }
        }
        if let Some(e) = streams.error.take() {
            return Err(e);
        }
        if ts.0 >= next_sweep {
            next_sweep = ts.0.saturating_add(1_000_000_000);
            streams.sweep(ts, opts.linger_ns);
        }
        streams.bound_lingering(opts.max_lingering);
        streams.flush_ready()?;
    }
    reasm.finish(&mut streams);
    if let Some(e) = streams.error.take() {
        return Err(e);
    }
    let rest: Vec<u64> = streams.live.keys().copied().collect();
    streams.ready.extend(rest);
    streams.flush_ready()?;
    if let Some(x) = streams.extractor.take() {
        x.close()?;
    }
    let mut decode = decoder.finish();
    decode.capture = reader.stats();
    Ok(RunSummary {
        path: reader.name().to_string(),
        format: reader.format(),
        bytes_read: reader.bytes_read(),
        capture: reader.stats(),
        decode,
        reassembly: *reasm.stats(),
        streams: streams.reported,
        late_segments,
        stopped,
    })
}
