//! What the benches share: criterion's settings and pinning to one CPU.

use std::time::Duration;

use criterion::Criterion;

/// Short runs for ratios: one second of warm-up, `measure` of measurement
/// over `samples` samples, no plots, 20 000 bootstrap resamples instead of
/// 100 000 (on a noisy two-core machine those cost more than the
/// measurements, and the ratios need neither).
pub(crate) fn short_runs(measure: Duration, samples: usize) -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(measure)
        .sample_size(samples)
        .nresamples(20_000)
        .without_plots()
}

/// Pins the calling thread, and so the threads it spawns later, to the first
/// CPU it may run on, unless the environment variable `unpinned` is set.
#[cfg(target_os = "linux")]
#[allow(dead_code)] // codec.rs does not pin
pub(crate) fn pin_to_one_cpu(unpinned: &str) {
    // `cpu_set_t` of glibc and musl: 1024 bits.
    type CpuSet = [u64; 16];
    unsafe extern "C" {
        fn sched_getaffinity(pid: i32, size: usize, mask: *mut CpuSet) -> i32;
        fn sched_setaffinity(pid: i32, size: usize, mask: *const CpuSet) -> i32;
    }
    if std::env::var_os(unpinned).is_some() {
        return;
    }
    let size = std::mem::size_of::<CpuSet>();
    let mut allowed: CpuSet = [0; 16];
    // SAFETY: `allowed` is a writable `cpu_set_t`-sized buffer; pid 0 is this thread.
    if unsafe { sched_getaffinity(0, size, &mut allowed) } != 0 {
        return;
    }
    let Some(word) = allowed.iter().position(|&w| w != 0) else {
        return;
    };
    let mut one: CpuSet = [0; 16];
    one[word] = 1 << allowed[word].trailing_zeros();
    // SAFETY: as above, `one` is a `cpu_set_t`-sized buffer.
    let ok = unsafe { sched_setaffinity(0, size, &one) } == 0;
    assert!(ok, "sched_setaffinity failed");
}

/// Pinning is Linux-only.
#[cfg(not(target_os = "linux"))]
#[allow(dead_code)]
pub(crate) fn pin_to_one_cpu(_unpinned: &str) {}
