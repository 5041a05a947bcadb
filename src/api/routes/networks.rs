//! `/networks`: list with Docker's filters, inspect, create, remove, prune. Swarm networks come
//! from the managers (a worker sees none until it runs tasks on them), local ones (the node's
//! docker_gwbridge) from this node.

use hyper::{Method, StatusCode};

use super::{
    bad_request, body_json, capitalise_filter, label_matches, unexpected, Answer, Query, Routed,
    Router,
};
use super::{Backend, Reply, Request};
use crate::api::docker::Filters;
use crate::api::network::{Network, NetworkCreateRequest};
use crate::api::Role;
use crate::control::network::{NetworkRecord, Scope};

/// What `GET /networks` accepts, as dockerd 20.10.
const FILTERS: &[&str] = &["dangling", "driver", "id", "label", "name", "scope", "type"];

/// One network against Docker's list filters. `name` and `id` match a part of the value, as
/// dockerd's filters do for literal text.
pub fn network_matches(n: &NetworkRecord, f: &Filters) -> bool {
    let labels = n.labels.clone().unwrap_or_default();
    f.matches("name", |v| n.name.contains(v))
        && f.matches("id", |v| n.id.contains(v))
        && f.matches("driver", |v| v == n.driver)
        && f.matches("scope", |v| v == n.scope.as_str())
        // swarmnet has none of Docker's predefined networks (bridge, host, none).
        && f.matches("type", |v| v == "custom")
        && f.matches("label", |v| label_matches(&labels, v))
        // Nothing is attached to a network until services exist.
        && f.matches("dangling", |v| matches!(v, "true" | "1"))
}

/// Docker's JSON of one network as an inspect shows it on this node.
fn inspected(n: &NetworkRecord) -> Network {
    let mut d = n.to_docker();
    if n.scope == Scope::Local {
        d.containers = Some(Default::default());
    }
    d
}

impl<B: Backend> Router<B> {
    /// Every network this node can see: the swarm's (through a manager) and its own.
    async fn all_networks(&self) -> Result<Vec<NetworkRecord>, Answer> {
        let mut out = Vec::new();
        if self.local_info().await?.role == Some(Role::Manager) {
            match self.op(Request::NetworkList).await? {
                Reply::Networks(n) => out.extend(n),
                _ => return Err(unexpected()),
            }
        }
        match self.op(Request::LocalNetworkList).await? {
            Reply::Networks(n) => out.extend(n),
            _ => return Err(unexpected()),
        }
        Ok(out)
    }

    async fn find_network(&self, key: &str) -> Result<NetworkRecord, Answer> {
        let all = self.all_networks().await?;
        crate::control::manager::networks::find(&all, key)
            .cloned()
            .map_err(Answer::from)
    }

    pub(super) async fn networks(
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
                    .only(FILTERS)
                    .map_err(|e| bad_request(capitalise_filter(e)))?;
                for v in filters.values("type") {
                    if v != "custom" && v != "builtin" {
                        return Err(bad_request(format!("Invalid filter: 'type'='{v}'")));
                    }
                }
                // In name order: clients that act on the list in its order (`docker stack rm`
                // removing a stack's networks) do so the same way every time.
                let mut all = self.all_networks().await?;
                all.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
                let list: Vec<Network> = all
                    .iter()
                    .filter(|n| network_matches(n, &filters))
                    .map(NetworkRecord::to_docker)
                    .collect();
                Ok(Answer::ok(&list))
            }
            (&Method::POST, ["create"]) => {
                let req: NetworkCreateRequest = body_json(body)?;
                let op = match req.driver.as_str() {
                    "bridge" => Request::LocalNetworkCreate(Box::new(req)),
                    _ => Request::NetworkCreate(Box::new(req)),
                };
                match self.op(op).await? {
                    Reply::NetworkCreated(created) => {
                        Ok(Answer::json(StatusCode::CREATED, &created))
                    }
                    _ => Err(unexpected()),
                }
            }
            (&Method::POST, ["prune"]) => {
                let mut deleted = Vec::new();
                if self.local_info().await?.role == Some(Role::Manager) {
                    let Reply::Networks(swarm) = self.op(Request::NetworkList).await? else {
                        return Err(unexpected());
                    };
                    for n in swarm.iter().filter(|n| !n.ingress) {
                        // A network in use by a service stays, as on Docker.
                        match self.op(Request::NetworkRemove { key: n.id.clone() }).await {
                            Ok(_) => deleted.push(n.name.clone()),
                            Err(e) if e.status == StatusCode::BAD_REQUEST => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
                Ok(Answer::ok(
                    &serde_json::json!({ "NetworksDeleted": deleted }),
                ))
            }
            (&Method::GET, [key]) => {
                let net = self.find_network(key).await?;
                // `?scope=swarm` (the CLI's lookup of a service's network) finds only that scope.
                if q.get("scope")
                    .is_some_and(|s| !s.is_empty() && s != net.scope.as_str())
                {
                    return Err(Answer::error(
                        StatusCode::NOT_FOUND,
                        format!("network {key} not found"),
                    ));
                }
                let mut shown = inspected(&net);
                let op = Request::LocalEndpoints {
                    network_id: net.id.clone(),
                };
                let Reply::LocalEndpoints(local) = self.op(op).await? else {
                    return Err(unexpected());
                };
                if !local.containers.is_empty() {
                    shown.containers = Some(local.containers);
                    // A local network has no peers: it never leaves the node.
                    if net.scope == Scope::Swarm {
                        shown.peers = Some(local.peers);
                    }
                }
                Ok(Answer::ok(&shown))
            }
            (&Method::DELETE, [key]) => {
                let net = self.find_network(key).await?;
                let op = match net.scope {
                    Scope::Local => Request::LocalNetworkRemove { key: net.id },
                    Scope::Swarm => Request::NetworkRemove { key: net.id },
                };
                self.op(op).await?;
                Ok(Answer {
                    status: StatusCode::NO_CONTENT,
                    ..Answer::empty()
                })
            }
            _ => Err(Answer::not_found_route()),
        }
    }
}
