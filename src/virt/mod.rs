//! Virtual tasks: a local port served inside the node by a TCP/IP stack (smoltcp) and a
//! built-in app, for nodes without privileges (no namespace, no TAP) and for tests.
//!
//! A `VirtualTask` is sans-IO like the core: frames go in with `input`, the caller drives it
//! with `handle_timeout(now)` whenever `poll_timeout` says or a frame arrived, and the frames it
//! sends come out through a callback. It reads no clock and draws no randomness: time and the
//! stack's seed (TCP initial sequence numbers, ephemeral ports) are arguments. The switch treats
//! its port like a TAP's: ARP, MTU and spoofing rules apply alike.

mod apps;
mod device;
pub mod proxy;
pub mod sandbox;

use std::net::Ipv4Addr;

use smoltcp::iface::{Config, Interface, PollIngressSingleResult, SocketSet};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};

use crate::dataplane::Nanos;
use crate::topology::App;
use crate::wire::MacAddr;

pub use device::RX_QUEUE;

/// Everything a virtual task is made from.
#[derive(Debug, Clone)]
pub struct VirtSpec {
    /// The endpoint's name: its events (log lines) are reported under it.
    pub name: String,
    /// The task's name, which `whoami` reports as its hostname (the same on each of the
    /// task's networks).
    pub hostname: String,
    /// The node's name.
    pub node: String,
    pub app: App,
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub mtu: u16,
    /// Seed of the stack's TCP initial sequence numbers and ephemeral ports.
    pub seed: u64,
    /// Which addresses this interface's app reaches out to, when the task has several.
    pub reach: Reach,
}

/// Which addresses a virtual task's interface connects to. A virtual task runs its app on each
/// of its interfaces; when it also has a way out (docker_gwbridge), each address is reached
/// through one of them only, as a routing table would pick: its own network's subnet through
/// an overlay interface, everything outside the task's networks through the way out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Reach {
    /// Whatever the app is given (a task without a way out).
    #[default]
    All,
    /// Only addresses of this subnet: an overlay interface of a task with a way out.
    Subnet(ipnet::Ipv4Net),
    /// Only addresses outside these subnets (the task's networks): its way out. Only
    /// `fetch` runs there; other apps are served on the task's networks.
    Outside(Vec<ipnet::Ipv4Net>),
}

impl Reach {
    /// Whether this interface connects to `addr`.
    pub fn takes(&self, addr: Ipv4Addr) -> bool {
        match self {
            Reach::All => true,
            Reach::Subnet(net) => net.contains(&addr),
            Reach::Outside(nets) => !nets.iter().any(|n| n.contains(&addr)),
        }
    }
}

/// What a task tells about itself, for the `whoami` page.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub name: String,
    pub node: String,
    pub ip: Ipv4Addr,
    /// The network's gateway: also the task's resolver (the embedded DNS).
    pub gateway: Ipv4Addr,
    pub reach: Reach,
}

/// One virtual task: its stack, its link and its app.
pub struct VirtualTask {
    name: String,
    iface: Interface,
    link: device::Link,
    sockets: SocketSet<'static>,
    app: apps::AppState,
    events: Vec<String>,
    /// Frames refused because the task's receive queue was full or they exceeded the MTU.
    pub dropped: u64,
    /// The task's own addresses, for the ARP replies `input` makes up.
    mac: MacAddr,
    ip: Ipv4Addr,
    prefix: u8,
    /// Senders (address, MAC) whose frames reached the task; their ARP entry is known.
    known: std::collections::HashSet<(Ipv4Addr, MacAddr)>,
}

/// Senders remembered per task before the set starts over.
const KNOWN_SENDERS: usize = 4096;

fn instant(now: Nanos) -> Instant {
    Instant::from_micros((now / 1_000) as i64)
}

impl VirtualTask {
    pub fn new(spec: &VirtSpec, now: Nanos) -> VirtualTask {
        let mut link = device::Link::new(spec.mtu);
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(spec.mac.0)));
        config.random_seed = spec.seed;
        let mut iface = Interface::new(config, &mut link, instant(now));
        iface.update_ip_addrs(|addrs| {
            // One address: the Vec holds up to its capacity, which is at least one.
            let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(spec.ip), spec.prefix));
        });
        // A full route table only refuses a second default route.
        let _ = iface.routes_mut().add_default_ipv4_route(spec.gateway);
        let mut sockets = SocketSet::new(Vec::new());
        let who = Identity {
            name: spec.hostname.clone(),
            node: spec.node.clone(),
            ip: spec.ip,
            gateway: spec.gateway,
            reach: spec.reach.clone(),
        };
        let app = apps::AppState::new(&spec.app, who, &mut sockets, spec.seed);
        VirtualTask {
            name: spec.name.clone(),
            iface,
            link,
            sockets,
            app,
            events: Vec::new(),
            dropped: 0,
            mac: spec.mac,
            ip: spec.ip,
            prefix: spec.prefix,
            known: Default::default(),
        }
    }

    /// The endpoint's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A frame for the task, queued until the next `handle_timeout`. False: dropped (the
    /// queue is full, or the frame is larger than the MTU allows).
    ///
    /// The first IPv4 frame from an on-link sender comes after a made-up ARP reply that gives
    /// the stack the sender's MAC: the data path has checked that the pair is true, and the
    /// stack would otherwise ARP for it and hold its answer (a SYN-ACK) until its next timer,
    /// which made every first connection to a virtual task wait for the client's SYN
    /// retransmit, a second later.
    pub fn input(&mut self, frame: &[u8]) -> bool {
        if let Some(sender) = self.new_sender(frame) {
            if self.known.len() >= KNOWN_SENDERS {
                self.known.clear();
            }
            let arp = arp_reply(sender, (self.ip, self.mac));
            if self.link.push_rx(&arp) {
                self.known.insert(sender);
            }
        }
        let ok = self.link.push_rx(frame);
        if !ok {
            self.dropped += 1;
        }
        ok
    }

    /// The (address, MAC) of an IPv4 frame's on-link sender not seen before.
    fn new_sender(&self, frame: &[u8]) -> Option<(Ipv4Addr, MacAddr)> {
        if frame.len() < 34 || frame[12..14] != [0x08, 0x00] {
            return None;
        }
        let ip = Ipv4Addr::new(frame[26], frame[27], frame[28], frame[29]);
        let mac = MacAddr(frame[6..12].try_into().ok()?);
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0);
        let on_link = u32::from(ip) & mask == u32::from(self.ip) & mask;
        (on_link && ip != self.ip && !self.known.contains(&(ip, mac))).then_some((ip, mac))
    }

    /// Whether frames wait for the stack.
    pub fn has_input(&self) -> bool {
        self.link.has_rx()
    }

    /// Runs the stack and the app at `now`: takes the queued frames, fires due timers, and hands
    /// every frame the task sends to `emit`.
    pub fn handle_timeout(&mut self, now: Nanos, emit: &mut dyn FnMut(&[u8])) {
        let at = instant(now);
        // Input, then the app's reaction, then the stack's output of it; a few rounds cover
        // an app that answers what it just received.
        for _ in 0..4 {
            // One frame at a time, and the app between frames that may have changed a
            // socket's state: a whoami socket that a client's FIN just closed listens again
            // before the client's next SYN (it may reuse the same port at once) is read.
            loop {
                match self
                    .iface
                    .poll_ingress_single(at, &mut self.link, &mut self.sockets)
                {
                    PollIngressSingleResult::None => break,
                    PollIngressSingleResult::PacketProcessed => {}
                    PollIngressSingleResult::SocketStateChanged => {
                        self.app
                            .step(now, &mut self.iface, &mut self.sockets, &mut self.events);
                    }
                }
            }
            self.iface.poll(at, &mut self.link, &mut self.sockets);
            let acted = self
                .app
                .step(now, &mut self.iface, &mut self.sockets, &mut self.events);
            self.iface.poll(at, &mut self.link, &mut self.sockets);
            self.link.drain_tx(emit);
            if !acted && !self.link.has_rx() {
                break;
            }
        }
    }

    /// When the task next needs `handle_timeout` (absolute, in the caller's nanoseconds), if no
    /// frame arrives before.
    pub fn poll_timeout(&mut self, now: Nanos) -> Option<Nanos> {
        let stack = self
            .iface
            .poll_at(instant(now), &self.sockets)
            .map(|at| (at.total_micros().max(0) as u64).saturating_mul(1_000));
        match (stack, self.app.next_timer()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// What the app reported since the last call (e.g. a fetch's outcome), one line each.
    pub fn take_events(&mut self) -> Vec<String> {
        std::mem::take(&mut self.events)
    }
}

/// An ARP reply telling `to` that `from`'s address is at its MAC.
fn arp_reply(from: (Ipv4Addr, MacAddr), to: (Ipv4Addr, MacAddr)) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&to.1 .0);
    f.extend_from_slice(&from.1 .0);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2]);
    f.extend_from_slice(&from.1 .0);
    f.extend_from_slice(&from.0.octets());
    f.extend_from_slice(&to.1 .0);
    f.extend_from_slice(&to.0.octets());
    f
}

#[cfg(test)]
mod tests;
