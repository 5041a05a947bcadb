//! Reading a topology: TOML into spanned raw values, then validation into a `Topology` with
//! errors that name the file, the line and the object.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::ops::Range;

use ipnet::Ipv4Net;
use serde::Deserialize;
use toml::{Spanned, Value};

use super::*;
use crate::dataplane::esp::MAX_KEYS;
use crate::wire::MacAddr;

/// Parses and validates a topology; `file` only labels errors.
pub(super) fn parse(text: &str, file: &str) -> Result<Topology, TopologyError> {
    let p = Parser {
        text,
        file,
        lines: LineIndex::new(text),
    };
    let raw: RawTopology = toml::from_str(text).map_err(|e| p.toml_error(&e))?;
    let node = p.node(raw.node.as_ref())?;
    let encryption = match &raw.encryption {
        Some(e) => Some(p.encryption(e, &node)?),
        None => None,
    };
    let networks = p.networks(&raw.network, encryption.as_ref())?;
    let endpoints = p.endpoints(&raw.endpoint, &node, &networks)?;
    let services = p.services(&raw.service, &networks, &endpoints)?;
    Ok(Topology {
        node,
        networks,
        endpoints,
        services,
        encryption,
    })
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
    service: Vec<Spanned<RawService>>,
    #[serde(default)]
    encryption: Option<Spanned<RawEncryption>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    #[serde(default)]
    name: RawField,
    #[serde(default)]
    network: RawField,
    #[serde(default)]
    vip: RawField,
    #[serde(default)]
    aliases: RawField,
    #[serde(default)]
    tasks: RawField,
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
    #[serde(default)]
    remote_checksum_offload: RawField,
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
    #[serde(default)]
    ingress: RawField,
    #[serde(default)]
    driver: RawField,
    #[serde(default)]
    icc: RawField,
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
    #[serde(default)]
    iface: RawField,
    #[serde(default)]
    app: RawField,
    #[serde(default)]
    task: RawField,
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
    service: Vec<Spanned<OutlineEntry>>,
    #[serde(default)]
    encryption: Option<Spanned<serde::de::IgnoredAny>>,
}

#[derive(Deserialize)]
struct OutlineEntry {
    #[serde(default)]
    name: Option<Value>,
}

/// Longest name used as a file name, in bytes: room for a suffix (`.pcap`) under NAME_MAX.
pub const MAX_FILE_NAME: usize = 128;

/// Why `s` cannot be used as a file name, if it cannot.
pub(super) fn file_name_problem(s: &str) -> Option<String> {
    let problem = if s.is_empty() {
        "must not be empty".to_string()
    } else if s.contains('/') {
        "must not contain '/'".to_string()
    } else if s.contains('\0') {
        "must not contain NUL".to_string()
    } else if s.chars().any(char::is_control) {
        "must not contain control characters (newlines, tabs, ...)".to_string()
    } else if s == "." || s == ".." {
        "must not be . or ..".to_string()
    } else if s.len() > MAX_FILE_NAME {
        format!("is {} bytes long, more than {MAX_FILE_NAME}", s.len())
    } else {
        return None;
    };
    Some(problem)
}

/// The interface of a local endpoint without `iface`, as in a Docker container.
pub const DEFAULT_IFACE: &str = "eth0";

/// Why `s` cannot name a network interface, if it cannot (the kernel's `dev_valid_name`: below
/// IFNAMSIZ, no '/', ':' or whitespace, not . or ..; and not `lo`, which every namespace has).
pub(super) fn iface_name_problem(s: &str) -> Option<String> {
    let problem = if s.is_empty() {
        "must not be empty".to_string()
    } else if s.len() > 15 {
        format!("is {} bytes long, more than 15", s.len())
    } else if s == "." || s == ".." {
        "must not be . or ..".to_string()
    } else if let Some(c) = s
        .chars()
        .find(|&c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        format!("must not contain {c:?}")
    } else if s == "lo" {
        "is the namespace's loopback interface".to_string()
    } else {
        return None;
    };
    Some(problem)
}

/// `s` quoted for an error message, cut to a readable length.
fn quoted(s: &str) -> String {
    const SHOWN: usize = 40;
    match s.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{:?}...", &s[..cut]),
        None => format!("{s:?}"),
    }
}

/// How an object is named in errors: its name if printable, else its 1-based position.
fn label(name: Option<&Value>, index: usize) -> String {
    match name.and_then(Value::as_str) {
        Some(n)
            if !n.is_empty() && n.len() <= MAX_FILE_NAME && !n.chars().any(char::is_control) =>
        {
            n.to_string()
        }
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

/// Where each line of a text starts, so that a byte offset's line costs a binary search and
/// not a scan from the start of the file (which made every object's errors and first-seen
/// lines quadratic in the file's size).
pub(super) struct LineIndex {
    /// Byte offset of the start of every line after the first.
    starts: Vec<usize>,
}

impl LineIndex {
    pub(super) fn new(text: &str) -> LineIndex {
        LineIndex {
            starts: newline_offsets(text.as_bytes()).map(|i| i + 1).collect(),
        }
    }

    /// The 1-based line holding byte `offset` (offsets past the end: the last line).
    pub(super) fn line(&self, offset: usize) -> usize {
        1 + self.starts.partition_point(|&s| s <= offset)
    }
}

fn newline_offsets(bytes: &[u8]) -> impl Iterator<Item = usize> + '_ {
    bytes
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .map(|(i, _)| i)
}

struct Parser<'a> {
    text: &'a str,
    file: &'a str,
    lines: LineIndex,
}

impl Parser<'_> {
    fn line(&self, offset: usize) -> usize {
        self.lines.line(offset)
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
        for (i, e) in outline.service.iter().enumerate() {
            if holds(e.span()) {
                return ErrorObject::Service(label(e.get_ref().name.as_ref(), i));
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
        // The node's name names its state directories (/run/swarmnet/NAME, ...).
        f.file_name("name", name_v, name)?;
        let addr_v = f.required("data_path_addr", &r.data_path_addr)?;
        let data_path_addr = f.unicast("data_path_addr", addr_v)?;
        let data_path_port = match &r.data_path_port {
            None => DEFAULT_DATA_PATH_PORT,
            Some(v) => f.ranged("data_path_port", v, MIN_DATA_PATH_PORT, MAX_DATA_PATH_PORT)?,
        };
        let remote_checksum_offload = match &r.remote_checksum_offload {
            None => false,
            Some(v) => f.boolean("remote_checksum_offload", v)?,
        };
        Ok(Node {
            name: name.to_string(),
            data_path_addr,
            data_path_port,
            remote_checksum_offload,
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

            let bridge = match &r.driver {
                None => false,
                Some(v) => match f.string("driver", v)? {
                    "overlay" => false,
                    "bridge" => true,
                    other => {
                        let msg = format!("driver {other:?} must be \"overlay\" or \"bridge\"");
                        return Err(f.err(v, msg));
                    }
                },
            };
            let vni = if bridge {
                if let Some(v) = &r.vni {
                    let msg = "a bridge network has no vni (it never leaves the node)".to_string();
                    return Err(f.err(v, msg));
                }
                0
            } else {
                let vni_v = f.required("vni", &r.vni)?;
                let vni = f.ranged("vni", vni_v, 1, MAX_VNI)?;
                if let Some(other) = out.iter().find(|n| n.vni == vni) {
                    let msg = format!("vni {vni} is already used by network {}", other.name);
                    return Err(f.err(vni_v, msg));
                }
                vni
            };
            let icc = match &r.icc {
                None => false,
                Some(v) if bridge => f.boolean("icc", v)?,
                Some(v) => {
                    let msg = "icc is a bridge network's setting (driver = \"bridge\")".to_string();
                    return Err(f.err(v, msg));
                }
            };

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

            let ingress = match &r.ingress {
                None => false,
                Some(v) => f.boolean("ingress", v)?,
            };
            if bridge && (encrypted || ingress) {
                let msg = "a bridge network cannot be encrypted or the ingress network".to_string();
                return Err(f.err(r.driver.as_ref().unwrap_or(name_v), msg));
            }
            if ingress {
                if let Some(other) = out.iter().find(|n| n.ingress) {
                    let msg = format!("network {} is already the ingress network", other.name);
                    return Err(f.err(r.ingress.as_ref().unwrap_or(name_v), msg));
                }
            }

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
                ingress,
                bridge: bridge.then_some(super::Bridge { icc }),
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
        // (namespace, interface) -> (local endpoint, its line); one endpoint per interface.
        let mut interfaces: HashMap<(String, String), (String, usize)> = HashMap::new();
        // (namespace, network) -> (local endpoint, its line); a task joins a network once.
        let mut attached: HashMap<(String, String), (String, usize)> = HashMap::new();
        for (i, raw) in raws.iter().enumerate() {
            let r = raw.get_ref();
            let object = ErrorObject::Endpoint(label(r.name.as_ref().map(Spanned::get_ref), i));
            let f = self.fields(object, raw.span());

            let name_v = f.required("name", &r.name)?;
            let name = f.string("name", name_v)?;
            f.file_name("name", name_v, name)?;
            if RESERVED_ENDPOINT_NAMES.contains(&name) {
                let msg = format!("name {name:?} is reserved for the {name} capture of replay");
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
                    if network.bridge.is_some() {
                        let msg = format!(
                            "network {net} is a bridge, the node's own: its endpoints are local \
                             (no vtep)"
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
            let app = match &r.app {
                None => None,
                Some(v) => {
                    let text = f.string("app", v)?;
                    if let Some(vtep) = vtep {
                        let msg = format!(
                            "app is only for local endpoints; this one lives on vtep {vtep}"
                        );
                        return Err(f.err(v, msg));
                    }
                    if netns.is_some() {
                        let msg = "a virtual task (app) has no network namespace: give either \
                                   app or netns"
                            .to_string();
                        return Err(f.err(v, msg));
                    }
                    Some(App::parse(text).map_err(|msg| f.err(v, msg))?)
                }
            };
            let iface = match &r.iface {
                None => None,
                Some(v) => {
                    let iface = f.string("iface", v)?;
                    if let Some(vtep) = vtep {
                        let msg = format!(
                            "iface is only for local endpoints; this one lives on vtep {vtep}"
                        );
                        return Err(f.err(v, msg));
                    }
                    if app.is_some() {
                        let msg = "a virtual task (app) has no interface in a network namespace: \
                                   give either app or iface"
                            .to_string();
                        return Err(f.err(v, msg));
                    }
                    if let Some(problem) = iface_name_problem(iface) {
                        let msg = format!(
                            "iface {} {problem}: it is a Linux interface name (1-15 bytes, \
                             no '/', ':' or whitespace)",
                            quoted(iface)
                        );
                        return Err(f.err(v, msg));
                    }
                    Some(iface.to_string())
                }
            };
            let task = match &r.task {
                None => None,
                Some(v) => {
                    let task = f.string("task", v)?;
                    if let Some(problem) = dns_name_problem(task) {
                        return Err(f.err(v, format!("task {} {problem}", quoted(task))));
                    }
                    Some(task.to_string())
                }
            };
            if vtep.is_none() && app.is_none() {
                // A local endpoint's namespace: `netns`, or its name; its interface: `iface`,
                // or eth0. Several endpoints share a namespace as one task on several networks.
                let (ns, ns_v) = match (&netns, &r.netns) {
                    (Some(ns), Some(v)) => (ns.as_str(), v),
                    _ => (name, name_v),
                };
                let (dev, dev_v) = match (&iface, &r.iface) {
                    (Some(dev), Some(v)) => (dev.as_str(), v),
                    _ => (DEFAULT_IFACE, ns_v),
                };
                let line = self.line(name_v.span().start);
                let key = (ns.to_string(), dev.to_string());
                if let Some((other, at)) = interfaces.get(&key) {
                    let msg = format!(
                        "interface {dev} of network namespace {ns} is already endpoint {other}'s \
                         (line {at}); give one of them another `iface` or `netns`"
                    );
                    return Err(f.err(dev_v, msg));
                }
                let joined = (ns.to_string(), net.to_string());
                if let Some((other, at)) = attached.get(&joined) {
                    let msg = format!(
                        "network namespace {ns} is already on network {net} through endpoint \
                         {other} (line {at}); a task joins a network once"
                    );
                    return Err(f.err(net_v, msg));
                }
                interfaces.insert(key, (name.to_string(), line));
                attached.insert(joined, (name.to_string(), line));
            }

            ips.insert((net, ip), out.len());
            macs.insert((net, mac), out.len());
            out.push(Endpoint {
                name: name.to_string(),
                network: net.to_string(),
                ip,
                mac,
                vtep,
                netns,
                iface,
                app,
                task,
            });
        }
        Ok(out)
    }

    fn services(
        &self,
        raws: &[Spanned<RawService>],
        networks: &[Network],
        endpoints: &[Endpoint],
    ) -> Result<Vec<Service>, TopologyError> {
        let mut out: Vec<Service> = Vec::with_capacity(raws.len());
        // (network, name or alias) -> service
        let mut names: HashMap<(String, String), String> = HashMap::new();
        for (i, raw) in raws.iter().enumerate() {
            let r = raw.get_ref();
            let object = ErrorObject::Service(label(r.name.as_ref().map(Spanned::get_ref), i));
            let f = self.fields(object, raw.span());

            let name_v = f.required("name", &r.name)?;
            let name = f.string("name", name_v)?;
            if let Some(problem) = dns_name_problem(name) {
                return Err(f.err(name_v, format!("name {} {problem}", quoted(name))));
            }
            let net_v = f.required("network", &r.network)?;
            let net_name = f.string("network", net_v)?;
            let Some(network) = networks.iter().find(|n| n.name == net_name) else {
                return Err(f.err(net_v, format!("unknown network {net_name}")));
            };
            let mut aliases = Vec::new();
            if let Some(v) = &r.aliases {
                for a in f.strings("aliases", v)? {
                    if let Some(problem) = dns_name_problem(a) {
                        return Err(f.err(v, format!("alias {} {problem}", quoted(a))));
                    }
                    aliases.push(a.to_string());
                }
            }
            // One name, one meaning: a name or alias taken by another service on the network,
            // or twice by this one, is refused.
            let mut own: Vec<String> = Vec::new();
            for (k, n) in std::iter::once(name)
                .chain(aliases.iter().map(String::as_str))
                .enumerate()
            {
                let lower = n.to_ascii_lowercase();
                let msg = if own.contains(&lower) {
                    Some(format!("alias {n} is already a name of service {name}"))
                } else {
                    names
                        .get(&(net_name.to_string(), lower.clone()))
                        .map(|other| match k {
                            0 if other.eq_ignore_ascii_case(name) => {
                                format!("service {name} is already on network {net_name}")
                            }
                            _ => format!(
                                "name {n} is already service {other}'s on network {net_name}"
                            ),
                        })
                };
                if let Some(msg) = msg {
                    return Err(f.err(name_v, msg));
                }
                own.push(lower);
            }
            for n in own {
                names.insert((net_name.to_string(), n), name.to_string());
            }

            let vip = match &r.vip {
                None => None,
                Some(v) => {
                    let vip = f.ipv4("vip", v)?;
                    let subnet = network.subnet;
                    let problem = if !subnet.contains(&vip) {
                        Some("is outside".to_string())
                    } else if vip == network.gateway {
                        Some("is the gateway of".to_string())
                    } else if vip == subnet.network() {
                        Some("is the network address of".to_string())
                    } else if vip == subnet.broadcast() {
                        Some("is the broadcast address of".to_string())
                    } else {
                        let endpoint = endpoints
                            .iter()
                            .find(|e| e.network == net_name && e.ip == vip)
                            .map(|e| format!("is endpoint {}'s address on", e.name));
                        endpoint.or_else(|| {
                            out.iter()
                                .find(|s| s.network == net_name && s.vip == Some(vip))
                                .map(|s| format!("is service {}'s VIP on", s.name))
                        })
                    };
                    if let Some(problem) = problem {
                        let msg = format!("vip {vip} {problem} network {net_name} ({subnet})");
                        return Err(f.err(v, msg));
                    }
                    Some(vip)
                }
            };

            let mut tasks: Vec<String> = Vec::new();
            if let Some(v) = &r.tasks {
                for t in f.strings("tasks", v)? {
                    let Some(e) = endpoints.iter().find(|e| e.name == t) else {
                        return Err(f.err(v, format!("tasks: unknown endpoint {t}")));
                    };
                    if e.network != net_name {
                        let msg = format!(
                            "tasks: endpoint {t} is on network {}, not {net_name}",
                            e.network
                        );
                        return Err(f.err(v, msg));
                    }
                    if tasks.iter().any(|x| x == t) {
                        return Err(f.err(v, format!("tasks: endpoint {t} is listed twice")));
                    }
                    tasks.push(t.to_string());
                }
            }
            out.push(Service {
                name: name.to_string(),
                network: net_name.to_string(),
                vip,
                aliases,
                tasks,
            });
        }
        Ok(out)
    }
}

/// Why `s` cannot be a DNS name of a service, alias or task, if it cannot: 1-63 letters,
/// digits, '-', '_' or '.' per label, at most 253 bytes, no empty label.
pub fn dns_name_problem(s: &str) -> Option<String> {
    let problem = if s.is_empty() {
        "must not be empty".to_string()
    } else if s.len() > 253 {
        format!("is {} bytes long, more than 253", s.len())
    } else if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        format!("must not contain {c:?} (letters, digits, '-', '_' and '.' only)")
    } else if s.split('.').any(|l| l.is_empty() || l.len() > 63) {
        "has an empty label or one longer than 63 bytes".to_string()
    } else {
        return None;
    };
    Some(problem)
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

    /// An array of strings.
    fn strings<'v>(&self, key: &str, v: &'v Spanned<Value>) -> Result<Vec<&'v str>, TopologyError> {
        let not =
            |what: String| self.err(v, format!("{key} must be an array of strings, not {what}"));
        let Some(items) = v.get_ref().as_array() else {
            return Err(not(a_type(v.get_ref())));
        };
        items
            .iter()
            .map(|i| {
                i.as_str()
                    .ok_or_else(|| not(format!("one holding {}", a_type(i))))
            })
            .collect()
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

    /// A name used as a file name (endpoint captures, /run/netns entries, node directories).
    fn file_name(&self, key: &str, v: &Spanned<Value>, s: &str) -> Result<(), TopologyError> {
        match file_name_problem(s) {
            None => Ok(()),
            Some(problem) => Err(self.err(
                v,
                format!("{key} {} {problem}: it is used as a file name", quoted(s)),
            )),
        }
    }
}
