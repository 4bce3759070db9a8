//! (packet: being built for issue 10.)
