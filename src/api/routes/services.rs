//! `/services`: list with Docker's filters and `status=true`, create, inspect (with
//! `insertDefaults`), update at `version=N` (with `rollback=previous`), remove, and logs in
//! Docker's multiplexed stream framing. The managers check and allocate; here HTTP becomes
//! their operations, and a network that is this node's own (docker_gwbridge) is refused with
//! dockerd's words before the managers see it.

use std::collections::BTreeMap;

use hyper::body::Bytes;
use hyper::{Method, StatusCode};

use super::{
    bad_request, body_json, capitalise_filter, check_version, label_matches, split_version,
    unexpected, Answer, Query, Routed, Router,
};
use super::{Backend, Reply, Request};
use crate::api::docker::Filters;
use crate::api::service::{Service, ServiceSpec, ServiceStatus};
use crate::api::Role;
use crate::control::logs::LogLine;
use crate::control::manager::services::{replicas, to_docker};
use crate::control::network::{NetworkRecord, Scope};
use crate::control::service::{ServiceRecord, TaskRecord, TaskState};

/// What `GET /services` accepts, as dockerd 20.10.
const FILTERS: &[&str] = &["id", "label", "mode", "name"];

/// One service against Docker's list filters: `id` a prefix, `name` exact, `mode`, `label`.
pub fn service_matches(s: &ServiceRecord, f: &Filters) -> bool {
    let mode = match replicas(&s.spec) {
        Some(_) => "replicated",
        None => "global",
    };
    f.matches("id", |v| s.id.starts_with(v))
        && f.matches("name", |v| s.spec.name == v)
        && f.matches("mode", |v| v == mode)
        && f.matches("label", |v| label_matches(&s.spec.labels, v))
}

/// `ServiceStatus`: running tasks (desired and observed running), desired tasks (the replicas;
/// in global mode the tasks meant to run), completed tasks.
pub fn status_of(s: &ServiceRecord, tasks: &[TaskRecord]) -> ServiceStatus {
    let own = || tasks.iter().filter(|t| t.service_id == s.id);
    let running = own()
        .filter(|t| t.desired == TaskState::Running && t.state == TaskState::Running)
        .count() as u64;
    let desired = match replicas(&s.spec) {
        Some(n) => n,
        None => own().filter(|t| t.desired == TaskState::Running).count() as u64,
    };
    ServiceStatus {
        running_tasks: running,
        desired_tasks: desired,
        completed_tasks: own().filter(|t| t.state == TaskState::Complete).count() as u64,
    }
}

/// One line of `GET /services/{id}/logs`, as dockerd frames it for a service without a TTY:
/// an 8-byte header (stream 1 or 2, three zeros, the payload's length big-endian), then
/// `[TIMESTAMP ]DETAILS MESSAGE\n` where DETAILS names the node, service and task.
pub fn log_frame(line: &LogLine, node_id: &str, service_id: &str, timestamps: bool) -> Vec<u8> {
    let mut payload = String::new();
    if timestamps {
        payload.push_str(&line.at);
        payload.push(' ');
    }
    payload.push_str(&format!(
        "com.docker.swarm.node.id={node_id},com.docker.swarm.service.id={service_id},com.docker.swarm.task.id={} ",
        line.task_id
    ));
    payload.push_str(line.line.trim_end_matches('\n'));
    payload.push('\n');
    let stream = if line.stream == "stderr" { 2u8 } else { 1u8 };
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut out = vec![stream, 0, 0, 0];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload.as_bytes());
    out
}

/// The apps swarmnet runs as virtual tasks, by image name (any tag).
pub const BUILTIN_IMAGES: &[&str] = &[
    "swarmnet/whoami",
    "swarmnet/echo",
    "swarmnet/fetch",
    "swarmnet/lookup",
];

/// `GET /distribution/{image}/json`: built-in apps have no registry manifest, so they get a
/// descriptor of their own (its digest names the app and this swarmnet version), which the
/// docker CLI pins as it pins a registry's; any other image is a program on each node, which
/// no registry resolves (the docker CLI then warns and goes on, as with an unreachable one).
pub fn distribution(image: &str) -> Answer {
    let name = image.split('@').next().unwrap_or(image);
    let name = match name.rsplit_once(':') {
        Some((n, tag)) if !tag.contains('/') => n,
        _ => name,
    };
    if !BUILTIN_IMAGES.contains(&name) {
        return Answer::error(
            StatusCode::NOT_FOUND,
            format!("swarmnet resolves no image registry: {image} is not a built-in app ({}), so each node runs it as a program", BUILTIN_IMAGES.join(", ")),
        );
    }
    use sha2::Digest;
    let content = format!("swarmnet built-in app {name} {}", env!("CARGO_PKG_VERSION"));
    let digest: String = sha2::Sha256::digest(content.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    Answer::ok(&serde_json::json!({
        "Descriptor": {
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "digest": format!("sha256:{digest}"),
            "size": content.len(),
        },
        "Platforms": [{"architecture": arch, "os": "linux"}],
    }))
}

impl<B: Backend> Router<B> {
    pub(super) async fn service_records(&self) -> Result<Vec<ServiceRecord>, Answer> {
        match self.op(Request::ServiceList).await? {
            Reply::Services(s) => Ok(s),
            _ => Err(unexpected()),
        }
    }

    pub(super) async fn task_records(&self) -> Result<Vec<TaskRecord>, Answer> {
        match self.op(Request::TaskList).await? {
            Reply::Tasks(t) => Ok(t),
            _ => Err(unexpected()),
        }
    }

    pub(super) async fn swarm_networks(&self) -> Result<Vec<NetworkRecord>, Answer> {
        match self.op(Request::NetworkList).await? {
            Reply::Networks(n) => Ok(n),
            _ => Err(unexpected()),
        }
    }

    async fn service_record(&self, key: &str) -> Result<ServiceRecord, Answer> {
        match self
            .op(Request::ServiceInspect {
                key: key.to_string(),
            })
            .await?
        {
            Reply::Service(s) => Ok(*s),
            _ => Err(unexpected()),
        }
    }

    /// dockerd refuses a node-local network (docker_gwbridge) for a service before asking the
    /// managers, which know only swarm networks.
    async fn refuse_local_networks(&self, spec: &ServiceSpec) -> Result<(), Answer> {
        if spec.task_template.networks.is_empty()
            || self.local_info().await?.role != Some(Role::Manager)
        {
            return Ok(());
        }
        let swarm = self.swarm_networks().await?;
        let local = match self.op(Request::LocalNetworkList).await? {
            Reply::Networks(n) => n,
            _ => return Err(unexpected()),
        };
        for att in &spec.task_template.networks {
            if crate::control::manager::networks::find(&swarm, &att.target).is_ok() {
                continue;
            }
            if let Ok(n) = crate::control::manager::networks::find(&local, &att.target) {
                if n.scope == Scope::Local {
                    return Err(Answer::error(
                        StatusCode::FORBIDDEN,
                        format!("The network {} cannot be used with services. Only networks scoped to the swarm can be used, such as those created with the overlay driver.", n.name),
                    ));
                }
            }
        }
        Ok(())
    }

    pub(super) async fn services(
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
                for m in filters.values("mode") {
                    if m != "replicated" && m != "global" {
                        return Err(bad_request(format!("Invalid filter: 'mode'='{m}'")));
                    }
                }
                let mut records = self.service_records().await?;
                records.retain(|s| service_matches(s, &filters));
                records.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
                let tasks = if q.flag("status") {
                    Some(self.task_records().await?)
                } else {
                    None
                };
                let list: Vec<Service> = records
                    .iter()
                    .map(|s| {
                        let mut d = to_docker(s, false);
                        d.service_status = tasks.as_deref().map(|t| status_of(s, t));
                        d
                    })
                    .collect();
                Ok(Answer::ok(&list))
            }
            (&Method::POST, ["create"]) => {
                let spec: ServiceSpec = body_json(body)?;
                self.refuse_local_networks(&spec).await?;
                match self.op(Request::ServiceCreate(Box::new(spec))).await? {
                    Reply::ServiceCreated(c) => Ok(Answer::json(StatusCode::CREATED, &c)),
                    _ => Err(unexpected()),
                }
            }
            (&Method::GET, [key]) => {
                let s = self.service_record(key).await?;
                Ok(Answer::ok(&to_docker(&s, q.flag("insertDefaults"))))
            }
            (&Method::POST, [key, "update"]) => {
                let version = q.version()?;
                let rollback = match q.get("rollback") {
                    None | Some("") => false,
                    Some("previous") => true,
                    Some(other) => {
                        return Err(bad_request(format!("unrecognized rollback option {other}")))
                    }
                };
                let spec: ServiceSpec = body_json(body)?;
                self.refuse_local_networks(&spec).await?;
                self.op(Request::ServiceUpdate {
                    key: key.to_string(),
                    version,
                    spec: Box::new(spec),
                    rollback,
                })
                .await?;
                Ok(Answer::ok(&serde_json::json!({ "Warnings": null })))
            }
            (&Method::DELETE, [key]) => {
                self.op(Request::ServiceRemove {
                    key: key.to_string(),
                })
                .await?;
                Ok(Answer::empty())
            }
            (&Method::GET, [key, "logs"]) => self.service_logs(key, q, false).await,
            _ => Err(Answer::not_found_route()),
        }
    }

    /// `GET /services/{key}/logs`, and with `task` `GET /tasks/{key}/logs`. With `follow`, the
    /// server streams instead (see [`Router::follow_logs`]); here it answers what is kept now.
    pub(super) async fn service_logs(&self, key: &str, q: &Query, task: bool) -> Routed {
        let ask = LogsAsk::parse(q)?;
        let (body, _) = self.logs_batch(key, task, &ask, None).await?;
        Ok(Answer {
            status: StatusCode::OK,
            content_type: LOGS_CONTENT_TYPE,
            body: body.into(),
            headers: Vec::new(),
        })
    }

    /// The frames of the lines kept for a service (or, with `task`, one task) that `ask` wants,
    /// in time order. With `after` (the last line sent of each task), only newer lines, and
    /// `tail` is not applied again; the map is updated with what this batch holds.
    async fn logs_batch(
        &self,
        key: &str,
        task: bool,
        ask: &LogsAsk,
        after: Option<&mut BTreeMap<String, i128>>,
    ) -> Result<(Vec<u8>, usize), Answer> {
        // A service by ID, name or prefix; with `task`, one task by ID or unique prefix.
        let all = self.task_records().await?;
        let (service_key, only): (String, Option<String>) = if task {
            let found: Vec<&TaskRecord> = match all.iter().find(|t| t.id == key) {
                Some(t) => vec![t],
                None => all.iter().filter(|t| t.id.starts_with(key)).collect(),
            };
            match found.as_slice() {
                [t] => (t.service_id.clone(), Some(t.id.clone())),
                [] => {
                    return Err(Answer::error(
                        StatusCode::NOT_FOUND,
                        format!("task {key} not found"),
                    ))
                }
                many => {
                    return Err(bad_request(format!(
                        "task {key} is ambiguous ({} matches found)",
                        many.len()
                    )))
                }
            }
        } else {
            (key.to_string(), None)
        };
        let service = self.service_record(&service_key).await?;
        let mut tasks: Vec<TaskRecord> = all
            .into_iter()
            .filter(|t| t.service_id == service.id)
            .filter(|t| only.as_ref().is_none_or(|id| *id == t.id))
            .collect();
        tasks.sort_by(|a, b| (a.slot, &a.created_at).cmp(&(b.slot, &b.created_at)));
        let ids: Vec<String> = tasks.iter().map(|t| t.id.clone()).collect();
        let Reply::Logs(lines) = self.op(Request::TaskLogs { task_ids: ids }).await? else {
            return Err(unexpected());
        };
        let following = after.is_some();
        let mut after = after;
        let mut kept: Vec<(&LogLine, i128)> = Vec::new();
        for t in &tasks {
            // One task's lines come from one node's clock: its last line sent is its cursor.
            let since = after.as_ref().and_then(|m| m.get(&t.id).copied());
            let mut own: Vec<(&LogLine, i128)> = lines
                .iter()
                .filter(|l| l.task_id == t.id)
                .filter(|l| {
                    if l.stream == "stderr" {
                        ask.stderr
                    } else {
                        ask.stdout
                    }
                })
                .map(|l| (l, line_nanos(l)))
                .filter(|(_, at)| since.is_none_or(|s| *at > s))
                .collect();
            if let (Some(n), false) = (ask.tail, following && since.is_some()) {
                own.drain(..own.len().saturating_sub(n));
            }
            if let (Some(m), Some((_, last))) = (after.as_mut(), own.last()) {
                m.insert(t.id.clone(), *last);
            } else if let Some(m) = after.as_mut() {
                // Nothing (new) yet: everything of this task from now on is new.
                m.entry(t.id.clone()).or_insert(i128::MIN);
            }
            kept.extend(own);
        }
        kept.sort_by_key(|(_, at)| *at);
        let mut body = Vec::new();
        for (l, _) in &kept {
            let node = tasks
                .iter()
                .find(|t| t.id == l.task_id)
                .map(|t| t.node_id.as_str())
                .unwrap_or("");
            body.extend(log_frame(l, node, &service.id, ask.timestamps));
        }
        Ok((body, kept.len()))
    }
}

/// The content type of a logs answer without a TTY (Docker's multiplexed frames).
pub const LOGS_CONTENT_TYPE: &str = "application/vnd.docker.raw-stream";

/// How often a followed logs answer asks for new lines.
pub const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// A logs request's options.
struct LogsAsk {
    stdout: bool,
    stderr: bool,
    tail: Option<usize>,
    timestamps: bool,
}

impl LogsAsk {
    fn parse(q: &Query) -> Result<LogsAsk, Answer> {
        let (stdout, stderr) = (q.flag("stdout"), q.flag("stderr"));
        if !stdout && !stderr {
            return Err(bad_request(
                "Bad parameters: you must choose at least one stream",
            ));
        }
        let tail: Option<usize> = match q.get("tail") {
            None | Some("") | Some("all") => None,
            Some(n) => Some(n.parse().map_err(|_| {
                bad_request(format!("invalid tail {n:?}: expected a number or \"all\""))
            })?),
        };
        Ok(LogsAsk {
            stdout,
            stderr,
            tail,
            timestamps: q.flag("timestamps"),
        })
    }
}

/// A line's time in nanoseconds since the epoch (lines whose time does not read come first).
fn line_nanos(l: &LogLine) -> i128 {
    time::OffsetDateTime::parse(&l.at, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp_nanos())
        .unwrap_or(i128::MIN + 1)
}

impl<B: Backend> Router<B> {
    /// `Some` when the request is `GET /services/{key}/logs` or `GET /tasks/{key}/logs` with
    /// `follow`: the lines kept now and then, every [`FOLLOW_EVERY`], the newer ones, for as
    /// long as the client reads (the receiver), or the answer refusing the request.
    pub async fn follow_logs(
        self: std::sync::Arc<Self>,
        method: &Method,
        target: &str,
    ) -> Option<Result<tokio::sync::mpsc::Receiver<Bytes>, Answer>> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let (version, path) = split_version(path);
        let q = Query::parse(query);
        if method != Method::GET || !q.flag("follow") {
            return None;
        }
        let segs: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect();
        let (key, task) = match segs.as_slice() {
            [kind, key, logs] if logs == "logs" && (kind == "services" || kind == "tasks") => {
                (key.clone(), kind == "tasks")
            }
            _ => return None,
        };
        Some(
            async {
                if let Some(v) = version {
                    check_version(v)?;
                }
                let ask = LogsAsk::parse(&q)?;
                let mut cursor = BTreeMap::new();
                let (first, _) = self.logs_batch(&key, task, &ask, Some(&mut cursor)).await?;
                let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
                tokio::spawn(async move {
                    if tx.send(Bytes::from(first)).await.is_err() {
                        return;
                    }
                    loop {
                        tokio::select! {
                            _ = tx.closed() => return,
                            _ = tokio::time::sleep(FOLLOW_EVERY) => {}
                        }
                        match self.logs_batch(&key, task, &ask, Some(&mut cursor)).await {
                            Ok((body, n)) if n > 0 => {
                                if tx.send(Bytes::from(body)).await.is_err() {
                                    return;
                                }
                            }
                            Ok(_) => {}
                            // The service was removed: the answer ends, as Docker's does.
                            Err(a) if a.status == StatusCode::NOT_FOUND => return,
                            // A manager between leaders: ask again at the next turn.
                            Err(_) => {}
                        }
                    }
                });
                Ok(rx)
            }
            .await,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, name: &str, global: bool) -> ServiceRecord {
        let mut spec = ServiceSpec {
            name: name.into(),
            ..Default::default()
        };
        spec.labels
            .insert("com.docker.stack.namespace".into(), "shop".into());
        if global {
            spec.mode = crate::api::service::ServiceMode::Global {};
        }
        ServiceRecord {
            id: id.into(),
            spec,
            networks: vec![],
            vips: vec![],
            ports: vec![],
            version: 1,
            template_version: 1,
            previous_spec: None,
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    fn task(id: &str, service: &str, desired: TaskState, state: TaskState) -> TaskRecord {
        TaskRecord {
            id: id.into(),
            service_id: service.into(),
            slot: 1,
            node_id: "n".into(),
            desired,
            state,
            message: String::new(),
            error: String::new(),
            addresses: vec![],
            template_version: 1,
            created_at: String::new(),
            state_at: String::new(),
            exit_code: None,
        }
    }

    #[test]
    fn list_filters_as_dockerd_reads_them() {
        let web = record("abc123", "web", false);
        let f = |text: &str| Filters::parse(text).unwrap();
        assert!(service_matches(&web, &f(r#"{"id":{"abc":true}}"#)));
        assert!(!service_matches(&web, &f(r#"{"id":{"bc":true}}"#)));
        assert!(service_matches(&web, &f(r#"{"name":{"web":true}}"#)));
        assert!(
            !service_matches(&web, &f(r#"{"name":{"we":true}}"#)),
            "names are exact"
        );
        assert!(service_matches(&web, &f(r#"{"mode":{"replicated":true}}"#)));
        assert!(!service_matches(&web, &f(r#"{"mode":{"global":true}}"#)));
        assert!(service_matches(
            &web,
            &f(r#"{"label":{"com.docker.stack.namespace=shop":true}}"#)
        ));
        assert!(!service_matches(
            &web,
            &f(r#"{"label":{"com.docker.stack.namespace=x":true}}"#)
        ));
    }

    #[test]
    fn replicas_count_running_tasks_meant_to_run() {
        use TaskState::*;
        let web = record("s", "web", false);
        let tasks = [
            task("a", "s", Running, Running),
            task("b", "s", Running, Starting),
            task("c", "s", Shutdown, Running),
            task("d", "other", Running, Running),
            task("e", "s", Shutdown, Complete),
        ];
        let st = status_of(&web, &tasks);
        assert_eq!(
            (st.running_tasks, st.desired_tasks, st.completed_tasks),
            (1, 1, 1)
        );
        let g = record("s", "g", true);
        assert_eq!(status_of(&g, &tasks).desired_tasks, 2);
    }

    #[test]
    fn built_in_images_have_a_descriptor_and_programs_none() {
        let a = distribution("swarmnet/whoami:latest");
        assert_eq!(a.status, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        let digest = v["Descriptor"]["digest"].as_str().unwrap();
        assert!(digest.starts_with("sha256:") && digest.len() == 71, "{v}");
        // Any tag, the same app.
        assert_eq!(distribution("swarmnet/whoami").body, a.body);
        assert_ne!(distribution("swarmnet/echo").body, a.body);
        assert_eq!(distribution("/bin/sleep").status, StatusCode::NOT_FOUND);
        assert_eq!(distribution("swarmnet/nope").status, StatusCode::NOT_FOUND);
    }

    #[test]
    fn log_lines_are_framed_as_dockerd_frames_them() {
        let line = LogLine {
            task_id: "t1".into(),
            stream: "stderr".into(),
            at: "2026-12-03T16:44:28.1Z".into(),
            line: "hello".into(),
        };
        let f = log_frame(&line, "n1", "s1", false);
        let payload = "com.docker.swarm.node.id=n1,com.docker.swarm.service.id=s1,com.docker.swarm.task.id=t1 hello\n";
        assert_eq!(&f[..4], &[2, 0, 0, 0]);
        assert_eq!(
            u32::from_be_bytes(f[4..8].try_into().unwrap()) as usize,
            payload.len()
        );
        assert_eq!(&f[8..], payload.as_bytes());
        let f = log_frame(&line, "n1", "s1", true);
        assert!(f[8..].starts_with(b"2026-12-03T16:44:28.1Z com.docker"));
    }
}
