//! Choosing the addresses a node advertises and listens on (`--advertise-addr`,
//! `--listen-addr`, `--data-path-addr`), each an IP or an interface name, with Docker's rules.
//!
//! Unlike Docker, the default listen address is the advertise IP rather than 0.0.0.0, so that
//! several nodes can share one host on different loopback addresses.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Default cluster management port.
pub const DEFAULT_PORT: u16 = 2377;
/// Valid data-path (VXLAN) ports.
pub const DATA_PATH_PORTS: std::ops::RangeInclusive<u32> = 1024..=49151;

/// One address of a host interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfaceAddr {
    pub name: String,
    pub ip: IpAddr,
}

/// Address selection errors (Docker's texts where Docker has them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    #[error("could not choose an IP address to advertise since this system has multiple addresses on different interfaces ({0}); use --advertise-addr to pick one")]
    Ambiguous(String),
    #[error("could not find a non-loopback IPv4 address to advertise; use --advertise-addr")]
    NoAddress,
    #[error("interface {name} has more than one IPv4 address ({list})")]
    IfaceAmbiguous { name: String, list: String },
    #[error("interface {0} has no usable IPv4 address")]
    IfaceNoAddress(String),
    #[error("{flag} must be a non-zero IP address or network interface (with optional port number), got {value:?}")]
    Invalid { flag: &'static str, value: String },
    #[error("cannot list network interfaces: {0}")]
    Interfaces(String),
}

/// The host's interface addresses (IPv4 only, as Docker's autodetection).
pub fn host_addresses() -> Result<Vec<IfaceAddr>, AddrError> {
    let ifaces = if_addrs::get_if_addrs().map_err(|e| AddrError::Interfaces(e.to_string()))?;
    Ok(ifaces
        .into_iter()
        .filter(|i| i.ip().is_ipv4())
        .map(|i| IfaceAddr {
            ip: i.ip(),
            name: i.name,
        })
        .collect())
}

/// Splits `HOST[:PORT]`; `HOST` is an IP or an interface name.
fn split_port(value: &str, flag: &'static str) -> Result<(String, Option<u16>), AddrError> {
    let invalid = || AddrError::Invalid {
        flag,
        value: value.to_string(),
    };
    if value.is_empty() {
        return Err(invalid());
    }
    if let Ok(sa) = value.parse::<SocketAddr>() {
        return Ok((sa.ip().to_string(), Some(sa.port())));
    }
    if value.parse::<IpAddr>().is_ok() {
        return Ok((value.to_string(), None));
    }
    match value.rsplit_once(':') {
        Some((host, port)) => {
            let port = port.parse::<u16>().map_err(|_| invalid())?;
            if host.is_empty() {
                return Err(invalid());
            }
            Ok((host.to_string(), Some(port)))
        }
        None => Ok((value.to_string(), None)),
    }
}

/// An IP, or the single IPv4 address of the interface so named.
fn ip_or_iface(
    host: &str,
    flag: &'static str,
    ifaces: &[IfaceAddr],
    allow_unspecified: bool,
) -> Result<IpAddr, AddrError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        if ip.is_unspecified() && !allow_unspecified {
            return Err(AddrError::Invalid {
                flag,
                value: host.to_string(),
            });
        }
        return Ok(ip);
    }
    let found: Vec<&IfaceAddr> = ifaces.iter().filter(|i| i.name == host).collect();
    match found.as_slice() {
        [] if !ifaces.iter().any(|i| i.name == host) => Err(AddrError::Invalid {
            flag,
            value: host.to_string(),
        }),
        [] => Err(AddrError::IfaceNoAddress(host.to_string())),
        [one] => Ok(one.ip),
        many => Err(AddrError::IfaceAmbiguous {
            name: host.to_string(),
            list: many
                .iter()
                .map(|i| i.ip.to_string())
                .collect::<Vec<_>>()
                .join(" and "),
        }),
    }
}

/// Addresses a node uses in the swarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddrs {
    /// IP that other nodes use to reach this one.
    pub advertise_ip: IpAddr,
    /// Cluster port advertised (2377 unless given).
    pub advertise_port: u16,
    /// Where the cluster listener binds.
    pub listen: SocketAddr,
    /// VXLAN VTEP address.
    pub data_path_ip: IpAddr,
}

impl NodeAddrs {
    /// `IP:PORT` managers are reached at.
    pub fn advertise(&self) -> String {
        SocketAddr::new(self.advertise_ip, self.advertise_port).to_string()
    }
}

/// Resolves the three address flags against the host's interfaces.
pub fn resolve(
    advertise: Option<&str>,
    listen: Option<&str>,
    data_path: Option<&str>,
    ifaces: &[IfaceAddr],
) -> Result<NodeAddrs, AddrError> {
    let listen_parts = listen.map(|l| split_port(l, "--listen-addr")).transpose()?;
    let listen_ip = listen_parts
        .as_ref()
        .map(|(host, _)| ip_or_iface(host, "--listen-addr", ifaces, true))
        .transpose()?;
    let listen_port = listen_parts.as_ref().and_then(|(_, p)| *p);

    let (advertise_ip, advertise_port) = match advertise {
        Some(a) => {
            let (host, port) = split_port(a, "--advertise-addr")?;
            let ip = ip_or_iface(&host, "--advertise-addr", ifaces, false)?;
            (ip, port.or(listen_port).unwrap_or(DEFAULT_PORT))
        }
        None => {
            let ip = match listen_ip {
                Some(ip) if !ip.is_unspecified() => ip,
                _ => autodetect(ifaces)?,
            };
            (ip, listen_port.unwrap_or(DEFAULT_PORT))
        }
    };
    let listen = SocketAddr::new(
        listen_ip.unwrap_or(advertise_ip),
        listen_port.unwrap_or(advertise_port),
    );
    let data_path_ip = match data_path {
        Some(d) => ip_or_iface(d, "--data-path-addr", ifaces, false)?,
        None => advertise_ip,
    };
    Ok(NodeAddrs {
        advertise_ip,
        advertise_port,
        listen,
        data_path_ip,
    })
}

/// The one non-loopback IPv4 address of the host, or an error naming the candidates.
fn autodetect(ifaces: &[IfaceAddr]) -> Result<IpAddr, AddrError> {
    let candidates: Vec<&IfaceAddr> = ifaces
        .iter()
        .filter(|i| !i.ip.is_loopback() && !i.ip.is_unspecified() && i.ip.is_ipv4())
        .collect();
    match candidates.as_slice() {
        [] => Err(AddrError::NoAddress),
        [one] => Ok(one.ip),
        many => Err(AddrError::Ambiguous(
            many.iter()
                .map(|i| format!("{} on {}", i.ip, i.name))
                .collect::<Vec<_>>()
                .join(" and "),
        )),
    }
}

/// The unspecified IPv4 address, for callers that need a placeholder.
pub const UNSPECIFIED: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

#[cfg(test)]
mod tests {
    use super::*;

    fn ifaces() -> Vec<IfaceAddr> {
        let a = |name: &str, ip: &str| IfaceAddr {
            name: name.into(),
            ip: ip.parse().unwrap(),
        };
        vec![
            a("lo", "127.0.0.1"),
            a("eth0", "192.0.2.10"),
            a("eth1", "198.51.100.7"),
            a("eth2", "203.0.113.1"),
            a("eth2", "203.0.113.2"),
        ]
    }

    #[test]
    fn ip_with_and_without_port() {
        let r = resolve(Some("127.0.0.2"), None, None, &ifaces()).unwrap();
        assert_eq!(r.advertise(), "127.0.0.2:2377");
        assert_eq!(r.listen.to_string(), "127.0.0.2:2377");
        assert_eq!(r.data_path_ip.to_string(), "127.0.0.2");
        let r = resolve(Some("127.0.0.2:4000"), None, Some("eth0"), &ifaces()).unwrap();
        assert_eq!(r.advertise(), "127.0.0.2:4000");
        assert_eq!(r.listen.to_string(), "127.0.0.2:4000");
        assert_eq!(r.data_path_ip.to_string(), "192.0.2.10");
    }

    #[test]
    fn interface_names_resolve() {
        let r = resolve(Some("eth1"), None, None, &ifaces()).unwrap();
        assert_eq!(r.advertise_ip.to_string(), "198.51.100.7");
        let err = resolve(Some("eth2"), None, None, &ifaces()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "interface eth2 has more than one IPv4 address (203.0.113.1 and 203.0.113.2)"
        );
        assert!(matches!(
            resolve(Some("nope0"), None, None, &ifaces()),
            Err(AddrError::Invalid { .. })
        ));
    }

    #[test]
    fn ambiguous_autodetection_lists_candidates() {
        let err = resolve(None, None, None, &ifaces()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("192.0.2.10 on eth0"), "{text}");
        assert!(text.contains("198.51.100.7 on eth1"), "{text}");
        assert!(!text.contains("127.0.0.1"), "{text}");
    }

    #[test]
    fn single_candidate_is_chosen_and_listen_addr_counts() {
        let only = vec![
            IfaceAddr {
                name: "lo".into(),
                ip: "127.0.0.1".parse().unwrap(),
            },
            IfaceAddr {
                name: "eth0".into(),
                ip: "192.0.2.10".parse().unwrap(),
            },
        ];
        let r = resolve(None, None, None, &only).unwrap();
        assert_eq!(r.advertise(), "192.0.2.10:2377");
        let r = resolve(None, Some("127.0.0.3:2400"), None, &ifaces()).unwrap();
        assert_eq!(r.advertise(), "127.0.0.3:2400");
        let r = resolve(Some("127.0.0.3"), Some("0.0.0.0:2500"), None, &ifaces()).unwrap();
        assert_eq!(r.listen.to_string(), "0.0.0.0:2500");
        assert_eq!(r.advertise(), "127.0.0.3:2500");
        assert_eq!(
            resolve(None, None, None, &[]).unwrap_err(),
            AddrError::NoAddress
        );
    }

    #[test]
    fn zero_advertise_address_is_refused() {
        assert!(matches!(
            resolve(Some("0.0.0.0"), None, None, &ifaces()),
            Err(AddrError::Invalid { .. })
        ));
    }
}
