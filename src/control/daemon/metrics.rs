//! `daemon --metrics-addr`: the node's numbers in Prometheus' text exposition format (0.0.4)
//! on `GET /metrics`, over plain HTTP on an address of the operator's choosing.
//!
//! Nothing is counted for the exposition: each scrape reads what the node keeps anyway (the
//! workers' published counters, the balancer's flow table, the routing mesh's counters, the
//! Raft node's metrics, the store's tasks) and encodes it into a registry made for that scrape.
//! So the data path pays nothing for it, whether metrics are on or off. Every series carries
//! the `node` label (the node's hostname); data-path series add `network`, `service` and
//! `task` where the port belongs to one.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::Daemon;
use crate::api::{BalancerRow, NodeState, Role};
use crate::control::manager::RaftSample;
use crate::control::service::TaskState;
use crate::dataplane::{Events, PortCounters};
use crate::io::mesh::MeshStats;

/// Scrapes served at once; more wait in the kernel's backlog.
const MAX_SCRAPES: usize = 8;
/// Time allowed for a scrape's request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot serve metrics on {addr}: the port is already in use by another process; choose another with --metrics-addr")]
    InUse { addr: SocketAddr },
    #[error("cannot serve metrics on {addr}: no interface of this host has the address {}", addr.ip())]
    NotLocal { addr: SocketAddr },
    #[error("cannot serve metrics on {addr}: {err}")]
    Bind {
        addr: SocketAddr,
        err: std::io::Error,
    },
}

/// Binds the metrics address (before the daemon says it is ready, so a bad one stops it).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, MetricsError> {
    TcpListener::bind(addr)
        .await
        .map_err(|err| match err.kind() {
            std::io::ErrorKind::AddrInUse => MetricsError::InUse { addr },
            std::io::ErrorKind::AddrNotAvailable => MetricsError::NotLocal { addr },
            _ => MetricsError::Bind { addr, err },
        })
}

/// One local port's counters and what it belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortSample {
    /// The endpoint's name (`my-web.1.<task id>`, `ingress-sandbox`).
    pub port: String,
    pub network: String,
    /// Empty for a port of no service (the ingress sandbox).
    pub service: String,
    pub task: String,
    pub counters: PortCounters,
}

/// The data path's numbers at one moment.
#[derive(Debug, Clone, Default)]
pub struct DataplaneSample {
    pub ports: Vec<PortSample>,
    /// By network: its ports' counters, removed ports' included.
    pub networks: BTreeMap<String, PortCounters>,
    pub underlay: PortCounters,
    /// Every drop reason, zero or not (stable series).
    pub drops: Vec<(&'static str, u64)>,
    pub events: Events,
    pub balancer: Vec<BalancerRow>,
    pub mesh: MeshStats,
    /// ESP SAs (outbound, inbound), when the node has keys.
    pub esp_sas: Option<(usize, usize)>,
}

/// The control plane's numbers at one moment (a manager's; a worker has only its role).
#[derive(Debug, Clone, Default)]
pub struct ControlSample {
    pub role: Option<Role>,
    pub raft: Option<RaftSample>,
    /// Tasks of the store by state (managers: every manager holds the tables).
    pub tasks: Option<BTreeMap<TaskState, u64>>,
    /// Nodes by state (the leader only: liveness lives in its memory).
    pub nodes: Option<BTreeMap<&'static str, u64>>,
    /// The node's gossip, while it runs.
    pub gossip: Option<crate::api::stats::GossipStats>,
}

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Families registered for one scrape.
struct Scrape {
    registry: Registry,
}

impl Scrape {
    fn new(node: &str) -> Self {
        let registry = Registry::with_prefix_and_labels(
            "swarmnet",
            [(Cow::Borrowed("node"), Cow::Owned(node.to_string()))].into_iter(),
        );
        Scrape { registry }
    }

    fn counter(&mut self, name: &str, help: &str) -> Family<Labels, Counter> {
        let f = Family::<Labels, Counter>::default();
        self.registry.register(name, help, f.clone());
        f
    }

    fn gauge(&mut self, name: &str, help: &str) -> Family<Labels, Gauge> {
        let f = Family::<Labels, Gauge>::default();
        self.registry.register(name, help, f.clone());
        f
    }

    /// A counter family with one unlabelled series.
    fn single(&mut self, name: &str, help: &str, value: u64) {
        self.counter(name, help)
            .get_or_create(&Vec::new())
            .inc_by(value);
    }

    fn dataplane(&mut self, d: &DataplaneSample) {
        let packets = self.counter(
            "port_packets",
            "Frames through a local task's port, rx from the task, tx to it",
        );
        let bytes = self.counter("port_bytes", "Bytes of those frames");
        for p in &d.ports {
            let base = [
                ("network", p.network.as_str()),
                ("service", p.service.as_str()),
                ("task", p.task.as_str()),
                ("port", p.port.as_str()),
            ];
            for (dir, n, b) in [
                ("rx", p.counters.rx_packets, p.counters.rx_bytes),
                ("tx", p.counters.tx_packets, p.counters.tx_bytes),
            ] {
                let mut l = labels(&base);
                l.push(("direction".into(), dir.into()));
                packets.get_or_create(&l).inc_by(n);
                bytes.get_or_create(&l).inc_by(b);
            }
        }
        let net_packets = self.counter(
            "network_packets",
            "Frames through the local ports of a network, ports since removed included",
        );
        let net_bytes = self.counter("network_bytes", "Bytes of those frames");
        for (net, c) in &d.networks {
            for (dir, n, b) in [
                ("rx", c.rx_packets, c.rx_bytes),
                ("tx", c.tx_packets, c.tx_bytes),
            ] {
                let l = labels(&[("network", net), ("direction", dir)]);
                net_packets.get_or_create(&l).inc_by(n);
                net_bytes.get_or_create(&l).inc_by(b);
            }
        }
        let u_packets = self.counter(
            "underlay_packets",
            "Datagrams on the underlay (VXLAN and ESP), rx and tx",
        );
        let u_bytes = self.counter("underlay_bytes", "Bytes of those datagrams");
        for (dir, n, b) in [
            ("rx", d.underlay.rx_packets, d.underlay.rx_bytes),
            ("tx", d.underlay.tx_packets, d.underlay.tx_bytes),
        ] {
            let l = labels(&[("direction", dir)]);
            u_packets.get_or_create(&l).inc_by(n);
            u_bytes.get_or_create(&l).inc_by(b);
        }
        let drops = self.counter(
            "drops",
            "Packets the data path dropped, by reason (esp_replay: ESP refused as replayed)",
        );
        for (reason, n) in &d.drops {
            drops
                .get_or_create(&labels(&[("reason", reason)]))
                .inc_by(*n);
        }
        let e = &d.events;
        self.single(
            "arp_replies",
            "ARP requests answered by the node",
            e.arp_replies,
        );
        self.single(
            "icmp_frag_needed",
            "ICMP fragmentation-needed messages sent back to tasks",
            e.icmp_frag_needed,
        );
        self.single(
            "packets_fragmented",
            "Packets split to fit the network MTU",
            e.packets_fragmented,
        );
        self.single(
            "fragments_created",
            "Fragments those packets became",
            e.fragments_created,
        );
        self.single(
            "vip_echo_replies",
            "ICMP echo requests to a VIP answered by the node",
            e.vip_echo_replies,
        );
        self.single(
            "vip_resets",
            "TCP RSTs sent for VIP flows that idled out, were drained or found no backend",
            e.vip_resets,
        );
        self.single(
            "rco_received",
            "VXLAN datagrams (also inside ESP) taken with their inner checksum left open by the sender (remote checksum offload)",
            e.rco_received,
        );
        let dns = self.counter(
            "dns_queries",
            "DNS queries from tasks: answered from the swarm's names (local) or forwarded to the host's resolvers",
        );
        dns.get_or_create(&labels(&[("answer", "local")]))
            .inc_by(e.dns_answered);
        dns.get_or_create(&labels(&[("answer", "forwarded")]))
            .inc_by(e.dns_forwarded);

        let conns = self.counter(
            "vip_connections",
            "Connections this node's balancer sent through a service's VIP to a backend",
        );
        let active = self.gauge(
            "vip_active_connections",
            "Connections through a VIP the balancer tracks now",
        );
        let vip_bytes = self.counter("vip_bytes", "Bytes of the connections through a VIP");
        for r in &d.balancer {
            let l = labels(&[
                ("service", &r.service),
                ("network", &r.network),
                ("vip", &r.vip),
                ("task", &r.task),
                ("backend", &r.address),
            ]);
            conns.get_or_create(&l).inc_by(r.connections);
            active.get_or_create(&l).set(gauge(r.active));
            vip_bytes.get_or_create(&l).inc_by(r.bytes);
        }
        let m = &d.mesh;
        self.single(
            "mesh_connections_accepted",
            "TCP connections to published ports taken by the routing mesh",
            m.accepted,
        );
        self.single(
            "mesh_connections_refused",
            "Connections to published ports closed at once (no task, too many, no sandbox)",
            m.refused,
        );
        self.single(
            "mesh_udp_flows",
            "UDP flows to published ports",
            m.udp_flows,
        );
        self.single(
            "mesh_udp_dropped",
            "UDP datagrams to published ports dropped",
            m.udp_dropped,
        );
        if let Some((out, inb)) = d.esp_sas {
            let sas = self.gauge(
                "esp_security_associations",
                "ESP security associations the node holds, by direction",
            );
            sas.get_or_create(&labels(&[("direction", "outbound")]))
                .set(gauge(out as u64));
            sas.get_or_create(&labels(&[("direction", "inbound")]))
                .set(gauge(inb as u64));
        }
    }

    fn control(&mut self, c: &ControlSample) {
        if let Some(role) = c.role {
            let info = self.gauge("node_role", "1 for the node's role in the swarm");
            let role = match role {
                Role::Manager => "manager",
                Role::Worker => "worker",
            };
            info.get_or_create(&labels(&[("role", role)])).set(1);
        }
        if let Some(r) = &c.raft {
            let one = |s: &mut Self, name: &str, help: &str, v: u64| {
                s.gauge(name, help).get_or_create(&Vec::new()).set(gauge(v));
            };
            one(
                self,
                "raft_term",
                "The Raft term this manager is in",
                r.term,
            );
            one(
                self,
                "raft_leader",
                "1 while this manager is the Raft leader, else 0",
                u64::from(r.leader),
            );
            if let Some(i) = r.committed_index {
                one(
                    self,
                    "raft_commit_index",
                    "Index of the last log entry this manager knows committed",
                    i,
                );
            }
            if let Some(i) = r.applied_index {
                one(
                    self,
                    "raft_applied_index",
                    "Index of the last log entry applied to this manager's tables",
                    i,
                );
            }
            if let Some(i) = r.last_log_index {
                one(
                    self,
                    "raft_last_log_index",
                    "Index of the last entry of this manager's log",
                    i,
                );
            }
            one(
                self,
                "raft_voters",
                "Voters of the Raft configuration this manager applied",
                r.voters as u64,
            );
            if let Some(s) = r.sessions {
                one(
                    self,
                    "dispatcher_sessions",
                    "Nodes whose heartbeats reach this leader (itself included)",
                    s as u64,
                );
            }
        }
        if let Some(tasks) = &c.tasks {
            let f = self.gauge("tasks", "Tasks of the swarm by current state");
            for state in ALL_TASK_STATES {
                let n = tasks.get(state).copied().unwrap_or(0);
                f.get_or_create(&labels(&[("state", task_state_name(*state))]))
                    .set(gauge(n));
            }
        }
        if let Some(nodes) = &c.nodes {
            let f = self.gauge(
                "nodes",
                "Nodes of the swarm by state, as the leader sees them.",
            );
            for state in ["ready", "down", "unknown"] {
                let n = nodes.get(state).copied().unwrap_or(0);
                f.get_or_create(&labels(&[("state", state)])).set(gauge(n));
            }
        }
        if let Some(g) = &c.gossip {
            self.gossip(g);
        }
    }

    fn gossip(&mut self, g: &crate::api::stats::GossipStats) {
        self.gauge("gossip_members", "Other nodes this node's gossip sees up")
            .get_or_create(&Vec::new())
            .set(gauge(g.members.len() as u64));
        self.gauge(
            "gossip_remote_endpoints",
            "Other nodes' endpoints on this node's networks, as gossip holds them",
        )
        .get_or_create(&Vec::new())
        .set(gauge(g.remote_endpoints));
        let msgs = self.counter("gossip_messages", "Gossip messages, by direction");
        let bytes = self.counter("gossip_bytes", "Bytes of those messages (sealed)");
        for (dir, m, b) in [
            ("rx", g.recv_msgs, g.recv_bytes),
            ("tx", g.sent_msgs, g.sent_bytes),
        ] {
            msgs.get_or_create(&labels(&[("direction", dir)])).inc_by(m);
            bytes
                .get_or_create(&labels(&[("direction", dir)]))
                .inc_by(b);
        }
        let dropped = self.counter(
            "gossip_dropped",
            "Gossip messages refused, by reason (malformed, unknown_key, auth_failed, replay, not_member)",
        );
        for (reason, n) in &g.dropped {
            dropped
                .get_or_create(&labels(&[("reason", reason)]))
                .inc_by(*n);
        }
    }
}

fn gauge(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

const ALL_TASK_STATES: &[TaskState] = &[
    TaskState::New,
    TaskState::Pending,
    TaskState::Assigned,
    TaskState::Accepted,
    TaskState::Preparing,
    TaskState::Ready,
    TaskState::Starting,
    TaskState::Running,
    TaskState::Complete,
    TaskState::Shutdown,
    TaskState::Failed,
    TaskState::Rejected,
    TaskState::Orphaned,
];

/// swarmkit's lowercase name of a task state.
pub fn task_state_name(s: TaskState) -> &'static str {
    match s {
        TaskState::New => "new",
        TaskState::Pending => "pending",
        TaskState::Assigned => "assigned",
        TaskState::Accepted => "accepted",
        TaskState::Preparing => "preparing",
        TaskState::Ready => "ready",
        TaskState::Starting => "starting",
        TaskState::Running => "running",
        TaskState::Complete => "complete",
        TaskState::Shutdown => "shutdown",
        TaskState::Failed => "failed",
        TaskState::Rejected => "rejected",
        TaskState::Orphaned => "orphaned",
    }
}

/// The exposition text of one scrape.
pub fn render(node: &str, data: Option<&DataplaneSample>, control: &ControlSample) -> String {
    let mut scrape = Scrape::new(node);
    if let Some(d) = data {
        scrape.dataplane(d);
    }
    scrape.control(control);
    let mut out = String::new();
    // Writing to a String cannot fail; an encoding error would be a bug in a label, and an
    // empty answer says so more clearly than a panic in the daemon.
    if let Err(err) = prometheus_text::encode(&mut out, &scrape.registry) {
        tracing::warn!("cannot encode the metrics: {err}");
        out.clear();
    }
    out
}

impl Daemon {
    /// The data path's numbers now (`None` before it runs), read off the async threads: what
    /// a scrape and `GET /swarmnet/stats` both show.
    pub(super) async fn dataplane_sample(&self) -> Option<DataplaneSample> {
        let runtime = self.runtime.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = runtime.lock().unwrap_or_else(|e| e.into_inner());
            guard.as_mut().and_then(|rt| rt.metrics_sample())
        })
        .await
        .ok()
        .flatten()
    }

    /// The numbers of one scrape.
    async fn scrape(self: &Arc<Self>) -> String {
        let data = self.dataplane_sample().await;
        let identity = self.identity();
        let mut control = ControlSample {
            role: identity.as_ref().map(|i| i.role),
            gossip: self.gossip_stats().await,
            ..ControlSample::default()
        };
        if identity.as_ref().is_some_and(|i| i.role == Role::Manager) {
            let daemon = self.clone();
            // The store and the Raft metrics are read off the async threads.
            let (raft, tasks, nodes) = tokio::task::spawn_blocking(move || {
                let tasks = daemon.store.tasks().ok().map(|tasks| {
                    let mut by_state = BTreeMap::new();
                    for t in tasks {
                        *by_state.entry(t.state).or_insert(0) += 1;
                    }
                    by_state
                });
                // Liveness is the leader's: other managers would report every node unknown.
                let nodes = daemon
                    .holds_state()
                    .then(|| daemon.manager.nodes().ok())
                    .flatten()
                    .map(|nodes| {
                        let mut by_state = BTreeMap::new();
                        for n in nodes {
                            let state = match n.status.state {
                                NodeState::Ready => "ready",
                                NodeState::Down => "down",
                                NodeState::Unknown => "unknown",
                            };
                            *by_state.entry(state).or_insert(0) += 1;
                        }
                        by_state
                    });
                (daemon.manager.raft_sample(), tasks, nodes)
            })
            .await
            .unwrap_or_default();
            control.raft = raft;
            control.tasks = tasks;
            control.nodes = nodes;
        }
        render(&self.hostname, data.as_ref(), &control)
    }
}

/// Serves `GET /metrics` on `listener` in a task.
pub fn serve(daemon: Arc<Daemon>, listener: TcpListener) -> JoinHandle<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_SCRAPES));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(err) => {
                    tracing::debug!("metrics accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let daemon = daemon.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    let daemon = daemon.clone();
                    async move { Ok::<_, Infallible>(answer(&daemon, req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(err) = conn.await {
                    tracing::debug!("metrics connection ended: {err}");
                }
            });
        }
    })
}

async fn answer(
    daemon: &Arc<Daemon>,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let reply = |status: StatusCode, ctype: &'static str, body: String| {
        let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(ctype),
        );
        r
    };
    if req.uri().path() != "/metrics" {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: the metrics are at /metrics\n".into(),
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET and HEAD are served\n".into(),
        );
    }
    reply(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        daemon.scrape().await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_renders_every_family_with_its_labels() {
        let d = DataplaneSample {
            ports: vec![PortSample {
                port: "web.1.abc".into(),
                network: "my-net".into(),
                service: "web".into(),
                task: "web.1.abc".into(),
                counters: PortCounters {
                    rx_packets: 3,
                    rx_bytes: 300,
                    tx_packets: 2,
                    tx_bytes: 200,
                },
            }],
            networks: [(
                "my-net".to_string(),
                PortCounters {
                    rx_packets: 30,
                    rx_bytes: 3000,
                    tx_packets: 20,
                    tx_bytes: 2000,
                },
            )]
            .into_iter()
            .collect(),
            drops: vec![("esp_replay", 7), ("malformed", 0)],
            esp_sas: Some((2, 2)),
            ..DataplaneSample::default()
        };
        let c = ControlSample {
            role: Some(Role::Manager),
            raft: Some(RaftSample {
                term: 4,
                leader: true,
                last_log_index: Some(12),
                applied_index: Some(12),
                committed_index: Some(12),
                voters: 3,
                sessions: Some(3),
            }),
            tasks: Some([(TaskState::Running, 5)].into_iter().collect()),
            nodes: None,
            gossip: Some(crate::api::stats::GossipStats {
                members: vec!["node-2".into()],
                sent_msgs: 9,
                dropped: [("auth_failed".to_string(), 2)].into_iter().collect(),
                ..Default::default()
            }),
        };
        let text = render("node-1", Some(&d), &c);
        for line in [
            r#"swarmnet_port_packets_total{node="node-1",network="my-net",service="web",task="web.1.abc",port="web.1.abc",direction="rx"} 3"#,
            r#"swarmnet_port_bytes_total{node="node-1",network="my-net",service="web",task="web.1.abc",port="web.1.abc",direction="tx"} 200"#,
            r#"swarmnet_network_packets_total{node="node-1",network="my-net",direction="tx"} 20"#,
            r#"swarmnet_drops_total{node="node-1",reason="esp_replay"} 7"#,
            r#"swarmnet_drops_total{node="node-1",reason="malformed"} 0"#,
            r#"swarmnet_esp_security_associations{node="node-1",direction="inbound"} 2"#,
            r#"swarmnet_raft_term{node="node-1"} 4"#,
            r#"swarmnet_raft_leader{node="node-1"} 1"#,
            r#"swarmnet_dispatcher_sessions{node="node-1"} 3"#,
            r#"swarmnet_tasks{node="node-1",state="running"} 5"#,
            r#"swarmnet_tasks{node="node-1",state="failed"} 0"#,
            r#"swarmnet_node_role{node="node-1",role="manager"} 1"#,
            r#"swarmnet_gossip_members{node="node-1"} 1"#,
            r#"swarmnet_gossip_messages_total{node="node-1",direction="tx"} 9"#,
            r#"swarmnet_gossip_dropped_total{node="node-1",reason="auth_failed"} 2"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in:\n{text}");
        }
    }

    #[test]
    fn a_worker_without_data_plane_shows_its_role_only() {
        let c = ControlSample {
            role: Some(Role::Worker),
            ..ControlSample::default()
        };
        let text = render("w", None, &c);
        assert!(text.contains(r#"swarmnet_node_role{node="w",role="worker"} 1"#));
        assert!(!text.contains("raft_"), "{text}");
        assert!(!text.contains("port_packets"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        let d = DataplaneSample {
            ports: vec![PortSample {
                port: "p\"\\\n".into(),
                ..PortSample::default()
            }],
            ..DataplaneSample::default()
        };
        let text = render("n", Some(&d), &ControlSample::default());
        assert!(text.contains(r#"port="p\"\\\n""#), "{text}");
    }
}
