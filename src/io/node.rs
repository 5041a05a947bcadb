//! A running node: the data-path sockets, the workers, the local ports (task namespaces with
//! their TAPs) and orderly teardown.
//!
//! A node is driven by node views (`Topology`): `start` takes the first, `apply` any later one
//! while traffic flows. Ports that stay are never touched; new ones are made and handed to every
//! worker before the tables name them; removed ones leave the tables before their queues close.
//!
//! Endpoints that name one namespace are one task on several networks (eth0, eth1, ...): the
//! namespace is made by the first port that needs it and deleted with the last port in it (each
//! port holds it by an `Arc`), so adding or removing a network leaves the others, and whatever
//! runs in the namespace, alone.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use mio::Waker;

use super::mesh::{Mesh, MeshConfig, MeshStats};
use super::netns::{self, NetnsError, OwnedNetns};
use super::seqstore::{SeqStore, SeqStoreError};
use super::tap::TapQueue;
use super::task::{make_task, remove_iface};
use super::underlay::{esp_sockets, underlay_sockets};
use super::worker::{self, Command, VirtOwner, VirtualPort, Worker};
use crate::dataplane::{Counters, InterfaceStats, PortId, Tables};
use crate::topology::{Endpoint, EspTransport, Topology};
use crate::virt::sandbox::SandboxSpec;
use crate::virt::{VirtSpec, VirtualTask};

/// Name of a task's first interface inside its namespace, as in a Docker container.
pub const TASK_IFACE: &str = crate::topology::DEFAULT_IFACE;

/// Largest overlay MTU a running node can take on without a restart (its receive buffers are
/// sized at start for this or the start's largest MTU, whichever is larger).
const LIVE_MTU_BOUND: u16 = 9000;

/// How long a worker may take to acknowledge a port change.
const WORKER_ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("swarmnet needs CAP_NET_ADMIN to create network namespaces and TAP devices: run it as root or grant the capability (setcap cap_net_admin,cap_sys_admin+ep)")]
    NeedNetAdmin,
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("endpoint {endpoint}: cannot create its TAP device in namespace {netns}: {source}")]
    Tap {
        endpoint: String,
        netns: String,
        source: std::io::Error,
    },
    #[error("cannot bind the data path to {addr}: {source} (is data_path_addr an address of this host, and the port free?)")]
    Bind {
        addr: SocketAddrV4,
        source: std::io::Error,
    },
    #[error("transport = \"ip\" sends ESP as IP protocol 50 through raw sockets, which needs CAP_NET_RAW ({0}): grant it, or set transport = \"udp\" in [encryption] on every node of the network")]
    NeedNetRaw(std::io::Error),
    #[error("cannot start worker: {0}")]
    Worker(std::io::Error),
    #[error("outbound ESP sequence numbers: {0}")]
    SeqStore(#[from] SeqStoreError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

/// Why a new node view could not (wholly) replace the running one.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("a running node cannot change {0}; restart the node for that")]
    Unsupported(String),
    #[error("cannot reserve sequence numbers for the new SAs: {0}")]
    SeqStore(#[from] SeqStoreError),
    #[error("swarmnet needs CAP_NET_ADMIN to add task {0} (a network namespace and TAP device): run it as root or grant the capability (setcap cap_net_admin,cap_sys_admin+ep)")]
    NeedNetAdmin(String),
    #[error("cannot add task {endpoint}: {error}")]
    Port {
        endpoint: String,
        error: Box<RunError>,
    },
    #[error("worker {0} did not take a port change (it stopped?)")]
    Worker(usize),
    #[error("{done}; but then {error}")]
    Partly {
        done: String,
        error: Box<ApplyError>,
    },
    #[error("invalid node view: {0}")]
    Invalid(#[from] crate::topology::ViewError),
    #[error("cannot open the ESP sockets: {0}")]
    Esp(Box<RunError>),
}

/// What an `apply` changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Local ports added, by endpoint name.
    pub added: Vec<String>,
    /// Local ports removed (or replaced: in both lists), by endpoint name.
    pub removed: Vec<String>,
}

impl std::fmt::Display for Applied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        write!(
            f,
            "tasks added: {}; removed: {}",
            list(&self.added),
            list(&self.removed)
        )
    }
}

/// How to run a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub topology: Topology,
    /// Worker threads (each with its own TAP queues and socket).
    pub workers: usize,
    /// TAP offloads: TCP segmentation and checksums finished by the data path.
    pub offload: bool,
    /// Where the outbound ESP sequence numbers are kept across restarts (used only with
    /// encrypted networks; see `seqstore`).
    pub esp_sequence_file: PathBuf,
    /// The resolv.conf whose nameservers answer the names the swarm does not own; `None`:
    /// the host's /etc/resolv.conf.
    pub resolv_conf: Option<PathBuf>,
}

/// A task's interface and the namespace it is in; the namespace is kept until the last of
/// its interfaces is removed or the node stops.
#[derive(Debug)]
pub struct Task {
    pub endpoint: String,
    pub netns: Arc<OwnedNetns>,
    /// The interface's name in the namespace (eth0, eth1, ...).
    pub iface: String,
}

/// What a task's interface is configured from: a change of any of it makes a new port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PortConfig {
    pub endpoint: Endpoint,
    pub prefix: u8,
    pub mtu: u16,
    pub gateway: Ipv4Addr,
    /// On a bridge network (docker_gwbridge): the task's default route goes through it.
    pub bridge: bool,
}

impl PortConfig {
    fn of(view: &Topology, ep: &Endpoint) -> Option<PortConfig> {
        let net = view.network(&ep.network)?;
        Some(PortConfig {
            endpoint: ep.clone(),
            prefix: net.subnet.prefix_len(),
            mtu: net.mtu,
            gateway: net.gateway,
            bridge: net.bridge.is_some(),
        })
    }

    pub(super) fn netns(&self) -> &str {
        self.endpoint.netns_name()
    }

    pub(super) fn iface(&self) -> &str {
        self.endpoint.iface_name()
    }

    /// Whether both are interfaces in a namespace with the same name in the same namespace.
    fn same_interface(&self, other: &PortConfig) -> bool {
        self.endpoint.app.is_none()
            && other.endpoint.app.is_none()
            && self.netns() == other.netns()
            && self.iface() == other.iface()
    }
}

/// A local port of a running node.
struct LocalPort {
    id: PortId,
    config: PortConfig,
    /// The interface and namespace of a task in one (`None`: a virtual task, run by a worker).
    task: Option<Task>,
}

/// A started node; `stop` (or drop) shuts it down and removes what it created.
pub struct Node {
    stop: Arc<AtomicBool>,
    wakers: Vec<Arc<Waker>>,
    commands: Vec<mpsc::Sender<Command>>,
    threads: Vec<JoinHandle<std::io::Result<()>>>,
    published: Vec<Arc<Mutex<Counters>>>,
    tables: Arc<ArcSwap<Tables>>,
    /// What virtual tasks' apps reported, until taken.
    app_events: Arc<Mutex<Vec<String>>>,
    /// Live captures the workers offer frames to.
    capture: Arc<super::capture::CaptureHub>,
    /// The routing mesh's published ports, read by the ingress sandbox's port.
    mesh_config: Arc<ArcSwap<MeshConfig>>,
    mesh_stats: Arc<Mutex<MeshStats>>,
    /// Reservations of outbound ESP sequence numbers (encrypted networks only).
    seq_store: Mutex<Option<SeqStore>>,
    /// Whether the last write of `seq_store` failed (logged once per run of failures).
    seq_store_failing: AtomicBool,
    esp_sequence_file: PathBuf,
    /// The ESP transport and UDP port the workers have sockets for (fixed once opened).
    esp_sockets: Option<(EspTransport, u16)>,
    offload: bool,
    max_mtu: u16,
    /// The next port id: ids are never reused within a run, so counters never mix two tasks.
    next_port: u32,
    // Dropped after the workers stop: namespaces go last.
    ports: BTreeMap<String, LocalPort>,
    /// The task namespaces by name; the ports in one hold it (`Task::netns`).
    namespaces: BTreeMap<String, Weak<OwnedNetns>>,
    /// Forwards the names the swarm does not own to the host's resolvers (workers hold
    /// clients of it).
    _resolver: Option<crate::io::resolver::Forwarder>,
}

impl Node {
    /// Binds the data path, starts the workers, then creates every local task's namespace and
    /// interface (as `apply` does for later views). On error everything created so far is
    /// removed.
    pub fn start(cfg: NodeConfig) -> Result<Node, RunError> {
        let topo = &cfg.topology;
        topo.validate().map_err(ApplyError::from)?;
        if topo.namespaced_endpoints().next().is_some() && !netns::have_net_admin() {
            return Err(RunError::NeedNetAdmin);
        }
        let workers = cfg.workers.max(1);
        // Tables without local ports first: ports are added like any later change.
        let bare = Topology {
            endpoints: topo
                .endpoints
                .iter()
                .filter(|e| !e.is_local())
                .cloned()
                .collect(),
            ..topo.clone()
        };
        let mut tables = Tables::from_topology(&bare);
        let mut seq_store = None;
        if let Some(esp) = &tables.esp {
            let esp = esp.with_iv_offset(random_u64());
            let mut store = SeqStore::open(&cfg.esp_sequence_file)?;
            store.claim(&esp)?;
            seq_store = Some(store);
            tables.esp = Some(esp);
        }
        let max_mtu = topo
            .networks
            .iter()
            .map(|n| n.mtu)
            .max()
            .unwrap_or(1500)
            .max(LIVE_MTU_BOUND);
        // Inner frame + VXLAN header + slack for VLAN tags; never less than a classic frame.
        let max_packet = (usize::from(max_mtu) + 14 + 8 + 64).max(2048);

        let mut sockets = underlay_sockets(topo, workers)?;

        let resolver = start_resolver(cfg.resolv_conf.as_deref());
        let swap = Arc::new(ArcSwap::new(Arc::new(tables)));
        let stop = Arc::new(AtomicBool::new(false));
        let mut node = Node {
            stop: Arc::clone(&stop),
            wakers: Vec::new(),
            commands: Vec::new(),
            threads: Vec::new(),
            published: Vec::new(),
            tables: Arc::clone(&swap),
            app_events: Arc::new(Mutex::new(Vec::new())),
            capture: Arc::default(),
            mesh_config: Arc::new(ArcSwap::from_pointee(MeshConfig::default())),
            mesh_stats: Arc::new(Mutex::new(MeshStats::default())),
            seq_store: Mutex::new(seq_store),
            seq_store_failing: AtomicBool::new(false),
            esp_sequence_file: cfg.esp_sequence_file.clone(),
            esp_sockets: topo.encryption.as_ref().map(|e| (e.transport, e.udp_port)),
            offload: cfg.offload,
            max_mtu,
            next_port: 0,
            ports: BTreeMap::new(),
            namespaces: BTreeMap::new(),
            _resolver: None,
        };
        // Worker 0 runs the virtual tasks; the others hand it their frames.
        let (handover_tx, handover_rx) = mpsc::sync_channel(worker::HANDOVER_QUEUE);
        let mut handover_rx = Some(handover_rx);
        let mut owner: Option<VirtOwner> = None;
        for (id, sockets) in sockets.iter_mut().enumerate() {
            let sockets = std::mem::take(sockets);
            let (poll, waker) = worker::poll_with_waker().map_err(RunError::Worker)?;
            if id == 0 {
                owner = Some(VirtOwner {
                    frames: handover_tx.clone(),
                    waker: Arc::clone(&waker),
                });
            }
            let (tx, commands) = mpsc::channel();
            let published = Arc::new(Mutex::new(Counters::new(0)));
            let w = Worker {
                id,
                tables: Arc::clone(&swap),
                commands,
                virt_owner: if id == 0 { None } else { owner.clone() },
                handed_over: handover_rx.take(),
                app_events: Arc::clone(&node.app_events),
                capture: Arc::clone(&node.capture),
                sockets,
                poll,
                stop: Arc::clone(&stop),
                published: Arc::clone(&published),
                max_packet,
                resolver: resolver.as_ref().map(|r| {
                    let waker = Arc::clone(&waker);
                    r.client(move || {
                        let _ = waker.wake();
                    })
                }),
            };
            let handle = std::thread::Builder::new()
                .name(format!("swarmnet-w{id}"))
                .spawn(move || w.run())
                .map_err(RunError::Worker)?;
            node.wakers.push(waker);
            node.commands.push(tx);
            node.threads.push(handle);
            node.published.push(published);
        }
        node._resolver = resolver;
        node.apply(topo)?;
        Ok(node)
    }

    /// Makes `view` the node's view while traffic flows: remote endpoints, networks and keys
    /// are swapped in with the tables (SAs of unchanged keys keep their sequence numbers and
    /// replay windows); local ports that stay the same are untouched, new ones get a namespace
    /// and TAP, removed ones are taken out of the tables first and then deleted. The node's
    /// address, port and ESP transport cannot change.
    ///
    /// When a new task cannot be made, nothing is changed, unless the task replaces a removed
    /// one in the same namespace (removed first): then the error says what was done.
    pub fn apply(&mut self, view: &Topology) -> Result<Applied, ApplyError> {
        view.validate()?;
        self.check(view)?;
        self.open_esp(view)?;
        let mut wanted: BTreeMap<String, PortConfig> = BTreeMap::new();
        for ep in view.local_endpoints() {
            if let Some(cfg) = PortConfig::of(view, ep) {
                wanted.insert(ep.name.clone(), cfg);
            }
        }
        let removed: Vec<String> = self
            .ports
            .iter()
            .filter(|(name, p)| wanted.get(*name) != Some(&p.config))
            .map(|(name, _)| name.clone())
            .collect();
        let added: Vec<PortConfig> = wanted
            .iter()
            .filter(|(name, cfg)| self.ports.get(*name).map(|p| &p.config) != Some(cfg))
            .map(|(_, cfg)| cfg.clone())
            .collect();
        if let Some(first) = added.iter().find(|c| c.endpoint.app.is_none()) {
            if !netns::have_net_admin() {
                return Err(ApplyError::NeedNetAdmin(first.endpoint.name.clone()));
            }
        }
        // A new port that takes a removed one's name or interface must wait for its removal.
        let (replacing, fresh): (Vec<PortConfig>, Vec<PortConfig>) =
            added.into_iter().partition(|cfg| {
                removed.iter().any(|name| {
                    *name == cfg.endpoint.name || self.ports[name].config.same_interface(cfg)
                })
            });

        self.add_ports(view, &fresh)?;
        // Held until the replacements are made: a task whose only interface is replaced keeps
        // its namespace (and what runs in it).
        let _emptied = self.remove_ports(view, &removed)?;
        if let Err(e) = self.add_ports(view, &replacing) {
            let done = Applied {
                added: fresh.iter().map(|c| c.endpoint.name.clone()).collect(),
                removed: removed.clone(),
            };
            return Err(ApplyError::Partly {
                done: done.to_string(),
                error: Box::new(e),
            });
        }
        // Remote endpoints, networks and keys (and a view without port changes) land here.
        self.publish(view)?;
        let mut added: Vec<String> = fresh
            .iter()
            .chain(&replacing)
            .map(|c| c.endpoint.name.clone())
            .collect();
        added.sort();
        for name in &added {
            if let Some(p) = self.ports.get(name) {
                match &p.config.endpoint.app {
                    Some(app) => {
                        tracing::info!(endpoint = %name, port = p.id.0, app = ?app, "virtual task added")
                    }
                    None => {
                        tracing::info!(endpoint = %name, port = p.id.0, netns = %p.config.netns(), "task added")
                    }
                }
            }
        }
        for name in &removed {
            tracing::info!(endpoint = %name, "task removed");
        }
        Ok(Applied { added, removed })
    }

    /// What a view may not change on a running node.
    fn check(&self, view: &Topology) -> Result<(), ApplyError> {
        let old = self.tables.load();
        let node = &view.node;
        if (node.data_path_addr, node.data_path_port) != (old.data_path_addr, old.data_path_port) {
            return Err(ApplyError::Unsupported(
                "the data path address or port".into(),
            ));
        }
        // ESP sockets are opened by the first view with keys and kept for the run.
        let wanted = view.encryption.as_ref().map(|e| (e.transport, e.udp_port));
        if let (Some(have), Some(want)) = (self.esp_sockets, wanted) {
            if have != want {
                return Err(ApplyError::Unsupported("the ESP transport".into()));
            }
        }
        if let Some(n) = view.networks.iter().find(|n| n.mtu > self.max_mtu) {
            return Err(ApplyError::Unsupported(format!(
                "the largest MTU (network {} has {}, this run takes up to {})",
                n.name, n.mtu, self.max_mtu
            )));
        }
        Ok(())
    }

    /// Gives every worker the ESP sockets of `view`'s transport (and the node its outbound
    /// sequence-number store) if it has keys and the node has none yet: a swarm's first
    /// encrypted network may come to a running node.
    fn open_esp(&mut self, view: &Topology) -> Result<(), ApplyError> {
        let Some(enc) = &view.encryption else {
            return Ok(());
        };
        if self.esp_sockets.is_none() {
            let workers = self.commands.len();
            let node = &view.node;
            let sockets = esp_sockets(node.data_path_addr, enc.transport, enc.udp_port, workers)
                .map_err(|e| ApplyError::Esp(Box::new(e)))?;
            let mut acks = Vec::new();
            for (w, sockets) in sockets.into_iter().enumerate() {
                let (done, ack) = mpsc::channel();
                if self.commands[w]
                    .send(Command::AddSockets { sockets, done })
                    .is_err()
                {
                    return Err(ApplyError::Worker(w));
                }
                acks.push((w, ack));
            }
            self.wait_for(acks)?;
            self.esp_sockets = Some((enc.transport, enc.udp_port));
            tracing::info!(transport = ?enc.transport, udp_port = enc.udp_port, "ESP sockets open");
        }
        let store = self.seq_store.get_mut().unwrap_or_else(|e| e.into_inner());
        if store.is_none() {
            *store = Some(SeqStore::open(&self.esp_sequence_file)?);
        }
        Ok(())
    }

    /// Creates `ports` (namespace, TAP, addresses), hands them to every worker, then publishes
    /// tables that name them. On error the ports created here are deleted again.
    fn add_ports(&mut self, view: &Topology, ports: &[PortConfig]) -> Result<(), ApplyError> {
        if ports.is_empty() {
            return Ok(());
        }
        let workers = self.commands.len();
        let mut made: Vec<(LocalPort, Vec<TapQueue>)> = Vec::new();
        let mut virtual_tasks = Vec::new();
        for cfg in ports {
            let id = PortId(self.next_port);
            if cfg.endpoint.app == Some(crate::topology::App::IngressSandbox) {
                let spec = SandboxSpec {
                    mac: cfg.endpoint.mac,
                    ip: cfg.endpoint.ip,
                    prefix: cfg.prefix,
                    gateway: cfg.gateway,
                    mtu: cfg.mtu,
                    seed: random_u64(),
                };
                let mesh = Mesh::new(
                    cfg.endpoint.name.clone(),
                    &spec,
                    Arc::clone(&self.mesh_config),
                    Arc::clone(&self.mesh_stats),
                    worker::now_nanos(),
                );
                virtual_tasks.push((id, VirtualPort::Mesh(Box::new(mesh))));
                made.push((
                    LocalPort {
                        id,
                        config: cfg.clone(),
                        task: None,
                    },
                    Vec::new(),
                ));
                self.next_port += 1;
                continue;
            }
            if let Some(app) = &cfg.endpoint.app {
                let spec = VirtSpec {
                    name: cfg.endpoint.name.clone(),
                    hostname: cfg
                        .endpoint
                        .task
                        .clone()
                        .unwrap_or_else(|| cfg.endpoint.name.clone()),
                    node: view.node.name.clone(),
                    app: app.clone(),
                    mac: cfg.endpoint.mac,
                    ip: cfg.endpoint.ip,
                    prefix: cfg.prefix,
                    gateway: cfg.gateway,
                    mtu: cfg.mtu,
                    seed: random_u64(),
                    reach: virtual_reach(view, &cfg.endpoint),
                };
                let task = VirtualTask::new(&spec, worker::now_nanos());
                virtual_tasks.push((id, VirtualPort::Task(Box::new(task))));
                made.push((
                    LocalPort {
                        id,
                        config: cfg.clone(),
                        task: None,
                    },
                    Vec::new(),
                ));
                self.next_port += 1;
                continue;
            }
            let port_error = |error: RunError| ApplyError::Port {
                endpoint: cfg.endpoint.name.clone(),
                error: Box::new(error),
            };
            let ns = self
                .namespace(cfg.netns())
                .map_err(|e| port_error(e.into()))?;
            // The task's resolver: the gateway of its first network.
            if cfg.endpoint.iface_name() == crate::topology::DEFAULT_IFACE {
                if let Err(e) = ns.set_resolv_conf(std::net::IpAddr::V4(cfg.gateway)) {
                    tracing::warn!(task = %cfg.endpoint.name, error = %e, "cannot give the task its resolv.conf");
                }
            }
            // A task's way out (docker_gwbridge) always takes its kernel's TCP super-frames and
            // gets coalesced ones: the egress carries one host stream per connection, and a
            // TAP read or write per 1500-byte segment would be most of its cost.
            let offload = self.offload || cfg.bridge;
            let (task, queues) = make_task(cfg, ns, workers, offload).map_err(port_error)?;
            self.next_port += 1;
            made.push((
                LocalPort {
                    id,
                    config: cfg.clone(),
                    task: Some(task),
                },
                queues,
            ));
        }
        let mut acks = Vec::new();
        let mut send = |w: usize, cmd: Command, ack| {
            if self.commands[w].send(cmd).is_err() {
                return Err(ApplyError::Worker(w));
            }
            acks.push((w, ack));
            Ok(())
        };
        for (port, queues) in &mut made {
            for (w, queue) in std::mem::take(queues).into_iter().enumerate() {
                let (done, ack) = mpsc::channel();
                let cmd = Command::AddPort {
                    id: port.id,
                    queue,
                    done,
                };
                send(w, cmd, ack)?;
            }
        }
        for (id, task) in virtual_tasks {
            let (done, ack) = mpsc::channel();
            send(0, Command::AddVirtual { id, task, done }, ack)?;
            for w in 1..workers {
                let (done, ack) = mpsc::channel();
                send(w, Command::AddElsewhere { id, done }, ack)?;
            }
        }
        self.wait_for(acks)?;
        for (port, _) in made {
            self.ports.insert(port.config.endpoint.name.clone(), port);
        }
        self.publish(view)
    }

    /// The namespace `name` of this node's tasks, created if no port holds it.
    fn namespace(&mut self, name: &str) -> Result<Arc<OwnedNetns>, NetnsError> {
        if let Some(ns) = self.namespaces.get(name).and_then(Weak::upgrade) {
            return Ok(ns);
        }
        let ns = Arc::new(OwnedNetns::create(name)?);
        self.namespaces.retain(|_, w| w.strong_count() > 0);
        self.namespaces
            .insert(name.to_string(), Arc::downgrade(&ns));
        Ok(ns)
    }

    /// Takes `names` out of the tables, then out of every worker, then deletes their
    /// interfaces. Returns the namespaces no port holds any more: they are deleted when the
    /// caller drops them.
    fn remove_ports(
        &mut self,
        view: &Topology,
        names: &[String],
    ) -> Result<Vec<Arc<OwnedNetns>>, ApplyError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let gone: Vec<LocalPort> = names.iter().filter_map(|n| self.ports.remove(n)).collect();
        if let Err(e) = self.publish(view) {
            // The tables still name them: keep them.
            for p in gone {
                self.ports.insert(p.config.endpoint.name.clone(), p);
            }
            return Err(e);
        }
        let mut acks = Vec::new();
        for port in &gone {
            for (w, tx) in self.commands.iter().enumerate() {
                let (done, ack) = mpsc::channel();
                if tx.send(Command::RemovePort { id: port.id, done }).is_ok() {
                    acks.push((w, ack));
                }
            }
        }
        let result = self.wait_for(acks);
        let mut emptied = Vec::new();
        for task in gone.into_iter().filter_map(|p| p.task) {
            // The namespace may stay (other interfaces, or a replacement of this one): the
            // interface must be gone before a new one takes its name.
            remove_iface(task.netns.name(), &task.iface);
            if Arc::strong_count(&task.netns) == 1 {
                emptied.push(task.netns);
            }
        }
        result.map(|()| emptied)
    }

    fn wait_for(&self, acks: Vec<(usize, mpsc::Receiver<()>)>) -> Result<(), ApplyError> {
        for w in &self.wakers {
            let _ = w.wake();
        }
        for (w, ack) in acks {
            ack.recv_timeout(WORKER_ACK_TIMEOUT)
                .map_err(|_| ApplyError::Worker(w))?;
        }
        Ok(())
    }

    /// Builds and swaps in the tables of `view` with the local ports the node has now.
    fn publish(&self, view: &Topology) -> Result<(), ApplyError> {
        let old = self.tables.load_full();
        let mut live = Topology {
            endpoints: view
                .endpoints
                .iter()
                .filter(|e| !e.is_local())
                .cloned()
                .collect(),
            ..view.clone()
        };
        live.endpoints
            .extend(self.ports.values().map(|p| p.config.endpoint.clone()));
        let ids: BTreeMap<&str, PortId> =
            self.ports.iter().map(|(n, p)| (n.as_str(), p.id)).collect();
        let mut new = Tables::with_port_ids(&live, |name| ids[name]).keeping_state_of(&old);
        if old.esp.is_none() {
            // First keys of this run (or again after a view without): random IVs, as at start.
            new.esp = new.esp.map(|esp| esp.with_iv_offset(random_u64()));
        }
        let mut store = self.seq_store.lock().unwrap_or_else(|e| e.into_inner());
        // (Whether there is ESP at all cannot change: `check` refuses it.)
        if let (Some(store), Some(esp)) = (store.as_mut(), new.esp.as_ref()) {
            store.claim(esp)?;
        }
        // Published under the lock, so a renewal never sees the old table after the claim.
        self.tables.store(Arc::new(new));
        Ok(())
    }
    /// Renews the ESP sequence-number reservations that are half used (call every 50 ms). If
    /// they cannot be written, the log says so once, SAs about to run out go on without a
    /// bound (a restart would then be refused by the peers until the keys rotate), and the
    /// next call tries again.
    pub fn renew_reservations(&self) {
        let mut guard = self.seq_store.lock().unwrap_or_else(|e| e.into_inner());
        let Some(store) = guard.as_mut() else { return };
        let tables = self.tables.load();
        let Some(esp) = tables.esp.as_ref() else {
            return;
        };
        let failing = self.seq_store_failing.load(Ordering::Relaxed);
        match store.renew(esp) {
            Ok(()) if failing => {
                tracing::info!(path = %store.path().display(), "ESP sequence numbers are kept on disk again");
                self.seq_store_failing.store(false, Ordering::Relaxed);
            }
            Ok(()) => {}
            Err(e) if !failing => {
                tracing::error!(
                    error = %e,
                    "cannot keep ESP sequence numbers for restarts; traffic goes on, but if this node restarts before the file can be written, peers will refuse its encrypted traffic as replayed until the keys rotate"
                );
                self.seq_store_failing.store(true, Ordering::Relaxed);
            }
            Err(_) => {}
        }
    }

    /// The sum of every worker's last published counters.
    /// The tables the workers use now.
    /// The node's live captures.
    pub fn capture(&self) -> Arc<super::capture::CaptureHub> {
        Arc::clone(&self.capture)
    }

    pub fn tables(&self) -> Arc<Tables> {
        self.tables.load_full()
    }

    pub fn counters(&self) -> Counters {
        let mut sum = Counters::new(self.tables.load().port_id_bound());
        for slot in &self.published {
            if let Ok(c) = slot.lock() {
                sum.merge(&c);
            }
        }
        sum
    }

    /// Local port names, indexed by `PortId` (empty for ids of removed ports).
    pub fn port_names(&self) -> Vec<String> {
        self.tables.load().port_names()
    }

    /// The kernel's drop counts of every task interface (read inside each task's namespace).
    pub fn interface_stats(&self) -> Vec<(String, InterfaceStats)> {
        self.tasks()
            .filter_map(|t| {
                let dev = netns::run_in(t.netns.name(), || {
                    std::fs::read_to_string("/proc/thread-self/net/dev")
                })
                .ok()?
                .ok()?;
                Some((t.endpoint.clone(), parse_net_dev(&dev, &t.iface)?))
            })
            .collect()
    }

    /// The interfaces of local tasks in namespaces, by endpoint name.
    pub fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.ports.values().filter_map(|p| p.task.as_ref())
    }

    /// Publishes `cfg` to the routing mesh (the ingress sandbox's port, when the view has
    /// one): ports new in it are bound, ports gone are closed, connections carried stay.
    pub fn set_mesh(&self, cfg: MeshConfig) {
        if **self.mesh_config.load() == cfg {
            return;
        }
        self.mesh_config.store(Arc::new(cfg));
        if let Some(w) = self.wakers.first() {
            let _ = w.wake();
        }
    }

    /// The routing mesh's counters.
    pub fn mesh_stats(&self) -> MeshStats {
        self.mesh_stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The virtual tasks: (endpoint name, app).
    pub fn virtual_tasks(&self) -> impl Iterator<Item = (&str, &crate::topology::App)> {
        self.ports
            .iter()
            .filter_map(|(n, p)| Some((n.as_str(), p.config.endpoint.app.as_ref()?)))
    }

    /// What virtual tasks' apps reported since the last call, one line each, prefixed with the
    /// task's name.
    pub fn take_app_events(&self) -> Vec<String> {
        std::mem::take(&mut *self.app_events.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// True while every worker is running.
    pub fn healthy(&self) -> bool {
        self.threads.iter().all(|t| !t.is_finished())
    }

    /// Stops the workers, then removes the namespaces (and with them the TAPs).
    pub fn stop(mut self) -> Counters {
        self.shutdown();
        self.counters()
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for w in &self.wakers {
            let _ = w.wake();
        }
        for t in self.threads.drain(..) {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "worker failed"),
                Err(_) => tracing::error!("worker panicked"),
            }
        }
        // No packet is sealed any more: keep the exact last sequence numbers.
        let store = self.seq_store.get_mut().unwrap_or_else(|e| e.into_inner());
        if let (Some(store), Some(esp)) = (store.as_mut(), self.tables.load().esp.as_ref()) {
            if let Err(e) = store.close(esp) {
                tracing::warn!(error = %e, "cannot store the last ESP sequence numbers");
            }
        }
        *store = None;
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown();
        // `ports` drops after this, deleting the namespaces.
    }
}

/// 64 random bits from the kernel (the core itself draws no randomness).
/// Which addresses a virtual task's interface on `ep` connects to (see [`crate::virt::Reach`]):
/// a task with a way out (an endpoint on a bridge network) reaches its networks' subnets
/// through their interfaces and everything else through the way out.
fn virtual_reach(view: &Topology, ep: &Endpoint) -> crate::virt::Reach {
    use crate::virt::Reach;
    let subnet = |e: &Endpoint| {
        view.network(&e.network)
            .map(|n| (n.subnet, n.bridge.is_some()))
    };
    let mine: Vec<(ipnet::Ipv4Net, bool)> = view
        .local_endpoints()
        .filter(|e| e.is_virtual() && e.task_name() == ep.task_name())
        .filter_map(subnet)
        .collect();
    if !mine.iter().any(|(_, bridge)| *bridge) {
        return Reach::All;
    }
    match subnet(ep) {
        Some((_, true)) => Reach::Outside(
            mine.iter()
                .filter(|(_, bridge)| !bridge)
                .map(|(net, _)| *net)
                .collect(),
        ),
        Some((net, false)) => Reach::Subnet(net),
        None => Reach::All,
    }
}

pub(super) fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom writes at most b.len() bytes into b.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        // Without randomness the offset is the clock: still distinct from one start to the next.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        return now.map(|d| d.as_nanos() as u64).unwrap_or(0);
    }
    u64::from_ne_bytes(b)
}

/// Whether this process runs as root (the system directories are for root's nodes).
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A non-empty absolute path from environment variable `var`.
fn env_dir(var: &str) -> Option<PathBuf> {
    let p = PathBuf::from(std::env::var_os(var)?);
    p.is_absolute().then_some(p)
}

/// Where `swarmnet run` keeps a node's outbound ESP sequence numbers unless told otherwise:
/// persistent storage, since peers remember the numbers across this host's reboots too.
/// Root: /var/lib/swarmnet/nodes/NODE; another user: $XDG_STATE_HOME/swarmnet/nodes/NODE
/// (default ~/.local/state).
pub fn default_esp_sequence_file(node: &str) -> PathBuf {
    let base = if is_root() {
        PathBuf::from("/var/lib/swarmnet")
    } else {
        env_dir("XDG_STATE_HOME")
            .or_else(|| env_dir("HOME").map(|h| h.join(".local/state")))
            .map_or_else(
                || PathBuf::from("/var/lib/swarmnet"),
                |d| d.join("swarmnet"),
            )
    };
    base.join("nodes").join(node).join("esp-sequence.json")
}

/// Where `swarmnet run` writes its counters (and holds its run lock) by default. Root:
/// /run/swarmnet/NODE; another user: $XDG_RUNTIME_DIR/swarmnet/NODE.
pub fn default_counters_path(node: &str) -> PathBuf {
    let base = match env_dir("XDG_RUNTIME_DIR") {
        Some(d) if !is_root() => d.join("swarmnet"),
        _ => PathBuf::from("/run/swarmnet"),
    };
    base.join(node).join("counters.json")
}

/// Reads an interface's drop counters from the text of /proc/net/dev.
fn parse_net_dev(text: &str, iface: &str) -> Option<InterfaceStats> {
    let line = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(&format!("{iface}:")))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    // Receive: bytes packets errs drop fifo frame compressed multicast; then transmit, alike.
    Some(InterfaceStats {
        rx_dropped: *f.get(3)?,
        tx_dropped: *f.get(11)?,
    })
}

/// The forwarder of names the swarm does not own, to the nameservers of `resolv_conf` (the
/// host's by default). Without one, such names get SERVFAIL; the node runs anyway.
fn start_resolver(resolv_conf: Option<&std::path::Path>) -> Option<crate::io::resolver::Forwarder> {
    use crate::io::resolver::{Forwarder, ResolverConfig, DEFAULT_RESOLV_CONF};
    let path = resolv_conf.unwrap_or(std::path::Path::new(DEFAULT_RESOLV_CONF));
    let config = match ResolverConfig::from_resolv_conf(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("{e}; names outside the swarm will get SERVFAIL");
            ResolverConfig {
                upstreams: Vec::new(),
                timeout: crate::io::resolver::UPSTREAM_TIMEOUT,
                max_in_flight: crate::io::resolver::MAX_IN_FLIGHT,
            }
        }
    };
    match Forwarder::start(config) {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the DNS forwarder; names outside the swarm will get no answer");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_drops_from_proc_net_dev() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
             face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
             lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0\n  \
             eth0: 1234567    9000    0    7    0     0          0         0 99999999   70000    0 1192    0     0       0          0\n";
        let s = parse_net_dev(text, "eth0").unwrap();
        assert_eq!(
            s,
            InterfaceStats {
                rx_dropped: 7,
                tx_dropped: 1192
            }
        );
        assert!(parse_net_dev(text, "eth1").is_none());
    }
}
