//! `framed-echo stream-demo`: what `send()` calls become at the reader.
//!
//! A sender makes one `send()` per message (a 4-byte big-endian length and
//! the payload); a receiver reads with a buffer of a chosen size and writes
//! down what each `read()` returned. [`ledger`] sets the reads against the
//! messages: reads that end inside a message, reads that hold several, the
//! messages that took several reads. Then the same bytes go through
//! [`framing::Decoder`], which must give back every message byte for byte.
//!
//! Three settings, one table ([`table`]):
//! - `loopback`: both ends on 127.0.0.1, the reader as fast as it can go;
//! - `slow-reader`: the same, but the reader sleeps between reads, so the
//!   kernel's receive buffer gathers many sends into one read;
//! - `mtu576`: two network namespaces joined by a veth pair with MTU 576 and
//!   a `tbf` rate limit ([`path`], root only), so segments are small and one
//!   message arrives in many reads.
//!
//! Layers: [`ledger`] and the message plan here are sans-IO; [`run`] is the
//! socket driver; the binary only parses arguments.

pub mod ledger;
pub mod path;
pub mod run;
pub mod table;

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

pub use ledger::{SizeHistogram, StreamCounts};
pub use run::{Outcome, SettingRun, run_setting};

/// Bytes of the length prefix in front of every message (4-byte big-endian,
/// [`framing::Config::u32_be`]).
pub const PREFIX_BYTES: usize = 4;
/// Smallest payload of the random mix.
pub const MIX_MIN: usize = 4;
/// Largest payload of the random mix: 64 KiB.
pub const MIX_MAX: usize = 64 * 1024;

/// The payload sizes of the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sizes {
    /// Every payload this many bytes.
    Fixed(usize),
    /// Sizes drawn from [`MIX_MIN`] to [`MIX_MAX`] bytes, evenly on a log
    /// scale (as many 4-64 B payloads as 4-64 KiB ones), from this seed.
    Mix(u64),
}

impl Sizes {
    /// The payload sizes of `count` messages.
    pub fn plan(self, count: usize) -> Vec<usize> {
        match self {
            Sizes::Fixed(n) => vec![n; count],
            Sizes::Mix(seed) => {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let (lo, hi) = ((MIX_MIN as f64).ln(), (MIX_MAX as f64).ln());
                (0..count)
                    .map(|_| {
                        let size = rng.random_range(lo..=hi).exp().round() as usize;
                        size.clamp(MIX_MIN, MIX_MAX)
                    })
                    .collect()
            }
        }
    }

    /// The largest payload of the plan (what the decoder must accept).
    pub fn largest(self) -> usize {
        match self {
            Sizes::Fixed(n) => n,
            Sizes::Mix(_) => MIX_MAX,
        }
    }
}

/// Appends message `index`'s payload to `out`: `len` bytes that differ
/// from one message to the next, so a message out of place or cut short
/// cannot pass for another.
pub fn write_payload(index: usize, len: usize, out: &mut Vec<u8>) {
    let mut x = (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    out.extend((0..len).map(|_| {
        // xorshift64: cheap, and no two messages start alike.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    }));
}

/// Where a run takes place (its doc lines are `--settings`' help).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Setting {
    /// Both ends on 127.0.0.1, the reader as fast as it can.
    Loopback,
    /// 127.0.0.1, the reader sleeping --read-delay before each read.
    SlowReader,
    /// Two namespaces joined by a veth pair with MTU 576 and a tbf limit.
    Mtu576,
}

impl std::fmt::Display for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

impl Setting {
    /// Every setting, in the order of the table.
    pub const ALL: [Setting; 3] = [Setting::Loopback, Setting::SlowReader, Setting::Mtu576];

    /// The setting's name on the command line and in JSON.
    pub fn id(self) -> &'static str {
        match self {
            Setting::Loopback => "loopback",
            Setting::SlowReader => "slow-reader",
            Setting::Mtu576 => "mtu576",
        }
    }
}

/// What every setting's run is made of.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DemoSettings {
    /// Messages to send, one `send()` each.
    pub messages: usize,
    /// Their payload sizes.
    pub sizes: Sizes,
    /// `TCP_NODELAY` on the sender (Nagle's algorithm off).
    pub nodelay: bool,
    /// Bytes the receiver asks for in each `read()`.
    pub read_buffer_bytes: usize,
    /// How long the slow reader sleeps between reads.
    #[serde(rename = "slow_reader_delay_ms", serialize_with = "as_ms")]
    pub slow_reader_delay: Duration,
    /// The `tbf` rate of the MTU 576 path, in Mbit/s.
    pub path_rate_mbit_per_s: u32,
    /// Give up when no byte moves for this long.
    #[serde(rename = "timeout_ms", serialize_with = "as_ms")]
    pub timeout: Duration,
}

/// The defaults of `framed-echo stream-demo`.
pub const DEFAULT_SETTINGS: DemoSettings = DemoSettings {
    messages: 400,
    sizes: Sizes::Mix(1),
    nodelay: false,
    read_buffer_bytes: 64 * 1024,
    slow_reader_delay: Duration::from_millis(20),
    path_rate_mbit_per_s: 50,
    timeout: Duration::from_secs(10),
};

/// Every setting's outcome, in the order asked.
#[derive(Debug, Clone, Serialize)]
pub struct Demo {
    /// What the runs were made of.
    pub settings: DemoSettings,
    /// One per setting that started.
    pub runs: Vec<Outcome>,
    /// Every run showed what it must (skipped ones aside).
    pub passed: bool,
    /// Stopped by SIGINT/SIGTERM: the runs are the ones that started.
    pub interrupted: bool,
}

impl Demo {
    /// The side-by-side table ([`table::render`]).
    pub fn table(&self) -> String {
        table::render(&self.runs)
    }
}

/// Runs `which` settings in turn, handing each outcome to `on_outcome` as
/// it ends. Once `stop` is set the running setting stops sending (what it
/// sent is still counted) and no other starts. A setting that fails is
/// reported as [`Outcome::Failed`] and the others still run.
pub fn demo(
    settings: &DemoSettings,
    which: &[Setting],
    stop: &std::sync::atomic::AtomicBool,
    mut on_outcome: impl FnMut(&Outcome),
) -> Demo {
    use std::sync::atomic::Ordering;
    let mut runs = Vec::new();
    for &setting in which {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let outcome = run_setting(setting, settings, stop).unwrap_or_else(|e| Outcome::Failed {
            setting,
            error: e.to_string(),
        });
        on_outcome(&outcome);
        runs.push(outcome);
    }
    let interrupted = stop.load(Ordering::Relaxed);
    Demo {
        settings: *settings,
        passed: runs.iter().all(Outcome::passed),
        runs,
        interrupted,
    }
}

fn as_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_spans_small_and_large_payloads_and_repeats_for_a_seed() {
        let plan = Sizes::Mix(7).plan(2000);
        assert_eq!(plan, Sizes::Mix(7).plan(2000));
        assert_ne!(plan, Sizes::Mix(8).plan(2000));
        assert!(plan.iter().all(|&s| (MIX_MIN..=MIX_MAX).contains(&s)));
        assert!(plan.iter().any(|&s| s < 64), "some payloads are tiny");
        assert!(plan.iter().any(|&s| s > 32 * 1024), "some are large");
    }

    fn payload(index: usize, len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        write_payload(index, len, &mut out);
        out
    }

    #[test]
    fn payloads_differ_between_messages() {
        assert_ne!(payload(0, 32), payload(1, 32));
        assert_eq!(payload(5, 32), payload(5, 32));
        assert_eq!(payload(3, 0), Vec::<u8>::new());
    }
}
