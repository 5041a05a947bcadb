//! Packet formats as checked, zero-copy views over byte buffers.
//!
//! Each view follows one pattern: `new_checked` validates lengths once, after which no accessor
//! panics. etherparse covers the common headers (Ethernet, IPv4, UDP, TCP); this module holds what
//! it lacks (VXLAN, ARP, ICMP "fragmentation needed") and the few header writers the hot path needs.

pub mod arp;
pub mod checksum;
mod error;
pub mod esp;
pub mod icmp;
pub mod ipv4;
mod mac;
pub mod vnet;
pub mod vxlan;

pub use error::{Error, Result};
pub use mac::{MacAddr, MacParseError};

/// Length of an untagged Ethernet II header.
pub const ETHERNET_HEADER_LEN: usize = 14;
/// UDP header length.
pub const UDP_HEADER_LEN: usize = 8;
