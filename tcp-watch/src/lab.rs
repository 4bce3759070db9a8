//! (lab: being built for issue 10.)
