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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::service::ServiceSpec;
    use crate::control::service::TaskAddress;

    fn network() -> NetworkRecord {
        let mut n = NetworkRecord::default_gwbridge("kh6spd693thnvgl0v8m39i9f0".into(), "t".into());
        n.name = "my-network".into();
        n.scope = crate::control::network::Scope::Swarm;
        n.driver = "overlay".into();
        n.subnet = "10.0.9.0/24".parse().unwrap();
        n.gateway = "10.0.9.99".parse().unwrap();
        n.options = [
            (
                "com.docker.network.driver.overlay.vxlanid_list".to_string(),
                "4097".to_string(),
            ),
            ("encrypted".to_string(), String::new()),
        ]
        .into_iter()
        .collect();
        n
    }

    fn service() -> ServiceRecord {
        let mut spec = ServiceSpec {
            name: "my-web".into(),
            ..Default::default()
        };
        spec.task_template.container_spec.image = "new".into();
        let mut previous = spec.clone();
        previous.task_template.container_spec.image = "old".into();
        ServiceRecord {
            id: "svc".into(),
            spec,
            networks: vec![],
            vips: vec![],
            ports: vec![],
            version: 2,
            template_version: 2,
            previous_spec: Some(previous),
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    fn task(template_version: u64) -> TaskRecord {
        TaskRecord {
            id: "t1".into(),
            service_id: "svc".into(),
            slot: 1,
            node_id: "n1".into(),
            desired: TaskState::Running,
            state: TaskState::Failed,
            message: "started".into(),
            error: "task: non-zero exit (3)".into(),
            addresses: vec![TaskAddress {
                network_id: "kh6spd693thnvgl0v8m39i9f0".into(),
                addr: "10.0.9.3/24".parse().unwrap(),
            }],
            template_version,
            created_at: "2026-12-03T16:44:26.845879088Z".into(),
            state_at: "2026-12-03T16:44:28.203729275Z".into(),
            exit_code: Some(3),
        }
    }

    #[test]
    fn a_task_as_dockerd_shows_it() {
        let v =
            serde_json::to_value(task_to_docker(&task(2), Some(&service()), &[network()])).unwrap();
        assert_eq!(v["Spec"]["ContainerSpec"]["Image"], "new");
        assert_eq!(v["Slot"], 1);
        assert_eq!(v["NodeID"], "n1");
        assert_eq!(v["DesiredState"], "running");
        assert_eq!(v["Status"]["State"], "failed");
        assert_eq!(v["Status"]["Err"], "task: non-zero exit (3)");
        assert_eq!(v["Status"]["ContainerStatus"]["ExitCode"], 3);
        assert_eq!(v["Status"]["Timestamp"], "2026-12-03T16:44:28.203729275Z");
        let att = &v["NetworksAttachments"][0];
        assert_eq!(att["Addresses"][0], "10.0.9.3/24");
        assert_eq!(att["Network"]["Spec"]["Name"], "my-network");
        assert_eq!(
            att["Network"]["Spec"]["DriverConfiguration"]["Options"]["encrypted"],
            ""
        );
        assert!(att["Network"]["Spec"]["DriverConfiguration"]["Options"]
            .get("com.docker.network.driver.overlay.vxlanid_list")
            .is_none());
        assert_eq!(
            att["Network"]["DriverState"]["Options"]
                ["com.docker.network.driver.overlay.vxlanid_list"],
            "4097"
        );
        assert_eq!(
            att["Network"]["IPAMOptions"]["Configs"][0]["Gateway"],
            "10.0.9.99"
        );
        // A task of the template before shows that template.
        let v =
            serde_json::to_value(task_to_docker(&task(1), Some(&service()), &[network()])).unwrap();
        assert_eq!(v["Spec"]["ContainerSpec"]["Image"], "old");
        // Global tasks have no slot; unassigned ones no node.
        let mut t = task(2);
        t.slot = 0;
        t.node_id.clear();
        let v = serde_json::to_value(task_to_docker(&t, Some(&service()), &[])).unwrap();
        assert!(v.get("Slot").is_none() && v.get("NodeID").is_none(), "{v}");
        assert_eq!(task_name(&task(2), Some(&service())), "my-web.1.t1");
    }
}
