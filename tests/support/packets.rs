#![allow(dead_code)] // each user takes what it needs

//! Fixed packets for the benchmarks and the allocation test: one network (VNI 4097, MTU 1450),
//! two local tasks and one remote task behind VTEP 192.0.2.11.

use std::net::Ipv4Addr;
use std::sync::Arc;

use swarmnet::dataplane::{PortId, Tables};
use swarmnet::topology::Topology;
use swarmnet::wire::{ipv4, MacAddr};

pub const TOPOLOGY: &str = r#"
[node]
name = "node-1"
data_path_addr = "192.0.2.10"

[[network]]
name = "my-network"
vni = 4097
subnet = "10.0.9.0/24"
gateway = "10.0.9.1"
mtu = 1450

[[endpoint]]
name = "my-web.1"
network = "my-network"
ip = "10.0.9.2"

[[endpoint]]
name = "my-web.2"
network = "my-network"
ip = "10.0.9.4"

[[endpoint]]
name = "peer"
network = "my-network"
ip = "10.0.9.3"
vtep = "192.0.2.11"
"#;

pub const WEB1: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 2);
pub const WEB2: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 4);
pub const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 3);
pub const LOCAL_VTEP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
pub const PEER_VTEP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
pub const PORT_WEB1: PortId = PortId(0);

pub fn tables() -> Arc<Tables> {
    let topo = Topology::parse(TOPOLOGY, "bench.toml").expect("fixed topology is valid");
    let t = Tables::from_topology(&topo);
    assert_eq!(t.port_id("my-web.1"), Some(PORT_WEB1));
    Arc::new(t)
}

/// An Ethernet frame of `len` bytes carrying IPv4/UDP from `src` to `dst`.
pub fn frame(src: Ipv4Addr, dst: Ipv4Addr, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&MacAddr::from_ipv4(dst).0);
    f[6..12].copy_from_slice(&MacAddr::from_ipv4(src).0);
    f[12..14].copy_from_slice(&ipv4::ETHERTYPE.to_be_bytes());
    let ip_len = (len - 14) as u16;
    let mut hdr = [0u8; ipv4::HEADER_LEN];
    ipv4::Fields {
        src,
        dst,
        protocol: ipv4::PROTO_UDP,
        ttl: ipv4::DEFAULT_TTL,
        identification: 1,
        dont_fragment: true,
        total_len: ip_len,
    }
    .write(&mut hdr);
    f[14..34].copy_from_slice(&hdr);
    f[34..36].copy_from_slice(&40000u16.to_be_bytes());
    f[36..38].copy_from_slice(&5353u16.to_be_bytes());
    f[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
    for (i, b) in f[42..].iter_mut().enumerate() {
        *b = i as u8;
    }
    f
}

/// The VXLAN datagram (outer IPv4, UDP checksum zero) from the peer's VTEP carrying `inner`.
pub fn underlay(inner: &[u8]) -> Vec<u8> {
    let total = 20 + 8 + 8 + inner.len();
    let mut d = vec![0u8; total];
    let mut hdr = [0u8; ipv4::HEADER_LEN];
    ipv4::Fields {
        src: PEER_VTEP,
        dst: LOCAL_VTEP,
        protocol: ipv4::PROTO_UDP,
        ttl: ipv4::DEFAULT_TTL,
        identification: 7,
        dont_fragment: false,
        total_len: total as u16,
    }
    .write(&mut hdr);
    d[..20].copy_from_slice(&hdr);
    d[20..22].copy_from_slice(&50000u16.to_be_bytes());
    d[22..24].copy_from_slice(&4789u16.to_be_bytes());
    d[24..26].copy_from_slice(&((total - 20) as u16).to_be_bytes());
    d[28] = 0x08;
    d[32..35].copy_from_slice(&[0x00, 0x10, 0x01]);
    d[36..].copy_from_slice(inner);
    d
}
