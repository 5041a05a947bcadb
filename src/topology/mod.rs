//! One node's static view of the swarm, read from TOML.
//!
//! Other code and tests depend on this schema: extend it compatibly, never rename a field.
//! Every error names the file, the line and the object at fault.
//!
//! [`Topology::parse`] reads the TOML into spanned raw values first and validates second, so a
//! returned `Topology` holds only what the rest of the stack may assume: unique network names,
//! VNIs and non-overlapping subnets; endpoint names usable as file names; endpoint IPs inside their
//! subnet and unique per network; unicast, non-zero MACs unique per network; an `[encryption]`
//! table whenever a network is encrypted, with 1-3 AES-128 keys of distinct tags and a primary
//! among them.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;

use ipnet::Ipv4Net;

use crate::wire::MacAddr;

mod parse;
pub use parse::dns_name_problem;
mod view;
pub use parse::{DEFAULT_IFACE, MAX_FILE_NAME};
pub use view::ViewError;
#[cfg(test)]
mod tests;

/// Default VXLAN data-path port (IANA).
pub const DEFAULT_DATA_PATH_PORT: u16 = 4789;
/// Default overlay MTU: 1500 minus the 50 bytes of VXLAN over IPv4 outer headers.
pub const DEFAULT_MTU: u16 = 1500 - 50;
/// Bytes ESP (AES-GCM, RFC 4106) adds to an encrypted network's underlay packets, padding
/// aside: SPI 4, sequence number 4, IV 8, pad length 1, next header 1, ICV 16.
pub const ESP_EXPANSION: u16 = 34;
/// The same with `transport = "udp"`: the RFC 3948 UDP header adds 8.
pub const ESP_UDP_EXPANSION: u16 = ESP_EXPANSION + 8;
/// Default ESP-in-UDP port (IANA "ipsec-nat-t").
pub const DEFAULT_ESP_UDP_PORT: u16 = 4500;

/// The MTU of an encrypted network over an underlay of `underlay_mtu` bytes: minus 50 for
/// VXLAN, minus the ESP expansion, rounded down to a multiple of 4 (which also leaves ESP no
/// padding to add for a full-size packet). 1416 with `transport = "ip"`, 1408 with "udp".
pub const fn encrypted_mtu(underlay_mtu: u16, transport: EspTransport) -> u16 {
    let expansion = match transport {
        EspTransport::Ip => ESP_EXPANSION,
        EspTransport::Udp => ESP_UDP_EXPANSION,
    };
    let mtu = underlay_mtu.saturating_sub(50 + expansion);
    mtu - mtu % 4
}

/// A node's whole static view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub node: Node,
    pub networks: Vec<Network>,
    pub endpoints: Vec<Endpoint>,
    /// `[[service]]`: the services on each network, for discovery and VIPs.
    pub services: Vec<Service>,
    /// `[encryption]`: the swarm's keys, present when any network may be encrypted.
    pub encryption: Option<Encryption>,
}

/// `[node]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    /// This node's VTEP address.
    pub data_path_addr: Ipv4Addr,
    /// UDP port of the data path, 1024-49151.
    pub data_path_port: u16,
    /// `remote_checksum_offload = true`: every peer takes VXLAN remote checksum offload (RCO:
    /// swarmnet nodes, or Linux vxlan devices with `remcsumrx`), so TCP bursts may leave with
    /// their checksums for the receiver to finish. Off by default (a Linux vxlan device without
    /// `remcsumrx` drops such datagrams); the daemon's swarms turn it on. Received RCO is
    /// taken either way.
    pub remote_checksum_offload: bool,
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
    /// `encrypted = true`: VXLAN travels only inside ESP (Docker's `--opt encrypted`).
    pub encrypted: bool,
    /// `ingress = true`: the routing mesh's network; its services have no DNS names.
    pub ingress: bool,
    /// `driver = "bridge"`: the node's own network to the host (docker_gwbridge), no VXLAN
    /// (`vni` 0), local endpoints only; what its tasks send to the gateway leaves the node.
    pub bridge: Option<Bridge>,
}

/// A bridge network's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bridge {
    /// `icc = true`: its tasks may reach each other through it (Docker's
    /// `com.docker.network.bridge.enable_icc`); docker_gwbridge is made without.
    pub icc: bool,
}

/// `[encryption]`: the keys of encrypted networks and how ESP travels.
#[derive(Clone, PartialEq, Eq)]
pub struct Encryption {
    /// 1-3 keys with distinct tags, in file order.
    pub keys: Vec<EncryptionKey>,
    /// Tag of the key that seals.
    pub primary: u32,
    pub transport: EspTransport,
    /// UDP port of ESP in UDP; used with `transport = "udp"`, accepted in any case.
    pub udp_port: u16,
}

impl fmt::Debug for Encryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Key material is never printed.
        let tags: Vec<u32> = self.keys.iter().map(|k| k.tag).collect();
        f.debug_struct("Encryption")
            .field("key_tags", &tags)
            .field("primary", &self.primary)
            .field("transport", &self.transport)
            .field("udp_port", &self.udp_port)
            .finish()
    }
}

/// One AES-128 key of `[encryption]`.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptionKey {
    pub tag: u32,
    pub key: [u8; 16],
}

/// `transport` of `[encryption]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EspTransport {
    /// ESP as IP protocol 50 (raw sockets), what kernel IPsec puts on the wire.
    Ip,
    /// ESP in UDP, RFC 3948, for hosts without CAP_NET_RAW.
    Udp,
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
    /// Endpoints that name the same namespace are one task on several networks.
    pub netns: Option<String>,
    /// The endpoint's interface in its namespace (`iface`); default `eth0`. Only the `eth0`
    /// endpoint of a namespace gives it a default route (via its network's gateway).
    pub iface: Option<String>,
    /// `app`: a virtual task served inside the node by this built-in app, instead of a task
    /// in a network namespace (local endpoints only; no `netns` then).
    pub app: Option<App>,
    /// The task the endpoint belongs to, as DNS names it (`my-web.1.<task id>`); default: the
    /// endpoint's name.
    pub task: Option<String>,
}

impl Endpoint {
    pub fn is_local(&self) -> bool {
        self.vtep.is_none()
    }

    /// A local endpoint served inside the node (no namespace, no TAP, no privilege needed).
    pub fn is_virtual(&self) -> bool {
        self.is_local() && self.app.is_some()
    }

    /// The namespace of a local endpoint: `netns`, or its name.
    pub fn netns_name(&self) -> &str {
        self.netns.as_deref().unwrap_or(&self.name)
    }

    /// The task's name for DNS: `task`, or the endpoint's name.
    pub fn task_name(&self) -> &str {
        self.task.as_deref().unwrap_or(&self.name)
    }

    /// The interface of a local endpoint in its namespace: `iface`, or `eth0`.
    pub fn iface_name(&self) -> &str {
        self.iface.as_deref().unwrap_or(DEFAULT_IFACE)
    }
}

/// `[[service]]`: a service on one network (a service on several networks has one table per
/// network).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub network: String,
    /// The virtual IP (endpoint mode vip); `None`: DNS round robin.
    pub vip: Option<Ipv4Addr>,
    /// Further names on this network (`--network name=N,alias=A`).
    pub aliases: Vec<String>,
    /// The endpoints (by name) of the service's running tasks on this network.
    pub tasks: Vec<String>,
}

/// A virtual task's built-in app (`app = "..."` on an endpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum App {
    /// `"whoami"`: HTTP on port 80 that tells its name, node, address and the request, like
    /// traefik/whoami; `/data?size=N` sends N bytes of a fixed pattern.
    Whoami,
    /// `"echo"`: TCP and UDP echo on port 7.
    Echo,
    /// `"fetch http://HOST[:PORT]/PATH"`: fetches the URL every second and reports the
    /// outcome; a HOST that is a name is looked up first, at the task's resolver (the
    /// embedded DNS).
    Fetch(FetchTarget),
    /// `"lookup NAME [NAME...]"`: looks each name up at the task's resolver (the embedded DNS)
    /// every second, A records, and reports each answer when it changes, like a task running
    /// `nslookup` in a loop.
    Lookup(Vec<String>),
    /// `"ingress-sandbox"`: the node's endpoint on the ingress network from which the routing
    /// mesh carries published ports' connections to the services.
    IngressSandbox,
}

/// The URL of a `fetch` app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchTarget {
    pub host: FetchHost,
    pub port: u16,
    /// Starts with '/'.
    pub path: String,
}

/// The host of a fetch URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchHost {
    Ip(Ipv4Addr),
    /// A DNS name (a service, `tasks.<service>`, a task name).
    Name(String),
}

impl fmt::Display for FetchHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchHost::Ip(a) => write!(f, "{a}"),
            FetchHost::Name(n) => f.write_str(n),
        }
    }
}

impl fmt::Display for FetchTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}:{}{}", self.host, self.port, self.path)
    }
}

impl App {
    /// Reads an `app` value; the error says what is accepted.
    pub fn parse(s: &str) -> Result<App, String> {
        match s {
            "whoami" => return Ok(App::Whoami),
            "echo" => return Ok(App::Echo),
            "ingress-sandbox" => return Ok(App::IngressSandbox),
            _ => {}
        }
        let usage = "app must be \"whoami\", \"echo\", \"fetch http://HOST[:PORT]/PATH\" or \"lookup NAME [NAME...]\"";
        if let Some(names) = s.strip_prefix("lookup ") {
            let names: Vec<String> = names.split_whitespace().map(str::to_string).collect();
            if names.is_empty() || names.len() > MAX_LOOKUP_NAMES {
                return Err(format!(
                    "{usage}: lookup takes 1 to {MAX_LOOKUP_NAMES} names, not {}",
                    names.len()
                ));
            }
            if let Some((n, problem)) = names
                .iter()
                .find_map(|n| parse::dns_name_problem(n).map(|p| (n, p)))
            {
                return Err(format!("{usage}: lookup name {n:?} {problem}"));
            }
            return Ok(App::Lookup(names));
        }
        let Some(url) = s.strip_prefix("fetch ") else {
            return Err(format!("{usage}, not {s:?}"));
        };
        let bad = || {
            format!("{usage}: {url:?} is not an http://HOST[:PORT]/PATH URL (HOST: an IPv4 address or a name)")
        };
        let rest = url.trim().strip_prefix("http://").ok_or_else(bad)?;
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (addr, port) = match host.split_once(':') {
            Some((a, p)) => (a, p.parse::<u16>().map_err(|_| bad())?),
            None => (host, 80),
        };
        let host = match addr.parse::<Ipv4Addr>() {
            Ok(ip) => FetchHost::Ip(ip),
            Err(_) if parse::dns_name_problem(addr).is_none() => FetchHost::Name(addr.to_string()),
            Err(_) => return Err(bad()),
        };
        if port == 0 || path.chars().any(|c| c.is_control() || c == ' ') {
            return Err(bad());
        }
        Ok(App::Fetch(FetchTarget {
            host,
            port,
            path: path.to_string(),
        }))
    }
}

impl Topology {
    /// The network named `name`.
    pub fn network(&self, name: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.name == name)
    }

    /// Local endpoints in network namespaces (not virtual), in file order.
    pub fn namespaced_endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.endpoints
            .iter()
            .filter(|e| e.is_local() && !e.is_virtual())
    }

    /// Endpoints that are local ports of this node, in file order.
    pub fn local_endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.endpoints.iter().filter(|e| e.is_local())
    }
}

/// Most names one `lookup` app asks for.
pub const MAX_LOOKUP_NAMES: usize = 16;

/// Lowest data-path port accepted: ports below are reserved for system services.
pub const MIN_DATA_PATH_PORT: u16 = 1024;
/// Highest data-path port accepted: the top of the IANA registered range, below ephemeral ports.
pub const MAX_DATA_PATH_PORT: u16 = 49151;
/// Largest VNI: the VXLAN field is 24 bits wide. The smallest accepted is 1.
pub const MAX_VNI: u32 = (1 << 24) - 1;
/// Smallest overlay MTU. RFC 791: "Every internet destination must be able to receive a datagram
/// of 576 octets either in one piece or in fragments to be reassembled."
pub const MIN_MTU: u16 = 576;
/// Largest overlay MTU: the outer IPv4 packet (inner + 50 bytes) must fit its 16-bit length.
pub const MAX_MTU: u16 = u16::MAX - 50;

/// Endpoint names refused because the replay writes the underlay's and the egress's captures
/// under them.
const RESERVED_ENDPOINT_NAMES: [&str; 2] = ["underlay", "egress"];

/// What a [`TopologyError`] is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorObject {
    /// The file as a whole: TOML syntax, top-level keys.
    File,
    /// `[node]`
    Node,
    /// A `[[network]]`: its name, or `#N` (1-based, file order) if it has no usable name.
    Network(String),
    /// An `[[endpoint]]`: its name, or `#N` (1-based, file order) if it has no usable name.
    Endpoint(String),
    /// `[encryption]`
    Encryption,
    /// A `[[service]]`: its name, or `#N` (1-based, file order) if it has no usable name.
    Service(String),
}

impl fmt::Display for ErrorObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorObject::File => f.write_str("topology"),
            ErrorObject::Node => f.write_str("node"),
            ErrorObject::Network(name) => write!(f, "network {name}"),
            ErrorObject::Endpoint(name) => write!(f, "endpoint {name}"),
            ErrorObject::Encryption => f.write_str("encryption"),
            ErrorObject::Service(name) => write!(f, "service {name}"),
        }
    }
}

/// Why a topology was refused.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// The file could not be read.
    #[error("{file}: cannot read topology: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    /// The text is not TOML, or not a valid topology. `line` is 1-based.
    #[error("{file}:{line}: {object}: {message}")]
    Invalid {
        file: String,
        line: usize,
        object: ErrorObject,
        message: String,
    },
}

impl TopologyError {
    /// The 1-based line at fault, if the error is about the file's content.
    pub fn line(&self) -> Option<usize> {
        match self {
            TopologyError::Read { .. } => None,
            TopologyError::Invalid { line, .. } => Some(*line),
        }
    }
}

impl Topology {
    /// Reads and validates the topology file at `path`; errors name `path` as given.
    pub fn load(path: &Path) -> Result<Topology, TopologyError> {
        let file = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| TopologyError::Read {
            file: file.clone(),
            source,
        })?;
        match std::str::from_utf8(&bytes) {
            Ok(text) => Topology::parse(text, &file),
            Err(e) => {
                let at = e.valid_up_to();
                let line = 1 + bytes[..at].iter().filter(|&&b| b == b'\n').count();
                let column = at
                    - bytes[..at]
                        .iter()
                        .rposition(|&b| b == b'\n')
                        .map_or(0, |i| i + 1)
                    + 1;
                Err(TopologyError::Invalid {
                    file,
                    line,
                    object: ErrorObject::File,
                    message: format!(
                        "not UTF-8 text: byte {column} of the line (0x{:02x}) starts no UTF-8 character; \
                         TOML files are UTF-8",
                        bytes[at]
                    ),
                })
            }
        }
    }

    /// Parses and validates a topology; `file` only labels errors.
    pub fn parse(text: &str, file: &str) -> Result<Topology, TopologyError> {
        parse::parse(text, file)
    }
}
