//! The names the swarm owns, per network, prebuilt from a `ServiceView` once per snapshot.
//!
//! Keys are the lower-cased name without its trailing dot (`my-web`, `tasks.my-web`,
//! `my-web.1.<id>`), so a lookup is one hash probe per network of the querying task. A name
//! that is known but has no address (a dnsrr service with no running task) keeps an empty
//! entry: it is answered NOERROR with no records rather than forwarded out of the swarm.

use std::net::Ipv4Addr;

use hickory_proto::rr::rdata::PTR;
use hickory_proto::rr::{Name, RData, Record};
use rustc_hash::FxHashMap;

use super::TTL;
use crate::dataplane::services::{NetServices, ServiceView};

/// The longest name in presentation form without the trailing dot (RFC 1035: 255 octets on
/// the wire, which is at most 253 characters written out).
pub(super) const MAX_KEY: usize = 253;

/// The names of every network, indexed like `ServiceView::networks` (by `NetId`).
#[derive(Debug, Clone, Default)]
pub struct DnsTable {
    nets: Vec<NetNames>,
}

#[derive(Debug, Clone, Default)]
struct NetNames {
    /// Lower-cased network name: `<name>.<network>` is looked up on this network only. Empty
    /// on the ingress network, which has no names.
    network: Box<[u8]>,
    names: FxHashMap<Box<[u8]>, Box<[Ipv4Addr]>>,
    /// Task IP -> its PTR record, `d.c.b.a.in-addr.arpa.` (lower case) -> `<task>.<network>.`.
    /// VIPs have none, as in Docker. Prebuilt so that the common query (in lower case, as stub
    /// resolvers send it) is answered without copying a name.
    ptr: FxHashMap<Ipv4Addr, Record>,
}

/// What a name is on the querying task's networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lookup<'a> {
    /// Known, with these addresses (at least one).
    Addrs(&'a [Ipv4Addr]),
    /// Known, but nothing to answer (no running task): NOERROR, no records.
    Empty,
    /// Not a name of the swarm: forward it.
    Unknown,
}

impl DnsTable {
    /// Builds the lookup of every network of `view`. Ingress networks get an empty one.
    pub fn new(view: &ServiceView) -> DnsTable {
        DnsTable {
            nets: view.networks.iter().map(NetNames::new).collect(),
        }
    }

    /// Number of networks (the `nets` indices `respond` accepts are below it).
    pub fn networks(&self) -> usize {
        self.nets.len()
    }

    /// Looks `key` (lower-cased, no trailing dot) up on `nets` in order: the first network
    /// with addresses for it answers. `a.b` on network `b` is also tried as `a` there.
    pub(super) fn lookup(&self, nets: &[usize], key: &[u8]) -> Lookup<'_> {
        let mut known = false;
        for net in nets.iter().filter_map(|&i| self.nets.get(i)) {
            match net.names.get(key) {
                Some(addrs) if !addrs.is_empty() => return Lookup::Addrs(addrs),
                Some(_) => known = true,
                None => {}
            }
        }
        if let Some(dot) = key.iter().rposition(|&b| b == b'.') {
            let (prefix, network) = (&key[..dot], &key[dot + 1..]);
            for net in nets.iter().filter_map(|&i| self.nets.get(i)) {
                if net.network.is_empty() || *net.network != *network {
                    continue;
                }
                match net.names.get(prefix) {
                    Some(addrs) if !addrs.is_empty() => return Lookup::Addrs(addrs),
                    Some(_) => known = true,
                    None => {}
                }
            }
        }
        if known {
            Lookup::Empty
        } else {
            Lookup::Unknown
        }
    }

    /// The name of the task that has `ip` on the first of `nets` that has it.
    pub(super) fn lookup_ptr(&self, nets: &[usize], ip: Ipv4Addr) -> Option<&Record> {
        nets.iter()
            .filter_map(|&i| self.nets.get(i))
            .find_map(|net| net.ptr.get(&ip))
    }
}

impl NetNames {
    fn new(net: &NetServices) -> NetNames {
        if net.ingress {
            return NetNames::default();
        }
        let mut names: FxHashMap<Box<[u8]>, Vec<Ipv4Addr>> = FxHashMap::default();
        let mut ptr = FxHashMap::default();
        let network = net.network.to_ascii_lowercase();
        let mut key = String::new();
        for svc in &net.services {
            let backends: Vec<Ipv4Addr> = svc.backends.iter().map(|b| b.ip).collect();
            for name in std::iter::once(&svc.name).chain(&svc.aliases) {
                let own = match &svc.vip {
                    Some(vip) => std::slice::from_ref(vip),
                    None => &backends[..],
                };
                insert(&mut names, name, own);
                key.clear();
                key.push_str("tasks.");
                key.push_str(name);
                insert(&mut names, &key, &backends);
            }
            for b in &svc.backends {
                insert(&mut names, &b.task, std::slice::from_ref(&b.ip));
                key.clear();
                key.push_str(&b.task);
                key.push('.');
                key.push_str(&net.network);
                key.push('.');
                // A task or network name that is not a valid domain name gets no PTR.
                if let Ok(target) = Name::from_ascii(&key) {
                    ptr.entry(b.ip).or_insert_with(|| ptr_record(b.ip, target));
                }
            }
        }
        NetNames {
            network: network.into_bytes().into_boxed_slice(),
            names: names
                .into_iter()
                .map(|(k, v)| (k, v.into_boxed_slice()))
                .collect(),
            ptr,
        }
    }
}

/// `d.c.b.a.in-addr.arpa. PTR target`, TTL 600.
fn ptr_record(ip: Ipv4Addr, target: Name) -> Record {
    let [a, b, c, d] = ip.octets();
    let owner = Name::from_ascii(format!("{d}.{c}.{b}.{a}.in-addr.arpa."))
        .expect("four numbers and two fixed labels form a valid name");
    Record::from_rdata(owner, TTL, RData::PTR(PTR(target)))
}

/// Adds `addrs` to `name`'s entry. Names shared by several services (an alias given twice)
/// answer the union, as Docker's per-network records do.
fn insert(names: &mut FxHashMap<Box<[u8]>, Vec<Ipv4Addr>>, name: &str, addrs: &[Ipv4Addr]) {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > MAX_KEY {
        return;
    }
    let key = name.to_ascii_lowercase().into_bytes().into_boxed_slice();
    let entry = names.entry(key).or_default();
    if entry.is_empty() {
        entry.extend_from_slice(addrs);
    } else {
        for a in addrs {
            if !entry.contains(a) {
                entry.push(*a);
            }
        }
    }
}

/// Writes the lower-cased presentation form of `name` (no trailing dot) into `buf` and returns
/// its length; `None` when a label holds a dot (it could pose as two labels) or the name is
/// too long.
pub(super) fn key_of(name: &Name, buf: &mut [u8; MAX_KEY]) -> Option<usize> {
    let mut len = 0;
    for (i, label) in name.iter().enumerate() {
        if label.contains(&b'.') {
            return None;
        }
        let need = label.len() + usize::from(i > 0);
        if len + need > MAX_KEY {
            return None;
        }
        if i > 0 {
            buf[len] = b'.';
            len += 1;
        }
        for (dst, src) in buf[len..len + label.len()].iter_mut().zip(label) {
            *dst = src.to_ascii_lowercase();
        }
        len += label.len();
    }
    Some(len)
}

/// `d.c.b.a.in-addr.arpa` (lower-cased key) -> a.b.c.d.
pub(super) fn ptr_ipv4(key: &[u8]) -> Option<Ipv4Addr> {
    let rest = key.strip_suffix(b".in-addr.arpa")?;
    let mut octets = [0u8; 4];
    let mut parts = rest.split(|&b| b == b'.');
    for slot in octets.iter_mut().rev() {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        if part.len() > 1 && part[0] == b'0' {
            return None;
        }
        let v = part
            .iter()
            .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
        *slot = u8::try_from(v).ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Ipv4Addr::from(octets))
}
