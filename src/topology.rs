//! One node's static view of the swarm, read from TOML.
//!
//! Other code and tests depend on this schema: extend it compatibly, never rename a field.
//! Every error names the file, the line and the object at fault.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::wire::MacAddr;

/// Default VXLAN data-path port (IANA).
pub const DEFAULT_DATA_PATH_PORT: u16 = 4789;
/// Default overlay MTU: 1500 minus the 50 bytes of VXLAN over IPv4 outer headers.
pub const DEFAULT_MTU: u16 = 1500 - 50;

/// A node's whole static view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub node: Node,
    pub networks: Vec<Network>,
    pub endpoints: Vec<Endpoint>,
}

/// `[node]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    /// This node's VTEP address.
    pub data_path_addr: Ipv4Addr,
    /// UDP port of the data path, 1024-49151.
    pub data_path_port: u16,
}

/// `[[network]]`: an overlay network (one L2 segment, one VNI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub name: String,
    /// 1-16777215
    pub vni: u32,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// Largest inner IPv4 packet (bytes) the network carries.
    pub mtu: u16,
}

/// `[[endpoint]]`: a task's interface on a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub name: String,
    pub network: String,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    /// `Some`: lives on that remote node. `None`: a local port named `name`.
    pub vtep: Option<Ipv4Addr>,
    /// Network namespace of a local endpoint (live runtime); default: the endpoint name.
    pub netns: Option<String>,
}

impl Endpoint {
    pub fn is_local(&self) -> bool {
        self.vtep.is_none()
    }
}

impl Topology {
    /// The network named `name`.
    pub fn network(&self, name: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.name == name)
    }

    /// Endpoints that are local ports of this node, in file order.
    pub fn local_endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.endpoints.iter().filter(|e| e.is_local())
    }
}
