//! conceal (being written).
