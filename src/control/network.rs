//! Networks as the store keeps them: swarm-scope overlays (replicated by Raft, allocated by the
//! leader) and the node's own local-scope `docker_gwbridge`, and how each is shown through
//! Docker's API ([`crate::api::network`]).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use redb::{ReadableTable, WriteTransaction};

use super::allocator::ipam::{self, UsedSubnet};
use super::allocator::network::{ExistingNetwork, NetworkAllocation, NetworkError, NetworkRequest};
use super::allocator::vni::VniError;
use super::store::{Store, StoreError, NETWORKS};
use crate::api::network::{ConfigReference, Ipam, IpamConfig, Network, NetworkCreateRequest};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Name of the node-local bridge network that gives tasks their way out.
pub const GWBRIDGE: &str = "docker_gwbridge";
/// docker_gwbridge's subnet unless the user made it first.
pub const GWBRIDGE_SUBNET: &str = "172.18.0.0/16";
/// Name of the routing-mesh network `swarm init` creates.
pub const INGRESS: &str = "ingress";

/// Where a network lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// In Raft, the same on every manager.
    Swarm,
    /// In the node's own state only.
    Local,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Swarm => "swarm",
            Scope::Local => "local",
        }
    }
}

/// One network, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NetworkRecord {
    /// 25 characters of base 36 (swarm scope); 64 hex characters (local scope, as Docker).
    pub id: String,
    pub name: String,
    /// RFC 3339 with nanoseconds.
    pub created_at: String,
    pub scope: Scope,
    /// `overlay` or `bridge`.
    pub driver: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    #[serde(default)]
    pub ip_range: Option<Ipv4Net>,
    /// VXLAN ID (overlay only).
    #[serde(default)]
    pub vni: Option<u32>,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub attachable: bool,
    #[serde(default)]
    pub ingress: bool,
    /// The options as Docker shows them (user's, kept verbatim, plus `vxlanid_list`).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// `None` when created without labels (Docker shows `null`), else the labels.
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// The load-balancer endpoint (`lb-NAME`) of each node with tasks on the network: its
    /// address, by node ID (swarm overlay networks only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lb: BTreeMap<String, Ipv4Addr>,
}

impl NetworkRecord {
    /// A new swarm network from what the allocator gave it.
    pub fn swarm(
        id: String,
        created_at: String,
        req: &NetworkRequest,
        labels: Option<BTreeMap<String, String>>,
        alloc: NetworkAllocation,
    ) -> Self {
        NetworkRecord {
            id,
            name: req.name.clone(),
            created_at,
            scope: Scope::Swarm,
            driver: "overlay".into(),
            subnet: alloc.subnet,
            gateway: alloc.gateway,
            ip_range: alloc.ip_range,
            vni: Some(alloc.vni),
            internal: req.internal,
            attachable: req.attachable,
            ingress: req.ingress,
            options: alloc.options,
            labels,
            lb: BTreeMap::new(),
        }
    }

    /// The node's docker_gwbridge as Docker makes it: 172.18.0.0/16, gateway .1, no ICC,
    /// masquerade on.
    pub fn default_gwbridge(id: String, created_at: String) -> Self {
        let subnet: Ipv4Net = GWBRIDGE_SUBNET.parse().expect("constant subnet");
        NetworkRecord {
            id,
            name: GWBRIDGE.into(),
            created_at,
            scope: Scope::Local,
            driver: "bridge".into(),
            subnet,
            gateway: Ipv4Addr::from(u32::from(subnet.network()) + 1),
            ip_range: None,
            vni: None,
            internal: false,
            attachable: false,
            ingress: false,
            options: BTreeMap::from([
                (
                    "com.docker.network.bridge.enable_icc".into(),
                    "false".into(),
                ),
                (
                    "com.docker.network.bridge.enable_ip_masquerade".into(),
                    "true".into(),
                ),
                ("com.docker.network.bridge.name".into(), GWBRIDGE.into()),
            ]),
            labels: Some(BTreeMap::new()),
            lb: BTreeMap::new(),
        }
    }

    /// Whether the encrypted option is set (ESP on the data path).
    pub fn encrypted(&self) -> bool {
        self.options
            .contains_key(super::allocator::network::OPT_ENCRYPTED)
    }

    /// What the allocator needs to know of it.
    pub fn existing(&self) -> ExistingNetwork {
        ExistingNetwork {
            id: self.id.clone(),
            name: self.name.clone(),
            subnet: Some(self.subnet),
            vni: self.vni,
            ingress: self.ingress,
        }
    }

    /// Docker's JSON of the network, without endpoints (as `GET /networks` lists it).
    pub fn to_docker(&self) -> Network {
        Network {
            name: self.name.clone(),
            id: self.id.clone(),
            created: self.created_at.clone(),
            scope: self.scope.as_str().into(),
            driver: self.driver.clone(),
            enable_ipv6: false,
            ipam: Ipam {
                driver: "default".into(),
                options: None,
                config: vec![IpamConfig {
                    subnet: Some(self.subnet.to_string()),
                    ip_range: self.ip_range.map(|r| r.to_string()),
                    gateway: Some(self.gateway.to_string()),
                    auxiliary_addresses: None,
                }],
            },
            internal: self.internal,
            attachable: self.attachable,
            ingress: self.ingress,
            config_from: ConfigReference::default(),
            config_only: false,
            containers: None,
            options: self.options.clone(),
            labels: self.labels.clone(),
            peers: None,
        }
    }
}

/// Gives the node its docker_gwbridge when it joins or inits a swarm, unless it has one (made by
/// the user before, as Docker lets them customise it); returns it.
pub fn ensure_gwbridge(store: &Store) -> Result<NetworkRecord, StoreError> {
    let mut locals = store.local_networks()?;
    if let Some(gw) = locals.iter().find(|n| n.name == GWBRIDGE) {
        return Ok(gw.clone());
    }
    let gw = new_gwbridge_record();
    locals.push(gw.clone());
    store.set_local_networks(&locals)?;
    Ok(gw)
}

/// A new default docker_gwbridge record: a 64-hex-digit ID as Docker's local networks have, made
/// now.
pub fn new_gwbridge_record() -> NetworkRecord {
    let mut id = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut id);
    let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let created = OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| "unknown".into());
    NetworkRecord::default_gwbridge(id, created)
}

/// Why `new` cannot join `existing` (a name, subnet or VNI taken, a second ingress), with the
/// allocator's words; `None` when it fits. The state machine runs this when it applies a create,
/// so a network allocated by a leader that lost its term cannot clash with one committed since.
pub fn clash(new: &NetworkRecord, existing: &[NetworkRecord]) -> Option<String> {
    if let Some(n) = existing
        .iter()
        .find(|n| n.name == new.name || n.id == new.id)
    {
        return Some(NetworkError::NameTaken(n.name.clone()).to_string());
    }
    if new.ingress {
        if let Some(n) = existing.iter().find(|n| n.ingress) {
            return Some(NetworkError::IngressPresent(n.id.clone()).to_string());
        }
    }
    let used: Vec<UsedSubnet> = existing
        .iter()
        .map(|n| UsedSubnet {
            subnet: n.subnet,
            network: n.name.clone(),
        })
        .collect();
    if let Err(e) = ipam::check_overlap(new.subnet, &used) {
        return Some(e.to_string());
    }
    let vni = new.vni?;
    existing.iter().find(|n| n.vni == Some(vni)).map(|n| {
        VniError::Taken {
            vni,
            network: n.name.clone(),
        }
        .to_string()
    })
}

/// Applies a network create inside the state machine's transaction.
pub(crate) fn apply_create(
    tx: &WriteTransaction,
    new: &NetworkRecord,
) -> Result<Option<String>, ApplyError> {
    let mut table = tx.open_table(NETWORKS)?;
    let mut existing = Vec::new();
    for item in table.iter()? {
        let (_, v) = item?;
        existing.push(serde_json::from_slice::<NetworkRecord>(v.value())?);
    }
    if let Some(why) = clash(new, &existing) {
        return Ok(Some(why));
    }
    let bytes = serde_json::to_vec(new)?;
    table.insert(new.id.as_str(), bytes.as_slice())?;
    Ok(None)
}

/// A failure of the store itself while applying (not a refusal).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("network table: {0}")]
    Table(#[from] redb::TableError),
    #[error("network table: {0}")]
    Storage(#[from] redb::StorageError),
    #[error("network record does not decode: {0}")]
    Decode(#[from] serde_json::Error),
}

/// Docker's create body as the allocator's request (and the labels to keep).
pub fn request_from_docker(
    body: &NetworkCreateRequest,
) -> (NetworkRequest, Option<BTreeMap<String, String>>) {
    let configs = body
        .ipam
        .as_ref()
        .map(|i| i.config.as_slice())
        .unwrap_or_default();
    let first = configs.first();
    let req = NetworkRequest {
        name: body.name.clone(),
        driver: (!body.driver.is_empty()).then(|| body.driver.clone()),
        subnet: first.and_then(|c| c.subnet.clone()),
        gateway: first.and_then(|c| c.gateway.clone()),
        ip_range: first.and_then(|c| c.ip_range.clone()),
        extra_ipam_configs: configs.len().saturating_sub(1),
        enable_ipv6: body.enable_ipv6,
        ingress: body.ingress,
        attachable: body.attachable,
        internal: body.internal,
        options: body.options.clone().unwrap_or_default(),
        labels: body.labels.clone().unwrap_or_default(),
    };
    (req, body.labels.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::allocator::{self, ipam::AddressPools};

    #[test]
    fn the_seeds_network_round_trips_to_dockers_json() {
        let body: NetworkCreateRequest = serde_json::from_str(
            r#"{"Name":"my-network","Driver":"overlay","Attachable":true,
                "IPAM":{"Driver":"default","Options":{},"Config":[{"Subnet":"10.0.9.0/24","Gateway":"10.0.9.99"}]},
                "Options":{"encrypted":""},"Labels":{}}"#,
        )
        .unwrap();
        let (req, labels) = request_from_docker(&body);
        let alloc = allocator::network::create(&req, &[], &AddressPools::default()).unwrap();
        let rec = NetworkRecord::swarm(
            "kh6spd693thnvgl0v8m39i9f0".into(),
            "2026-12-03T16:43:38.788905269Z".into(),
            &req,
            labels,
            alloc,
        );
        assert!(rec.encrypted());
        let stored: NetworkRecord =
            serde_json::from_slice(&serde_json::to_vec(&rec).unwrap()).unwrap();
        assert_eq!(stored, rec);
        let json = serde_json::to_value(rec.to_docker()).unwrap();
        assert_eq!(json["IPAM"]["Config"][0]["Gateway"], "10.0.9.99");
        assert_eq!(json["Options"]["encrypted"], "");
        assert_eq!(
            json["Options"]["com.docker.network.driver.overlay.vxlanid_list"],
            "4096"
        );
        assert_eq!(json["Labels"], serde_json::json!({}));
        assert_eq!(json["Scope"], "swarm");
        assert!(json["Containers"].is_null());
    }

    #[test]
    fn gwbridge_is_dockers() {
        let rec = NetworkRecord::default_gwbridge("a".repeat(64), "t".into());
        let want: serde_json::Value = serde_json::from_str(include_str!(
            "../../fixtures/docker-20.10/inspect-gwbridge.json"
        ))
        .unwrap();
        let got = serde_json::to_value(rec.to_docker()).unwrap();
        for key in [
            "Name", "Scope", "Driver", "IPAM", "Options", "Labels", "Internal",
        ] {
            assert_eq!(got[key], want[0][key], "{key}");
        }
    }

    fn record(id: &str, name: &str, subnet: &str, vni: u32) -> NetworkRecord {
        let req = NetworkRequest {
            name: name.into(),
            subnet: Some(subnet.into()),
            ..Default::default()
        };
        let mut alloc = allocator::network::create(&req, &[], &AddressPools::default()).unwrap();
        alloc.vni = vni;
        NetworkRecord::swarm(id.into(), "t".into(), &req, None, alloc)
    }

    #[test]
    fn the_state_machine_refuses_a_clash_and_keeps_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::control::store::Store::open(dir.path()).unwrap();
        let apply = |n: &NetworkRecord| {
            let tx = store.db().begin_write().unwrap();
            let out = apply_create(&tx, n).unwrap();
            tx.commit().unwrap();
            out
        };
        assert_eq!(apply(&record("a", "net-a", "10.0.9.0/24", 4097)), None);
        // Allocated by another leader from a stale view: same subnet, or same VNI, or same name.
        assert_eq!(
            apply(&record("b", "net-b", "10.0.9.0/25", 4098)).as_deref(),
            Some("subnet 10.0.9.0/25 overlaps network net-a (10.0.9.0/24)")
        );
        assert_eq!(
            apply(&record("c", "net-c", "10.0.10.0/24", 4097)).as_deref(),
            Some("VXLAN ID 4097 is already in use by network net-a")
        );
        assert_eq!(
            apply(&record("d", "net-a", "10.0.11.0/24", 4099)).as_deref(),
            Some("network with name net-a already exists")
        );
        assert_eq!(apply(&record("e", "net-e", "10.0.12.0/24", 4100)), None);
        let names: Vec<_> = store
            .networks()
            .unwrap()
            .into_iter()
            .map(|n| n.name)
            .collect();
        assert_eq!(names, ["net-a", "net-e"]);
    }

    #[test]
    fn local_networks_survive_leaving_the_swarm() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::control::store::Store::open(dir.path()).unwrap();
        let gw = NetworkRecord::default_gwbridge("g".repeat(64), "t".into());
        store.set_local_networks(std::slice::from_ref(&gw)).unwrap();
        store.clear().unwrap();
        assert_eq!(store.local_networks().unwrap(), vec![gw]);
    }

    #[test]
    fn several_subnets_are_counted_for_the_refusal() {
        let body: NetworkCreateRequest = serde_json::from_str(
            r#"{"Name":"x","IPAM":{"Config":[{"Subnet":"10.1.0.0/24"},{"Subnet":"10.2.0.0/24"}]}}"#,
        )
        .unwrap();
        let (req, labels) = request_from_docker(&body);
        assert_eq!(req.extra_ipam_configs, 1);
        assert!(labels.is_none());
    }
}
