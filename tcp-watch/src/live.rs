//! Live capture from an interface (AF_PACKET), being built.
