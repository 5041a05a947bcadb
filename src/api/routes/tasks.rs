//! `/tasks`: list with every filter the docker CLI sends (`service`, `node`, `desired-state`,
//! `name`, `id`, `label`, `_up-to-date`) and inspect, in dockerd's JSON (41-objects.md).

use hyper::Method;

use super::{bad_request, capitalise_filter, unexpected, Answer, Query, Routed, Router};
use super::{Backend, Reply, Request};
use crate::api::docker::ObjectVersion;
use crate::api::task::{ContainerStatus, NetworkAttachment, Task, TaskStatus};
use crate::api::Node;
use crate::control::network::NetworkRecord;
use crate::control::service::{ServiceRecord, TaskRecord, TaskState};

const FILTERS: &[&str] = &[
    "_up-to-date",
    "desired-state",
    "id",
    "label",
    "name",
    "node",
    "service",
];

/// A task state's name as Docker spells it (`running`).
pub fn state_name(s: TaskState) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A network as swarmkit shows it in a task's `NetworksAttachments`.
fn swarm_network(n: &NetworkRecord) -> serde_json::Value {
    let ipam = serde_json::json!({
        "Driver": {"Name": "default"},
        "Configs": [{"Subnet": n.subnet.to_string(), "Gateway": n.gateway.to_string()}],
    });
    let user_options: std::collections::BTreeMap<&String, &String> = n
        .options
        .iter()
        .filter(|(k, _)| k.as_str() != "com.docker.network.driver.overlay.vxlanid_list")
        .collect();
    let mut spec = serde_json::json!({
        "Name": n.name,
        "Labels": n.labels.clone().unwrap_or_default(),
        "DriverConfiguration": if n.ingress { serde_json::json!({}) } else {
            serde_json::json!({"Name": n.driver, "Options": user_options})
        },
        "IPAMOptions": ipam,
        "Scope": n.scope.as_str(),
    });
    if n.ingress {
        spec["Ingress"] = true.into();
    }
    if n.attachable {
        spec["Attachable"] = true.into();
    }
    serde_json::json!({
        "ID": n.id,
        "Version": ObjectVersion::from_updated_at(&n.created_at),
        "CreatedAt": n.created_at,
        "UpdatedAt": n.created_at,
        "Spec": spec,
        "DriverState": {"Name": n.driver, "Options": n.options},
        "IPAMOptions": ipam,
    })
}

/// Docker's JSON of a task. Its `Spec` is the template it was made from: the service's current
/// one, or the previous spec's for a task of the template before.
pub fn task_to_docker(
    t: &TaskRecord,
    service: Option<&ServiceRecord>,
    networks: &[NetworkRecord],
) -> Task {
    let spec = service
        .map(|s| {
            match &s.previous_spec {
                Some(prev) if t.template_version + 1 == s.template_version => &prev.task_template,
                _ => &s.spec.task_template,
            }
            .clone()
        })
        .unwrap_or_default();
    let updated = if t.state_at.is_empty() {
        t.created_at.clone()
    } else {
        t.state_at.clone()
    };
    Task {
        id: t.id.clone(),
        version: ObjectVersion::from_updated_at(&updated),
        created_at: t.created_at.clone(),
        updated_at: updated.clone(),
        labels: Default::default(),
        spec,
        service_id: t.service_id.clone(),
        slot: t.slot,
        node_id: t.node_id.clone(),
        status: TaskStatus {
            timestamp: updated,
            state: state_name(t.state),
            message: t.message.clone(),
            err: t.error.clone(),
            container_status: t.exit_code.map(|code| ContainerStatus {
                exit_code: code,
                ..Default::default()
            }),
            port_status: serde_json::json!({}),
        },
        desired_state: state_name(t.desired),
        networks_attachments: t
            .addresses
            .iter()
            .filter_map(|a| {
                let n = networks.iter().find(|n| n.id == a.network_id)?;
                Some(NetworkAttachment {
                    network: swarm_network(n),
                    addresses: vec![a.addr.to_string()],
                })
            })
            .collect(),
    }
}

/// The name swarmkit gives a task in filters: `SERVICE.SLOT.ID` (`SERVICE.NODE.ID` global).
fn task_name(t: &TaskRecord, service: Option<&ServiceRecord>) -> String {
    let name = service.map(|s| s.spec.name.as_str()).unwrap_or("");
    if t.slot == 0 {
        format!("{name}.{}.{}", t.node_id, t.id)
    } else {
        format!("{name}.{}.{}", t.slot, t.id)
    }
}

impl<B: Backend> Router<B> {
    async fn node_list(&self) -> Result<Vec<Node>, Answer> {
        match self.op(Request::NodeList).await? {
            Reply::Nodes(n) => Ok(n),
            _ => Err(unexpected()),
        }
    }

    pub(super) async fn tasks(&self, method: &Method, rest: &[&str], q: &Query) -> Routed {
        if method != Method::GET {
            return Err(Answer::not_found_route());
        }
        if let [key, "logs"] = rest {
            return self.service_logs(key, q, true).await;
        }
        let services = self.service_records().await?;
        let networks = self.swarm_networks().await?;
        let all = self.task_records().await?;
        let service_of = |t: &TaskRecord| services.iter().find(|s| s.id == t.service_id);
        match rest {
            [] => {
                let f = q.filters()?;
                f.only(FILTERS)
                    .map_err(|e| bad_request(capitalise_filter(e)))?;
                for v in f.values("desired-state") {
                    if !matches!(
                        v,
                        "running" | "shutdown" | "accepted" | "ready" | "complete"
                    ) {
                        return Err(bad_request(format!("Invalid desired-state filter: {v}")));
                    }
                }
                let nodes = if f.values("node").is_empty() {
                    Vec::new()
                } else {
                    self.node_list().await?
                };
                let node_ok = |t: &TaskRecord| {
                    f.matches("node", |v| {
                        t.node_id == v
                            || nodes.iter().any(|n| {
                                n.id == t.node_id && (n.hostname == v || n.id.starts_with(v))
                            })
                    })
                };
                let list: Vec<Task> = all
                    .iter()
                    .filter(|t| {
                        let s = service_of(t);
                        f.matches("id", |v| t.id.starts_with(v))
                            && f.matches("service", |v| {
                                s.is_some_and(|s| {
                                    s.id == v || s.spec.name == v || s.id.starts_with(v)
                                })
                            })
                            && f.matches("desired-state", |v| state_name(t.desired) == v)
                            && f.matches("name", |v| task_name(t, s).starts_with(v))
                            // As swarmkit: a task's labels are its service's.
                            && f.matches("label", |v| {
                                s.is_some_and(|s| super::label_matches(&s.spec.labels, v))
                            })
                            && f.matches("_up-to-date", |v| {
                                let fresh = s.is_some_and(|s| t.template_version >= s.template_version);
                                fresh == matches!(v, "true" | "1")
                            })
                            && node_ok(t)
                    })
                    .map(|t| task_to_docker(t, service_of(t), &networks))
                    .collect();
                Ok(Answer::ok(&list))
            }
            [key] => {
                let found: Vec<&TaskRecord> = match all.iter().find(|t| t.id == *key) {
                    Some(t) => vec![t],
                    None => all.iter().filter(|t| t.id.starts_with(key)).collect(),
                };
                match found.as_slice() {
                    [t] => Ok(Answer::ok(&task_to_docker(t, service_of(t), &networks))),
                    [] => Err(Answer::error(
                        hyper::StatusCode::NOT_FOUND,
                        format!("task {key} not found"),
                    )),
                    many => Err(bad_request(format!(
                        "task {key} is ambiguous ({} matches found)",
                        many.len()
                    ))),
                }
            }
            _ => Err(Answer::not_found_route()),
        }
    }
}
