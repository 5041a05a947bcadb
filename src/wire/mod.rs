//! Packet formats as checked, zero-copy views over byte buffers.
//!
//! Each view follows one pattern: `new_checked` validates lengths once, after which no accessor
//! panics. etherparse covers the common headers (Ethernet, IPv4, UDP, TCP); this module holds what
//! it lacks.

mod mac;

pub use mac::{MacAddr, MacParseError};
