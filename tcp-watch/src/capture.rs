//! (capture: being built for issue 10.)
