//! (reassembly: being built for issue 10.)
