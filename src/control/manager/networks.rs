//! Swarm networks on the leader: create (checked and allocated under the manager's write lock,
//! then committed through Raft, where the state machine refuses a clash), lookup by ID, name or
//! ID prefix as Docker resolves them, and removal.

use super::{now_rfc3339, Manager};
use crate::api::network::{NetworkCreateRequest, NetworkCreateResponse};
use crate::api::ApiError;
use crate::control::allocator::{self, ipam::AddressPools, network::ErrorClass};
use crate::control::network::{request_from_docker, NetworkRecord, Scope, GWBRIDGE};
use crate::control::raft::Command;
use crate::control::service::{ServiceRecord, TaskRecord, TaskState};
use crate::control::store::SwarmRecord;
use crate::control::token::new_id;

/// The swarm's address pools as `swarm init` recorded them.
pub fn pools_of(swarm: &SwarmRecord) -> AddressPools {
    let pools: Vec<_> = swarm
        .default_addr_pool
        .iter()
        .filter_map(|p| p.parse().ok())
        .collect();
    if pools.is_empty() {
        return AddressPools::default();
    }
    AddressPools {
        pools,
        mask: swarm.subnet_size,
    }
}

/// Finds `key` among `networks` as Docker does: full ID, then exact name, then a unique ID
/// prefix.
pub fn find<'a>(networks: &'a [NetworkRecord], key: &str) -> Result<&'a NetworkRecord, ApiError> {
    if let Some(n) = networks.iter().find(|n| n.id == key) {
        return Ok(n);
    }
    let by_name: Vec<_> = networks.iter().filter(|n| n.name == key).collect();
    match by_name.len() {
        1 => return Ok(by_name[0]),
        0 => {}
        n => {
            return Err(ApiError::invalid(format!(
                "network {key} is ambiguous ({n} matches found based on name)"
            )))
        }
    }
    let by_prefix: Vec<_> = if key.is_empty() {
        Vec::new()
    } else {
        networks.iter().filter(|n| n.id.starts_with(key)).collect()
    };
    match by_prefix.len() {
        1 => Ok(by_prefix[0]),
        0 => Err(ApiError::not_found(format!("network {key} not found"))),
        n => Err(ApiError::invalid(format!(
            "network {key} is ambiguous ({n} matches found based on ID prefix)"
        ))),
    }
}

/// Refuses to remove a network a service or a live task uses, in swarmkit's words: ingress
/// while a service publishes a port through it, any other while a service is attached to it or
/// a task meant to run (and not ended) has an address on it.
pub fn in_use(
    net: &NetworkRecord,
    services: &[ServiceRecord],
    tasks: &[TaskRecord],
) -> Result<(), ApiError> {
    let user = services
        .iter()
        .find(|s| s.networks.contains(&net.id) || s.vips.iter().any(|v| v.network_id == net.id));
    match user {
        Some(s) if net.ingress => {
            return Err(ApiError::invalid(format!(
                "rpc error: code = FailedPrecondition desc = ingress network cannot be removed because service {} depends on it",
                s.id
            )))
        }
        Some(s) => {
            return Err(ApiError::invalid(format!(
                "rpc error: code = FailedPrecondition desc = network {} is in use by service {}",
                net.id, s.id
            )))
        }
        None => {}
    }
    let live = tasks.iter().find(|t| {
        t.desired <= TaskState::Running
            && t.state <= TaskState::Running
            && t.addresses.iter().any(|a| a.network_id == net.id)
    });
    match live {
        Some(t) => Err(ApiError::invalid(format!(
            "rpc error: code = FailedPrecondition desc = network {} is in use by task {}",
            net.id, t.id
        ))),
        None => Ok(()),
    }
}

impl Manager {
    /// Leader only, with the manager's write lock held (`handle_api`): checks and allocates a
    /// new swarm network and commits it.
    pub(super) async fn create_network(
        &self,
        swarm: &SwarmRecord,
        body: &NetworkCreateRequest,
    ) -> Result<NetworkCreateResponse, ApiError> {
        let (req, labels) = request_from_docker(body);
        let existing = self.store.networks()?;
        // Local networks' names are taken too (docker_gwbridge), as on Docker.
        if req.name == GWBRIDGE {
            return Err(ApiError::conflict(format!(
                "network with name {GWBRIDGE} already exists"
            )));
        }
        let seen: Vec<_> = existing.iter().map(NetworkRecord::existing).collect();
        let alloc =
            allocator::network::create(&req, &seen, &pools_of(swarm)).map_err(|e| {
                match e.class() {
                    ErrorClass::Conflict => ApiError::conflict(e.to_string()),
                    ErrorClass::InvalidArgument => ApiError::invalid(e.to_string()),
                    ErrorClass::Exhausted => ApiError::precondition(e.to_string()),
                }
            })?;
        let record = NetworkRecord::swarm(new_id(), now_rfc3339(), &req, labels, alloc);
        let id = record.id.clone();
        let applied = self
            .write_applied(Command::CreateNetwork(Box::new(record)))
            .await?;
        if let Some(why) = applied.refused {
            return Err(ApiError::conflict(why));
        }
        Ok(NetworkCreateResponse {
            id,
            warning: String::new(),
        })
    }

    /// Every swarm network, as this manager's store has them.
    pub fn networks(&self) -> Result<Vec<NetworkRecord>, ApiError> {
        Ok(self.store.networks()?)
    }

    /// Leader only, with the write lock held: removes a swarm network by ID, name or ID prefix;
    /// returns it.
    pub(super) async fn remove_network(&self, key: &str) -> Result<NetworkRecord, ApiError> {
        let networks = self.store.networks()?;
        let net = find(&networks, key)?.clone();
        if net.scope == Scope::Local {
            return Err(ApiError::precondition(format!(
                "{} is a local network of this node",
                net.name
            )));
        }
        in_use(&net, &self.store.services()?, &self.store.tasks()?)?;
        self.write(Command::RemoveNetwork(net.id.clone())).await?;
        Ok(net)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ErrorKind, InitRequest};
    use crate::control::addr::NodeAddrs;

    fn bootstrap_ingress(req: &InitRequest) -> NetworkRecord {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(crate::control::store::Store::open(dir.path()).unwrap());
        let addrs = NodeAddrs {
            advertise_ip: "127.0.0.1".parse().unwrap(),
            advertise_port: 2377,
            listen: "127.0.0.1:2377".parse().unwrap(),
            data_path_ip: "127.0.0.1".parse().unwrap(),
        };
        let boot = Manager::new(store).bootstrap("h", &addrs, req).unwrap();
        let ingress: Vec<_> = boot
            .commands
            .into_iter()
            .filter_map(|c| match c {
                Command::CreateNetwork(n) => Some(*n),
                _ => None,
            })
            .collect();
        assert_eq!(ingress.len(), 1, "swarm init creates exactly one network");
        ingress.into_iter().next().unwrap()
    }

    #[test]
    fn swarm_init_creates_ingress_from_the_first_pool_with_vni_4096() {
        let n = bootstrap_ingress(&InitRequest::default());
        assert_eq!(n.name, "ingress");
        assert!(n.ingress && !n.attachable);
        assert_eq!(n.subnet.to_string(), "10.0.0.0/24");
        assert_eq!(n.gateway.to_string(), "10.0.0.1");
        assert_eq!(n.vni, Some(4096));
        assert_eq!(
            n.options["com.docker.network.driver.overlay.vxlanid_list"],
            "4096"
        );
        assert_eq!(n.id.len(), 25);
        let n = bootstrap_ingress(&InitRequest {
            default_addr_pool: vec!["10.20.0.0/16".into()],
            default_addr_pool_mask_length: Some(26),
            ..Default::default()
        });
        assert_eq!(n.subnet.to_string(), "10.20.0.0/26");
    }

    fn net(id: &str, name: &str) -> NetworkRecord {
        let mut n = NetworkRecord::default_gwbridge(id.into(), "t".into());
        n.name = name.into();
        n
    }

    #[test]
    fn a_network_in_use_by_a_service_or_a_live_task_stays() {
        use crate::control::service::TaskAddress;
        let n = net("kh6spd693thnvgl0v8m39i9f0", "my-network");
        let task = |desired, state| TaskRecord {
            id: "t1".into(),
            service_id: "gone".into(),
            slot: 1,
            node_id: "a".into(),
            desired,
            state,
            message: String::new(),
            error: String::new(),
            addresses: vec![TaskAddress {
                network_id: n.id.clone(),
                addr: "172.18.0.5/16".parse().unwrap(),
            }],
            template_version: 1,
            created_at: String::new(),
            state_at: String::new(),
            exit_code: None,
        };
        let e = in_use(&n, &[], &[task(TaskState::Running, TaskState::Running)]).unwrap_err();
        assert_eq!(
            e.message,
            "rpc error: code = FailedPrecondition desc = network kh6spd693thnvgl0v8m39i9f0 is in use by task t1"
        );
        // Told to shut down, or ended: the network can go.
        in_use(&n, &[], &[task(TaskState::Shutdown, TaskState::Running)]).unwrap();
        in_use(&n, &[], &[task(TaskState::Running, TaskState::Failed)]).unwrap();
    }

    #[test]
    fn lookup_by_id_name_and_prefix_like_docker() {
        let nets = [
            net("kh6spd693thnvgl0v8m39i9f0", "my-network"),
            net("kh6zzzzzzzzzzzzzzzzzzzzzz", "other"),
            net("w18cn4660pubkzxd4gr385co6", "kh6"),
        ];
        assert_eq!(find(&nets, "my-network").unwrap().name, "my-network");
        assert_eq!(find(&nets, "kh6spd").unwrap().name, "my-network");
        // A name beats an ID prefix.
        assert_eq!(find(&nets, "kh6").unwrap().name, "kh6");
        let e = find(&nets, "kh").unwrap_err();
        assert_eq!(
            e.message,
            "network kh is ambiguous (2 matches found based on ID prefix)"
        );
        let e = find(&nets, "nope").unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert_eq!(e.message, "network nope not found");
        assert!(find(&nets, "").is_err());
    }
}
