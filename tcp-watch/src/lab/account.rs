//! The lab's account (being built): our analysis of both captures beside
//! the kernel's counters, R's drops, the receiver's sha256 and tshark.

use crate::error::Error;
use crate::lab::LabConfig;

/// Runs the lab with `config`, prints the account (text, or one JSON
/// document with `json`), and returns whether every comparison closed.
pub fn command(config: &LabConfig, json: bool) -> Result<bool, Error> {
    let _ = (config, json);
    Err(Error::Settings(
        "tcp-watch lab: the account is being built".into(),
    ))
}
