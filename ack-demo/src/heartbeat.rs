//! The heartbeat both sides run: a `PING` every interval, and a peer
//! silent for three intervals is declared dead.

use std::time::{Duration, Instant};

use crate::error::Error;

/// Intervals of silence after which the peer is declared dead.
pub const DEAD_AFTER: u32 = 3;

/// Heartbeat timers (sans-IO: every call takes `now`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heartbeat {
    interval: Duration,
    last_heard: Instant,
    next_ping: Instant,
}

impl Heartbeat {
    pub(crate) fn new(interval: Duration, now: Instant) -> Heartbeat {
        Heartbeat {
            interval,
            last_heard: now,
            next_ping: now + interval,
        }
    }

    /// Something arrived from the peer.
    pub(crate) fn heard(&mut self, now: Instant) {
        self.last_heard = now;
    }

    /// The next instant [`tick`](Heartbeat::tick) has something to do.
    pub(crate) fn deadline(&self) -> Instant {
        self.next_ping.min(self.dead_at())
    }

    fn dead_at(&self) -> Instant {
        self.last_heard + DEAD_AFTER * self.interval
    }

    /// `Ok(true)` when a `PING` is due now.
    ///
    /// # Errors
    /// [`Error::PeerSilent`] after three silent intervals.
    pub(crate) fn tick(&mut self, now: Instant) -> Result<bool, Error> {
        if now >= self.dead_at() {
            return Err(Error::PeerSilent {
                silent_ms: now.duration_since(self.last_heard).as_millis() as u64,
            });
        }
        if now >= self.next_ping {
            self.next_ping = now + self.interval;
            return Ok(true);
        }
        Ok(false)
    }
}
