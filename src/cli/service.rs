//! `swarmnet service ...`: create, ls, ps, inspect, update, scale, rm, logs, with Docker 20.10's
//! flags, columns, texts and convergence progress, over the same routes the docker CLI uses.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use clap::Subcommand;
use hyper::Method;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::daemon::{block_on, client};
use super::network::filters_query;
use super::output::{json, title};
use super::service_args::{human_duration, parse_network, parse_publish};
use super::template::Format;
use crate::api::client::{path_segment, versioned, Client, ClientError};
use crate::api::service::{
    EndpointSpec, PortConfig, RestartPolicy, Service, ServiceCreateResponse, ServiceMode,
    ServiceSpec,
};
use crate::api::task::Task;

/// How long create/update/scale wait for the tasks to run before giving up (the service
/// keeps converging; `-d` does not wait at all). `SWARMNET_CONVERGE_TIMEOUT` (seconds) changes it.
pub const CONVERGE_WAIT: Duration = Duration::from_secs(90);

fn converge_wait() -> Duration {
    std::env::var("SWARMNET_CONVERGE_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(CONVERGE_WAIT)
}
/// How long the tasks must keep running before the service counts as converged (Docker's
/// default update monitor).
pub const VERIFY: Duration = Duration::from_secs(5);

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Service name.
    #[arg(long)]
    name: Option<String>,
    /// Number of tasks.
    #[arg(long)]
    replicas: Option<u64>,
    /// Service mode (replicated or global).
    #[arg(long, default_value = "replicated")]
    mode: String,
    /// Network attachments (NET or name=NET,alias=A).
    #[arg(long = "network")]
    network: Vec<String>,
    /// Endpoint mode (vip or dnsrr).
    #[arg(long = "endpoint-mode", default_value = "vip")]
    endpoint_mode: String,
    /// Publish a port as a node port (PUB:TARGET[/PROTO] or mode=host,published=P,target=T).
    #[arg(short = 'p', long = "publish")]
    publish: Vec<String>,
    /// Set environment variables.
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Service labels.
    #[arg(short = 'l', long = "label")]
    label: Vec<String>,
    /// Task hostname.
    #[arg(long)]
    hostname: Option<String>,
    /// Placement constraints (node.hostname==X, node.role==manager, node.labels.K==V).
    #[arg(long)]
    constraint: Vec<String>,
    /// Restart when condition is met (none, on-failure or any).
    #[arg(long = "restart-condition")]
    restart_condition: Option<String>,
    /// Delay between restart attempts (ns|us|ms|s|m|h).
    #[arg(long = "restart-delay")]
    restart_delay: Option<String>,
    /// Maximum number of restarts before giving up.
    #[arg(long = "restart-max-attempts")]
    restart_max_attempts: Option<u64>,
    /// Exit immediately instead of waiting for the service to converge.
    #[arg(short = 'd', long)]
    detach: bool,
    /// Suppress progress output.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Do not query the daemon for the image's digest.
    #[arg(long = "no-resolve-image")]
    no_resolve_image: bool,
    /// Image (swarmnet/whoami, swarmnet/echo, or a program).
    image: String,
    /// Arguments of the task's command.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    /// Number of tasks.
    #[arg(long)]
    replicas: Option<u64>,
    /// Add a network.
    #[arg(long = "network-add")]
    network_add: Vec<String>,
    /// Remove a network.
    #[arg(long = "network-rm")]
    network_rm: Vec<String>,
    /// Add or update a published port.
    #[arg(long = "publish-add")]
    publish_add: Vec<String>,
    /// Remove a published port by its target port (TARGET[/PROTO]).
    #[arg(long = "publish-rm")]
    publish_rm: Vec<String>,
    /// Service image tag.
    #[arg(long)]
    image: Option<String>,
    /// Do not query the daemon for the image's digest.
    #[arg(long = "no-resolve-image")]
    no_resolve_image: bool,
    /// Add or update an environment variable.
    #[arg(long = "env-add")]
    env_add: Vec<String>,
    /// Remove an environment variable.
    #[arg(long = "env-rm")]
    env_rm: Vec<String>,
    /// Add a placement constraint.
    #[arg(long = "constraint-add")]
    constraint_add: Vec<String>,
    /// Remove a placement constraint.
    #[arg(long = "constraint-rm")]
    constraint_rm: Vec<String>,
    /// Service command args (replaces them).
    #[arg(long, allow_hyphen_values = true)]
    args: Option<String>,
    /// Force update even if no changes require it.
    #[arg(long)]
    force: bool,
    /// Rollback to previous specification.
    #[arg(long)]
    rollback: bool,
    /// Exit immediately instead of waiting for the service to converge.
    #[arg(short = 'd', long)]
    detach: bool,
    /// Suppress progress output.
    #[arg(short = 'q', long)]
    quiet: bool,
    service: String,
}

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Create a new service.
    Create(CreateArgs),
    /// List services.
    Ls {
        /// Only display IDs.
        #[arg(short, long)]
        quiet: bool,
        /// Filter output based on conditions provided (id=, name=, label=, mode=).
        #[arg(short, long, value_parser = key_value)]
        filter: Vec<(String, String)>,
    },
    /// List the tasks of one or more services.
    Ps {
        /// Do not truncate output.
        #[arg(long = "no-trunc")]
        no_trunc: bool,
        /// Only display task IDs.
        #[arg(short, long)]
        quiet: bool,
        /// Filter output based on conditions provided (desired-state=, id=, name=, node=).
        #[arg(short, long, value_parser = key_value)]
        filter: Vec<(String, String)>,
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// Display detailed information on one or more services.
    Inspect {
        /// Print the information in a human friendly format.
        #[arg(long)]
        pretty: bool,
        /// Format the output using a Go template.
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// Update a service.
    Update(UpdateArgs),
    /// Scale one or multiple replicated services (SERVICE=REPLICAS...).
    Scale {
        /// Exit immediately instead of waiting for the service to converge.
        #[arg(short = 'd', long)]
        detach: bool,
        #[arg(required = true)]
        scales: Vec<String>,
    },
    /// Remove one or more services.
    Rm {
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// Fetch the logs of a service.
    Logs {
        /// Number of lines to show from the end of the logs (default all).
        #[arg(long, short = 'n', default_value = "all")]
        tail: String,
        /// Do not include task IDs in output.
        #[arg(long = "no-task-ids")]
        no_task_ids: bool,
        /// Do not truncate output.
        #[arg(long = "no-trunc")]
        no_trunc: bool,
        /// Do not neatly format logs.
        #[arg(long)]
        raw: bool,
        /// Show timestamps.
        #[arg(short, long)]
        timestamps: bool,
        /// Follow log output (not kept by swarmnet: refused with a reason).
        #[arg(short, long)]
        follow: bool,
        service: String,
    },
}

fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("bad format of filter (expected name=value): {s}")),
    }
}

/// Go's `time.ParseDuration` for the forms the docker CLI takes (`5s`, `1m30s`, `250ms`), in
/// nanoseconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let bad = || format!("invalid duration {s:?}: expected e.g. 5s, 1m30s, 250ms");
    if s == "0" {
        return Ok(0);
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += value * scale;
        rest = &rest[unit_end..];
    }
    Ok(total as u64)
}

/// The image as dockerd records it: a reference without a tag or digest gets `:latest`, as the
/// docker CLI normalises it; a program path stays as it is.
pub fn normalise_image(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.starts_with('/') || image.starts_with('.') || image.contains('@') || last.contains(':')
    {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

/// The spec the docker CLI sends for these flags.
pub fn create_spec(a: &CreateArgs) -> Result<ServiceSpec, String> {
    let mode = match (a.mode.as_str(), a.replicas) {
        ("replicated", r) => ServiceMode::Replicated {
            replicas: r.unwrap_or(1),
        },
        ("global", None) => ServiceMode::Global {},
        ("global", Some(_)) => {
            return Err("replicas can only be used with replicated or replicated-job mode".into())
        }
        (other, _) => {
            return Err(format!(
                "invalid argument \"{other}\" for \"--mode\" flag: invalid service mode (replicated or global)"
            ))
        }
    };
    if !matches!(a.endpoint_mode.as_str(), "vip" | "dnsrr") {
        return Err(format!(
            "invalid argument \"{}\" for \"--endpoint-mode\" flag: expected vip or dnsrr",
            a.endpoint_mode
        ));
    }
    let mut spec = ServiceSpec {
        name: a.name.clone().unwrap_or_default(),
        mode,
        ..Default::default()
    };
    for l in &a.label {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        spec.labels.insert(k.into(), v.into());
    }
    let tt = &mut spec.task_template;
    tt.container_spec.image = normalise_image(&a.image);
    tt.container_spec.args = a.args.clone();
    tt.container_spec.env = a.env.clone();
    tt.container_spec.hostname = a.hostname.clone().unwrap_or_default();
    tt.container_spec.dns_config = serde_json::json!({});
    tt.resources = serde_json::json!({"Limits": {}, "Reservations": {}});
    tt.placement.constraints = a.constraint.clone();
    if a.restart_condition.is_some()
        || a.restart_delay.is_some()
        || a.restart_max_attempts.is_some()
    {
        let condition = a.restart_condition.clone().unwrap_or_else(|| "any".into());
        if !matches!(condition.as_str(), "none" | "on-failure" | "any") {
            return Err(format!("invalid argument \"{condition}\" for \"--restart-condition\" flag: invalid RestartCondition: must be one of \"none\", \"on-failure\" or \"any\""));
        }
        tt.restart_policy = Some(RestartPolicy {
            condition,
            delay: match &a.restart_delay {
                Some(d) => parse_duration(d)?,
                None => 5_000_000_000,
            },
            max_attempts: a.restart_max_attempts.unwrap_or(0),
        });
    }
    for n in &a.network {
        tt.networks.push(parse_network(n)?);
    }
    let ports = a
        .publish
        .iter()
        .map(|p| parse_publish(p))
        .collect::<Result<Vec<_>, _>>()?;
    spec.endpoint_spec = Some(EndpointSpec {
        mode: a.endpoint_mode.clone(),
        ports,
    });
    Ok(spec)
}

fn service_route(key: &str) -> String {
    format!("/services/{}", path_segment(key))
}

async fn get_service(client: &Client, key: &str, defaults: bool) -> Result<Service, ClientError> {
    client
        .get(&format!("{}?insertDefaults={defaults}", service_route(key)))
        .await
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn since(ts: &str) -> u64 {
    OffsetDateTime::parse(ts, &Rfc3339)
        .map(|t| (now() - t).whole_seconds().max(0) as u64)
        .unwrap_or(0)
}

fn short(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        id.to_string()
    } else {
        id.chars().take(12).collect()
    }
}

/// An image without its digest (`service ls` and `ps` show the tag only).
fn image_column(image: &str, no_trunc: bool) -> String {
    if no_trunc {
        return image.to_string();
    }
    image.split('@').next().unwrap_or(image).to_string()
}

/// Rows of `service ls`: Docker's columns, sorted by name.
pub fn ls_rows(services: &[Service]) -> Vec<Vec<String>> {
    let mut sorted: Vec<&Service> = services.iter().collect();
    sorted.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    sorted
        .into_iter()
        .map(|s| {
            let (mode, desired) = match s.spec.mode {
                ServiceMode::Replicated { replicas } => ("replicated", replicas),
                ServiceMode::Global {} => (
                    "global",
                    s.service_status
                        .as_ref()
                        .map(|st| st.desired_tasks)
                        .unwrap_or(0),
                ),
            };
            let running = s
                .service_status
                .as_ref()
                .map(|st| st.running_tasks)
                .unwrap_or(0);
            vec![
                short(&s.id, false),
                s.spec.name.clone(),
                mode.to_string(),
                format!("{running}/{desired}"),
                image_column(&s.spec.task_template.container_spec.image, false),
                ls_ports(&s.endpoint.ports),
            ]
        })
        .collect()
}

/// Columns as the docker CLI's tabwriter lays them out (minimum width 10, padding 3; cells
/// are padded even when empty, the last column is not).
pub fn docker_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let len = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = header.iter().map(|h| len(h)).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(len(cell));
        }
    }
    let mut out = String::new();
    let all = std::iter::once(header.iter().map(|h| h.to_string()).collect::<Vec<_>>())
        .chain(rows.iter().cloned());
    for row in all {
        let last = row.len().saturating_sub(1);
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let width = (widths[i] + 3).max(10);
                out.push_str(&" ".repeat(width - len(cell)));
            }
        }
        out.push('\n');
    }
    out
}

/// `service ls` PORTS as the docker CLI prints it: ingress ports only, consecutive ones merged
/// into ranges (`*:9090-9091->80-81/tcp`).
pub fn ls_ports(ports: &[PortConfig]) -> String {
    let mut sorted: Vec<&PortConfig> = ports.iter().collect();
    sorted.sort_by(|a, b| (&a.protocol, a.published_port).cmp(&(&b.protocol, b.published_port)));
    // (published start, end, target start, end, protocol)
    let mut out = Vec::new();
    let mut cur: Option<(i64, i64, i64, i64, &str)> = None;
    let show = |r: (i64, i64, i64, i64, &str)| {
        let span = |a: i64, b: i64| {
            if b > a {
                format!("{a}-{b}")
            } else {
                a.to_string()
            }
        };
        format!("*:{}->{}/{}", span(r.0, r.1), span(r.2, r.3), r.4)
    };
    for p in sorted.into_iter().filter(|p| p.publish_mode == "ingress") {
        let (pp, tp) = (i64::from(p.published_port), i64::from(p.target_port));
        // Go's unsigned arithmetic: a smaller port also starts a new range.
        let apart = |d: i64| !(0..=1).contains(&d);
        let extends = |r: &(i64, i64, i64, i64, &str)| {
            let overlaps = r.3 != r.2 && tp <= r.3;
            r.4 == p.protocol && !apart(pp - r.1) && !apart(tp - r.3) && !overlaps
        };
        match cur.as_mut() {
            Some(r) if extends(r) => {
                r.1 = pp;
                r.3 = tp;
            }
            _ => {
                if let Some(r) = cur.take() {
                    out.push(show(r));
                }
                cur = Some((pp, pp, tp, tp, p.protocol.as_str()));
            }
        }
    }
    if let Some(r) = cur {
        out.push(show(r));
    }
    out.join(", ")
}

/// What `service ps` needs to know about nodes: hostname and whether it is up.
#[derive(Debug, Clone, Default)]
pub struct NodeView {
    pub hostname: String,
    pub down: bool,
}

async fn node_views(client: &Client) -> Result<BTreeMap<String, NodeView>, ClientError> {
    let nodes: Vec<serde_json::Value> = client.get("/nodes").await?;
    Ok(nodes
        .iter()
        .map(|n| {
            (
                n["ID"].as_str().unwrap_or("").to_string(),
                NodeView {
                    hostname: n["Description"]["Hostname"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    down: n["Status"]["State"].as_str() == Some("down"),
                },
            )
        })
        .collect())
}

/// Docker's ERROR column: quoted, cut at 30 characters unless `no_trunc`.
fn error_column(err: &str, no_trunc: bool) -> String {
    if err.is_empty() {
        return String::new();
    }
    let text = if !no_trunc && err.chars().count() > 30 {
        format!("{}…", err.chars().take(29).collect::<String>())
    } else {
        err.to_string()
    };
    format!("\"{text}\"")
}

/// Natural order of names as the docker CLI sorts tasks: runs of digits compare as numbers,
/// and a digit sorts before any other character.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (da, db) = (a[i].is_ascii_digit(), b[j].is_ascii_digit());
        if da != db {
            return if da {
                Ordering::Less
            } else {
                Ordering::Greater
            };
        }
        if !da {
            if a[i] != b[j] {
                return a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
            continue;
        }
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        let (si, sj) = (i, j);
        while i < a.len() && a[i].is_ascii_digit() {
            i += 1;
        }
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let by_len = (i - si).cmp(&(j - sj));
        if by_len != Ordering::Equal {
            return by_len;
        }
        let by_digits = a[si..i].cmp(&b[sj..j]);
        if by_digits != Ordering::Equal {
            return by_digits;
        }
        if si != sj {
            return si.cmp(&sj);
        }
    }
    a.len().cmp(&b.len())
}

/// Rows of `service ps`: tasks by slot (node in global mode), newest first within one, older
/// ones named ` \_ NAME` as Docker shows history.
pub fn ps_rows(
    tasks: &[Task],
    names: &BTreeMap<String, String>,
    nodes: &BTreeMap<String, NodeView>,
    no_trunc: bool,
) -> Vec<Vec<String>> {
    let mut sorted: Vec<&Task> = tasks.iter().collect();
    let name_of = |t: &Task| {
        let service = names.get(&t.service_id).cloned().unwrap_or_default();
        if t.slot != 0 {
            format!("{service}.{}", t.slot)
        } else {
            format!("{service}.{}", t.node_id)
        }
    };
    // The docker CLI's order: names in natural order (my-web.2 before my-web.10, digits
    // before other characters), newest first within one name.
    sorted.sort_by(|a, b| {
        natural_cmp(&name_of(a), &name_of(b)).then_with(|| b.created_at.cmp(&a.created_at))
    });
    let mut prev = String::new();
    let mut rows = Vec::new();
    for t in sorted {
        let name = name_of(t);
        let mut shown = name.clone();
        if name == prev {
            shown = format!(" \\_ {shown}");
        }
        prev = name;
        let node = nodes
            .get(&t.node_id)
            .map(|n| n.hostname.clone())
            .unwrap_or_default();
        let ago = human_duration(since(&t.status.timestamp)).to_lowercase();
        rows.push(vec![
            short(&t.id, no_trunc),
            shown,
            image_column(&t.spec.container_spec.image, no_trunc),
            node,
            title(&t.desired_state),
            format!("{} {ago} ago", title(&t.status.state)),
            error_column(&t.status.err, no_trunc),
            String::new(),
        ]);
    }
    rows
}

// ---- convergence progress, as the docker CLI draws it -------------------------------------

/// Task states in the order the docker CLI numbers them for its progress bars.
fn state_number(state: &str) -> u64 {
    match state {
        "new" => 1,
        "allocated" => 2,
        "pending" => 3,
        "assigned" => 4,
        "accepted" => 5,
        "preparing" => 6,
        "ready" => 7,
        "starting" => 8,
        "running" => 9,
        "complete" => 10,
        "shutdown" => 11,
        "failed" => 12,
        "rejected" => 13,
        _ => 0,
    }
}

fn terminal_state(state: &str) -> bool {
    state_number(state) > 9
}

/// One progress message: an ID (`overall progress`, `1/3`, `verify`), its text, and a bar
/// (`current` of 9) for a task's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub id: String,
    pub action: String,
    pub bar: Option<u64>,
}

fn msg(id: &str, action: impl Into<String>) -> Progress {
    Progress {
        id: id.into(),
        action: action.into(),
        bar: None,
    }
}

/// The bar the docker CLI draws for `current` of 9 on a wide terminal.
fn bar(current: u64) -> String {
    let pct = ((current as f64 / 9.0 * 100.0) as usize / 2).min(50);
    format!("[{}>{}] ", "=".repeat(pct), " ".repeat(50 - pct))
}

/// Renders progress messages as the docker CLI's jsonmessage stream does: on a terminal each
/// ID keeps its line (the cursor moves back up to redraw it); elsewhere messages with a bar are
/// left out and the others printed one per line.
pub struct Renderer<W: Write> {
    out: W,
    tty: bool,
    lines: Vec<String>,
}

impl<W: Write> Renderer<W> {
    pub fn new(out: W, tty: bool) -> Self {
        Renderer {
            out,
            tty,
            lines: Vec::new(),
        }
    }

    pub fn write(&mut self, p: &Progress) {
        if !self.tty {
            if p.bar.is_none() {
                let _ = writeln!(self.out, "{}: {}", p.id, p.action);
            }
            return;
        }
        let line = match self.lines.iter().position(|l| *l == p.id) {
            Some(i) => i,
            None => {
                self.lines.push(p.id.clone());
                let _ = writeln!(self.out);
                self.lines.len() - 1
            }
        };
        let diff = self.lines.len() - line;
        let _ = write!(self.out, "\x1b[{diff}A\x1b[2K\r{}: {} ", p.id, p.action);
        if let Some(cur) = p.bar {
            let _ = write!(self.out, "{}", bar(cur));
        }
        let _ = write!(self.out, "\r\x1b[{diff}B");
        let _ = self.out.flush();
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// The docker CLI's progress updater for one service, fed each poll's service, up-to-date tasks
/// and nodes.
#[derive(Debug, Default)]
pub struct Updater {
    initialized: bool,
    done: bool,
    slot_map: BTreeMap<u64, u64>,
}

const MAX_PROGRESS_BARS: u64 = 20;

fn trunc_error(err: &str) -> String {
    let e = err.replace('\n', " ");
    if e.chars().count() > 50 {
        format!("{}…", e.chars().take(49).collect::<String>())
    } else {
        e
    }
}

fn task_progress(t: &Task, id: String) -> Option<Progress> {
    if !t.status.err.is_empty() {
        return Some(msg(&id, trunc_error(&t.status.err)));
    }
    if !terminal_state(&t.desired_state) && !terminal_state(&t.status.state) {
        return Some(Progress {
            id,
            action: format!("{:<9}", t.status.state),
            bar: Some(state_number(&t.status.state)),
        });
    }
    None
}

impl Updater {
    /// One poll: the messages to write and whether every task runs.
    pub fn update(
        &mut self,
        service: &Service,
        tasks: &[Task],
        nodes: &BTreeMap<String, NodeView>,
    ) -> (Vec<Progress>, bool) {
        let active =
            |t: &Task| t.node_id.is_empty() || nodes.get(&t.node_id).is_some_and(|n| !n.down);
        let mut out = Vec::new();
        let overall = |running: u64, total: u64| {
            msg(
                "overall progress",
                format!("{running} out of {total} tasks"),
            )
        };
        match service.spec.mode {
            ServiceMode::Replicated { replicas } => {
                if !self.initialized {
                    out.push(overall(0, replicas));
                    if replicas <= MAX_PROGRESS_BARS {
                        for i in 1..=replicas {
                            out.push(msg(&format!("{i}/{replicas}"), " "));
                        }
                    }
                    self.initialized = true;
                }
                // One task per slot: the lowest desired state, then the lowest observed one.
                let mut by_slot: BTreeMap<u64, &Task> = BTreeMap::new();
                for t in tasks {
                    if state_number(&t.desired_state) == 0 || state_number(&t.status.state) == 0 {
                        continue;
                    }
                    if let Some(e) = by_slot.get(&t.slot) {
                        let (ed, td) = (
                            state_number(&e.desired_state),
                            state_number(&t.desired_state),
                        );
                        if ed < td
                            || (ed == td
                                && state_number(&e.status.state) <= state_number(&t.status.state))
                        {
                            continue;
                        }
                    }
                    if !active(t) {
                        continue;
                    }
                    by_slot.insert(t.slot, t);
                }
                if self.done && by_slot.values().any(|t| t.status.state != "running") {
                    self.done = false;
                }
                let mut running = 0;
                for (slot, t) in &by_slot {
                    let next = self.slot_map.len() as u64 + 1;
                    let mapped = *self.slot_map.entry(*slot).or_insert(next);
                    if !terminal_state(&t.desired_state) && t.status.state == "running" {
                        running += 1;
                    }
                    if !self.done && replicas <= MAX_PROGRESS_BARS && mapped <= replicas {
                        out.extend(task_progress(t, format!("{mapped}/{replicas}")));
                    }
                }
                if !self.done {
                    out.push(overall(running, replicas));
                    if running == replicas {
                        self.done = true;
                    }
                }
                (out, running == replicas)
            }
            ServiceMode::Global {} => {
                let mut by_node: BTreeMap<&str, &Task> = BTreeMap::new();
                for t in tasks {
                    if state_number(&t.desired_state) == 0 || state_number(&t.status.state) == 0 {
                        continue;
                    }
                    if let Some(e) = by_node.get(t.node_id.as_str()) {
                        if state_number(&e.desired_state) <= state_number(&t.desired_state) {
                            continue;
                        }
                    }
                    by_node.insert(&t.node_id, t);
                }
                let count = by_node.len() as u64;
                if !self.initialized {
                    if count == 0 {
                        out.push(msg("overall progress", "waiting for new tasks"));
                        return (out, false);
                    }
                    out.push(overall(0, count));
                    self.initialized = true;
                }
                if self.done && by_node.values().any(|t| t.status.state != "running") {
                    self.done = false;
                }
                let mut running = 0;
                for t in by_node.values().filter(|t| active(t)) {
                    if !self.done && count <= MAX_PROGRESS_BARS {
                        out.extend(task_progress(t, short(&t.node_id, false)));
                    }
                    if !terminal_state(&t.desired_state) && t.status.state == "running" {
                        running += 1;
                    }
                }
                if !self.done {
                    out.push(overall(running, count));
                    if running == count {
                        self.done = true;
                    }
                }
                (out, running == count)
            }
        }
    }
}

fn tasks_query(service_id: &str, up_to_date: bool) -> String {
    let mut f = vec![("service".to_string(), service_id.to_string())];
    if up_to_date {
        f.push(("_up-to-date".into(), "true".into()));
    }
    format!("/tasks{}", filters_query(&f))
}

/// Waits, as the docker CLI does without `-d`, until every task of the service runs and has
/// kept running for [`VERIFY`]; draws the progress (nothing with `quiet`). Fails after
/// [`CONVERGE_WAIT`] naming what the tasks say.
pub async fn wait_converged(client: &Client, key: &str, quiet: bool) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let tty = stdout.is_terminal();
    let mut r = Renderer::new(stdout.lock(), tty && !quiet);
    let write = |r: &mut Renderer<_>, p: &Progress| {
        if !quiet {
            r.write(p);
        }
    };
    let mut updater = Updater::default();
    let mut converged_at: Option<Instant> = None;
    let wait = converge_wait();
    let deadline = Instant::now() + wait;
    loop {
        let service = get_service(client, key, false).await?;
        if let Some(at) = converged_at {
            if at.elapsed() >= VERIFY {
                write(&mut r, &msg("verify", format!("Service {key} converged")));
                return Ok(());
            }
        }
        let tasks: Vec<Task> = client.get(&tasks_query(&service.id, true)).await?;
        let nodes = node_views(client).await?;
        let (messages, converged) = updater.update(&service, &tasks, &nodes);
        for m in &messages {
            write(&mut r, m);
        }
        if converged {
            let at = *converged_at.get_or_insert_with(Instant::now);
            let left = VERIFY.saturating_sub(at.elapsed());
            write(
                &mut r,
                &msg(
                    "verify",
                    format!(
                        "Waiting {} seconds to verify that tasks are stable...",
                        left.as_secs() + 1
                    ),
                ),
            );
        } else {
            if converged_at.is_some() {
                write(&mut r, &msg("verify", "Detected task failure"));
            }
            converged_at = None;
            if Instant::now() >= deadline {
                let why: Vec<String> = tasks
                    .iter()
                    .filter(|t| !terminal_state(&t.desired_state))
                    .filter(|t| t.status.state != "running")
                    .map(|t| {
                        let text = if t.status.err.is_empty() {
                            &t.status.message
                        } else {
                            &t.status.err
                        };
                        format!("task {} is {}: {text}", short(&t.id, false), t.status.state)
                    })
                    .collect();
                anyhow::bail!(
                    "service {key} did not converge within {}s{}; it keeps converging in the background (see `service ps {key}`)",
                    wait.as_secs(),
                    if why.is_empty() {
                        String::from(" (no tasks yet)")
                    } else {
                        format!(" ({})", why.join("; "))
                    }
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---- commands ------------------------------------------------------------------------------

pub fn run(host: Option<&str>, cmd: ServiceCommand) -> anyhow::Result<()> {
    let client = client(host)?;
    block_on(run_async(&client, cmd))?
}

fn bail_joined(failed: Vec<String>) -> anyhow::Result<()> {
    if failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(failed.join("\n"))
    }
}

/// `service update`'s flags applied to a spec, as the docker CLI applies them.
pub fn apply_update(spec: &mut ServiceSpec, a: &UpdateArgs) -> Result<(), String> {
    if let Some(n) = a.replicas {
        match &mut spec.mode {
            ServiceMode::Replicated { replicas } => *replicas = n,
            ServiceMode::Global {} => {
                return Err(
                    "replicas can only be used with replicated or replicated-job mode".into(),
                )
            }
        }
    }
    let tt = &mut spec.task_template;
    if let Some(image) = &a.image {
        tt.container_spec.image = normalise_image(image);
    }
    if let Some(args) = &a.args {
        tt.container_spec.args = args.split_whitespace().map(str::to_string).collect();
    }
    let env_key = |e: &str| e.split('=').next().unwrap_or(e).to_string();
    for k in &a.env_rm {
        tt.container_spec.env.retain(|e| env_key(e) != env_key(k));
    }
    for e in &a.env_add {
        tt.container_spec.env.retain(|x| env_key(x) != env_key(e));
        tt.container_spec.env.push(e.clone());
    }
    tt.placement
        .constraints
        .retain(|c| !a.constraint_rm.contains(c));
    for c in &a.constraint_add {
        if !tt.placement.constraints.contains(c) {
            tt.placement.constraints.push(c.clone());
        }
    }
    for n in &a.network_add {
        let att = parse_network(n)?;
        if tt.networks.iter().any(|x| x.target == att.target) {
            return Err(format!(
                "service is already attached to network {}",
                att.target
            ));
        }
        tt.networks.push(att);
    }
    if a.force {
        tt.force_update += 1;
    }
    let ep = spec.endpoint_spec.get_or_insert_with(|| EndpointSpec {
        mode: "vip".into(),
        ports: vec![],
    });
    for rm in &a.publish_rm {
        let (target, proto) = match rm.split_once('/') {
            Some((t, p)) => (t, Some(p)),
            None => (rm.as_str(), None),
        };
        let target = target.rsplit(':').next().unwrap_or(target);
        let target: u16 = target.parse().map_err(|_| {
            format!("invalid argument {rm:?} for \"--publish-rm\" flag: expected TARGET[/PROTOCOL]")
        })?;
        ep.ports
            .retain(|p| !(p.target_port == target && proto.is_none_or(|pr| pr == p.protocol)));
    }
    for add in &a.publish_add {
        let p = parse_publish(add)?;
        ep.ports.retain(|q| {
            let same_target = q.target_port == p.target_port && q.protocol == p.protocol;
            let same_published = p.published_port != 0
                && q.published_port == p.published_port
                && q.protocol == p.protocol;
            !same_target && !same_published
        });
        ep.ports.push(p);
    }
    Ok(())
}

/// Pins the image to the digest the daemon gives for it, as the docker CLI does (built-in apps
/// have one; a program has none and stays as it is).
async fn pin_image(client: &Client, image: &str) -> String {
    if image.contains('@') {
        return image.to_string();
    }
    let route = format!("/distribution/{}/json", path_segment(image));
    match client.get::<serde_json::Value>(&route).await {
        Ok(d) => match d["Descriptor"]["digest"].as_str() {
            Some(digest) => format!("{image}@{digest}"),
            None => image.to_string(),
        },
        Err(_) => image.to_string(),
    }
}

async fn run_async(client: &Client, cmd: ServiceCommand) -> anyhow::Result<()> {
    match cmd {
        ServiceCommand::Create(a) => {
            let mut spec = create_spec(&a).map_err(anyhow::Error::msg)?;
            if !a.no_resolve_image {
                let image = &mut spec.task_template.container_spec.image;
                *image = pin_image(client, image).await;
            }
            let answer = client.post("/services/create", Some(&spec)).await?;
            let created: ServiceCreateResponse = serde_json::from_slice(&answer)?;
            println!("{}", created.id);
            if !a.detach {
                wait_converged(client, &created.id, a.quiet).await?;
            }
        }
        ServiceCommand::Ls { quiet, filter } => {
            let route = format!("/services{}", filters_query(&filter));
            let sep = if route.contains('?') { '&' } else { '?' };
            let list: Vec<Service> = client.get(&format!("{route}{sep}status=true")).await?;
            let rows = ls_rows(&list);
            if quiet {
                for r in rows {
                    println!("{}", r[0]);
                }
            } else {
                print!(
                    "{}",
                    docker_table(&["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"], &rows)
                );
            }
        }
        ServiceCommand::Ps {
            no_trunc,
            quiet,
            filter,
            services,
        } => {
            let mut tasks = Vec::new();
            let mut names = BTreeMap::new();
            let mut failed = Vec::new();
            for key in &services {
                let s = match get_service(client, key, false).await {
                    Ok(s) => s,
                    Err(ClientError::Api { status, .. }) if status == 404 => {
                        failed.push(format!("no such service: {key}"));
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                let mut f = filter.clone();
                f.push(("service".into(), s.id.clone()));
                let list: Vec<Task> = client.get(&format!("/tasks{}", filters_query(&f))).await?;
                names.insert(s.id.clone(), s.spec.name.clone());
                tasks.extend(list);
            }
            if !failed.is_empty() && tasks.is_empty() && names.is_empty() {
                return bail_joined(failed);
            }
            let nodes = node_views(client).await?;
            let rows = ps_rows(&tasks, &names, &nodes, no_trunc);
            if quiet {
                for r in rows {
                    println!("{}", r[0]);
                }
            } else {
                print!(
                    "{}",
                    docker_table(
                        &[
                            "ID",
                            "NAME",
                            "IMAGE",
                            "NODE",
                            "DESIRED STATE",
                            "CURRENT STATE",
                            "ERROR",
                            "PORTS"
                        ],
                        &rows
                    )
                );
            }
            bail_joined(failed)?;
        }
        ServiceCommand::Inspect {
            pretty,
            format,
            services,
        } => {
            let format = format.as_deref().map(Format::parse).transpose()?;
            let mut found = Vec::new();
            let mut failed = Vec::new();
            for key in &services {
                match get_service(client, key, true).await {
                    Ok(s) => found.push(s),
                    Err(ClientError::Api { status, .. }) if status == 404 => {
                        failed.push(format!("no such service: {key}"))
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if pretty {
                let networks: Vec<serde_json::Value> = client.get("/networks").await?;
                for s in &found {
                    print!("{}", pretty_text(s, &networks));
                }
            } else if let Some(f) = format {
                for s in &found {
                    println!("{}", f.render(s)?);
                }
            } else {
                println!("{}", json(&found)?);
            }
            if !failed.is_empty() {
                anyhow::bail!("Error: {}", failed.join("\n"));
            }
        }
        ServiceCommand::Update(a) => {
            let current = get_service(client, &a.service, false).await?;
            let mut spec = current.spec.clone();
            // Networks to remove, by name, ID or ID prefix, against the resolved IDs.
            for key in &a.network_rm {
                let id = match client
                    .get::<serde_json::Value>(&format!("/networks/{}", path_segment(key)))
                    .await
                {
                    Ok(n) => n["Id"].as_str().unwrap_or(key).to_string(),
                    Err(_) => key.clone(),
                };
                spec.task_template
                    .networks
                    .retain(|n| n.target != id && n.target != *key);
            }
            apply_update(&mut spec, &a).map_err(anyhow::Error::msg)?;
            if a.image.is_some() && !a.no_resolve_image {
                let image = &mut spec.task_template.container_spec.image;
                *image = pin_image(client, image).await;
            }
            let mut route = format!(
                "{}/update?version={}",
                service_route(&current.id),
                current.version.index
            );
            if a.rollback {
                route.push_str("&rollback=previous");
            }
            client.post(&route, Some(&spec)).await?;
            println!("{}", a.service);
            if !a.detach {
                wait_converged(client, &a.service, a.quiet).await?;
            }
        }
        ServiceCommand::Scale { detach, scales } => {
            let mut failed = Vec::new();
            let mut scaled = Vec::new();
            for arg in &scales {
                let Some((name, n)) = arg.split_once('=') else {
                    anyhow::bail!(
                        "invalid scale specifier '{arg}'.\nSee 'swarmnet service scale --help'."
                    );
                };
                let Ok(n) = n.parse::<u64>() else {
                    anyhow::bail!("invalid replicas value {n}: strconv.ParseUint: parsing {n:?}: invalid syntax");
                };
                match scale(client, name, n).await {
                    Ok(()) => {
                        println!("{name} scaled to {n}");
                        scaled.push(name.to_string());
                    }
                    Err(e) => failed.push(e.to_string()),
                }
            }
            if !detach {
                for name in &scaled {
                    wait_converged(client, name, false).await?;
                }
            }
            bail_joined(failed)?;
        }
        ServiceCommand::Rm { services } => {
            let mut failed = Vec::new();
            for key in services {
                match client.delete(&service_route(&key)).await {
                    Ok(()) => println!("{key}"),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            bail_joined(failed)?;
        }
        ServiceCommand::Logs {
            tail,
            no_task_ids,
            no_trunc,
            raw,
            timestamps,
            follow,
            service,
        } => {
            logs(
                client,
                &service,
                LogOptions {
                    tail,
                    no_task_ids,
                    no_trunc,
                    raw,
                    timestamps,
                    follow,
                },
            )
            .await?;
        }
    }
    Ok(())
}

async fn scale(client: &Client, name: &str, n: u64) -> anyhow::Result<()> {
    let s = get_service(client, name, false).await?;
    let mut spec = s.spec.clone();
    match &mut spec.mode {
        ServiceMode::Replicated { replicas } => *replicas = n,
        ServiceMode::Global {} => {
            anyhow::bail!("{name}: scale can only be used with replicated or replicated-job mode")
        }
    }
    client
        .post(
            &format!(
                "{}/update?version={}",
                service_route(&s.id),
                s.version.index
            ),
            Some(&spec),
        )
        .await?;
    Ok(())
}

struct LogOptions {
    tail: String,
    no_task_ids: bool,
    no_trunc: bool,
    raw: bool,
    timestamps: bool,
    follow: bool,
}

/// Splits Docker's multiplexed stream into (stream, payload) frames.
pub fn frames(mut body: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while body.len() >= 8 {
        let len = u32::from_be_bytes([body[4], body[5], body[6], body[7]]) as usize;
        let end = (8 + len).min(body.len());
        out.push((body[0], &body[8..end]));
        body = &body[end..];
    }
    out
}

/// `k=v,k=v` details of a log line.
fn details(text: &str) -> BTreeMap<String, String> {
    text.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn digits(n: u64) -> usize {
    n.max(1).to_string().len()
}

async fn logs(client: &Client, key: &str, o: LogOptions) -> anyhow::Result<()> {
    // A service, or else one task (by ID), as the docker CLI looks them up.
    let (service, base) = match get_service(client, key, false).await {
        Ok(s) => {
            let base = service_route(&s.id);
            (s, base)
        }
        Err(ClientError::Api { status, .. }) if status == 404 => {
            let task: Task = client
                .get(&format!("/tasks/{}", path_segment(key)))
                .await
                .map_err(|_| anyhow::anyhow!("no such task or service: {key}"))?;
            let s = get_service(client, &task.service_id, false).await?;
            (s, format!("/tasks/{}", path_segment(&task.id)))
        }
        Err(e) => return Err(e.into()),
    };
    let padding = match service.spec.mode {
        ServiceMode::Replicated { replicas } => digits(replicas),
        ServiceMode::Global {} => 1,
    };
    let mut tasks: BTreeMap<String, Option<Task>> = BTreeMap::new();
    let mut nodes: BTreeMap<String, String> = BTreeMap::new();
    // With --follow, the kept lines are asked for again every second and the new ones printed
    // (the daemon keeps the last lines of each task; it does not stream them): lines are told
    // apart by task, timestamp and text, counted, so repeated lines print as often as they came.
    let mut seen: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    let mut tail = o.tail.clone();
    loop {
        let route = format!(
            "{base}/logs?details=1&stdout=1&stderr=1&tail={}&timestamps=1",
            crate::api::client::query_value(&tail),
        );
        let (_, body) = client.send(Method::GET, &versioned(&route), None).await?;
        let mut now: BTreeMap<(String, String, String), usize> = BTreeMap::new();
        let mut out = Vec::new();
        let mut err = Vec::new();
        for (stream, payload) in frames(&body) {
            let text = String::from_utf8_lossy(payload);
            let mut parts = text.splitn(3, ' ');
            let (Some(ts), Some(ctx), Some(message)) = (parts.next(), parts.next(), parts.next())
            else {
                anyhow::bail!("invalid context in log message: {text}");
            };
            let d = details(ctx);
            let task_id = d
                .get("com.docker.swarm.task.id")
                .cloned()
                .unwrap_or_default();
            let key = (task_id.clone(), ts.to_string(), message.to_string());
            let count = now.entry(key.clone()).or_default();
            *count += 1;
            if *count <= seen.get(&key).copied().unwrap_or(0) {
                continue;
            }
            let mut line = String::new();
            if o.timestamps {
                line.push_str(ts);
                line.push(' ');
            }
            if !o.raw {
                let node_id = d
                    .get("com.docker.swarm.node.id")
                    .cloned()
                    .unwrap_or_default();
                if !tasks.contains_key(&task_id) {
                    let t = client
                        .get::<Task>(&format!("/tasks/{}", path_segment(&task_id)))
                        .await
                        .ok();
                    tasks.insert(task_id.clone(), t);
                }
                if !nodes.contains_key(&node_id) {
                    let host = client
                        .get::<serde_json::Value>(&format!("/nodes/{}", path_segment(&node_id)))
                        .await
                        .ok()
                        .and_then(|n| n["Description"]["Hostname"].as_str().map(str::to_string))
                        .unwrap_or_else(|| node_id.clone());
                    nodes.insert(node_id.clone(), host);
                }
                let slot = tasks
                    .get(&task_id)
                    .and_then(|t| t.as_ref())
                    .map(|t| t.slot)
                    .unwrap_or(0);
                let id = short(&task_id, o.no_trunc);
                let name = if o.no_task_ids {
                    format!("{}.{slot}", service.spec.name)
                } else {
                    format!("{}.{slot}.{id}", service.spec.name)
                };
                let pad = " ".repeat(padding.saturating_sub(digits(slot)));
                line.push_str(&format!("{name}@{}{pad}    | ", nodes[&node_id]));
            }
            line.push_str(message);
            if stream == 2 {
                err.extend_from_slice(line.as_bytes());
            } else {
                out.extend_from_slice(line.as_bytes());
            }
        }
        let _ = std::io::stdout().write_all(&out);
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().write_all(&err);
        if !o.follow {
            return Ok(());
        }
        seen = now;
        tail = "all".into();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `service inspect --pretty`, byte for byte in the docker CLI's layout.
pub fn pretty_text(s: &Service, networks: &[serde_json::Value]) -> String {
    let mut o = String::from("\n");
    o.push_str(&format!("ID:\t\t{}\nName:\t\t{}\n", s.id, s.spec.name));
    if !s.spec.labels.is_empty() {
        o.push_str("Labels:\n");
        for (k, v) in &s.spec.labels {
            o.push_str(&format!(" {k}={v}\n"));
        }
    }
    match s.spec.mode {
        ServiceMode::Replicated { replicas } => o.push_str(&format!(
            "Service Mode:\tReplicated\n Replicas:\t{replicas}\n"
        )),
        ServiceMode::Global {} => o.push_str("Service Mode:\tGlobal\n"),
    }
    let tt = &s.spec.task_template;
    o.push_str("Placement:\n");
    if !tt.placement.constraints.is_empty() {
        o.push_str(&format!(
            " Constraints:\t[{}]\n",
            tt.placement.constraints.join(" ")
        ));
    }
    let secs = |ns: u64| {
        let d = Duration::from_nanos(ns);
        if d.subsec_nanos() == 0 {
            format!("{}s", d.as_secs())
        } else {
            format!("{d:?}")
        }
    };
    for (title_, cfg, order) in [
        ("UpdateConfig", &s.spec.update_config, "Update order:     "),
        (
            "RollbackConfig",
            &s.spec.rollback_config,
            "Rollback order:   ",
        ),
    ] {
        if let Some(c) = cfg {
            o.push_str(&format!("{title_}:\n Parallelism:\t{}\n", c.parallelism));
            if c.delay != 0 {
                o.push_str(&format!(" Delay:\t\t{}\n", secs(c.delay)));
            }
            o.push_str(&format!(
                " On failure:\t{}\n Monitoring Period: {}\n Max failure ratio: {}\n {order} {}\n",
                c.failure_action,
                secs(c.monitor),
                c.max_failure_ratio,
                c.order
            ));
        }
    }
    o.push_str(&format!(
        "ContainerSpec:\n Image:\t\t{}\n",
        tt.container_spec.image
    ));
    if !tt.container_spec.args.is_empty() {
        o.push_str(&format!(
            " Args:\t\t{} \n",
            tt.container_spec.args.join(" ")
        ));
    }
    if !tt.container_spec.env.is_empty() {
        o.push_str(&format!(" Env:\t\t{} \n", tt.container_spec.env.join(" ")));
    }
    o.push_str(&format!(
        " Init:\t\t{}\nResources:\n",
        tt.container_spec.init
    ));
    if !tt.networks.is_empty() {
        o.push_str("Networks:");
        for n in &tt.networks {
            let name = networks
                .iter()
                .find(|x| x["Id"].as_str() == Some(n.target.as_str()))
                .and_then(|x| x["Name"].as_str())
                .unwrap_or(&n.target);
            o.push_str(&format!(" {name}"));
        }
        o.push_str(" \n");
    }
    o.push_str(&format!("Endpoint Mode:\t{}\n", s.endpoint.spec.mode));
    if !s.endpoint.ports.is_empty() {
        o.push_str("Ports:\n");
        for p in &s.endpoint.ports {
            o.push_str(&format!(
                " PublishedPort = {}\n  Protocol = {}\n  TargetPort = {}\n  PublishMode = {} \n",
                p.published_port, p.protocol, p.target_port, p.publish_mode
            ));
        }
    }
    o.push('\n');
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(slot: u64, state: &str, desired: &str, created: &str) -> Task {
        serde_json::from_value(serde_json::json!({
            "ID": format!("t{slot}{state}"), "Version": {"Index": 1}, "CreatedAt": created,
            "UpdatedAt": created, "ServiceID": "s", "Slot": slot, "NodeID": "n1",
            "Status": {"Timestamp": created, "State": state, "Message": ""},
            "DesiredState": desired, "Spec": {"ContainerSpec": {"Image": "swarmnet/whoami:latest@sha256:abc"}}
        }))
        .unwrap()
    }

    fn service(replicas: u64) -> Service {
        serde_json::from_value(serde_json::json!({
            "ID": "s", "Version": {"Index": 1}, "CreatedAt": "", "UpdatedAt": "",
            "Spec": {"Name": "my-web", "Mode": {"Replicated": {"Replicas": replicas}}},
            "Endpoint": {}
        }))
        .unwrap()
    }

    #[test]
    fn durations_as_go_reads_them() {
        assert_eq!(parse_duration("5s").unwrap(), 5_000_000_000);
        assert_eq!(parse_duration("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(parse_duration("250ms").unwrap(), 250_000_000);
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn images_get_latest_as_the_docker_cli_gives_them() {
        assert_eq!(normalise_image("swarmnet/whoami"), "swarmnet/whoami:latest");
        assert_eq!(normalise_image("swarmnet/whoami:1"), "swarmnet/whoami:1");
        assert_eq!(normalise_image("/bin/sh"), "/bin/sh");
        assert_eq!(normalise_image("reg:5000/x"), "reg:5000/x:latest");
    }

    #[test]
    fn ps_shows_history_under_its_slot_newest_first() {
        let tasks = [
            task(1, "shutdown", "shutdown", "2026-12-03T16:44:00Z"),
            task(1, "running", "running", "2026-12-03T16:44:10Z"),
            task(2, "running", "running", "2026-12-03T16:44:05Z"),
        ];
        let names = BTreeMap::from([("s".to_string(), "my-web".to_string())]);
        let nodes = BTreeMap::from([(
            "n1".to_string(),
            NodeView {
                hostname: "vm".into(),
                down: false,
            },
        )]);
        let rows = ps_rows(&tasks, &names, &nodes, false);
        let got: Vec<(&str, &str, &str, &str)> = rows
            .iter()
            .map(|r| (r[1].as_str(), r[2].as_str(), r[3].as_str(), r[4].as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("my-web.1", "swarmnet/whoami:latest", "vm", "Running"),
                (" \\_ my-web.1", "swarmnet/whoami:latest", "vm", "Shutdown"),
                ("my-web.2", "swarmnet/whoami:latest", "vm", "Running"),
            ]
        );
        assert!(rows[0][5].starts_with("Running "), "{}", rows[0][5]);
        assert!(rows[0][5].ends_with(" ago"), "{}", rows[0][5]);
        assert_eq!(
            error_column(
                "no suitable node (scheduling constraints not satisfied)",
                false
            ),
            "\"no suitable node (scheduling …\""
        );
    }

    #[test]
    fn progress_is_dockers_without_a_terminal() {
        let nodes = BTreeMap::from([("n1".to_string(), NodeView::default())]);
        let mut u = Updater::default();
        let mut r = Renderer::new(Vec::new(), false);
        let (m, done) = u.update(&service(2), &[], &nodes);
        assert!(!done);
        for p in &m {
            r.write(p);
        }
        let tasks = [
            task(1, "running", "running", "2026-12-03T16:44:00Z"),
            task(2, "starting", "running", "2026-12-03T16:44:00Z"),
        ];
        let (m, done) = u.update(&service(2), &tasks, &nodes);
        assert!(!done);
        for p in &m {
            r.write(p);
        }
        let tasks = [
            task(1, "running", "running", "2026-12-03T16:44:00Z"),
            task(2, "running", "running", "2026-12-03T16:44:00Z"),
        ];
        let (m, done) = u.update(&service(2), &tasks, &nodes);
        assert!(done);
        for p in &m {
            r.write(p);
        }
        let text = String::from_utf8(r.into_inner()).unwrap();
        assert_eq!(
            text,
            "overall progress: 0 out of 2 tasks\n1/2:  \n2/2:  \noverall progress: 0 out of 2 tasks\noverall progress: 1 out of 2 tasks\noverall progress: 2 out of 2 tasks\n"
        );
        // On a terminal each line keeps its place and running tasks get a full bar.
        let mut u = Updater::default();
        let mut r = Renderer::new(Vec::new(), true);
        let (m, _) = u.update(&service(2), &tasks, &nodes);
        for p in &m {
            r.write(p);
        }
        let text = String::from_utf8(r.into_inner()).unwrap();
        assert!(
            text.contains("1/2: running   [==================================================>] ")
        );
    }

    #[test]
    fn ls_ports_merge_ranges_as_the_docker_cli() {
        let ports: Vec<PortConfig> = [
            "9091:81",
            "9090:80",
            "53:53/udp",
            "mode=host,published=7000,target=70",
            "8000:80",
        ]
        .iter()
        .map(|p| parse_publish(p).unwrap())
        .collect();
        assert_eq!(
            ls_ports(&ports),
            "*:8000->80/tcp, *:9090-9091->80-81/tcp, *:53->53/udp"
        );
    }

    #[test]
    fn task_names_sort_naturally_as_the_docker_cli() {
        use std::cmp::Ordering::*;
        assert_eq!(natural_cmp("my-web.2", "my-web.10"), Less);
        assert_eq!(natural_cmp("g2.abc", "g.abc"), Less);
        assert_eq!(natural_cmp("a.1", "a.1"), Equal);
        assert_eq!(natural_cmp("a.01", "a.1"), Greater);
        assert_eq!(natural_cmp("r.1", "g.1"), Greater);
    }

    #[test]
    fn multiplexed_frames_split() {
        let body = [
            &[1u8, 0, 0, 0, 0, 0, 0, 3][..],
            b"ab\n",
            &[2u8, 0, 0, 0, 0, 0, 0, 2][..],
            b"c\n",
        ]
        .concat();
        assert_eq!(frames(&body), [(1, &b"ab\n"[..]), (2, &b"c\n"[..])]);
    }
}
