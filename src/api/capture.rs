//! `GET /swarmnet/capture`: a live capture streamed to the client (`swarmnet capture`), in a
//! framing of swarmnet's own that the CLI turns into pcap: a header (`SWCP`, the link type as
//! a little-endian u32), then per frame its time (u64 ns since the epoch), its length on the
//! wire and the bytes kept (u32 each) and those bytes; at the end a record whose length is
//! `u32::MAX` and whose 8 bytes are the frames the ring dropped.

use std::time::Duration;

/// pcap link types.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Raw IP (IPv4 here), as `swarmnet replay` writes the underlay.
pub const LINKTYPE_RAW: u32 = 101;
/// The stream's first four bytes.
pub const MAGIC: &[u8; 4] = b"SWCP";
/// The `len` of the closing record.
pub const END: u32 = u32::MAX;

/// What a capture asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureAsk {
    /// A network, a task (full name, `service.slot`) or a service: its ports on this node.
    pub target: String,
    /// The underlay's datagrams instead of the inner frames.
    pub underlay: bool,
    /// Stop after this many frames.
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    pub snaplen: u32,
    /// The filter (a subset of tcpdump's language), read by the route.
    pub filter: crate::io::capture::Filter,
}

/// The header of a capture stream.
pub fn header(linktype: u32) -> Vec<u8> {
    let mut h = MAGIC.to_vec();
    h.extend_from_slice(&linktype.to_le_bytes());
    h
}

/// One frame's record.
pub fn record(at: u64, len: u32, data: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(16 + data.len());
    r.extend_from_slice(&at.to_le_bytes());
    r.extend_from_slice(&len.to_le_bytes());
    r.extend_from_slice(&(data.len() as u32).to_le_bytes());
    r.extend_from_slice(data);
    r
}

/// The closing record: the frames dropped.
pub fn end(dropped: u64) -> Vec<u8> {
    record(0, END, &dropped.to_le_bytes())
}

/// A capture the daemon opened: where to drain it, and what its frames are.
pub struct CaptureOpen {
    pub hub: std::sync::Arc<crate::io::capture::CaptureHub>,
    pub session: std::sync::Arc<crate::io::capture::Session>,
    pub linktype: u32,
}
