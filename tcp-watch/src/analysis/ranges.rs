//! Sorted, disjoint ranges of 64-bit stream offsets with a value per range:
//! the SACK scoreboard (RFC 6675 §2: what the receiver holds above the
//! cumulative ACK) and the holes in what the capture saw of a sender's data.
//!
//! The number of ranges is capped: a peer that sends SACK blocks or gaps at
//! random cannot make this grow without bound. Past the cap the lowest range
//! is forgotten and counted, never a panic.

/// One range `[start, end)` and its value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Span<M> {
    pub(crate) start: i64,
    pub(crate) end: i64,
    pub(crate) meta: M,
}

/// Disjoint ranges sorted by start.
#[derive(Debug, Clone)]
pub(crate) struct Ranges<M> {
    spans: Vec<Span<M>>,
    cap: usize,
    /// Ranges dropped because the cap was reached.
    pub(crate) forgotten: u64,
}

impl<M: Clone> Ranges<M> {
    pub(crate) fn new(cap: usize) -> Self {
        Ranges {
            spans: Vec::new(),
            cap: cap.max(1),
            forgotten: 0,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub(crate) fn spans(&self) -> &[Span<M>] {
        &self.spans
    }

    /// Adds `[start, end)`, merging with ranges it overlaps or touches (the
    /// merged range keeps the value of the lowest one).
    pub(crate) fn insert(&mut self, start: i64, end: i64, meta: M) {
        if start >= end {
            return;
        }
        let first = self.spans.partition_point(|s| s.end < start);
        let mut last = first;
        let (mut lo, mut hi, mut keep) = (start, end, meta);
        while last < self.spans.len() && self.spans[last].start <= end {
            let s = &self.spans[last];
            if s.start < lo {
                keep = s.meta.clone();
            }
            lo = lo.min(s.start);
            hi = hi.max(s.end);
            last += 1;
        }
        self.spans.splice(
            first..last,
            std::iter::once(Span {
                start: lo,
                end: hi,
                meta: keep,
            }),
        );
        while self.spans.len() > self.cap {
            self.spans.remove(0);
            self.forgotten += 1;
        }
    }

    /// Removes `[start, end)`. `removed` sees each range touched, the length
    /// taken from it, and whether the range is now gone entirely.
    pub(crate) fn remove(
        &mut self,
        start: i64,
        end: i64,
        mut removed: impl FnMut(&Span<M>, i64, bool),
    ) {
        if start >= end {
            return;
        }
        let mut i = self.spans.partition_point(|s| s.end <= start);
        while i < self.spans.len() && self.spans[i].start < end {
            let s = self.spans[i].clone();
            let taken = s.end.min(end) - s.start.max(start);
            let left = s.start < start;
            let right = s.end > end;
            removed(&s, taken, !left && !right);
            match (left, right) {
                (false, false) => {
                    self.spans.remove(i);
                }
                (true, false) => {
                    self.spans[i].end = start;
                    i += 1;
                }
                (false, true) => {
                    self.spans[i].start = end;
                    i += 1;
                }
                (true, true) => {
                    self.spans[i].end = start;
                    let mut r = s;
                    r.start = end;
                    self.spans.insert(i + 1, r);
                    if self.spans.len() > self.cap {
                        self.spans.remove(0);
                        self.forgotten += 1;
                    }
                    return;
                }
            }
        }
    }

    /// Drops everything below `x`.
    pub(crate) fn remove_below(&mut self, x: i64) {
        let n = self.spans.partition_point(|s| s.end <= x);
        self.spans.drain(..n);
        if let Some(s) = self.spans.first_mut() {
            s.start = s.start.max(x);
        }
    }

    /// Bytes of `[start, end)` inside the ranges.
    pub(crate) fn overlap(&self, start: i64, end: i64) -> i64 {
        let i = self.spans.partition_point(|s| s.end <= start);
        self.spans[i..]
            .iter()
            .take_while(|s| s.start < end)
            .map(|s| s.end.min(end) - s.start.max(start))
            .sum()
    }

    /// Whether every byte of `[start, end)` is inside one range.
    pub(crate) fn covers(&self, start: i64, end: i64) -> bool {
        let i = self.spans.partition_point(|s| s.end <= start);
        self.spans
            .get(i)
            .is_some_and(|s| s.start <= start && s.end >= end)
    }

    /// The range holding offset `x`.
    pub(crate) fn containing(&self, x: i64) -> Option<&Span<M>> {
        let i = self.spans.partition_point(|s| s.end <= x);
        self.spans.get(i).filter(|s| s.start <= x)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn insert_merges_and_remove_splits() {
        let mut r = Ranges::new(8);
        r.insert(10, 20, 1);
        r.insert(30, 40, 2);
        r.insert(20, 30, 3);
        assert_eq!(r.spans().len(), 1);
        assert_eq!(
            (r.spans()[0].start, r.spans()[0].end, r.spans()[0].meta),
            (10, 40, 1)
        );
        let mut seen = Vec::new();
        r.remove(15, 25, |s, n, gone| seen.push((s.meta, n, gone)));
        assert_eq!(seen, vec![(1, 10, false)]);
        assert_eq!(r.overlap(0, 100), 20);
        assert!(r.covers(25, 40));
        assert!(!r.covers(14, 26));
        r.remove_below(30);
        assert_eq!(r.overlap(0, 100), 10);
        assert_eq!(r.containing(35).map(|s| s.start), Some(30));
    }

    #[test]
    fn cap_forgets_the_lowest() {
        let mut r = Ranges::new(2);
        for i in 0..5 {
            r.insert(i * 10, i * 10 + 5, ());
        }
        assert_eq!(r.spans().len(), 2);
        assert_eq!(r.forgotten, 3);
        assert_eq!(r.spans()[0].start, 30);
    }
}
