//! Stopping a run early and cleanly.
//!
//! A [`Stop`] is a shared flag that every run loop here (sink, blast,
//! sweep, versus) checks between bounded waits. The program makes it the
//! flag of its `cli_conventions::Interrupt` ([`Stop::from`] an
//! `Arc<AtomicBool>`): SIGINT and SIGTERM then set it instead of killing
//! the process, so that the program removes what it created (namespaces,
//! veth pairs, child processes: their guards run as the stack unwinds
//! normally), prints its report and exits 130. The library installs no
//! signal handler itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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

impl From<Arc<AtomicBool>> for Stop {
    /// A stop on `flag`: setting either sets both (the program passes
    /// `cli_conventions::Interrupt::flag()`, which a signal sets).
    fn from(flag: Arc<AtomicBool>) -> Stop {
        Stop(flag)
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
    fn a_stop_from_a_flag_shares_it() {
        let flag = Arc::new(AtomicBool::new(false));
        let stop = Stop::from(Arc::clone(&flag));
        assert!(!stop.requested());
        flag.store(true, Ordering::SeqCst);
        assert!(stop.requested());
        let other = Arc::new(AtomicBool::new(false));
        Stop::from(Arc::clone(&other)).request();
        assert!(other.load(Ordering::SeqCst));
    }
}
