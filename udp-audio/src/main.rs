//! `udp-audio` command line (being written).
fn main() {}
