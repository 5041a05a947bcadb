//! The node's gossip in the daemon: once the node is in a swarm and has the swarm's keys, a
//! gossip runner ([`crate::io::gossip`]) on its data-path address (port 7946 unless
//! `daemon --gossip-port`), sealed under the swarm's network keys (sending with the primary, as
//! ESP does; a new ring at each rotation), joined to the nodes the managers list and open to
//! them only. The node publishes its tasks' endpoints per overlay network; what the others
//! publish goes, as soon as it arrives, into the runtime's view (peer tables, DNS names, VIP
//! backends). Stopped on `swarm leave`, on removal and when the daemon stops.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::remote::RemoteEndpoint;
use super::Daemon;
use crate::api::stats::GossipStats;
use crate::control::dispatcher::SwarmNode;
use crate::control::keys;
use crate::control::store::{LocalIdentity, NetworkKey};
use crate::gossip::{
    DropReason, EndpointEntry, Event, Gossip, GossipConfig, GossipError, Keyring, NodeIdentity,
};
use crate::io::gossip::{self as runner, GossipHandle};

/// How often a node that misses some of the swarm's nodes among its gossip members announces
/// itself to them again (a node started after our first announce, or one back from a
/// partition that SWIM's own periodic announce has not reached yet).
const REJOIN_EVERY: Duration = Duration::from_secs(5);

/// The daemon's SWIM probe period: 300 ms, against the gossip core's 500 ms (chosen for the
/// 1,000-node simulation's bandwidth aim). The suspicion timeout is memberlist's formula,
/// 4 x max(1, log10(N + 1)) probe periods: 1.2 s up to 9 nodes, 1.2 x log10(N + 1) s above. A
/// dead node is declared down within a probe period or two plus that (about 2 s on loopback),
/// well before the managers' 4 s without heartbeats; a probe and its ack are about 300 bytes
/// sealed, so a node sends and receives about 2 KB/s for probing whatever the swarm's size.
const PROBE_PERIOD: Duration = Duration::from_millis(300);

/// Longest wait for the runner to send its leave before it is stopped.
const LEAVE_WAIT: Duration = Duration::from_millis(500);

/// Remote endpoints by (network ID, endpoint ID).
type Tables = BTreeMap<(String, String), EndpointEntry>;

/// The daemon's gossip: the runner when it runs, and what it learnt.
pub(super) struct GossipState {
    port: u16,
    running: tokio::sync::Mutex<Option<Running>>,
    /// The swarm's nodes as the managers last listed them (in the assignments).
    nodes: Mutex<Vec<SwarmNode>>,
    /// The other nodes' endpoints on this node's networks.
    remote: Arc<Mutex<Tables>>,
    /// Where the runner listens, for the heartbeat's report.
    addr: Mutex<Option<SocketAddr>>,
    /// The last failure to start, logged once.
    start_error: Mutex<Option<String>>,
}

struct Running {
    handle: GossipHandle,
    runner: JoinHandle<()>,
    /// The runner's own thread and runtime: probes are answered on time even while the
    /// daemon's async workers wait on a view being applied or on the store.
    thread: Option<tokio::runtime::Runtime>,
    pump: JoinHandle<()>,
    keys: Vec<NetworkKey>,
    nodes: Vec<SwarmNode>,
    /// The networks in the gossip: those of `wanted` that fit its record.
    networks: Option<BTreeSet<String>>,
    /// The networks the runtime last asked for.
    wanted: Option<BTreeSet<String>>,
    published: Tables,
    last_join: Instant,
}

impl Drop for Running {
    /// A runtime dropped the ordinary way blocks until its tasks end, which an async worker
    /// must not do.
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            t.shutdown_background();
        }
    }
}

/// Why the gossip could not start.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("this node's data-path address {0:?} is not an IPv4 address")]
    Address(String),
    #[error("the swarm's network keys cannot seal gossip: {0}")]
    Keys(#[from] crate::gossip::KeyError),
    #[error("cannot bind the gossip port {0} (UDP and TCP): {1}; another node on this address needs its own `daemon --gossip-port`")]
    Bind(SocketAddr, std::io::Error),
    #[error("cannot start the gossip's thread: {0}")]
    Thread(std::io::Error),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The gossip keyring of the swarm's network keys, sending with the primary.
fn keyring(keys: &[NetworkKey]) -> Result<Keyring, crate::gossip::KeyError> {
    let ring = Keyring::new(
        &keys
            .iter()
            .map(|k| (k.tag, k.key.clone()))
            .collect::<Vec<_>>(),
    )?;
    Ok(match keys::primary(keys) {
        Some(p) => ring.sending_with(p.tag),
        None => ring,
    })
}

impl GossipState {
    pub(super) fn new(port: u16) -> Self {
        GossipState {
            port,
            running: tokio::sync::Mutex::new(None),
            nodes: Mutex::new(Vec::new()),
            remote: Arc::new(Mutex::new(Tables::new())),
            addr: Mutex::new(None),
            start_error: Mutex::new(None),
        }
    }

    /// Where this node gossips, once it does.
    pub(super) fn addr(&self) -> Option<SocketAddr> {
        *lock(&self.addr)
    }

    /// The swarm's nodes, from new assignments.
    pub(super) fn set_nodes(&self, nodes: &[SwarmNode]) {
        let mut held = lock(&self.nodes);
        if held.as_slice() != nodes {
            *held = nodes.to_vec();
        }
    }

    /// The remote endpoints now, for the runtime.
    pub(super) fn remote(&self) -> Vec<RemoteEndpoint> {
        snapshot(&lock(&self.remote))
    }
}

fn snapshot(t: &Tables) -> Vec<RemoteEndpoint> {
    t.iter()
        .map(|((net, id), e)| RemoteEndpoint {
            network_id: net.clone(),
            endpoint_id: id.clone(),
            entry: e.clone(),
        })
        .collect()
}

impl Daemon {
    /// Brings the gossip in line with the swarm: started (once there are keys), its keyring,
    /// the swarm's nodes (who may talk, whom to join), and this node's endpoints.
    pub(super) async fn sync_gossip(
        self: &Arc<Self>,
        identity: &LocalIdentity,
        keys: &[NetworkKey],
    ) {
        if keys.is_empty() {
            return;
        }
        let mut guard = self.gossip.running.lock().await;
        if guard.is_none() {
            match self.start_gossip(identity, keys).await {
                Ok(r) => {
                    lock(&self.gossip.start_error).take();
                    *guard = Some(r);
                }
                Err(err) => {
                    let msg = err.to_string();
                    let mut last = lock(&self.gossip.start_error);
                    if last.as_deref() != Some(msg.as_str()) {
                        tracing::warn!("gossip not started: {msg}");
                        *last = Some(msg);
                    }
                    return;
                }
            }
        }
        let Some(r) = guard.as_mut() else {
            return;
        };
        if r.keys != keys {
            match keyring(keys) {
                Ok(ring) => {
                    tracing::info!(
                        "gossip keys now tags {:?}, sending with {}",
                        keys.iter().map(|k| k.tag).collect::<Vec<_>>(),
                        ring.sending_tag()
                    );
                    let _ = r.handle.set_keyring(ring);
                    r.keys = keys.to_vec();
                }
                Err(err) => tracing::warn!("gossip keys not changed: {err}"),
            }
        }
        let nodes = lock(&self.gossip.nodes).clone();
        let others: Vec<(String, SocketAddr)> = nodes
            .iter()
            .filter(|n| n.id != identity.node_id)
            .filter_map(|n| Some((n.id.clone(), n.gossip_addr?)))
            .collect();
        if nodes != r.nodes {
            let ids: BTreeSet<String> = nodes.iter().map(|n| n.id.clone()).collect();
            // An empty list (assignments not received yet) would refuse everyone: wait.
            if !ids.is_empty() {
                let _ = r.handle.set_swarm_nodes(Some(ids));
            }
            let _ = r.handle.join(others.clone());
            r.nodes = nodes;
            r.last_join = Instant::now();
        } else if r.last_join.elapsed() >= REJOIN_EVERY && !others.is_empty() {
            r.last_join = Instant::now();
            if let Ok(status) = r.handle.status().await {
                let members: BTreeSet<&str> =
                    status.members.iter().map(|m| m.node_id.as_str()).collect();
                let missing: Vec<(String, SocketAddr)> = others
                    .into_iter()
                    .filter(|(id, _)| !members.contains(id.as_str()))
                    .collect();
                if !missing.is_empty() {
                    let _ = r.handle.join(missing);
                }
            }
        }
        self.publish(r).await;
    }

    async fn start_gossip(
        self: &Arc<Self>,
        identity: &LocalIdentity,
        keys: &[NetworkKey],
    ) -> Result<Running, StartError> {
        let ip: Ipv4Addr = identity
            .data_path_addr
            .parse()
            .map_err(|_| StartError::Address(identity.data_path_addr.clone()))?;
        let ring = keyring(keys)?;
        let bind = SocketAddr::from((ip, self.gossip.port));
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        // A restarted daemon is a newer instance (its bump, in tenths of a second: a restart
        // within the same second still wins) whose message counter starts above its previous
        // life's (the peers' replay windows). The bump wraps after 13 years; identities compare
        // it as a serial number.
        let bump = (since_epoch.as_millis() / 100) as u32;
        let cfg = GossipConfig {
            seq_base: since_epoch.as_micros() as u64,
            probe_period: PROBE_PERIOD,
            probe_rtt: PROBE_PERIOD / 2,
            ..GossipConfig::default()
        };
        let node_id = identity.node_id.clone();
        let seed = rand::random::<u64>();
        let thread = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("gossip")
            .enable_all()
            .build()
            .map_err(StartError::Thread)?;
        let spawned = thread
            .spawn(runner::spawn(bind, move |addr| {
                Gossip::new(NodeIdentity::new(node_id, addr, bump), ring, cfg, seed)
            }))
            .await;
        let (mut handle, task) = match spawned {
            Ok(Ok(started)) => started,
            Ok(Err(e)) => {
                thread.shutdown_background();
                return Err(StartError::Bind(bind, e));
            }
            Err(e) => {
                thread.shutdown_background();
                return Err(StartError::Bind(bind, std::io::Error::other(e.to_string())));
            }
        };
        let events = handle.take_events();
        let pump = tokio::spawn(self.clone().gossip_pump(events));
        *lock(&self.gossip.addr) = Some(handle.local_addr);
        tracing::info!(
            "gossip on {} (UDP and TCP), node {} ({})",
            handle.local_addr,
            identity.node_id,
            self.hostname
        );
        Ok(Running {
            handle,
            runner: task,
            thread: Some(thread),
            pump,
            keys: keys.to_vec(),
            nodes: Vec::new(),
            networks: None,
            wanted: None,
            published: Tables::new(),
            last_join: Instant::now(),
        })
    }

    /// This node's networks and endpoints as its runtime has them now, into the gossip.
    async fn publish(&self, r: &mut Running) {
        let runtime = self.runtime.clone();
        // The runtime's lock may be held by a view being applied: wait for it off the
        // async workers.
        let Ok((nets, entries)) = tokio::task::spawn_blocking(move || {
            let guard = runtime.lock().unwrap_or_else(|e| e.into_inner());
            match guard.as_ref() {
                Some(rt) => rt.gossip_entries(),
                None => Default::default(),
            }
        })
        .await
        else {
            return;
        };
        if r.wanted.as_ref() != Some(&nets) {
            // A list too long for one gossip datagram is cut (the highest IDs left out), so
            // that the node's other networks keep working rather than all of them stopping.
            let mut fit = nets.clone();
            loop {
                match r.handle.set_local_networks(fit.clone()).await {
                    Ok(Ok(())) => break,
                    Ok(Err(GossipError::TooManyNetworks(_))) if fit.len() > 1 => {
                        fit.pop_last();
                    }
                    Ok(Err(err)) => {
                        tracing::warn!("gossip: {err}");
                        return;
                    }
                    Err(_) => return,
                }
            }
            if fit.len() < nets.len() {
                let left: Vec<&String> = nets.difference(&fit).collect();
                tracing::warn!(
                    "gossip: {} of this node's {} overlay networks fit its gossip record; the \
                     tasks here on the other {} are not published and their remote endpoints \
                     not seen: {left:?}",
                    fit.len(),
                    nets.len(),
                    left.len()
                );
            }
            // Rows of a network left (or cut) went with it: published again if it comes back.
            r.published.retain(|k, _| fit.contains(&k.0));
            r.networks = Some(fit);
            r.wanted = Some(nets);
        }
        let gone: Vec<(String, String)> = r
            .published
            .keys()
            .filter(|k| !entries.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            // Leaving a network took its rows already; only what is still there needs a tombstone.
            if r.networks.as_ref().is_some_and(|n| n.contains(&key.0)) {
                let _ = r.handle.remove_local_endpoint(&key.0, &key.1).await;
            }
            r.published.remove(&key);
        }
        for (key, entry) in entries {
            let in_gossip = r.networks.as_ref().is_some_and(|n| n.contains(&key.0));
            if !in_gossip || r.published.get(&key) == Some(&entry) {
                continue;
            }
            match r
                .handle
                .upsert_local_endpoint(&key.0, &key.1, entry.clone())
                .await
            {
                Ok(Ok(())) => {
                    r.published.insert(key, entry);
                }
                Ok(Err(err)) => tracing::warn!("gossip: endpoint {} not published: {err}", key.1),
                Err(_) => return,
            }
        }
    }

    /// Takes the gossip's events: members logged, remote endpoints into the runtime's view at
    /// once (every event that arrived together in one application).
    async fn gossip_pump(self: Arc<Self>, mut events: mpsc::UnboundedReceiver<Event>) {
        while let Some(first) = events.recv().await {
            let mut changed = false;
            let mut next = Some(first);
            while let Some(e) = next {
                changed |= self.on_gossip_event(e);
                next = events.try_recv().ok();
            }
            if changed {
                self.apply_remote().await;
            }
        }
    }

    fn on_gossip_event(&self, e: Event) -> bool {
        let name = |id: &str| -> String {
            lock(&self.gossip.nodes)
                .iter()
                .find(|n| n.id == id)
                .map_or_else(|| id.to_string(), |n| format!("{id} ({})", n.hostname))
        };
        let mut remote = lock(&self.gossip.remote);
        match e {
            Event::MemberUp(m) => {
                tracing::info!("gossip: node {} is up at {}", name(&m.node_id), m.addr);
                false
            }
            Event::MemberDown(m) => {
                tracing::warn!(
                    "gossip: node {} is down (no answer to probes within the suspicion time); its endpoints are withdrawn",
                    name(&m.node_id)
                );
                false
            }
            Event::EndpointAdded {
                network,
                endpoint_id,
                entry,
            } => remote.insert((network, endpoint_id), entry.clone()) != Some(entry),
            Event::EndpointRemoved {
                network,
                endpoint_id,
                ..
            } => remote.remove(&(network, endpoint_id)).is_some(),
        }
    }

    /// The remote endpoints into the runtime, which applies its view again if they changed.
    async fn apply_remote(&self) {
        let remote = self.gossip.remote();
        let runtime = self.runtime.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let mut guard = runtime.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(rt) = guard.as_mut() {
                if rt.set_remote(remote) {
                    rt.refresh();
                }
            }
        })
        .await;
    }

    /// Stops the gossip (leaving the swarm, removed from it, shutting down) and forgets what
    /// it learnt.
    pub(super) async fn stop_gossip(&self) {
        if let Some(mut r) = self.gossip.running.lock().await.take() {
            // The others withdraw this node's endpoints now rather than after the suspicion
            // timeout; a runner that does not answer at once is stopped anyway.
            let _ = tokio::time::timeout(LEAVE_WAIT, r.handle.leave()).await;
            r.pump.abort();
            r.runner.abort();
            let _ = (&mut r.runner).await;
            if let Some(t) = r.thread.take() {
                t.shutdown_background();
            }
            tracing::info!("gossip stopped");
        }
        lock(&self.gossip.remote).clear();
        lock(&self.gossip.nodes).clear();
        *lock(&self.gossip.addr) = None;
    }

    /// The gossip's members and counters, for `swarmnet stats` and the metrics.
    pub(super) async fn gossip_stats(&self) -> Option<GossipStats> {
        let guard = self.gossip.running.lock().await;
        let r = guard.as_ref()?;
        let status = r.handle.status().await.ok()?;
        let names: BTreeMap<String, String> = r
            .nodes
            .iter()
            .map(|n| (n.id.clone(), n.hostname.clone()))
            .collect();
        let mut members: Vec<String> = status
            .members
            .iter()
            .map(|m| {
                names
                    .get(&m.node_id)
                    .cloned()
                    .unwrap_or_else(|| m.node_id.clone())
            })
            .collect();
        members.sort();
        let s = &status.stats;
        Some(GossipStats {
            addr: r.handle.local_addr.to_string(),
            members,
            suspicion_ms: status.suspicion.as_millis() as u64,
            sent_msgs: s.sent_msgs,
            sent_bytes: s.sent_bytes,
            recv_msgs: s.recv_msgs,
            recv_bytes: s.recv_bytes,
            dropped: DropReason::ALL
                .iter()
                .map(|r| (r.as_str().to_string(), s.dropped(*r)))
                .collect(),
            remote_endpoints: lock(&self.gossip.remote).len() as u64,
        })
    }
}
