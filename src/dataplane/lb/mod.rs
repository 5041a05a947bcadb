//! VIP load balancing in the core (what IPVS does for Docker, inside each container): a
//! connection from a task to a service's virtual IP goes to one running task of the service,
//! chosen by Maglev over the connection's 5-tuple; the node tracks the flow (`Conntrack`) and
//! gives every answer the VIP's address back. ARP for a VIP and ICMP echo to it are answered by
//! the node, as a user expects of an address they can ping.
//!
//! The NAT happens on the client's node, on the way in from its port and on the way back to
//! it: the backend's node forwards plain frames, whatever worker or node they cross.

pub mod conntrack;
pub mod maglev;
pub mod nat;

use std::net::{Ipv4Addr, SocketAddrV4};

use rustc_hash::{FxHashMap, FxHashSet};

pub use conntrack::{BackendStats, Conntrack, CtConfig, Reset};
pub use maglev::Maglev;

use super::counters::DropReason;
use super::services::ServiceView;
use super::switch::Forwarder;
use super::tables::{Dest, NetId, PortId};
use super::Target;
use crate::wire::{MacAddr, ETHERNET_HEADER_LEN};

/// One service's VIP on one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vip {
    pub service: String,
    pub net: NetId,
    pub ip: Ipv4Addr,
    /// The MAC ARP answers for the VIP (Docker's scheme: 02:42 and the address).
    pub mac: MacAddr,
    /// Running tasks' addresses, in the service view's (stable) order.
    pub backends: Vec<Ipv4Addr>,
    maglev: Maglev,
}

impl Vip {
    /// The backend of a new flow; a client that is itself a backend is given another one
    /// while there is another (its own answer would never come back through the node).
    /// Backends `suspect` says are suspect are passed over while another is not.
    fn pick(
        &self,
        proto: u8,
        client: SocketAddrV4,
        vip: SocketAddrV4,
        suspect: &dyn Fn(Ipv4Addr) -> bool,
    ) -> Option<Ipv4Addr> {
        let h = maglev::flow_hash(proto, *client.ip(), client.port(), *vip.ip(), vip.port());
        let first = self.maglev.pick(h)?;
        let n = self.backends.len();
        let usable = |b: Ipv4Addr| b != *client.ip() && !suspect(b);
        // The table's choice, else the next usable backend after it.
        (0..n)
            .map(|k| self.backends[(first + k) % n])
            .find(|b| usable(*b))
            .or_else(|| self.backends.get(first).copied())
    }
}

/// The VIPs of a table snapshot.
#[derive(Debug, Clone, Default)]
pub struct LbTable {
    pub vips: Vec<Vip>,
    by_mac: FxHashMap<(NetId, MacAddr), u32>,
    /// (network, backend) pairs that serve each VIP.
    serving: FxHashSet<(NetId, Ipv4Addr, Ipv4Addr)>,
    /// Addresses whose answers may belong to a VIP flow: every backend of this snapshot and
    /// those of earlier ones that still have flows (`Tables::keeping_state_of`).
    reply_sources: FxHashSet<(NetId, Ipv4Addr)>,
}

impl LbTable {
    /// The VIPs of `view` (networks indexed as `NetId`s).
    pub fn new(view: &ServiceView) -> LbTable {
        let mut t = LbTable::default();
        for (n, net) in view.networks.iter().enumerate() {
            let id = NetId(n as u32);
            for s in &net.services {
                for b in &s.backends {
                    t.reply_sources.insert((id, b.ip));
                }
                let Some(ip) = s.vip else { continue };
                let keys: Vec<&str> = s.backends.iter().map(|b| b.task.as_str()).collect();
                let backends: Vec<Ipv4Addr> = s.backends.iter().map(|b| b.ip).collect();
                for b in &backends {
                    t.serving.insert((id, ip, *b));
                }
                let mac = MacAddr::from_ipv4(ip);
                t.by_mac.insert((id, mac), t.vips.len() as u32);
                t.vips.push(Vip {
                    service: s.name.clone(),
                    net: id,
                    ip,
                    mac,
                    backends,
                    maglev: Maglev::new(&keys),
                });
            }
        }
        t
    }

    /// The VIP whose MAC a frame on `net` is addressed to.
    #[inline]
    pub fn vip_by_mac(&self, net: NetId, mac: MacAddr) -> Option<&Vip> {
        let i = *self.by_mac.get(&(net, mac))?;
        self.vips.get(i as usize)
    }

    /// The VIP `ip` on `net`.
    pub fn vip(&self, net: NetId, ip: Ipv4Addr) -> Option<&Vip> {
        self.vips.iter().find(|v| v.net == net && v.ip == ip)
    }

    /// True if `backend` runs the service of `vip` on network `net`.
    pub fn serves(&self, net: NetId, vip: Ipv4Addr, backend: Ipv4Addr) -> bool {
        self.serving.contains(&(net, vip, backend))
    }

    #[inline]
    pub fn is_reply_source(&self, net: NetId, addr: Ipv4Addr) -> bool {
        self.reply_sources.contains(&(net, addr))
    }

    /// Also expect answers from these (backends of earlier snapshots with flows).
    pub(crate) fn keep_reply_sources(&mut self, more: impl IntoIterator<Item = (NetId, Ipv4Addr)>) {
        self.reply_sources.extend(more);
    }
}

/// The IPv4 source address of a checked IPv4 frame.
fn src_ip(frame: &[u8]) -> Ipv4Addr {
    let at = ETHERNET_HEADER_LEN + 12;
    Ipv4Addr::new(frame[at], frame[at + 1], frame[at + 2], frame[at + 3])
}

impl Forwarder<'_> {
    /// A frame from `port` to the MAC of a VIP on its network.
    pub(crate) fn through_vip(
        &mut self,
        port: PortId,
        net: NetId,
        vip: &Vip,
        frame: &[u8],
        ipv4: bool,
    ) -> Result<(), DropReason> {
        if !ipv4 {
            return Err(DropReason::VipUnsupported);
        }
        let flow = match nat::classify(frame) {
            nat::Kind::Flow(f) if *f.dst.ip() == vip.ip => f,
            nat::Kind::EchoRequest => {
                let n = self
                    .out
                    .emit(Target::Port(port), |b| nat::write_echo_reply(b, frame));
                if let Some(c) = self.c.ports.get_mut(port.0 as usize) {
                    c.tx(n);
                }
                self.c.events.vip_echo_replies += 1;
                return Ok(());
            }
            _ => return Err(DropReason::VipUnsupported),
        };
        let picked = self.t.conntrack.forward(
            self.now,
            net.0,
            flow.proto,
            flow.src,
            flow.dst,
            flow.tcp,
            flow.len,
            |suspect| vip.pick(flow.proto, flow.src, flow.dst, suspect),
        );
        let backend = match picked {
            Ok(b) => b,
            Err(conntrack::Refused::NoBackend) => {
                // A TCP connection attempt fails at once rather than after its retries.
                if let Some(t) = flow.tcp.filter(|t| t.flags & conntrack::RST == 0) {
                    let ack = t.seq.wrapping_add(1);
                    let client_mac = crate::dataplane::switch::mac_at(frame, 6);
                    let n = self.out.emit(Target::Port(port), |b| {
                        nat::write_rst_ack(b, (client_mac, vip.mac), flow.dst, flow.src, ack)
                    });
                    if let Some(c) = self.c.ports.get_mut(port.0 as usize) {
                        c.tx(n);
                    }
                    self.c.events.vip_resets += 1;
                }
                return Err(DropReason::VipNoBackend);
            }
            Err(conntrack::Refused::Full) => return Err(DropReason::ConntrackFull),
        };
        let mac = self
            .t
            .resolve_ip(net, backend)
            .ok_or(DropReason::UnknownDestination)?;
        let dest = self
            .t
            .lookup_mac(net, mac)
            .ok_or(DropReason::UnknownDestination)?;
        if dest == Dest::Local(port) {
            // Its own address (a spoofed source, or a task alone behind its own VIP): the
            // answer could never come back through the node.
            return Err(DropReason::Hairpin);
        }
        let info = self.t.network(net).ok_or(DropReason::UnknownPort)?;
        let len = ETHERNET_HEADER_LEN + flow.len;
        if flow.len > usize::from(info.mtu) {
            return Err(DropReason::MtuExceeded);
        }
        let rewrite = |f: &mut [u8]| {
            nat::rewrite(f, true, backend);
            nat::set_macs(f, Some(mac), None);
        };
        match dest {
            Dest::Local(q) => {
                let n = self.out.emit(Target::Port(q), |b| {
                    let at = b.len();
                    b.extend_from_slice(&frame[..len]);
                    rewrite(&mut b[at..]);
                });
                if let Some(c) = self.c.ports.get_mut(q.0 as usize) {
                    c.tx(n);
                }
                Ok(())
            }
            Dest::Remote(_) if !self.t.esp.as_ref().is_some_and(|e| e.encrypts(info.vni)) => {
                // Encapsulated as it is, then rewritten in place at the end of the datagram
                // (VXLAN's UDP checksum is zero, so nothing outside the inner frame changes):
                // one copy of the frame, as on the direct path.
                let before = self.out.len();
                self.forward(dest, &frame[..len], info.vni)?;
                if self.out.len() == before + 1 {
                    if let Some(b) = self.out.last_mut() {
                        let at = b.len() - len;
                        rewrite(&mut b[at..]);
                    }
                }
                Ok(())
            }
            Dest::Remote(_) => {
                let mut buf = std::mem::take(&mut self.st.scratch);
                buf.clear();
                buf.extend_from_slice(&frame[..len]);
                rewrite(&mut buf);
                let r = self.forward(dest, &buf, info.vni);
                self.st.scratch = buf;
                r
            }
        }
    }

    /// Delivers a frame to local port `q` on `net`, as the answer of a VIP flow (from the VIP)
    /// when it is one. `frame` has passed `inner::check` (both callers check it first).
    pub(crate) fn deliver(&mut self, q: PortId, net: NetId, frame: &[u8]) {
        let vip = self.reply_vip(net, frame);
        let n = self.out.emit(Target::Port(q), |b| {
            let at = b.len();
            b.extend_from_slice(frame);
            if let Some((ip, mac)) = vip {
                nat::rewrite(&mut b[at..], false, ip);
                nat::set_macs(&mut b[at..], None, Some(mac));
            }
        });
        if let Some(c) = self.c.ports.get_mut(q.0 as usize) {
            c.tx(n);
        }
    }

    /// `deliver` for a frame whose checksum the sender left open (VXLAN RCO; `csum`: where it
    /// starts, the field's offset): it stays open, marked for the port's link, when the runtime
    /// takes that and no address is rewritten; else it is finished here first.
    pub(crate) fn deliver_open(&mut self, q: PortId, net: NetId, frame: &[u8], csum: (u16, u16)) {
        let vip = self.reply_vip(net, frame);
        let open = self.st.partial_checksums && vip.is_none();
        let n = self.out.emit(Target::Port(q), |b| {
            let at = b.len();
            b.extend_from_slice(frame);
            if !open {
                // Checked by the caller: the field lies inside the frame.
                let (start, offset) = (usize::from(csum.0), usize::from(csum.1));
                let _ = crate::dataplane::gso::finish_checksum(&mut b[at..], start, offset);
            }
            if let Some((ip, mac)) = vip {
                nat::rewrite(&mut b[at..], false, ip);
                nat::set_macs(&mut b[at..], None, Some(mac));
            }
        });
        if open {
            self.out.set_last_partial(csum.0, csum.1);
        }
        if let Some(c) = self.c.ports.get_mut(q.0 as usize) {
            c.tx(n);
        }
    }

    /// The VIP (address, MAC) a frame to a local port must come from: `Some` when it is a
    /// backend's answer in a tracked flow.
    #[inline]
    fn reply_vip(&mut self, net: NetId, frame: &[u8]) -> Option<(Ipv4Addr, MacAddr)> {
        let ct = &self.t.conntrack;
        // `frame` is checked (see `deliver`): an IPv4 EtherType means a whole IPv4 header.
        if ct.is_empty() || frame[12..14] != [8, 0] {
            return None;
        }
        if !self.t.lb.is_reply_source(net, src_ip(frame)) {
            return None;
        }
        let nat::Kind::Flow(f) = nat::classify(frame) else {
            return None;
        };
        let vip = ct.reply(self.now, f.proto, f.src, f.dst, f.tcp, f.len)?;
        Some((vip, MacAddr::from_ipv4(vip)))
    }
}

/// Ends the flows whose time is up and sends their RSTs (see `Conntrack::expire`).
pub(crate) fn expire(f: &mut Forwarder<'_>, resets: &mut Vec<Reset>) {
    resets.clear();
    let lb = &f.t.lb;
    f.t.conntrack.expire(
        f.now,
        |net, vip, backend| lb.serves(NetId(net), vip, backend),
        resets,
    );
    for r in resets.iter() {
        let net = NetId(r.net);
        let Some(info) = f.t.network(net) else {
            continue;
        };
        let vni = info.vni;
        let vip_mac = MacAddr::from_ipv4(*r.vip.ip());
        let client_mac = f.t.resolve_ip(net, *r.client.ip());
        let backend_mac = f.t.resolve_ip(net, *r.backend.ip());
        let mut frames: Vec<(MacAddr, Vec<u8>)> = Vec::new();
        if let (Some(seq), Some(mac)) = (r.client_seq, client_mac) {
            let mut b = Vec::with_capacity(54);
            nat::write_rst(&mut b, (mac, vip_mac), r.vip, r.client, seq);
            frames.push((mac, b));
        }
        if let (Some(seq), Some(mac), Some(cmac)) = (r.backend_seq, backend_mac, client_mac) {
            let mut b = Vec::with_capacity(54);
            nat::write_rst(&mut b, (mac, cmac), r.client, r.backend, seq);
            frames.push((mac, b));
        }
        for (mac, b) in frames {
            if let Some(dest) = f.t.lookup_mac(net, mac) {
                let sent = match dest {
                    Dest::Local(q) => {
                        let n = f.out.emit(Target::Port(q), |o| o.extend_from_slice(&b));
                        if let Some(c) = f.c.ports.get_mut(q.0 as usize) {
                            c.tx(n);
                        }
                        true
                    }
                    Dest::Remote(_) => f.forward(dest, &b, vni).is_ok(),
                };
                if sent {
                    f.c.events.vip_resets += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
