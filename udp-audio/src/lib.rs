//! udp-audio core (docs filled in below).
pub mod conceal;
pub mod error;
pub mod eval;
pub mod impair;
pub mod l16;
pub mod rtp;
pub mod seq;
pub mod synth;
pub mod wav;
pub use error::{Error, Result};
