//! IPv4 address management: subnets for networks from the swarm's address pools, gateways, the
//! optional IP range, and task addresses inside a subnet.
//!
//! Pure functions over what is in use; the caller (the leader, holding the store) passes every
//! subnet and address already taken. Subnets of different networks never overlap, which goes
//! further than Docker 20.10 (it accepts a second 10.0.9.0/24).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// Shortest prefix a pool may be split into, and the longest subnet that still has room for a
/// gateway and one task.
pub const MAX_SUBNET_PREFIX: u8 = 30;

/// IPAM errors, worded for the user who typed the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    /// Docker's text for a subnet that does not parse.
    #[error("Invalid subnet {0} : invalid CIDR address: {0}")]
    InvalidSubnet(String),
    #[error("invalid subnet {given}: host bits are set (the network is {network})")]
    HostBits { given: String, network: Ipv4Net },
    #[error("subnet {0} has no room for tasks: the longest prefix is /{MAX_SUBNET_PREFIX}")]
    SubnetTooSmall(Ipv4Net),
    #[error("subnet {subnet} overlaps network {name} ({other})")]
    Overlaps {
        subnet: Ipv4Net,
        name: String,
        other: Ipv4Net,
    },
    #[error("invalid gateway address {0}: not an IPv4 address")]
    InvalidGateway(String),
    /// Docker's text for a gateway outside the subnet.
    #[error("no matching subnet for gateway {0}")]
    GatewayOutside(Ipv4Addr),
    #[error("gateway {gateway} is the {what} address of {subnet}, not a host address")]
    GatewayNotHost {
        gateway: Ipv4Addr,
        what: &'static str,
        subnet: Ipv4Net,
    },
    #[error("Invalid ip-range {0} : invalid CIDR address: {0}")]
    InvalidRange(String),
    /// Docker's text for a range outside the subnet.
    #[error("no matching subnet for range {0}")]
    RangeOutside(Ipv4Net),
    /// Docker CLI's text for a gateway or range given without a subnet.
    #[error("every ip-range or gateway must have a corresponding subnet")]
    NoSubnet,
    #[error("no address pool left: all /{mask}s of {pools} are in use")]
    PoolsExhausted { mask: u8, pools: String },
    #[error("no free address left in {0}")]
    AddressesExhausted(Ipv4Net),
    #[error("address {addr} is already in use on {subnet}")]
    AddressTaken { addr: Ipv4Addr, subnet: Ipv4Net },
    #[error("address {addr} is not in {subnet}")]
    AddressOutside { addr: Ipv4Addr, subnet: Ipv4Net },
}

/// A subnet in use, and the network holding it (for the overlap message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsedSubnet {
    pub subnet: Ipv4Net,
    pub network: String,
}

/// The swarm's default address pools (`swarm init --default-addr-pool`, `--default-addr-pool-mask-length`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressPools {
    pub pools: Vec<Ipv4Net>,
    /// Prefix length of each allocated subnet.
    pub mask: u8,
}

impl Default for AddressPools {
    /// Docker's default: 10.0.0.0/8 in /24s.
    fn default() -> Self {
        AddressPools {
            pools: vec![Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), 8).expect("8 <= 32")],
            mask: 24,
        }
    }
}

/// Parses a subnet as typed (`10.0.9.0/24`): Docker's text when it does not parse, a clear refusal
/// when host bits are set or the subnet cannot hold a gateway and a task.
pub fn parse_subnet(s: &str) -> Result<Ipv4Net, IpamError> {
    let net: Ipv4Net = s
        .trim()
        .parse()
        .map_err(|_| IpamError::InvalidSubnet(s.to_string()))?;
    if net.addr() != net.network() {
        return Err(IpamError::HostBits {
            given: s.to_string(),
            network: net.trunc(),
        });
    }
    if net.prefix_len() > MAX_SUBNET_PREFIX {
        return Err(IpamError::SubnetTooSmall(net));
    }
    Ok(net)
}

/// Refuses `subnet` when it overlaps a subnet in use, naming that network (the lowest subnet
/// when it overlaps several, so the answer does not depend on the store's order).
pub fn check_overlap(subnet: Ipv4Net, used: &[UsedSubnet]) -> Result<(), IpamError> {
    match used
        .iter()
        .filter(|u| overlaps(subnet, u.subnet))
        .min_by_key(|u| (u.subnet.network(), u.subnet.prefix_len()))
    {
        Some(u) => Err(IpamError::Overlaps {
            subnet,
            name: u.network.clone(),
            other: u.subnet,
        }),
        None => Ok(()),
    }
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Range of a subnet as inclusive `u32` bounds.
fn bounds(net: Ipv4Net) -> (u32, u32) {
    (u32::from(net.network()), u32::from(net.broadcast()))
}

/// The first subnet of `pools.mask` bits, pool by pool, that overlaps nothing in `used`.
///
/// Runs in O(used · log used) however large the pools: the used subnets are merged into sorted
/// ranges, and a candidate that hits one jumps past its end rather than walking every block in
/// between.
pub fn allocate_subnet(pools: &AddressPools, used: &[UsedSubnet]) -> Result<Ipv4Net, IpamError> {
    // Used subnets as sorted, merged, disjoint ranges.
    let mut ranges: Vec<(u64, u64)> = used
        .iter()
        .map(|u| {
            let (s, e) = bounds(u.subnet);
            (u64::from(s), u64::from(e))
        })
        .collect();
    ranges.sort_unstable();
    let mut taken: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (s, e) in ranges {
        match taken.last_mut() {
            Some(last) if s <= last.1 + 1 => last.1 = last.1.max(e),
            _ => taken.push((s, e)),
        }
    }
    for pool in &pools.pools {
        if pools.mask < pool.prefix_len() || pools.mask > MAX_SUBNET_PREFIX {
            continue;
        }
        let size = 1u64 << (32 - pools.mask);
        let (start, end) = bounds(*pool);
        let mut cand = u64::from(start);
        let mut i = 0;
        while cand + size - 1 <= u64::from(end) {
            let (lo, hi) = (cand, cand + size - 1);
            while i < taken.len() && taken[i].1 < lo {
                i += 1;
            }
            match taken.get(i) {
                Some(&(s, e)) if s <= hi => {
                    // Jump to the first aligned block after the taken range.
                    cand = (e + 1).div_ceil(size) * size;
                }
                _ => {
                    let addr = Ipv4Addr::from(lo as u32);
                    return Ok(Ipv4Net::new(addr, pools.mask).expect("mask <= 32"));
                }
            }
        }
    }
    let names: Vec<String> = pools.pools.iter().map(|p| p.to_string()).collect();
    Err(IpamError::PoolsExhausted {
        mask: pools.mask,
        pools: names.join(", "),
    })
}

/// The gateway of `subnet`: the one given (checked to be a host address inside it), else the
/// first host address, as Docker does.
pub fn gateway(subnet: Ipv4Net, given: Option<&str>) -> Result<Ipv4Addr, IpamError> {
    let Some(given) = given else {
        return Ok(first_host(subnet));
    };
    let gw: Ipv4Addr = given
        .trim()
        .parse()
        .map_err(|_| IpamError::InvalidGateway(given.to_string()))?;
    if !subnet.contains(&gw) {
        return Err(IpamError::GatewayOutside(gw));
    }
    let what = if gw == subnet.network() {
        "network"
    } else if gw == subnet.broadcast() {
        "broadcast"
    } else {
        return Ok(gw);
    };
    Err(IpamError::GatewayNotHost {
        gateway: gw,
        what,
        subnet,
    })
}

fn first_host(subnet: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()) + 1)
}

/// The `--ip-range` given, checked to lie inside `subnet`.
pub fn ip_range(subnet: Ipv4Net, given: &str) -> Result<Ipv4Net, IpamError> {
    let range: Ipv4Net = given
        .trim()
        .parse()
        .map_err(|_| IpamError::InvalidRange(given.to_string()))?;
    let range = range.trunc();
    if !subnet.contains(&range) {
        return Err(IpamError::RangeOutside(range));
    }
    Ok(range)
}

/// Task addresses of one network: from `range` (or the whole subnet), never the network or
/// broadcast address or the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressSpace {
    pub subnet: Ipv4Net,
    pub range: Option<Ipv4Net>,
    pub gateway: Ipv4Addr,
}

impl AddressSpace {
    fn usable(&self, a: u32) -> bool {
        let (net, bcast) = bounds(self.subnet);
        a > net && a < bcast && a != u32::from(self.gateway)
    }

    /// The next free address after `last` (wrapping once), so a freed address is not handed out
    /// again at once: a stale peer entry for it then has time to age out, as with Docker's
    /// serial allocation.
    pub fn allocate(
        &self,
        used: &BTreeSet<Ipv4Addr>,
        last: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, IpamError> {
        let (lo, hi) = bounds(self.range.unwrap_or(self.subnet));
        let start = match last {
            Some(l) if (lo..hi).contains(&u32::from(l)) => u32::from(l) + 1,
            _ => lo,
        };
        let free = |a: u32| self.usable(a) && !used.contains(&Ipv4Addr::from(a));
        (start..=hi)
            .chain(lo..start)
            .find(|&a| free(a))
            .map(Ipv4Addr::from)
            .ok_or(IpamError::AddressesExhausted(
                self.range.unwrap_or(self.subnet),
            ))
    }

    /// Reserves an address asked for by name (a static task address, the load balancer's).
    pub fn reserve(&self, addr: Ipv4Addr, used: &BTreeSet<Ipv4Addr>) -> Result<(), IpamError> {
        if !self.usable(u32::from(addr)) {
            return Err(IpamError::AddressOutside {
                addr,
                subnet: self.subnet,
            });
        }
        if used.contains(&addr) {
            return Err(IpamError::AddressTaken {
                addr,
                subnet: self.subnet,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn used(list: &[(&str, &str)]) -> Vec<UsedSubnet> {
        list.iter()
            .map(|(s, n)| UsedSubnet {
                subnet: net(s),
                network: n.to_string(),
            })
            .collect()
    }

    #[test]
    fn bad_cidr_gets_dockers_text() {
        assert_eq!(
            parse_subnet("10.0.9.0/33").unwrap_err().to_string(),
            "Invalid subnet 10.0.9.0/33 : invalid CIDR address: 10.0.9.0/33"
        );
        assert!(parse_subnet("10.0.9/24").is_err());
        assert!(parse_subnet("fe80::/64").is_err());
    }

    #[test]
    fn host_bits_and_tiny_subnets_are_refused() {
        assert_eq!(
            parse_subnet("10.0.9.5/24").unwrap_err().to_string(),
            "invalid subnet 10.0.9.5/24: host bits are set (the network is 10.0.9.0/24)"
        );
        assert_eq!(
            parse_subnet("10.0.9.0/31").unwrap_err(),
            IpamError::SubnetTooSmall(net("10.0.9.0/31"))
        );
        assert_eq!(parse_subnet("10.0.9.0/30").unwrap(), net("10.0.9.0/30"));
    }

    #[test]
    fn overlap_names_the_other_network() {
        let u = used(&[("10.0.8.0/22", "my-net2")]);
        assert_eq!(
            check_overlap(net("10.0.9.0/24"), &u)
                .unwrap_err()
                .to_string(),
            "subnet 10.0.9.0/24 overlaps network my-net2 (10.0.8.0/22)"
        );
        // The larger one over the smaller one is refused too.
        let u = used(&[("10.0.9.0/24", "a")]);
        assert!(check_overlap(net("10.0.0.0/16"), &u).is_err());
        assert!(check_overlap(net("10.0.10.0/24"), &u).is_ok());
    }

    #[test]
    fn first_free_subnets_in_order_and_reuse_after_removal() {
        let pools = AddressPools::default();
        assert_eq!(allocate_subnet(&pools, &[]).unwrap(), net("10.0.0.0/24"));
        let mut u = used(&[("10.0.0.0/24", "ingress")]);
        assert_eq!(allocate_subnet(&pools, &u).unwrap(), net("10.0.1.0/24"));
        u.extend(used(&[("10.0.1.0/24", "a"), ("10.0.2.0/23", "b")]));
        assert_eq!(allocate_subnet(&pools, &u).unwrap(), net("10.0.4.0/24"));
        // A user's /22 in the middle is skipped whole; a removed one is given again.
        u.retain(|x| x.network != "a");
        assert_eq!(allocate_subnet(&pools, &u).unwrap(), net("10.0.1.0/24"));
    }

    #[test]
    fn a_taken_range_that_is_not_aligned_is_jumped_over() {
        let pools = AddressPools {
            pools: vec![net("192.168.0.0/16")],
            mask: 24,
        };
        let u = used(&[("192.168.0.128/25", "x"), ("192.168.1.0/30", "y")]);
        assert_eq!(allocate_subnet(&pools, &u).unwrap(), net("192.168.2.0/24"));
    }

    #[test]
    fn exhaustion_names_the_pools() {
        let pools = AddressPools {
            pools: vec![net("10.1.0.0/23"), net("10.2.0.0/24")],
            mask: 24,
        };
        let u = used(&[("10.1.0.0/23", "a"), ("10.2.0.0/24", "b")]);
        assert_eq!(
            allocate_subnet(&pools, &u).unwrap_err().to_string(),
            "no address pool left: all /24s of 10.1.0.0/23, 10.2.0.0/24 are in use"
        );
        // The second pool serves once the first is full.
        let u = used(&[("10.1.0.0/23", "a")]);
        assert_eq!(allocate_subnet(&pools, &u).unwrap(), net("10.2.0.0/24"));
    }

    #[test]
    fn whole_default_pool_exhausts_quickly() {
        // Every /24 of 10.0.0.0/8 in use by /16s: allocation must not walk 65,536 blocks per
        // used subnet; correctness only here (no timing in tests).
        let u: Vec<UsedSubnet> = (0..=255u32)
            .map(|i| UsedSubnet {
                subnet: Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 | (i << 16)), 16).unwrap(),
                network: format!("n{i}"),
            })
            .collect();
        let err = allocate_subnet(&AddressPools::default(), &u).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no address pool left: all /24s of 10.0.0.0/8 are in use"
        );
    }

    #[test]
    fn gateway_rules() {
        let s = net("10.0.9.0/24");
        assert_eq!(gateway(s, None).unwrap(), Ipv4Addr::new(10, 0, 9, 1));
        assert_eq!(
            gateway(s, Some("10.0.9.99")).unwrap(),
            Ipv4Addr::new(10, 0, 9, 99)
        );
        assert_eq!(
            gateway(s, Some("10.0.10.1")).unwrap_err().to_string(),
            "no matching subnet for gateway 10.0.10.1"
        );
        assert!(matches!(
            gateway(s, Some("10.0.9.255")),
            Err(IpamError::GatewayNotHost {
                what: "broadcast",
                ..
            })
        ));
        assert!(matches!(
            gateway(s, Some("10.0.9.0")),
            Err(IpamError::GatewayNotHost {
                what: "network",
                ..
            })
        ));
        assert!(matches!(
            gateway(s, Some("nope")),
            Err(IpamError::InvalidGateway(_))
        ));
    }

    #[test]
    fn ip_range_must_be_inside() {
        let s = net("10.0.9.0/24");
        assert_eq!(ip_range(s, "10.0.9.128/25").unwrap(), net("10.0.9.128/25"));
        assert_eq!(
            ip_range(s, "10.0.10.0/25").unwrap_err().to_string(),
            "no matching subnet for range 10.0.10.0/25"
        );
    }

    #[test]
    fn task_addresses_skip_reserved_and_do_not_reuse_at_once() {
        let space = AddressSpace {
            subnet: net("10.0.9.0/29"),
            range: None,
            gateway: Ipv4Addr::new(10, 0, 9, 1),
        };
        let mut used = BTreeSet::new();
        let mut last = None;
        let mut got = Vec::new();
        for _ in 0..5 {
            let a = space.allocate(&used, last).unwrap();
            used.insert(a);
            last = Some(a);
            got.push(a.octets()[3]);
        }
        assert_eq!(got, [2, 3, 4, 5, 6]);
        assert_eq!(
            space.allocate(&used, last).unwrap_err(),
            IpamError::AddressesExhausted(net("10.0.9.0/29"))
        );
        // .3 freed: handed out again only because the rest is full; with .7.. free it would
        // come after them (serial).
        used.remove(&Ipv4Addr::new(10, 0, 9, 3));
        assert_eq!(
            space.allocate(&used, last).unwrap(),
            Ipv4Addr::new(10, 0, 9, 3)
        );
    }

    #[test]
    fn task_addresses_come_from_the_range() {
        let space = AddressSpace {
            subnet: net("10.0.9.0/24"),
            range: Some(net("10.0.9.128/25")),
            gateway: Ipv4Addr::new(10, 0, 9, 1),
        };
        let a = space.allocate(&BTreeSet::new(), None).unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 0, 9, 128));
        let used = BTreeSet::from([a]);
        assert_eq!(
            space.reserve(a, &used).unwrap_err().to_string(),
            "address 10.0.9.128 is already in use on 10.0.9.0/24"
        );
        assert!(space.reserve(Ipv4Addr::new(10, 0, 9, 1), &used).is_err());
        assert!(space.reserve(Ipv4Addr::new(10, 0, 9, 2), &used).is_ok());
    }
}
