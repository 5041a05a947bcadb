//! `/nodes`: list with filters, inspect, update at a version, remove.

use hyper::Method;

use super::{
    bad_request, body_json, capitalise_filter, label_matches, out_of_sequence, unexpected, Answer,
    Backend, Query, Routed, Router,
};
use crate::api::docker::{self, Filters};
use crate::api::{Reply, Request};

impl<B: Backend> Router<B> {
    pub(super) async fn docker_nodes(&self) -> Result<Vec<docker::Node>, Answer> {
        let Reply::Nodes(nodes) = self.op(Request::NodeList).await? else {
            return Err(unexpected());
        };
        let ca = self.ca_pem().await.ok();
        let own = self.local_info().await.ok().and_then(|i| i.node_id);
        Ok(nodes
            .iter()
            .map(|n| self.docker_node_of(n, ca.as_deref(), own.as_deref()))
            .collect())
    }

    pub(super) fn docker_node_of(
        &self,
        n: &crate::api::Node,
        ca: Option<&str>,
        own: Option<&str>,
    ) -> docker::Node {
        let mut node = docker::Node::from_node(n, ca);
        if own == Some(n.id.as_str()) {
            node.description.describe_host(&self.host);
        }
        node
    }

    pub(super) async fn nodes(
        &self,
        method: &Method,
        rest: &[&str],
        q: &Query,
        body: &[u8],
    ) -> Routed {
        match (method, rest) {
            (&Method::GET, []) => {
                let filters = q.filters()?;
                filters
                    .only(&["id", "label", "membership", "name", "node.label", "role"])
                    .map_err(|e| bad_request(capitalise_filter(e)))?;
                for role in filters_values(&filters, "role") {
                    if role != "manager" && role != "worker" {
                        return Err(bad_request(format!("Invalid role filter value {role}")));
                    }
                }
                for m in filters_values(&filters, "membership") {
                    if m != "accepted" && m != "pending" {
                        return Err(bad_request(format!("Invalid membership filter value {m}")));
                    }
                }
                let nodes: Vec<docker::Node> = self
                    .docker_nodes()
                    .await?
                    .into_iter()
                    .filter(|n| {
                        filters.matches("id", |v| n.id.starts_with(v))
                            && filters.matches("name", |v| n.description.hostname.starts_with(v))
                            && filters.matches("role", |v| v == n.spec.role.to_string())
                            && filters.matches("membership", |v| v == "accepted")
                            && filters.matches("label", |v| label_matches(&n.spec.labels, v))
                            && filters.matches("node.label", |v| label_matches(&n.spec.labels, v))
                    })
                    .collect();
                Ok(Answer::ok(&nodes))
            }
            (&Method::GET, [id]) => Ok(Answer::ok(&self.docker_node(id).await?)),
            (&Method::POST, [id, "update"]) => self.node_update(id, q, body).await,
            (&Method::DELETE, [id]) => {
                self.op(Request::NodeRemove {
                    id: id.to_string(),
                    force: q.flag("force"),
                })
                .await?;
                Ok(Answer::empty())
            }
            _ => Err(Answer::not_found_route()),
        }
    }

    pub(super) async fn docker_node(&self, id: &str) -> Result<docker::Node, Answer> {
        let Reply::Node(node) = self.op(Request::NodeInspect { id: id.to_string() }).await? else {
            return Err(unexpected());
        };
        let ca = self.ca_pem().await.ok();
        let own = self.local_info().await.ok().and_then(|i| i.node_id);
        Ok(self.docker_node_of(&node, ca.as_deref(), own.as_deref()))
    }

    /// `POST /nodes/{id}/update?version=N` with the whole new spec: availability and role
    /// change; labels swarmnet does not store are refused. As in dockerd, the version is
    /// checked by the manager last, after a role change's own refusals (the last manager,
    /// quorum), and the whole change is one write: a refused one changes nothing.
    pub(super) async fn node_update(&self, id: &str, q: &Query, body: &[u8]) -> Routed {
        let version = Some(q.version()?);
        let spec: docker::NodeSpec = body_json(body)?;
        let node = self.docker_node(id).await?;
        if !spec.labels.is_empty() {
            return Err(bad_request("swarmnet does not store node labels yet"));
        }
        let availability = spec.availability;
        let op = if spec.role != node.spec.role {
            Request::NodeSetRole {
                id: node.id.clone(),
                role: spec.role,
                availability: (availability != node.spec.availability).then_some(availability),
                version,
            }
        } else if availability != node.spec.availability {
            Request::NodeUpdate {
                id: node.id.clone(),
                availability,
                version,
            }
        } else if version != Some(node.version.index) {
            // Nothing to change, from a stale read.
            return Err(out_of_sequence());
        } else {
            return Ok(Answer::empty());
        };
        self.op(op).await?;
        Ok(Answer::empty())
    }
}

fn filters_values<'a>(filters: &'a Filters, key: &str) -> Vec<&'a str> {
    filters.values(key)
}
