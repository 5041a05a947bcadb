//! The node's local-scope networks: its `docker_gwbridge`. Docker lets a user create it before
//! the node inits or joins a swarm (to choose its subnet) and refuses changes while the node is
//! in one; swarmnet has no other local networks.

use std::collections::BTreeMap;

use super::Daemon;
use crate::api::network::NetworkCreateRequest;
use crate::api::{ApiError, Reply, Response};
use crate::control::allocator::ipam;
use crate::control::manager::networks::find;
use crate::control::network::{new_gwbridge_record, GWBRIDGE};

/// Docker's answer to an overlay network created on a node in no swarm.
pub const OVERLAY_OUTSIDE_SWARM: &str = "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.";

fn in_swarm_refusal() -> ApiError {
    ApiError::precondition(format!(
        "{GWBRIDGE} cannot be created, changed or removed while this node is in a swarm: leave the swarm first (swarm leave), as on Docker"
    ))
}

impl Daemon {
    pub(super) fn local_networks(&self) -> Response {
        Ok(Reply::Networks(self.store.local_networks()?))
    }

    /// `network create -d bridge docker_gwbridge ...` before init or join.
    pub(super) async fn create_local_network(&self, body: &NetworkCreateRequest) -> Response {
        let _membership = self.tasks.lock().await;
        if body.name != GWBRIDGE {
            return Err(ApiError::invalid(format!(
                "a bridge network can only be {GWBRIDGE} (the node's way out for its tasks); swarm networks use the overlay driver"
            )));
        }
        if self.identity().is_some() {
            return Err(in_swarm_refusal());
        }
        let mut locals = self.store.local_networks()?;
        if locals.iter().any(|n| n.name == body.name) {
            return Err(ApiError::conflict(format!(
                "network with name {} already exists",
                body.name
            )));
        }
        let config = body.ipam.as_ref().and_then(|i| i.config.first());
        let mut net = new_gwbridge_record();
        if let Some(subnet) = config.and_then(|c| c.subnet.as_deref()) {
            net.subnet =
                ipam::parse_subnet(subnet).map_err(|e| ApiError::invalid(e.to_string()))?;
            net.gateway =
                ipam::gateway(net.subnet, None).map_err(|e| ApiError::invalid(e.to_string()))?;
        } else if config.is_some_and(|c| c.gateway.is_some() || c.ip_range.is_some()) {
            return Err(ApiError::invalid(ipam::IpamError::NoSubnet.to_string()));
        }
        if let Some(gw) = config.and_then(|c| c.gateway.as_deref()) {
            net.gateway = ipam::gateway(net.subnet, Some(gw))
                .map_err(|e| ApiError::invalid(e.to_string()))?;
        }
        if let Some(range) = config.and_then(|c| c.ip_range.as_deref()) {
            net.ip_range = Some(
                ipam::ip_range(net.subnet, range).map_err(|e| ApiError::invalid(e.to_string()))?,
            );
        }
        // The user's options over Docker's defaults, kept verbatim.
        let mut options: BTreeMap<String, String> = net.options.clone();
        options.extend(body.options.clone().unwrap_or_default());
        net.options = options;
        net.labels = body.labels.clone();
        net.internal = body.internal;
        let id = net.id.clone();
        locals.push(net);
        self.store.set_local_networks(&locals)?;
        Ok(Reply::NetworkCreated(
            crate::api::network::NetworkCreateResponse {
                id,
                warning: String::new(),
            },
        ))
    }

    pub(super) async fn remove_local_network(&self, key: &str) -> Response {
        let _membership = self.tasks.lock().await;
        let mut locals = self.store.local_networks()?;
        let net = find(&locals, key)?.clone();
        if self.identity().is_some() {
            return Err(in_swarm_refusal());
        }
        locals.retain(|n| n.id != net.id);
        self.store.set_local_networks(&locals)?;
        Ok(Reply::Network(net))
    }
}
