//! Demo pairs shared by the binaries.
