//! A running node: task namespaces with their TAPs, the data-path sockets, the workers, and
//! orderly teardown.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use arc_swap::ArcSwap;
use mio::Waker;

use super::netns::{self, NetnsError, OwnedNetns};
use super::seqstore::{SeqStore, SeqStoreError};
use super::tap::{self, TapQueue};
use super::udp::DatagramSocket;
use super::worker::{self, Channel, UnderlaySocket, Worker};
use crate::dataplane::{Counters, InterfaceStats, Tables, SRC_PORT_BASE};
use crate::topology::{EspTransport, Topology};

/// Name of a task's interface inside its namespace, as in a Docker container.
pub const TASK_IFACE: &str = "eth0";

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
}

/// Why a new topology could not replace the running one.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("a reload cannot change {0}; restart the node for that")]
    Unsupported(&'static str),
    #[error("cannot reserve sequence numbers for the new SAs: {0}")]
    SeqStore(#[from] SeqStoreError),
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
}

/// A task's sandbox: its namespace, kept until the node stops.
#[derive(Debug)]
pub struct Task {
    pub endpoint: String,
    pub netns: OwnedNetns,
}

/// A started node; `stop` (or drop) shuts it down and removes what it created.
pub struct Node {
    stop: Arc<AtomicBool>,
    wakers: Vec<Arc<Waker>>,
    threads: Vec<JoinHandle<std::io::Result<()>>>,
    published: Vec<Arc<Mutex<Counters>>>,
    tables: Arc<ArcSwap<Tables>>,
    /// Reservations of outbound ESP sequence numbers (encrypted networks only).
    seq_store: Mutex<Option<SeqStore>>,
    /// Whether the last write of `seq_store` failed (logged once per run of failures).
    seq_store_failing: AtomicBool,
    // Dropped after the workers stop: namespaces go last.
    tasks: Vec<Task>,
}

impl Node {
    /// Creates every local task's namespace and interface, binds the data path, starts the
    /// workers. On error everything created so far is removed.
    pub fn start(cfg: NodeConfig) -> Result<Node, RunError> {
        if !netns::have_net_admin() {
            return Err(RunError::NeedNetAdmin);
        }
        let workers = cfg.workers.max(1);
        let offload = cfg.offload;
        let topo = &cfg.topology;
        let mut tables = Tables::from_topology(topo);
        let mut seq_store = None;
        if let Some(esp) = &tables.esp {
            let esp = esp.with_iv_offset(random_u64());
            let mut store = SeqStore::open(&cfg.esp_sequence_file)?;
            store.claim(&esp)?;
            seq_store = Some(store);
            tables.esp = Some(esp);
        }
        let tables = Arc::new(tables);
        let max_mtu = topo
            .networks
            .iter()
            .map(|n| usize::from(n.mtu))
            .max()
            .unwrap_or(1500);
        // Inner frame + VXLAN header + slack for VLAN tags; never less than a classic frame.
        let max_packet = (max_mtu + 14 + 8 + 64).max(2048);

        let mut tasks = Vec::new();
        // queues[port][worker]
        let mut queues: Vec<Vec<TapQueue>> = Vec::new();
        for port in &tables.ports {
            let ep = topo
                .endpoints
                .iter()
                .find(|e| e.name == port.name)
                .expect("tables' ports come from the topology's endpoints");
            let net = tables
                .network(port.network)
                .expect("a port's network is in the tables");
            let ns_name = ep.netns.clone().unwrap_or_else(|| ep.name.clone());
            let ns = OwnedNetns::create(&ns_name)?;
            let qs = netns::run_in(&ns_name, move || {
                tap::open_multiqueue(TASK_IFACE, workers, offload)
            })?
            .map_err(|source| RunError::Tap {
                endpoint: ep.name.clone(),
                netns: ns_name.clone(),
                source,
            })?;
            configure_task(
                &ns_name,
                ep.mac.to_string(),
                ep.ip,
                net.subnet.prefix_len(),
                net.mtu,
                net.gateway,
            )?;
            tracing::info!(endpoint = %ep.name, netns = %ns_name, ip = %ep.ip, mac = %ep.mac, "task interface ready");
            tasks.push(Task {
                endpoint: ep.name.clone(),
                netns: ns,
            });
            queues.push(qs);
        }

        let mut sockets = underlay_sockets(topo, workers)?;

        let swap = Arc::new(ArcSwap::new(tables));
        let stop = Arc::new(AtomicBool::new(false));
        let mut node = Node {
            stop: Arc::clone(&stop),
            wakers: Vec::new(),
            threads: Vec::new(),
            published: Vec::new(),
            tables: Arc::clone(&swap),
            seq_store: Mutex::new(seq_store),
            seq_store_failing: AtomicBool::new(false),
            tasks,
        };
        // Hand worker w the w-th queue of every TAP.
        let mut per_worker: Vec<Vec<TapQueue>> = (0..workers).map(|_| Vec::new()).collect();
        for qs in queues {
            for (w, q) in qs.into_iter().enumerate() {
                per_worker[w].push(q);
            }
        }
        for (id, taps) in per_worker.into_iter().enumerate() {
            let sockets = std::mem::take(&mut sockets[id]);
            let (poll, waker) = worker::poll_with_waker().map_err(RunError::Worker)?;
            let published = Arc::new(Mutex::new(Counters::new(taps.len())));
            let w = Worker {
                id,
                tables: Arc::clone(&swap),
                taps,
                sockets,
                poll,
                stop: Arc::clone(&stop),
                published: Arc::clone(&published),
                max_packet,
            };
            let handle = std::thread::Builder::new()
                .name(format!("swarmnet-w{id}"))
                .spawn(move || w.run())
                .map_err(RunError::Worker)?;
            node.wakers.push(waker);
            node.threads.push(handle);
            node.published.push(published);
        }
        Ok(node)
    }

    /// Replaces the forwarding tables with those of `topo` without stopping traffic: the
    /// workers pick the new snapshot up on their next wake-up. Encryption keys may change (SAs
    /// of unchanged keys keep their sequence numbers and replay windows); the node's address,
    /// port and local endpoints may not.
    pub fn reload(&self, topo: &Topology) -> Result<(), ReloadError> {
        let old = self.tables.load_full();
        let new = Tables::from_topology_after(topo, &old);
        if (new.data_path_addr, new.data_path_port) != (old.data_path_addr, old.data_path_port) {
            return Err(ReloadError::Unsupported("the data path address or port"));
        }
        if new.ports != old.ports {
            return Err(ReloadError::Unsupported("the local endpoints"));
        }
        if new.esp.as_ref().map(|e| (e.transport, e.udp_port))
            != old.esp.as_ref().map(|e| (e.transport, e.udp_port))
        {
            return Err(ReloadError::Unsupported("the ESP transport"));
        }
        let mut store = self.seq_store.lock().unwrap_or_else(|e| e.into_inner());
        // (Whether there is ESP at all cannot change: the transport check above refuses it.)
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
    pub fn counters(&self) -> Counters {
        let mut sum = Counters::new(self.tables.load().ports.len());
        for slot in &self.published {
            if let Ok(c) = slot.lock() {
                sum.merge(&c);
            }
        }
        sum
    }

    /// Local port names, indexed by `PortId`.
    pub fn port_names(&self) -> Vec<String> {
        self.tables
            .load()
            .ports
            .iter()
            .map(|p| p.name.clone())
            .collect()
    }

    /// The kernel's drop counts of every task interface (read inside each task's namespace).
    pub fn interface_stats(&self) -> Vec<(String, InterfaceStats)> {
        self.tasks
            .iter()
            .filter_map(|t| {
                let dev = netns::run_in(t.netns.name(), || {
                    std::fs::read_to_string("/proc/thread-self/net/dev")
                })
                .ok()?
                .ok()?;
                Some((t.endpoint.clone(), parse_net_dev(&dev, TASK_IFACE)?))
            })
            .collect()
    }

    pub fn tasks(&self) -> &[Task] {
        &self.tasks
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
        // `tasks` drops after this, deleting the namespaces.
    }
}

/// 64 random bits from the kernel (the core itself draws no randomness).
fn random_u64() -> u64 {
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

/// VXLAN source ports of a node. Flows are spread over them by their hash (as the kernel's
/// VXLAN device picks a source port per flow), so a receiver's per-flow hashing, and its
/// SO_REUSEPORT group of workers, sees many flows from one peer rather than one.
const VXLAN_SOURCE_PORTS: usize = 4;

/// Send-only UDP sockets for VXLAN: `[worker][k]`, where every worker's k-th is the same
/// socket (a duplicated descriptor) on a free random port of the dynamic range the core's
/// flow hash also picks from (`SRC_PORT_BASE` to 65535, RFC 7348). A flow thus
/// leaves from the same port whichever worker sends it, and the peer keeps it on one of its
/// workers, in order. The port is bound without SO_REUSEPORT, so it is never shared with
/// another program's socket.
fn vxlan_source_sockets(
    addr: Ipv4Addr,
    workers: usize,
) -> Result<Vec<Vec<DatagramSocket>>, RunError> {
    let ports: Vec<DatagramSocket> = (0..VXLAN_SOURCE_PORTS)
        .map(|_| bind_dynamic_port(addr))
        .collect::<Result<_, _>>()?;
    let mut all = Vec::with_capacity(workers);
    for _ in 1..workers {
        let copies = ports
            .iter()
            .map(|sock| {
                sock.try_clone().map_err(|source| RunError::Bind {
                    addr: SocketAddrV4::new(addr, 0),
                    source,
                })
            })
            .collect::<Result<_, _>>()?;
        all.push(copies);
    }
    all.insert(0, ports);
    Ok(all)
}

/// A send-only socket on `addr` and a free random port of the dynamic range.
fn bind_dynamic_port(addr: Ipv4Addr) -> Result<DatagramSocket, RunError> {
    let span = u64::from(u16::MAX - SRC_PORT_BASE) + 1;
    let mut tries = 0;
    loop {
        let at = SocketAddrV4::new(addr, SRC_PORT_BASE + (random_u64() % span) as u16);
        match DatagramSocket::bind_sender(at) {
            Ok(sock) => return Ok(sock),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 64 => tries += 1,
            Err(source) => return Err(RunError::Bind { addr: at, source }),
        }
    }
}

/// Opens each worker's underlay sockets: VXLAN on the data-path port, and for encrypted
/// networks ESP in UDP (every worker) or ESP over IP (a raw sender per worker, one raw receiver:
/// the kernel copies each packet to every raw socket).
fn underlay_sockets(topo: &Topology, workers: usize) -> Result<Vec<Vec<UnderlaySocket>>, RunError> {
    let node = &topo.node;
    let bind = |port: u16| {
        let addr = SocketAddrV4::new(node.data_path_addr, port);
        DatagramSocket::bind_reuseport(addr).map_err(|source| RunError::Bind { addr, source })
    };
    let mut all = Vec::with_capacity(workers);
    let senders = vxlan_source_sockets(node.data_path_addr, workers)?;
    for (w, vxlan_senders) in senders.into_iter().enumerate() {
        let mut socks = vec![UnderlaySocket {
            channel: Channel::Vxlan,
            sock: bind(node.data_path_port)?,
        }];
        socks.extend(vxlan_senders.into_iter().map(|sock| UnderlaySocket {
            channel: Channel::VxlanSend,
            sock,
        }));
        match topo.encryption.as_ref().map(|e| (e.transport, e.udp_port)) {
            None => {}
            Some((EspTransport::Udp, port)) => {
                socks.push(UnderlaySocket {
                    channel: Channel::EspUdp,
                    sock: bind(port)?,
                });
            }
            Some((EspTransport::Ip, _)) => {
                socks.push(UnderlaySocket {
                    channel: Channel::RawSend,
                    sock: DatagramSocket::raw_sender().map_err(RunError::NeedNetRaw)?,
                });
                if w == 0 {
                    socks.push(UnderlaySocket {
                        channel: Channel::EspIp,
                        sock: DatagramSocket::raw_esp_receiver(node.data_path_addr)
                            .map_err(RunError::NeedNetRaw)?,
                    });
                }
            }
        }
        all.push(socks);
    }
    Ok(all)
}

/// Gives the task's eth0 its MAC, address, MTU and default route, as Docker configures a
/// container's interface on an overlay network.
fn configure_task(
    ns: &str,
    mac: String,
    ip: std::net::Ipv4Addr,
    prefix: u8,
    mtu: u16,
    gateway: std::net::Ipv4Addr,
) -> Result<(), NetnsError> {
    // No IPv6 on the task interface: the overlay carries IPv4 (as Docker's does by default),
    // and router/neighbour solicitations would only be counted as drops.
    let _ = netns::run_in(ns, || {
        std::fs::write(
            format!("/proc/sys/net/ipv6/conf/{TASK_IFACE}/disable_ipv6"),
            "1",
        )
    });
    let mtu = mtu.to_string();
    let cidr = format!("{ip}/{prefix}");
    let gw = gateway.to_string();
    netns::ip(&[
        "-n", ns, "link", "set", TASK_IFACE, "address", &mac, "mtu", &mtu,
    ])?;
    netns::ip(&["-n", ns, "addr", "add", &cidr, "dev", TASK_IFACE])?;
    netns::ip(&["-n", ns, "link", "set", "lo", "up"])?;
    netns::ip(&["-n", ns, "link", "set", TASK_IFACE, "up"])?;
    netns::ip(&[
        "-n", ns, "route", "add", "default", "via", &gw, "dev", TASK_IFACE,
    ])?;
    Ok(())
}

/// Where `swarmnet run` keeps a node's outbound ESP sequence numbers unless told otherwise:
/// persistent storage, since peers remember the numbers across this host's reboots too.
pub fn default_esp_sequence_file(node: &str) -> PathBuf {
    PathBuf::from("/var/lib/swarmnet/nodes")
        .join(node)
        .join("esp-sequence.json")
}

/// Where `swarmnet run` writes its counters by default.
pub fn default_counters_path(node: &str) -> PathBuf {
    PathBuf::from("/run/swarmnet")
        .join(node)
        .join("counters.json")
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
