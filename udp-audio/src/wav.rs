//! wav (being written).
