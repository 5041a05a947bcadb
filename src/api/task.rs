//! Docker Engine API 1.41 task models, as dockerd answers `GET /tasks` and `GET /tasks/{id}`
//! (23-task-ls.md, 41-objects.md): what the docker CLI reads for `service ps`, `node ps`,
//! `service logs` and the progress of `service create|update|scale`.

use serde::{Deserialize, Serialize};

use super::docker::ObjectVersion;
use super::service::TaskSpec;

/// A task as `GET /tasks` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Task {
    #[serde(rename = "ID")]
    pub id: String,
    pub version: ObjectVersion,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub spec: TaskSpec,
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    /// Replica slot; absent (0) in global mode.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub slot: u64,
    /// Absent until the task is assigned to a node.
    #[serde(rename = "NodeID", default, skip_serializing_if = "String::is_empty")]
    pub node_id: String,
    pub status: TaskStatus,
    pub desired_state: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks_attachments: Vec<NetworkAttachment>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `Status` of a task: its observed state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskStatus {
    pub timestamp: String,
    pub state: String,
    pub message: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub err: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_status: Option<ContainerStatus>,
    pub port_status: serde_json::Value,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerStatus {
    #[serde(rename = "ContainerID")]
    pub container_id: String,
    #[serde(rename = "PID")]
    pub pid: u64,
    pub exit_code: i32,
}

/// One network of a task and its addresses on it (`10.0.9.3/24`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkAttachment {
    /// The network object as swarmkit shows it (ID, Version, Spec, DriverState, IPAMOptions).
    pub network: serde_json::Value,
    pub addresses: Vec<String>,
}
