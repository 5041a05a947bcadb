//! Counters: drops by reason (stable snake_case names), traffic per port, events.
//!
//! Each worker owns its `Counters`; readers sum them (`Counters::merge`).

use std::collections::BTreeMap;

use serde::Serialize;

macro_rules! drop_reasons {
    ($($variant:ident => $name:literal: $doc:literal,)*) => {
        /// Why a packet was dropped. The names are stable: scripts and goldens depend on them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum DropReason {
            $(#[doc = $doc] $variant,)*
        }

        impl DropReason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];

            /// The stable snake_case name.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(DropReason::$variant => $name,)*
                }
            }
        }
    };
}

drop_reasons! {
    Malformed => "malformed": "Too short for its headers, or a length field that contradicts the bytes.",
    UnknownPort => "unknown_port": "A frame from a port the tables do not know.",
    SpoofedSource => "spoofed_source": "A frame from a port whose source MAC is not that port's.",
    Broadcast => "broadcast": "Broadcast or multicast other than ARP: never flooded, like Docker's overlay.",
    UnknownDestination => "unknown_destination": "No endpoint with that destination MAC on the network.",
    Hairpin => "hairpin": "A frame addressed to the port it came from.",
    ArpUnknownTarget => "arp_unknown_target": "An ARP request for an address no endpoint or gateway has.",
    ArpUnsupported => "arp_unsupported": "ARP other than an Ethernet/IPv4 request (replies, other hardware types).",
    MtuExceeded => "mtu_exceeded": "Larger than the network MTU and not fragmentable (DF set, or not IPv4).",
    NotIpv4 => "not_ipv4": "An underlay packet that is not IPv4.",
    NotForUs => "not_for_us": "An underlay packet addressed to another host.",
    OuterFragment => "outer_fragment": "A fragmented underlay packet (the host's stack reassembles; replay does not).",
    BadChecksum => "bad_checksum": "An underlay IPv4 header or UDP checksum that does not verify.",
    NotVxlan => "not_vxlan": "An underlay packet that is not UDP to the data-path port.",
    VxlanNoIFlag => "vxlan_no_i_flag": "A VXLAN header without the I flag: no valid VNI.",
    UnknownVni => "unknown_vni": "A VNI of no network this node has.",
    PortTxFailed => "port_tx_failed": "The runtime could not write a frame to a task's interface (queue full).",
    UnderlayTxFailed => "underlay_tx_failed": "The runtime could not send a datagram on the underlay (socket buffer full, no route).",
    CleartextOnEncrypted => "cleartext_on_encrypted": "Cleartext VXLAN for the VNI of an encrypted network.",
    EspUnknownSpi => "esp_unknown_spi": "ESP with an SPI of no SA this node has (unknown peer or key).",
    EspAuth => "esp_auth": "ESP whose integrity check value does not verify (tampered, wrong key).",
    EspReplay => "esp_replay": "ESP with a sequence number already received or older than the anti-replay window.",
    EspSeqExhausted => "esp_seq_exhausted": "An SA used up its 64-bit sequence numbers; a key rotation replaces it.",
    EspSeqUnreserved => "esp_seq_unreserved": "The SA's next sequence numbers are not yet reserved in the node's state file (see the log).",
    UnknownVtep => "unknown_vtep": "VXLAN or ESP from an address that is no VTEP of the network (or of any network) in the node's tables.",
    MalformedInner => "malformed_inner": "An inner frame cut short: Ethernet header, ARP body or IPv4 header and total length not whole.",
    VipNoBackend => "vip_no_backend": "A new connection to a service's VIP while the service has no running task (TCP gets a RST).",
    ConntrackFull => "conntrack_full": "A new connection to a VIP while the node tracks its maximum of flows.",
    VipUnsupported => "vip_unsupported": "A packet to a VIP that is neither TCP, UDP nor ICMP echo (or a later fragment).",
    DnsMalformed => "dns_malformed": "A datagram to the resolver address that is no DNS query (shorter than a header, or a response).",
    IccDisabled => "icc_disabled": "A frame between two tasks on a bridge network made without inter-container traffic (docker_gwbridge: enable_icc=false).",
    EgressRefused => "egress_refused": "A packet for the host's side (docker_gwbridge) that the node's egress could not take: none running, its queue full, or no flow for it.",
}

impl DropReason {
    pub const COUNT: usize = Self::ALL.len();
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Packets and bytes in each direction of one port (an endpoint, or the underlay).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PortCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

impl PortCounters {
    pub fn rx(&mut self, len: usize) {
        self.rx_packets += 1;
        self.rx_bytes += len as u64;
    }

    pub fn tx(&mut self, len: usize) {
        self.tx_packets += 1;
        self.tx_bytes += len as u64;
    }

    fn merge(&mut self, o: &PortCounters) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
    }

    pub fn is_zero(&self) -> bool {
        *self == PortCounters::default()
    }
}

/// Things the core did besides forwarding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Events {
    /// ARP requests answered locally.
    pub arp_replies: u64,
    /// ICMP "fragmentation needed" messages sent back to a task.
    pub icmp_frag_needed: u64,
    /// Packets split to fit the network MTU.
    pub packets_fragmented: u64,
    /// Fragments those packets became.
    pub fragments_created: u64,
    /// ICMP echo requests to a VIP answered by the node.
    #[serde(skip_serializing_if = "is_zero")]
    pub vip_echo_replies: u64,
    /// TCP RSTs sent to end VIP flows that idled out, were drained or found no backend.
    #[serde(skip_serializing_if = "is_zero")]
    pub vip_resets: u64,
    /// DNS queries answered by the node from the service view.
    #[serde(skip_serializing_if = "is_zero")]
    pub dns_answered: u64,
    /// DNS queries for names the swarm does not own, handed to the host's resolvers.
    #[serde(skip_serializing_if = "is_zero")]
    pub dns_forwarded: u64,
    /// Packets tasks sent to the host's side through a bridge network (docker_gwbridge).
    #[serde(skip_serializing_if = "is_zero")]
    pub egress_packets: u64,
    /// VXLAN datagrams (also inside ESP) taken with their inner checksum left open by the
    /// sender (remote checksum offload).
    #[serde(skip_serializing_if = "is_zero")]
    pub rco_received: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One worker's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub drops: [u64; DropReason::COUNT],
    /// Indexed by `PortId`.
    pub ports: Vec<PortCounters>,
    pub underlay: PortCounters,
    pub events: Events,
}

impl Counters {
    pub fn new(ports: usize) -> Counters {
        Counters {
            ports: vec![PortCounters::default(); ports],
            ..Counters::default()
        }
    }

    pub fn drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Adds another worker's counters to these.
    pub fn merge(&mut self, other: &Counters) {
        for (a, b) in self.drops.iter_mut().zip(other.drops.iter()) {
            *a += b;
        }
        if self.ports.len() < other.ports.len() {
            self.ports
                .resize(other.ports.len(), PortCounters::default());
        }
        for (a, b) in self.ports.iter_mut().zip(other.ports.iter()) {
            a.merge(b);
        }
        self.underlay.merge(&other.underlay);
        let (e, o) = (&mut self.events, &other.events);
        e.arp_replies += o.arp_replies;
        e.icmp_frag_needed += o.icmp_frag_needed;
        e.packets_fragmented += o.packets_fragmented;
        e.fragments_created += o.fragments_created;
        e.vip_echo_replies += o.vip_echo_replies;
        e.vip_resets += o.vip_resets;
        e.dns_answered += o.dns_answered;
        e.dns_forwarded += o.dns_forwarded;
        e.egress_packets += o.egress_packets;
        e.rco_received += o.rco_received;
    }

    /// Non-zero drops by name, in name order.
    pub fn drops_by_name(&self) -> BTreeMap<&'static str, u64> {
        DropReason::ALL
            .iter()
            .filter(|r| self.dropped(**r) > 0)
            .map(|r| (r.as_str(), self.dropped(*r)))
            .collect()
    }
}

/// What `counters.json` holds: non-zero drops by name, every port by name (the underlay as
/// `underlay`), and events.
#[derive(Debug, Serialize)]
pub struct CountersReport<'a> {
    pub drops: BTreeMap<&'static str, u64>,
    pub ports: BTreeMap<&'a str, PortCounters>,
    pub events: Events,
    /// Kernel statistics of the tasks' interfaces (live runtime only): what the node never saw.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub task_interfaces: BTreeMap<String, InterfaceStats>,
}

/// A task interface's drops as its kernel counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct InterfaceStats {
    /// Frames the task sent that the kernel dropped because the TAP queue was full: the node did
    /// not read them in time.
    pub tx_dropped: u64,
    /// Frames the node wrote that the task's kernel dropped on receipt.
    pub rx_dropped: u64,
}

impl Counters {
    /// The report of these counters, naming ports by `port_names` (indexed by `PortId`; ports
    /// with an empty name, ids no port has any more, are left out).
    pub fn report<'a>(&self, port_names: &'a [String]) -> CountersReport<'a> {
        let mut ports: BTreeMap<&str, PortCounters> = port_names
            .iter()
            .zip(self.ports.iter())
            .filter(|(n, _)| !n.is_empty())
            .map(|(n, c)| (n.as_str(), *c))
            .collect();
        ports.insert("underlay", self.underlay);
        CountersReport {
            drops: self.drops_by_name(),
            ports,
            events: self.events,
            task_interfaces: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        assert!(names.iter().all(|n| n
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')));
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
    }

    #[test]
    fn merge_sums_workers() {
        let mut a = Counters::new(2);
        let mut b = Counters::new(2);
        a.drop(DropReason::UnknownVni);
        b.drop(DropReason::UnknownVni);
        b.drop(DropReason::Malformed);
        b.ports[1].rx(100);
        b.events.arp_replies = 3;
        a.merge(&b);
        assert_eq!(a.dropped(DropReason::UnknownVni), 2);
        assert_eq!(a.total_drops(), 3);
        assert_eq!(a.ports[1].rx_bytes, 100);
        assert_eq!(a.events.arp_replies, 3);
        let names = a.drops_by_name();
        assert_eq!(names.get("unknown_vni"), Some(&2));
        assert_eq!(names.get("malformed"), Some(&1));
        assert_eq!(names.len(), 2);
    }
}
