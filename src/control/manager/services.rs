//! Services on the leader: create and update (checked as swarmkit checks a spec, networks
//! resolved to IDs, a VIP per network in vip mode, published ports allocated), lookup by ID,
//! name or ID prefix as Docker resolves them, removal, and the Docker JSON of a service.
//! The checks and allocations are pure ([`plan`]); the manager commits what they give through
//! Raft, where the state machine refuses a taken name or a stale version.

use std::collections::BTreeSet;

use super::{now_rfc3339, Manager};
use crate::api::docker::ObjectVersion;
use crate::api::service::{
    Endpoint, EndpointSpec, PortConfig, RestartPolicy, Service, ServiceCreateResponse, ServiceMode,
    ServiceSpec, UpdateConfig, VirtualIp,
};
use crate::api::ApiError;
use crate::control::network::NetworkRecord;
use crate::control::raft::Command;
use crate::control::scheduler::Constraint;
use crate::control::service::{Addresses, ServiceRecord, TaskAddress, TaskRecord};
use crate::control::token::new_id;

/// Published ports the managers hand out when a spec asks for port 0, as swarmkit.
pub const DYNAMIC_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

fn invalid(desc: impl std::fmt::Display) -> ApiError {
    ApiError::invalid(format!("rpc error: code = InvalidArgument desc = {desc}"))
}

/// Finds `key` among `services` as Docker does: full ID, then exact name, then a unique ID
/// prefix.
pub fn find<'a>(services: &'a [ServiceRecord], key: &str) -> Result<&'a ServiceRecord, ApiError> {
    if let Some(s) = services.iter().find(|s| s.id == key) {
        return Ok(s);
    }
    if let Some(s) = services.iter().find(|s| s.spec.name == key) {
        return Ok(s);
    }
    let by_prefix: Vec<_> = if key.is_empty() {
        Vec::new()
    } else {
        services.iter().filter(|s| s.id.starts_with(key)).collect()
    };
    match by_prefix.len() {
        1 => Ok(by_prefix[0]),
        0 => Err(ApiError::not_found(format!("service {key} not found"))),
        n => Err(ApiError::invalid(format!(
            "service {key} is ambiguous ({n} matches found)"
        ))),
    }
}

/// Docker's check of a service name (swarmkit's `validateAnnotations`).
fn check_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() {
        return Err(invalid("meta: name must be provided"));
    }
    // ^[a-zA-Z0-9](?:[-_]*[A-Za-z0-9]+)*$: alphanumerics, inner runs of - and _.
    let b = name.as_bytes();
    let valid = b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_');
    if !valid {
        return Err(invalid("name must be valid as a DNS name component"));
    }
    if name.len() > 63 {
        return Err(invalid("name must be 63 characters or fewer"));
    }
    Ok(())
}

/// A name for a service created without one, in Docker's `adjective_surname` form.
pub fn random_name(taken: &[ServiceRecord]) -> String {
    const LEFT: [&str; 16] = [
        "admiring", "brave", "clever", "dreamy", "eager", "festive", "gifted", "happy", "jolly",
        "keen", "lucid", "modest", "nifty", "quirky", "serene", "vibrant",
    ];
    const RIGHT: [&str; 16] = [
        "babbage", "curie", "darwin", "euclid", "fermat", "galois", "hopper", "kepler", "lovelace",
        "noether", "pascal", "ritchie", "shannon", "turing", "wiles", "wozniak",
    ];
    use rand::Rng;
    let mut rng = rand::thread_rng();
    loop {
        let name = format!(
            "{}_{}",
            LEFT[rng.gen_range(0..LEFT.len())],
            RIGHT[rng.gen_range(0..RIGHT.len())]
        );
        if !taken.iter().any(|s| s.spec.name == name) {
            return name;
        }
    }
}

/// The endpoint mode of a spec (`vip` unless it says `dnsrr`).
pub fn endpoint_mode(spec: &ServiceSpec) -> &str {
    match spec.endpoint_spec.as_ref().map(|e| e.mode.as_str()) {
        Some("") | None => "vip",
        Some(m) => m,
    }
}

/// What a checked spec gets: its normalised form, its networks' IDs, VIPs and ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub spec: ServiceSpec,
    pub networks: Vec<String>,
    pub vips: Vec<TaskAddress>,
    pub ports: Vec<PortConfig>,
}

/// Checks `spec` as swarmkit does and allocates what it needs. `old` is the service being
/// updated (its VIPs and dynamic ports are kept), `services` every service (`old` among them),
/// `tasks` every task (their addresses are taken).
pub fn plan(
    mut spec: ServiceSpec,
    old: Option<&ServiceRecord>,
    networks: &[NetworkRecord],
    services: &[ServiceRecord],
    tasks: &[TaskRecord],
) -> Result<Plan, ApiError> {
    check_name(&spec.name)?;
    let tt = &mut spec.task_template;
    if tt.container_spec.image.is_empty() {
        return Err(invalid("ContainerSpec: image reference must be provided"));
    }
    // dockerd stores these defaults and shows them; the docker CLI sends them back on update.
    tt.container_spec
        .isolation
        .get_or_insert_with(|| "default".into());
    tt.runtime.get_or_insert_with(|| "container".into());
    if let Some(rp) = &tt.restart_policy {
        if !matches!(rp.condition.as_str(), "" | "none" | "on-failure" | "any") {
            return Err(invalid(format!(
                "invalid RestartCondition {:?}: expected none, on-failure or any",
                rp.condition
            )));
        }
    }
    for c in &tt.placement.constraints {
        Constraint::parse(c).map_err(invalid)?;
    }
    if let Some(ep) = spec.endpoint_spec.as_mut() {
        if !matches!(ep.mode.as_str(), "" | "vip" | "dnsrr") {
            return Err(invalid(format!(
                "EndpointSpec: invalid endpoint mode {:?}: expected vip or dnsrr",
                ep.mode
            )));
        }
        let mut seen = BTreeSet::new();
        for p in ep.ports.iter_mut() {
            if p.protocol.is_empty() {
                p.protocol = "tcp".into();
            }
            if p.publish_mode.is_empty() {
                p.publish_mode = "ingress".into();
            }
            if !matches!(p.protocol.as_str(), "tcp" | "udp") {
                return Err(invalid(format!(
                    "EndpointSpec: protocol {:?} is not carried by swarmnet (tcp and udp are)",
                    p.protocol
                )));
            }
            if !matches!(p.publish_mode.as_str(), "ingress" | "host") {
                return Err(invalid(format!(
                    "EndpointSpec: invalid publish mode {:?}: expected ingress or host",
                    p.publish_mode
                )));
            }
            if !p.proxy_protocol.is_empty()
                && (p.proxy_protocol != "v2" || p.protocol != "tcp" || p.publish_mode != "ingress")
            {
                return Err(invalid(format!(
                    "EndpointSpec: proxy-protocol {:?} on port {}/{} ({} mode): the routing mesh sends PROXY protocol v2 (proxy-protocol=v2) on tcp ports in ingress mode only",
                    p.proxy_protocol, p.published_port, p.protocol, p.publish_mode
                )));
            }
            if p.target_port == 0 {
                return Err(invalid(
                    "EndpointSpec: a published port needs a target port",
                ));
            }
            if ep.mode == "dnsrr" && p.publish_mode == "ingress" {
                return Err(invalid(
                    "EndpointSpec: port published with ingress mode can't be used with dnsrr mode",
                ));
            }
            if p.published_port != 0 && !seen.insert((p.published_port, p.protocol.clone())) {
                return Err(invalid("EndpointSpec: duplicate published ports provided"));
            }
        }
    }

    // Networks: by ID, name or ID prefix, to IDs; never ingress, never twice.
    let mut ids: Vec<String> = Vec::new();
    for att in spec.task_template.networks.iter_mut() {
        let net = super::networks::find(networks, &att.target)?;
        if net.ingress {
            return Err(invalid(format!(
                "Service cannot be explicitly attached to the ingress network {:?}",
                net.name
            )));
        }
        if ids.contains(&net.id) {
            return Err(invalid(format!(
                "service cannot be attached to network {} more than once",
                net.name
            )));
        }
        att.target = net.id.clone();
        ids.push(net.id.clone());
    }

    let ports_spec: Vec<PortConfig> = spec
        .endpoint_spec
        .as_ref()
        .map(|e| e.ports.clone())
        .unwrap_or_default();
    let ports = allocate_ports(&spec.name, &ports_spec, old, services)?;

    // VIPs: one per network in vip mode, and one on ingress when a port goes through it.
    let mut vips = Vec::new();
    let mut on_ingress = None;
    if endpoint_mode(&spec) == "vip" {
        let others: Vec<&ServiceRecord> = services.iter().collect();
        let mut addresses = Addresses::new(networks, others, tasks);
        let mut wanted: Vec<&NetworkRecord> = Vec::new();
        if ports.iter().any(|p| p.publish_mode == "ingress") {
            let ingress = networks.iter().find(|n| n.ingress).ok_or_else(|| {
                ApiError::precondition(
                    "rpc error: code = FailedPrecondition desc = service needs ingress network, but no ingress network is present",
                )
            })?;
            wanted.push(ingress);
            on_ingress = Some(ingress.id.clone());
        }
        for id in &ids {
            if let Some(n) = networks.iter().find(|n| &n.id == id) {
                wanted.push(n);
            }
        }
        for net in wanted {
            let kept = old.and_then(|o| o.vips.iter().find(|v| v.network_id == net.id));
            match kept {
                Some(v) => vips.push(v.clone()),
                None => vips.push(
                    addresses
                        .allocate(net)
                        .map_err(|e| ApiError::precondition(e.to_string()))?,
                ),
            }
        }
    }
    // A port in host mode is served by the node's sandbox too, straight to the local task,
    // so those tasks are on ingress as well (when there is one).
    if on_ingress.is_none() && ports.iter().any(|p| p.publish_mode == "host") {
        on_ingress = networks.iter().find(|n| n.ingress).map(|n| n.id.clone());
    }
    // The tasks are on ingress too (last: their other networks keep eth0, eth1, ... in the
    // spec's order), where the routing mesh reaches them.
    ids.extend(on_ingress);
    Ok(Plan {
        spec,
        networks: ids,
        vips,
        ports,
    })
}

/// Published ports as allocated: a 0 in ingress mode gets the one it had before (update) or
/// the first free one of [`DYNAMIC_PORTS`]; a port another service publishes is refused with
/// swarmkit's words.
fn allocate_ports(
    name: &str,
    wanted: &[PortConfig],
    old: Option<&ServiceRecord>,
    services: &[ServiceRecord],
) -> Result<Vec<PortConfig>, ApiError> {
    let own_id = old.map(|o| o.id.as_str());
    let others: Vec<&ServiceRecord> = services
        .iter()
        .filter(|s| Some(s.id.as_str()) != own_id && s.spec.name != name)
        .collect();
    for p in wanted.iter().filter(|p| p.published_port != 0) {
        for s in &others {
            for q in &s.ports {
                if q.published_port != p.published_port || q.protocol != p.protocol {
                    continue;
                }
                if q.publish_mode == "ingress" {
                    return Err(invalid(format!(
                        "port '{}' is already in use by service '{}' ({}) as an ingress port",
                        p.published_port, s.spec.name, s.id
                    )));
                }
                if p.publish_mode == "ingress" {
                    return Err(invalid(format!(
                        "port '{}' is already in use by service '{}' ({}) as a host-published port",
                        p.published_port, s.spec.name, s.id
                    )));
                }
            }
        }
    }
    let mut taken: BTreeSet<(u16, String)> = others
        .iter()
        .flat_map(|s| s.ports.iter())
        .chain(wanted.iter())
        .filter(|p| p.published_port != 0)
        .map(|p| (p.published_port, p.protocol.clone()))
        .collect();
    let mut out = Vec::new();
    for p in wanted {
        let mut p = p.clone();
        if p.published_port == 0 && p.publish_mode == "ingress" {
            let before = old.and_then(|o| {
                o.ports.iter().find(|q| {
                    q.target_port == p.target_port
                        && q.protocol == p.protocol
                        && q.publish_mode == p.publish_mode
                        && DYNAMIC_PORTS.contains(&q.published_port)
                        && !taken.contains(&(q.published_port, q.protocol.clone()))
                })
            });
            let port = match before {
                Some(q) => q.published_port,
                None => DYNAMIC_PORTS
                    .clone()
                    .find(|n| !taken.contains(&(*n, p.protocol.clone())))
                    .ok_or_else(|| {
                        ApiError::precondition(
                            "rpc error: code = ResourceExhausted desc = no dynamic ports left in 30000-32767",
                        )
                    })?,
            };
            taken.insert((port, p.protocol.clone()));
            p.published_port = port;
        }
        out.push(p);
    }
    Ok(out)
}

/// Docker's JSON of a service; `insert_defaults` fills in what dockerd shows for
/// `insertDefaults=true` (`service inspect`).
pub fn to_docker(s: &ServiceRecord, insert_defaults: bool) -> Service {
    let mut spec = s.spec.clone();
    if insert_defaults {
        with_defaults(&mut spec);
    }
    let endpoint_spec = s.spec.endpoint_spec.clone().unwrap_or(EndpointSpec {
        mode: "vip".into(),
        ports: vec![],
    });
    Service {
        id: s.id.clone(),
        version: ObjectVersion { index: s.version },
        created_at: s.created_at.clone(),
        updated_at: s.updated_at.clone(),
        spec,
        previous_spec: s.previous_spec.clone(),
        endpoint: Endpoint {
            spec: endpoint_spec,
            ports: s.ports.clone(),
            virtual_ips: s
                .vips
                .iter()
                .map(|v| VirtualIp {
                    network_id: v.network_id.clone(),
                    addr: v.addr.to_string(),
                })
                .collect(),
        },
        service_status: None,
    }
}

/// The defaults dockerd shows with `insertDefaults=true` (13-svc-inspect.md).
fn with_defaults(spec: &mut ServiceSpec) {
    let cs = &mut spec.task_template.container_spec;
    cs.stop_grace_period.get_or_insert(10_000_000_000);
    let rp = spec
        .task_template
        .restart_policy
        .get_or_insert_with(|| RestartPolicy {
            condition: "any".into(),
            delay: 5_000_000_000,
            max_attempts: 0,
        });
    if rp.condition.is_empty() {
        rp.condition = "any".into();
    }
    let update = || UpdateConfig {
        parallelism: 1,
        failure_action: "pause".into(),
        monitor: 5_000_000_000,
        order: "stop-first".into(),
        ..Default::default()
    };
    spec.update_config.get_or_insert_with(update);
    spec.rollback_config.get_or_insert_with(update);
    spec.endpoint_spec.get_or_insert_with(|| EndpointSpec {
        mode: "vip".into(),
        ports: vec![],
    });
}

/// Replicas a service asks for (global mode: none by itself).
pub fn replicas(spec: &ServiceSpec) -> Option<u64> {
    match spec.mode {
        ServiceMode::Replicated { replicas } => Some(replicas),
        ServiceMode::Global {} => None,
    }
}

impl Manager {
    /// Every service, as this manager's store has them.
    pub fn services(&self) -> Result<Vec<ServiceRecord>, ApiError> {
        Ok(self.store.services()?)
    }

    /// Leader only, with the write lock held: checks, allocates and commits a new service.
    pub(super) async fn create_service(
        &self,
        mut spec: ServiceSpec,
    ) -> Result<ServiceCreateResponse, ApiError> {
        let services = self.store.services()?;
        if spec.name.is_empty() {
            spec.name = random_name(&services);
        }
        if let Some(s) = services.iter().find(|s| s.spec.name == spec.name) {
            return Err(ApiError::conflict(format!(
                "rpc error: code = AlreadyExists desc = name conflicts with an existing object: service {} already exists",
                s.spec.name
            )));
        }
        let networks = self.store.networks()?;
        let tasks = self.store.tasks()?;
        let plan = plan(spec, None, &networks, &services, &tasks)?;
        let now = now_rfc3339();
        let record = ServiceRecord {
            id: new_id(),
            spec: plan.spec,
            networks: plan.networks,
            vips: plan.vips,
            ports: plan.ports,
            version: 1,
            template_version: 1,
            previous_spec: None,
            created_at: now.clone(),
            updated_at: now,
        };
        let id = record.id.clone();
        let applied = self
            .write_applied(Command::CreateService(Box::new(record)))
            .await?;
        if let Some(why) = applied.refused {
            return Err(ApiError::conflict(why));
        }
        Ok(ServiceCreateResponse { id, warnings: None })
    }

    /// Leader only, with the write lock held: a new spec for a service at `version`.
    pub(super) async fn update_service(
        &self,
        key: &str,
        version: u64,
        spec: ServiceSpec,
        rollback: bool,
    ) -> Result<(), ApiError> {
        let services = self.store.services()?;
        let old = find(&services, key)?.clone();
        if version != old.version {
            return Err(out_of_sequence());
        }
        let spec = if rollback {
            old.previous_spec.clone().ok_or_else(|| {
                ApiError::precondition(format!(
                    "rpc error: code = FailedPrecondition desc = service {} does not have a previous spec",
                    old.id
                ))
            })?
        } else {
            spec
        };
        if spec.name != old.spec.name {
            return Err(ApiError::invalid(
                "rpc error: code = Unimplemented desc = renaming services is not supported",
            ));
        }
        if std::mem::discriminant(&spec.mode) != std::mem::discriminant(&old.spec.mode) {
            return Err(ApiError::invalid(
                "rpc error: code = Unimplemented desc = service mode change is not allowed",
            ));
        }
        let networks = self.store.networks()?;
        let tasks = self.store.tasks()?;
        let plan = plan(spec, Some(&old), &networks, &services, &tasks)?;
        let template_changed = plan.spec.task_template != old.spec.task_template;
        let record = ServiceRecord {
            id: old.id.clone(),
            spec: plan.spec,
            networks: plan.networks,
            vips: plan.vips,
            ports: plan.ports,
            version: old.version + 1,
            template_version: old.template_version + u64::from(template_changed),
            previous_spec: Some(old.spec.clone()),
            created_at: old.created_at.clone(),
            updated_at: now_rfc3339(),
        };
        let applied = self
            .write_applied(Command::UpdateService(Box::new(record)))
            .await?;
        match applied.refused {
            None => Ok(()),
            Some(why) if why.contains("update out of sequence") => Err(out_of_sequence()),
            Some(why) => Err(ApiError::conflict(why)),
        }
    }

    /// Leader only, with the write lock held: removes a service; its tasks are shut down.
    pub(super) async fn remove_service(&self, key: &str) -> Result<ServiceRecord, ApiError> {
        let services = self.store.services()?;
        let s = find(&services, key)?.clone();
        let applied = self
            .write_applied(Command::RemoveService(s.id.clone()))
            .await?;
        if let Some(why) = applied.refused {
            return Err(ApiError::not_found(why));
        }
        Ok(s)
    }
}

/// swarmkit's answer to an update made from a stale read (dockerd's 500).
pub fn out_of_sequence() -> ApiError {
    ApiError::internal("rpc error: code = Unknown desc = update out of sequence")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::service::{NetworkAttachmentConfig, TaskSpec};
    use crate::api::ErrorKind;

    fn net(id: &str, name: &str, subnet: &str, ingress: bool) -> NetworkRecord {
        let mut n = NetworkRecord::default_gwbridge(id.into(), "t".into());
        n.name = name.into();
        n.subnet = subnet.parse().unwrap();
        n.gateway = n.subnet.hosts().next().unwrap();
        n.ingress = ingress;
        n
    }

    fn nets() -> Vec<NetworkRecord> {
        vec![
            net("ingressid0000000000000000", "ingress", "10.0.0.0/24", true),
            net(
                "kh6spd693thnvgl0v8m39i9f0",
                "my-network",
                "10.0.9.0/24",
                false,
            ),
            net(
                "dr8mkoudyb5no2xu53wdfbn6l",
                "my-net2",
                "10.0.10.0/24",
                false,
            ),
        ]
    }

    fn spec(name: &str, networks: &[&str], ports: &[&str]) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            task_template: TaskSpec {
                container_spec: crate::api::service::ContainerSpec {
                    image: "swarmnet/whoami".into(),
                    ..Default::default()
                },
                networks: networks
                    .iter()
                    .map(|n| NetworkAttachmentConfig {
                        target: n.to_string(),
                        aliases: vec![],
                    })
                    .collect(),
                ..Default::default()
            },
            endpoint_spec: Some(EndpointSpec {
                mode: "vip".into(),
                ports: ports
                    .iter()
                    .map(|p| crate::cli::service_args::parse_publish(p).unwrap())
                    .collect(),
            }),
            ..Default::default()
        }
    }

    fn record(id: &str, p: Plan) -> ServiceRecord {
        ServiceRecord {
            id: id.into(),
            spec: p.spec,
            networks: p.networks,
            vips: p.vips,
            ports: p.ports,
            version: 1,
            template_version: 1,
            previous_spec: None,
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    #[test]
    fn networks_resolve_to_ids_and_get_a_vip_each_with_one_on_ingress_for_a_port() {
        let p = plan(
            spec("my-web", &["my-network", "dr8m"], &["8080:80"]),
            None,
            &nets(),
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(
            p.networks,
            [
                "kh6spd693thnvgl0v8m39i9f0",
                "dr8mkoudyb5no2xu53wdfbn6l",
                "ingressid0000000000000000"
            ]
        );
        assert_eq!(
            p.spec.task_template.networks[0].target,
            "kh6spd693thnvgl0v8m39i9f0"
        );
        let vips: Vec<String> = p.vips.iter().map(|v| v.addr.to_string()).collect();
        assert_eq!(vips, ["10.0.0.2/24", "10.0.9.2/24", "10.0.10.2/24"]);
        assert_eq!(p.vips[0].network_id, "ingressid0000000000000000");
        assert_eq!(p.spec.task_template.runtime.as_deref(), Some("container"));
    }

    #[test]
    fn dockers_refusals() {
        let cases: Vec<(ServiceSpec, &str)> = vec![
            (spec("bad name", &[], &[]), "rpc error: code = InvalidArgument desc = name must be valid as a DNS name component"),
            (spec(&"a".repeat(64), &[], &[]), "rpc error: code = InvalidArgument desc = name must be 63 characters or fewer"),
            (spec("x", &["nope"], &[]), "network nope not found"),
            (spec("x", &["ingress"], &[]), "rpc error: code = InvalidArgument desc = Service cannot be explicitly attached to the ingress network \"ingress\""),
            (spec("x", &[], &["8080:80", "8080:81"]), "rpc error: code = InvalidArgument desc = EndpointSpec: duplicate published ports provided"),
            ({
                let mut s = spec("x", &[], &["8081:80"]);
                s.endpoint_spec.as_mut().unwrap().mode = "dnsrr".into();
                s
            }, "rpc error: code = InvalidArgument desc = EndpointSpec: port published with ingress mode can't be used with dnsrr mode"),
            ({
                let mut s = spec("x", &[], &[]);
                s.task_template.placement.constraints = vec!["node.colour==red".into()];
                s
            }, "rpc error: code = InvalidArgument desc = invalid constraint \"node.colour==red\": \"node.colour\" is not a node attribute (node.id, node.hostname, node.role, node.labels.KEY, engine.labels.KEY)"),
            ({
                let mut s = spec("x", &[], &[]);
                s.task_template.container_spec.image.clear();
                s
            }, "rpc error: code = InvalidArgument desc = ContainerSpec: image reference must be provided"),
        ];
        for (s, want) in cases {
            let e = plan(s, None, &nets(), &[], &[]).unwrap_err();
            assert_eq!(e.message, want);
        }
    }

    #[test]
    fn a_published_port_of_another_service_is_refused_and_zero_gets_the_first_free_one() {
        let a = record(
            "aaaa",
            plan(
                spec("a", &[], &["8080:80", "30000"]),
                None,
                &nets(),
                &[],
                &[],
            )
            .unwrap(),
        );
        assert_eq!(a.ports[1].published_port, 30000);
        let e = plan(
            spec("b", &[], &["8080:90"]),
            None,
            &nets(),
            std::slice::from_ref(&a),
            &[],
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert_eq!(
            e.message,
            "rpc error: code = InvalidArgument desc = port '8080' is already in use by service 'a' (aaaa) as an ingress port"
        );
        // udp is another port.
        plan(
            spec("b", &[], &["8080:90/udp"]),
            None,
            &nets(),
            std::slice::from_ref(&a),
            &[],
        )
        .unwrap();
        let b = plan(
            spec("b", &[], &["80"]),
            None,
            &nets(),
            std::slice::from_ref(&a),
            &[],
        )
        .unwrap();
        assert_eq!(b.ports[0].published_port, 30001);
        // An update keeps its dynamic port and its VIPs.
        let again = plan(
            spec("a", &["my-network"], &["8080:80", "30000"]),
            Some(&a),
            &nets(),
            std::slice::from_ref(&a),
            &[],
        )
        .unwrap();
        assert_eq!(again.ports[1].published_port, 30000);
        assert_eq!(again.vips[0], a.vips[0]);
        assert_eq!(again.vips[1].addr.to_string(), "10.0.9.2/24");
    }

    #[test]
    fn lookup_by_id_name_and_prefix() {
        let a = record(
            "abc111",
            plan(spec("web", &[], &[]), None, &nets(), &[], &[]).unwrap(),
        );
        let b = record(
            "abc222",
            plan(spec("db", &[], &[]), None, &nets(), &[], &[]).unwrap(),
        );
        let all = [a, b];
        assert_eq!(find(&all, "web").unwrap().id, "abc111");
        assert_eq!(find(&all, "abc2").unwrap().id, "abc222");
        assert_eq!(
            find(&all, "abc").unwrap_err().message,
            "service abc is ambiguous (2 matches found)"
        );
        let e = find(&all, "nope").unwrap_err();
        assert_eq!(
            (e.kind, e.message.as_str()),
            (ErrorKind::NotFound, "service nope not found")
        );
    }
}
