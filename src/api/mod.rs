//! The local API: Docker's Engine API (1.41) over HTTP/1.1 on the daemon's Unix socket, with
//! swarmnet's own routes under `/swarmnet/`. The daemon serves it ([`server`], [`routes`]); the
//! swarmnet CLI and the docker CLI are both its clients ([`client`]).
//!
//! [`docker`] holds Docker's JSON models; [`types`] swarmnet's own objects, which the cluster
//! store keeps. [`Request`] and [`Reply`] name the operations behind the routes: the routes
//! turn HTTP into them, and a manager that is not the Raft leader forwards them over the
//! cluster protocol on 2377, length-prefixed JSON ([`frame`]).

pub mod capture;
pub mod client;
pub mod docker;
pub mod events;
pub mod frame;
pub mod network;
pub mod owner;
pub mod routes;
pub mod server;
pub mod service;
pub mod stats;
pub mod stream;
pub mod task;
pub mod types;

use serde::{Deserialize, Serialize};

pub use types::*;

/// `swarm init` parameters, as the user typed them (the daemon resolves interfaces).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InitRequest {
    pub advertise_addr: Option<String>,
    pub listen_addr: Option<String>,
    pub data_path_addr: Option<String>,
    pub data_path_port: Option<u32>,
    pub default_addr_pool: Vec<String>,
    pub default_addr_pool_mask_length: Option<u32>,
    /// Rotation interval of the network encryption keys, seconds (default 12 h).
    pub key_rotation_interval_secs: Option<u64>,
    /// On a manager of a swarm that lost quorum: rebuild a one-manager swarm from its state.
    #[serde(default)]
    pub force_new_cluster: bool,
}

/// `swarm join` parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub token: String,
    pub remote_addr: String,
    pub advertise_addr: Option<String>,
    pub listen_addr: Option<String>,
    pub data_path_addr: Option<String>,
    pub availability: Availability,
}

/// The operations behind the routes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// This node's own view: swarm membership, role, addresses.
    Info,
    SwarmInit(InitRequest),
    SwarmJoin(JoinRequest),
    SwarmLeave {
        force: bool,
    },
    SwarmInspect,
    /// Join token for `role`, rotated first when `rotate`.
    JoinToken {
        role: Role,
        rotate: bool,
    },
    SwarmCa,
    NodeList,
    NodeInspect {
        id: String,
    },
    /// With `version`, refused as out of sequence unless the node's version is still that
    /// (checked last, as swarmkit's store does).
    NodeUpdate {
        id: String,
        availability: Availability,
        #[serde(default)]
        version: Option<u64>,
    },
    NodeRemove {
        id: String,
        force: bool,
    },
    /// With `availability`, that changes in the same write. With `version`, as `NodeUpdate`:
    /// the role change's own refusals (the last manager, quorum) come first.
    NodeSetRole {
        id: String,
        role: Role,
        #[serde(default)]
        availability: Option<Availability>,
        #[serde(default)]
        version: Option<u64>,
    },
    /// Creates a swarm network (leader).
    NetworkCreate(Box<network::NetworkCreateRequest>),
    /// The swarm networks.
    NetworkList,
    /// Removes a swarm network by ID, name or ID prefix.
    NetworkRemove {
        key: String,
    },
    /// This node's local-scope networks (docker_gwbridge); served by any node.
    LocalNetworkList,
    /// This node's endpoints on a swarm network (its tasks) and the nodes with tasks on it,
    /// for `network inspect`; served by any node.
    LocalEndpoints {
        network_id: String,
    },
    /// The network namespace of a task running on this node (by ID, ID prefix, full name or
    /// `service.slot` name), for `swarmnet exec`.
    LocalTaskSandbox {
        key: String,
    },
    /// This node's VIP load balancer: every backend of every VIP on its networks with the
    /// connections its tasks made through it, for `service backends`.
    LocalBalancer,
    /// The tasks running on this node as Docker lists containers (`docker ps`).
    LocalContainers,
    /// This node's data-path counters as rows per task, network and VIP (`swarmnet stats`).
    LocalStats,
    /// Creates a local-scope network (only `docker_gwbridge`, before the node is in a swarm).
    LocalNetworkCreate(Box<network::NetworkCreateRequest>),
    /// Removes a local-scope network by ID, name or ID prefix (not while in a swarm).
    LocalNetworkRemove {
        key: String,
    },
    /// Creates a service (leader): checked, its VIPs and published ports allocated.
    ServiceCreate(Box<service::ServiceSpec>),
    /// Every service.
    ServiceList,
    /// One service by ID, name or ID prefix.
    ServiceInspect {
        key: String,
    },
    /// A new spec for a service at `version` (its `Version.Index`); with `rollback`, the
    /// service's previous spec instead of `spec`.
    ServiceUpdate {
        key: String,
        version: u64,
        spec: Box<service::ServiceSpec>,
        rollback: bool,
    },
    /// Removes a service by ID, name or ID prefix.
    ServiceRemove {
        key: String,
    },
    /// Every task.
    TaskList,
    /// The kept output lines of these tasks (leader's log book).
    TaskLogs {
        task_ids: Vec<String>,
    },
}

/// Successful answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Reply {
    Done,
    Info(LocalInfo),
    Init {
        node_id: String,
        worker_token: String,
        advertise: String,
    },
    Joined {
        role: Role,
    },
    Swarm(Swarm),
    Token {
        token: String,
        advertise: String,
    },
    Text(String),
    Nodes(Vec<Node>),
    Node(Node),
    NetworkCreated(network::NetworkCreateResponse),
    Networks(Vec<crate::control::network::NetworkRecord>),
    LocalEndpoints(network::LocalEndpoints),
    Balancer(Vec<BalancerRow>),
    Stats(Box<stats::Stats>),
    /// Docker's `GET /containers/json` objects.
    Containers(Vec<serde_json::Value>),
    Network(crate::control::network::NetworkRecord),
    ServiceCreated(service::ServiceCreateResponse),
    Services(Vec<crate::control::service::ServiceRecord>),
    Service(Box<crate::control::service::ServiceRecord>),
    Tasks(Vec<crate::control::service::TaskRecord>),
    Logs(Vec<crate::control::logs::LogLine>),
}

/// What kind of failure, so callers can branch without matching message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    InvalidArgument,
    NotFound,
    /// A name or resource already taken (Docker's 409).
    Conflict,
    FailedPrecondition,
    PermissionDenied,
    Unavailable,
    Internal,
}

/// An error answer; `message` is what the user sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }
    pub fn precondition(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::FailedPrecondition, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
    /// Docker's answer to a manager operation on a worker.
    pub fn not_a_manager() -> Self {
        Self::new(ErrorKind::FailedPrecondition, NOT_A_MANAGER)
    }
    /// Docker's answer when the node is in no swarm.
    pub fn not_in_swarm() -> Self {
        Self::new(
            ErrorKind::FailedPrecondition,
            "This node is not part of a swarm",
        )
    }
    /// Docker's answer to init/join on a node already in a swarm.
    pub fn already_in_swarm() -> Self {
        Self::new(
            ErrorKind::FailedPrecondition,
            "This node is already part of a swarm. Use \"swarmnet swarm leave\" to leave this swarm and join another one.",
        )
    }
}

/// Docker's message for manager-only operations on a worker.
pub const NOT_A_MANAGER: &str = "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager.";

/// What the daemon answers to one request.
pub type Response = Result<Reply, ApiError>;

/// One backend of one VIP as a node's balancer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BalancerRow {
    pub service: String,
    pub network: String,
    #[serde(rename = "VIP")]
    pub vip: String,
    /// The task's full name (`my-web.1.<id>`); empty for a departed backend whose flows drain.
    pub task: String,
    pub address: String,
    /// Flows tracked now.
    pub active: u64,
    /// Connections given to this backend by this node since it started.
    pub connections: u64,
    pub bytes: u64,
}
