//! `/_ping`, `/info`.

use hyper::body::Bytes;
use hyper::StatusCode;

use super::{Answer, Backend, Routed, Router};
use crate::api::docker;
use crate::api::Role;

impl<B: Backend> Router<B> {
    pub(super) async fn ping(&self) -> Routed {
        let swarm = match self.local_info().await {
            Ok(info) => match (info.local_node_state.as_str(), info.role) {
                ("active", Some(Role::Manager)) => "active/manager",
                ("active", _) => "active/worker",
                _ => "inactive",
            },
            Err(_) => "inactive",
        };
        let mut answer = Answer {
            status: StatusCode::OK,
            content_type: "text/plain; charset=utf-8",
            body: Bytes::from_static(b"OK"),
            headers: vec![("Swarm", swarm.to_string())],
        };
        answer.headers.push((
            "Cache-Control",
            "no-cache, no-store, must-revalidate".into(),
        ));
        answer.headers.push(("Pragma", "no-cache".into()));
        Ok(answer)
    }

    pub(super) async fn info(&self) -> Routed {
        let local = self.local_info().await?;
        let mut swarm = if local.node_id.is_some() {
            docker::SwarmInfo::from_local(&local)
        } else {
            docker::SwarmInfo::inactive()
        };
        if local.role == Some(Role::Manager) {
            match (self.docker_nodes().await, self.docker_swarm().await) {
                (Ok(nodes), Ok(cluster)) => {
                    let managers: Vec<docker::Peer> = nodes
                        .iter()
                        .filter_map(|n| {
                            n.manager_status.as_ref().map(|m| docker::Peer {
                                node_id: n.id.clone(),
                                addr: m.addr.clone(),
                            })
                        })
                        .collect();
                    swarm.managers = Some(managers.len());
                    swarm.nodes = Some(nodes.len());
                    swarm.remote_managers = Some(managers);
                    swarm.cluster = Some(cluster.cluster);
                }
                (Err(e), _) | (_, Err(e)) => {
                    swarm.error = serde_json::from_slice::<docker::ErrorMessage>(&e.body)
                        .map(|m| m.message)
                        .unwrap_or_default();
                }
            }
        }
        Ok(Answer::ok(&docker::info(&self.host, swarm)))
    }
}
