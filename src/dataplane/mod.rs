//! The sans-IO forwarding core: no clock, no I/O, no randomness.
//!
//! A `Dataplane` is one worker's switch for every network of a node. It takes a frame from a
//! local port or a datagram from the underlay, the current time as an argument, and a
//! caller-owned `Output`; it appends what must be sent and counts what it drops, by reason.
//! Nothing here panics on any input: every parse is checked and every failure is a `DropReason`.

mod arp;
pub mod counters;
pub mod dns;
mod egress;
mod encap;
pub mod esp;
pub mod gro;
pub mod gso;
mod inner;
pub mod lb;
mod mtu;
pub mod output;
pub mod resolver;
pub mod services;
mod switch;
pub mod tables;

pub use counters::{Counters, CountersReport, DropReason, Events, InterfaceStats, PortCounters};
pub use encap::SRC_PORT_BASE;
pub use output::{
    Meta, Output, Target, UnderlayDst, UnderlayKind, UNDERLAY_IP_PAYLOAD, UNDERLAY_UDP_PAYLOAD,
};
pub use switch::{Dataplane, Input};
pub use tables::{Dest, NetId, NetInfo, PortId, PortInfo, Tables};

/// Nanoseconds since the Unix epoch: the only notion of time the core has.
pub type Nanos = u64;

#[cfg(test)]
mod tests;
