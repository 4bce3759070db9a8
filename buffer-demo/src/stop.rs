//! Stopping a run early and cleanly.
//!
//! A [`Stop`] is a shared flag that every run loop here (sink, blast,
//! sweep, versus) checks between bounded waits. It is the flag of a
//! [`cli_conventions::Interrupt`]: [`Stop::on_signals`] makes SIGINT and
//! SIGTERM set it instead of killing the process, so that the program
//! removes what it created (namespaces, veth pairs, child processes: their
//! guards run as the stack unwinds normally), prints its report and exits
//! 130; a second signal ends the process at once. The signal handler only
//! stores to an atomic (`signal-hook`), which is async-signal-safe.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cli_conventions::Interrupt;

use crate::error::{Error, Result};

/// The longest a run loop sleeps before it looks at the flag again.
pub const POLL: Duration = Duration::from_millis(20);

/// A stop request shared between the caller (or a signal handler) and the
/// run loops. Clones share the flag; the default one is never set unless
/// [`Stop::request`] is called.
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    /// A flag nobody has set.
    pub fn new() -> Stop {
        Stop::default()
    }

    /// A flag that SIGINT and SIGTERM set (for the whole process, from now
    /// on: the first signal no longer ends it by itself, a second one ends
    /// it at once with exit code 130). See [`Interrupt::install`].
    pub fn on_signals() -> Result<Stop> {
        let interrupt = Interrupt::install().map_err(Error::socket("sigaction(SIGINT/SIGTERM)"))?;
        Ok(Stop::from(&interrupt))
    }

    /// Asks every loop that holds a clone to stop.
    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// True once a stop was requested.
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Sleeps `d`, in slices of at most [`POLL`]; returns `true` (early) if
    /// a stop was requested.
    pub fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now() + d.min(Duration::from_secs(86_400));
        loop {
            if self.requested() {
                return true;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            std::thread::sleep(left.min(POLL));
        }
    }
}

impl From<&Interrupt> for Stop {
    /// The interrupt's own flag: setting either sets both.
    fn from(interrupt: &Interrupt) -> Stop {
        Stop(interrupt.flag())
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn sleep_returns_early_when_asked() {
        let stop = Stop::new();
        assert!(!stop.sleep(Duration::from_millis(1)));
        let other = stop.clone();
        let t = std::thread::spawn(move || other.sleep(Duration::from_secs(60)));
        stop.request();
        assert!(t.join().unwrap());
        assert!(stop.requested());
    }

    #[test]
    fn an_interrupt_and_its_stop_share_one_flag() {
        let interrupt = Interrupt::new();
        let stop = Stop::from(&interrupt);
        assert!(!stop.requested());
        interrupt.request();
        assert!(stop.requested());
        let other = Interrupt::new();
        Stop::from(&other).request();
        assert!(other.requested());
    }
}
