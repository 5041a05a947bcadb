//! The switch: entry points from ports and from the underlay, and forwarding decisions.

use std::net::Ipv4Addr;
use std::sync::Arc;

use super::counters::{Counters, DropReason};
use super::inner::{self, Inner};
use super::output::Output;
use super::tables::{Dest, PortId, Tables};
use super::{arp, encap, esp, mtu, Nanos};
use crate::wire::{self, MacAddr, ETHERNET_HEADER_LEN};

/// One packet handed to the core.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// An Ethernet frame from a local port.
    Port(PortId, &'a [u8]),
    /// A whole IPv4 datagram from the underlay (replay, raw sockets).
    UnderlayIpv4(&'a [u8]),
    /// The payload of a UDP datagram received on the data-path port (what a UDP socket yields).
    UnderlayUdp { src: Ipv4Addr, payload: &'a [u8] },
    /// The payload of a UDP datagram received on the ESP-in-UDP port (RFC 3948).
    UnderlayEspUdp { src: Ipv4Addr, payload: &'a [u8] },
}

/// Least interval between two log lines for the same drop reason.
const DROP_LOG_INTERVAL: Nanos = 1_000_000_000;

/// Mutable per-worker state besides the counters.
#[derive(Debug)]
pub(crate) struct State {
    /// Identification of the next outer IPv4 header this worker writes.
    pub ip_id: u16,
    /// Reused buffer for packets built in several steps (fragments).
    pub scratch: Vec<u8>,
    /// Source of the last datagram refused as `unknown_vtep`, for the log line.
    pub unknown_vtep: Option<Ipv4Addr>,
    /// The runtime takes frames for ports with their checksums left open (`Meta::partial`).
    pub partial_checksums: bool,
    last_log: [Option<Nanos>; DropReason::COUNT],
}

/// One worker's switch for every network of a node.
#[derive(Debug)]
pub struct Dataplane {
    tables: Arc<Tables>,
    counters: Counters,
    state: State,
    /// Segments cut from offloaded super-frames, one at a time (see `gso.rs`).
    gso_buf: Vec<u8>,
    /// Reused list of VIP flows to reset.
    resets: Vec<super::lb::Reset>,
    /// TCP super-frames for other nodes leave whole, for the runtime to cut (`gso.rs`).
    tunnel_gso: bool,
}

impl Dataplane {
    pub fn new(tables: Arc<Tables>) -> Dataplane {
        let counters = Counters::new(tables.port_id_bound());
        Dataplane {
            tables,
            counters,
            state: State {
                ip_id: 0,
                scratch: Vec::with_capacity(2048),
                unknown_vtep: None,
                partial_checksums: false,
                last_log: [None; DropReason::COUNT],
            },
            gso_buf: Vec::with_capacity(2048),
            resets: Vec::new(),
            tunnel_gso: false,
        }
    }

    pub fn tables(&self) -> &Arc<Tables> {
        &self.tables
    }

    /// Swaps in a new snapshot of the tables. Port counters follow port ids, so a caller that
    /// renumbers ports reads the counters first.
    pub fn set_tables(&mut self, tables: Arc<Tables>) {
        if self.counters.ports.len() < tables.port_id_bound() {
            self.counters
                .ports
                .resize(tables.port_id_bound(), Default::default());
        }
        self.tables = tables;
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Processes a batch; what must be sent is appended to `out` in input order.
    pub fn process_batch<'a>(
        &mut self,
        now: Nanos,
        inputs: impl IntoIterator<Item = Input<'a>>,
        out: &mut Output,
    ) {
        for input in inputs {
            self.process(now, input, out);
        }
    }

    pub fn process(&mut self, now: Nanos, input: Input<'_>, out: &mut Output) {
        match input {
            Input::Port(port, frame) => self.from_port(now, port, frame, out),
            Input::UnderlayIpv4(datagram) => self.from_underlay_ipv4(now, datagram, out),
            Input::UnderlayUdp { src, payload } => self.from_underlay_udp(now, src, payload, out),
            Input::UnderlayEspUdp { src, payload } => {
                self.from_underlay_esp_udp(now, src, payload, out)
            }
        }
    }

    /// An Ethernet frame sent by the task behind `port`.
    pub fn from_port(&mut self, now: Nanos, port: PortId, frame: &[u8], out: &mut Output) {
        if let Some(c) = self.counters.ports.get_mut(port.0 as usize) {
            c.rx(frame.len());
        }
        self.handle(now, "port", out, |f| f.port_frame(port, frame));
    }

    /// A whole IPv4 datagram received from the underlay.
    pub fn from_underlay_ipv4(&mut self, now: Nanos, datagram: &[u8], out: &mut Output) {
        self.counters.underlay.rx(datagram.len());
        self.handle(now, "underlay", out, |f| f.underlay_ipv4(datagram));
    }

    /// The payload of a UDP datagram from `src` to the data-path port.
    pub fn from_underlay_udp(
        &mut self,
        now: Nanos,
        src: Ipv4Addr,
        payload: &[u8],
        out: &mut Output,
    ) {
        self.counters.underlay.rx(payload.len());
        self.handle(now, "underlay", out, |f| f.decapsulate(src, payload));
    }

    /// The payload of a UDP datagram from `src` to the ESP-in-UDP port of an encrypted node.
    pub fn from_underlay_esp_udp(
        &mut self,
        now: Nanos,
        src: Ipv4Addr,
        payload: &[u8],
        out: &mut Output,
    ) {
        self.counters.underlay.rx(payload.len());
        self.handle(now, "underlay", out, |f| match f.t.esp.as_ref() {
            Some(e) => esp::input_udp(f, e, src, payload),
            None => Err(DropReason::NotVxlan),
        });
    }

    /// Runs one packet's handling with the pieces it borrows, and counts its drop if any.
    pub(crate) fn handle(
        &mut self,
        now: Nanos,
        from: &'static str,
        out: &mut Output,
        step: impl FnOnce(&mut Forwarder<'_>) -> Result<(), DropReason>,
    ) {
        let mut fwd = Forwarder {
            now,
            t: &self.tables,
            c: &mut self.counters,
            st: &mut self.state,
            out,
        };
        if let Err(reason) = step(&mut fwd) {
            self.record_drop(now, reason, from);
        }
    }

    /// When `handle_timeout` next has work (VIP flows to expire), if ever.
    pub fn poll_timeout(&self) -> Option<Nanos> {
        self.tables.conntrack.poll_timeout()
    }

    /// Does the work that is due at `now`: ends idle and drained VIP flows with a RST to
    /// each end. Any worker may call it; the work is done once per interval for the node.
    pub fn handle_timeout(&mut self, now: Nanos, out: &mut Output) {
        if self.poll_timeout().is_none_or(|at| at > now) {
            return;
        }
        let mut resets = std::mem::take(&mut self.resets);
        self.handle(now, "timer", out, |f| {
            super::lb::expire(f, &mut resets);
            Ok(())
        });
        self.resets = resets;
    }

    pub(crate) fn gso_buffer(&mut self) -> &mut Vec<u8> {
        &mut self.gso_buf
    }

    /// Lets a TCP super-frame from a TAP with offloads, for a task on another node of an
    /// unencrypted overlay, leave as one `Target::Underlay` item of headers with its segment
    /// size, the frame itself following from the caller's input (`Meta`), which the caller
    /// cuts into datagrams with [`super::gso::cut_tunnelled`] before it lets the input go; on
    /// an encrypted overlay, each segment is sealed straight from the burst, in whole
    /// datagrams. Off by default: every underlay item is then one whole datagram, and each
    /// segment is cut into a frame of its own and switched.
    pub fn set_tunnel_gso(&mut self, on: bool) {
        self.tunnel_gso = on;
    }

    pub(crate) fn tunnel_gso(&self) -> bool {
        self.tunnel_gso
    }

    /// Lets a frame for a port keep a transport checksum the sender left open (VXLAN remote
    /// checksum offload, with `Tables::remote_checksum_offload`): marked in `Meta::partial`
    /// for a link that finishes or trusts it (a TAP's NEEDS_CSUM). Off by default: the core
    /// finishes every such checksum itself.
    pub fn set_partial_checksums(&mut self, on: bool) {
        self.state.partial_checksums = on;
    }

    /// The counters of `port`, if it has any.
    pub(crate) fn port_counters(
        &mut self,
        port: PortId,
    ) -> Option<&mut super::counters::PortCounters> {
        self.counters.ports.get_mut(port.0 as usize)
    }

    /// Counts a frame from `port` refused before it could be switched.
    pub(crate) fn refuse_from_port(
        &mut self,
        now: Nanos,
        port: PortId,
        len: usize,
        reason: DropReason,
    ) {
        if let Some(c) = self.counters.ports.get_mut(port.0 as usize) {
            c.rx(len);
        }
        self.record_drop(now, reason, "port");
    }

    /// Counts an underlay packet refused before the core could read it (e.g. by its link layer).
    pub fn drop_underlay(&mut self, now: Nanos, len: usize, reason: DropReason) {
        self.counters.underlay.rx(len);
        self.record_drop(now, reason, "underlay");
    }

    /// Counts a drop the runtime decided (an I/O failure after the core emitted the packet).
    pub fn count_drop(&mut self, now: Nanos, reason: DropReason) {
        self.record_drop(now, reason, "runtime");
    }

    fn record_drop(&mut self, now: Nanos, reason: DropReason, from: &'static str) {
        self.counters.drop(reason);
        let last = &mut self.state.last_log[reason as usize];
        if last.is_none_or(|t| now.saturating_sub(t) >= DROP_LOG_INTERVAL) {
            *last = Some(now);
            if reason == DropReason::UnknownVtep {
                // Someone sends VXLAN or ESP who is no peer: worth a warning, still rate-limited.
                tracing::warn!(
                    node = %self.tables.node_name,
                    source = ?self.state.unknown_vtep,
                    total = self.counters.dropped(reason),
                    "underlay packet from an address that is no VTEP of the network dropped"
                );
                return;
            }
            tracing::debug!(
                node = %self.tables.node_name,
                from,
                reason = reason.as_str(),
                total = self.counters.dropped(reason),
                "packet dropped"
            );
        }
    }
}

/// Borrowed pieces of a `Dataplane` for handling one packet.
pub(crate) struct Forwarder<'a> {
    pub now: Nanos,
    pub t: &'a Tables,
    pub c: &'a mut Counters,
    pub st: &'a mut State,
    pub out: &'a mut Output,
}

/// Where an RCO datagram's open checksum starts in its inner frame and its field's offset,
/// checked against the frame: the TCP or UDP header of an unfragmented IPv4 packet, field
/// inside it. Also where the packet ends in the frame (padding after it is not summed).
/// Other frames are not left open by swarmnet and are refused.
fn open_checksum(
    inner: &[u8],
    kind: Inner,
    (start, offset): (usize, usize),
) -> Result<((u16, u16), usize), DropReason> {
    let Inner::Ipv4 { total } = kind else {
        return Err(DropReason::MalformedInner);
    };
    let ip = &inner[ETHERNET_HEADER_LEN..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let proto = if offset == 16 {
        wire::ipv4::PROTO_TCP
    } else {
        wire::ipv4::PROTO_UDP
    };
    let fragment =
        u16::from_be_bytes([ip[6], ip[7]]) & (wire::ipv4::FLAG_MF | wire::ipv4::OFFSET_MASK) != 0;
    let end = ETHERNET_HEADER_LEN + total;
    if start != ETHERNET_HEADER_LEN + ihl || ip[9] != proto || fragment || start + offset + 2 > end
    {
        return Err(DropReason::MalformedInner);
    }
    Ok(((start as u16, offset as u16), end))
}

pub(crate) fn mac_at(frame: &[u8], at: usize) -> MacAddr {
    let mut m = [0u8; 6];
    m.copy_from_slice(&frame[at..at + 6]);
    MacAddr(m)
}

impl Forwarder<'_> {
    fn port_frame(&mut self, port: PortId, frame: &[u8]) -> Result<(), DropReason> {
        let p = self.t.port(port).ok_or(DropReason::UnknownPort)?;
        let kind = inner::check(frame)?;
        let dst = mac_at(frame, 0);
        let src = mac_at(frame, 6);
        if src != p.mac {
            return Err(DropReason::SpoofedSource);
        }
        if kind == Inner::Arp {
            return arp::respond(self, port, frame);
        }
        if dst.is_multicast() {
            return Err(DropReason::Broadcast);
        }
        let Some(dest) = self.t.lookup_mac(p.network, dst) else {
            let ipv4 = matches!(kind, Inner::Ipv4 { .. });
            if let Some(vip) = self.t.lb.vip_by_mac(p.network, dst) {
                return self.through_vip(port, p.network, vip, frame, ipv4);
            }
            let to_gateway = self
                .t
                .network(p.network)
                .is_some_and(|n| n.gateway_mac == dst);
            if let (Inner::Ipv4 { total }, true) = (kind, to_gateway) {
                // On a bridge, the embedded DNS still answers at the gateway (port 53, as on
                // every network of the task); the rest goes out.
                let out = self.t.network(p.network).is_some_and(|n| {
                    n.bridge.is_some() && super::resolver::gateway_dns(n, frame).is_none()
                });
                if out {
                    return self.send_to_egress(port, p.network, frame, total);
                }
                return self.at_gateway(port, p.network, frame);
            }
            return Err(DropReason::UnknownDestination);
        };
        if dest == Dest::Local(port) {
            return Err(DropReason::Hairpin);
        }
        let net = self.t.network(p.network).ok_or(DropReason::UnknownPort)?;
        if net.bridge.is_some_and(|b| !b.icc) {
            return Err(DropReason::IccDisabled);
        }
        let mtu = usize::from(net.mtu);
        if let Inner::Ipv4 { total } = kind {
            if total > mtu {
                return mtu::too_big(self, port, dest, net.vni, frame, total, mtu);
            }
            // Only the packet travels: Ethernet padding, or whatever else follows the IPv4
            // packet, would otherwise ride past the MTU check.
            let frame = &frame[..ETHERNET_HEADER_LEN + total];
            if let Dest::Local(q) = dest {
                self.deliver(q, p.network, frame);
                return Ok(());
            }
            return self.forward(dest, frame, net.vni);
        }
        if frame.len() - ETHERNET_HEADER_LEN > mtu {
            return Err(DropReason::MtuExceeded);
        }
        self.forward(dest, frame, net.vni)
    }

    /// Sends a frame to a local port or encapsulates it to a VTEP.
    pub(crate) fn forward(&mut self, dest: Dest, frame: &[u8], vni: u32) -> Result<(), DropReason> {
        match dest {
            Dest::Local(q) => {
                let n = self
                    .out
                    .emit(super::Target::Port(q), |b| b.extend_from_slice(frame));
                if let Some(c) = self.c.ports.get_mut(q.0 as usize) {
                    c.tx(n);
                }
                Ok(())
            }
            Dest::Remote(vtep) => match &self.t.esp {
                Some(e) if e.encrypts(vni) => esp::encapsulate(self, e, vtep, vni, frame),
                _ => encap::encapsulate(self, vtep, vni, frame),
            },
        }
    }

    fn underlay_ipv4(&mut self, datagram: &[u8]) -> Result<(), DropReason> {
        if let Some(e) = &self.t.esp {
            if esp::is_esp_datagram(e, datagram) {
                return esp::input_ipv4(self, e, datagram);
            }
        }
        let udp = encap::outer_udp_payload(self.t, datagram)?;
        self.decapsulate(udp.src, udp.payload)
    }

    /// A cleartext VXLAN datagram's payload.
    fn decapsulate(&mut self, src: Ipv4Addr, payload: &[u8]) -> Result<(), DropReason> {
        self.decapsulate_vxlan(src, payload, false)
    }

    /// A VXLAN datagram's payload that arrived inside authenticated ESP.
    pub(crate) fn decapsulate_protected(
        &mut self,
        src: Ipv4Addr,
        payload: &[u8],
    ) -> Result<(), DropReason> {
        self.decapsulate_vxlan(src, payload, true)
    }

    fn decapsulate_vxlan(
        &mut self,
        src: Ipv4Addr,
        payload: &[u8],
        protected: bool,
    ) -> Result<(), DropReason> {
        let vx = wire::vxlan::Packet::new_checked(payload).map_err(|_| DropReason::Malformed)?;
        if !vx.has_vni() {
            return Err(DropReason::VxlanNoIFlag);
        }
        // Only the network's own peers may put frames on it, with or without ESP: an ESP peer
        // of another network holds the same keys but no business on this VNI.
        let net = self.t.network_from(vx.vni(), src).inspect_err(|r| {
            if *r == DropReason::UnknownVtep {
                self.st.unknown_vtep = Some(src);
            }
        })?;
        let info = self.t.network(net).ok_or(DropReason::UnknownVni)?;
        if !protected && info.encrypted {
            return Err(DropReason::CleartextOnEncrypted);
        }
        let inner = vx.payload();
        let kind = inner::check(inner)?;
        // A checksum left open by the sender (RCO) is taken from any peer, as Linux's
        // `remcsumrx` takes it: finished here, or by the port's link (`deliver_open`).
        let (inner, rco) = match vx.rco() {
            Some(c) => {
                let (c, end) = open_checksum(inner, kind, c)?;
                self.c.events.rco_received += 1;
                // Without its padding: the checksum covers the packet only.
                (&inner[..end], Some(c))
            }
            None => (inner, None),
        };
        let dst = mac_at(inner, 0);
        if dst.is_multicast() {
            return Err(DropReason::Broadcast);
        }
        match self.t.lookup_mac(net, dst) {
            Some(Dest::Local(q)) => {
                match rco {
                    None => self.deliver(q, net, inner),
                    Some(c) => self.deliver_open(q, net, inner, c),
                }
                Ok(())
            }
            _ => Err(DropReason::UnknownDestination),
        }
    }
}
