//! What the benches share: pinning to one CPU.

/// Pins the calling thread, and so the threads it spawns later, to the first
/// CPU it may run on, unless the environment variable `unpinned` is set.
#[cfg(target_os = "linux")]
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
pub(crate) fn pin_to_one_cpu(_unpinned: &str) {}
