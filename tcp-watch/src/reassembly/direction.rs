//! One direction of one stream: 32-bit sequence numbers unwrapped into
//! 64-bit offsets, the out-of-order buffer, in-order delivery and the
//! decisions that turn a hole into a gap record.
//!
//! Offsets follow Zeek's 64-bit relative sequence space: offset 0 is the
//! byte after the SYN (ISN + 1, RFC 9293 §3.4), or the first captured byte
//! when the capture has no SYN. Bytes behind [`Direction::next`] have been
//! delivered or declared a gap and are never delivered again.

use std::collections::BTreeMap;

use super::{Conflict, Ctx, Gap, GapCause, Kept, Version};

/// What one held piece costs beside its bytes (map node, vector header):
/// counted so that a flood of one-byte segments cannot hide from the caps.
pub(super) const PIECE_OVERHEAD: usize = 64;

/// Bytes held out of order, or a range known sent but cut by the snap length.
#[derive(Debug)]
enum Payload {
    Bytes(Vec<u8>),
    NotCaptured,
}

/// One held piece, keyed in the map by its start offset. Pieces never
/// overlap: overlaps are resolved when a segment is inserted.
#[derive(Debug)]
struct Piece {
    end: u64,
    frame: u64,
    /// The segment that supplied the piece (offsets), for the OS-style
    /// overlap policies and the conflict log.
    orig_start: u64,
    orig_end: u64,
    payload: Payload,
}

impl Piece {
    fn cost(&self) -> usize {
        PIECE_OVERHEAD
            + match &self.payload {
                Payload::Bytes(v) => v.len(),
                Payload::NotCaptured => 0,
            }
    }
}

/// One arriving segment's data, already unwrapped to offsets.
pub(super) struct Arrival<'a> {
    /// Offset of the first payload byte; negative when it lies before the
    /// first byte of a mid-stream pickup.
    pub(super) offset: i64,
    /// The bytes the capture holds.
    pub(super) captured: &'a [u8],
    /// The payload length the IP header declares.
    pub(super) len: u32,
    pub(super) frame: u64,
}

/// State of one direction.
#[derive(Debug, Default)]
pub(super) struct Direction {
    /// Sequence number of offset 0.
    pub(super) base: Option<u32>,
    /// The ISN, when the SYN was captured.
    pub(super) isn: Option<u32>,
    /// Next offset to deliver: everything below it was delivered or gapped.
    pub(super) next: u64,
    ooo: BTreeMap<u64, Piece>,
    /// Bytes (plus per-piece overhead) held in `ooo`.
    pub(super) held: usize,
    /// Highest offset the peer acknowledged (data only, FIN excluded).
    acked: u64,
    acked_frame: Option<u64>,
    /// Offset of the FIN (the end of the data), once seen.
    pub(super) fin: Option<u64>,
    last_frame: Option<u64>,
    pub(super) delivered: u64,
    pub(super) gap_bytes: u64,
    pub(super) gaps: u64,
    /// Highest end offset of any data seen.
    pub(super) max_end: u64,
}

/// Offset of `seq` in a space where `base` is offset 0, taking the candidate
/// closest to `reference` (so a 32-bit sequence number that wrapped lands
/// past 2^32, and one slightly behind lands behind).
pub(super) fn unwrap(base: u32, reference: u64, seq: u32) -> i64 {
    let rel = seq.wrapping_sub(base);
    // Truncation intended: the distance modulo 2^32, read as signed.
    let diff = i64::from(rel.wrapping_sub(reference as u32) as i32);
    reference as i64 + diff
}

impl Direction {
    /// Whether every byte up to the FIN has been delivered or gapped.
    pub(super) fn finished(&self) -> bool {
        self.fin.is_some_and(|f| self.next >= f)
    }

    /// Where 32-bit numbers are unwrapped from: the furthest point the
    /// direction is known to have reached.
    pub(super) fn reference(&self) -> u64 {
        self.next.max(self.acked)
    }

    fn seq_at(&self, offset: u64) -> u32 {
        // Truncation intended: sequence numbers are offsets modulo 2^32.
        self.base.unwrap_or(0).wrapping_add(offset as u32)
    }

    /// Takes one segment's payload. Returns the bytes that lay behind
    /// `next` (already delivered or gapped: retransmissions, mostly).
    pub(super) fn data(&mut self, a: &Arrival<'_>, ctx: &mut Ctx<'_>) {
        let start = a.offset;
        let end = a.offset + i64::from(a.len);
        let cap_end = a.offset + a.captured.len().min(a.len as usize) as i64;
        if start < 0 {
            ctx.stats.before_start_bytes += end.min(0).abs_diff(start);
        }
        let next = self.next as i64;
        if end <= next {
            ctx.stats.old_bytes += end.abs_diff(start.max(0));
            return;
        }
        let s = start.max(next);
        if s > start.max(0) {
            ctx.stats.old_bytes += s.abs_diff(start.max(0));
        }
        let s = s as u64;
        let e = end as u64;
        let ce = (cap_end.max(s as i64)) as u64;
        self.max_end = self.max_end.max(e);
        let orig_start = start.max(0) as u64;
        let bytes = a
            .captured
            .get((s as i64 - start) as usize..(ce as i64 - start) as usize)
            .unwrap_or(&[]);

        if s == self.next && self.ooo.is_empty() {
            // In order, nothing held: straight to the sink, no copy.
            if !bytes.is_empty() {
                self.deliver(bytes, a.frame, ctx);
            }
            if ce < e {
                self.declare(e, GapCause::SnapLength, Some(a.frame), ctx);
            }
            return;
        }
        if !bytes.is_empty() {
            self.insert_bytes(s, bytes, orig_start, e, a.frame, ctx);
        }
        if ce < e {
            self.insert_not_captured(ce, e, orig_start, a.frame, ctx);
        }
        self.settle(ctx);
        while self.held > ctx.cfg.direction_cap {
            ctx.stats.cap_flushes += 1;
            self.skip_hole(GapCause::MemoryCap, ctx);
        }
    }

    /// The FIN's offset: the end of the data. An ACK of the FIN itself is
    /// not data.
    pub(super) fn set_fin(&mut self, end: u64) {
        if self.fin.is_none() {
            self.fin = Some(end);
            self.acked = self.acked.min(end);
        }
    }

    /// The peer acknowledged up to `offset` (FIN included when it was seen).
    pub(super) fn ack(&mut self, offset: u64, frame: u64, ctx: &mut Ctx<'_>) {
        let offset = match self.fin {
            Some(f) => offset.min(f),
            None => offset,
        };
        if offset > self.acked {
            self.acked = offset;
            self.acked_frame = Some(frame);
            self.settle(ctx);
        }
    }

    /// Delivers what is in order, then declares the holes the peer's ACK
    /// has passed (capture loss: the receiver had those bytes) while more
    /// data waits after them. A hole at the tail, with nothing after it, is
    /// left for [`close`](Self::close): the last byte acknowledged may be an
    /// uncaptured FIN.
    fn settle(&mut self, ctx: &mut Ctx<'_>) {
        loop {
            self.deliver_ready(ctx);
            let Some((&key, _)) = self.ooo.first_key_value() else {
                return;
            };
            if self.acked <= self.next {
                return;
            }
            let end = key.min(self.acked);
            self.declare(end, GapCause::NotCapturedButAcked, None, ctx);
        }
    }

    /// Declares the hole before the first held piece (part acknowledged:
    /// capture loss; the rest: `unacked`), then delivers what follows it.
    /// Does nothing when nothing is held.
    pub(super) fn skip_hole(&mut self, unacked: GapCause, ctx: &mut Ctx<'_>) {
        let Some((&key, _)) = self.ooo.first_key_value() else {
            return;
        };
        self.declare_split(key, unacked, ctx);
        self.deliver_ready(ctx);
    }

    /// Ends the direction: every hole left is declared, every held byte
    /// delivered.
    pub(super) fn close(&mut self, ctx: &mut Ctx<'_>) {
        while !self.ooo.is_empty() {
            self.skip_hole(GapCause::NeverSentOrAcked, ctx);
        }
        let mut end = self.acked.max(self.fin.unwrap_or(0));
        if self.fin.is_none() && self.acked == self.next + 1 {
            // One byte acknowledged past the data, no FIN captured: the
            // byte is most likely the FIN's sequence number, not data.
            end = self.next;
        }
        if end > self.next {
            self.declare_split(end, GapCause::NeverSentOrAcked, ctx);
        }
    }

    fn declare_split(&mut self, end: u64, unacked: GapCause, ctx: &mut Ctx<'_>) {
        if self.acked > self.next {
            let e = self.acked.min(end);
            self.declare(e, GapCause::NotCapturedButAcked, None, ctx);
        }
        if end > self.next {
            self.declare(end, unacked, None, ctx);
        }
    }

    /// Declares `[next, end)` a gap and moves past it.
    fn declare(&mut self, end: u64, cause: GapCause, frame_after: Option<u64>, ctx: &mut Ctx<'_>) {
        if end <= self.next {
            return;
        }
        let frame_after = frame_after.or_else(|| {
            self.ooo
                .first_key_value()
                .filter(|(k, _)| **k == end)
                .map(|(_, p)| p.frame)
        });
        let gap = Gap {
            stream: ctx.stream,
            dir: ctx.dir,
            offset: self.next,
            len: end - self.next,
            seq: self.seq_at(self.next),
            seq_end: self.seq_at(end),
            frame_before: self.last_frame,
            frame_after,
            acked_by_frame: if cause == GapCause::NotCapturedButAcked {
                self.acked_frame
            } else {
                None
            },
            cause,
        };
        self.gap_bytes += gap.len;
        self.gaps += 1;
        ctx.stats.gaps[cause as usize] += 1;
        ctx.stats.gap_bytes[cause as usize] += gap.len;
        self.next = end;
        ctx.sink.gap(&gap);
    }

    fn deliver(&mut self, bytes: &[u8], frame: u64, ctx: &mut Ctx<'_>) {
        ctx.sink.data(ctx.stream, ctx.dir, self.next, bytes);
        self.next += bytes.len() as u64;
        self.delivered += bytes.len() as u64;
        ctx.stats.delivered_bytes += bytes.len() as u64;
        self.last_frame = Some(frame);
    }

    fn deliver_ready(&mut self, ctx: &mut Ctx<'_>) {
        while let Some(entry) = self.ooo.first_entry() {
            if *entry.key() != self.next {
                return;
            }
            let piece = entry.remove();
            self.release(piece.cost(), ctx);
            match piece.payload {
                Payload::Bytes(v) => self.deliver(&v, piece.frame, ctx),
                Payload::NotCaptured => {
                    self.declare(piece.end, GapCause::SnapLength, None, ctx);
                    self.last_frame = Some(piece.frame);
                }
            }
        }
    }

    fn hold(&mut self, start: u64, piece: Piece, ctx: &mut Ctx<'_>) {
        let cost = piece.cost();
        self.held += cost;
        ctx.stats.held_bytes += cost;
        self.ooo.insert(start, piece);
    }

    fn release(&mut self, cost: usize, ctx: &mut Ctx<'_>) {
        self.held -= cost;
        ctx.stats.held_bytes -= cost;
    }

    /// Start offsets of the held pieces that overlap `[start, end)`.
    fn overlapping(&self, start: u64, end: u64) -> Vec<u64> {
        let mut keys = Vec::new();
        if let Some((&k, p)) = self.ooo.range(..start).next_back() {
            if p.end > start {
                keys.push(k);
            }
        }
        keys.extend(self.ooo.range(start..end).map(|(&k, _)| k));
        keys
    }

    /// Holds `bytes` at `[start, start + len)`; where held bytes already
    /// cover part of it, the policy decides which copy stays, and every
    /// difference is reported.
    fn insert_bytes(
        &mut self,
        start: u64,
        bytes: &[u8],
        orig_start: u64,
        orig_end: u64,
        frame: u64,
        ctx: &mut Ctx<'_>,
    ) {
        let end = start + bytes.len() as u64;
        let mut uncovered: Vec<(u64, u64)> = Vec::new();
        let mut pos = start;
        for key in self.overlapping(start, end) {
            let Some(piece) = self.ooo.get_mut(&key) else {
                continue;
            };
            if key > pos {
                uncovered.push((pos, key));
            }
            let a = key.max(start);
            let b = piece.end.min(end);
            pos = pos.max(b);
            match &mut piece.payload {
                Payload::Bytes(held) => {
                    let old = &mut held[(a - key) as usize..(b - key) as usize];
                    let new = &bytes[(a - start) as usize..(b - start) as usize];
                    if old == new {
                        ctx.stats.old_bytes += b - a;
                        continue;
                    }
                    let arriving_wins = ctx
                        .cfg
                        .policy
                        .arriving_wins((piece.orig_start, piece.orig_end), (orig_start, orig_end));
                    if arriving_wins {
                        old.copy_from_slice(new);
                    }
                    ctx.stats.conflicts += 1;
                    ctx.sink.conflict(&Conflict {
                        stream: ctx.stream,
                        dir: ctx.dir,
                        offset: a,
                        len: b - a,
                        held: Version {
                            offset: piece.orig_start,
                            len: piece.orig_end - piece.orig_start,
                            frame: piece.frame,
                        },
                        arriving: Version {
                            offset: orig_start,
                            len: orig_end - orig_start,
                            frame,
                        },
                        kept: if arriving_wins {
                            Kept::Arriving
                        } else {
                            Kept::Held
                        },
                    });
                }
                Payload::NotCaptured => {
                    // Real bytes for a range the capture had cut: they
                    // replace the placeholder, whose remainders stay.
                    let Some(p) = self.ooo.remove(&key) else {
                        continue;
                    };
                    self.release(p.cost(), ctx);
                    if key < a {
                        self.hold(
                            key,
                            Piece {
                                end: a,
                                frame: p.frame,
                                orig_start: p.orig_start,
                                orig_end: p.orig_end,
                                payload: Payload::NotCaptured,
                            },
                            ctx,
                        );
                    }
                    if b < p.end {
                        self.hold(
                            b,
                            Piece {
                                end: p.end,
                                frame: p.frame,
                                orig_start: p.orig_start,
                                orig_end: p.orig_end,
                                payload: Payload::NotCaptured,
                            },
                            ctx,
                        );
                    }
                    uncovered.push((a, b));
                }
            }
        }
        if pos < end {
            uncovered.push((pos, end));
        }
        for (a, b) in uncovered {
            let piece = Piece {
                end: b,
                frame,
                orig_start,
                orig_end,
                payload: Payload::Bytes(bytes[(a - start) as usize..(b - start) as usize].to_vec()),
            };
            self.hold(a, piece, ctx);
        }
    }

    /// Holds a placeholder for `[start, end)`, sent but cut by the snap
    /// length, where nothing is held yet.
    fn insert_not_captured(
        &mut self,
        start: u64,
        end: u64,
        orig_start: u64,
        frame: u64,
        ctx: &mut Ctx<'_>,
    ) {
        let mut uncovered = Vec::new();
        let mut pos = start;
        for key in self.overlapping(start, end) {
            if key > pos {
                uncovered.push((pos, key));
            }
            if let Some(p) = self.ooo.get(&key) {
                pos = pos.max(p.end.min(end));
            }
        }
        if pos < end {
            uncovered.push((pos, end));
        }
        for (a, b) in uncovered {
            let piece = Piece {
                end: b,
                frame,
                orig_start,
                orig_end: end,
                payload: Payload::NotCaptured,
            };
            self.hold(a, piece, ctx);
        }
    }
}

#[cfg(test)]
mod test {
    use super::unwrap;

    #[test]
    fn unwrap_crosses_the_wrap_and_steps_back() {
        let base = u32::MAX - 9;
        assert_eq!(unwrap(base, 0, base), 0);
        assert_eq!(unwrap(base, 5, 5), 15);
        assert_eq!(unwrap(base, 0, base.wrapping_sub(3)), -3);
        // Far past 4 GiB: the reference picks the right lap.
        let lap = 5u64 << 32;
        assert_eq!(
            unwrap(base, lap + 100, base.wrapping_add(90)),
            (lap + 90) as i64
        );
    }
}
