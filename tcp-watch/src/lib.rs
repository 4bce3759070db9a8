//! `tcp-watch`: passive TCP stream reassembly that explains every lost,
//! retransmitted and out-of-order segment.
//!
//! Being built (issue 10). The layers, bottom up:
//!
//! ```text
//!  capture (pcap / pcapng, streaming, stdin)      capture.rs
//!     └─ frames ─▶ link + IP + TCP views          packet.rs
//!                    └─ Segment ──┬─▶ flows + reassembly (64-bit offsets,
//!                                 │     out-of-order buffer, gap log)    reassembly.rs
//!                                 └─▶ analysis (retransmissions by cause,
//!                                       duplicate ACKs, SACK, RTT)       analysis.rs
//!  lab: namespaces, nft loss, captures, kernel counters                  lab.rs
//! ```
//!
//! The cores ([`reassembly`], [`analysis`]) are sans-IO: segments in, with
//! their capture timestamps, events and reports out. They never read a
//! file, a socket or the clock.

pub mod account;
pub mod analysis;
pub mod capture;
pub mod commands;
pub mod error;
pub mod lab;
pub mod live;
pub mod output;
pub mod packet;
pub mod pipeline;
pub mod reassembly;
pub mod segment;

pub use error::Error;
pub use segment::{FlowKey, Segment, TcpFlags, TcpOptions, Timestamp};
