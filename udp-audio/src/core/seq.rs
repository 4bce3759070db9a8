//! Source validation and sequence accounting (RFC 3550 Appendix A.1, A.3) and interarrival
//! jitter (Appendix A.8).
//!
//! A new source stays on *probation* until [`MIN_SEQUENTIAL`] packets arrive in sequence.
//! Afterwards a packet within [`MAX_DROPOUT`] ahead of the highest sequence number is accepted
//! (counting a wrap from 65535 to 0 as a new cycle); one fewer than [`MAX_MISORDER`] behind
//! is a duplicate or reordered packet and accepted too; anything else is a *bad jump*, dropped
//! unless the very next packet continues from it, in which case the source is taken to have
//! restarted and the sequence state is reinitialised there.
//!
//! Extended sequence numbers are `i64`: `cycles + seq` as in A.1, where a packet from before
//! the first wrap that arrives late may map to a negative number relative to its successors.

/// Packets more than this far ahead are a jump, not loss (A.1).
pub const MAX_DROPOUT: u16 = 3000;
/// Packets less than this far behind are reordered or duplicated, not a jump (A.1).
pub const MAX_MISORDER: u16 = 100;
/// In-sequence packets needed to validate a new source (A.1).
pub const MIN_SEQUENTIAL: u32 = 2;
const SEQ_MOD: i64 = 1 << 16;

/// What [`SourceValidator::update`] decided about one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqOutcome {
    /// Accepted, in order or less than [`MAX_MISORDER`] behind; `extended` numbers it.
    Valid {
        /// The extended sequence number.
        extended: i64,
    },
    /// This packet completed probation: it and the packets held during probation are valid.
    /// [`SourceValidator::extend`] numbers the held ones.
    Validated {
        /// The extended sequence number of this packet.
        extended: i64,
    },
    /// The source is on probation: hold (or drop) the packet until it is validated.
    Probation,
    /// This packet confirmed a large jump: the sequence restarted here and extended numbers
    /// start over. A receiver resets its jitter buffer (the timestamps jumped too).
    Restarted {
        /// The extended sequence number of this packet in the new numbering.
        extended: i64,
    },
    /// A jump of more than [`MAX_DROPOUT`] ahead or [`MAX_MISORDER`] behind: dropped, and
    /// remembered in case the next packet confirms a restart.
    BadJump,
}

/// What [`ValidSource::update`] decided about a packet of a source past probation: the
/// [`SeqOutcome`]s that can follow validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamOutcome {
    /// Accepted, in order or less than [`MAX_MISORDER`] behind; `extended` numbers it.
    Valid {
        /// The extended sequence number.
        extended: i64,
    },
    /// This packet confirmed a large jump: the sequence restarted here (see
    /// [`SeqOutcome::Restarted`]).
    Restarted {
        /// The extended sequence number of this packet in the new numbering.
        extended: i64,
    },
    /// A jump of more than [`MAX_DROPOUT`] ahead or [`MAX_MISORDER`] behind: dropped.
    BadJump,
}

impl From<StreamOutcome> for SeqOutcome {
    fn from(o: StreamOutcome) -> Self {
        match o {
            StreamOutcome::Valid { extended } => SeqOutcome::Valid { extended },
            StreamOutcome::Restarted { extended } => SeqOutcome::Restarted { extended },
            StreamOutcome::BadJump => SeqOutcome::BadJump,
        }
    }
}

/// A.1 state of a source that has passed probation (from [`SourceValidator::into_valid`]):
/// it never goes back on probation, so its [`update`](ValidSource::update) has only the
/// outcomes that can follow validation.
#[derive(Debug, Clone)]
pub struct ValidSource(SourceValidator);

impl ValidSource {
    /// Feeds one packet's sequence number (A.1 `update_seq`).
    pub fn update(&mut self, seq: u16) -> StreamOutcome {
        self.0.update_valid(seq)
    }

    /// See [`SourceValidator::extend`].
    pub fn extend(&self, seq: u16) -> i64 {
        self.0.extend(seq)
    }

    /// See [`SourceValidator::extended_max`].
    pub fn extended_max(&self) -> i64 {
        self.0.extended_max()
    }
}

/// RFC 3550 A.1 per-source sequence state, plus A.3 loss accounting.
#[derive(Debug, Clone)]
pub struct SourceValidator {
    max_seq: u16,
    cycles: i64,
    base_seq: u16,
    bad_seq: u32,
    probation: u32,
    received: u64,
    expected_prior: i64,
    received_prior: u64,
}

impl SourceValidator {
    /// Starts validating a source whose first packet carries `seq` (A.1: the source is put
    /// on probation and `update` must still be called with this first packet).
    pub fn new(seq: u16) -> Self {
        let mut s = SourceValidator {
            max_seq: 0,
            cycles: 0,
            base_seq: 0,
            bad_seq: 0,
            probation: MIN_SEQUENTIAL,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
        };
        s.init(seq);
        s.max_seq = seq.wrapping_sub(1);
        s
    }

    fn init(&mut self, seq: u16) {
        self.base_seq = seq;
        self.max_seq = seq;
        self.bad_seq = SEQ_MOD as u32 + 1; // a value no 16-bit seq can equal
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
    }

    /// Feeds one packet's sequence number (A.1 `update_seq`).
    pub fn update(&mut self, seq: u16) -> SeqOutcome {
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init(seq);
                    self.received += 1;
                    return SeqOutcome::Validated {
                        extended: self.extended_max(),
                    };
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return SeqOutcome::Probation;
        }
        self.update_valid(seq).into()
    }

    /// A.1 `update_seq` for a source past probation.
    fn update_valid(&mut self, seq: u16) -> StreamOutcome {
        let udelta = seq.wrapping_sub(self.max_seq);
        if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles += SEQ_MOD;
            }
            self.max_seq = seq;
            self.received += 1;
            StreamOutcome::Valid {
                extended: self.extended_max(),
            }
        } else if u32::from(udelta) <= SEQ_MOD as u32 - u32::from(MAX_MISORDER) {
            if u32::from(seq) == self.bad_seq {
                // Two sequential packets after a jump: the other side restarted.
                self.init(seq);
                self.received += 1;
                tracing::debug!(seq, "RTP sequence restarted after a confirmed jump");
                StreamOutcome::Restarted {
                    extended: self.extended_max(),
                }
            } else {
                self.bad_seq = (u32::from(seq) + 1) & (SEQ_MOD as u32 - 1);
                tracing::debug!(
                    seq,
                    max_seq = self.max_seq,
                    "RTP sequence jump, packet dropped"
                );
                StreamOutcome::BadJump
            }
        } else {
            self.received += 1;
            StreamOutcome::Valid {
                extended: self.extend(seq),
            }
        }
    }

    /// The extended number of a sequence number near the highest one seen (within half the
    /// sequence space either way): for packets held during probation or reordered.
    pub fn extend(&self, seq: u16) -> i64 {
        let delta = i64::from(seq.wrapping_sub(self.max_seq) as i16);
        self.extended_max() + delta
    }

    /// Highest extended sequence number received (`cycles + max_seq`).
    pub fn extended_max(&self) -> i64 {
        self.cycles + i64::from(self.max_seq)
    }

    /// The same state as a [`ValidSource`] once probation is over; itself while on probation.
    pub fn into_valid(self) -> Result<ValidSource, SourceValidator> {
        if self.on_probation() {
            Err(self)
        } else {
            Ok(ValidSource(self))
        }
    }

    /// True while the source is still on probation.
    pub fn on_probation(&self) -> bool {
        self.probation > 0
    }

    /// Packets accepted since validation or the last restart (duplicates included, as A.1).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Packets expected since validation or the last restart (A.3).
    pub fn expected(&self) -> i64 {
        if self.on_probation() {
            return 0;
        }
        self.extended_max() - i64::from(self.base_seq) + 1
    }

    /// Cumulative packets lost (A.3); negative when duplicates outnumber losses.
    pub fn lost(&self) -> i64 {
        self.expected() - self.received as i64
    }

    /// Loss since the previous call as the 8-bit RTCP fraction (A.3), and the packets
    /// expected and lost in that interval.
    pub fn take_interval(&mut self) -> (u8, i64, i64) {
        let expected = self.expected();
        let expected_interval = expected - self.expected_prior;
        self.expected_prior = expected;
        let received_interval = (self.received - self.received_prior) as i64;
        self.received_prior = self.received;
        let lost_interval = expected_interval - received_interval;
        let fraction = if expected_interval <= 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval).min(255) as u8
        };
        (fraction, expected_interval, lost_interval)
    }
}

/// Interarrival jitter (A.8), in RTP timestamp units.
///
/// `D = (Rj - Ri) - (Sj - Si)`, `J += (|D| - J) / 16`, with arrival times `R` expressed in the
/// RTP clock by the caller (e.g. `(now - epoch) * rate`). Arithmetic is modulo 2^32 so
/// timestamp and arrival wraps are harmless.
#[derive(Debug, Clone, Default)]
pub struct JitterEstimator {
    last_transit: Option<u32>,
    jitter: f64,
}

impl JitterEstimator {
    /// A fresh estimator (jitter 0).
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one packet: `arrival` in RTP units (any origin), `timestamp` from its header.
    pub fn update(&mut self, arrival: u64, timestamp: u32) {
        let transit = (arrival as u32).wrapping_sub(timestamp);
        if let Some(last) = self.last_transit {
            let d = f64::from(transit.wrapping_sub(last) as i32).abs();
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
    }

    /// Current jitter in timestamp units.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// Current jitter as the integer an RTCP report block carries.
    pub fn jitter_rtcp(&self) -> u32 {
        self.jitter as u32
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn validated(first: u16) -> SourceValidator {
        let mut v = SourceValidator::new(first);
        assert_eq!(v.update(first), SeqOutcome::Probation);
        assert!(matches!(
            v.update(first.wrapping_add(1)),
            SeqOutcome::Validated { .. }
        ));
        v
    }

    #[test]
    fn probation_needs_two_in_sequence() {
        let mut v = SourceValidator::new(10);
        assert_eq!(v.update(10), SeqOutcome::Probation);
        assert_eq!(v.update(12), SeqOutcome::Probation); // not sequential: probation restarts
        assert!(v.on_probation());
        assert_eq!(v.update(13), SeqOutcome::Validated { extended: 13 });
        assert_eq!(v.extend(12), 12);
        assert_eq!(v.update(14), SeqOutcome::Valid { extended: 14 });
        assert_eq!((v.expected(), v.received(), v.lost()), (2, 2, 0));
    }

    #[test]
    fn wraps_from_65535_to_0() {
        let mut v = validated(65533);
        assert_eq!(v.update(65535), SeqOutcome::Valid { extended: 65535 });
        assert_eq!(v.update(0), SeqOutcome::Valid { extended: 65536 });
        assert_eq!(v.update(1), SeqOutcome::Valid { extended: 65537 });
        // A straggler from before the wrap gets the previous cycle.
        assert_eq!(v.update(65534), SeqOutcome::Valid { extended: 65534 });
        assert_eq!(v.extended_max(), 65537);
        assert_eq!(v.expected(), 65537 - 65534 + 1);
    }

    #[test]
    fn held_probation_packet_across_wrap_is_numbered_below() {
        let mut v = SourceValidator::new(65535);
        assert_eq!(v.update(65535), SeqOutcome::Probation);
        assert_eq!(v.update(0), SeqOutcome::Validated { extended: 0 });
        assert_eq!(v.extend(65535), -1);
    }

    #[test]
    fn loss_within_dropout_is_counted() {
        let mut v = validated(100);
        assert_eq!(
            v.update(100 + MAX_DROPOUT - 1),
            SeqOutcome::Valid { extended: 3099 }
        );
        assert_eq!(v.lost(), 3099 - 100 + 1 - 3);
        let (fraction, expected, lost) = v.take_interval();
        assert_eq!((expected, lost), (2999, 2997));
        assert_eq!(fraction, ((2997i64 << 8) / 2999) as u8);
        assert_eq!(v.take_interval(), (0, 0, 0));
    }

    #[test]
    fn restart_needs_confirmation() {
        let mut v = validated(1000);
        assert_eq!(v.update(30_000), SeqOutcome::BadJump);
        assert_eq!(v.update(1002), SeqOutcome::Valid { extended: 1002 });
        // A lone jump followed by something else is not a restart.
        assert_eq!(v.update(40_000), SeqOutcome::BadJump);
        assert_eq!(v.update(50_000), SeqOutcome::BadJump);
        // The sender restarted at 7: two in a row confirm it.
        assert_eq!(v.update(7), SeqOutcome::BadJump);
        assert_eq!(v.update(8), SeqOutcome::Restarted { extended: 8 });
        assert_eq!(v.update(9), SeqOutcome::Valid { extended: 9 });
        assert_eq!((v.expected(), v.received()), (2, 2));
    }

    #[test]
    fn far_behind_is_a_jump_near_behind_is_reorder() {
        let mut v = validated(5000);
        assert_eq!(
            v.update(5001 - MAX_MISORDER + 1),
            SeqOutcome::Valid { extended: 4902 }
        );
        assert_eq!(v.update(5001 - MAX_MISORDER), SeqOutcome::BadJump);
        assert_eq!(v.update(5001), SeqOutcome::Valid { extended: 5001 }); // duplicate
    }

    #[test]
    fn jitter_follows_a8() {
        let mut j = JitterEstimator::new();
        // Constant transit: no jitter.
        for k in 0..10u32 {
            j.update(u64::from(5000 + k * 160), k * 160);
        }
        assert_eq!(j.jitter(), 0.0);
        // Alternate +-80 units of delay: |D| = 160 each time after the first; J -> 160.
        let mut j = JitterEstimator::new();
        let mut expect = 0.0;
        for k in 0..200u32 {
            let extra = if k % 2 == 0 { 0 } else { 160 };
            j.update(u64::from(k * 160 + extra) + (1u64 << 32) - 100, k * 160);
            if k > 0 {
                expect += (160.0 - expect) / 16.0;
            }
        }
        assert!((j.jitter() - expect).abs() < 1e-9);
        assert!(j.jitter() > 159.0 && j.jitter_rtcp() <= 160);
    }

    #[test]
    fn jitter_survives_timestamp_wrap() {
        let mut j = JitterEstimator::new();
        for k in 0..20u32 {
            j.update(
                u64::from(k) * 160 + 7,
                (u32::MAX - 800).wrapping_add(k * 160),
            );
        }
        assert_eq!(j.jitter(), 0.0);
    }
}
