//! Docker Engine API 1.41 network models, as dockerd 20.10 sends and accepts them
//! (`POST /networks/create`, `GET /networks`, `GET /networks/{id}`): field order, `null`s and
//! empty maps as recorded in ../shared/reference/docker-20.10/.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST /networks/create` body, as the docker CLI sends it (every field optional but `Name`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkCreateRequest {
    pub name: String,
    pub check_duplicate: bool,
    pub driver: String,
    pub scope: String,
    pub internal: bool,
    pub attachable: bool,
    pub ingress: bool,
    pub config_only: bool,
    pub config_from: Option<ConfigReference>,
    #[serde(rename = "IPAM")]
    pub ipam: Option<Ipam>,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    pub options: Option<BTreeMap<String, String>>,
    pub labels: Option<BTreeMap<String, String>>,
}

/// `201 Created` answer of a network create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkCreateResponse {
    pub id: String,
    pub warning: String,
}

/// A network as `GET /networks` and `GET /networks/{id}` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Network {
    pub name: String,
    pub id: String,
    pub created: String,
    pub scope: String,
    pub driver: String,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    pub ipam: Ipam,
    pub internal: bool,
    pub attachable: bool,
    pub ingress: bool,
    pub config_from: ConfigReference,
    pub config_only: bool,
    /// `null` in lists; the node's local endpoints in an inspect.
    pub containers: Option<BTreeMap<String, EndpointResource>>,
    pub options: BTreeMap<String, String>,
    pub labels: Option<BTreeMap<String, String>>,
    /// The nodes with tasks on the network; only in an inspect on a node that has some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<Vec<PeerInfo>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ipam {
    #[serde(default)]
    pub driver: String,
    #[serde(default)]
    pub options: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub config: Vec<IpamConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    #[serde(default, rename = "IPRange", skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auxiliary_addresses: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConfigReference {
    #[serde(default)]
    pub network: String,
}

/// One endpoint under `Containers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointResource {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    #[serde(rename = "MacAddress")]
    pub mac_address: String,
    #[serde(rename = "IPv4Address")]
    pub ipv4_address: String,
    #[serde(rename = "IPv6Address")]
    pub ipv6_address: String,
}

/// A node's own view of a swarm network: its tasks' endpoints (`Containers`) and the nodes
/// with tasks on it (`Peers`); both empty when it has no task there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalEndpoints {
    pub containers: BTreeMap<String, EndpointResource>,
    pub peers: Vec<PeerInfo>,
}

/// One entry of `Peers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "IP")]
    pub ip: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body the docker CLI 28 sent for the seed's encrypted network (02-net-create.md).
    const CREATE_BODY: &str = r#"{
      "Driver": "overlay", "Scope": "",
      "IPAM": {"Driver": "default", "Options": {},
               "Config": [{"Subnet": "10.0.9.0/24", "Gateway": "10.0.9.99"}]},
      "Internal": false, "Attachable": true, "Ingress": false, "ConfigOnly": false,
      "ConfigFrom": null, "Options": {"encrypted": ""}, "Labels": {},
      "Name": "my-network", "CheckDuplicate": true
    }"#;

    #[test]
    fn reads_the_clis_create_body() {
        let r: NetworkCreateRequest = serde_json::from_str(CREATE_BODY).unwrap();
        assert_eq!(r.name, "my-network");
        assert!(r.attachable);
        let ipam = r.ipam.unwrap();
        assert_eq!(ipam.config[0].subnet.as_deref(), Some("10.0.9.0/24"));
        assert_eq!(ipam.config[0].gateway.as_deref(), Some("10.0.9.99"));
        assert_eq!(r.options.unwrap()["encrypted"], "");
        // docker-py sends only what it was given.
        let r: NetworkCreateRequest =
            serde_json::from_str(r#"{"Name":"x","Driver":"overlay"}"#).unwrap();
        assert!(r.ipam.is_none() && r.options.is_none());
    }

    #[test]
    fn a_listed_network_has_dockers_keys_in_dockers_order() {
        let n = Network {
            name: "ingress".into(),
            id: "w18cn4660pubkzxd4gr385co6".into(),
            created: "2026-12-03T16:43:30.402771502Z".into(),
            scope: "swarm".into(),
            driver: "overlay".into(),
            enable_ipv6: false,
            ipam: Ipam {
                driver: "default".into(),
                options: None,
                config: vec![IpamConfig {
                    subnet: Some("10.0.0.0/24".into()),
                    gateway: Some("10.0.0.1".into()),
                    ..Default::default()
                }],
            },
            internal: false,
            attachable: false,
            ingress: true,
            config_from: ConfigReference::default(),
            config_only: false,
            containers: None,
            options: BTreeMap::from([(
                "com.docker.network.driver.overlay.vxlanid_list".into(),
                "4096".into(),
            )]),
            labels: None,
            peers: None,
        };
        // As dockerd printed it in 05-net-ls.md, whitespace aside.
        let want = r#"{"Name":"ingress","Id":"w18cn4660pubkzxd4gr385co6","Created":"2026-12-03T16:43:30.402771502Z","Scope":"swarm","Driver":"overlay","EnableIPv6":false,"IPAM":{"Driver":"default","Options":null,"Config":[{"Subnet":"10.0.0.0/24","Gateway":"10.0.0.1"}]},"Internal":false,"Attachable":false,"Ingress":true,"ConfigFrom":{"Network":""},"ConfigOnly":false,"Containers":null,"Options":{"com.docker.network.driver.overlay.vxlanid_list":"4096"},"Labels":null}"#;
        assert_eq!(serde_json::to_string(&n).unwrap(), want);
        let back: Network = serde_json::from_str(want).unwrap();
        assert_eq!(back, n);
    }
}
