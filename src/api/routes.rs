//! The route table of the local API: Docker's Engine API routes (versioned `/v1.NN/...` and
//! unversioned) and swarmnet's own under [`OWN_PREFIX`], turned into operations of a
//! [`Backend`] (the daemon) and answered with Docker's JSON, status codes and
//! `{"message": ...}` errors.
//!
//! swarmnet's own routes: `GET /swarmnet/info` (this node's view: role, managers, key tags,
//! Raft progress), `GET /swarmnet/swarm` (the swarm record with what Docker's has no field
//! for: the key rotation interval, the CA digest), `GET /swarmnet/swarm/ca` (the root CA, PEM).
//!
//! Sans-IO apart from the backend: [`Router::handle`] takes a method, a target and a body
//! already read (and bounded) by the server, so tests and the fuzz target drive it directly.
//! New resources (networks, services, tasks) add a match arm in [`Router::route`] that calls a
//! function of their own, in the same form as [`Router::nodes`].

use std::future::Future;

use hyper::body::Bytes;
use hyper::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::docker::{self, Filters, Host, API_VERSION, MIN_API_VERSION};
use super::{ApiError, ErrorKind, InitRequest, JoinRequest, LocalInfo, Reply, Request, Response};
use super::{Availability, Role};

/// swarmnet's own routes, for what Docker has no route for.
pub const OWN_PREFIX: &str = "swarmnet";

/// What serves the operations behind the routes: the daemon, or a stand-in in tests.
pub trait Backend: Send + Sync + 'static {
    fn call(&self, req: Request) -> impl Future<Output = Response> + Send;
}

/// One answer: status, JSON body (or none), and whether it is `/_ping`'s plain text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: Bytes,
    /// Extra headers (`/_ping`'s `Swarm`).
    pub headers: Vec<(&'static str, String)>,
}

impl Answer {
    pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Self {
        let mut body = serde_json::to_vec(value).unwrap_or_else(|e| {
            format!("{{\"message\":\"cannot encode the answer: {e}\"}}").into_bytes()
        });
        body.push(b'\n');
        Answer {
            status,
            content_type: "application/json",
            body: body.into(),
            headers: Vec::new(),
        }
    }

    pub fn ok<T: Serialize>(value: &T) -> Self {
        Self::json(StatusCode::OK, value)
    }

    /// An empty 200 (Docker answers `swarm leave`, `node update` and `node rm` so).
    pub fn empty() -> Self {
        Answer {
            status: StatusCode::OK,
            content_type: "text/plain; charset=utf-8",
            body: Bytes::new(),
            headers: Vec::new(),
        }
    }

    pub fn error(status: StatusCode, message: impl Into<String>) -> Self {
        Self::json(
            status,
            &docker::ErrorMessage {
                message: message.into(),
            },
        )
    }

    pub fn not_found_route() -> Self {
        Self::error(StatusCode::NOT_FOUND, "page not found")
    }
}

/// HTTP status of an operation's error, as dockerd maps swarmkit's.
pub fn status_of(err: &ApiError) -> StatusCode {
    match err.kind {
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::FailedPrecondition | ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<ApiError> for Answer {
    fn from(err: ApiError) -> Self {
        Answer::error(status_of(&err), err.message)
    }
}

type Routed = Result<Answer, Answer>;

fn bad_request(message: impl Into<String>) -> Answer {
    Answer::error(StatusCode::BAD_REQUEST, message)
}

/// The decoded query string.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(text: &str) -> Self {
        Query(
            form_urlencoded::parse(text.as_bytes())
                .into_owned()
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Docker's boolean parameters: absent, empty, `0`, `no`, `false`, `none` are false.
    fn flag(&self, key: &str) -> bool {
        match self.get(key) {
            None => false,
            Some(v) => !matches!(
                v.to_ascii_lowercase().as_str(),
                "" | "0" | "no" | "false" | "none"
            ),
        }
    }

    fn filters(&self) -> Result<Filters, Answer> {
        Filters::parse(self.get("filters").unwrap_or("")).map_err(bad_request)
    }

    fn version(&self) -> Result<u64, Answer> {
        let raw = self.get("version").unwrap_or("");
        raw.parse().map_err(|_| {
            bad_request(format!(
                "invalid version '{raw}': expected the object's Version.Index"
            ))
        })
    }
}

/// Parses a JSON body; an empty body is refused like a malformed one.
fn body_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Answer> {
    serde_json::from_slice(body).map_err(|e| bad_request(format!("malformed JSON body: {e}")))
}

/// `/v1.41/...` -> (`Some("1.41")`, rest); anything else -> (`None`, path).
fn split_version(path: &str) -> (Option<&str>, &str) {
    if let Some(rest) = path.strip_prefix("/v") {
        let (ver, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if !ver.is_empty() && ver.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return (Some(ver), if tail.is_empty() { "/" } else { tail });
        }
    }
    (None, path)
}

fn version_tuple(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn check_version(v: &str) -> Result<(), Answer> {
    let (Some(asked), Some(max), Some(min)) = (
        version_tuple(v),
        version_tuple(API_VERSION),
        version_tuple(MIN_API_VERSION),
    ) else {
        return Err(bad_request(format!("invalid API version {v:?}")));
    };
    if asked > max {
        return Err(bad_request(format!(
            "client version {v} is too new. Maximum supported API version is {API_VERSION}"
        )));
    }
    if asked < min {
        return Err(bad_request(format!(
            "client version {v} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
        )));
    }
    Ok(())
}

/// The local API's routes over a backend.
pub struct Router<B> {
    backend: B,
    host: Host,
}

impl<B: Backend> Router<B> {
    pub fn new(backend: B, host: Host) -> Self {
        Router { backend, host }
    }

    /// Answers one request. `target` is the request's path and query.
    pub async fn handle(&self, method: &Method, target: &str, body: &[u8]) -> Answer {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let (version, path) = split_version(path);
        if let Some(v) = version {
            if let Err(answer) = check_version(v) {
                return answer;
            }
        }
        // Path segments arrive percent-encoded (Go's url.PathEscape in the docker CLI).
        let decoded: Vec<std::borrow::Cow<'_, str>> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy())
            .collect();
        let segs: Vec<&str> = decoded.iter().map(|s| s.as_ref()).collect();
        let query = Query::parse(query);
        match self.route(method, &segs, &query, body).await {
            Ok(a) | Err(a) => a,
        }
    }

    async fn route(&self, method: &Method, segs: &[&str], q: &Query, body: &[u8]) -> Routed {
        let get = method == Method::GET;
        match segs {
            ["_ping"] if get || method == Method::HEAD => self.ping().await,
            ["version"] if get => Ok(Answer::ok(&docker::version(&self.host))),
            ["info"] if get => self.info().await,
            ["swarm", ..] => self.swarm(method, &segs[1..], q, body).await,
            ["nodes", ..] => self.nodes(method, &segs[1..], q, body).await,
            [OWN_PREFIX, "info"] if get => Ok(Answer::ok(&self.local_info().await?)),
            [OWN_PREFIX, "swarm"] if get => match self.op(Request::SwarmInspect).await? {
                Reply::Swarm(swarm) => Ok(Answer::ok(&swarm)),
                _ => Err(unexpected()),
            },
            [OWN_PREFIX, "swarm", "ca"] if get => match self.op(Request::SwarmCa).await? {
                Reply::Text(pem) => Ok(Answer::ok(&pem)),
                _ => Err(unexpected()),
            },
            _ => Err(Answer::not_found_route()),
        }
    }

    async fn op(&self, req: Request) -> Result<Reply, Answer> {
        self.backend.call(req).await.map_err(Answer::from)
    }

    async fn local_info(&self) -> Result<LocalInfo, Answer> {
        match self.op(Request::Info).await? {
            Reply::Info(info) => Ok(info),
            _ => Err(unexpected()),
        }
    }

    async fn ping(&self) -> Routed {
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

    async fn ca_pem(&self) -> Result<String, Answer> {
        match self.op(Request::SwarmCa).await? {
            Reply::Text(pem) => Ok(pem),
            _ => Err(unexpected()),
        }
    }

    async fn docker_swarm(&self) -> Result<docker::Swarm, Answer> {
        let Reply::Swarm(swarm) = self.op(Request::SwarmInspect).await? else {
            return Err(unexpected());
        };
        Ok(docker::Swarm::from_swarm(&swarm, &self.ca_pem().await?))
    }

    async fn docker_nodes(&self) -> Result<Vec<docker::Node>, Answer> {
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

    fn docker_node_of(&self, n: &super::Node, ca: Option<&str>, own: Option<&str>) -> docker::Node {
        let mut node = docker::Node::from_node(n, ca);
        if own == Some(n.id.as_str()) {
            node.description.describe_host(&self.host);
        }
        node
    }

    async fn info(&self) -> Routed {
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

    async fn swarm(&self, method: &Method, rest: &[&str], q: &Query, body: &[u8]) -> Routed {
        match (method, rest) {
            (&Method::GET, []) => Ok(Answer::ok(&self.docker_swarm().await?)),
            (&Method::POST, ["init"]) => {
                let r: docker::SwarmInitRequest = body_json(body)?;
                if availability(&r.availability)? != Availability::Active {
                    return Err(bad_request(
                        "swarmnet starts a swarm's first manager as active; change it afterwards with node update",
                    ));
                }
                let opt = |s: String| (!s.is_empty()).then_some(s);
                let req = InitRequest {
                    advertise_addr: opt(r.advertise_addr),
                    listen_addr: opt(r.listen_addr).filter(|l| l != "0.0.0.0:2377"),
                    data_path_addr: opt(r.data_path_addr),
                    data_path_port: (r.data_path_port != 0).then_some(r.data_path_port),
                    default_addr_pool: r.default_addr_pool,
                    default_addr_pool_mask_length: (r.subnet_size != 0).then_some(r.subnet_size),
                    key_rotation_interval_secs: q
                        .get("keyRotationInterval")
                        .map(|v| {
                            v.parse().map_err(|_| {
                                bad_request(format!(
                                    "invalid keyRotationInterval {v:?}: expected seconds"
                                ))
                            })
                        })
                        .transpose()?,
                    force_new_cluster: r.force_new_cluster,
                };
                match self.op(Request::SwarmInit(req)).await? {
                    Reply::Init { node_id, .. } => Ok(Answer::ok(&node_id)),
                    _ => Err(unexpected()),
                }
            }
            (&Method::POST, ["join"]) => {
                let r: docker::SwarmJoinRequest = body_json(body)?;
                let opt = |s: String| (!s.is_empty()).then_some(s);
                let remote =
                    r.remote_addrs.first().cloned().ok_or_else(|| {
                        bad_request("RemoteAddrs is empty: name a manager's address")
                    })?;
                let req = JoinRequest {
                    token: r.join_token,
                    remote_addr: remote,
                    advertise_addr: opt(r.advertise_addr),
                    listen_addr: opt(r.listen_addr).filter(|l| l != "0.0.0.0:2377"),
                    data_path_addr: opt(r.data_path_addr),
                    availability: availability(&r.availability)?,
                };
                match self.op(Request::SwarmJoin(req)).await? {
                    Reply::Joined { .. } => Ok(Answer::empty()),
                    _ => Err(unexpected()),
                }
            }
            (&Method::POST, ["leave"]) => {
                self.op(Request::SwarmLeave {
                    force: q.flag("force"),
                })
                .await?;
                Ok(Answer::empty())
            }
            (&Method::POST, ["update"]) => self.swarm_update(q, body).await,
            _ => Err(Answer::not_found_route()),
        }
    }

    /// `POST /swarm/update`: join-token rotation. Spec changes swarmnet cannot apply are
    /// refused by name rather than dropped.
    async fn swarm_update(&self, q: &Query, body: &[u8]) -> Routed {
        let version = q.version()?;
        let spec: serde_json::Value = body_json(body)?;
        let current = serde_json::to_value(docker::SwarmSpec::current())
            .map_err(|e| Answer::from(ApiError::internal(e.to_string())))?;
        for pointer in [
            "/Orchestration/TaskHistoryRetentionLimit",
            "/Raft/SnapshotInterval",
            "/Raft/KeepOldSnapshots",
            "/Raft/LogEntriesForSlowFollowers",
            "/Raft/ElectionTick",
            "/Raft/HeartbeatTick",
            "/Dispatcher/HeartbeatPeriod",
            "/CAConfig/NodeCertExpiry",
            "/EncryptionConfig/AutoLockManagers",
        ] {
            if let Some(asked) = spec.pointer(pointer) {
                if Some(asked) != current.pointer(pointer) {
                    return Err(bad_request(format!(
                        "swarmnet cannot change {} (asked {asked}); only join-token rotation is supported",
                        &pointer[1..].replace('/', ".")
                    )));
                }
            }
        }
        if spec
            .get("Labels")
            .and_then(|l| l.as_object())
            .is_some_and(|l| !l.is_empty())
        {
            return Err(bad_request("swarmnet does not store swarm labels yet"));
        }
        let swarm = self.docker_swarm().await?;
        if swarm.cluster.version.index != version {
            return Err(out_of_sequence());
        }
        for (param, role) in [
            ("rotateWorkerToken", Role::Worker),
            ("rotateManagerToken", Role::Manager),
        ] {
            if q.flag(param) {
                self.op(Request::JoinToken { role, rotate: true }).await?;
            }
        }
        Ok(Answer::empty())
    }

    async fn nodes(&self, method: &Method, rest: &[&str], q: &Query, body: &[u8]) -> Routed {
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

    async fn docker_node(&self, id: &str) -> Result<docker::Node, Answer> {
        let Reply::Node(node) = self.op(Request::NodeInspect { id: id.to_string() }).await? else {
            return Err(unexpected());
        };
        let ca = self.ca_pem().await.ok();
        let own = self.local_info().await.ok().and_then(|i| i.node_id);
        Ok(self.docker_node_of(&node, ca.as_deref(), own.as_deref()))
    }

    /// `POST /nodes/{id}/update?version=N` with the whole new spec: availability and role
    /// change; labels swarmnet does not store are refused.
    async fn node_update(&self, id: &str, q: &Query, body: &[u8]) -> Routed {
        let version = q.version()?;
        let spec: docker::NodeSpec = body_json(body)?;
        let node = self.docker_node(id).await?;
        if node.version.index != version {
            return Err(out_of_sequence());
        }
        if !spec.labels.is_empty() {
            return Err(bad_request("swarmnet does not store node labels yet"));
        }
        if spec.availability != node.spec.availability {
            self.op(Request::NodeUpdate {
                id: node.id.clone(),
                availability: spec.availability,
            })
            .await?;
        }
        if spec.role != node.spec.role {
            self.op(Request::NodeSetRole {
                id: node.id.clone(),
                role: spec.role,
            })
            .await?;
        }
        Ok(Answer::empty())
    }
}

fn filters_values<'a>(filters: &'a Filters, key: &str) -> Vec<&'a str> {
    filters.values(key)
}

fn capitalise_filter(e: String) -> String {
    // dockerd 20.10 spells it "Invalid filter 'x'".
    match e.strip_prefix("invalid") {
        Some(rest) => format!("Invalid{rest}"),
        None => e,
    }
}

/// `key` or `key=value` against a node's labels.
fn label_matches(labels: &std::collections::BTreeMap<String, String>, v: &str) -> bool {
    match v.split_once('=') {
        Some((k, val)) => labels.get(k).is_some_and(|x| x == val),
        None => labels.contains_key(v),
    }
}

/// A request's `Availability`: empty means the default, `active`.
fn availability(text: &str) -> Result<Availability, Answer> {
    if text.is_empty() {
        return Ok(Availability::Active);
    }
    text.parse().map_err(bad_request)
}

fn out_of_sequence() -> Answer {
    Answer::error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "rpc error: code = Unknown desc = update out of sequence",
    )
}

fn unexpected() -> Answer {
    Answer::error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "unexpected answer from the daemon's operation",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ManagerStatus, NodeState, NodeStatus, Reachability};

    /// A one-manager swarm; records the operations it is asked for.
    #[derive(Default)]
    struct Fake {
        ops: std::sync::Mutex<Vec<String>>,
    }

    fn node() -> super::super::Node {
        super::super::Node {
            id: "n1aaaaaaaaaaaaaaaaaaaaaaa".into(),
            hostname: "vm".into(),
            role: Role::Manager,
            availability: crate::api::Availability::Active,
            status: NodeStatus {
                state: NodeState::Ready,
                addr: "127.0.0.1".into(),
            },
            manager_status: Some(ManagerStatus {
                leader: true,
                reachability: Reachability::Reachable,
                addr: "127.0.0.1:2377".into(),
            }),
            data_path_addr: "127.0.0.1".into(),
            cluster_addr: "127.0.0.1:2377".into(),
            created_at: "2026-12-03T16:43:30.402696648Z".into(),
            updated_at: "2026-12-03T16:44:04.027353341Z".into(),
        }
    }

    impl Backend for Fake {
        fn call(&self, req: Request) -> impl Future<Output = Response> + Send {
            self.ops.lock().unwrap().push(format!("{req:?}"));
            let reply = match req {
                Request::Info => Ok(Reply::Info(LocalInfo {
                    local_node_state: "active".into(),
                    node_id: Some(node().id),
                    role: Some(Role::Manager),
                    node_addr: Some("127.0.0.1".into()),
                    remote_managers: vec!["127.0.0.1:2377".into()],
                    encryption_key_tags: vec![],
                    raft_leader: None,
                    raft_voters: 1,
                    raft_applied: None,
                    raft_snapshot: None,
                })),
                Request::NodeList => Ok(Reply::Nodes(vec![node()])),
                Request::NodeInspect { id } if node().id.starts_with(&id) => {
                    Ok(Reply::Node(node()))
                }
                Request::NodeInspect { id } => {
                    Err(ApiError::not_found(format!("node {id} not found")))
                }
                Request::SwarmCa => Ok(Reply::Text("not a pem".into())),
                _ => Ok(Reply::Done),
            };
            async move { reply }
        }
    }

    fn router() -> Router<Fake> {
        Router::new(
            Fake::default(),
            Host {
                hostname: "vm".into(),
                kernel_version: "6".into(),
                operating_system: "Linux".into(),
                ncpu: 2,
                mem_total: 1,
            },
        )
    }

    async fn call(
        r: &Router<Fake>,
        method: Method,
        target: &str,
        body: &str,
    ) -> (u16, serde_json::Value) {
        let a = r.handle(&method, target, body.as_bytes()).await;
        let v = serde_json::from_slice(&a.body).unwrap_or(serde_json::Value::Null);
        (a.status.as_u16(), v)
    }

    #[tokio::test]
    async fn ping_says_the_swarm_state() {
        let a = router().handle(&Method::HEAD, "/_ping", b"").await;
        assert_eq!(a.status, StatusCode::OK);
        assert!(a.headers.contains(&("Swarm", "active/manager".to_string())));
    }

    #[tokio::test]
    async fn unknown_routes_and_versions() {
        let r = router();
        assert_eq!(
            call(&r, Method::GET, "/v1.41/images/json", "").await,
            (404, serde_json::json!({"message": "page not found"}))
        );
        assert_eq!(call(&r, Method::DELETE, "/info", "").await.0, 404);
        let (code, v) = call(&r, Method::GET, "/v1.99/info", "").await;
        assert_eq!(code, 400);
        assert!(v["message"].as_str().unwrap().contains("too new"));
        assert_eq!(call(&r, Method::GET, "/v1.41/info", "").await.0, 200);
        assert_eq!(call(&r, Method::GET, "/info", "").await.0, 200);
    }

    #[tokio::test]
    async fn node_filters() {
        let r = router();
        let q = |f: &str| {
            format!(
                "/v1.41/nodes?filters={}",
                crate::api::client::query_value(f)
            )
        };
        let (code, v) = call(&r, Method::GET, &q(r#"{"role":{"manager":true}}"#), "").await;
        assert_eq!((code, v.as_array().map(Vec::len)), (200, Some(1)));
        let (_, v) = call(&r, Method::GET, &q(r#"{"role":{"worker":true}}"#), "").await;
        assert_eq!(v, serde_json::json!([]));
        let (_, v) = call(
            &r,
            Method::GET,
            &q(r#"{"name":{"v":true},"id":{"n1":true}}"#),
            "",
        )
        .await;
        assert_eq!(v.as_array().map(Vec::len), Some(1));
        let (_, v) = call(
            &r,
            Method::GET,
            &q(r#"{"membership":{"accepted":true}}"#),
            "",
        )
        .await;
        assert_eq!(v.as_array().map(Vec::len), Some(1));
        let (_, v) = call(&r, Method::GET, &q(r#"{"label":{"zone":true}}"#), "").await;
        assert_eq!(v, serde_json::json!([]), "no node has a label");
        let (code, v) = call(&r, Method::GET, &q(r#"{"role":{"boss":true}}"#), "").await;
        assert_eq!(
            (code, v["message"].as_str()),
            (400, Some("Invalid role filter value boss"))
        );
        let (code, v) = call(&r, Method::GET, &q(r#"{"colour":{"red":true}}"#), "").await;
        assert_eq!(
            (code, v["message"].as_str()),
            (400, Some("Invalid filter 'colour'"))
        );
        assert_eq!(call(&r, Method::GET, &q("{"), "").await.0, 400);
    }

    #[tokio::test]
    async fn node_update_checks_the_version_and_maps_changes_to_operations() {
        let r = router();
        let (_, n) = call(&r, Method::GET, "/nodes/n1", "").await;
        let version = n["Version"]["Index"].as_u64().unwrap();
        let spec = r#"{"Labels":{},"Role":"worker","Availability":"drain"}"#;
        let (code, v) = call(&r, Method::POST, "/nodes/n1/update?version=1", spec).await;
        assert_eq!(code, 500);
        assert!(v["message"]
            .as_str()
            .unwrap()
            .contains("update out of sequence"));
        r.backend.ops.lock().unwrap().clear();
        let target = format!("/nodes/n1/update?version={version}");
        assert_eq!(call(&r, Method::POST, &target, spec).await.0, 200);
        let ops = r.backend.ops.lock().unwrap().join(";");
        assert!(
            ops.contains("NodeUpdate { id: \"n1aaaaaaaaaaaaaaaaaaaaaaa\", availability: Drain }"),
            "{ops}"
        );
        assert!(
            ops.contains("NodeSetRole { id: \"n1aaaaaaaaaaaaaaaaaaaaaaa\", role: Worker }"),
            "{ops}"
        );
        let labels = r#"{"Labels":{"a":"b"},"Role":"manager","Availability":"active"}"#;
        assert_eq!(call(&r, Method::POST, &target, labels).await.0, 400);
        let (code, v) = call(&r, Method::POST, &target, "{\"Role\":").await;
        assert_eq!(code, 400);
        assert!(v["message"]
            .as_str()
            .unwrap()
            .starts_with("malformed JSON body"));
        assert_eq!(call(&r, Method::GET, "/nodes/zz", "").await.0, 404);
        // Segments are percent-decoded.
        assert_eq!(call(&r, Method::GET, "/nodes/%6E1", "").await.0, 200);
    }

    #[tokio::test]
    async fn swarm_routes_map_to_operations() {
        let r = router();
        assert_eq!(
            call(&r, Method::POST, "/swarm/leave?force=1", "").await.0,
            200
        );
        assert_eq!(call(&r, Method::POST, "/swarm/init", "\"x\"").await.0, 400);
        assert_eq!(
            call(&r, Method::POST, "/swarm/join", r#"{"JoinToken":"x"}"#)
                .await
                .0,
            400
        );
        let ops = r.backend.ops.lock().unwrap().join(";");
        assert!(ops.contains("SwarmLeave { force: true }"), "{ops}");
    }
}
