//! The sans-IO cores: state machines that take times as arguments; they never read a clock or
//! touch a socket, so every test of them runs on a simulated clock.
//!
//! - [`seq`], [`source`]: RFC 3550 A.1 sequence validation and A.8 interarrival jitter.
//! - [`jitter`]: the jitter buffer and its playout clock; [`conceal`]: loss concealment.
//! - [`check`]: the stream checked against the format it was given.
//! - [`sender`]: the packetizer and the absolute pacing schedule.
//! - [`impair`]: the impairment decisions of the relay ([`impair::Impairer`]).
pub mod check;
pub mod conceal;
pub mod impair;
pub mod jitter;
pub mod reason;
pub mod sender;
pub mod seq;
pub mod source;
