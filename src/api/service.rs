//! Docker Engine API 1.41 service models, as the docker CLI sends them (`POST /services/create`,
//! `POST /services/{id}/update`) and dockerd answers them (`GET /services`, `GET /services/{id}`):
//! the spec the user gave, and the endpoint the managers allocated (`VirtualIPs`, published
//! ports). Fields swarmnet has no meaning for are accepted and ignored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Go's JSON decoding, which clients written in other languages lean on: `null` is the zero value
/// (docker-py sends `"Labels": null`, `"Ports": null`, ...).
pub(crate) fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `Spec` of a service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceSpec {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
    #[serde(deserialize_with = "nullable")]
    pub task_template: TaskSpec,
    #[serde(deserialize_with = "nullable")]
    pub mode: ServiceMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_config: Option<UpdateConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_config: Option<UpdateConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_spec: Option<EndpointSpec>,
}

/// `UpdateConfig` and `RollbackConfig`, in Docker's field order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct UpdateConfig {
    #[serde(deserialize_with = "nullable")]
    pub parallelism: u64,
    /// Nanoseconds.
    #[serde(skip_serializing_if = "is_zero")]
    #[serde(deserialize_with = "nullable")]
    pub delay: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    #[serde(deserialize_with = "nullable")]
    pub failure_action: String,
    /// Nanoseconds.
    #[serde(skip_serializing_if = "is_zero")]
    #[serde(deserialize_with = "nullable")]
    pub monitor: u64,
    pub max_failure_ratio: serde_json::Number,
    #[serde(skip_serializing_if = "String::is_empty")]
    #[serde(deserialize_with = "nullable")]
    pub order: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Default for UpdateConfig {
    fn default() -> Self {
        UpdateConfig {
            parallelism: 0,
            delay: 0,
            failure_action: String::new(),
            monitor: 0,
            max_failure_ratio: 0.into(),
            order: String::new(),
        }
    }
}

/// `TaskTemplate` (and a task's `Spec`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskSpec {
    #[serde(deserialize_with = "nullable")]
    pub container_spec: ContainerSpec,
    pub resources: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
    #[serde(deserialize_with = "nullable")]
    pub placement: Placement,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[serde(deserialize_with = "nullable")]
    pub networks: Vec<NetworkAttachmentConfig>,
    #[serde(deserialize_with = "nullable")]
    pub force_update: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerSpec {
    #[serde(deserialize_with = "nullable")]
    pub image: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[serde(deserialize_with = "nullable")]
    pub args: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[serde(deserialize_with = "nullable")]
    pub env: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    #[serde(deserialize_with = "nullable")]
    pub hostname: String,
    #[serde(deserialize_with = "nullable")]
    pub init: bool,
    /// Nanoseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_grace_period: Option<u64>,
    #[serde(rename = "DNSConfig")]
    pub dns_config: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isolation: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RestartPolicy {
    /// none, on-failure or any.
    #[serde(deserialize_with = "nullable")]
    pub condition: String,
    /// Nanoseconds.
    #[serde(deserialize_with = "nullable")]
    pub delay: u64,
    #[serde(deserialize_with = "nullable")]
    pub max_attempts: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Placement {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[serde(deserialize_with = "nullable")]
    pub constraints: Vec<String>,
}

/// One `--network` of a service: a network ID (or name, as the CLI resolves it) and aliases.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkAttachmentConfig {
    #[serde(deserialize_with = "nullable")]
    pub target: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[serde(deserialize_with = "nullable")]
    pub aliases: Vec<String>,
}

/// `Mode`: `{"Replicated":{"Replicas":N}}` or `{"Global":{}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceMode {
    // Go matches JSON keys case-insensitively; docker-py sends `{"replicated": ...}`.
    #[serde(alias = "replicated")]
    Replicated {
        #[serde(rename = "Replicas", default = "one")]
        replicas: u64,
    },
    #[serde(alias = "global")]
    Global {},
}

fn one() -> u64 {
    1
}

impl Default for ServiceMode {
    fn default() -> Self {
        ServiceMode::Replicated { replicas: 1 }
    }
}

/// `EndpointSpec`: `vip` or `dnsrr`, and the published ports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointSpec {
    #[serde(deserialize_with = "nullable")]
    pub mode: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[serde(deserialize_with = "nullable")]
    pub ports: Vec<PortConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortConfig {
    #[serde(skip_serializing_if = "String::is_empty")]
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    /// tcp, udp (or sctp, refused).
    #[serde(deserialize_with = "nullable")]
    pub protocol: String,
    #[serde(deserialize_with = "nullable")]
    pub target_port: u16,
    /// 0: allocated by the managers from 30000-32767.
    #[serde(deserialize_with = "nullable")]
    pub published_port: u16,
    /// ingress or host.
    #[serde(deserialize_with = "nullable")]
    pub publish_mode: String,
    /// `v2`: the routing mesh sends a PROXY protocol v2 header naming the client ahead of each
    /// TCP connection's bytes (swarmnet's own field; Docker has none).
    #[serde(skip_serializing_if = "String::is_empty")]
    #[serde(deserialize_with = "nullable")]
    pub proxy_protocol: String,
}

/// A service as `GET /services/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Service {
    #[serde(rename = "ID")]
    pub id: String,
    pub version: super::docker::ObjectVersion,
    pub created_at: String,
    pub updated_at: String,
    pub spec: ServiceSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_spec: Option<ServiceSpec>,
    pub endpoint: Endpoint,
    /// Task counts, with `GET /services?status=true`.
    #[serde(
        rename = "ServiceStatus",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub service_status: Option<ServiceStatus>,
}

/// `ServiceStatus` of a service list with `status=true` (what `service ls` shows as REPLICAS).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceStatus {
    pub running_tasks: u64,
    pub desired_tasks: u64,
    pub completed_tasks: u64,
}

/// What the managers allocated for a service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Endpoint {
    pub spec: EndpointSpec,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortConfig>,
    #[serde(rename = "VirtualIPs", skip_serializing_if = "Vec::is_empty")]
    pub virtual_ips: Vec<VirtualIp>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualIp {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// `10.0.1.2/24`.
    #[serde(rename = "Addr")]
    pub addr: String,
}

/// `201 Created` of a service create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceCreateResponse {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Warnings", default, skip_serializing_if = "Option::is_none")]
    pub warnings: Option<Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body the docker CLI 28 sent for `service create --name my-web --replicas 2
    /// --network my-network --publish 8080:80 swarmnet/whoami` (10-svc-create.md).
    const CREATE: &str = r#"{
      "Name": "my-web", "Labels": {},
      "TaskTemplate": {
        "ContainerSpec": {"Image": "swarmnet/whoami:latest", "Init": false, "DNSConfig": {}},
        "Resources": {"Limits": {}, "Reservations": {}},
        "Placement": {},
        "Networks": [{"Target": "kh6spd693thnvgl0v8m39i9f0"}],
        "ForceUpdate": 0
      },
      "Mode": {"Replicated": {"Replicas": 2}},
      "EndpointSpec": {"Mode": "vip", "Ports": [
        {"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "ingress"}]}
    }"#;

    #[test]
    fn reads_the_clis_create_body_and_writes_it_back_alike() {
        let spec: ServiceSpec = serde_json::from_str(CREATE).unwrap();
        assert_eq!(spec.name, "my-web");
        assert_eq!(spec.mode, ServiceMode::Replicated { replicas: 2 });
        assert_eq!(
            spec.task_template.container_spec.image,
            "swarmnet/whoami:latest"
        );
        assert_eq!(
            spec.task_template.networks[0].target,
            "kh6spd693thnvgl0v8m39i9f0"
        );
        let ep = spec.endpoint_spec.as_ref().unwrap();
        assert_eq!(ep.mode, "vip");
        assert_eq!(
            ep.ports[0],
            PortConfig {
                name: String::new(),
                protocol: "tcp".into(),
                target_port: 80,
                published_port: 8080,
                publish_mode: "ingress".into(),
                proxy_protocol: String::new(),
            }
        );
        let again: serde_json::Value = serde_json::to_value(&spec).unwrap();
        let want: serde_json::Value = serde_json::from_str(CREATE).unwrap();
        assert_eq!(again, want);
    }

    #[test]
    fn null_is_the_zero_value_as_go_reads_it() {
        let spec: ServiceSpec = serde_json::from_str(
            r#"{"Name":"s","Labels":null,"TaskTemplate":{"ContainerSpec":{"Image":"x","Args":null,"Env":null},
                "Placement":{"Constraints":null},"Networks":null,"ForceUpdate":null},
                "Mode":{"Replicated":{"Replicas":2}},"EndpointSpec":{"Mode":null,"Ports":null}}"#,
        )
        .unwrap();
        assert_eq!(spec.name, "s");
        assert!(spec.labels.is_empty() && spec.task_template.networks.is_empty());
        assert_eq!(spec.endpoint_spec.unwrap().ports, vec![]);
        // docker-py's mode keys.
        let spec: ServiceSpec =
            serde_json::from_str(r#"{"Name":"p","Mode":{"replicated":{"Replicas":3}}}"#).unwrap();
        assert_eq!(spec.mode, ServiceMode::Replicated { replicas: 3 });
        let spec: ServiceSpec =
            serde_json::from_str(r#"{"Name":"p","Mode":{"global":{}}}"#).unwrap();
        assert_eq!(spec.mode, ServiceMode::Global {});
    }

    #[test]
    fn global_mode_and_aliases() {
        let spec: ServiceSpec = serde_json::from_str(
            r#"{"Name":"g","Mode":{"Global":{}},"TaskTemplate":{"ContainerSpec":{"Image":"x"},
                "Networks":[{"Target":"n","Aliases":["web"]}]}}"#,
        )
        .unwrap();
        assert_eq!(spec.mode, ServiceMode::Global {});
        assert_eq!(spec.task_template.networks[0].aliases, ["web"]);
        // A replicated mode without a count is one replica, as dockerd reads it.
        let spec: ServiceSpec =
            serde_json::from_str(r#"{"Name":"r","Mode":{"Replicated":{}}}"#).unwrap();
        assert_eq!(spec.mode, ServiceMode::Replicated { replicas: 1 });
    }

    #[test]
    fn reads_dockers_service_inspect() {
        let text = include_str!("../../fixtures/docker-20.10/service-inspect-my-web.json");
        let list: Vec<Service> = serde_json::from_str(text).unwrap();
        let s = &list[0];
        assert_eq!(s.spec.name, "my-web");
        assert_eq!(s.endpoint.virtual_ips.len(), 2);
        assert_eq!(s.endpoint.virtual_ips[1].addr, "10.0.1.2/24");
        assert_eq!(s.spec.task_template.container_spec.args[0], "httpd");
        assert_eq!(
            s.spec
                .task_template
                .restart_policy
                .as_ref()
                .unwrap()
                .condition,
            "any"
        );
    }
}
