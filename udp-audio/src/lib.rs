//! udp-audio core (docs filled in below).
pub mod error;
pub mod l16;
pub mod rtp;
pub mod seq;
pub use error::{Error, Result};
