//! Which RTP source the receiver plays, sans-IO.
//!
//! A UDP port hears whatever anyone sends to it: the stream, a stray packet of an older
//! session, another sender, port scanners. RFC 3550 A.1 says a source is valid only after
//! [`MIN_SEQUENTIAL`](crate::seq::MIN_SEQUENTIAL) packets in sequence; a source is identified
//! here by its SSRC *and* the address it sends from, since anyone can copy an SSRC.
//!
//! [`SourceTable`] keeps every source heard (at most [`MAX_SOURCES`], the least recently
//! heard candidate is forgotten first), each with its own [`SourceValidator`] and the packets
//! held while it is on probation. The first source to pass probation is **chosen** and stays
//! chosen for the session; from then on, packets of any other source are refused and
//! counted:
//!
//! - `ssrc_change`: another SSRC than the chosen one (or than the SSRC pinned by
//!   [`SourceFilter::ssrc`]);
//! - `other_address`: the chosen SSRC from another address, or anything from an address other
//!   than the one pinned by [`SourceFilter::address`];
//! - `pt_change`: a payload type other than the configured one, or than the chosen source's
//!   (before a choice: than the candidate's first);
//! - `probation`: held packets of a candidate that was forgotten, or never validated.
//!
//! The chosen source's A.1 state is a [`ValidSource`], which has no probation to fall back
//! to, and the table keeps the caller's state `S` for it (the receiver's numbering): both
//! exist only once a source is chosen, and [`SourceTable::sequence`] lends the state with
//! each packet of the stream ([`Sequenced::Stream`]).
//!
//! Only packets of the chosen source are *activity* ([`SourceTable::last_stream_us`]): a
//! receiver's idle timeout must not be kept alive by datagrams that are not the stream.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

use serde::Serialize;

pub use crate::core::reason::DropReason;
use crate::seq::{SourceValidator, StreamOutcome, ValidSource};

/// Sources the table remembers at once.
pub const MAX_SOURCES: usize = 16;
/// Packets held per candidate while it is on probation.
pub const MAX_HELD: usize = 8;

/// What the receiver was told to expect; `None` fields accept any value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SourceFilter {
    /// Accept only packets from this address; port 0 accepts any port of that IP.
    pub address: Option<SocketAddr>,
    /// Accept only this SSRC.
    pub ssrc: Option<u32>,
}

impl SourceFilter {
    fn admits_address(&self, from: Option<SocketAddr>) -> bool {
        match (self.address, from) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(want), Some(got)) => {
                want.ip() == got.ip() && (want.port() == 0 || want.port() == got.port())
            }
        }
    }
}

/// A source: its SSRC and the address its packets come from (`None` when the driver does
/// not say, as in simulations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceKey {
    /// The RTP SSRC.
    pub ssrc: u32,
    /// The sender's address.
    pub address: Option<SocketAddr>,
}

/// One source as the receiver's report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceSeen {
    /// The RTP SSRC.
    pub ssrc: u32,
    /// The sender's address, when known.
    pub address: Option<SocketAddr>,
    /// RTP packets heard from it (whatever became of them).
    pub packets: u64,
    /// Whether this is the stream being played.
    pub chosen: bool,
}

impl std::fmt::Display for SourceSeen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SSRC {:#010x}", self.ssrc)?;
        if let Some(a) = self.address {
            write!(f, " from {a}")?;
        }
        write!(
            f,
            " ({} packet{}{})",
            self.packets,
            if self.packets == 1 { "" } else { "s" },
            if self.chosen { ", chosen" } else { "" }
        )
    }
}

/// A handle on one row of the table, valid until the next [`SourceTable::admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceId(usize);

/// What [`SourceTable::sequence`] decided about an admitted packet. Once a source is
/// chosen, the table keeps the caller's state `S` for it, and lends it with each of its
/// packets.
#[derive(Debug)]
pub enum Sequenced<'a, T, S> {
    /// The source is on probation: the packet is held by the table.
    Held,
    /// This packet validated its source, which is now the chosen one: the packets it held,
    /// with their extended sequence numbers in arrival order, then this packet's number.
    Chosen {
        /// Held packets and their extended sequence numbers.
        held: Vec<(i64, T)>,
        /// This packet's extended sequence number.
        extended: i64,
        /// The chosen source's state, just made.
        state: &'a mut S,
    },
    /// A packet of the chosen source, what A.1 said of it, and the source's state.
    Stream(StreamOutcome, &'a mut S),
}

/// The chosen source: its row, its A.1 state past probation, and the caller's state.
#[derive(Debug)]
struct Chosen<S> {
    index: usize,
    sequence: ValidSource,
    state: S,
}

#[derive(Debug)]
struct Entry<T> {
    key: SourceKey,
    payload_type: u8,
    /// A.1 state while on probation (the chosen source's is in [`Chosen`]).
    validator: Option<SourceValidator>,
    packets: u64,
    held: VecDeque<(u16, T)>,
    last_heard_us: u64,
}

/// The sources heard on one port and the one chosen. See the [module documentation](self).
#[derive(Debug)]
pub struct SourceTable<T, S> {
    filter: SourceFilter,
    payload_type: Option<u8>,
    entries: Vec<Entry<T>>,
    chosen: Option<Chosen<S>>,
    forgotten: u64,
    dropped: BTreeMap<DropReason, u64>,
    last_stream_us: Option<u64>,
}

impl<T, S> SourceTable<T, S> {
    /// An empty table; `payload_type` is the one configured (`None`: each source's first).
    pub fn new(filter: SourceFilter, payload_type: Option<u8>) -> Self {
        SourceTable {
            filter,
            payload_type,
            entries: Vec::new(),
            chosen: None,
            forgotten: 0,
            dropped: BTreeMap::new(),
            last_stream_us: None,
        }
    }

    fn refuse(&mut self, kind: DropReason) -> Result<SourceId, DropReason> {
        self.count(kind, 1);
        Err(kind)
    }

    fn count(&mut self, kind: DropReason, n: u64) {
        if n > 0 {
            *self.dropped.entry(kind).or_insert(0) += n;
        }
    }

    /// The kind a packet of `key` is refused as once `chosen` plays.
    fn other_kind(chosen: &SourceKey, key: &SourceKey) -> DropReason {
        if key.ssrc != chosen.ssrc {
            DropReason::SsrcChange
        } else {
            DropReason::OtherAddress
        }
    }

    /// Takes one RTP packet's identity at `now_us`: refuses it (the kind is returned and
    /// counted in [`SourceTable::dropped`]) or returns the row to pass to
    /// [`SourceTable::sequence`] once the payload has been checked.
    pub fn admit(
        &mut self,
        key: SourceKey,
        payload_type: u8,
        now_us: u64,
    ) -> Result<SourceId, DropReason> {
        // The payload type first: once it is known (configured, or the chosen source's),
        // a packet with another one is no audio of ours whoever sent it (an RTCP packet on
        // the RTP port reads as PT 72..76), and it must not create a source either.
        let locked_pt = self.payload_type.or(self
            .chosen
            .as_ref()
            .map(|c| self.entries[c.index].payload_type));
        if locked_pt.is_some_and(|pt| pt != payload_type) {
            return self.refuse(DropReason::PtChange);
        }
        if !self.filter.admits_address(key.address) {
            return self.refuse(DropReason::OtherAddress);
        }
        if self.filter.ssrc.is_some_and(|s| s != key.ssrc) {
            return self.refuse(DropReason::SsrcChange);
        }
        let i = match self.entries.iter().position(|e| e.key == key) {
            Some(i) => i,
            None => {
                if self.entries.len() == MAX_SOURCES {
                    self.forget_one();
                }
                self.entries.push(Entry {
                    key,
                    payload_type: self.payload_type.unwrap_or(payload_type),
                    validator: None,
                    packets: 0,
                    held: VecDeque::new(),
                    last_heard_us: now_us,
                });
                self.entries.len() - 1
            }
        };
        let entry = &mut self.entries[i];
        entry.packets += 1;
        entry.last_heard_us = now_us;
        let expected_pt = entry.payload_type;
        if let Some(c) = self.chosen.as_ref().map(|c| c.index) {
            if c != i {
                let kind = Self::other_kind(&self.entries[c].key, &key);
                return self.refuse(kind);
            }
        }
        if payload_type != expected_pt {
            return self.refuse(DropReason::PtChange);
        }
        Ok(SourceId(i))
    }

    /// Forgets the least recently heard source that is not the chosen one; its held
    /// packets are counted as `probation`.
    fn forget_one(&mut self) {
        let victim = self
            .entries
            .iter()
            .enumerate()
            .filter(|&(i, _)| Some(i) != self.chosen_index())
            .min_by_key(|(_, e)| e.last_heard_us)
            .map(|(i, _)| i);
        let Some(v) = victim else { return };
        let gone = self.entries.remove(v);
        self.count(DropReason::Probation, gone.held.len() as u64);
        self.forgotten += 1;
        if let Some(c) = self.chosen.as_mut() {
            if c.index > v {
                c.index -= 1;
            }
        }
    }

    /// Runs an admitted packet's sequence number `seq` through its source's A.1 state.
    /// `hold` makes the item the table keeps while the source is on probation (called only
    /// then); `start` makes the state of a source when it is chosen, from the packets it
    /// held (called once).
    pub fn sequence(
        &mut self,
        id: SourceId,
        seq: u16,
        now_us: u64,
        hold: impl FnOnce() -> T,
        start: impl FnOnce(&[(i64, T)]) -> S,
    ) -> Sequenced<'_, T, S> {
        // Once a source is chosen, `admit` refuses every other: `id` is the chosen one's.
        if let Some(ref mut chosen) = self.chosen {
            self.last_stream_us = Some(now_us);
            return Sequenced::Stream(chosen.sequence.update(seq), &mut chosen.state);
        }
        let i = id.0;
        let entry = &mut self.entries[i];
        let mut validator = entry
            .validator
            .take()
            .unwrap_or_else(|| SourceValidator::new(seq));
        validator.update(seq);
        match validator.into_valid() {
            Ok(sequence) => {
                let held: Vec<(i64, T)> = std::mem::take(&mut entry.held)
                    .into_iter()
                    .map(|(s, item)| (sequence.extend(s), item))
                    .collect();
                let extended = sequence.extended_max();
                let state = start(&held);
                self.last_stream_us = Some(now_us);
                let chosen = self.choose(i, sequence, state);
                Sequenced::Chosen {
                    held,
                    extended,
                    state: &mut chosen.state,
                }
            }
            Err(validator) => {
                // Still on probation.
                entry.validator = Some(validator);
                if entry.held.len() == MAX_HELD {
                    entry.held.pop_front();
                    self.count(DropReason::Probation, 1);
                }
                let entry = &mut self.entries[i];
                entry.held.push_back((seq, hold()));
                Sequenced::Held
            }
        }
    }

    /// Makes row `i` the chosen source; what the others held is refused now.
    fn choose(&mut self, i: usize, sequence: ValidSource, state: S) -> &mut Chosen<S> {
        let chosen = self.entries[i].key;
        let mut discarded = Vec::new();
        for (j, e) in self.entries.iter_mut().enumerate() {
            if j != i && !e.held.is_empty() {
                discarded.push((Self::other_kind(&chosen, &e.key), e.held.len() as u64));
                e.held.clear();
            }
        }
        for (kind, n) in discarded {
            self.count(kind, n);
        }
        match chosen.address {
            Some(a) => tracing::debug!("RTP source chosen: SSRC {:#010x} from {a}", chosen.ssrc),
            None => tracing::debug!("RTP source chosen: SSRC {:#010x}", chosen.ssrc),
        }
        self.chosen.insert(Chosen {
            index: i,
            sequence,
            state,
        })
    }

    fn chosen_index(&self) -> Option<usize> {
        self.chosen.as_ref().map(|c| c.index)
    }

    /// The chosen source's state, once one passed probation.
    pub fn chosen_state(&self) -> Option<&S> {
        self.chosen.as_ref().map(|c| &c.state)
    }

    /// The chosen source, once one passed probation.
    pub fn chosen(&self) -> Option<SourceKey> {
        self.chosen_index().map(|c| self.entries[c].key)
    }

    /// When the last packet of the chosen source arrived (the stream's activity).
    pub fn last_stream_us(&self) -> Option<u64> {
        self.last_stream_us
    }

    /// Packets refused or discarded, by kind, with the packets still held on probation
    /// counted as `probation`.
    pub fn dropped(&self) -> BTreeMap<DropReason, u64> {
        let mut d = self.dropped.clone();
        let held: u64 = self.entries.iter().map(|e| e.held.len() as u64).sum();
        if held > 0 {
            *d.entry(DropReason::Probation).or_insert(0) += held;
        }
        d
    }

    /// The sources remembered, in the order they were first heard.
    pub fn seen(&self) -> Vec<SourceSeen> {
        self.entries
            .iter()
            .enumerate()
            .map(|(i, e)| SourceSeen {
                ssrc: e.key.ssrc,
                address: e.key.address,
                packets: e.packets,
                chosen: self.chosen_index() == Some(i),
            })
            .collect()
    }

    /// Sources forgotten to keep the table within [`MAX_SOURCES`].
    pub fn forgotten(&self) -> u64 {
        self.forgotten
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn addr(port: u16) -> Option<SocketAddr> {
        Some(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    fn key(ssrc: u32, port: u16) -> SourceKey {
        SourceKey {
            ssrc,
            address: addr(port),
        }
    }

    /// Feeds one packet; returns what became of it as a short word.
    fn feed(t: &mut SourceTable<u16, ()>, k: SourceKey, seq: u16, now: u64) -> String {
        match t.admit(k, 96, now) {
            Err(kind) => kind.to_string(),
            Ok(id) => match t.sequence(id, seq, now, || seq, |_| ()) {
                Sequenced::Held => "held".into(),
                Sequenced::Chosen { held, extended, .. } => format!("chosen {held:?} {extended}"),
                Sequenced::Stream(StreamOutcome::Valid { extended }, _) => {
                    format!("valid {extended}")
                }
                Sequenced::Stream(o, _) => format!("{o:?}"),
            },
        }
    }

    #[test]
    fn a_stranger_first_does_not_capture_the_receiver() {
        let mut t = SourceTable::new(SourceFilter::default(), None);
        let (stranger, real) = (key(0xbad, 4000), key(0x1234, 5000));
        assert_eq!(feed(&mut t, stranger, 777, 0), "held");
        assert_eq!(t.chosen(), None);
        assert_eq!(feed(&mut t, real, 10, 100_000), "held");
        assert_eq!(feed(&mut t, real, 11, 120_000), "chosen [(10, 10)] 11");
        assert_eq!(t.chosen(), Some(real));
        assert_eq!(feed(&mut t, real, 12, 140_000), "valid 12");
        // The stranger stays refused, even if it now sends in sequence.
        assert_eq!(feed(&mut t, stranger, 778, 150_000), "ssrc_change");
        assert_eq!(feed(&mut t, stranger, 779, 160_000), "ssrc_change");
        assert_eq!(t.dropped(), BTreeMap::from([(DropReason::SsrcChange, 3)]));
        let seen = t.seen();
        assert_eq!(seen.len(), 2);
        assert_eq!(
            (seen[0].ssrc, seen[0].packets, seen[0].chosen),
            (0xbad, 3, false)
        );
        assert_eq!(
            (seen[1].ssrc, seen[1].packets, seen[1].chosen),
            (0x1234, 3, true)
        );
        assert_eq!(t.last_stream_us(), Some(140_000));
    }

    #[test]
    fn the_chosen_ssrc_from_another_address_is_refused() {
        let mut t = SourceTable::new(SourceFilter::default(), None);
        let (real, copy) = (key(0x1234, 5000), key(0x1234, 6000));
        feed(&mut t, real, 1, 0);
        feed(&mut t, real, 2, 1);
        assert_eq!(feed(&mut t, copy, 3, 2), "other_address");
        assert_eq!(feed(&mut t, copy, 4, 3), "other_address");
        assert_eq!(feed(&mut t, real, 3, 4), "valid 3");
        assert_eq!(t.dropped(), BTreeMap::from([(DropReason::OtherAddress, 2)]));
        assert_eq!(t.last_stream_us(), Some(4));
    }

    #[test]
    fn interleaved_candidates_each_keep_their_own_sequence() {
        // Two sources alternate; each is in sequence on its own, so the first to reach two
        // wins, and the other's held packet is counted against it.
        let mut t = SourceTable::new(SourceFilter::default(), None);
        let (a, b) = (key(1, 5000), key(2, 5001));
        assert_eq!(feed(&mut t, a, 100, 0), "held");
        assert_eq!(feed(&mut t, b, 9000, 1), "held");
        assert_eq!(feed(&mut t, a, 101, 2), "chosen [(100, 100)] 101");
        assert_eq!(t.dropped(), BTreeMap::from([(DropReason::SsrcChange, 1)]));
    }

    #[test]
    fn a_pinned_address_or_ssrc_refuses_everything_else() {
        let filter = SourceFilter {
            address: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            ssrc: Some(7),
        };
        let mut t = SourceTable::new(filter, Some(96));
        let other_ip = SourceKey {
            ssrc: 7,
            address: Some(SocketAddr::from(([127, 0, 0, 2], 5000))),
        };
        assert_eq!(feed(&mut t, other_ip, 1, 0), "other_address");
        assert_eq!(feed(&mut t, key(8, 5000), 1, 0), "ssrc_change");
        // Port 0 in the filter: any port of that IP.
        assert_eq!(feed(&mut t, key(7, 5000), 1, 0), "held");
        assert_eq!(feed(&mut t, key(7, 5000), 2, 0), "chosen [(1, 1)] 2");
        assert!(t.seen().iter().all(|s| s.ssrc == 7), "{:?}", t.seen());
        let mut t = SourceTable::<u16, ()>::new(filter, None);
        assert!(t.admit(key(7, 5000), 96, 0).is_ok());
        assert_eq!(t.admit(key(7, 5000), 97, 0), Err(DropReason::PtChange));
    }

    #[test]
    fn a_flood_of_sources_stays_bounded_and_the_stream_still_wins() {
        let mut t = SourceTable::new(SourceFilter::default(), None);
        let real = key(0xaaaa, 5000);
        let mut now = 0;
        for round in 0..50u16 {
            // Many strangers, each with one packet, around every packet of the stream.
            for s in 0..(MAX_SOURCES as u32 - 2) {
                now += 1;
                feed(&mut t, key(1000 + u32::from(round) * 100 + s, 4000), 1, now);
            }
            now += 1;
            let r = feed(&mut t, real, 500 + round, now);
            if round == 1 {
                assert!(r.starts_with("chosen"), "{r}");
            }
        }
        assert_eq!(t.chosen(), Some(real));
        assert!(t.seen().len() <= MAX_SOURCES);
        assert!(t.forgotten() > 0);
        let real_seen = t.seen().into_iter().find(|s| s.chosen).unwrap();
        assert_eq!(real_seen.packets, 50);
    }

    #[test]
    fn a_candidate_holds_a_bounded_number_of_packets() {
        let mut t = SourceTable::new(SourceFilter::default(), None);
        let k = key(3, 5000);
        // Never in sequence: on probation for ever.
        for j in 0..(MAX_HELD as u16 + 5) {
            assert_eq!(feed(&mut t, k, j * 10, 0), "held");
        }
        assert_eq!(
            t.dropped(),
            BTreeMap::from([(DropReason::Probation, MAX_HELD as u64 + 5)])
        );
        assert_eq!(t.chosen(), None);
        assert_eq!(t.last_stream_us(), None);
    }
}
