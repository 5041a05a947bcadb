//! TCP of the egress engine: a task's connection ends in a userspace stack (smoltcp with
//! AnyIP) and its bytes continue on a host `TcpStream` to the destination.
//!
//! A task's SYN is held while the host connects: only when the destination accepted does a
//! socket listen on the destination's address and port and take the SYN (so the task's
//! handshake completes after the server's, as through NAT); a refused, unreachable or timed-out
//! destination gets the SYN answered by the stack with no listener, a RST, so the task's
//! `connect` fails at once with "connection refused".
//!
//! Backpressure: bytes move only while the other side has room. A full stack send buffer leaves
//! the server's bytes in the host kernel, so the server's window closes; a host socket that
//! blocks leaves the task's bytes in the stack's receive buffer, so the task's window closes.
//! Memory is bounded by `Limits::tcp_flows` flows of two `Limits::tcp_buffer` buffers.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, SocketAddrV4, TcpStream};

use mio::Interest;
use smoltcp::iface::{Config, Interface, PollIngressSingleResult, SocketHandle, SocketSet};
use smoltcp::phy::{self, Checksum, Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpListenEndpoint};
use socket2::{Domain, Protocol, Socket, Type};

use super::{DropReason, EgressConfig, EgressStats, FlowStats, Host, Proto};
use crate::dataplane::Nanos;

/// Packets queued towards the stack before more are dropped.
const RX_QUEUE: usize = 512;
/// The stack's MTU with GSO: its segments are then bounded by the task's window only.
const GSO_MTU: usize = 65535;
/// The MSS the stack is told a task offered, with GSO (the largest a 64 KiB packet holds).
const GSO_MSS: u16 = (GSO_MTU - 40) as u16;

/// Closed sockets kept for the next connections: each holds its two buffers (`tcp_buffer`
/// bytes each), which a new socket would allocate and zero again (2 MiB of memset per
/// connection with 1 MiB buffers).
const SPARE_SOCKETS: usize = 8;

/// Stack polls per run: segments sent to the tasks per socket before other work gets a turn.
const BURST: usize = 64;
/// Unacknowledged data (either way) for this long resets the task's connection.
const UNACKED_TIMEOUT_MS: u64 = 60_000;

fn instant(now: Nanos) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros((now / 1_000) as i64)
}

/// The stack's link: IPv4 packets in from the tasks, packets out to them (no link header).
struct IpLink {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
    free: Vec<Vec<u8>>,
    mtu: usize,
    /// With GSO the stack neither verifies nor writes TCP checksums: what comes in was
    /// summed by the task's kernel or finished by the data path (a local link, as the kernel
    /// trusts a veth), and `Tcp::drain` writes what goes out, only the pseudo-header's sum
    /// for a super-packet. One pass over every byte saved each way.
    tcp_checksum: Checksum,
}

impl IpLink {
    fn push_rx(&mut self, packet: &[u8]) -> bool {
        if self.rx.len() >= RX_QUEUE || packet.len() > self.mtu {
            return false;
        }
        let mut b = self.free.pop().unwrap_or_default();
        b.clear();
        b.extend_from_slice(packet);
        self.rx.push_back(b);
        true
    }
}

struct RxToken(Vec<u8>);
struct TxToken<'a> {
    tx: &'a mut Vec<Vec<u8>>,
    free: &'a mut Vec<Vec<u8>>,
}

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        // A reused buffer keeps its old bytes (the stack writes every byte of a packet): no
        // 64 KiB memset per super-packet.
        let mut b = self.free.pop().unwrap_or_default();
        b.resize(len, 0);
        let r = f(&mut b);
        self.tx.push(b);
        r
    }
}

impl Device for IpLink {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: smoltcp::time::Instant) -> Option<(RxToken, TxToken<'_>)> {
        let p = self.rx.pop_front()?;
        Some((
            RxToken(p),
            TxToken {
                tx: &mut self.tx,
                free: &mut self.free,
            },
        ))
    }

    fn transmit(&mut self, _now: smoltcp::time::Instant) -> Option<TxToken<'_>> {
        Some(TxToken {
            tx: &mut self.tx,
            free: &mut self.free,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        caps.max_burst_size = None;
        caps.checksum.tcp = self.tcp_checksum;
        caps
    }
}

/// A flow's key: the task's end, then the destination as the task addressed it.
type Key = (SocketAddrV4, SocketAddrV4);

enum State {
    /// The host connect is under way; the task's SYN waits.
    Connecting {
        syn: Vec<u8>,
        deadline: Nanos,
        /// The task's link takes super-packets (with GSO on, its segments are sent as such).
        gso_link: bool,
    },
    /// Spliced: the stack's socket and the host stream.
    Open {
        sock: SocketHandle,
        /// The task's FIN was passed on (host write side shut).
        host_shut: bool,
        /// The server's FIN was passed on (the stack socket closed).
        host_eof: bool,
        /// The task's side reached the established state once.
        established: bool,
        /// With GSO, the MSS the task offered: the segment size of super-packets to it.
        gso_mss: Option<u16>,
    },
}

struct Flow {
    host: TcpStream,
    state: State,
    last: Nanos,
    stats: FlowStats,
}

/// Every TCP flow of the engine and the stack that ends the tasks' side of them.
pub(super) struct Tcp {
    iface: Interface,
    link: IpLink,
    sockets: SocketSet<'static>,
    flows: HashMap<Key, Flow>,
    /// Segments to the tasks go out as super-packets (see `Egress::with_gso`).
    gso: bool,
    /// Closed sockets to listen again (smoltcp resets a socket's state, not its buffers'
    /// bytes, when it listens anew).
    spare: Vec<tcp::Socket<'static>>,
}

/// How a flow ended, for the counters.
enum End {
    Done,
    Idle,
    HostError,
}

impl Tcp {
    pub(super) fn new(cfg: &EgressConfig, gso: bool, now: Nanos) -> Tcp {
        let mut link = IpLink {
            rx: VecDeque::new(),
            tx: Vec::new(),
            free: Vec::new(),
            mtu: if gso { GSO_MTU } else { usize::from(cfg.mtu) },
            tcp_checksum: if gso { Checksum::None } else { Checksum::Both },
        };
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = cfg.seed;
        let mut iface = Interface::new(config, &mut link, instant(now));
        iface.update_ip_addrs(|a| {
            // One address: the Vec holds at least one.
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(cfg.gateway), cfg.prefix));
        });
        // AnyIP accepts packets for a destination routed through one of the stack's own
        // addresses: the default route through the gateway makes every destination local.
        let _ = iface.routes_mut().add_default_ipv4_route(cfg.gateway);
        iface.set_any_ip(true);
        Tcp {
            iface,
            link,
            sockets: SocketSet::new(Vec::new()),
            flows: HashMap::new(),
            gso,
            spare: Vec::new(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.flows.len()
    }

    /// Closed sockets kept for later connections.
    #[cfg(test)]
    pub(super) fn spare(&self) -> usize {
        self.spare.len()
    }

    pub(super) fn has_output(&self) -> bool {
        !self.link.tx.is_empty()
    }

    pub(super) fn flow_stats(&self) -> impl Iterator<Item = &FlowStats> {
        self.flows.values().map(|f| &f.stats)
    }

    /// Hands `packet` to the stack at once (its answer waits for `drain`).
    fn ingest(&mut self, now: Nanos, packet: &[u8], stats: &mut EgressStats) {
        if !self.link.push_rx(packet) {
            stats.drop(DropReason::QueueFull);
            return;
        }
        let at = instant(now);
        while self
            .iface
            .poll_ingress_single(at, &mut self.link, &mut self.sockets)
            != PollIngressSingleResult::None
        {}
    }

    /// A task's TCP segment `packet` from `task` to `dest` (as addressed; `host_dest` is where
    /// the host connects).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn input(
        &mut self,
        host: &Host,
        cfg: &EgressConfig,
        now: Nanos,
        packet: &[u8],
        (task, dest, host_dest): (SocketAddrV4, SocketAddrV4, SocketAddrV4),
        (syn, ack, rst): (bool, bool, bool),
        gso_link: bool,
        stats: &mut EgressStats,
    ) {
        let key = (task, dest);
        if let Some(f) = self.flows.get_mut(&key) {
            f.last = now;
            match &f.state {
                State::Open { .. } => self.ingest(now, packet, stats),
                // A retransmitted SYN: the first is still held.
                State::Connecting { .. } if syn && !ack && !rst => {}
                State::Connecting { .. } if rst => {
                    self.flows.remove(&key);
                }
                State::Connecting { .. } => stats.drop(DropReason::TcpNotConnected),
            }
            return;
        }
        if !(syn && !ack && !rst) || dest.port() == 0 {
            // Not a new connection: the stack answers with a RST (nothing listens).
            self.ingest(now, packet, stats);
            return;
        }
        if self.flows.len() >= cfg.limits.tcp_flows {
            stats.drop(DropReason::TcpFlowLimit);
            self.ingest(now, packet, stats);
            return;
        }
        match connect(host, host_dest) {
            Ok(stream) => {
                let deadline = now.saturating_add(cfg.limits.connect_timeout);
                self.flows.insert(
                    key,
                    Flow {
                        host: stream,
                        state: State::Connecting {
                            syn: packet.to_vec(),
                            deadline,
                            gso_link,
                        },
                        last: now,
                        stats: FlowStats::new(Proto::Tcp, task, dest),
                    },
                );
            }
            Err(e) => {
                tracing::debug!(%task, %dest, error = %e, "egress: host connect failed");
                stats.tcp_refused += 1;
                self.ingest(now, packet, stats);
            }
        }
    }

    /// Settles the host connects under way: spliced, or refused with a RST to the task.
    fn settle_connects(&mut self, cfg: &EgressConfig, now: Nanos, stats: &mut EgressStats) -> bool {
        let mut acted = false;
        let keys: Vec<Key> = self
            .flows
            .iter()
            .filter(|(_, f)| matches!(f.state, State::Connecting { .. }))
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            let Some(f) = self.flows.get_mut(&key) else {
                continue;
            };
            let State::Connecting {
                syn,
                deadline,
                gso_link,
            } = &mut f.state
            else {
                continue;
            };
            let outcome = match f.host.take_error() {
                Ok(Some(e)) | Err(e) => Err(e),
                Ok(None) => match f.host.peer_addr() {
                    Ok(_) => Ok(true),
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                        if now >= *deadline {
                            Err(io::Error::from(io::ErrorKind::TimedOut))
                        } else {
                            Ok(false)
                        }
                    }
                    Err(e) => Err(e),
                },
            };
            match outcome {
                Ok(false) => {}
                Ok(true) => {
                    acted = true;
                    let mut syn = std::mem::take(syn);
                    // With GSO the stack is told the task takes 64 KiB segments; the link
                    // cuts them at the task's real MSS.
                    let gso_mss = if self.gso && *gso_link {
                        super::packet::rewrite_mss(&mut syn, GSO_MSS)
                    } else {
                        None
                    };
                    let mut s = self.spare.pop().unwrap_or_else(|| {
                        tcp::Socket::new(
                            tcp::SocketBuffer::new(vec![0; cfg.limits.tcp_buffer]),
                            tcp::SocketBuffer::new(vec![0; cfg.limits.tcp_buffer]),
                        )
                    });
                    s.set_nagle_enabled(false);
                    // An ACK per segment: a delayed one slows the task's window growth.
                    s.set_ack_delay(None);
                    s.set_timeout(Some(smoltcp::time::Duration::from_millis(
                        UNACKED_TIMEOUT_MS,
                    )));
                    let ep = IpListenEndpoint {
                        addr: Some(IpAddress::Ipv4(*key.1.ip())),
                        port: key.1.port(),
                    };
                    if s.listen(ep).is_err() {
                        stats.drop(DropReason::Malformed);
                        self.flows.remove(&key);
                        continue;
                    }
                    let h = self.sockets.add(s);
                    f.state = State::Open {
                        sock: h,
                        host_shut: false,
                        host_eof: false,
                        established: false,
                        gso_mss,
                    };
                    stats.tcp_opened += 1;
                    self.ingest(now, &syn, stats);
                    // The SYN must have been taken by this socket; a listener left waiting
                    // could take another task's SYN to the same destination.
                    if self.sockets.get::<tcp::Socket>(h).state() == tcp::State::Listen {
                        self.put_back(h);
                        self.flows.remove(&key);
                        stats.drop(DropReason::Malformed);
                    }
                }
                Err(e) => {
                    acted = true;
                    if e.kind() == io::ErrorKind::TimedOut {
                        stats.tcp_connect_timeouts += 1;
                    } else {
                        stats.tcp_refused += 1;
                    }
                    tracing::debug!(task = %key.0, dest = %key.1, error = %e, "egress: connection refused to the task");
                    let syn = std::mem::take(syn);
                    self.flows.remove(&key);
                    self.ingest(now, &syn, stats);
                }
            }
        }
        acted
    }

    /// Moves bytes both ways on every open flow and ends those done. True when any moved.
    fn pump(&mut self, cfg: &EgressConfig, now: Nanos, stats: &mut EgressStats) -> bool {
        let mut acted = false;
        let mut ended = Vec::new();
        for (key, f) in self.flows.iter_mut() {
            let State::Open {
                sock,
                host_shut,
                host_eof,
                established,
                ..
            } = &mut f.state
            else {
                continue;
            };
            let s = self.sockets.get_mut::<tcp::Socket>(*sock);
            let (moved, end) = pump_one(
                s,
                &mut f.host,
                host_shut,
                host_eof,
                established,
                &mut f.stats,
            );
            if moved {
                f.last = now;
                acted = true;
            }
            let end = end.or_else(|| {
                (now.saturating_sub(f.last) >= cfg.limits.tcp_idle).then_some(End::Idle)
            });
            if let Some(end) = end {
                ended.push((*key, end));
            }
        }
        for (key, end) in ended {
            let Some(f) = self.flows.remove(&key) else {
                continue;
            };
            let State::Open { sock, .. } = f.state else {
                continue;
            };
            let s = self.sockets.get_mut::<tcp::Socket>(sock);
            match end {
                End::Done => {}
                End::Idle => stats.tcp_idle_closed += 1,
                End::HostError => stats.tcp_reset_by_host += 1,
            }
            let clean = matches!(s.state(), tcp::State::TimeWait | tcp::State::Closed)
                && matches!(end, End::Done);
            if s.state() != tcp::State::Closed && s.state() != tcp::State::TimeWait {
                // Aborted (idle, or the server reset): the task gets a RST.
                s.abort();
                acted = true;
            }
            if !clean || !f.stats_clean() {
                // The server gets a RST too (SO_LINGER 0) rather than a FIN.
                let _ = socket2::SockRef::from(&f.host).set_linger(Some(std::time::Duration::ZERO));
            }
            // The RST the abort queued is sent by the next poll; the socket goes after it.
            self.iface
                .poll(instant(now), &mut self.link, &mut self.sockets);
            self.put_back(sock);
        }
        acted
    }

    /// Takes a socket out of the stack, closed (nothing more is sent for it), and keeps it
    /// for a later connection while there are fewer than `SPARE_SOCKETS`.
    fn put_back(&mut self, h: SocketHandle) {
        if let smoltcp::socket::Socket::Tcp(mut s) = self.sockets.remove(h) {
            s.abort();
            if self.spare.len() < SPARE_SOCKETS {
                self.spare.push(s);
            }
        }
    }

    /// Runs connects, splices and the stack at `now`; packets for the tasks go to `emit`.
    pub(super) fn run(
        &mut self,
        cfg: &EgressConfig,
        now: Nanos,
        stats: &mut EgressStats,
        emit: &mut dyn FnMut(&[u8], Option<u16>),
    ) -> bool {
        let mut acted = self.settle_connects(cfg, now, stats);
        // The stack sends one segment per socket and poll: poll until it sends nothing more
        // (bounded), refilling its buffers from the host between polls.
        for _ in 0..BURST {
            let moved = self.pump(cfg, now, stats);
            let before = self.link.tx.len();
            self.iface
                .poll(instant(now), &mut self.link, &mut self.sockets);
            let sent = self.link.tx.len() > before;
            acted |= moved || sent;
            if !moved && !sent {
                break;
            }
        }
        self.drain(emit);
        acted
    }

    fn drain(&mut self, emit: &mut dyn FnMut(&[u8], Option<u16>)) {
        let mut tx = std::mem::take(&mut self.link.tx);
        for mut b in tx.drain(..) {
            let gso = if self.gso {
                let gso = self.gso_size(&mut b);
                if gso.is_none() {
                    super::packet::fill_tcp_checksum(&mut b);
                }
                gso
            } else {
                None
            };
            emit(&b, gso);
            if self.link.free.len() < RX_QUEUE {
                self.link.free.push(b);
            }
        }
        self.link.tx = tx;
    }

    /// The segment size of a packet to a task larger than the task's MSS, its checksum made
    /// partial for the link's segmentation; None for a packet the task takes as it is.
    fn gso_size(&self, packet: &mut [u8]) -> Option<u16> {
        let (task, dest, payload) = super::packet::tcp_endpoints(packet)?;
        let f = self.flows.get(&(task, dest))?;
        let State::Open {
            gso_mss: Some(mss), ..
        } = f.state
        else {
            return None;
        };
        if payload <= usize::from(mss) {
            return None;
        }
        super::packet::make_tcp_checksum_partial(packet)?;
        Some(mss)
    }

    /// The next deadline: the stack's timers, a connect's timeout, an idle flow's end.
    pub(super) fn poll_at(&mut self, cfg: &EgressConfig, now: Nanos) -> Option<Nanos> {
        let stack = self
            .iface
            .poll_at(instant(now), &self.sockets)
            .map(|at| (at.total_micros().max(0) as u64).saturating_mul(1_000));
        let flows = self
            .flows
            .values()
            .map(|f| match f.state {
                State::Connecting { deadline, .. } => deadline,
                State::Open { .. } => f.last.saturating_add(cfg.limits.tcp_idle),
            })
            .min();
        match (stack, flows) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl Flow {
    /// Whether the flow ended with both FINs passed on.
    fn stats_clean(&self) -> bool {
        matches!(
            self.state,
            State::Open {
                host_shut: true,
                host_eof: true,
                ..
            }
        )
    }
}

/// A non-blocking connect of a host stream to `to`, registered for readiness.
fn connect(host: &Host, to: SocketAddrV4) -> io::Result<TcpStream> {
    let s = Socket::new(
        Domain::IPV4,
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    match s.connect(&SocketAddr::V4(to).into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let _ = s.set_tcp_nodelay(true);
    let stream: TcpStream = s.into();
    host.register(&stream, Interest::READABLE | Interest::WRITABLE)?;
    Ok(stream)
}

/// Moves what can move between a task's stack socket and its host stream. Returns (anything
/// moved, how the flow ended if it did).
fn pump_one(
    s: &mut tcp::Socket<'static>,
    host: &mut TcpStream,
    host_shut: &mut bool,
    host_eof: &mut bool,
    established: &mut bool,
    stats: &mut FlowStats,
) -> (bool, Option<End>) {
    let mut moved = false;
    match s.state() {
        tcp::State::Listen => return (moved, Some(End::Done)),
        tcp::State::SynReceived => return (moved, None),
        _ => *established = true,
    }
    // Task -> server, as far as the host socket takes it.
    while s.can_recv() {
        let r = s.recv(|buf| match host.write(buf) {
            Ok(n) => (n, Ok(n)),
            Err(e) => (0, Err(e)),
        });
        match r {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => {
                stats.bytes_out += n as u64;
                moved = true;
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
            Ok(Err(_)) => return (moved, Some(End::HostError)),
            Err(_) => break,
        }
    }
    // The task's FIN, passed on once its bytes are.
    let task_fin = matches!(
        s.state(),
        tcp::State::CloseWait | tcp::State::LastAck | tcp::State::Closing | tcp::State::TimeWait
    ) || (s.state() == tcp::State::Closed && *host_eof);
    if task_fin && !s.can_recv() && !*host_shut {
        let _ = host.shutdown(Shutdown::Write);
        *host_shut = true;
        moved = true;
    }
    // Server -> task, as far as the stack's send buffer takes it.
    while !*host_eof && s.may_send() && s.can_send() {
        let r = s.send(|buf| match host.read(buf) {
            Ok(n) => (n, Ok(n)),
            Err(e) => (0, Err(e)),
        });
        match r {
            Ok(Ok(0)) => {
                *host_eof = true;
                s.close();
                moved = true;
            }
            Ok(Ok(n)) => {
                stats.bytes_in += n as u64;
                moved = true;
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
            Ok(Err(_)) => return (moved, Some(End::HostError)),
            Err(_) => break,
        }
    }
    // Reset by the task or timed out, or both sides closed, once the server has every byte.
    let over = match s.state() {
        tcp::State::Closed => true,
        tcp::State::TimeWait => *host_shut,
        _ => false,
    };
    (moved, (over && !s.can_recv()).then_some(End::Done))
}
