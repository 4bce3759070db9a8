//! Why a UDP receiver drops datagrams under load, where each dropped datagram
//! went, and a sink that does not drop.
//!
//! ```text
//!  blast ──sendmmsg──> [ socket buffer: SO_RCVBUF ] ──recvmmsg──> receiver ──ring──> processing
//!   paced, seq +            kernel drops here:            thread          full ring:   (--work-us
//!   send time, sentinel     SO_RXQ_OVFL, /proc/net/udp,                    drops here   per datagram)
//!                           RcvbufErrors
//! ```
//!
//! Layers:
//! - [`wire`]: the datagram header (with the per-run stream nonce) and the
//!   sentinel (sans-IO);
//! - [`account`]: classification (the stream is its nonce and source
//!   address: anything else is foreign) and the ledger that must close (sans-IO);
//! - [`sweep::RateSearch`]: the search for the highest loss-free rate (sans-IO);
//! - [`sockopt`], [`mmsg`]: `SO_RCVBUF`/`SO_RCVBUFFORCE`, `SO_RXQ_OVFL`,
//!   `/proc` counters, `recvmmsg`/`sendmmsg` (Linux, `libc`);
//! - [`sink`], [`loadgen`]: the thin drivers (threads, sockets, clocks);
//! - [`stop`]: a stop flag every run loop checks (the program sets it on
//!   SIGINT/SIGTERM);
//! - [`sweep`], [`plot`], [`netns`], [`versus`]: experiments built on them;
//!   [`table`]: what a sweep found (shared by `sweep` and `plot`).
//!
//! The blaster can send from several threads and with UDP GSO
//! (`blast --threads --gso`); the sink can take GRO-coalesced messages and
//! split them (`sink --gro`) and receive on several `SO_REUSEPORT` sockets
//! (`sink --receivers`). It does not do IPv6 namespaces, or anything but Linux.
//!
//! The `buffer-demo` program (`sink`, `blast`, `sweep`, `versus-iperf3`) is
//! the package `buffer-demo-cli` in `cli/`, so that this library pulls no
//! command-line crates.

pub mod account;
pub mod error;
pub mod loadgen;
pub mod mmsg;
pub mod netns;
pub mod plot;
pub mod sink;
pub mod sockopt;
pub mod stop;
pub mod sweep;
pub mod table;
pub mod versus;
pub mod wire;

pub use account::Ledger;
pub use error::{Error, Result};
pub use loadgen::{BlastConfig, BlastReport, blast};
pub use sink::{Mode, Sink, SinkConfig, SinkReport};
pub use stop::Stop;
pub use sweep::{SweepTable, short_sweep};
