//! Captures asked of other nodes (`swarmnet capture --node`), kept by the leader.
//!
//! Managers cannot dial workers (a worker listens on nothing), so a capture travels the way
//! tasks do: the leader holds an order for the node, hands it out in that node's next
//! heartbeat answer (a held heartbeat is woken for it), and the node dials the leader back
//! over mutual TLS with the order's ID and streams the capture on that connection. The order
//! waits here until the node's stream arrives; whoever registered it takes the stream.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::{oneshot, watch};

use crate::api::capture::CaptureOrder;
use crate::api::ApiError;

/// A node's connection carrying a capture's stream to the leader.
pub type FeedStream = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

/// Orders waiting at once, at most: captures are asked by managers' users, but an order
/// whose node never calls back holds memory until its wait ends.
pub const MAX_PENDING: usize = 64;

/// What a node sent back for an order: whether it opened the capture, and its stream.
pub struct Feed {
    pub opened: Result<(), ApiError>,
    pub stream: FeedStream,
}

struct Pending {
    node_id: String,
    order: CaptureOrder,
    /// Handed out in a heartbeat answer already (an order is handed out once).
    handed: bool,
    feed: oneshot::Sender<Feed>,
}

/// The leader's orders for captures on other nodes.
pub struct CaptureBook {
    pending: Mutex<HashMap<u64, Pending>>,
    /// Moves when an order is added: held heartbeats wake to hand it out.
    news: watch::Sender<u64>,
}

impl Default for CaptureBook {
    fn default() -> Self {
        CaptureBook {
            pending: Mutex::new(HashMap::new()),
            news: watch::Sender::new(0),
        }
    }
}

/// An order in the book: the node's stream arrives on `feed`; dropping it withdraws the order.
pub struct Registration<'a> {
    book: &'a CaptureBook,
    pub id: u64,
    pub feed: oneshot::Receiver<Feed>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.book.withdraw(self.id);
    }
}

impl CaptureBook {
    /// Adds an order for `node_id`; its `id` is set here.
    pub fn register(
        &self,
        node_id: &str,
        mut order: CaptureOrder,
    ) -> Result<Registration<'_>, ApiError> {
        let (tx, rx) = oneshot::channel();
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() >= MAX_PENDING {
            return Err(ApiError::unavailable(format!(
                "{MAX_PENDING} captures are already waiting for their nodes; try again shortly"
            )));
        }
        let mut id = rand::random::<u64>();
        while pending.contains_key(&id) {
            id = rand::random::<u64>();
        }
        order.id = id;
        pending.insert(
            id,
            Pending {
                node_id: node_id.to_string(),
                order,
                handed: false,
                feed: tx,
            },
        );
        drop(pending);
        self.news.send_modify(|n| *n = n.wrapping_add(1));
        Ok(Registration {
            book: self,
            id,
            feed: rx,
        })
    }

    /// Removes an order (its wait ended, or its stream was taken).
    pub fn withdraw(&self, id: u64) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// The orders for `node_id` not handed out yet, now marked as handed out.
    pub fn take_orders(&self, node_id: &str) -> Vec<CaptureOrder> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending
            .values_mut()
            .filter(|p| p.node_id == node_id && !p.handed)
            .map(|p| {
                p.handed = true;
                p.order.clone()
            })
            .collect()
    }

    /// Whether orders wait to be handed out to `node_id`.
    pub fn has_orders(&self, node_id: &str) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .any(|p| p.node_id == node_id && !p.handed)
    }

    /// Wakes when an order is added.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.news.subscribe()
    }

    /// Takes order `id` for the node answering it: the way to hand its stream to whoever
    /// waits. Only the node the order was for may answer it.
    pub fn claim(&self, caller: &str, id: u64) -> Result<oneshot::Sender<Feed>, ApiError> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match pending.get(&id) {
            Some(p) if p.node_id == caller => {}
            Some(_) => {
                return Err(ApiError::new(
                    crate::api::ErrorKind::PermissionDenied,
                    format!("capture {id:016x} was not asked of node {caller}"),
                ))
            }
            None => {
                return Err(ApiError::not_found(format!(
                    "capture {id:016x} is not waiting here (its wait ended, or another manager leads now)"
                )))
            }
        }
        pending
            .remove(&id)
            .map(|p| p.feed)
            .ok_or_else(|| ApiError::not_found(format!("capture {id:016x} is not waiting here")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> CaptureOrder {
        CaptureOrder {
            id: 0,
            feed: "127.0.0.1:2377".into(),
            target: "web".into(),
            underlay: false,
            count: None,
            duration_ms: None,
            snaplen: 262_144,
            filter: String::new(),
        }
    }

    #[test]
    fn an_order_is_handed_out_once_to_its_node_only() {
        let book = CaptureBook::default();
        let mut news = book.subscribe();
        let reg = book.register("node-a", order()).unwrap();
        assert!(news.has_changed().unwrap());
        news.mark_unchanged();
        assert!(!book.has_orders("node-b"));
        assert!(book.take_orders("node-b").is_empty());
        assert!(book.has_orders("node-a"));
        let taken = book.take_orders("node-a");
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].id, reg.id);
        assert!(!book.has_orders("node-a"));
        assert!(book.take_orders("node-a").is_empty());
        let refused = book.claim("node-b", reg.id).err().unwrap();
        assert_eq!(refused.kind, crate::api::ErrorKind::PermissionDenied);
        assert!(book.claim("node-a", reg.id).is_ok());
        let gone = book.claim("node-a", reg.id).err().unwrap();
        assert_eq!(gone.kind, crate::api::ErrorKind::NotFound);
        drop(reg);
        assert!(book.pending.lock().unwrap().is_empty());
    }

    #[test]
    fn the_book_is_bounded() {
        let book = CaptureBook::default();
        let regs: Vec<_> = (0..MAX_PENDING)
            .map(|_| book.register("n", order()).unwrap())
            .collect();
        let refused = book.register("n", order()).err().unwrap();
        assert!(refused.message.contains("already waiting"), "{refused:?}");
        drop(regs);
        assert!(book.register("n", order()).is_ok());
    }
}
