//! What the core hands back: packets to send, each with its target, in one reusable arena.
//!
//! The caller owns an `Output`, passes it to every call of a batch, sends what it holds, then
//! `clear`s it: the arena keeps its capacity, so steady-state forwarding allocates nothing.

use std::net::Ipv4Addr;
use std::ops::Range;

use super::tables::PortId;

/// Offset of the UDP payload (the VXLAN header) in an underlay datagram: IPv4 20 + UDP 8.
/// A runtime sending through a UDP socket sends `bytes[UNDERLAY_UDP_PAYLOAD..]`.
pub const UNDERLAY_UDP_PAYLOAD: usize = 28;
/// Offset of the IP payload (the ESP header) in an underlay datagram: IPv4 20.
pub const UNDERLAY_IP_PAYLOAD: usize = 20;

/// Where an emitted packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// An Ethernet frame for a local port.
    Port(PortId),
    /// A whole outer IPv4 datagram (IPv4, UDP, VXLAN, inner frame) for the underlay.
    Underlay(UnderlayDst),
    /// A DNS query (the bare message) for the host's resolvers; the answer goes back to the
    /// client through `Dataplane::resolver_answer`.
    Resolver(super::resolver::DnsClient),
    /// An IPv4 packet (no Ethernet) that the task at this port, on a bridge network, sent to
    /// the host's side: it leaves the node through the runtime's egress; answers come back
    /// through `Dataplane::egress_answer`.
    Egress(PortId),
}

/// The outer addressing of an underlay datagram, also written in its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnderlayDst {
    pub addr: Ipv4Addr,
    /// UDP destination port (0 for `UnderlayKind::EspIp`).
    pub port: u16,
    /// UDP source port: chosen from the inner flow (49152-65535) for VXLAN, the ESP-in-UDP port
    /// for `EspUdp`, 0 for `EspIp`.
    pub src_port: u16,
    /// What the datagram carries, and so how a runtime sends it.
    pub kind: UnderlayKind,
}

impl UnderlayDst {
    /// Where the part a socket sends starts in the emitted datagram.
    pub fn payload_offset(&self) -> usize {
        self.kind.payload_offset()
    }
}

/// The kinds of underlay datagram, by the socket that sends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnderlayKind {
    /// Cleartext VXLAN: a UDP socket sends `bytes[28..]` to `addr:port`.
    Vxlan,
    /// ESP in UDP (RFC 3948): a UDP socket bound to the ESP-in-UDP port sends `bytes[28..]`
    /// to `addr:port`.
    EspUdp,
    /// ESP as IP protocol 50: a raw socket (IPPROTO_ESP) sends `bytes[20..]` to `addr`.
    EspIp,
}

impl UnderlayKind {
    /// Offset of the socket payload in the emitted IPv4 datagram.
    pub const fn payload_offset(self) -> usize {
        match self {
            UnderlayKind::Vxlan | UnderlayKind::EspUdp => UNDERLAY_UDP_PAYLOAD,
            UnderlayKind::EspIp => UNDERLAY_IP_PAYLOAD,
        }
    }
}

#[derive(Debug, Clone)]
struct Item {
    target: Target,
    range: Range<usize>,
    /// A TCP super-frame for a port: the segment size it is to be cut at (0: a plain frame).
    gso: u16,
    /// A frame for a port whose TCP or UDP checksum field holds the pseudo-header's sum only:
    /// where the checksum starts and the field's offset from there (see `Meta::partial`).
    partial: Option<(u16, u16)>,
    /// The packet goes on with the input frame of the call that emitted it (`Meta`).
    input_follows: bool,
}

/// What a runtime must know of an emitted packet besides its target and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Meta {
    /// A TCP super-frame: the segment size it is to be cut at (see `Output::iter_gso`).
    pub gso: Option<u16>,
    /// A frame for a port whose transport checksum is left to its link, as a TAP's virtio-net
    /// header with NEEDS_CSUM says it (`csum_start`, `csum_offset`): its field holds the
    /// pseudo-header's sum. Only with `Dataplane::set_partial_checksums`; a runtime that
    /// hands it to anything else finishes it first (`gso::finish_checksum`).
    pub partial: Option<(u16, u16)>,
    /// The packet's bytes are its headers only: it goes on with the frame the emitting call
    /// was given (a tunnelled super-frame, `Dataplane::set_tunnel_gso`), which the runtime
    /// still holds and must send from before it reads the next one.
    pub input_follows: bool,
}

/// Packets emitted by the core, in order.
#[derive(Debug, Default, Clone)]
pub struct Output {
    buf: Vec<u8>,
    items: Vec<Item>,
}

impl Output {
    pub fn new() -> Output {
        Output::default()
    }

    /// Pre-sizes the arena for `packets` packets of `bytes` bytes in all.
    pub fn with_capacity(packets: usize, bytes: usize) -> Output {
        Output {
            buf: Vec::with_capacity(bytes),
            items: Vec::with_capacity(packets),
        }
    }

    /// Forgets the packets, keeping the memory.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.items.clear();
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The emitted packets, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (Target, &[u8])> + '_ {
        self.items
            .iter()
            .map(|i| (i.target, &self.buf[i.range.clone()]))
    }

    /// The emitted packets, in order, each with its segment size when it is a TCP super-frame
    /// (`Dataplane::egress_answer` with a GSO size): such a frame's TCP checksum holds the
    /// pseudo-header sum only, and a port takes it behind a virtio-net GSO header or cut into
    /// segments ([`super::gso::segment_super_frame`]).
    pub fn iter_gso(&self) -> impl ExactSizeIterator<Item = (Target, Option<u16>, &[u8])> + '_ {
        self.iter_meta()
            .map(|(t, meta, bytes)| (t, meta.gso, bytes))
    }

    /// Every emitted packet with what the runtime must know of it, in order.
    pub fn iter_meta(&self) -> impl ExactSizeIterator<Item = (Target, Meta, &[u8])> + '_ {
        self.items.iter().map(|i| {
            let meta = Meta {
                gso: (i.gso != 0).then_some(i.gso),
                partial: i.partial,
                input_follows: i.input_follows,
            };
            (i.target, meta, &self.buf[i.range.clone()])
        })
    }

    /// Marks the last packet emitted as leaving its checksum (from `start`, field at `offset`)
    /// to the port's link.
    pub(crate) fn set_last_partial(&mut self, start: u16, offset: u16) {
        if let Some(i) = self.items.last_mut() {
            i.partial = Some((start, offset));
        }
    }

    /// Marks the last packet emitted as going on with the emitting call's input frame.
    pub(crate) fn set_last_input_follows(&mut self) {
        if let Some(i) = self.items.last_mut() {
            i.input_follows = true;
        }
    }

    /// Whether the last packet emitted goes on with the emitting call's input frame: the
    /// runtime sends it (`iter_meta`) before it lets that frame go.
    pub fn last_input_follows(&self) -> bool {
        self.items.last().is_some_and(|i| i.input_follows)
    }

    /// Marks the last packet emitted as a TCP super-frame of segments of `gso` bytes.
    pub(crate) fn set_last_gso(&mut self, gso: u16) {
        if let Some(i) = self.items.last_mut() {
            i.gso = gso;
        }
    }

    /// Takes the last packet emitted back out of the arena.
    pub(crate) fn pop(&mut self) -> Option<Vec<u8>> {
        let item = self.items.pop()?;
        let bytes = self.buf.get(item.range.clone())?.to_vec();
        self.buf.truncate(item.range.start);
        Some(bytes)
    }

    /// The bytes of the last packet emitted, to patch in place.
    pub(crate) fn last_mut(&mut self) -> Option<&mut [u8]> {
        let r = self.items.last()?.range.clone();
        self.buf.get_mut(r)
    }

    /// Appends one packet whose bytes `write` pushes onto the arena.
    pub(crate) fn emit(&mut self, target: Target, write: impl FnOnce(&mut Vec<u8>)) -> usize {
        let start = self.buf.len();
        write(&mut self.buf);
        let end = self.buf.len();
        self.items.push(Item {
            target,
            range: start..end,
            gso: 0,
            partial: None,
            input_follows: false,
        });
        end - start
    }

    /// Like `emit`, but when `write` fails nothing is appended and its error is returned.
    pub(crate) fn try_emit<E>(
        &mut self,
        target: Target,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<usize, E> {
        let start = self.buf.len();
        if let Err(e) = write(&mut self.buf) {
            self.buf.truncate(start);
            return Err(e);
        }
        let end = self.buf.len();
        self.items.push(Item {
            target,
            range: start..end,
            gso: 0,
            partial: None,
            input_follows: false,
        });
        Ok(end - start)
    }
}
