//! A swarm network's creation, checked and allocated: every rule Docker has (with its words where
//! it has them) plus the ones where swarmnet goes further (no overlapping subnets), then a subnet,
//! gateway and VNI. Runs on the leader against the networks in the store.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::ipam::{self, AddressPools, IpamError, UsedSubnet};
use super::vni::{self, VniError};

/// Option keys Docker's overlay driver honours; kept verbatim in the network's `Options`.
pub const OPT_ENCRYPTED: &str = "encrypted";
pub const OPT_MTU: &str = "com.docker.network.driver.mtu";
pub const OPT_VXLANID_LIST: &str = "com.docker.network.driver.overlay.vxlanid_list";

/// Longest network name: it appears in interface and endpoint names (`lb-NAME`) and in paths.
pub const MAX_NAME_LEN: usize = 64;

/// What a user asks for (from `network create` or the API's `POST /networks/create`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkRequest {
    pub name: String,
    /// `None` means the default, overlay.
    pub driver: Option<String>,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    /// More than one IPAM config (several `--subnet`), refused: one subnet per network.
    pub extra_ipam_configs: usize,
    pub enable_ipv6: bool,
    pub ingress: bool,
    pub attachable: bool,
    pub internal: bool,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// A network already in the store, as the rules need to see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingNetwork {
    pub id: String,
    pub name: String,
    pub subnet: Option<Ipv4Net>,
    pub vni: Option<u32>,
    pub ingress: bool,
}

/// What the leader allocated for a new network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkAllocation {
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub ip_range: Option<Ipv4Net>,
    pub vni: u32,
    /// The tasks' MTU when the user set `com.docker.network.driver.mtu`.
    pub mtu: Option<u16>,
    pub encrypted: bool,
    /// The options to store: the user's, plus `vxlanid_list` as Docker shows it.
    pub options: BTreeMap<String, String>,
}

/// Why a network cannot be created; `kind` maps to the API's status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    #[error("network with name {0} already exists")]
    NameTaken(String),
    #[error("ingress network ({0}) is already present")]
    IngressPresent(String),
    #[error("ingress network cannot be attachable")]
    IngressAttachable,
    #[error("invalid network name {name:?}: {why}")]
    InvalidName { name: String, why: &'static str },
    #[error("network driver {0:?} cannot be used for a swarm network: swarmnet's swarm networks use the overlay driver (bridge is for the local docker_gwbridge only)")]
    Driver(String),
    #[error("IPv6 is not supported on swarmnet's overlay networks")]
    Ipv6,
    #[error("a swarmnet network has one subnet: {0} subnets were given")]
    SeveralSubnets(usize),
    #[error(
        "invalid value {value:?} for option {OPT_MTU}: expected a number of bytes from 68 to 65535"
    )]
    Mtu { value: String },
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error(transparent)]
    Vni(#[from] VniError),
}

/// The API's classes of failure, as Docker answers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// 409
    Conflict,
    /// 400
    InvalidArgument,
    /// 503: the swarm has no room left (pools or VNIs exhausted).
    Exhausted,
}

impl NetworkError {
    pub fn class(&self) -> ErrorClass {
        match self {
            NetworkError::NameTaken(_) | NetworkError::IngressPresent(_) => ErrorClass::Conflict,
            NetworkError::Vni(VniError::Taken { .. }) => ErrorClass::Conflict,
            NetworkError::Ipam(IpamError::PoolsExhausted { .. })
            | NetworkError::Vni(VniError::Exhausted) => ErrorClass::Exhausted,
            _ => ErrorClass::InvalidArgument,
        }
    }
}

/// Checks a network name: it becomes part of endpoint names and paths, so it is held to
/// `[A-Za-z0-9][A-Za-z0-9_.-]*`, at most 64 characters.
pub fn check_name(name: &str) -> Result<(), NetworkError> {
    let why = if name.is_empty() {
        "a name is required"
    } else if name.len() > MAX_NAME_LEN {
        "longer than 64 characters"
    } else if !name.as_bytes()[0].is_ascii_alphanumeric() {
        "it must start with a letter or a digit"
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        "only letters, digits, '_', '.' and '-' are allowed"
    } else {
        return Ok(());
    };
    Err(NetworkError::InvalidName {
        name: name.to_string(),
        why,
    })
}

/// Checks `req` against the networks in the store and allocates its subnet, gateway and VNI.
pub fn create(
    req: &NetworkRequest,
    existing: &[ExistingNetwork],
    pools: &AddressPools,
) -> Result<NetworkAllocation, NetworkError> {
    check_name(&req.name)?;
    match req.driver.as_deref() {
        None | Some("") | Some("overlay") => {}
        Some(other) => return Err(NetworkError::Driver(other.to_string())),
    }
    if existing.iter().any(|n| n.name == req.name) {
        return Err(NetworkError::NameTaken(req.name.clone()));
    }
    if req.ingress {
        if let Some(n) = existing.iter().find(|n| n.ingress) {
            return Err(NetworkError::IngressPresent(n.id.clone()));
        }
        if req.attachable {
            return Err(NetworkError::IngressAttachable);
        }
    }
    if req.enable_ipv6 {
        return Err(NetworkError::Ipv6);
    }
    if req.extra_ipam_configs > 0 {
        return Err(NetworkError::SeveralSubnets(req.extra_ipam_configs + 1));
    }

    let mtu = match req.options.get(OPT_MTU) {
        None => None,
        Some(v) => match v.trim().parse::<u16>() {
            Ok(m) if m >= 68 => Some(m),
            _ => return Err(NetworkError::Mtu { value: v.clone() }),
        },
    };
    let chosen_vni = req
        .options
        .get(OPT_VXLANID_LIST)
        .map(|v| vni::parse_vni(v))
        .transpose()?;

    let used: Vec<UsedSubnet> = existing
        .iter()
        .filter_map(|n| {
            n.subnet.map(|subnet| UsedSubnet {
                subnet,
                network: n.name.clone(),
            })
        })
        .collect();
    let subnet = match &req.subnet {
        Some(s) => {
            let subnet = ipam::parse_subnet(s)?;
            ipam::check_overlap(subnet, &used)?;
            subnet
        }
        None if req.gateway.is_some() || req.ip_range.is_some() => {
            return Err(IpamError::NoSubnet.into())
        }
        None => ipam::allocate_subnet(pools, &used)?,
    };
    let gateway = ipam::gateway(subnet, req.gateway.as_deref())?;
    let ip_range = req
        .ip_range
        .as_deref()
        .map(|r| ipam::ip_range(subnet, r))
        .transpose()?;

    let vnis: BTreeMap<u32, String> = existing
        .iter()
        .filter_map(|n| n.vni.map(|v| (v, n.name.clone())))
        .collect();
    let vni = vni::allocate_vni(&vnis, chosen_vni)?;

    let mut options = req.options.clone();
    options.insert(OPT_VXLANID_LIST.to_string(), vni.to_string());
    Ok(NetworkAllocation {
        subnet,
        gateway,
        ip_range,
        vni,
        mtu,
        encrypted: req.options.contains_key(OPT_ENCRYPTED),
        options,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(name: &str) -> NetworkRequest {
        NetworkRequest {
            name: name.into(),
            ..Default::default()
        }
    }

    fn ingress() -> ExistingNetwork {
        ExistingNetwork {
            id: "ar4aebofwn701479tlm0c209e".into(),
            name: "ingress".into(),
            subnet: Some("10.0.0.0/24".parse().unwrap()),
            vni: Some(4096),
            ingress: true,
        }
    }

    fn pools() -> AddressPools {
        AddressPools::default()
    }

    #[test]
    fn first_user_network_after_ingress_gets_4097_and_the_next_subnet() {
        let a = create(&req("my-network"), &[ingress()], &pools()).unwrap();
        assert_eq!(a.vni, 4097);
        assert_eq!(a.subnet.to_string(), "10.0.1.0/24");
        assert_eq!(a.gateway, Ipv4Addr::new(10, 0, 1, 1));
        assert_eq!(a.options[OPT_VXLANID_LIST], "4097");
        assert!(!a.encrypted);
    }

    #[test]
    fn the_seeds_encrypted_network_with_subnet_and_gateway() {
        let mut r = req("my-network");
        r.subnet = Some("10.0.9.0/24".into());
        r.gateway = Some("10.0.9.99".into());
        r.attachable = true;
        r.options.insert(OPT_ENCRYPTED.into(), String::new());
        let a = create(&r, &[ingress()], &pools()).unwrap();
        assert_eq!(a.gateway, Ipv4Addr::new(10, 0, 9, 99));
        assert!(a.encrypted);
        assert_eq!(a.options[OPT_ENCRYPTED], "");
    }

    #[test]
    fn dockers_texts() {
        let existing = [ingress()];
        assert_eq!(
            create(&req("ingress"), &existing, &pools())
                .unwrap_err()
                .to_string(),
            "network with name ingress already exists"
        );
        let mut r = req("my-ingress");
        r.ingress = true;
        let e = create(&r, &existing, &pools()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "ingress network (ar4aebofwn701479tlm0c209e) is already present"
        );
        assert_eq!(e.class(), ErrorClass::Conflict);
        r.attachable = true;
        assert_eq!(
            create(&r, &[], &pools()).unwrap_err().to_string(),
            "ingress network cannot be attachable"
        );
        let mut r = req("badgw");
        r.subnet = Some("10.0.9.0/24".into());
        r.gateway = Some("10.0.10.1".into());
        assert_eq!(
            create(&r, &existing, &pools()).unwrap_err().to_string(),
            "no matching subnet for gateway 10.0.10.1"
        );
        let mut r = req("badsub");
        r.subnet = Some("10.0.9.0/33".into());
        let e = create(&r, &existing, &pools()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Invalid subnet 10.0.9.0/33 : invalid CIDR address: 10.0.9.0/33"
        );
        assert_eq!(e.class(), ErrorClass::InvalidArgument);
    }

    #[test]
    fn overlapping_subnets_and_ingress_are_refused_by_name() {
        let mut net2 = ingress();
        net2.name = "my-net2".into();
        net2.id = "zo5m71j8147odbea02bj3xo6g".into();
        net2.ingress = false;
        net2.subnet = Some("10.0.8.0/22".parse().unwrap());
        net2.vni = Some(4098);
        let existing = [ingress(), net2];
        let mut r = req("dup");
        r.subnet = Some("10.0.9.0/24".into());
        assert_eq!(
            create(&r, &existing, &pools()).unwrap_err().to_string(),
            "subnet 10.0.9.0/24 overlaps network my-net2 (10.0.8.0/22)"
        );
        r.subnet = Some("10.0.0.0/16".into());
        assert!(create(&r, &existing, &pools())
            .unwrap_err()
            .to_string()
            .contains("overlaps network"));
        // The automatic subnet steps over both.
        let a = create(&req("auto"), &existing, &pools()).unwrap();
        assert_eq!(a.subnet.to_string(), "10.0.1.0/24");
        assert_eq!(a.vni, 4097);
    }

    #[test]
    fn gateway_or_range_without_subnet() {
        let mut r = req("x");
        r.gateway = Some("10.0.9.1".into());
        assert_eq!(
            create(&r, &[], &pools()).unwrap_err().to_string(),
            "every ip-range or gateway must have a corresponding subnet"
        );
    }

    #[test]
    fn options_mtu_and_vni() {
        let mut r = req("x");
        r.options.insert(OPT_MTU.into(), "1400".into());
        r.options
            .insert("com.example.unknown".into(), "kept".into());
        let a = create(&r, &[ingress()], &pools()).unwrap();
        assert_eq!(a.mtu, Some(1400));
        assert_eq!(a.options["com.example.unknown"], "kept");
        for bad in ["67", "65536", "x", ""] {
            r.options.insert(OPT_MTU.into(), bad.into());
            let e = create(&r, &[], &pools()).unwrap_err();
            assert!(matches!(e, NetworkError::Mtu { .. }), "{bad}: {e}");
        }
        let mut r = req("x");
        r.options.insert(OPT_VXLANID_LIST.into(), "4096".into());
        let e = create(&r, &[ingress()], &pools()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "VXLAN ID 4096 is already in use by network ingress"
        );
        assert_eq!(e.class(), ErrorClass::Conflict);
        r.options.insert(OPT_VXLANID_LIST.into(), "5000".into());
        assert_eq!(create(&r, &[ingress()], &pools()).unwrap().vni, 5000);
    }

    #[test]
    fn names_drivers_ipv6_and_several_subnets() {
        for bad in ["", "-x", "a/b", "a b", "x\n", &"a".repeat(65)] {
            assert!(
                matches!(
                    create(&req(bad), &[], &pools()),
                    Err(NetworkError::InvalidName { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(check_name("my_net.2-a").is_ok());
        let mut r = req("x");
        r.driver = Some("macvlan".into());
        assert!(matches!(
            create(&r, &[], &pools()),
            Err(NetworkError::Driver(_))
        ));
        let mut r = req("x");
        r.enable_ipv6 = true;
        assert_eq!(create(&r, &[], &pools()).unwrap_err(), NetworkError::Ipv6);
        let mut r = req("x");
        r.extra_ipam_configs = 1;
        assert_eq!(
            create(&r, &[], &pools()).unwrap_err().to_string(),
            "a swarmnet network has one subnet: 2 subnets were given"
        );
    }

    #[test]
    fn exhausted_pools_are_their_own_class() {
        let small = AddressPools {
            pools: vec!["10.0.0.0/24".parse().unwrap()],
            mask: 24,
        };
        let e = create(&req("x"), &[ingress()], &small).unwrap_err();
        assert_eq!(e.class(), ErrorClass::Exhausted);
        assert_eq!(
            e.to_string(),
            "no address pool left: all /24s of 10.0.0.0/24 are in use"
        );
    }
}
