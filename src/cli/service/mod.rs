//! `swarmnet service ...`: create, ls, ps, inspect, update, scale, rm, logs, with Docker 20.10's
//! flags, columns, texts and convergence progress, over the same routes the docker CLI uses.
//! The flags and commands are here; [`format`] lays out `ls`, `ps` and `inspect --pretty` as the
//! docker CLI does, [`progress`] draws the convergence of create/update/scale, [`logs`] reads
//! Docker's log frames.

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

mod format;
mod logs;
mod progress;

pub use format::{docker_table, ls_ports, ls_rows, natural_cmp, pretty_text, ps_rows, NodeView};
pub use logs::frames;
pub use progress::{wait_converged, Progress, Renderer, Updater, CONVERGE_WAIT, VERIFY};

use format::{node_views, short};
use logs::{show_logs, LogOptions};

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
    /// Endpoint mode (vip or dnsrr).
    #[arg(long = "endpoint-mode")]
    endpoint_mode: Option<String>,
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
    /// Show the backends of services' VIPs as this node's load balancer sees them: each
    /// running task, and the connections this node's tasks made through the VIP to it.
    Backends {
        /// Only these services (all by default).
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
    if let Some(mode) = &a.endpoint_mode {
        if !matches!(mode.as_str(), "vip" | "dnsrr") {
            return Err(format!(
                "invalid argument \"{mode}\" for \"--endpoint-mode\" flag: expected vip or dnsrr"
            ));
        }
        ep.mode = mode.clone();
    }
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
        ServiceCommand::Backends { services } => {
            let rows: Vec<crate::api::BalancerRow> = client.get("/swarmnet/balancer").await?;
            let rows: Vec<Vec<String>> = rows
                .into_iter()
                .filter(|r| services.is_empty() || services.contains(&r.service))
                .map(|r| {
                    let task = if r.task.is_empty() {
                        "(gone, draining)".to_string()
                    } else {
                        r.task
                    };
                    vec![
                        r.service,
                        r.network,
                        r.vip,
                        task,
                        r.address,
                        r.active.to_string(),
                        r.connections.to_string(),
                        r.bytes.to_string(),
                    ]
                })
                .collect();
            print!(
                "{}",
                docker_table(
                    &[
                        "SERVICE",
                        "NETWORK",
                        "VIP",
                        "TASK",
                        "ADDRESS",
                        "ACTIVE",
                        "CONNECTIONS",
                        "BYTES"
                    ],
                    &rows
                )
            );
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
            show_logs(
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(super) fn task(slot: u64, state: &str, desired: &str, created: &str) -> Task {
        serde_json::from_value(serde_json::json!({
            "ID": format!("t{slot}{state}"), "Version": {"Index": 1}, "CreatedAt": created,
            "UpdatedAt": created, "ServiceID": "s", "Slot": slot, "NodeID": "n1",
            "Status": {"Timestamp": created, "State": state, "Message": ""},
            "DesiredState": desired, "Spec": {"ContainerSpec": {"Image": "swarmnet/whoami:latest@sha256:abc"}}
        }))
        .unwrap()
    }

    pub(super) fn service(replicas: u64) -> Service {
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
}
