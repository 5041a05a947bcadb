//! The sans-IO forwarding core: no clock, no I/O, no randomness.
