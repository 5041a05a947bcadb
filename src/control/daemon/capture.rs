//! `swarmnet capture` on this node, or on another (`--node`, served by managers).
//!
//! A capture on another node goes through the leader, since a worker listens on nothing: the
//! leader hands the node an order in its heartbeat answer (see
//! [`crate::control::manager::captures`]), the node opens the capture on its own data path and
//! dials the leader back with the order's ID, and the stream flows node -> leader -> (the
//! manager that asked, when it is not the leader) -> the user's `swarmnet capture`. When the
//! user goes, each hop closes its connection and the node stops its capture; when the node's
//! capture ends (its count or duration), the end record travels the same way.

use std::sync::Arc;

use hyper::body::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc::Receiver;

use super::*;
use crate::api::capture::{pump, CaptureAsk, CaptureOrder};
use crate::api::Node;
use crate::control::ca::CertIdentity;
use crate::control::manager::captures::FeedStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Daemon {
    /// Opens the capture `ask` wants, here or on `ask.node`, as a stream of its records.
    pub(super) async fn capture(
        self: Arc<Self>,
        ask: CaptureAsk,
    ) -> Result<Receiver<Bytes>, ApiError> {
        let identity = self.identity();
        let manager = identity.as_ref().is_some_and(|i| i.role == Role::Manager);
        let Some(query) = ask.node.as_deref() else {
            return match self.capture_open(&ask, manager) {
                Ok(open) => Ok(pump(open, &ask)),
                Err(err) if err.kind == ErrorKind::NotFound && manager => {
                    Err(match self.where_it_runs(&ask.target) {
                        Some(hint) => ApiError::not_found(format!("{}; {hint}", err.message)),
                        None => err,
                    })
                }
                Err(err) => Err(err),
            };
        };
        let Some(identity) = identity else {
            return Err(ApiError::precondition(
                "this node is not in a swarm: capture --node names a node of its swarm",
            ));
        };
        if !manager {
            return Err(ApiError::precondition(format!(
                "capture --node is served by managers, and this node ({}) is a worker: ask a manager's daemon (-H), or capture this node without --node",
                self.hostname
            )));
        }
        let node = self.manager.find_node(query)?;
        if node.id == identity.node_id {
            return Ok(pump(self.capture_open(&ask, true)?, &ask));
        }
        let order = ask.order(0, advertise_of(&identity));
        if self.holds_state() {
            return Ok(relay(self.await_feed(&node, order).await?));
        }
        let config = tls::client_config(&identity.ca_cert_pem, Some(&identity.credentials))
            .map_err(internal)?;
        let request = ClusterRequest::Capture {
            node: node.id.clone(),
            order,
        };
        let stream = rpc::open_stream(&self.leader_first(&identity), config, &request)
            .await
            .map_err(rpc_error)?;
        Ok(relay(stream))
    }

    /// On a manager, for a target not on this node: the nodes its tasks run on, as a hint
    /// (`task web.2 runs on node-3: capture --node node-3 web.2`).
    fn where_it_runs(&self, target: &str) -> Option<String> {
        let services = self.store.services().ok()?;
        let tasks = self.store.tasks().ok()?;
        let nodes = self.store.nodes().ok()?;
        let hostname = |id: &str| {
            nodes
                .iter()
                .find(|n| n.id == id)
                .map_or_else(|| id.to_string(), |n| n.hostname.clone())
        };
        let mut on: Vec<String> = Vec::new();
        for t in tasks
            .iter()
            .filter(|t| t.state == crate::control::service::TaskState::Running)
        {
            let Some(s) = services.iter().find(|s| s.id == t.service_id) else {
                continue;
            };
            let name = crate::control::dispatcher::task_name(&s.spec.name, t);
            let full = format!("{name}.{}", t.id);
            if s.spec.name == target || name == target || full == target {
                let host = hostname(&t.node_id);
                if !on.contains(&host) {
                    on.push(host);
                }
            }
        }
        match on.as_slice() {
            [] => None,
            [one] => Some(format!(
                "{target} runs on {one}: capture --node {one} {target}"
            )),
            many => Some(format!(
                "{target} runs on {}: capture one of them with --node",
                many.join(", ")
            )),
        }
    }

    /// On the leader: hands `node` the order and waits for its stream.
    async fn await_feed(
        &self,
        node: &Node,
        mut order: CaptureOrder,
    ) -> Result<FeedStream, ApiError> {
        let identity = self
            .identity()
            .ok_or_else(|| ApiError::unavailable("this node has left the swarm"))?;
        let name = format!("{} ({})", node.hostname, node.id);
        if self.manager.liveness(&node.id, Some(&identity.node_id)) == NodeState::Down {
            return Err(ApiError::unavailable(format!(
                "node {name} is down: it cannot capture"
            )));
        }
        order.feed = advertise_of(&identity);
        let mut registration = self.manager.captures.register(&node.id, order)?;
        let wait = rpc::CAPTURE_FEED_WAIT;
        let feed = match tokio::time::timeout(wait, &mut registration.feed).await {
            Ok(Ok(feed)) => feed,
            Ok(Err(_)) => {
                return Err(ApiError::unavailable(format!(
                    "node {name}'s capture was withdrawn before it started"
                )))
            }
            Err(_) => {
                return Err(ApiError::unavailable(format!(
                    "node {name} did not start the capture within {}s (is it reachable? `swarmnet node ls`)",
                    wait.as_secs()
                )))
            }
        };
        feed.opened
            .map_err(|e| ApiError::new(e.kind, format!("node {}: {}", node.hostname, e.message)))?;
        Ok(feed.stream)
    }

    /// A capture request on 2377: a node's stream for an order (`CaptureFeed`), or another
    /// manager's request for a capture (`Capture`). The connection carries the stream after
    /// the answer.
    pub(super) async fn serve_capture_conn(
        &self,
        caller: Option<CertIdentity>,
        request: ClusterRequest,
        mut stream: FeedStream,
    ) -> Result<(), BoxError> {
        let refuse = |err: ApiError| -> ClusterResponse { Err(err) };
        let Some(caller) = caller else {
            let answer = refuse(ApiError::new(
                ErrorKind::PermissionDenied,
                "this operation needs a node certificate of this swarm",
            ));
            return answer_only(&mut stream, &answer).await;
        };
        match request {
            ClusterRequest::CaptureFeed { id, opened } => {
                let waiter = match self.manager.captures.claim(&caller.node_id, id) {
                    Ok(waiter) => waiter,
                    Err(err) => return answer_only(&mut stream, &refuse(err)).await,
                };
                answer_only(&mut stream, &Ok(ClusterReply::Done)).await?;
                // The one who waits takes the stream; if it stopped waiting, the stream closes.
                let _ = waiter.send(crate::control::manager::captures::Feed { opened, stream });
                Ok(())
            }
            ClusterRequest::Capture { node, order } => {
                let is_manager = caller.role == Role::Manager
                    && self
                        .manager
                        .find_node(&caller.node_id)
                        .is_ok_and(|n| n.role == Role::Manager);
                if !is_manager {
                    return answer_only(&mut stream, &refuse(ApiError::not_a_manager())).await;
                }
                if !self.holds_state() {
                    let answer = match self.manager.leader_addr() {
                        Some(leader) => Ok(ClusterReply::Redirect { leader }),
                        None => refuse(ApiError::unavailable(
                            "no Raft leader is known to this manager yet; try again shortly",
                        )),
                    };
                    return answer_only(&mut stream, &answer).await;
                }
                let own = self.identity().map(|i| i.node_id);
                if own.as_deref() == Some(node.as_str()) {
                    let opened = order
                        .ask()
                        .map_err(ApiError::invalid)
                        .and_then(|ask| Ok(pump(self.capture_open(&ask, true)?, &ask)));
                    return match opened {
                        Ok(rx) => {
                            answer_only(&mut stream, &Ok(ClusterReply::Done)).await?;
                            serve_stream(rx, stream).await;
                            Ok(())
                        }
                        Err(err) => answer_only(&mut stream, &refuse(err)).await,
                    };
                }
                let fed = match self.manager.known_node(&node) {
                    Ok(target) => self.await_feed(&target, order).await,
                    Err(err) => Err(err),
                };
                match fed {
                    Ok(mut feed) => {
                        answer_only(&mut stream, &Ok(ClusterReply::Done)).await?;
                        // Both ways: the node's records to the manager, and the manager's
                        // close to the node (which stops its capture).
                        let _ = tokio::io::copy_bidirectional(&mut feed, &mut stream).await;
                        Ok(())
                    }
                    Err(err) => answer_only(&mut stream, &refuse(err)).await,
                }
            }
            _ => Err("not a capture request".into()),
        }
    }

    /// On the node a capture was asked of (in a heartbeat answer): opens it and streams it to
    /// the manager waiting at the order's address. The order came from a manager over mutual
    /// TLS, so an encrypted network's frames are shown decrypted, as on a manager.
    pub(super) async fn serve_order(
        self: Arc<Self>,
        order: CaptureOrder,
        config: Arc<rustls::ClientConfig>,
    ) {
        let opened = order
            .ask()
            .map_err(ApiError::invalid)
            .and_then(|ask| Ok(pump(self.capture_open(&ask, true)?, &ask)));
        let request = ClusterRequest::CaptureFeed {
            id: order.id,
            opened: opened.as_ref().map(|_| ()).map_err(Clone::clone),
        };
        let what = format!(
            "capture of {} for the manager at {}",
            order.target, order.feed
        );
        match rpc::open_stream(std::slice::from_ref(&order.feed), config, &request).await {
            Ok(stream) => {
                if let Ok(rx) = opened {
                    tracing::info!("{what}: started");
                    serve_stream(rx, stream).await;
                    tracing::info!("{what}: ended");
                }
            }
            Err(err) => tracing::warn!("{what}: {err}"),
        }
    }
}

/// Writes one answer frame on a capture connection.
async fn answer_only(stream: &mut FeedStream, answer: &ClusterResponse) -> Result<(), BoxError> {
    tokio::time::timeout(rpc::CALL_TIMEOUT, write_frame(stream, answer)).await??;
    Ok(())
}

/// Sends a capture's records on `stream` until the capture ends (then closes it) or the far
/// side closes (then the capture is stopped: `rx` is dropped).
async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(mut rx: Receiver<Bytes>, stream: S) {
    let (mut r, mut w) = tokio::io::split(stream);
    let mut probe = [0u8; 64];
    loop {
        tokio::select! {
            chunk = rx.recv() => match chunk {
                Some(c) => {
                    if w.write_all(&c).await.is_err() {
                        return;
                    }
                }
                None => {
                    let _ = w.shutdown().await;
                    return;
                }
            },
            // The far side sends nothing: a read that ends means it went.
            n = r.read(&mut probe) => {
                if !matches!(n, Ok(n) if n > 0) {
                    return;
                }
            }
        }
    }
}

/// The records arriving on `stream`, as the local API streams them, until the stream ends or
/// the API's client goes (then `stream` is closed, which stops the capture upstream).
fn relay<S: AsyncRead + Unpin + Send + 'static>(mut stream: S) -> Receiver<Bytes> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = tokio::select! {
                _ = tx.closed() => break,
                n = stream.read(&mut buf) => n,
            };
            match n {
                Ok(n) if n > 0 => {
                    if tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                        break;
                    }
                }
                _ => break,
            }
        }
    });
    rx
}
