//! Forwarding tables: an immutable snapshot built from a topology.
//!
//! Workers hold an `Arc<Tables>`; the control plane builds a new one and swaps it in, so lookups
//! never take a lock and never see a half-updated table.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use rustc_hash::FxHashMap;

use std::sync::Arc;

use super::counters::DropReason;
use super::dns::DnsTable;
use super::esp::{EspTable, Key, Keyring, Transport};
use super::lb::{Conntrack, LbTable};
use super::services::{Backend, NetServices, Service, ServiceView};
use crate::topology::{self, Topology};
use crate::wire::MacAddr;

/// A local port's identity for as long as the port exists: kept across table snapshots, so
/// that counters, worker queues and emitted packets keep naming the same task while others come
/// and go. Fresh tables number their ports 0, 1, ... in endpoint order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortId(pub u32);

/// Index of a network in `Tables::networks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NetId(pub u32);

/// A local port: the interface of a task on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    pub id: PortId,
    pub name: String,
    pub network: NetId,
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
}

/// An overlay network as the data path needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetInfo {
    pub name: String,
    pub vni: u32,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub gateway_mac: MacAddr,
    pub mtu: u16,
    /// VXLAN of this network travels only inside ESP.
    pub encrypted: bool,
    /// A bridge to the host (docker_gwbridge): what its ports send to the gateway leaves the
    /// node (`Target::Egress`); nothing of it is encapsulated.
    pub bridge: Option<crate::topology::Bridge>,
    /// The VTEPs of this network's remote endpoints, sorted: the only underlay sources whose
    /// VXLAN for this VNI is accepted.
    pub vteps: Vec<Ipv4Addr>,
}

impl NetInfo {
    /// True if `addr` is a VTEP of one of this network's remote endpoints.
    #[inline]
    pub fn is_vtep(&self, addr: Ipv4Addr) -> bool {
        self.vteps.binary_search(&addr).is_ok()
    }
}

/// Where frames for a MAC go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    Local(PortId),
    /// Encapsulate to this VTEP.
    Remote(Ipv4Addr),
}

/// One node's forwarding state.
#[derive(Debug, Clone)]
pub struct Tables {
    pub node_name: String,
    pub data_path_addr: Ipv4Addr,
    pub data_path_port: u16,
    /// Peers take VXLAN remote checksum offload: TCP bursts leave with their checksums open
    /// (`topology::Node::remote_checksum_offload`).
    pub remote_checksum_offload: bool,
    pub networks: Vec<NetInfo>,
    /// In endpoint order; see `port` for lookups by id.
    pub ports: Vec<PortInfo>,
    /// Index in `ports` of every `PortId` (u32::MAX: none).
    port_slots: Vec<u32>,
    /// SAs and keys, when the topology has an `[encryption]` table.
    pub esp: Option<EspTable>,
    /// The services of each network (discovery and VIPs read it).
    pub services: Arc<ServiceView>,
    /// The VIPs and their backends.
    pub lb: LbTable,
    /// The names the embedded DNS answers.
    pub dns: Arc<DnsTable>,
    /// Per port slot (as `port_slots`): the networks of the port's task, its own first (the
    /// order in which DNS looks a name up).
    task_nets: Vec<Vec<usize>>,
    /// Shared, mutable state that is not part of the snapshot: the VIP flows of every worker
    /// of the node, carried from one snapshot to the next (`keeping_state_of`).
    pub conntrack: Arc<Conntrack>,
    by_vni: FxHashMap<u32, NetId>,
    /// (VNI, VTEP) for every remote VTEP of each network: one lookup finds the network of a
    /// datagram and admits its source.
    /// Keyed by `vni_vtep_key`: one 64-bit key hashes in one round.
    by_vni_vtep: FxHashMap<u64, NetId>,
    by_mac: FxHashMap<(NetId, MacAddr), Dest>,
    by_ip: FxHashMap<(NetId, Ipv4Addr), MacAddr>,
}

impl Tables {
    /// Builds the tables of a validated topology (see `topology.rs` for the rules it enforces).
    pub fn from_topology(topo: &Topology) -> Tables {
        let mut next = 0;
        Tables::with_port_ids(topo, |_| {
            next += 1;
            PortId(next - 1)
        })
    }

    /// Like `from_topology`, with every local endpoint's port id given by `port_id` (which must
    /// give distinct ids).
    pub fn with_port_ids(topo: &Topology, mut port_id: impl FnMut(&str) -> PortId) -> Tables {
        let mut t = Tables {
            node_name: topo.node.name.clone(),
            data_path_addr: topo.node.data_path_addr,
            data_path_port: topo.node.data_path_port,
            remote_checksum_offload: topo.node.remote_checksum_offload,
            networks: Vec::with_capacity(topo.networks.len()),
            ports: Vec::new(),
            port_slots: Vec::new(),
            esp: None,
            services: Arc::default(),
            lb: LbTable::default(),
            dns: Arc::default(),
            task_nets: Vec::new(),
            conntrack: Arc::default(),
            by_vni: FxHashMap::default(),
            by_vni_vtep: FxHashMap::default(),
            by_mac: FxHashMap::default(),
            by_ip: FxHashMap::default(),
        };
        for n in &topo.networks {
            let id = NetId(t.networks.len() as u32);
            if n.bridge.is_none() {
                t.by_vni.insert(n.vni, id);
            }
            t.networks.push(NetInfo {
                name: n.name.clone(),
                vni: n.vni,
                subnet: n.subnet,
                gateway: n.gateway,
                gateway_mac: MacAddr::from_ipv4(n.gateway),
                mtu: n.mtu,
                encrypted: n.encrypted,
                bridge: n.bridge,
                vteps: Vec::new(),
            });
        }
        for e in &topo.endpoints {
            let Some(net) = t.network_id(&e.network) else {
                continue; // refused by topology validation; never reached for a loaded file
            };
            let dest = match e.vtep {
                Some(vtep) => {
                    if let Some(n) = t.networks.get_mut(net.0 as usize) {
                        if let Err(at) = n.vteps.binary_search(&vtep) {
                            n.vteps.insert(at, vtep);
                        }
                        t.by_vni_vtep.insert(vni_vtep_key(n.vni, vtep), net);
                    }
                    Dest::Remote(vtep)
                }
                None => {
                    let id = port_id(&e.name);
                    let slot = id.0 as usize;
                    if t.port_slots.len() <= slot {
                        t.port_slots.resize(slot + 1, u32::MAX);
                    }
                    t.port_slots[slot] = t.ports.len() as u32;
                    t.ports.push(PortInfo {
                        id,
                        name: e.name.clone(),
                        network: net,
                        mac: e.mac,
                        ip: e.ip,
                    });
                    Dest::Local(id)
                }
            };
            t.by_mac.insert((net, e.mac), dest);
            t.by_ip.insert((net, e.ip), e.mac);
        }
        t.esp = topo.encryption.as_ref().map(|enc| esp_table(topo, enc));
        let view = service_view(topo);
        t.lb = LbTable::new(&view);
        // ARP for a VIP is answered with its MAC; frames to that MAC go to the balancer.
        for v in &t.lb.vips {
            t.by_ip.entry((v.net, v.ip)).or_insert(v.mac);
        }
        t.dns = Arc::new(DnsTable::new(&view));
        t.services = Arc::new(view);
        // A task is the endpoints of one namespace (a virtual task has one endpoint).
        let task_of = |e: &topology::Endpoint| {
            if e.is_virtual() {
                format!("v:{}", e.name)
            } else {
                format!("n:{}", e.netns_name())
            }
        };
        // Grouped once (a search per port made a table of N tasks cost N^2 keys).
        let mut by_name: FxHashMap<&str, &topology::Endpoint> = FxHashMap::default();
        let mut by_task: FxHashMap<String, Vec<&topology::Endpoint>> = FxHashMap::default();
        for e in topo.local_endpoints() {
            by_name.entry(e.name.as_str()).or_insert(e);
            by_task.entry(task_of(e)).or_default().push(e);
        }
        t.task_nets = t
            .ports
            .iter()
            .map(|p| {
                let mut nets = vec![p.network.0 as usize];
                if let Some(e) = by_name.get(p.name.as_str()) {
                    let others = by_task.get(&task_of(e)).into_iter().flatten();
                    for o in others.filter(|o| o.name != e.name) {
                        if let Some(n) = t.network_id(&o.network) {
                            nets.push(n.0 as usize);
                        }
                    }
                }
                nets
            })
            .collect();
        t
    }

    /// The networks of the task behind `port`, its own first (none for an unknown port).
    pub fn task_networks(&self, port: PortId) -> &[usize] {
        self.port_slots
            .get(port.0 as usize)
            .and_then(|slot| self.task_nets.get(*slot as usize))
            .map_or(&[], Vec::as_slice)
    }

    /// Tables for `topo` that keep the SAs of `previous` for every key both share, so that
    /// sequence numbers and replay windows carry on. A control plane swapping in new tables
    /// must build them this way: fresh SAs under a key in use would reuse GCM nonces.
    pub fn from_topology_after(topo: &Topology, previous: &Tables) -> Tables {
        Tables::from_topology(topo).keeping_state_of(previous)
    }

    /// These tables with the shared state of `previous`: the SAs of every key both share (see
    /// `from_topology_after`) and the VIP flows, whose departed backends' answers are still
    /// expected while their flows drain.
    pub fn keeping_state_of(mut self, previous: &Tables) -> Tables {
        if let (Some(new), Some(old)) = (&self.esp, &previous.esp) {
            self.esp = Some(old.rotate_to(new));
        }
        self.conntrack = Arc::clone(&previous.conntrack);
        if !self.conntrack.is_empty() {
            // Networks are matched by name: ids may differ between snapshots.
            let kept: Vec<(NetId, Ipv4Addr)> = self
                .conntrack
                .backends_with_flows()
                .into_iter()
                .filter_map(|(net, ip)| {
                    let name = &previous.network(NetId(net))?.name;
                    Some((self.network_id(name)?, ip))
                })
                .collect();
            self.lb.keep_reply_sources(kept);
        }
        self
    }

    /// One more than the highest port id: the length of vectors indexed by `PortId`.
    pub fn port_id_bound(&self) -> usize {
        self.port_slots.len()
    }

    /// Port names indexed by `PortId` (empty where no port has the id).
    pub fn port_names(&self) -> Vec<String> {
        let mut names = vec![String::new(); self.port_id_bound()];
        for p in &self.ports {
            names[p.id.0 as usize] = p.name.clone();
        }
        names
    }

    pub fn network_id(&self, name: &str) -> Option<NetId> {
        self.networks
            .iter()
            .position(|n| n.name == name)
            .map(|i| NetId(i as u32))
    }

    pub fn port_id(&self, name: &str) -> Option<PortId> {
        self.ports.iter().find(|p| p.name == name).map(|p| p.id)
    }

    #[inline]
    pub fn port(&self, id: PortId) -> Option<&PortInfo> {
        let slot = *self.port_slots.get(id.0 as usize)?;
        self.ports.get(slot as usize)
    }

    #[inline]
    pub fn network(&self, id: NetId) -> Option<&NetInfo> {
        self.networks.get(id.0 as usize)
    }

    pub fn network_by_vni(&self, vni: u32) -> Option<NetId> {
        self.by_vni.get(&vni).copied()
    }

    /// The network of VXLAN for `vni` from `src`: `unknown_vni` if no network has the VNI,
    /// `unknown_vtep` if `src` is not one of that network's VTEPs.
    #[inline]
    pub fn network_from(&self, vni: u32, src: Ipv4Addr) -> Result<NetId, DropReason> {
        match self.by_vni_vtep.get(&vni_vtep_key(vni, src)) {
            Some(net) => Ok(*net),
            None if self.by_vni.contains_key(&vni) => Err(DropReason::UnknownVtep),
            None => Err(DropReason::UnknownVni),
        }
    }

    /// True if `addr` is a VTEP of any network: ESP from anywhere else is refused unopened.
    pub fn is_any_vtep(&self, addr: Ipv4Addr) -> bool {
        self.networks.iter().any(|n| n.is_vtep(addr))
    }

    #[inline]
    pub fn lookup_mac(&self, net: NetId, mac: MacAddr) -> Option<Dest> {
        self.by_mac.get(&(net, mac)).copied()
    }

    /// The MAC that answers ARP for `ip` on `net`: an endpoint's, or the gateway's.
    pub fn resolve_ip(&self, net: NetId, ip: Ipv4Addr) -> Option<MacAddr> {
        if let Some(mac) = self.by_ip.get(&(net, ip)) {
            return Some(*mac);
        }
        let n = self.network(net)?;
        (n.gateway == ip).then_some(n.gateway_mac)
    }
}

#[inline]
fn vni_vtep_key(vni: u32, vtep: Ipv4Addr) -> u64 {
    (u64::from(vni) << 32) | u64::from(u32::from(vtep))
}

/// The services of a topology, per network in network order.
fn service_view(topo: &Topology) -> ServiceView {
    let mut view = ServiceView {
        networks: topo
            .networks
            .iter()
            .map(|n| NetServices {
                network: n.name.clone(),
                ingress: n.ingress,
                services: Vec::new(),
            })
            .collect(),
    };
    for s in &topo.services {
        let Some(i) = topo.networks.iter().position(|n| n.name == s.network) else {
            continue; // refused by topology validation
        };
        let mut backends: Vec<Backend> = s
            .tasks
            .iter()
            .filter_map(|name| topo.endpoints.iter().find(|e| &e.name == name))
            .map(|e| Backend {
                task: e.task_name().to_string(),
                ip: e.ip,
            })
            .collect();
        backends.sort_by(|a, b| a.task.cmp(&b.task));
        view.networks[i].services.push(Service {
            name: s.name.clone(),
            aliases: s.aliases.clone(),
            vip: s.vip,
            backends,
        });
    }
    view
}

/// The SA table of a topology with `[encryption]`: SAs with every remote VTEP.
fn esp_table(topo: &Topology, enc: &topology::Encryption) -> EspTable {
    let keys = enc
        .keys
        .iter()
        .map(|k| Key {
            tag: k.tag,
            key: k.key,
        })
        .collect();
    // Validated by topology.rs: 1-3 keys, distinct tags, primary among them.
    let keyring = Keyring::new(keys, enc.primary).unwrap_or_else(|_| Keyring {
        keys: Vec::new(),
        primary: enc.primary,
    });
    let transport = match enc.transport {
        topology::EspTransport::Ip => Transport::Ip,
        topology::EspTransport::Udp => Transport::Udp,
    };
    EspTable::new(
        transport,
        enc.udp_port,
        keyring,
        topo.node.data_path_addr,
        topo.endpoints.iter().filter_map(|e| e.vtep),
        topo.networks.iter().filter(|n| n.encrypted).map(|n| n.vni),
    )
}
