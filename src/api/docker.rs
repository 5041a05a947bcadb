//! Docker Engine API 1.41 JSON models, as dockerd 20.10 sends and accepts them, and their
//! construction from swarmnet's own objects ([`super::types`]).
//!
//! Written by hand rather than taken from the generated `bollard-stubs`: its API-1.41 release is
//! from 2021, pulls in chrono and serde_with 1, and makes every field an `Option` skipped when
//! empty, where dockerd sends `null`, `{}` and `false` that clients read. Only what swarmnet
//! serves is here; the networks, services and tasks routes add their models beside these.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::types::{self, LocalInfo, Role};

/// The Engine API version swarmnet speaks (Docker 20.10's).
pub const API_VERSION: &str = "1.41";
/// The oldest version a client may ask for (dockerd 20.10's minimum).
pub const MIN_API_VERSION: &str = "1.12";

/// `Version` of a swarm object: the optimistic-concurrency token of updates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ObjectVersion {
    pub index: u64,
}

impl ObjectVersion {
    /// swarmnet's objects carry their last update time (RFC 3339); its Unix time in
    /// microseconds changes with every update (each one a Raft write, milliseconds apart), so it
    /// serves as the version index. Microseconds stay below 2^53, exact in every JSON reader.
    pub fn from_updated_at(updated_at: &str) -> Self {
        let index = OffsetDateTime::parse(updated_at, &Rfc3339)
            .map(|t| (t.unix_timestamp_nanos() / 1000).clamp(0, u64::MAX as i128) as u64)
            .unwrap_or(0);
        ObjectVersion { index }
    }
}

/// `{"message": ...}`, the body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorMessage {
    pub message: String,
}

// ---- nodes -------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub role: Role,
    pub availability: types::Availability,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Platform {
    pub architecture: String,
    #[serde(rename = "OS")]
    pub os: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TlsInfo {
    pub trust_root: String,
    pub cert_issuer_subject: String,
    pub cert_issuer_public_key: String,
}

impl TlsInfo {
    /// From the root CA certificate (PEM): Docker's base64 DER subject and public key.
    pub fn from_ca_pem(pem: &str) -> Self {
        use base64::Engine;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let parsed = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .ok()
            .map(|(_, block)| block.contents);
        let (subject, key) = parsed
            .as_deref()
            .and_then(|der| x509_parser::parse_x509_certificate(der).ok())
            .map(|(_, cert)| {
                (
                    b64(cert.tbs_certificate.subject.as_raw()),
                    b64(cert.tbs_certificate.subject_pki.raw),
                )
            })
            .unwrap_or_default();
        TlsInfo {
            trust_root: pem.to_string(),
            cert_issuer_subject: subject,
            cert_issuer_public_key: key,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Resources {
    #[serde(rename = "NanoCPUs")]
    pub nano_cpus: u64,
    pub memory_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EngineDescription {
    pub engine_version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeDescription {
    pub hostname: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineDescription>,
    #[serde(rename = "TLSInfo", default, skip_serializing_if = "Option::is_none")]
    pub tls_info: Option<TlsInfo>,
}

/// A node as `GET /nodes` and `GET /nodes/{id}` answer it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Node {
    #[serde(rename = "ID")]
    pub id: String,
    pub version: ObjectVersion,
    pub created_at: String,
    pub updated_at: String,
    pub spec: NodeSpec,
    pub description: NodeDescription,
    pub status: types::NodeStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager_status: Option<types::ManagerStatus>,
}

impl Node {
    /// Docker's view of a swarmnet node; `ca_pem` fills `TLSInfo` when known.
    pub fn from_node(n: &types::Node, ca_pem: Option<&str>) -> Self {
        Node {
            id: n.id.clone(),
            version: ObjectVersion::from_updated_at(&n.updated_at),
            created_at: n.created_at.clone(),
            updated_at: n.updated_at.clone(),
            spec: NodeSpec {
                name: None,
                labels: BTreeMap::new(),
                role: n.role,
                availability: n.availability,
            },
            description: NodeDescription {
                hostname: n.hostname.clone(),
                platform: None,
                resources: None,
                engine: None,
                tls_info: ca_pem.map(TlsInfo::from_ca_pem),
            },
            status: n.status.clone(),
            manager_status: n.manager_status.clone(),
        }
    }
}

// ---- swarm -------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SwarmSpec {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub orchestration: serde_json::Value,
    #[serde(default)]
    pub raft: serde_json::Value,
    #[serde(default)]
    pub dispatcher: serde_json::Value,
    #[serde(rename = "CAConfig", default)]
    pub ca_config: serde_json::Value,
    #[serde(default)]
    pub task_defaults: serde_json::Value,
    #[serde(default)]
    pub encryption_config: serde_json::Value,
}

impl SwarmSpec {
    /// The spec swarmnet's swarm runs with: its heartbeat period, fixed Raft ticks and the
    /// 90-day node certificates.
    pub fn current() -> Self {
        let heartbeat_ns = crate::control::manager::HEARTBEAT_PERIOD.as_nanos() as u64;
        SwarmSpec {
            name: "default".into(),
            labels: BTreeMap::new(),
            orchestration: serde_json::json!({"TaskHistoryRetentionLimit": 5}),
            raft: serde_json::json!({
                "SnapshotInterval": 10000, "KeepOldSnapshots": 0,
                "LogEntriesForSlowFollowers": 500, "ElectionTick": 10, "HeartbeatTick": 1
            }),
            dispatcher: serde_json::json!({"HeartbeatPeriod": heartbeat_ns}),
            ca_config: serde_json::json!({"NodeCertExpiry": 7_776_000_000_000_000u64}),
            task_defaults: serde_json::json!({}),
            encryption_config: serde_json::json!({"AutoLockManagers": false}),
        }
    }
}

/// The swarm as `GET /swarm` answers it (`ClusterInfo` plus `JoinTokens`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ClusterInfo {
    #[serde(rename = "ID")]
    pub id: String,
    pub version: ObjectVersion,
    pub created_at: String,
    pub updated_at: String,
    pub spec: SwarmSpec,
    #[serde(rename = "TLSInfo")]
    pub tls_info: TlsInfo,
    pub root_rotation_in_progress: bool,
    pub default_addr_pool: Vec<String>,
    pub subnet_size: u8,
    pub data_path_port: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Swarm {
    #[serde(flatten)]
    pub cluster: ClusterInfo,
    pub join_tokens: types::JoinTokens,
}

impl Swarm {
    pub fn from_swarm(s: &types::Swarm, ca_pem: &str) -> Self {
        Swarm {
            cluster: ClusterInfo {
                id: s.id.clone(),
                version: ObjectVersion::from_updated_at(&s.updated_at),
                created_at: s.created_at.clone(),
                updated_at: s.updated_at.clone(),
                spec: SwarmSpec::current(),
                tls_info: TlsInfo::from_ca_pem(ca_pem),
                root_rotation_in_progress: false,
                default_addr_pool: s.default_addr_pool.clone(),
                subnet_size: s.subnet_size,
                data_path_port: s.data_path_port,
            },
            join_tokens: s.join_tokens.clone(),
        }
    }
}

/// `POST /swarm/init` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SwarmInitRequest {
    #[serde(deserialize_with = "super::service::nullable")]
    pub listen_addr: String,
    #[serde(deserialize_with = "super::service::nullable")]
    pub advertise_addr: String,
    #[serde(deserialize_with = "super::service::nullable")]
    pub data_path_addr: String,
    #[serde(deserialize_with = "super::service::nullable")]
    pub data_path_port: u32,
    #[serde(deserialize_with = "super::service::nullable")]
    pub default_addr_pool: Vec<String>,
    #[serde(deserialize_with = "super::service::nullable")]
    pub force_new_cluster: bool,
    #[serde(deserialize_with = "super::service::nullable")]
    pub subnet_size: u32,
    #[serde(deserialize_with = "super::service::nullable")]
    pub spec: Option<serde_json::Value>,
    /// `active`, `pause`, `drain`, or empty for the default.
    #[serde(deserialize_with = "super::service::nullable")]
    pub availability: String,
}

/// `POST /swarm/join` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SwarmJoinRequest {
    #[serde(deserialize_with = "super::service::nullable")]
    pub listen_addr: String,
    #[serde(deserialize_with = "super::service::nullable")]
    pub advertise_addr: String,
    #[serde(deserialize_with = "super::service::nullable")]
    pub data_path_addr: String,
    #[serde(deserialize_with = "super::service::nullable")]
    pub remote_addrs: Vec<String>,
    #[serde(deserialize_with = "super::service::nullable")]
    pub join_token: String,
    /// `active`, `pause`, `drain`, or empty for the default.
    #[serde(deserialize_with = "super::service::nullable")]
    pub availability: String,
}

// ---- system ------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Peer {
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub addr: String,
}

/// The `Swarm` section of `GET /info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SwarmInfo {
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub node_addr: String,
    pub local_node_state: String,
    pub control_available: bool,
    pub error: String,
    pub remote_managers: Option<Vec<Peer>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managers: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterInfo>,
}

impl SwarmInfo {
    /// What a node outside any swarm answers.
    pub fn inactive() -> Self {
        SwarmInfo {
            node_id: String::new(),
            node_addr: String::new(),
            local_node_state: "inactive".into(),
            control_available: false,
            error: String::new(),
            remote_managers: None,
            nodes: None,
            managers: None,
            cluster: None,
        }
    }

    /// From this node's own view; the cluster part is filled by the caller on managers.
    pub fn from_local(info: &LocalInfo) -> Self {
        let mut s = Self::inactive();
        s.local_node_state = info.local_node_state.clone();
        s.node_id = info.node_id.clone().unwrap_or_default();
        s.node_addr = info.node_addr.clone().unwrap_or_default();
        s.control_available = info.role == Some(Role::Manager);
        if info.node_id.is_some() {
            s.remote_managers = Some(
                info.remote_managers
                    .iter()
                    .map(|addr| Peer {
                        node_id: String::new(),
                        addr: addr.clone(),
                    })
                    .collect(),
            );
        }
        s
    }
}

/// Facts about this host for `/info` and `/version`.
#[derive(Debug, Clone)]
pub struct Host {
    pub hostname: String,
    pub kernel_version: String,
    pub operating_system: String,
    pub ncpu: usize,
    pub mem_total: u64,
}

impl Host {
    /// Reads the host's facts from /proc and /etc/os-release (missing ones stay empty).
    pub fn read() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let os = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| "Linux".into());
        let mem_kib: u64 = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        Host {
            hostname: read("/proc/sys/kernel/hostname").trim().to_string(),
            kernel_version: read("/proc/sys/kernel/osrelease").trim().to_string(),
            operating_system: os,
            ncpu: std::thread::available_parallelism().map_or(1, |n| n.get()),
            mem_total: mem_kib * 1024,
        }
    }
}

impl NodeDescription {
    /// Fills in what this host knows of itself (for the node the daemon runs on only: other
    /// nodes do not report their platform yet).
    pub fn describe_host(&mut self, host: &Host) {
        self.platform = Some(Platform {
            architecture: arch().0.into(),
            os: "linux".into(),
        });
        self.resources = Some(Resources {
            nano_cpus: host.ncpu as u64 * 1_000_000_000,
            memory_bytes: host.mem_total,
        });
        self.engine = Some(EngineDescription {
            engine_version: server_version(),
        });
    }
}

/// swarmnet's version as the server version Docker clients print.
pub fn server_version() -> String {
    format!("swarmnet-{}", env!("CARGO_PKG_VERSION"))
}

/// Docker's architecture name (`uname -m`) and Go's (`GOARCH`) for this build.
fn arch() -> (&'static str, &'static str) {
    match std::env::consts::ARCH {
        "x86_64" => ("x86_64", "amd64"),
        "aarch64" => ("aarch64", "arm64"),
        other => (other, other),
    }
}

/// `GET /info`: what the docker CLI reads. Container, image and storage counts are zero:
/// swarmnet runs networking, not containers.
pub fn info(host: &Host, swarm: SwarmInfo) -> serde_json::Value {
    serde_json::json!({
        "ID": "",
        "Containers": 0, "ContainersRunning": 0, "ContainersPaused": 0, "ContainersStopped": 0,
        "Images": 0,
        "Driver": "",
        "DriverStatus": null,
        "Plugins": {"Volume": null, "Network": ["overlay"], "Authorization": null, "Log": null},
        "Debug": false,
        "NFd": 0,
        "NGoroutines": 0,
        "SystemTime": OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default(),
        "LoggingDriver": "",
        "CgroupDriver": "",
        "NEventsListener": 0,
        "KernelVersion": host.kernel_version,
        "OperatingSystem": host.operating_system,
        "OSType": "linux",
        "Architecture": arch().0,
        "IndexServerAddress": "",
        "RegistryConfig": null,
        "NCPU": host.ncpu,
        "MemTotal": host.mem_total,
        "DockerRootDir": "",
        "Name": host.hostname,
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": server_version(),
        "Runtimes": {},
        "DefaultRuntime": "",
        "Swarm": swarm,
        "LiveRestoreEnabled": false,
        "Isolation": "",
        "InitBinary": "",
        "SecurityOptions": [],
        "Warnings": ["WARNING: this daemon is swarmnet: it runs swarm networking only (no containers, images or volumes)"],
    })
}

/// `GET /version`.
pub fn version(host: &Host) -> serde_json::Value {
    let (_, goarch) = arch();
    serde_json::json!({
        "Platform": {"Name": "swarmnet"},
        "Components": [{
            "Name": "Engine",
            "Version": server_version(),
            "Details": {
                "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
                "Arch": goarch, "Os": "linux", "KernelVersion": host.kernel_version,
                "Experimental": "false", "GitCommit": "", "GoVersion": "", "BuildTime": ""
            }
        }],
        "Version": server_version(),
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": goarch,
        "KernelVersion": host.kernel_version,
        "BuildTime": "",
    })
}

// ---- filters -----------------------------------------------------------------------------

/// Docker's `filters` query parameter: a JSON map of sets, `{"role":{"manager":true}}` (older
/// clients send `{"role":["manager"]}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    /// Parses the decoded parameter; an error names what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Filters::default());
        }
        let raw: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(text).map_err(|e| format!("invalid filter: {e}"))?;
        let mut out = BTreeMap::new();
        for (key, value) in raw {
            let values = match value {
                serde_json::Value::Object(m) => m
                    .into_iter()
                    .filter(|(_, v)| v.as_bool() == Some(true))
                    .map(|(k, _)| k)
                    .collect(),
                serde_json::Value::Array(a) => a
                    .into_iter()
                    .map(|v| match v {
                        serde_json::Value::String(s) => Ok(s),
                        other => Err(format!("invalid filter value {other} for {key:?}")),
                    })
                    .collect::<Result<_, _>>()?,
                other => return Err(format!("invalid filter value {other} for {key:?}")),
            };
            out.insert(key, values);
        }
        Ok(Filters(out))
    }

    /// Refuses keys other than `allowed`, with dockerd's message.
    pub fn only(&self, allowed: &[&str]) -> Result<(), String> {
        match self.0.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(format!("invalid filter '{k}'")),
            None => Ok(()),
        }
    }

    /// The values given for `key`.
    pub fn values(&self, key: &str) -> Vec<&str> {
        self.0
            .get(key)
            .map(|v| v.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// True when `key` is absent or one of its values satisfies `pred`.
    pub fn matches(&self, key: &str, pred: impl Fn(&str) -> bool) -> bool {
        match self.0.get(key) {
            None => true,
            Some(values) => values.is_empty() || values.iter().any(|v| pred(v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_both_forms_and_refuse_garbage() {
        let f = Filters::parse(r#"{"role":{"manager":true},"name":["vm"]}"#).unwrap();
        assert!(f.matches("role", |v| v == "manager"));
        assert!(!f.matches("role", |v| v == "worker"));
        assert!(f.matches("name", |v| v == "vm"));
        assert!(f.matches("id", |_| false), "absent key matches all");
        assert_eq!(f.only(&["role"]), Err("invalid filter 'name'".into()));
        assert!(Filters::parse("{").is_err());
        assert!(Filters::parse(r#"{"role":3}"#).is_err());
        assert!(Filters::parse(r#"{"role":[3]}"#).is_err());
    }

    #[test]
    fn version_index_follows_the_update_time() {
        let a = ObjectVersion::from_updated_at("2026-12-03T16:43:30.402598579Z");
        let b = ObjectVersion::from_updated_at("2026-12-03T16:43:30.402599579Z");
        assert!(a.index < 1 << 53);
        assert_eq!(b.index, a.index + 1);
        assert_eq!(ObjectVersion::from_updated_at("junk").index, 0);
    }

    #[test]
    fn node_json_has_dockers_shape() {
        let n = types::Node {
            id: "abc".into(),
            hostname: "vm".into(),
            role: Role::Manager,
            availability: types::Availability::Active,
            status: types::NodeStatus {
                state: types::NodeState::Ready,
                addr: "127.0.0.1".into(),
            },
            manager_status: Some(types::ManagerStatus {
                leader: true,
                reachability: types::Reachability::Reachable,
                addr: "127.0.0.1:2377".into(),
            }),
            data_path_addr: "127.0.0.1".into(),
            cluster_addr: "127.0.0.1:2377".into(),
            gossip_addr: String::new(),
            created_at: "2026-12-03T16:43:30.402696648Z".into(),
            updated_at: "2026-12-03T16:44:04.027353341Z".into(),
        };
        let v = serde_json::to_value(Node::from_node(&n, None)).unwrap();
        assert_eq!(v["Spec"]["Role"], "manager");
        assert_eq!(v["Spec"]["Availability"], "active");
        assert_eq!(v["Spec"]["Labels"], serde_json::json!({}));
        assert_eq!(v["Description"]["Hostname"], "vm");
        assert_eq!(v["Status"]["State"], "ready");
        assert_eq!(v["ManagerStatus"]["Reachability"], "reachable");
        assert!(v["Version"]["Index"].as_u64().unwrap() > 0);
    }
}
