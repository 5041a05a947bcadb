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

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::ops::Range;
use std::path::Path;

use ipnet::Ipv4Net;
use serde::Deserialize;
use toml::{Spanned, Value};

use crate::dataplane::esp::MAX_KEYS;
use crate::wire::MacAddr;

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

/// Endpoint name refused because the replay writes the underlay capture under it.
const RESERVED_ENDPOINT_NAME: &str = "underlay";

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
}

impl fmt::Display for ErrorObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorObject::File => f.write_str("topology"),
            ErrorObject::Node => f.write_str("node"),
            ErrorObject::Network(name) => write!(f, "network {name}"),
            ErrorObject::Endpoint(name) => write!(f, "endpoint {name}"),
            ErrorObject::Encryption => f.write_str("encryption"),
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
        match std::fs::read_to_string(path) {
            Ok(text) => Topology::parse(&text, &file),
            Err(source) => Err(TopologyError::Read { file, source }),
        }
    }

    /// Parses and validates a topology; `file` only labels errors.
    pub fn parse(text: &str, file: &str) -> Result<Topology, TopologyError> {
        let p = Parser { text, file };
        let raw: RawTopology = toml::from_str(text).map_err(|e| p.toml_error(&e))?;
        let node = p.node(raw.node.as_ref())?;
        let encryption = match &raw.encryption {
            Some(e) => Some(p.encryption(e, &node)?),
            None => None,
        };
        let networks = p.networks(&raw.network, encryption.as_ref())?;
        let endpoints = p.endpoints(&raw.endpoint, &node, &networks)?;
        Ok(Topology {
            node,
            networks,
            endpoints,
            encryption,
        })
    }
}

// Every field is read as a spanned `Value` so that type errors, ranges and defaults are reported
// here with the object's name, rather than by serde without it. Only syntax errors, unknown keys
// and a misshapen document come from toml itself.
type RawField = Option<Spanned<Value>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    #[serde(default)]
    node: Option<Spanned<RawNode>>,
    #[serde(default)]
    network: Vec<Spanned<RawNetwork>>,
    #[serde(default)]
    endpoint: Vec<Spanned<RawEndpoint>>,
    #[serde(default)]
    encryption: Option<Spanned<RawEncryption>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEncryption {
    #[serde(default)]
    keys: Option<Spanned<Vec<Spanned<RawKey>>>>,
    #[serde(default)]
    primary: RawField,
    #[serde(default)]
    transport: RawField,
    #[serde(default)]
    udp_port: RawField,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    #[serde(default)]
    tag: RawField,
    #[serde(default)]
    key: RawField,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    #[serde(default)]
    name: RawField,
    #[serde(default)]
    data_path_addr: RawField,
    #[serde(default)]
    data_path_port: RawField,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    #[serde(default)]
    name: RawField,
    #[serde(default)]
    vni: RawField,
    #[serde(default)]
    subnet: RawField,
    #[serde(default)]
    gateway: RawField,
    #[serde(default)]
    mtu: RawField,
    #[serde(default)]
    encrypted: RawField,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    #[serde(default)]
    name: RawField,
    #[serde(default)]
    network: RawField,
    #[serde(default)]
    ip: RawField,
    #[serde(default)]
    mac: RawField,
    #[serde(default)]
    vtep: RawField,
    #[serde(default)]
    netns: RawField,
}

/// A lenient second reading, used only to name the object around a toml error.
#[derive(Deserialize)]
struct Outline {
    #[serde(default)]
    node: Option<Spanned<serde::de::IgnoredAny>>,
    #[serde(default)]
    network: Vec<Spanned<OutlineEntry>>,
    #[serde(default)]
    endpoint: Vec<Spanned<OutlineEntry>>,
    #[serde(default)]
    encryption: Option<Spanned<serde::de::IgnoredAny>>,
}

#[derive(Deserialize)]
struct OutlineEntry {
    #[serde(default)]
    name: Option<Value>,
}

/// How an object is named in errors: its name if printable, else its 1-based position.
fn label(name: Option<&Value>, index: usize) -> String {
    match name.and_then(Value::as_str) {
        Some(n) if !n.is_empty() && !n.chars().any(char::is_control) => n.to_string(),
        _ => format!("#{}", index + 1),
    }
}

fn a_type(v: &Value) -> String {
    let t = v.type_str();
    let article = if t.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {t}")
}

struct Parser<'a> {
    text: &'a str,
    file: &'a str,
}

impl Parser<'_> {
    fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        1 + self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
    }

    fn error(&self, at: usize, object: ErrorObject, message: String) -> TopologyError {
        TopologyError::Invalid {
            file: self.file.to_string(),
            line: self.line(at),
            object,
            message,
        }
    }

    fn toml_error(&self, e: &toml::de::Error) -> TopologyError {
        let at = e.span().map_or(0, |s| s.start);
        let message = e.message().trim().replace('\n', "; ");
        if self.text.parse::<toml::Table>().is_err() {
            return self.error(at, ErrorObject::File, format!("invalid TOML: {message}"));
        }
        self.error(at, self.object_at(at), message)
    }

    /// The object whose table holds byte `at`, for errors toml reports without one.
    fn object_at(&self, at: usize) -> ErrorObject {
        let Ok(outline) = toml::from_str::<Outline>(self.text) else {
            return ErrorObject::File;
        };
        let holds = |span: Range<usize>| span.contains(&at);
        if outline.node.is_some_and(|n| holds(n.span())) {
            return ErrorObject::Node;
        }
        if outline.encryption.is_some_and(|n| holds(n.span())) {
            return ErrorObject::Encryption;
        }
        for (i, n) in outline.network.iter().enumerate() {
            if holds(n.span()) {
                return ErrorObject::Network(label(n.get_ref().name.as_ref(), i));
            }
        }
        for (i, e) in outline.endpoint.iter().enumerate() {
            if holds(e.span()) {
                return ErrorObject::Endpoint(label(e.get_ref().name.as_ref(), i));
            }
        }
        ErrorObject::File
    }

    fn fields(&self, object: ErrorObject, table: Range<usize>) -> Fields<'_> {
        Fields {
            p: self,
            object,
            table,
        }
    }

    fn node(&self, raw: Option<&Spanned<RawNode>>) -> Result<Node, TopologyError> {
        let Some(raw) = raw else {
            let msg = "missing [node] table".to_string();
            return Err(self.error(0, ErrorObject::Node, msg));
        };
        let r = raw.get_ref();
        let f = self.fields(ErrorObject::Node, raw.span());

        let name_v = f.required("name", &r.name)?;
        let name = f.string("name", name_v)?;
        if name.is_empty() {
            return Err(f.err(name_v, "name must not be empty".into()));
        }
        let addr_v = f.required("data_path_addr", &r.data_path_addr)?;
        let data_path_addr = f.unicast("data_path_addr", addr_v)?;
        let data_path_port = match &r.data_path_port {
            None => DEFAULT_DATA_PATH_PORT,
            Some(v) => f.ranged("data_path_port", v, MIN_DATA_PATH_PORT, MAX_DATA_PATH_PORT)?,
        };
        Ok(Node {
            name: name.to_string(),
            data_path_addr,
            data_path_port,
        })
    }

    fn encryption(
        &self,
        raw: &Spanned<RawEncryption>,
        node: &Node,
    ) -> Result<Encryption, TopologyError> {
        let r = raw.get_ref();
        let f = self.fields(ErrorObject::Encryption, raw.span());
        let Some(keys_v) = &r.keys else {
            let msg = "missing field `keys`".to_string();
            return Err(self.error(raw.span().start, ErrorObject::Encryption, msg));
        };
        let entries = keys_v.get_ref();
        if entries.is_empty() || entries.len() > MAX_KEYS {
            let msg = format!("keys must hold 1 to {MAX_KEYS} keys, not {}", entries.len());
            return Err(self.error(keys_v.span().start, ErrorObject::Encryption, msg));
        }
        let mut keys: Vec<EncryptionKey> = Vec::with_capacity(entries.len());
        let mut tag_lines: HashMap<u32, usize> = HashMap::new();
        for entry in entries {
            let k = entry.get_ref();
            let kf = self.fields(ErrorObject::Encryption, entry.span());
            let tag_v = kf.required("tag", &k.tag)?;
            let tag: u32 = kf.ranged("tag", tag_v, 0, u32::MAX)?;
            if let Some(first) = tag_lines.get(&tag) {
                let msg = format!("key tag {tag} is given twice (first on line {first})");
                return Err(kf.err(tag_v, msg));
            }
            tag_lines.insert(tag, self.line(tag_v.span().start));
            let key_v = kf.required("key", &k.key)?;
            let key = kf.aes_key(tag, key_v)?;
            keys.push(EncryptionKey { tag, key });
        }
        let primary_v = f.required("primary", &r.primary)?;
        let primary: u32 = f.ranged("primary", primary_v, 0, u32::MAX)?;
        if !keys.iter().any(|k| k.tag == primary) {
            let tags: Vec<String> = keys.iter().map(|k| k.tag.to_string()).collect();
            let msg = format!(
                "primary {primary} is not the tag of any key (tags: {})",
                tags.join(", ")
            );
            return Err(f.err(primary_v, msg));
        }
        let transport = match &r.transport {
            None => EspTransport::Ip,
            Some(v) => match f.string("transport", v)? {
                "ip" => EspTransport::Ip,
                "udp" => EspTransport::Udp,
                other => {
                    let msg = format!(
                        "transport {other:?} must be \"ip\" (ESP as IP protocol 50, raw sockets) \
                         or \"udp\" (ESP in UDP, RFC 3948)"
                    );
                    return Err(f.err(v, msg));
                }
            },
        };
        let udp_port = match &r.udp_port {
            None => DEFAULT_ESP_UDP_PORT,
            Some(v) => {
                let port = f.ranged("udp_port", v, MIN_DATA_PATH_PORT, MAX_DATA_PATH_PORT)?;
                if port == node.data_path_port {
                    let msg = format!(
                        "udp_port {port} is the node's data_path_port; ESP in UDP needs a port \
                         of its own"
                    );
                    return Err(f.err(v, msg));
                }
                port
            }
        };
        if udp_port == node.data_path_port {
            let msg = format!(
                "the default udp_port {udp_port} is the node's data_path_port; set another udp_port"
            );
            return Err(self.error(raw.span().start, ErrorObject::Encryption, msg));
        }
        Ok(Encryption {
            keys,
            primary,
            transport,
            udp_port,
        })
    }

    fn networks(
        &self,
        raws: &[Spanned<RawNetwork>],
        encryption: Option<&Encryption>,
    ) -> Result<Vec<Network>, TopologyError> {
        let mut out: Vec<Network> = Vec::with_capacity(raws.len());
        let mut name_lines: HashMap<&str, usize> = HashMap::new();
        for (i, raw) in raws.iter().enumerate() {
            let r = raw.get_ref();
            let object = ErrorObject::Network(label(r.name.as_ref().map(Spanned::get_ref), i));
            let f = self.fields(object, raw.span());

            let name_v = f.required("name", &r.name)?;
            let name = f.string("name", name_v)?;
            if name.is_empty() {
                return Err(f.err(name_v, "name must not be empty".into()));
            }
            if let Some(first) = name_lines.get(name) {
                let msg = format!("duplicate network name {name} (first defined on line {first})");
                return Err(f.err(name_v, msg));
            }
            name_lines.insert(name, self.line(name_v.span().start));

            let vni_v = f.required("vni", &r.vni)?;
            let vni = f.ranged("vni", vni_v, 1, MAX_VNI)?;
            if let Some(other) = out.iter().find(|n| n.vni == vni) {
                let msg = format!("vni {vni} is already used by network {}", other.name);
                return Err(f.err(vni_v, msg));
            }

            let subnet_v = f.required("subnet", &r.subnet)?;
            let subnet = f.subnet(subnet_v)?;
            let overlapping = out.iter().find(|n| {
                n.subnet.contains(&subnet.network()) || subnet.contains(&n.subnet.network())
            });
            if let Some(other) = overlapping {
                let msg = format!(
                    "subnet {subnet} overlaps network {} ({})",
                    other.name, other.subnet
                );
                return Err(f.err(subnet_v, msg));
            }

            let gateway_v = f.required("gateway", &r.gateway)?;
            let gateway = f.ipv4("gateway", gateway_v)?;
            let problem = if !subnet.contains(&gateway) {
                Some("is outside subnet")
            } else if gateway == subnet.network() {
                Some("is the network address of")
            } else if gateway == subnet.broadcast() {
                Some("is the broadcast address of")
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(f.err(gateway_v, format!("gateway {gateway} {problem} {subnet}")));
            }

            let encrypted = match &r.encrypted {
                None => false,
                Some(v) => f.boolean("encrypted", v)?,
            };
            let encryption = match (encrypted, encryption) {
                (true, None) => {
                    let msg = "encrypted = true needs an [encryption] table with the swarm's keys"
                        .to_string();
                    return Err(f.err(r.encrypted.as_ref().unwrap_or(name_v), msg));
                }
                (true, Some(e)) => Some(e),
                (false, _) => None,
            };

            let mtu = match (&r.mtu, encryption) {
                (Some(v), _) => f.ranged("mtu", v, MIN_MTU, MAX_MTU)?,
                (None, None) => DEFAULT_MTU,
                (None, Some(e)) => encrypted_mtu(1500, e.transport),
            };
            out.push(Network {
                name: name.to_string(),
                vni,
                subnet,
                gateway,
                mtu,
                encrypted,
            });
        }
        Ok(out)
    }

    fn endpoints(
        &self,
        raws: &[Spanned<RawEndpoint>],
        node: &Node,
        networks: &[Network],
    ) -> Result<Vec<Endpoint>, TopologyError> {
        let mut out: Vec<Endpoint> = Vec::with_capacity(raws.len());
        let mut name_lines: HashMap<&str, usize> = HashMap::new();
        // (network, address) -> index in `out`
        let mut ips: HashMap<(&str, Ipv4Addr), usize> = HashMap::new();
        let mut macs: HashMap<(&str, MacAddr), usize> = HashMap::new();
        for (i, raw) in raws.iter().enumerate() {
            let r = raw.get_ref();
            let object = ErrorObject::Endpoint(label(r.name.as_ref().map(Spanned::get_ref), i));
            let f = self.fields(object, raw.span());

            let name_v = f.required("name", &r.name)?;
            let name = f.string("name", name_v)?;
            f.file_name("name", name_v, name)?;
            if name == RESERVED_ENDPOINT_NAME {
                let msg = format!("name {name:?} is reserved for the underlay capture");
                return Err(f.err(name_v, msg));
            }
            if let Some(first) = name_lines.get(name) {
                let msg = format!("duplicate endpoint name {name} (first defined on line {first})");
                return Err(f.err(name_v, msg));
            }
            name_lines.insert(name, self.line(name_v.span().start));

            let net_v = f.required("network", &r.network)?;
            let net_name = f.string("network", net_v)?;
            let Some(network) = networks.iter().find(|n| n.name == net_name) else {
                return Err(f.err(net_v, format!("unknown network {net_name}")));
            };
            let (net, subnet) = (network.name.as_str(), network.subnet);

            let ip_v = f.required("ip", &r.ip)?;
            let ip = f.ipv4("ip", ip_v)?;
            let problem = if !subnet.contains(&ip) {
                Some("is outside")
            } else if ip == network.gateway {
                Some("is the gateway of")
            } else if ip == subnet.network() {
                Some("is the network address of")
            } else if ip == subnet.broadcast() {
                Some("is the broadcast address of")
            } else {
                None
            };
            if let Some(problem) = problem {
                let msg = format!("ip {ip} {problem} network {net} ({subnet})");
                return Err(f.err(ip_v, msg));
            }
            if let Some(&j) = ips.get(&(net, ip)) {
                let msg = format!(
                    "ip {ip} is already used by endpoint {} on network {net}",
                    out[j].name
                );
                return Err(f.err(ip_v, msg));
            }

            let (mac, mac_v, what) = match &r.mac {
                Some(v) => {
                    let mac = f.mac(v)?;
                    (mac, v, format!("mac {mac}"))
                }
                None => {
                    let mac = MacAddr::from_ipv4(ip);
                    (mac, ip_v, format!("mac {mac} (derived from ip {ip})"))
                }
            };
            if let Some(&j) = macs.get(&(net, mac)) {
                let msg = format!(
                    "{what} is already used by endpoint {} on network {net}",
                    out[j].name
                );
                return Err(f.err(mac_v, msg));
            }

            let vtep = match &r.vtep {
                None => None,
                Some(v) => {
                    let vtep = f.unicast("vtep", v)?;
                    if vtep == node.data_path_addr {
                        let msg = format!(
                            "vtep {vtep} is this node's data_path_addr; \
                             an endpoint on this node must omit vtep"
                        );
                        return Err(f.err(v, msg));
                    }
                    Some(vtep)
                }
            };

            let netns = match &r.netns {
                None => None,
                Some(v) => {
                    let netns = f.string("netns", v)?;
                    if let Some(vtep) = vtep {
                        let msg = format!(
                            "netns is only for local endpoints; this one lives on vtep {vtep}"
                        );
                        return Err(f.err(v, msg));
                    }
                    f.file_name("netns", v, netns)?;
                    Some(netns.to_string())
                }
            };

            ips.insert((net, ip), out.len());
            macs.insert((net, mac), out.len());
            out.push(Endpoint {
                name: name.to_string(),
                network: net.to_string(),
                ip,
                mac,
                vtep,
                netns,
            });
        }
        Ok(out)
    }
}

/// The fields of one table, with the object they belong to.
struct Fields<'p> {
    p: &'p Parser<'p>,
    object: ErrorObject,
    table: Range<usize>,
}

impl Fields<'_> {
    fn err(&self, v: &Spanned<Value>, message: String) -> TopologyError {
        self.p.error(v.span().start, self.object.clone(), message)
    }

    fn required<'v>(
        &self,
        key: &str,
        field: &'v RawField,
    ) -> Result<&'v Spanned<Value>, TopologyError> {
        field.as_ref().ok_or_else(|| {
            let msg = format!("missing field `{key}`");
            self.p.error(self.table.start, self.object.clone(), msg)
        })
    }

    fn string<'v>(&self, key: &str, v: &'v Spanned<Value>) -> Result<&'v str, TopologyError> {
        v.get_ref().as_str().ok_or_else(|| {
            let msg = format!("{key} must be a string, not {}", a_type(v.get_ref()));
            self.err(v, msg)
        })
    }

    /// An integer within `min..=max`, as `T`.
    fn ranged<T>(&self, key: &str, v: &Spanned<Value>, min: T, max: T) -> Result<T, TopologyError>
    where
        T: Copy + fmt::Display + Into<i64> + TryFrom<i64>,
    {
        let Some(n) = v.get_ref().as_integer() else {
            let msg = format!("{key} must be an integer, not {}", a_type(v.get_ref()));
            return Err(self.err(v, msg));
        };
        let out_of_range = || self.err(v, format!("{key} {n} is outside {min}-{max}"));
        if n < min.into() || n > max.into() {
            return Err(out_of_range());
        }
        T::try_from(n).map_err(|_| out_of_range())
    }

    fn boolean(&self, key: &str, v: &Spanned<Value>) -> Result<bool, TopologyError> {
        v.get_ref().as_bool().ok_or_else(|| {
            let msg = format!("{key} must be a boolean, not {}", a_type(v.get_ref()));
            self.err(v, msg)
        })
    }

    /// 32 hex digits. The message never quotes the value: it is a secret.
    fn aes_key(&self, tag: u32, v: &Spanned<Value>) -> Result<[u8; 16], TopologyError> {
        let s = self.string("key", v)?;
        let bad = |what: String| {
            self.err(
                v,
                format!("key of tag {tag} must be 32 hex digits (a 16-byte AES-128 key); {what}"),
            )
        };
        if s.len() != 32 {
            return Err(bad(format!("it has {} characters", s.chars().count())));
        }
        let mut key = [0u8; 16];
        for (i, pair) in s.as_bytes().chunks(2).enumerate() {
            let digit = |c: u8| (c as char).to_digit(16);
            match (digit(pair[0]), digit(pair[1])) {
                (Some(h), Some(l)) => key[i] = (h * 16 + l) as u8,
                _ => {
                    return Err(bad(format!(
                        "character {} is not a hex digit",
                        2 * i + 1 + usize::from(digit(pair[0]).is_some())
                    )))
                }
            }
        }
        Ok(key)
    }

    fn ipv4(&self, key: &str, v: &Spanned<Value>) -> Result<Ipv4Addr, TopologyError> {
        let s = self.string(key, v)?;
        s.parse()
            .map_err(|_| self.err(v, format!("{key} {s:?} is not an IPv4 address")))
    }

    /// An address another node can be reached at.
    fn unicast(&self, key: &str, v: &Spanned<Value>) -> Result<Ipv4Addr, TopologyError> {
        let ip = self.ipv4(key, v)?;
        if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
            return Err(self.err(v, format!("{key} {ip} is not a unicast address")));
        }
        Ok(ip)
    }

    fn subnet(&self, v: &Spanned<Value>) -> Result<Ipv4Net, TopologyError> {
        let s = self.string("subnet", v)?;
        let subnet: Ipv4Net = s.parse().map_err(|_| {
            let msg = format!("subnet {s:?} is not an IPv4 prefix like 10.0.9.0/24");
            self.err(v, msg)
        })?;
        if subnet.trunc() != subnet {
            let msg = format!(
                "subnet {subnet} has host bits set (network address: {})",
                subnet.trunc()
            );
            return Err(self.err(v, msg));
        }
        if subnet.prefix_len() > 30 {
            let msg =
                format!("subnet {subnet} has no room for hosts; the prefix must be /30 or shorter");
            return Err(self.err(v, msg));
        }
        Ok(subnet)
    }

    /// A MAC an endpoint may own: unicast and not all zeros.
    fn mac(&self, v: &Spanned<Value>) -> Result<MacAddr, TopologyError> {
        let s = self.string("mac", v)?;
        let mac: MacAddr = s.parse().map_err(|_| {
            let msg = format!("mac {s:?} is not a MAC address like 02:42:0a:00:09:02");
            self.err(v, msg)
        })?;
        let problem = if mac == MacAddr::BROADCAST {
            "is the broadcast address"
        } else if mac.is_multicast() {
            "is a multicast address"
        } else if mac == MacAddr::default() {
            "is all zeros"
        } else {
            return Ok(mac);
        };
        Err(self.err(v, format!("mac {mac} {problem}")))
    }

    /// A name used as a file name (endpoint captures, /run/netns entries).
    fn file_name(&self, key: &str, v: &Spanned<Value>, s: &str) -> Result<(), TopologyError> {
        let problem = if s.is_empty() {
            "must not be empty"
        } else if s.contains('/') {
            "must not contain '/'"
        } else if s.contains('\0') {
            "must not contain NUL"
        } else if s == "." || s == ".." {
            "must not be . or .."
        } else {
            return Ok(());
        };
        Err(self.err(
            v,
            format!("{key} {s:?} {problem}: it is used as a file name"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nine lines: a node and network my-network (10.0.9.0/24, vni 4097). Cases append from line 10.
    macro_rules! head {
        () => {
            r#"[node]
name = "node-1"
data_path_addr = "192.0.2.10"

[[network]]
name = "my-network"
vni = 4097
subnet = "10.0.9.0/24"
gateway = "10.0.9.1"
"#
        };
    }

    /// Two endpoints on my-network after `head!()`: my-web.1 on lines 10-13, my-web.2 on 15-18.
    macro_rules! two_endpoints {
        ($name2:literal, $ip2:literal, $extra2:literal) => {
            concat!(
                head!(),
                r#"[[endpoint]]
name = "my-web.1"
network = "my-network"
ip = "10.0.9.2"

[[endpoint]]
name = ""#,
                $name2,
                r#""
network = "my-network"
ip = ""#,
                $ip2,
                "\"\n",
                $extra2
            )
        };
    }

    fn refusal(text: &str) -> String {
        match Topology::parse(text, "t.toml") {
            Ok(t) => panic!("accepted: {t:?}\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn good_example_with_defaults() {
        let text = r#"# a node's view
[node]
name = "node-1"
data_path_addr = "192.0.2.10"   # this node's VTEP address

[[network]]
name = "my-network"
vni = 4097
subnet = "10.0.9.0/24"
gateway = "10.0.9.1"

[[network]]
name = "my-net2"
vni = 16777215
subnet = "10.0.10.0/30"
gateway = "10.0.10.2"
mtu = 9000

[[endpoint]]
name = "my-web.1"
network = "my-network"
ip = "10.0.9.2"
netns = "web1"

[[endpoint]]
name = "my-web.2"
network = "my-network"
ip = "10.0.9.3"
mac = "02:00:00:00:00:07"
vtep = "192.0.2.11"

[[endpoint]]
name = "db.1"
network = "my-net2"
ip = "10.0.10.1"
mac = "02:00:00:00:00:07"   # the same MAC on another network is fine
"#;
        let t = Topology::parse(text, "t.toml").unwrap();
        assert_eq!(
            t.node,
            Node {
                name: "node-1".into(),
                data_path_addr: Ipv4Addr::new(192, 0, 2, 10),
                data_path_port: 4789,
            }
        );
        assert_eq!(
            t.networks,
            vec![
                Network {
                    name: "my-network".into(),
                    vni: 4097,
                    subnet: "10.0.9.0/24".parse().unwrap(),
                    gateway: Ipv4Addr::new(10, 0, 9, 1),
                    mtu: 1450,
                    encrypted: false,
                },
                Network {
                    name: "my-net2".into(),
                    vni: 16777215,
                    subnet: "10.0.10.0/30".parse().unwrap(),
                    gateway: Ipv4Addr::new(10, 0, 10, 2),
                    mtu: 9000,
                    encrypted: false,
                },
            ]
        );
        let mac7 = MacAddr([2, 0, 0, 0, 0, 7]);
        assert_eq!(
            t.endpoints,
            vec![
                Endpoint {
                    name: "my-web.1".into(),
                    network: "my-network".into(),
                    ip: Ipv4Addr::new(10, 0, 9, 2),
                    mac: MacAddr([0x02, 0x42, 10, 0, 9, 2]),
                    vtep: None,
                    netns: Some("web1".into()),
                },
                Endpoint {
                    name: "my-web.2".into(),
                    network: "my-network".into(),
                    ip: Ipv4Addr::new(10, 0, 9, 3),
                    mac: mac7,
                    vtep: Some(Ipv4Addr::new(192, 0, 2, 11)),
                    netns: None,
                },
                Endpoint {
                    name: "db.1".into(),
                    network: "my-net2".into(),
                    ip: Ipv4Addr::new(10, 0, 10, 1),
                    mac: mac7,
                    vtep: None,
                    netns: None,
                },
            ]
        );
        let local: Vec<_> = t.local_endpoints().map(|e| e.name.as_str()).collect();
        assert_eq!(local, ["my-web.1", "db.1"]);
        assert_eq!(t.network("my-net2").map(|n| n.vni), Some(16777215));
    }

    #[test]
    fn limits_are_inclusive_and_empty_lists_are_valid() {
        let text = r#"[node]
name = "n"
data_path_addr = "192.0.2.10"
data_path_port = 1024
"#;
        let t = Topology::parse(text, "t.toml").unwrap();
        assert_eq!(t.node.data_path_port, 1024);
        assert!(t.networks.is_empty() && t.endpoints.is_empty());

        let text = r#"[node]
name = "n"
data_path_addr = "192.0.2.10"
data_path_port = 49151
[[network]]
name = "a"
vni = 1
subnet = "10.0.0.0/8"
gateway = "10.255.255.254"
mtu = 576
[[network]]
name = "b"
vni = 2
subnet = "128.0.0.0/1"
gateway = "128.0.0.1"
mtu = 65485
"#;
        let t = Topology::parse(text, "t.toml").unwrap();
        assert_eq!(t.node.data_path_port, 49151);
        let mtus: Vec<u16> = t.networks.iter().map(|n| n.mtu).collect();
        assert_eq!(mtus, [576, 65485]);
    }

    #[test]
    fn node_refusals() {
        let cases = [
            (
                "[[network]]\nname = \"x\"\n",
                "t.toml:1: node: missing [node] table",
            ),
            ("", "t.toml:1: node: missing [node] table"),
            (
                "[node]\nname = \"n\"\n",
                "t.toml:1: node: missing field `data_path_addr`",
            ),
            (
                "[node]\nname = \"\"\ndata_path_addr = \"192.0.2.10\"\n",
                "t.toml:2: node: name must not be empty",
            ),
            (
                "[node]\nname = \"n\"\ndata_path_addr = \"192.0.2\"\n",
                "t.toml:3: node: data_path_addr \"192.0.2\" is not an IPv4 address",
            ),
            (
                "[node]\nname = \"n\"\ndata_path_addr = \"0.0.0.0\"\n",
                "t.toml:3: node: data_path_addr 0.0.0.0 is not a unicast address",
            ),
            (
                "[node]\nname = \"n\"\ndata_path_addr = \"192.0.2.10\"\ndata_path_port = 1023\n",
                "t.toml:4: node: data_path_port 1023 is outside 1024-49151",
            ),
            (
                "[node]\nname = \"n\"\ndata_path_addr = \"192.0.2.10\"\ndata_path_port = 49152\n",
                "t.toml:4: node: data_path_port 49152 is outside 1024-49151",
            ),
            (
                "[node]\nname = \"n\"\ndata_path_addr = \"192.0.2.10\"\ndata_path_port = \"4789\"\n",
                "t.toml:4: node: data_path_port must be an integer, not a string",
            ),
            (
                "[node]\nname = \"n\"\ndata_path_addr = \"192.0.2.10\"\n\ndata_path = 4789\n",
                "t.toml:5: node: unknown field `data_path`, expected one of `name`, \
                 `data_path_addr`, `data_path_port`",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(refusal(text), want, "{text}");
        }
    }

    #[test]
    fn network_refusals() {
        let cases = [
            (
                concat!(head!(), "\n[[network]]\nname = \"my-network\"\n"),
                "t.toml:12: network my-network: duplicate network name my-network \
                 (first defined on line 6)",
            ),
            (
                concat!(head!(), "\n[[network]]\nname = \"my-net2\"\nvni = 4097\n"),
                "t.toml:13: network my-net2: vni 4097 is already used by network my-network",
            ),
            (
                concat!(head!(), "\n[[network]]\nname = \"my-net2\"\nvni = 0\n"),
                "t.toml:13: network my-net2: vni 0 is outside 1-16777215",
            ),
            (
                concat!(
                    head!(),
                    "\n[[network]]\nname = \"my-net2\"\nvni = 16777216\n"
                ),
                "t.toml:13: network my-net2: vni 16777216 is outside 1-16777215",
            ),
            (
                concat!(head!(), "\n[[network]]\nname = \"my-net2\"\nvni = 4098.0\n"),
                "t.toml:13: network my-net2: vni must be an integer, not a float",
            ),
            (
                concat!(head!(), "\n[[network]]\nname = \"my-net2\"\nvni = 4098\n"),
                "t.toml:11: network my-net2: missing field `subnet`",
            ),
            (
                concat!(
                    head!(),
                    "\n[[network]]\nname = \"my-net2\"\nvni = 4098\nsubnet = \"10.0.8.0/22\"\n"
                ),
                "t.toml:14: network my-net2: subnet 10.0.8.0/22 overlaps network my-network \
                 (10.0.9.0/24)",
            ),
            (
                concat!(
                    head!(),
                    "\n[[network]]\nname = \"my-net2\"\nvni = 4098\nsubnet = \"10.0.9.128/25\"\n"
                ),
                "t.toml:14: network my-net2: subnet 10.0.9.128/25 overlaps network my-network \
                 (10.0.9.0/24)",
            ),
            (
                concat!(
                    head!(),
                    "\n[[network]]\nname = \"my-net2\"\nvni = 4098\nsubnet = \"10.0.10.1/24\"\n"
                ),
                "t.toml:14: network my-net2: subnet 10.0.10.1/24 has host bits set \
                 (network address: 10.0.10.0/24)",
            ),
            (
                concat!(
                    head!(),
                    "\n[[network]]\nname = \"my-net2\"\nvni = 4098\nsubnet = \"10.0.10.0/31\"\n"
                ),
                "t.toml:14: network my-net2: subnet 10.0.10.0/31 has no room for hosts; \
                 the prefix must be /30 or shorter",
            ),
            (
                concat!(
                    head!(),
                    "\n[[network]]\nname = \"my-net2\"\nvni = 4098\nsubnet = \"10.0.10.0\"\n"
                ),
                "t.toml:14: network my-net2: subnet \"10.0.10.0\" is not an IPv4 prefix \
                 like 10.0.9.0/24",
            ),
            (
                concat!(
                    head!(),
                    "\n[[network]]\nname = \"my-net2\"\nvni = 4098\nsubnet = \"10.0.10.0/24\"\n",
                    "gateway = \"10.0.11.1\"\n"
                ),
                "t.toml:15: network my-net2: gateway 10.0.11.1 is outside subnet 10.0.10.0/24",
            ),
            (
                concat!(
                    head!(),
                    "\n[[network]]\nname = \"my-net2\"\nvni = 4098\nsubnet = \"10.0.10.0/24\"\n",
                    "gateway = \"10.0.10.0\"\n"
                ),
                "t.toml:15: network my-net2: gateway 10.0.10.0 is the network address of \
                 10.0.10.0/24",
            ),
            (
                concat!(
                    head!(),
                    "\n[[network]]\nname = \"my-net2\"\nvni = 4098\nsubnet = \"10.0.10.0/24\"\n",
                    "gateway = \"10.0.10.255\"\n"
                ),
                "t.toml:15: network my-net2: gateway 10.0.10.255 is the broadcast address of \
                 10.0.10.0/24",
            ),
            (
                concat!(
                    head!(),
                    "\n[[network]]\nname = \"my-net2\"\nvni = 4098\nsubnet = \"10.0.10.0/24\"\n",
                    "gateway = \"10.0.10.1\"\nmtu = 575\n"
                ),
                "t.toml:16: network my-net2: mtu 575 is outside 576-65485",
            ),
            (
                concat!(
                    head!(),
                    "\n[[network]]\nname = \"my-net2\"\nvni = 4098\nsubnet = \"10.0.10.0/24\"\n",
                    "gateway = \"10.0.10.1\"\nmtu = 65486\n"
                ),
                "t.toml:16: network my-net2: mtu 65486 is outside 576-65485",
            ),
            (
                concat!(head!(), "\n[[network]]\nname = \"my-net2\"\nvnii = 4098\n"),
                "t.toml:13: network my-net2: unknown field `vnii`, expected one of `name`, \
                 `vni`, `subnet`, `gateway`, `mtu`, `encrypted`",
            ),
            (
                concat!(head!(), "\n[[network]]\nname = 7\n"),
                "t.toml:12: network #2: name must be a string, not an integer",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(refusal(text), want, "{text}");
        }
    }

    #[test]
    fn endpoint_refusals() {
        let cases = [
            (
                concat!(
                    head!(),
                    "[[endpoint]]\nname = \"my-web.1\"\nnetwork = \"my-network\"\nip = \"10.0.8.2\"\n"
                ),
                "t.toml:13: endpoint my-web.1: ip 10.0.8.2 is outside network my-network \
                 (10.0.9.0/24)",
            ),
            (
                concat!(
                    head!(),
                    "[[endpoint]]\nname = \"my-web.1\"\nnetwork = \"my-network\"\nip = \"10.0.9.1\"\n"
                ),
                "t.toml:13: endpoint my-web.1: ip 10.0.9.1 is the gateway of network my-network \
                 (10.0.9.0/24)",
            ),
            (
                concat!(
                    head!(),
                    "[[endpoint]]\nname = \"my-web.1\"\nnetwork = \"my-network\"\nip = \"10.0.9.0\"\n"
                ),
                "t.toml:13: endpoint my-web.1: ip 10.0.9.0 is the network address of network \
                 my-network (10.0.9.0/24)",
            ),
            (
                concat!(
                    head!(),
                    "[[endpoint]]\nname = \"my-web.1\"\nnetwork = \"my-network\"\n",
                    "ip = \"10.0.9.255\"\n"
                ),
                "t.toml:13: endpoint my-web.1: ip 10.0.9.255 is the broadcast address of network \
                 my-network (10.0.9.0/24)",
            ),
            (
                concat!(
                    head!(),
                    "[[endpoint]]\nname = \"my-web.1\"\nnetwork = \"my-network\"\nip = \"10.0.9\"\n"
                ),
                "t.toml:13: endpoint my-web.1: ip \"10.0.9\" is not an IPv4 address",
            ),
            (
                concat!(
                    head!(),
                    "[[endpoint]]\nname = \"my-web.1\"\nnetwork = \"my-net\"\nip = \"10.0.9.2\"\n"
                ),
                "t.toml:12: endpoint my-web.1: unknown network my-net",
            ),
            (
                concat!(head!(), "[[endpoint]]\nname = \"my-web.1\"\nnetwork = \"my-network\"\n"),
                "t.toml:10: endpoint my-web.1: missing field `ip`",
            ),
            (
                concat!(
                    head!(),
                    "[[endpoint]]\nname = \"my-web.1\"\nnetwork = \"my-network\"\nvlan = 3\n"
                ),
                "t.toml:13: endpoint my-web.1: unknown field `vlan`, expected one of `name`, \
                 `network`, `ip`, `mac`, `vtep`, `netns`",
            ),
            (
                two_endpoints!("my-web.1", "10.0.9.3", ""),
                "t.toml:16: endpoint my-web.1: duplicate endpoint name my-web.1 \
                 (first defined on line 11)",
            ),
            (
                two_endpoints!("my-web.2", "10.0.9.2", ""),
                "t.toml:18: endpoint my-web.2: ip 10.0.9.2 is already used by endpoint my-web.1 \
                 on network my-network",
            ),
            (
                // my-web.1 derives 02:42:0a:00:09:02.
                two_endpoints!("my-web.2", "10.0.9.3", "mac = \"02:42:0a:00:09:02\"\n"),
                "t.toml:19: endpoint my-web.2: mac 02:42:0a:00:09:02 is already used by endpoint \
                 my-web.1 on network my-network",
            ),
            (
                concat!(
                    head!(),
                    "[[endpoint]]\nname = \"my-web.1\"\nnetwork = \"my-network\"\nip = \"10.0.9.2\"\n",
                    "mac = \"02:42:0a:00:09:03\"\n\n",
                    "[[endpoint]]\nname = \"my-web.2\"\nnetwork = \"my-network\"\nip = \"10.0.9.3\"\n"
                ),
                "t.toml:19: endpoint my-web.2: mac 02:42:0a:00:09:03 (derived from ip 10.0.9.3) \
                 is already used by endpoint my-web.1 on network my-network",
            ),
            (
                two_endpoints!("my-web.2", "10.0.9.3", "mac = \"01:00:5e:00:00:01\"\n"),
                "t.toml:19: endpoint my-web.2: mac 01:00:5e:00:00:01 is a multicast address",
            ),
            (
                two_endpoints!("my-web.2", "10.0.9.3", "mac = \"ff:ff:ff:ff:ff:ff\"\n"),
                "t.toml:19: endpoint my-web.2: mac ff:ff:ff:ff:ff:ff is the broadcast address",
            ),
            (
                two_endpoints!("my-web.2", "10.0.9.3", "mac = \"00:00:00:00:00:00\"\n"),
                "t.toml:19: endpoint my-web.2: mac 00:00:00:00:00:00 is all zeros",
            ),
            (
                two_endpoints!("my-web.2", "10.0.9.3", "mac = \"02:42:0a\"\n"),
                "t.toml:19: endpoint my-web.2: mac \"02:42:0a\" is not a MAC address like \
                 02:42:0a:00:09:02",
            ),
            (
                two_endpoints!("my-web.2", "10.0.9.3", "vtep = \"192.0.2.10\"\n"),
                "t.toml:19: endpoint my-web.2: vtep 192.0.2.10 is this node's data_path_addr; \
                 an endpoint on this node must omit vtep",
            ),
            (
                two_endpoints!("my-web.2", "10.0.9.3", "vtep = \"224.0.0.1\"\n"),
                "t.toml:19: endpoint my-web.2: vtep 224.0.0.1 is not a unicast address",
            ),
            (
                two_endpoints!(
                    "my-web.2",
                    "10.0.9.3",
                    "vtep = \"192.0.2.11\"\nnetns = \"web2\"\n"
                ),
                "t.toml:20: endpoint my-web.2: netns is only for local endpoints; \
                 this one lives on vtep 192.0.2.11",
            ),
            (
                two_endpoints!("my-web.2", "10.0.9.3", "netns = \"../web2\"\n"),
                "t.toml:19: endpoint my-web.2: netns \"../web2\" must not contain '/': \
                 it is used as a file name",
            ),
            (
                two_endpoints!("", "10.0.9.3", ""),
                "t.toml:16: endpoint #2: name \"\" must not be empty: it is used as a file name",
            ),
            (
                two_endpoints!("web/2", "10.0.9.3", ""),
                "t.toml:16: endpoint web/2: name \"web/2\" must not contain '/': \
                 it is used as a file name",
            ),
            (
                two_endpoints!("web\\u00002", "10.0.9.3", ""),
                "t.toml:16: endpoint #2: name \"web\\02\" must not contain NUL: \
                 it is used as a file name",
            ),
            (
                two_endpoints!(".", "10.0.9.3", ""),
                "t.toml:16: endpoint .: name \".\" must not be . or ..: it is used as a file name",
            ),
            (
                two_endpoints!("..", "10.0.9.3", ""),
                "t.toml:16: endpoint ..: name \"..\" must not be . or ..: \
                 it is used as a file name",
            ),
            (
                two_endpoints!("underlay", "10.0.9.3", ""),
                "t.toml:16: endpoint underlay: name \"underlay\" is reserved for the underlay \
                 capture",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(refusal(text), want, "{text}");
        }
    }

    /// `head!()` with my-network encrypted (line 10) and an `[encryption]` table from line 12.
    macro_rules! encrypted {
        ($($enc:literal),+) => {
            concat!(head!(), "encrypted = true\n\n[encryption]\n", $($enc),+)
        };
    }

    const KEYS: &str = "keys = [ { tag = 1, key = \"000102030405060708090a0b0c0d0e0f\" }, \
                        { tag = 2, key = \"101112131415161718191a1b1c1d1e1f\" }, \
                        { tag = 3, key = \"202122232425262728292a2b2c2d2e2f\" } ]\n";

    #[test]
    fn encryption_as_the_issue_gives_it() {
        let text = format!(
            "{}encrypted = true\n\n[encryption]\n{KEYS}primary = 2\n\
             transport = \"ip\"      # \"ip\": ESP as IP protocol 50 (raw sockets)\n\
             udp_port = 4500       # for transport = \"udp\"\n",
            head!()
        );
        let t = Topology::parse(&text, "t.toml").unwrap();
        let e = t.encryption.as_ref().unwrap();
        assert_eq!(e.keys.iter().map(|k| k.tag).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(e.keys[1].key[0], 0x10);
        assert_eq!(e.keys[1].key[15], 0x1f);
        assert_eq!(e.primary, 2);
        assert_eq!(e.transport, EspTransport::Ip);
        assert_eq!(e.udp_port, 4500);
        assert!(t.networks[0].encrypted);
        assert_eq!(t.networks[0].mtu, 1416, "1500 - 50 - 34, a multiple of 4");
        assert!(
            !format!("{e:?}").contains("16"),
            "Debug never shows keys: {e:?}"
        );

        let udp = text.replace("\"ip\"      #", "\"udp\"      #");
        let t = Topology::parse(&udp, "t.toml").unwrap();
        assert_eq!(t.encryption.as_ref().unwrap().transport, EspTransport::Udp);
        assert_eq!(
            t.networks[0].mtu, 1408,
            "1500 - 50 - 42 with the UDP header"
        );

        // An explicit mtu wins; the [encryption] table alone encrypts nothing.
        let explicit = text.replace("encrypted = true", "encrypted = true\nmtu = 1300");
        assert_eq!(
            Topology::parse(&explicit, "t.toml").unwrap().networks[0].mtu,
            1300
        );
        let plain = text.replace("encrypted = true", "encrypted = false");
        let t = Topology::parse(&plain, "t.toml").unwrap();
        assert!(!t.networks[0].encrypted && t.encryption.is_some());
        assert_eq!(t.networks[0].mtu, 1450);

        // Defaults: transport "ip", udp_port 4500; a single key is a valid ring.
        let min = concat!(
            head!(),
            "encrypted = true\n[encryption]\n",
            "keys = [ { tag = 7, key = \"00112233445566778899AABBCCDDEEFF\" } ]\nprimary = 7\n"
        );
        let e = Topology::parse(min, "t.toml").unwrap().encryption.unwrap();
        assert_eq!((e.transport, e.udp_port), (EspTransport::Ip, 4500));
        assert_eq!(e.keys[0].key[15], 0xff);
        assert_eq!(encrypted_mtu(9000, EspTransport::Ip), 8916);
        assert_eq!(encrypted_mtu(1499, EspTransport::Ip), 1412);
    }

    #[test]
    fn encryption_refusals() {
        let cases = [
            (
                concat!(head!(), "encrypted = true\n"),
                "t.toml:10: network my-network: encrypted = true needs an [encryption] table \
                 with the swarm's keys",
            ),
            (
                concat!(head!(), "encrypted = 1\n"),
                "t.toml:10: network my-network: encrypted must be a boolean, not an integer",
            ),
            (
                encrypted!("primary = 1\n"),
                "t.toml:12: encryption: missing field `keys`",
            ),
            (
                encrypted!("keys = []\nprimary = 1\n"),
                "t.toml:13: encryption: keys must hold 1 to 3 keys, not 0",
            ),
            (
                encrypted!(
                    "keys = [ { tag = 1, key = \"000102030405060708090a0b0c0d0e0f\" },\n",
                    "  { tag = 2, key = \"000102030405060708090a0b0c0d0e0f\" },\n",
                    "  { tag = 3, key = \"000102030405060708090a0b0c0d0e0f\" },\n",
                    "  { tag = 4, key = \"000102030405060708090a0b0c0d0e0f\" } ]\nprimary = 1\n"
                ),
                "t.toml:13: encryption: keys must hold 1 to 3 keys, not 4",
            ),
            (
                encrypted!(
                    "keys = [ { tag = 1, key = \"000102030405060708090a0b0c0d0e0f\" },\n",
                    "  { tag = 1, key = \"101112131415161718191a1b1c1d1e1f\" } ]\nprimary = 1\n"
                ),
                "t.toml:14: encryption: key tag 1 is given twice (first on line 13)",
            ),
            (
                encrypted!("keys = [ { tag = 1, key = \"0001\" } ]\nprimary = 1\n"),
                "t.toml:13: encryption: key of tag 1 must be 32 hex digits (a 16-byte AES-128 \
                 key); it has 4 characters",
            ),
            (
                encrypted!(
                    "keys = [ { tag = 1, key = \"00010203040506070809g0b0c0d0e0f0\" } ]\nprimary = 1\n"
                ),
                "t.toml:13: encryption: key of tag 1 must be 32 hex digits (a 16-byte AES-128 \
                 key); character 21 is not a hex digit",
            ),
            (
                encrypted!("keys = [ { tag = -1, key = \"000102030405060708090a0b0c0d0e0f\" } ]\n"),
                "t.toml:13: encryption: tag -1 is outside 0-4294967295",
            ),
            (
                encrypted!("keys = [ { key = \"000102030405060708090a0b0c0d0e0f\" } ]\n"),
                "t.toml:13: encryption: missing field `tag`",
            ),
            (
                encrypted!("keys = [ { tag = 1, key = \"000102030405060708090a0b0c0d0e0f\", x = 1 } ]\n"),
                "t.toml:13: encryption: unknown field `x`, expected `tag` or `key`",
            ),
            (
                encrypted!("keys = [ { tag = 1, key = \"000102030405060708090a0b0c0d0e0f\" } ]\n"),
                "t.toml:12: encryption: missing field `primary`",
            ),
            (
                encrypted!("keys = [ { tag = 1, key = \"000102030405060708090a0b0c0d0e0f\" } ]\nprimary = 2\n"),
                "t.toml:14: encryption: primary 2 is not the tag of any key (tags: 1)",
            ),
            (
                encrypted!(
                    "keys = [ { tag = 1, key = \"000102030405060708090a0b0c0d0e0f\" } ]\nprimary = 1\n",
                    "transport = \"tcp\"\n"
                ),
                "t.toml:15: encryption: transport \"tcp\" must be \"ip\" (ESP as IP protocol 50, \
                 raw sockets) or \"udp\" (ESP in UDP, RFC 3948)",
            ),
            (
                encrypted!(
                    "keys = [ { tag = 1, key = \"000102030405060708090a0b0c0d0e0f\" } ]\nprimary = 1\n",
                    "udp_port = 4789\n"
                ),
                "t.toml:15: encryption: udp_port 4789 is the node's data_path_port; ESP in UDP \
                 needs a port of its own",
            ),
            (
                encrypted!(
                    "keys = [ { tag = 1, key = \"000102030405060708090a0b0c0d0e0f\" } ]\nprimary = 1\n",
                    "udp_port = 80\n"
                ),
                "t.toml:15: encryption: udp_port 80 is outside 1024-49151",
            ),
            (
                encrypted!("keys = 3\nprimary = 1\n"),
                "t.toml:13: encryption: invalid type: integer `3`, expected a sequence",
            ),
            (
                encrypted!("cipher = \"aes\"\n"),
                "t.toml:13: encryption: unknown field `cipher`, expected one of `keys`, \
                 `primary`, `transport`, `udp_port`",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(refusal(text), want, "{text}");
        }
    }

    #[test]
    fn toml_refusals() {
        let cases = [
            (
                "[node]\nname = \"node-1\"\ndata_path_addr = \n",
                "t.toml:3: topology: invalid TOML: invalid string; expected `\"`, `'`",
            ),
            (
                "[node]\nname = \"node-1\"\n\n[node]\n",
                "t.toml:4: topology: invalid TOML: invalid table header; \
                 duplicate key `node` in document root",
            ),
            (
                "[node]\nname = \"node-1\"\ndata_path_addr = \"192.0.2.10\"\n[nodes]\n",
                "t.toml:4: topology: unknown field `nodes`, expected one of `node`, `network`, \
                 `endpoint`, `encryption`",
            ),
            (
                "[node]\nname = \"node-1\"\ndata_path_addr = \"192.0.2.10\"\n[network]\n",
                "t.toml:4: topology: invalid type: map, expected a sequence",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(refusal(text), want, "{text}");
        }
    }

    #[test]
    fn load_names_the_path() {
        let path = std::env::temp_dir().join(format!("swarmnet-topology-{}", std::process::id()));
        let missing = path.join("absent.toml");
        let err = Topology::load(&missing).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: cannot read topology: {}",
                missing.display(),
                std::io::Error::from_raw_os_error(2)
            )
        );
        assert_eq!(err.line(), None);

        std::fs::create_dir_all(&path).unwrap();
        let file = path.join("topology.toml");
        std::fs::write(&file, concat!(head!(), "mtu = 1\n")).unwrap();
        let err = Topology::load(&file).unwrap_err();
        std::fs::remove_dir_all(&path).unwrap();
        assert_eq!(
            err.to_string(),
            format!(
                "{}:10: network my-network: mtu 1 is outside 576-65485",
                file.display()
            )
        );
        assert_eq!(err.line(), Some(10));
    }
}
