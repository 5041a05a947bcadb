//! The egress engine: IPv4 packets that tasks send to destinations outside the swarm (through
//! docker_gwbridge's gateway) leave the node as the node's own sockets, and the answers come
//! back to the tasks as IPv4 packets, with no kernel bridge, veth or NAT (the approach of
//! slirp4netns and passt).
//!
//! - TCP ends in a userspace stack (smoltcp, AnyIP) and is spliced to a host `TcpStream`
//!   ([`tcp`]); UDP flows get a host UDP socket each ([`udp`]); ICMP echo goes through a ping or
//!   raw socket ([`icmp`]).
//! - The gateway's own address stands for the host: what a task sends there goes to
//!   `host_loopback` (127.0.0.1), so tasks reach the host's own services, and replies show the
//!   gateway as their source.
//! - Packets are plain IPv4, no link header: the data path strips the Ethernet header of frames
//!   addressed to the gateway's MAC and adds one to what comes out.
//! - Bounded: flows per protocol, buffers per flow, queued packets. What is not carried is
//!   dropped and counted by reason ([`DropReason`]); hostile input never panics.
//!
//! Driving (sans-IO toward the caller's loop, like [`crate::io::mesh::Mesh`]): the caller
//! registers nothing itself; `attach` gives the engine the poller's registry and a token under
//! which every host socket is registered. The caller calls `input` for each packet, and
//! `handle_timeout(now, emit)` when the token fires (after `host_ready`), after inputs, and when
//! `poll_timeout` comes.

mod icmp;
mod packet;
mod tcp;
mod udp;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use crate::dataplane::Nanos;

pub use icmp::IcmpMode;

/// Why the engine dropped a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Not IPv4 (IPv6 from the task's link-local chatter, or garbage).
    NotIpv4,
    /// Not a readable IPv4 packet, or a transport header that does not fit.
    Malformed,
    /// An IPv4 fragment (the engine carries whole datagrams only).
    Fragment,
    /// Neither TCP, UDP nor ICMP.
    Protocol,
    /// ICMP other than an echo request.
    IcmpNotEcho,
    /// The source is not a task's address on the bridge.
    NotFromTask,
    /// A destination the engine does not carry: another task on the bridge (no inter-task
    /// traffic, as `enable_icc=false`), loopback, multicast, broadcast, unspecified.
    Destination,
    /// The stack's input queue is full.
    QueueFull,
    /// A segment for a connection whose host connect is still under way.
    TcpNotConnected,
    TcpFlowLimit,
    UdpFlowLimit,
    IcmpFlowLimit,
    /// Neither a ping socket nor a raw ICMP socket can be opened ("no ICMP socket").
    NoIcmpSocket,
    /// The host refused a socket (descriptor limit, ...).
    HostSocket,
    /// The host socket refused the datagram.
    HostSend,
    /// An answer from an address the flow never sent to.
    UnknownPeer,
    /// An answer larger than the bridge's MTU.
    ReplyTooLarge,
}

impl DropReason {
    pub const ALL: [DropReason; 17] = [
        DropReason::NotIpv4,
        DropReason::Malformed,
        DropReason::Fragment,
        DropReason::Protocol,
        DropReason::IcmpNotEcho,
        DropReason::NotFromTask,
        DropReason::Destination,
        DropReason::QueueFull,
        DropReason::TcpNotConnected,
        DropReason::TcpFlowLimit,
        DropReason::UdpFlowLimit,
        DropReason::IcmpFlowLimit,
        DropReason::NoIcmpSocket,
        DropReason::HostSocket,
        DropReason::HostSend,
        DropReason::UnknownPeer,
        DropReason::ReplyTooLarge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::NotIpv4 => "not IPv4",
            DropReason::Malformed => "malformed packet",
            DropReason::Fragment => "IPv4 fragment",
            DropReason::Protocol => "protocol not carried",
            DropReason::IcmpNotEcho => "ICMP other than echo request",
            DropReason::NotFromTask => "source not a task on the bridge",
            DropReason::Destination => "destination not carried",
            DropReason::QueueFull => "stack queue full",
            DropReason::TcpNotConnected => "TCP segment before the host connected",
            DropReason::TcpFlowLimit => "too many TCP flows",
            DropReason::UdpFlowLimit => "too many UDP flows",
            DropReason::IcmpFlowLimit => "too many ICMP flows",
            DropReason::NoIcmpSocket => "no ICMP socket",
            DropReason::HostSocket => "no host socket",
            DropReason::HostSend => "host send failed",
            DropReason::UnknownPeer => "answer from an unknown peer",
            DropReason::ReplyTooLarge => "answer larger than the MTU",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Bounds and timers of the engine.
#[derive(Debug, Clone)]
pub struct Limits {
    /// TCP connections at once (more: the task's SYN gets a RST).
    pub tcp_flows: usize,
    /// Bytes of each direction's stack buffer of one TCP connection (its window to the task,
    /// and what may be in flight to it). 1 MiB: one flow then runs at the host's own rate
    /// (256 KiB held the way in to 0.4-0.5x of it); pages are touched only as a flow moves
    /// data, so a bulk flow holds 2 MiB and `tcp_flows` of them at most 2 GiB, where the
    /// kernel's sockets would take up to 4-6 MiB each.
    pub tcp_buffer: usize,
    pub udp_flows: usize,
    pub icmp_flows: usize,
    /// A host connect not done by then refuses the task's connection.
    pub connect_timeout: Nanos,
    /// A TCP connection with no byte either way for this long is reset both ways.
    pub tcp_idle: Nanos,
    /// A UDP flow quiet for this long is forgotten (the kernel's conntrack: 30 s unreplied).
    pub udp_idle: Nanos,
    pub icmp_idle: Nanos,
}

impl Default for Limits {
    fn default() -> Limits {
        const S: Nanos = 1_000_000_000;
        Limits {
            tcp_flows: 1024,
            tcp_buffer: 1024 * 1024,
            udp_flows: 1024,
            icmp_flows: 64,
            connect_timeout: 10 * S,
            // The kernel's conntrack keeps an established TCP flow 5 days; a userspace copy
            // holds buffers, so idle connections go after 2 h (TCP keep-alive's first probe).
            tcp_idle: 7200 * S,
            udp_idle: 30 * S,
            icmp_idle: 30 * S,
        }
    }
}

/// Where the engine sits and what it may hold.
#[derive(Debug, Clone)]
pub struct EgressConfig {
    /// The bridge's gateway address: the tasks' default route, and the host's own address.
    pub gateway: Ipv4Addr,
    /// The bridge subnet's prefix length; task addresses are in it.
    pub prefix: u8,
    /// Where connections to the gateway address go on the host (127.0.0.1).
    pub host_loopback: Ipv4Addr,
    /// Largest IPv4 packet to and from the tasks (the bridge's MTU).
    pub mtu: u16,
    /// Seed of the stack's TCP initial sequence numbers and raw ICMP identifiers.
    pub seed: u64,
    pub limits: Limits,
}

impl EgressConfig {
    fn in_subnet(&self, a: Ipv4Addr) -> bool {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix.min(32)))
            .unwrap_or(0);
        u32::from(a) & mask == u32::from(self.gateway) & mask
    }

    fn is_broadcast(&self, a: Ipv4Addr) -> bool {
        let host = u32::MAX
            .checked_shr(u32::from(self.prefix.min(32)))
            .unwrap_or(0);
        a.is_broadcast() || (self.prefix < 31 && self.in_subnet(a) && u32::from(a) & host == host)
    }

    /// Where the host sends what a task addressed to `dest`.
    fn host_dest(&self, dest: Ipv4Addr) -> Ipv4Addr {
        if dest == self.gateway {
            self.host_loopback
        } else {
            dest
        }
    }

    /// The source a task sees on an answer the host got from `from`.
    fn shown_source(&self, from: Ipv4Addr) -> Ipv4Addr {
        if from == self.host_loopback {
            self.gateway
        } else {
            from
        }
    }
}

/// Which transport a flow carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
    /// ICMP echo; the task's "port" is the echo identifier.
    Icmp,
}

/// One flow's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowStats {
    pub proto: Proto,
    pub task: SocketAddrV4,
    /// The destination as the task addressed it (UDP, ICMP: the latest one).
    pub dest: SocketAddrV4,
    /// Payload bytes task -> outside and back (TCP: stream bytes).
    pub bytes_out: u64,
    pub bytes_in: u64,
    /// Datagrams each way (UDP and ICMP; TCP flows count bytes only).
    pub packets_out: u64,
    pub packets_in: u64,
}

impl FlowStats {
    fn new(proto: Proto, task: SocketAddrV4, dest: SocketAddrV4) -> FlowStats {
        FlowStats {
            proto,
            task,
            dest,
            bytes_out: 0,
            bytes_in: 0,
            packets_out: 0,
            packets_in: 0,
        }
    }

    /// Counts a datagram of `len` payload bytes the host socket sent for the task, or the
    /// send's failure (`what` names it in the debug log).
    fn sent(
        &mut self,
        result: std::io::Result<usize>,
        len: usize,
        stats: &mut EgressStats,
        what: &str,
    ) {
        match result {
            Ok(_) => {
                self.packets_out += 1;
                self.bytes_out += len as u64;
            }
            Err(e) => {
                tracing::debug!(task = %self.task, dest = %self.dest, error = %e, "egress: {what} not sent");
                stats.drop(DropReason::HostSend);
            }
        }
    }
}

/// The engine's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressStats {
    pub packets_in: u64,
    pub packets_out: u64,
    pub tcp_opened: u64,
    /// Task connections refused with a RST: the host connect failed.
    pub tcp_refused: u64,
    pub tcp_connect_timeouts: u64,
    pub tcp_idle_closed: u64,
    /// Connections the server (or the host socket) reset.
    pub tcp_reset_by_host: u64,
    pub udp_flows: u64,
    pub icmp_flows: u64,
    drops: [u64; DropReason::ALL.len()],
}

impl EgressStats {
    fn drop(&mut self, r: DropReason) {
        self.drops[r.index()] += 1;
    }

    /// Packets dropped for `r`.
    pub fn drops(&self, r: DropReason) -> u64 {
        self.drops[r.index()]
    }

    /// Every reason with its count, zeros included.
    pub fn drop_counts(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|r| (*r, self.drops[r.index()]))
    }
}

/// The poller the host sockets are registered with, and their token.
struct Host {
    registry: Option<Registry>,
    token: Token,
}

impl Host {
    fn register(&self, fd: &impl AsRawFd, interest: Interest) -> std::io::Result<()> {
        match &self.registry {
            Some(r) => r.register(&mut SourceFd(&fd.as_raw_fd()), self.token, interest),
            None => Err(std::io::Error::other(
                "egress engine not attached to a poller",
            )),
        }
    }
}

/// Rounds of host I/O and stack polling per `handle_timeout`.
const ROUNDS: usize = 8;

/// The egress engine of one bridge.
pub struct Egress {
    cfg: EgressConfig,
    host: Host,
    tcp: tcp::Tcp,
    udp: udp::Udp,
    icmp: icmp::Icmp,
    stats: EgressStats,
    /// Host sockets may have something to read (their token fired, or a run stopped busy).
    host_ready: bool,
    buf: Vec<u8>,
    out: Vec<u8>,
}

impl Egress {
    /// An engine whose packets to the tasks are plain, at most `cfg.mtu` bytes; run it with
    /// `handle_timeout`.
    pub fn new(cfg: EgressConfig, now: Nanos) -> Egress {
        Egress::make(cfg, false, now)
    }

    /// An engine for a link that takes TCP super-packets with a GSO size (a TAP or TUN with a
    /// virtio-net header): its stack sends segments of up to 64 KiB, which the task's kernel
    /// takes whole, instead of one packet per MSS; it also takes the task's TSO super-packets
    /// whole (their checksums finished). Run it with `handle_timeout_gso`.
    pub fn with_gso(cfg: EgressConfig, now: Nanos) -> Egress {
        Egress::make(cfg, true, now)
    }

    fn make(cfg: EgressConfig, gso: bool, now: Nanos) -> Egress {
        Egress {
            tcp: tcp::Tcp::new(&cfg, gso, now),
            cfg,
            host: Host {
                registry: None,
                token: Token(0),
            },
            udp: udp::Udp::default(),
            icmp: icmp::Icmp::default(),
            stats: EgressStats::default(),
            host_ready: false,
            buf: vec![0; 65536],
            out: Vec::with_capacity(65536),
        }
    }

    /// Takes the poller's registry: every host socket is registered under `token`, edge
    /// triggered; call `host_ready` when it fires.
    pub fn attach(&mut self, registry: &Registry, token: Token) -> std::io::Result<()> {
        self.host.registry = Some(registry.try_clone()?);
        self.host.token = token;
        Ok(())
    }

    /// The token of the host sockets fired.
    pub fn host_ready(&mut self) {
        self.host_ready = true;
    }

    pub fn config(&self) -> &EgressConfig {
        &self.cfg
    }

    pub fn stats(&self) -> &EgressStats {
        &self.stats
    }

    /// How the host sends pings (`Unknown` before the first).
    pub fn icmp_mode(&self) -> IcmpMode {
        self.icmp.mode()
    }

    /// Flows carried now: (TCP, UDP, ICMP).
    pub fn flow_counts(&self) -> (usize, usize, usize) {
        (self.tcp.len(), self.udp.len(), self.icmp.len())
    }

    /// Every flow's counters.
    pub fn flows(&self) -> Vec<FlowStats> {
        self.tcp
            .flow_stats()
            .chain(self.udp.flow_stats())
            .chain(self.icmp.flow_stats())
            .cloned()
            .collect()
    }

    /// Whether `handle_timeout` has work now (host readiness, or answers queued).
    pub fn has_work(&self) -> bool {
        self.host_ready || self.tcp.has_output()
    }

    /// One IPv4 packet (no link header) a task sent to the gateway. Carried, or dropped and
    /// counted; what it causes to go back to tasks comes out of the next `handle_timeout`.
    pub fn input(&mut self, now: Nanos, packet: &[u8]) {
        self.input_from(now, packet, true)
    }

    /// `input` from a task whose link may not take super-packets (`gso_link` false: a
    /// virtual task's stack): the TCP connections it opens get plain segments from an engine
    /// made `with_gso` too.
    pub fn input_from(&mut self, now: Nanos, packet: &[u8], gso_link: bool) {
        self.stats.packets_in += 1;
        let parsed = match packet::parse(packet) {
            Ok(p) => p,
            Err(r) => return self.stats.drop(r),
        };
        let (src, dst) = parsed.addrs();
        if !self.cfg.in_subnet(src) || src == self.cfg.gateway || self.cfg.is_broadcast(src) {
            return self.stats.drop(DropReason::NotFromTask);
        }
        let other_task = self.cfg.in_subnet(dst) && dst != self.cfg.gateway;
        if other_task
            || dst.is_loopback()
            || dst.is_multicast()
            || dst.is_unspecified()
            || self.cfg.is_broadcast(dst)
        {
            return self.stats.drop(DropReason::Destination);
        }
        let host_dst = self.cfg.host_dest(dst);
        match parsed {
            packet::Parsed::Tcp {
                src,
                dst,
                syn,
                ack,
                rst,
            } => {
                let host_dest = SocketAddrV4::new(host_dst, dst.port());
                self.tcp.input(
                    &self.host,
                    &self.cfg,
                    now,
                    packet,
                    (src, dst, host_dest),
                    (syn, ack, rst),
                    gso_link,
                    &mut self.stats,
                );
            }
            packet::Parsed::Udp { src, dst, payload } => {
                let host_dest = SocketAddrV4::new(host_dst, dst.port());
                self.udp.input(
                    &self.host,
                    &self.cfg,
                    now,
                    src,
                    dst,
                    host_dest,
                    payload,
                    &mut self.stats,
                );
            }
            packet::Parsed::Echo {
                src,
                dst,
                id,
                seq,
                payload,
            } => {
                self.icmp.input(
                    &self.host,
                    &self.cfg,
                    now,
                    (src, dst, host_dst),
                    id,
                    seq,
                    payload,
                    &mut self.stats,
                );
            }
        }
    }

    /// Runs host I/O, the stack and the timers at `now`; every packet for the tasks goes to
    /// `emit` (an engine made with `new`: plain packets only).
    pub fn handle_timeout(&mut self, now: Nanos, emit: &mut dyn FnMut(&[u8])) {
        self.handle_timeout_gso(now, &mut |p, _| emit(p))
    }

    /// `handle_timeout` for an engine made `with_gso`: a TCP super-packet comes with its
    /// segment size, and the link writes it behind a virtio-net header (GSO_TCPV4, that size,
    /// NEEDS_CSUM from the TCP header, checksum offset 16); its checksum field holds the
    /// pseudo-header's sum, as a partial checksum must. `None`: a plain packet.
    pub fn handle_timeout_gso(&mut self, now: Nanos, emit: &mut dyn FnMut(&[u8], Option<u16>)) {
        let mut count = 0u64;
        let mut emit = |p: &[u8], gso: Option<u16>| {
            count += 1;
            emit(p, gso)
        };
        let mut acted = false;
        for _ in 0..ROUNDS {
            acted = self.tcp.run(&self.cfg, now, &mut self.stats, &mut emit);
            let mut plain = |p: &[u8]| emit(p, None);
            acted |= self.udp.run(
                &self.cfg,
                now,
                &mut self.buf,
                &mut self.out,
                &mut self.stats,
                &mut plain,
            );
            acted |= self.icmp.run(
                &self.cfg,
                now,
                &mut self.buf,
                &mut self.out,
                &mut self.stats,
                &mut plain,
            );
            if !acted {
                break;
            }
        }
        self.udp.expire(&self.cfg, now);
        self.icmp.expire(&self.cfg, now);
        // Still busy after the last round: run again at once (readiness is edge-triggered).
        self.host_ready = acted;
        self.stats.packets_out += count;
    }

    /// When the engine next needs `handle_timeout` (absolute nanoseconds) if nothing else
    /// happens first.
    pub fn poll_timeout(&mut self, now: Nanos) -> Option<Nanos> {
        if self.has_work() {
            return Some(now);
        }
        [
            self.tcp.poll_at(&self.cfg, now),
            self.udp.poll_at(&self.cfg),
            self.icmp.poll_at(&self.cfg),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

#[cfg(test)]
mod tests;
