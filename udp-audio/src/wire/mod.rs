//! The wire layer: what the bytes on the network and in SDP files look like. Views that check
//! their input and never panic, and owned representations that emit.
//!
//! - [`rtp`]: the RTP fixed header (RFC 3550 §5.1).
//! - [`rtcp`]: the sender report and BYE the sender ends with (RFC 3550 §6.4.1, §6.6).
//! - [`l16`]: L16 payloads and payload-type choice (RFC 3551 §4.5.11).
//! - [`sdp`]: the session description of the stream (RFC 4566, RFC 3551 §6).
pub mod l16;
pub mod rtcp;
pub mod rtp;
pub mod sdp;
