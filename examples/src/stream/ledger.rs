//! The account of one TCP byte stream: which `send()` calls went in, which
//! `read()` calls came out, and where the messages' boundaries fell among
//! them. Sans-IO: it is given sizes, never touches a socket.
//!
//! A *message* is what the application meant as one unit (here a 4-byte
//! length prefix and its payload, written with one `send()`). TCP keeps the
//! bytes in order and loses none, but it does not keep the boundaries: a
//! read may end inside a message, or hold the end of one and the start of
//! the next, or several whole ones.

use serde::Serialize;

/// Buckets of a [`SizeHistogram`]: `[1, 2)`, `[2, 4)`, ... `[32 KiB, 64 KiB)`,
/// and 64 KiB or more.
pub const BUCKETS: usize = 17;

/// How many sizes fell in each power-of-two range. In JSON, the non-empty
/// buckets as `[{"min_bytes": 8, "max_bytes": 15, "count": 52}, ...]`
/// (`max_bytes` is null for the open 64 KiB+ bucket).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SizeHistogram {
    /// `counts[k]`: sizes from `2^k` to `2^(k+1) - 1` bytes; the last
    /// bucket holds everything from 64 KiB up. Zero sizes are not counted.
    pub counts: [u64; BUCKETS],
}

impl SizeHistogram {
    /// Adds one size.
    pub fn add(&mut self, size: usize) {
        if size == 0 {
            return;
        }
        let k = (usize::BITS - 1 - size.leading_zeros()) as usize;
        self.counts[k.min(BUCKETS - 1)] += 1;
    }

    /// The bucket's range as people write it: `"1 B"`, `"2-3 B"`,
    /// `"1-2 KiB"` (1024 to 2047 bytes), `"64 KiB+"`.
    pub fn label(k: usize) -> String {
        let low = 1usize << k;
        if k + 1 >= BUCKETS {
            return format!("{} KiB+", low >> 10);
        }
        let high = (low << 1) - 1;
        match (low, high) {
            (1, _) => "1 B".to_owned(),
            (l, h) if l >= 1024 => format!("{}-{} KiB", l >> 10, (h + 1) >> 10),
            (l, h) => format!("{l}-{h} B"),
        }
    }
}

impl Serialize for SizeHistogram {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Bucket {
            min_bytes: u64,
            max_bytes: Option<u64>,
            count: u64,
        }
        s.collect_seq(
            self.counts
                .iter()
                .enumerate()
                .filter(|&(_, &n)| n > 0)
                .map(|(k, &count)| Bucket {
                    min_bytes: 1 << k,
                    max_bytes: (k + 1 < BUCKETS).then(|| (2 << k) - 1),
                    count,
                }),
        )
    }
}

/// What one stream's reads looked like against its messages and sends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StreamCounts {
    /// Messages the sender meant (each one `send()` of prefix + payload).
    pub messages: u64,
    /// Their bytes, prefixes included.
    pub message_bytes: u64,
    /// `send()` calls the sender made (more than `messages` when the kernel
    /// took a message in parts).
    pub send_calls: u64,
    /// Bytes those calls returned as sent.
    pub sent_bytes: u64,
    /// Sizes the `send()` calls returned.
    pub send_sizes: SizeHistogram,
    /// `read()` calls that returned data.
    pub read_calls: u64,
    /// Bytes they returned.
    pub read_bytes: u64,
    /// Sizes the `read()` calls returned.
    pub read_sizes: SizeHistogram,
    /// Reads whose last byte is not the last byte of a message: a reader
    /// taking each read as a message would cut this one.
    pub reads_ending_inside_a_message: u64,
    /// Reads holding bytes of two or more messages.
    pub reads_holding_several_messages: u64,
    /// The most messages one read held bytes of.
    pub most_messages_in_one_read: u64,
    /// Reads that were exactly one whole message: all a reader taking each
    /// read as a message would get right.
    pub reads_exactly_one_message: u64,
    /// Messages whose bytes came in two or more reads.
    pub messages_split_across_reads: u64,
    /// The most reads one message took.
    pub most_reads_for_one_message: u64,
    /// The path's maximum segment size, when known.
    pub mss_bytes: Option<u64>,
    /// Messages larger than the MSS (they cannot fit in one segment).
    pub messages_over_mss: u64,
    /// Of those, the ones that came in two or more reads.
    pub messages_over_mss_split: u64,
}

/// The account kept as the stream runs: told each message's length up
/// front, then every `read()` as it returns. Its memory is a few words per
/// message, whatever the number of reads (a 1-byte read buffer makes
/// millions).
#[derive(Debug, Clone)]
pub struct StreamLedger {
    /// End offset of every non-empty message, in stream order.
    ends: Vec<u64>,
    /// Reads each message's bytes came in.
    reads_of: Vec<u64>,
    /// The first message not yet wholly read.
    first: usize,
    /// Stream offset of the next read's first byte.
    start: u64,
    counts: StreamCounts,
}

impl StreamLedger {
    /// A ledger for messages of these lengths, in stream order (zero
    /// lengths are skipped).
    pub fn new(messages: &[usize]) -> StreamLedger {
        let mut ends = Vec::with_capacity(messages.len());
        let mut total = 0u64;
        for &len in messages.iter().filter(|&&len| len > 0) {
            total += len as u64;
            ends.push(total);
        }
        StreamLedger {
            reads_of: vec![0; ends.len()],
            ends,
            first: 0,
            start: 0,
            counts: StreamCounts::default(),
        }
    }

    /// One `send()` that returned `n` bytes (0 is not a send).
    pub fn sent(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        let c = &mut self.counts;
        c.send_calls += 1;
        c.sent_bytes += n as u64;
        c.send_sizes.add(n);
    }

    /// One `read()` that returned `n` bytes (0, end of stream, is not
    /// counted). Bytes past the last message's end (a peer that sent more
    /// than it said) count in `read_bytes` and nowhere else.
    pub fn read(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        let c = &mut self.counts;
        c.read_calls += 1;
        c.read_bytes += n as u64;
        c.read_sizes.add(n);
        let end = self.start + n as u64;
        let ends = &self.ends;
        let first = self.first;
        if first < ends.len() {
            // `last`: the message holding the read's last byte (or the last
            // message when the read runs past them all).
            let mut last = first;
            while last + 1 < ends.len() && ends[last] < end {
                last += 1;
            }
            let touched = (last - first + 1) as u64;
            for k in &mut self.reads_of[first..=last] {
                *k += 1;
            }
            let ends_at_boundary = ends[last] <= end;
            let message_start = if first == 0 { 0 } else { ends[first - 1] };
            if !ends_at_boundary {
                c.reads_ending_inside_a_message += 1;
            }
            if touched > 1 {
                c.reads_holding_several_messages += 1;
            }
            if touched == 1 && ends[last] == end && message_start == self.start {
                c.reads_exactly_one_message += 1;
            }
            c.most_messages_in_one_read = c.most_messages_in_one_read.max(touched);
            self.first = if ends_at_boundary { last + 1 } else { last };
        }
        self.start = end;
    }

    /// The account, for the first `sent` non-empty messages (the ones that
    /// went out: a run stopped early sent fewer than it planned), on a path
    /// whose MSS is `mss` when known.
    pub fn finish(mut self, sent: usize, mss: Option<usize>) -> StreamCounts {
        let sent = sent.min(self.ends.len());
        let c = &mut self.counts;
        c.mss_bytes = mss.map(|m| m as u64);
        c.messages = sent as u64;
        c.message_bytes = if sent == 0 { 0 } else { self.ends[sent - 1] };
        for (i, &n) in self.reads_of[..sent].iter().enumerate() {
            if n > 1 {
                c.messages_split_across_reads += 1;
            }
            c.most_reads_for_one_message = c.most_reads_for_one_message.max(n);
            if let Some(mss) = c.mss_bytes {
                let len = self.ends[i] - if i == 0 { 0 } else { self.ends[i - 1] };
                if len > mss {
                    c.messages_over_mss += 1;
                    if n > 1 {
                        c.messages_over_mss_split += 1;
                    }
                }
            }
        }
        self.counts
    }
}

impl StreamCounts {
    /// The account of a whole stream from its sizes, in stream order: each
    /// message's length, each `send()`'s return, each `read()`'s return
    /// (a [`StreamLedger`] fed them all).
    pub fn tally(
        messages: &[usize],
        sends: &[usize],
        reads: &[usize],
        mss: Option<usize>,
    ) -> StreamCounts {
        let mut ledger = StreamLedger::new(messages);
        for &n in sends {
            ledger.sent(n);
        }
        for &n in reads {
            ledger.read(n);
        }
        ledger.finish(usize::MAX, mss)
    }

    /// The sum of the read sizes equals the sum of the send sizes, and both
    /// equal the messages' bytes: nothing lost, nothing added.
    pub fn adds_up(&self) -> bool {
        self.read_bytes == self.sent_bytes && self.sent_bytes == self.message_bytes
    }

    /// Takes in the sender's side, counted apart ([`StreamLedger::sent`]
    /// on a ledger of its own).
    pub fn with_sends(mut self, sender: &StreamCounts) -> StreamCounts {
        self.send_calls = sender.send_calls;
        self.sent_bytes = sender.sent_bytes;
        self.send_sizes = sender.send_sizes.clone();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The account worked out byte by byte: which message each byte belongs
    /// to, and which messages each read touched.
    fn by_bytes(messages: &[usize], reads: &[usize], mss: Option<usize>) -> StreamCounts {
        let owner: Vec<usize> = messages
            .iter()
            .enumerate()
            .flat_map(|(i, &len)| std::iter::repeat_n(i, len))
            .collect();
        let is_last_byte = |pos: usize| pos + 1 == owner.len() || owner[pos] != owner[pos + 1];
        let is_first_byte = |pos: usize| pos == 0 || owner[pos] != owner[pos - 1];
        let mut c = StreamCounts {
            mss_bytes: mss.map(|m| m as u64),
            messages: messages.iter().filter(|&&l| l > 0).count() as u64,
            message_bytes: owner.len() as u64,
            ..StreamCounts::default()
        };
        let mut reads_of = vec![0u64; messages.len()];
        let mut pos = 0usize;
        for &r in reads.iter().filter(|&&r| r > 0) {
            c.read_calls += 1;
            c.read_bytes += r as u64;
            c.read_sizes.add(r);
            let span: Vec<usize> = (pos..pos + r).filter(|&p| p < owner.len()).collect();
            if let (Some(&a), Some(&b)) = (span.first(), span.last()) {
                let mut touched: Vec<usize> = span.iter().map(|&p| owner[p]).collect();
                touched.dedup();
                for &m in &touched {
                    reads_of[m] += 1;
                }
                let n = touched.len() as u64;
                // A read running past the last message ends where it ends.
                let inside = !is_last_byte(b);
                c.reads_ending_inside_a_message += u64::from(inside);
                c.reads_holding_several_messages += u64::from(n > 1);
                c.reads_exactly_one_message +=
                    u64::from(n == 1 && !inside && is_first_byte(a) && span.len() == r);
                c.most_messages_in_one_read = c.most_messages_in_one_read.max(n);
            }
            pos += r;
        }
        for (i, &n) in reads_of.iter().enumerate() {
            c.messages_split_across_reads += u64::from(n > 1);
            c.most_reads_for_one_message = c.most_reads_for_one_message.max(n);
            if mss.is_some_and(|m| messages[i] > m) {
                c.messages_over_mss += 1;
                c.messages_over_mss_split += u64::from(n > 1);
            }
        }
        c
    }

    /// Cuts `total` bytes into reads at the given fractions.
    fn cut(total: usize, cuts: &[u16]) -> Vec<usize> {
        let mut points: Vec<usize> = cuts
            .iter()
            .map(|&c| total * c as usize / u16::MAX as usize)
            .collect();
        points.push(0);
        points.push(total);
        points.sort_unstable();
        points.windows(2).map(|w| w[1] - w[0]).collect()
    }

    proptest! {
        #[test]
        fn tally_matches_the_byte_by_byte_account(
            messages in prop::collection::vec(1usize..600, 0..40),
            cuts in prop::collection::vec(any::<u16>(), 0..60),
            extra in 0usize..3,
            mss in prop::option::of(1usize..400),
        ) {
            let total: usize = messages.iter().sum();
            let mut reads = cut(total, &cuts);
            if extra > 0 {
                reads.push(extra);
            }
            let mut got = StreamCounts::tally(&messages, &[], &reads, mss);
            let want = by_bytes(&messages, &reads, mss);
            // The oracle does not count sends; neither were any given.
            got.send_calls = 0;
            prop_assert_eq!(got, want);
        }

        #[test]
        fn a_run_stopped_early_is_the_account_of_what_went_out(
            messages in prop::collection::vec(1usize..600, 1..40),
            sent in 0usize..40,
            cuts in prop::collection::vec(any::<u16>(), 0..60),
            mss in prop::option::of(1usize..400),
        ) {
            // The ledger knows the whole plan; only `sent` messages went out.
            let sent = sent.min(messages.len());
            let out = &messages[..sent];
            let reads = cut(out.iter().sum(), &cuts);
            let mut ledger = StreamLedger::new(&messages);
            for &n in &reads {
                ledger.read(n);
            }
            prop_assert_eq!(ledger.finish(sent, mss), StreamCounts::tally(out, &[], &reads, mss));
        }

        #[test]
        fn counts_add_up_when_reads_cover_the_sends(
            messages in prop::collection::vec(1usize..70_000, 1..30),
            cuts in prop::collection::vec(any::<u16>(), 0..80),
        ) {
            let total: usize = messages.iter().sum();
            let reads = cut(total, &cuts);
            let c = StreamCounts::tally(&messages, &messages, &reads, None);
            prop_assert!(c.adds_up());
            prop_assert_eq!(c.read_sizes.counts.iter().sum::<u64>(), c.read_calls);
            prop_assert_eq!(c.send_sizes.counts.iter().sum::<u64>(), c.send_calls);
            prop_assert!(c.reads_exactly_one_message + c.reads_holding_several_messages <= c.read_calls);
            prop_assert!(c.messages_split_across_reads <= c.messages);
        }
    }

    #[test]
    fn one_read_of_everything_holds_every_message() {
        let c = StreamCounts::tally(&[10, 20, 30], &[10, 20, 30], &[60], None);
        assert_eq!(c.read_calls, 1);
        assert_eq!(c.most_messages_in_one_read, 3);
        assert_eq!(c.reads_holding_several_messages, 1);
        assert_eq!(c.reads_ending_inside_a_message, 0);
        assert_eq!(c.messages_split_across_reads, 0);
        assert!(c.adds_up());
    }

    #[test]
    fn reads_cutting_messages_are_counted() {
        // Messages 0-9 and 10-29; reads 0-4, 5-14, 15-29.
        let c = StreamCounts::tally(&[10, 20], &[30], &[5, 10, 15], Some(12));
        assert_eq!(c.reads_ending_inside_a_message, 2);
        assert_eq!(c.reads_holding_several_messages, 1);
        assert_eq!(c.messages_split_across_reads, 2);
        assert_eq!(c.most_reads_for_one_message, 2);
        assert_eq!(c.reads_exactly_one_message, 0);
        assert_eq!((c.messages_over_mss, c.messages_over_mss_split), (1, 1));
    }

    #[test]
    fn missing_bytes_do_not_add_up() {
        let c = StreamCounts::tally(&[10, 20], &[30], &[10, 19], None);
        assert!(!c.adds_up());
        assert_eq!(c.reads_exactly_one_message, 1);
        assert_eq!(c.reads_ending_inside_a_message, 1);
    }

    #[test]
    fn histogram_buckets_are_powers_of_two() {
        let mut h = SizeHistogram::default();
        for s in [0, 1, 2, 3, 4, 1023, 1024, 65_535, 65_536, 1 << 20] {
            h.add(s);
        }
        assert_eq!(h.counts[0], 1);
        assert_eq!(h.counts[1], 2);
        assert_eq!(h.counts[2], 1);
        assert_eq!(h.counts[9], 1);
        assert_eq!(h.counts[10], 1);
        assert_eq!(h.counts[15], 1);
        assert_eq!(h.counts[16], 2);
        assert_eq!(SizeHistogram::label(0), "1 B");
        assert_eq!(SizeHistogram::label(2), "4-7 B");
        assert_eq!(SizeHistogram::label(10), "1-2 KiB");
        assert_eq!(SizeHistogram::label(16), "64 KiB+");
    }
}
