//! (analysis: being built for issue 10.)
