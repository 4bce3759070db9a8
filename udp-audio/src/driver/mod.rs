//! The drivers: blocking sockets, `clock_nanosleep` to absolute deadlines, the monotonic and
//! wall clocks, signals. They read the time and pass it to the cores in [`crate::core`].
//!
//! - [`net`]: the paced sender and the receiver.
//! - [`relay`]: the impairment relay around [`crate::core::impair::Impairer`].
pub mod net;
pub mod relay;
