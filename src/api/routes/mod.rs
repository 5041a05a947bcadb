//! The route table of the local API: Docker's Engine API routes (versioned `/v1.NN/...` and
//! unversioned) and swarmnet's own under [`OWN_PREFIX`], turned into operations of a
//! [`Backend`] (the daemon) and answered with Docker's JSON, status codes and
//! `{"message": ...}` errors.
//!
//! swarmnet's own routes: `GET /swarmnet/info` (this node's view: role, managers, key tags,
//! Raft progress), `GET /swarmnet/swarm` (the swarm record with what Docker's has no field
//! for: the key rotation interval, the CA digest), `GET /swarmnet/swarm/ca` (the root CA, PEM),
//! `GET /swarmnet/stats` (this node's data-path counters by task, network and VIP).
//!
//! Sans-IO apart from the backend: [`Router::handle`] takes a method, a target and a body
//! already read (and bounded) by the server, so tests and the fuzz target drive it directly.
//! One file per resource: `system.rs` (`/_ping`, `/info`), `swarm.rs`, `nodes.rs`. New resources
//! (networks, services, tasks) add a file here with an `impl<B: Backend> Router<B>` block and a
//! match arm in `Router::route`, in the same form as `nodes.rs`.

use std::future::Future;

use hyper::body::Bytes;
use hyper::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::docker::{self, Filters, Host, API_VERSION, MIN_API_VERSION};
use super::Availability;
use super::{ApiError, ErrorKind, LocalInfo, Reply, Request, Response};

mod networks;
mod nodes;
pub mod services;
mod swarm;
mod system;
pub mod tasks;

/// First segment of swarmnet's own routes, for what Docker has no route for.
pub const OWN_PREFIX: &str = "swarmnet";

/// What serves the operations behind the routes: the daemon, or a stand-in in tests.
pub trait Backend: Send + Sync + 'static {
    fn call(&self, req: Request) -> impl Future<Output = Response> + Send;

    /// A subscription to the node's events (`GET /events`); a backend that keeps none says so.
    fn events(&self) -> Result<super::events::EventFeed, ApiError> {
        Err(ApiError::unavailable("this node reports no events"))
    }

    /// Opens a live capture (`GET /swarmnet/capture`) on this node or on `ask.node`, and
    /// streams it (see [`super::capture`]); a backend without a data path says so.
    fn capture(
        &self,
        _ask: super::capture::CaptureAsk,
    ) -> impl Future<Output = Result<tokio::sync::mpsc::Receiver<Bytes>, ApiError>> + Send {
        async {
            Err(ApiError::unavailable(
                "this node has no data path to capture",
            ))
        }
    }
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
        ErrorKind::Conflict => StatusCode::CONFLICT,
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

    /// `Some` when the request is `GET /events` (versioned or not): the backend's feed and the
    /// client's query, or the answer refusing them. Streamed by the server, not answered here.
    pub fn events(
        &self,
        method: &Method,
        target: &str,
    ) -> Option<Result<(super::events::EventFeed, super::events::EventQuery), Answer>> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let (version, path) = split_version(path);
        if method != Method::GET || path.trim_end_matches('/') != "/events" {
            return None;
        }
        Some((|| {
            if let Some(v) = version {
                check_version(v)?;
            }
            let q = Query::parse(query);
            let query = super::events::EventQuery::parse(
                q.get("since"),
                q.get("until"),
                q.get("filters").unwrap_or(""),
            )
            .map_err(bad_request)?;
            let feed = self.backend.events().map_err(Answer::from)?;
            Ok((feed, query))
        })())
    }

    /// `Some` when the request is `GET /swarmnet/capture`: the stream of the capture the
    /// backend opened, or the answer refusing it. Streamed by the server, not answered here.
    pub async fn capture(
        &self,
        method: &Method,
        target: &str,
    ) -> Option<Result<tokio::sync::mpsc::Receiver<Bytes>, Answer>> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let (version, path) = split_version(path);
        if method != Method::GET || path.trim_end_matches('/') != format!("/{OWN_PREFIX}/capture") {
            return None;
        }
        let ask = (|| {
            if let Some(v) = version {
                check_version(v)?;
            }
            let q = Query::parse(query);
            let number = |key: &str| -> Result<Option<u64>, Answer> {
                q.get(key)
                    .filter(|v| !v.is_empty())
                    .map(|v| {
                        v.parse::<u64>().map_err(|_| {
                            bad_request(format!("{key} {v:?}: a whole number is expected"))
                        })
                    })
                    .transpose()
            };
            let target = q.get("target").unwrap_or("").to_string();
            if target.is_empty() {
                return Err(bad_request(
                    "capture what? give target=NETWORK|TASK|SERVICE",
                ));
            }
            let filter_text = q.get("filter").unwrap_or("").to_string();
            let filter = crate::io::capture::Filter::parse(std::slice::from_ref(&filter_text))
                .map_err(bad_request)?;
            let snaplen = number("snaplen")?.unwrap_or(u64::from(crate::io::capture::MAX_SNAPLEN));
            if snaplen == 0 || snaplen > u64::from(crate::io::capture::MAX_SNAPLEN) {
                return Err(bad_request(format!(
                    "snaplen {snaplen}: from 1 to {} bytes",
                    crate::io::capture::MAX_SNAPLEN
                )));
            }
            Ok(super::capture::CaptureAsk {
                target,
                node: q.get("node").filter(|n| !n.is_empty()).map(str::to_string),
                underlay: q.flag("underlay"),
                count: number("count")?,
                duration: number("duration")?.map(std::time::Duration::from_secs),
                snaplen: snaplen as u32,
                filter,
                filter_text,
            })
        })();
        Some(match ask {
            Ok(ask) => self.backend.capture(ask).await.map_err(Answer::from),
            Err(refused) => Err(refused),
        })
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
            ["networks", ..] => self.networks(method, &segs[1..], q, body).await,
            ["services", ..] => self.services(method, &segs[1..], q, body).await,
            ["tasks", ..] => self.tasks(method, &segs[1..], q).await,
            // swarmnet keeps no secrets or configs: empty lists (what `docker stack rm` reads).
            ["secrets" | "configs"] if get => Ok(Answer::ok(&Vec::<()>::new())),
            [kind @ ("secrets" | "configs"), "create"] if method == Method::POST => {
                Err(Answer::error(
                    StatusCode::NOT_IMPLEMENTED,
                    format!("swarmnet keeps no {kind}: it runs services' networking, and its tasks take their settings from --env and arguments"),
                ))
            }
            ["distribution", image @ .., "json"] if get && !image.is_empty() => {
                Ok(services::distribution(&image.join("/")))
            }
            // `docker ps`: the tasks running on this node, as containers.
            ["containers", "json"] if get => self.containers(q).await,
            [kind @ ("containers" | "images" | "build" | "volumes" | "plugins" | "exec"
            | "commit" | "session" | "auth" | "grpc" | "distribution"), ..] => {
                Err(not_implemented(kind))
            }
            ["system", "df"] => Err(not_implemented("system")),
            [OWN_PREFIX, "info"] if get => Ok(Answer::ok(&self.local_info().await?)),
            [OWN_PREFIX, "swarm"] if get => match self.op(Request::SwarmInspect).await? {
                Reply::Swarm(swarm) => Ok(Answer::ok(&swarm)),
                _ => Err(unexpected()),
            },
            [OWN_PREFIX, "tasks", key, "sandbox"] if get => {
                let op = Request::LocalTaskSandbox {
                    key: key.to_string(),
                };
                match self.op(op).await? {
                    Reply::Text(netns) => Ok(Answer::ok(&serde_json::json!({ "Netns": netns }))),
                    _ => Err(unexpected()),
                }
            }
            [OWN_PREFIX, "balancer"] if get => match self.op(Request::LocalBalancer).await? {
                Reply::Balancer(rows) => Ok(Answer::ok(&rows)),
                _ => Err(unexpected()),
            },
            [OWN_PREFIX, "stats"] if get => self.stats(q).await,
            [OWN_PREFIX, "swarm", "ca"] if get => match self.op(Request::SwarmCa).await? {
                Reply::Text(pem) => Ok(Answer::ok(&pem)),
                _ => Err(unexpected()),
            },
            _ => Err(Answer::not_found_route()),
        }
    }

    /// `GET /containers/json`: this node's running tasks. `all` changes nothing (ended tasks
    /// are not kept); `filters` `name`, `id`, `label` and `status` are applied as Docker does.
    async fn containers(&self, q: &Query) -> Routed {
        let filters = q.filters()?;
        let list = match self.op(Request::LocalContainers).await? {
            Reply::Containers(list) => list,
            _ => return Err(unexpected()),
        };
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        let kept: Vec<serde_json::Value> = list
            .into_iter()
            .filter(|c| {
                filters.matches("name", |v| {
                    c["Names"].as_array().is_some_and(|n| {
                        n.iter()
                            .any(|n| text(n).trim_start_matches('/').contains(v))
                    })
                }) && filters.matches("id", |v| text(&c["Id"]).starts_with(v))
                    && filters.matches("status", |v| v == "running")
                    && filters.matches("label", |v| {
                        let labels: std::collections::BTreeMap<String, String> =
                            serde_json::from_value(c["Labels"].clone()).unwrap_or_default();
                        label_matches(&labels, v)
                    })
            })
            .collect();
        let limit = q
            .get("limit")
            .and_then(|l| l.parse::<i64>().ok())
            .unwrap_or(-1);
        let kept: Vec<_> = match usize::try_from(limit) {
            Ok(n) if n > 0 => kept.into_iter().take(n).collect(),
            _ => kept,
        };
        Ok(Answer::ok(&kept))
    }

    /// `GET /swarmnet/stats[?name=N...]`: this node's rows, only those the names ask for; an
    /// unknown name is a 404 naming it.
    async fn stats(&self, q: &Query) -> Routed {
        let mut stats = match self.op(Request::LocalStats).await? {
            Reply::Stats(stats) => stats,
            _ => return Err(unexpected()),
        };
        let names: Vec<String> =
            q.0.iter()
                .filter(|(k, _)| k == super::stats::NAME_PARAM)
                .map(|(_, v)| v.clone())
                .collect();
        stats
            .select(&names)
            .map_err(|e| Answer::error(StatusCode::NOT_FOUND, e.to_string()))?;
        Ok(Answer::ok(&stats))
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
}

/// A request's `Availability`: empty means the default, `active`.
fn availability(text: &str) -> Result<Availability, Answer> {
    if text.is_empty() {
        return Ok(Availability::Active);
    }
    text.parse().map_err(bad_request)
}

/// 501 for Docker's routes that have no meaning in swarmnet, saying what to use instead.
fn not_implemented(kind: &str) -> Answer {
    let what = match kind {
        "containers" | "exec" | "commit" => {
            "swarmnet runs no containers: tasks are services' replicas (`docker service create`), built-in apps inside the data path or programs in a network namespace; `docker ps` lists this node's tasks, `swarmnet exec TASK -- CMD` runs a command beside a program task, `swarmnet stats` shows their traffic"
        }
        "images" | "build" | "distribution" => {
            "swarmnet has no images: a service's image is a built-in app (swarmnet/whoami, swarmnet/echo, swarmnet/fetch, swarmnet/lookup) or the path of a program on each node"
        }
        "volumes" | "system" => "swarmnet keeps no volumes: it runs services' networking only",
        "plugins" => "swarmnet has no plugins: its networking is built in",
        _ => "swarmnet serves Docker's swarm, node, network, service and task routes, not this one",
    };
    Answer::error(
        StatusCode::NOT_IMPLEMENTED,
        format!("{what} (swarmnet: Docker swarm service networking in userspace)"),
    )
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

#[cfg(test)]
mod tests;
