//! The embedded DNS responder: answers a task's query for a name the swarm owns, sans-IO.
//!
//! `DnsTable::respond` takes the query bytes, the querying task's networks and a caller-owned
//! buffer, and either writes the answer (`Outcome::Answered`), says the name belongs to the
//! outside world (`Outcome::Forward`: the io layer sends the query unchanged to the host's
//! resolvers) or drops what cannot be answered at all (`Outcome::Drop`). Randomness (the order of
//! several addresses) comes in as `entropy`; there is no clock and no I/O.
//!
//! What is answered follows Docker's embedded resolver: `<service>` and its aliases -> the VIP,
//! or every running task's IP shuffled (dnsrr); `tasks.<service>` -> every running task's IP,
//! shuffled; a task name -> its IP; PTR of a task IP -> `<task>.<network>.`; `<name>.<network>`
//! -> `<name>` on that network; any other type (AAAA, MX, ...) for a known name -> NOERROR and
//! no records; TTL 600; RA set, AA clear. A known name with no running task (dnsrr or `tasks.`)
//! is answered NOERROR with no records, never forwarded: the outside world cannot know it, and
//! a name never answers a task that is not running. Messages are parsed and built with
//! hickory-proto.

mod respond;
mod table;

pub use respond::{fit, refused, servfail, DnsDrop, Outcome, Transport};
pub use table::DnsTable;

/// TTL of every local answer, in seconds (Docker's `respTTL`).
pub const TTL: u32 = 600;

/// The largest UDP answer sent to a client that advertises more with EDNS (RFC 6891 payload
/// size): 1232 bytes, the DNS Flag Day 2020 value, fits unfragmented in an IPv6 minimum MTU and
/// inside any overlay MTU.
pub const EDNS_UDP_MAX: u16 = 1232;

/// The largest answer without EDNS over UDP (RFC 1035 4.2.1).
pub const UDP_MIN: u16 = 512;

#[cfg(test)]
mod tests;
