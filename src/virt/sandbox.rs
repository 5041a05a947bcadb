//! The node's ingress sandbox endpoint (Docker's `ingress-sbox`): a TCP/IP stack on the ingress
//! network at the node's load-balancer address, from which the routing mesh opens one
//! connection (or UDP flow) per client of a published port towards the service.
//!
//! Sans-IO like [`super::VirtualTask`]: frames in with `input`, the caller runs `poll(now)`
//! when a frame came, a socket changed or `poll_at` is due, and sends what comes out. Which
//! sockets exist and what flows through them is the caller's (io/mesh): this holds only the
//! stack. Every socket's buffers are fixed at creation, so memory is bounded by the number of
//! sockets, which the caller caps.

use std::net::Ipv4Addr;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint};

use super::device;
use crate::dataplane::Nanos;
use crate::wire::MacAddr;

/// Bytes of each direction's buffer of one mesh TCP connection. smoltcp's window scaling
/// lets the backend fill it in one round trip; the host socket holds as much again.
pub const TCP_BUF: usize = 256 * 1024;
/// Datagrams (and bytes) one UDP flow queues each way.
const UDP_SLOTS: usize = 32;
const UDP_BYTES: usize = 64 * 1024;
/// Local ports of the sandbox's connections and flows.
const EPHEMERAL: std::ops::RangeInclusive<u16> = 32768..=60999;

/// Where the sandbox sits on the ingress network.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub mtu: u16,
    /// Seed of TCP initial sequence numbers.
    pub seed: u64,
}

/// The stack of the ingress sandbox.
pub struct Sandbox {
    iface: Interface,
    link: device::Link,
    sockets: SocketSet<'static>,
    next_port: u16,
    ports_used: std::collections::HashSet<u16>,
    /// Frames refused (receive queue full, larger than the MTU).
    pub dropped: u64,
}

/// Why a connection or flow could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("no free local port in the ingress sandbox")]
    NoPort,
    #[error("cannot connect: {0}")]
    Connect(String),
}

impl Sandbox {
    pub fn new(spec: &SandboxSpec, now: Nanos) -> Sandbox {
        let mut link = device::Link::new(spec.mtu);
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(spec.mac.0)));
        config.random_seed = spec.seed;
        let mut iface = Interface::new(config, &mut link, super::instant(now));
        iface.update_ip_addrs(|addrs| {
            // One address: the Vec holds up to its capacity, which is at least one.
            let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(spec.ip), spec.prefix));
        });
        let _ = iface.routes_mut().add_default_ipv4_route(spec.gateway);
        let span = u64::from(EPHEMERAL.end() - EPHEMERAL.start());
        Sandbox {
            iface,
            link,
            sockets: SocketSet::new(Vec::new()),
            next_port: EPHEMERAL.start() + (spec.seed % span) as u16,
            ports_used: Default::default(),
            dropped: 0,
        }
    }

    /// A frame for the sandbox, taken at the next `poll`. False: dropped.
    pub fn input(&mut self, frame: &[u8]) -> bool {
        let ok = self.link.push_rx(frame);
        if !ok {
            self.dropped += 1;
        }
        ok
    }

    pub fn has_input(&self) -> bool {
        self.link.has_rx()
    }

    /// Runs the stack at `now`; every frame it sends goes to `emit`.
    pub fn poll(&mut self, now: Nanos, emit: &mut dyn FnMut(&[u8])) {
        self.iface
            .poll(super::instant(now), &mut self.link, &mut self.sockets);
        self.link.drain_tx(emit);
    }

    /// When the stack next needs `poll` (absolute nanoseconds), if nothing happens before.
    pub fn poll_at(&mut self, now: Nanos) -> Option<Nanos> {
        self.iface
            .poll_at(super::instant(now), &self.sockets)
            .map(|at| (at.total_micros().max(0) as u64).saturating_mul(1_000))
    }

    fn local_port(&mut self) -> Result<u16, OpenError> {
        let span = usize::from(EPHEMERAL.end() - EPHEMERAL.start()) + 1;
        for _ in 0..span {
            let p = self.next_port;
            self.next_port = if p >= *EPHEMERAL.end() {
                *EPHEMERAL.start()
            } else {
                p + 1
            };
            if self.ports_used.insert(p) {
                return Ok(p);
            }
        }
        Err(OpenError::NoPort)
    }

    /// Opens a TCP connection to `to`; `timeout` bounds the handshake and unanswered data.
    pub fn connect(
        &mut self,
        to: (Ipv4Addr, u16),
        timeout: std::time::Duration,
    ) -> Result<(SocketHandle, u16), OpenError> {
        let port = self.local_port()?;
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; TCP_BUF]),
            tcp::SocketBuffer::new(vec![0; TCP_BUF]),
        );
        s.set_nagle_enabled(false);
        // An ACK at once: a delayed one holds the task's last segment or FIN for up to
        // 10 ms on short request/response connections.
        s.set_ack_delay(None);
        s.set_timeout(Some(smoltcp::time::Duration::from_millis(
            timeout.as_millis() as u64,
        )));
        let remote = IpEndpoint::new(IpAddress::Ipv4(to.0), to.1);
        if let Err(e) = s.connect(self.iface.context(), remote, port) {
            self.ports_used.remove(&port);
            return Err(OpenError::Connect(e.to_string()));
        }
        Ok((self.sockets.add(s), port))
    }

    /// Opens a UDP flow from a port of its own.
    pub fn open_udp(&mut self) -> Result<(SocketHandle, u16), OpenError> {
        let port = self.local_port()?;
        let buf = || {
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; UDP_SLOTS],
                vec![0; UDP_BYTES],
            )
        };
        let mut s = udp::Socket::new(buf(), buf());
        if let Err(e) = s.bind(port) {
            self.ports_used.remove(&port);
            return Err(OpenError::Connect(e.to_string()));
        }
        Ok((self.sockets.add(s), port))
    }

    pub fn tcp(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(h)
    }

    pub fn udp(&mut self, h: SocketHandle) -> &mut udp::Socket<'static> {
        self.sockets.get_mut::<udp::Socket>(h)
    }

    /// Frees a connection's or flow's socket and local port.
    pub fn remove(&mut self, h: SocketHandle, port: u16) {
        self.sockets.remove(h);
        self.ports_used.remove(&port);
    }
}
