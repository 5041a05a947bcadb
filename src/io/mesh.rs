//! The ingress routing mesh on a node: the published ports' host sockets, spliced to
//! connections of the node's ingress sandbox ([`crate::virt::sandbox`]) towards the services.
//!
//! Every node of the swarm listens on every port published in ingress mode (TCP listeners and
//! UDP sockets on the daemon's `--publish-addr`, all addresses by default). An accepted client
//! connection becomes one TCP connection from the sandbox (the node's address on the ingress
//! network) to a running task of the service, on the target port, over the ingress overlay; the
//! task answers the sandbox, as in Docker, where the sandbox SNATs to its ingress address. With
//! `proxy-protocol=v2` the sandbox first sends a PROXY v2 header naming the client. A UDP client
//! (address, port) gets one flow from a sandbox port of its own, forgotten after `UDP_IDLE`.
//!
//! Backpressure: bytes move only while the other side has room (a full smoltcp send buffer
//! leaves the client's bytes in the kernel, so its window closes; a host socket that blocks
//! leaves the task's bytes in smoltcp, so the task's window closes). Memory is bounded: at most
//! `MAX_CONNS` connections with fixed buffers and `MAX_FLOWS` UDP flows.
//!
//! The mesh runs inside the worker that runs virtual tasks (it is that worker's port for the
//! sandbox); host sockets are registered with that worker's poller under the port's token.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use crate::dataplane::Nanos;
use crate::virt::proxy;
use crate::virt::sandbox::{Sandbox, SandboxSpec};
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;

/// Connections carried at once; more are accepted and closed at once (counted).
pub const MAX_CONNS: usize = 256;
/// UDP flows at once; datagrams of further clients are dropped (counted).
pub const MAX_FLOWS: usize = 1024;
/// A UDP flow without a datagram either way for this long is forgotten (the kernel's
/// conntrack default for unreplied UDP is 30 s).
pub const UDP_IDLE: Nanos = 30_000_000_000;
/// Handshake and unacknowledged-data timeout of a mesh connection to a task.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Rounds of host I/O and stack polling per run before other ports get a turn.
const ROUNDS: usize = 8;
/// Datagrams read from one UDP socket per round.
const UDP_BUDGET: usize = 64;

/// A port published in ingress mode, as the node carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedPort {
    /// The service's name (logs).
    pub service: String,
    pub udp: bool,
    pub port: u16,
    pub target_port: u16,
    /// The service's VIP on the ingress network.
    pub vip: Option<Ipv4Addr>,
    /// The ingress addresses of the service's running tasks.
    pub backends: Vec<Ipv4Addr>,
    /// Send a PROXY protocol v2 header first (TCP).
    pub proxy_v2: bool,
}

/// What the node publishes: set by the node, read by the mesh at its next run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeshConfig {
    /// Where published ports bind (`--publish-addr`; unspecified: all addresses).
    pub publish_addr: Option<Ipv4Addr>,
    /// Connect to the service's VIP (the core's load balancer picks the task) rather than to a
    /// task picked here.
    pub via_vip: bool,
    pub ports: Vec<PublishedPort>,
}

/// Counters of the mesh, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeshStats {
    pub accepted: u64,
    /// Connections closed at once: no running task, too many connections, no sandbox port.
    pub refused: u64,
    pub udp_flows: u64,
    /// Datagrams dropped: no task, too many flows, a full flow buffer.
    pub udp_dropped: u64,
    /// Ports that could not be bound.
    pub bind_failures: u64,
}

type Key = (bool, u16);

enum HostSocket {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

struct Listener {
    sock: HostSocket,
    port: PublishedPort,
}

struct Conn {
    host: TcpStream,
    sock: SocketHandle,
    local_port: u16,
    /// PROXY header bytes not yet sent.
    header: Vec<u8>,
    /// The client sent FIN (passed on as FIN to the task).
    host_eof: bool,
    /// The task sent FIN (passed on to the client).
    host_shut: bool,
}

struct Flow {
    sock: SocketHandle,
    local_port: u16,
    target: (Ipv4Addr, u16),
    last: Nanos,
}

/// The routing mesh of one node.
pub struct Mesh {
    name: String,
    sandbox: Sandbox,
    config: Arc<ArcSwap<MeshConfig>>,
    applied: Arc<MeshConfig>,
    registry: Option<Registry>,
    token: Token,
    listeners: BTreeMap<Key, Listener>,
    conns: Vec<Conn>,
    flows: HashMap<(u16, SocketAddr), Flow>,
    host_ready: bool,
    buf: Vec<u8>,
    pub stats: MeshStats,
    /// Shared copy of `stats` for the node.
    published: Arc<std::sync::Mutex<MeshStats>>,
}

impl Mesh {
    pub fn new(
        name: String,
        spec: &SandboxSpec,
        config: Arc<ArcSwap<MeshConfig>>,
        published: Arc<std::sync::Mutex<MeshStats>>,
        now: Nanos,
    ) -> Mesh {
        Mesh {
            name,
            sandbox: Sandbox::new(spec, now),
            config,
            applied: Arc::new(MeshConfig::default()),
            registry: None,
            token: Token(0),
            listeners: BTreeMap::new(),
            conns: Vec::new(),
            flows: HashMap::new(),
            host_ready: true,
            buf: vec![0; 64 * 1024],
            stats: MeshStats::default(),
            published,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Takes the poller's registry: host sockets are registered under `token`.
    pub fn attach(&mut self, registry: &Registry, token: Token) {
        match registry.try_clone() {
            Ok(r) => self.registry = Some(r),
            Err(e) => {
                tracing::warn!(error = %e, "routing mesh: no poller registry; published ports stay closed")
            }
        }
        self.token = token;
        self.host_ready = true;
    }

    pub fn host_ready(&mut self) {
        self.host_ready = true;
    }

    pub fn input(&mut self, frame: &[u8]) -> bool {
        self.sandbox.input(frame)
    }

    pub fn has_input(&self) -> bool {
        self.sandbox.has_input()
            || self.host_ready
            || !Arc::ptr_eq(&self.config.load(), &self.applied)
    }

    pub fn poll_timeout(&mut self, now: Nanos) -> Option<Nanos> {
        let expiry = self.flows.values().map(|f| f.last + UDP_IDLE).min();
        match (self.sandbox.poll_at(now), expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn register(&self, fd: &impl AsRawFd, interest: Interest) -> io::Result<()> {
        match &self.registry {
            Some(r) => r.register(&mut SourceFd(&fd.as_raw_fd()), self.token, interest),
            None => Err(io::Error::other("no poller")),
        }
    }

    /// Binds the ports new in the configuration, closes those gone, updates the others'
    /// targets. Connections already carried are left alone.
    fn reconfigure(&mut self) {
        let cfg = self.config.load_full();
        if Arc::ptr_eq(&cfg, &self.applied) {
            return;
        }
        let mut wanted: BTreeMap<Key, &PublishedPort> = BTreeMap::new();
        for p in &cfg.ports {
            wanted.entry((p.udp, p.port)).or_insert(p);
        }
        let addr_changed = cfg.publish_addr != self.applied.publish_addr;
        self.listeners.retain(|k, l| {
            let keep = !addr_changed && wanted.contains_key(k);
            if !keep {
                tracing::info!(port = k.1, udp = k.0, service = %l.port.service, "published port closed");
            }
            keep
        });
        let ip = cfg.publish_addr.unwrap_or(Ipv4Addr::UNSPECIFIED);
        for (k, p) in wanted {
            if let Some(l) = self.listeners.get_mut(&k) {
                l.port = p.clone();
                continue;
            }
            let at = SocketAddrV4::new(ip, p.port);
            let sock = if p.udp {
                UdpSocket::bind(at).map(HostSocket::Udp)
            } else {
                TcpListener::bind(at).map(HostSocket::Tcp)
            };
            let sock = sock.and_then(|s| {
                match &s {
                    HostSocket::Tcp(l) => {
                        l.set_nonblocking(true)?;
                        self.register(l, Interest::READABLE)?;
                    }
                    HostSocket::Udp(u) => {
                        u.set_nonblocking(true)?;
                        self.register(u, Interest::READABLE)?;
                    }
                }
                Ok(s)
            });
            match sock {
                Ok(sock) => {
                    tracing::info!(%at, udp = p.udp, service = %p.service, target = p.target_port, "published port open");
                    self.listeners.insert(
                        k,
                        Listener {
                            sock,
                            port: p.clone(),
                        },
                    );
                }
                Err(e) => {
                    self.stats.bind_failures += 1;
                    tracing::warn!(%at, udp = p.udp, service = %p.service, error = %e, "cannot publish port");
                }
            }
        }
        self.applied = cfg;
        self.host_ready = true;
    }

    /// The address a new connection or flow of `client` goes to on `p`'s service.
    fn target(&self, p: &PublishedPort, client: SocketAddr) -> Option<(Ipv4Addr, u16)> {
        if self.applied.via_vip {
            if let Some(vip) = p.vip {
                return Some((vip, p.target_port));
            }
        }
        if p.backends.is_empty() {
            return None;
        }
        // FNV-1a over the client's address and port: a client's flow sticks to one task.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let bytes = match client {
            SocketAddr::V4(a) => [a.ip().octets().as_slice(), &a.port().to_be_bytes()].concat(),
            SocketAddr::V6(a) => [a.ip().octets().as_slice(), &a.port().to_be_bytes()].concat(),
        };
        for b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        let i = (h % p.backends.len() as u64) as usize;
        Some((p.backends[i], p.target_port))
    }

    fn accept(&mut self) -> bool {
        let mut acted = false;
        let mut accepted = Vec::new();
        for l in self.listeners.values() {
            let HostSocket::Tcp(listener) = &l.sock else {
                continue;
            };
            for _ in 0..64 {
                match listener.accept() {
                    Ok((stream, client)) => accepted.push((stream, client, l.port.clone())),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "accept failed");
                        break;
                    }
                }
            }
        }
        for (stream, client, p) in accepted {
            acted = true;
            self.stats.accepted += 1;
            let Some(to) = self.target(&p, client) else {
                self.stats.refused += 1;
                tracing::debug!(service = %p.service, port = p.port, "no running task: connection closed");
                continue;
            };
            if self.conns.len() >= MAX_CONNS {
                self.stats.refused += 1;
                continue;
            }
            if stream.set_nonblocking(true).is_err()
                || self
                    .register(&stream, Interest::READABLE | Interest::WRITABLE)
                    .is_err()
            {
                self.stats.refused += 1;
                continue;
            }
            let _ = stream.set_nodelay(true);
            let (sock, local_port) = match self.sandbox.connect(to, CONNECT_TIMEOUT) {
                Ok(s) => s,
                Err(e) => {
                    self.stats.refused += 1;
                    tracing::debug!(error = %e, "routing mesh connection refused");
                    continue;
                }
            };
            let header = match (p.proxy_v2, client, stream.local_addr()) {
                (true, SocketAddr::V4(c), Ok(SocketAddr::V4(d))) => proxy::encode_v4(c, d).to_vec(),
                _ => Vec::new(),
            };
            self.conns.push(Conn {
                host: stream,
                sock,
                local_port,
                header,
                host_eof: false,
                host_shut: false,
            });
        }
        acted
    }

    /// Moves bytes both ways on every connection; ends those done. True when any moved.
    fn pump(&mut self) -> bool {
        let mut acted = false;
        let mut i = 0;
        while i < self.conns.len() {
            let (moved, done) = pump_one(&mut self.sandbox, &mut self.conns[i]);
            acted |= moved;
            if done {
                let c = self.conns.swap_remove(i);
                let s = self.sandbox.tcp(c.sock);
                if s.is_open() && s.state() != tcp::State::TimeWait {
                    s.abort();
                }
                self.sandbox.remove(c.sock, c.local_port);
            } else {
                i += 1;
            }
        }
        acted
    }

    fn udp_in(&mut self, now: Nanos) -> bool {
        let mut acted = false;
        let keys: Vec<Key> = self.listeners.keys().filter(|k| k.0).copied().collect();
        for k in keys {
            for _ in 0..UDP_BUDGET {
                let Some(l) = self.listeners.get(&k) else {
                    break;
                };
                let HostSocket::Udp(u) = &l.sock else { break };
                let (n, client) = match u.recv_from(&mut self.buf) {
                    Ok(x) => x,
                    Err(_) => break,
                };
                acted = true;
                let p = l.port.clone();
                let fk = (k.1, client);
                if !self.flows.contains_key(&fk) {
                    let target = self.target(&p, client);
                    let opened = match target {
                        Some(t) if self.flows.len() < MAX_FLOWS => {
                            self.sandbox.open_udp().ok().map(|(sock, local_port)| Flow {
                                sock,
                                local_port,
                                target: t,
                                last: now,
                            })
                        }
                        _ => None,
                    };
                    match opened {
                        Some(f) => {
                            self.stats.udp_flows += 1;
                            self.flows.insert(fk, f);
                        }
                        None => {
                            self.stats.udp_dropped += 1;
                            continue;
                        }
                    }
                }
                let Some(f) = self.flows.get_mut(&fk) else {
                    continue;
                };
                f.last = now;
                let to = smoltcp::wire::IpEndpoint::new(f.target.0.into(), f.target.1);
                if self
                    .sandbox
                    .udp(f.sock)
                    .send_slice(&self.buf[..n], to)
                    .is_err()
                {
                    self.stats.udp_dropped += 1;
                }
            }
        }
        acted
    }

    fn udp_out(&mut self, now: Nanos) -> bool {
        let mut acted = false;
        for ((port, client), f) in self.flows.iter_mut() {
            let s = self.sandbox.udp(f.sock);
            while let Ok((n, _)) = s.recv_slice(&mut self.buf) {
                acted = true;
                f.last = now;
                if let Some(Listener {
                    sock: HostSocket::Udp(u),
                    ..
                }) = self.listeners.get(&(true, *port))
                {
                    if u.send_to(&self.buf[..n], client).is_err() {
                        self.stats.udp_dropped += 1;
                    }
                }
            }
        }
        acted
    }

    fn expire(&mut self, now: Nanos) {
        let sandbox = &mut self.sandbox;
        self.flows.retain(|_, f| {
            let keep = now < f.last + UDP_IDLE;
            if !keep {
                sandbox.remove(f.sock, f.local_port);
            }
            keep
        });
    }

    /// Runs host I/O and the sandbox's stack at `now`; frames for the ingress network go to
    /// `emit`.
    pub fn handle_timeout(&mut self, now: Nanos, emit: &mut dyn FnMut(&[u8])) {
        self.reconfigure();
        let mut acted = false;
        for _ in 0..ROUNDS {
            acted = self.accept();
            acted |= self.udp_in(now);
            self.sandbox.poll(now, emit);
            acted |= self.pump();
            acted |= self.udp_out(now);
            self.sandbox.poll(now, emit);
            if !acted && !self.sandbox.has_input() {
                break;
            }
        }
        self.expire(now);
        // Still busy after the last round: run again at once (host readiness is edge-triggered).
        self.host_ready = acted;
        if let Ok(mut s) = self.published.lock() {
            s.clone_from(&self.stats);
        }
    }
}

/// Moves what can move between one client connection and its sandbox connection. Returns
/// (anything moved, the connection is over).
fn pump_one(sandbox: &mut Sandbox, c: &mut Conn) -> (bool, bool) {
    let mut moved = false;
    let s = sandbox.tcp(c.sock);
    // Task -> client, as far as the client's socket takes it.
    while s.can_recv() {
        let host = &mut c.host;
        let r = s.recv(|buf| match host.write(buf) {
            Ok(n) => (n, Ok(n)),
            Err(e) => (0, Err(e)),
        });
        match r {
            Ok(Ok(0)) => break,
            Ok(Ok(_)) => moved = true,
            Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
            Ok(Err(_)) => return (moved, true),
            Err(_) => break,
        }
    }
    if !s.may_recv() && !s.can_recv() && !c.host_shut && s.state() != tcp::State::SynSent {
        // The task's FIN, passed on once its bytes are.
        let _ = c.host.shutdown(Shutdown::Write);
        c.host_shut = true;
        moved = true;
    }
    // Client -> task, as far as the sandbox's send buffer takes it.
    if s.may_send() {
        if !c.header.is_empty() {
            if let Ok(n) = s.send_slice(&c.header) {
                c.header.drain(..n);
                moved |= n > 0;
            }
        }
        while c.header.is_empty() && !c.host_eof && s.can_send() {
            let host = &mut c.host;
            let r = s.send(|buf| match host.read(buf) {
                Ok(n) => (n, Ok(n)),
                Err(e) => (0, Err(e)),
            });
            match r {
                Ok(Ok(0)) => {
                    c.host_eof = true;
                    s.close();
                    moved = true;
                }
                Ok(Ok(_)) => moved = true,
                Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                Ok(Err(_)) => return (moved, true),
                Err(_) => break,
            }
        }
    }
    // Reset by the task, timed out, or both sides closed, once the client has every byte.
    let done = matches!(s.state(), tcp::State::Closed | tcp::State::TimeWait) && !s.can_recv();
    (moved, done)
}
