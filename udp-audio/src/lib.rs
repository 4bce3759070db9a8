//! udp-audio core (docs filled in below).
pub mod error;
pub mod rtp;
pub use error::{Error, Result};
