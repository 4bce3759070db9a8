//! What both fuzz targets check on the reassembler's output: each
//! direction's data and gap events tile `[0, end)` in order, a stream opens
//! once, says nothing after it closed, and closes with a summary that agrees
//! with the events. A violation panics, which libFuzzer reports as a crash.

use std::collections::HashMap;

use tcp_watch::reassembly::{Dir, Gap, StreamEnd, StreamInfo, StreamSink};

/// Next offset, bytes and gap bytes per (stream, direction); open streams.
#[derive(Default)]
pub struct Tiler {
    next: HashMap<(u64, Dir), (u64, u64, u64)>,
    open: HashMap<u64, bool>,
}

impl Tiler {
    fn step(&mut self, stream: u64, dir: Dir, offset: u64, len: u64, gap: bool) {
        assert_eq!(
            self.open.get(&stream),
            Some(&true),
            "event for stream {stream} while not open"
        );
        let e = self.next.entry((stream, dir)).or_default();
        assert_eq!(offset, e.0, "stream {stream} {dir:?}: hole or overlap");
        e.0 += len;
        if gap {
            assert!(len > 0, "empty gap");
            e.2 += len;
        } else {
            e.1 += len;
        }
    }

    /// After `finish`: every stream ended.
    pub fn all_closed(&self) {
        assert!(self.open.values().all(|&o| !o), "a stream left open");
    }
}

impl StreamSink for Tiler {
    fn opened(&mut self, s: &StreamInfo) {
        assert!(self.open.insert(s.id, true).is_none(), "stream reopened");
    }

    fn data(&mut self, stream: u64, dir: Dir, offset: u64, bytes: &[u8]) {
        self.step(stream, dir, offset, bytes.len() as u64, false);
    }

    fn gap(&mut self, g: &Gap) {
        self.step(g.stream, g.dir, g.offset, g.len, true);
    }

    fn closed(&mut self, end: &StreamEnd) {
        assert_eq!(self.open.insert(end.id, false), Some(true), "closed twice");
        for dir in [Dir::ClientToServer, Dir::ServerToClient] {
            let sent = self.next.get(&(end.id, dir)).copied().unwrap_or_default();
            let s = &end.dirs[dir.index()];
            assert_eq!((s.end, s.bytes, s.gap_bytes), sent, "summary of {dir:?}");
        }
    }
}
