//! `GET /swarmnet/capture`: a live capture streamed to the client (`swarmnet capture`), in a
//! framing of swarmnet's own that the CLI turns into pcap: a header (`SWCP`, the link type as
//! a little-endian u32), then per frame a record as pcap writes it (nanosecond timestamps,
//! little-endian; see [`crate::io::capture::RECORD_HEADER`]), at the end a record whose
//! length on the wire is `u32::MAX` and whose 8 bytes are the frames the ring dropped.

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
    /// The node to capture on (ID, unique ID prefix or hostname); `None`: the daemon's own.
    pub node: Option<String>,
    /// The underlay's datagrams instead of the inner frames.
    pub underlay: bool,
    /// Stop after this many frames.
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    pub snaplen: u32,
    /// The filter (a subset of tcpdump's language), read by the route.
    pub filter: crate::io::capture::Filter,
    /// The filter as given, for the node that runs the capture when it is another.
    pub filter_text: String,
}

impl CaptureAsk {
    /// The ask as it travels to the node that captures, `id` naming it there and back.
    pub fn order(&self, id: u64, feed: String) -> CaptureOrder {
        CaptureOrder {
            id,
            feed,
            target: self.target.clone(),
            underlay: self.underlay,
            count: self.count,
            duration_ms: self
                .duration
                .map(|d| d.as_millis().min(u128::from(u64::MAX)) as u64),
            snaplen: self.snaplen,
            filter: self.filter_text.clone(),
        }
    }
}

/// A capture that a manager asks of another node, carried in that node's heartbeat answer:
/// the node opens it on its own data path and sends the stream to the manager at `feed`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CaptureOrder {
    /// Names this capture between the node and the manager.
    pub id: u64,
    /// The cluster address (2377) of the manager that waits for the stream.
    pub feed: String,
    pub target: String,
    pub underlay: bool,
    pub count: Option<u64>,
    pub duration_ms: Option<u64>,
    pub snaplen: u32,
    pub filter: String,
}

impl CaptureOrder {
    /// The ask to open on this node; a filter or snap length this node cannot take is refused.
    pub fn ask(&self) -> Result<CaptureAsk, String> {
        let filter = crate::io::capture::Filter::parse(std::slice::from_ref(&self.filter))?;
        if self.snaplen == 0 || self.snaplen > crate::io::capture::MAX_SNAPLEN {
            return Err(format!(
                "snaplen {}: from 1 to {} bytes",
                self.snaplen,
                crate::io::capture::MAX_SNAPLEN
            ));
        }
        Ok(CaptureAsk {
            target: self.target.clone(),
            node: None,
            underlay: self.underlay,
            count: self.count,
            duration: self.duration_ms.map(Duration::from_millis),
            snaplen: self.snaplen,
            filter,
            filter_text: self.filter.clone(),
        })
    }
}

/// The header of a capture stream.
pub fn header(linktype: u32) -> Vec<u8> {
    let mut h = MAGIC.to_vec();
    h.extend_from_slice(&linktype.to_le_bytes());
    h
}

/// The closing record: the frames dropped.
pub fn end(dropped: u64) -> Vec<u8> {
    let mut r = Vec::with_capacity(24);
    crate::io::capture::put_record(&mut r, 0, END, &dropped.to_le_bytes());
    r
}

/// A capture the daemon opened: where to drain it, and what its frames are.
pub struct CaptureOpen {
    pub hub: std::sync::Arc<crate::io::capture::CaptureHub>,
    pub session: std::sync::Arc<crate::io::capture::Session>,
    pub linktype: u32,
}

/// How often a capture's ring is drained into its stream.
const DRAIN_EVERY: Duration = Duration::from_millis(50);

/// Streams an opened capture (header, records, the closing record) into the returned channel
/// until its count or duration is reached or the receiver goes; the session is closed either
/// way.
pub fn pump(
    open: CaptureOpen,
    ask: &CaptureAsk,
) -> tokio::sync::mpsc::Receiver<hyper::body::Bytes> {
    use hyper::body::Bytes;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let (count, duration) = (ask.count, ask.duration);
    tokio::spawn(async move {
        let CaptureOpen {
            hub,
            session,
            linktype,
        } = open;
        let deadline = duration.map(|d| tokio::time::Instant::now() + d);
        let mut sent = 0u64;
        let mut open_ = tx.send(Bytes::from(header(linktype))).await.is_ok();
        while open_ {
            tokio::select! {
                _ = tx.closed() => break,
                _ = tokio::time::sleep(DRAIN_EVERY) => {}
            }
            // The ring's records go out as they are; only a count cuts them.
            let mut drained = session.drain();
            if let Some(left) = count.map(|c| c.saturating_sub(sent)) {
                if drained.frames as u64 > left {
                    let mut cut = crate::io::capture::records(&drained.bytes);
                    cut.by_ref().take(left as usize).for_each(drop);
                    drained.bytes.truncate(cut.at);
                    drained.frames = left as usize;
                }
            }
            sent += drained.frames as u64;
            if !drained.bytes.is_empty() && tx.send(Bytes::from(drained.bytes)).await.is_err() {
                break;
            }
            let done = count.is_some_and(|c| sent >= c)
                || deadline.is_some_and(|d| tokio::time::Instant::now() >= d);
            if done {
                let _ = tx.send(Bytes::from(end(session.dropped()))).await;
                open_ = false;
            }
        }
        hub.stop(&session);
    });
    rx
}
