//! `GET /swarmnet/stats`: one node's data-path numbers as rows, for `swarmnet stats` (Docker's
//! `docker stats` has no route for networks or services, so this is swarmnet's own).
//!
//! The daemon builds a [`Stats`] from the same sample a metrics scrape reads, so the two never
//! disagree on how a counter is read. Rows are as a task sees its traffic, like `docker stats`'
//! NET I/O: `rx` is what reached the task (the port's frames towards it), `tx` what the task
//! sent. A network's row sums its local ports so, removed ports included. Counters only: the
//! client turns two answers into rates ([`Rates`]), the daemon keeps nothing per client.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Packets and bytes each way, as the task (or the network's tasks) see them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

/// One local task's port on one network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStats {
    /// The task's full name (`web.1.<id>`); the endpoint's name for a port of no task (the
    /// ingress sandbox, `ingress-sbox`).
    pub task: String,
    /// Empty for a port of no service.
    pub service: String,
    pub network: String,
    #[serde(flatten)]
    pub traffic: Traffic,
}

/// One network's local ports, summed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkStats {
    pub network: String,
    #[serde(flatten)]
    pub traffic: Traffic,
    /// Connections this node's balancer sent through the network's VIPs.
    pub vip_connections: u64,
}

/// One service's VIP on one network, as this node's balancer saw it (its backends summed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipStats {
    pub service: String,
    pub network: String,
    pub vip: String,
    /// Connections given to a backend by this node since it started.
    pub connections: u64,
    /// Connections tracked now.
    pub active: u64,
    pub bytes: u64,
}

/// What the node counts for all its networks at once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStats {
    /// VXLAN and ESP datagrams: `rx` received from other nodes, `tx` sent to them.
    pub underlay: Traffic,
    /// Drops by reason, the non-zero ones.
    pub drops: BTreeMap<String, u64>,
    /// DNS queries of tasks answered from the swarm's names.
    pub dns_local: u64,
    /// DNS queries of tasks handed to the host's resolvers.
    pub dns_forwarded: u64,
    /// ESP security associations held (outbound, inbound); absent without keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub esp_sas: Option<EspSas>,
    /// ESP packets refused as replayed.
    pub esp_replays_refused: u64,
}

/// ESP security associations the node holds, by direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EspSas {
    pub outbound: u64,
    pub inbound: u64,
}

/// The node's gossip (port 7946): its live members and its counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipStats {
    /// Where it gossips (`IP:PORT`).
    pub addr: String,
    /// The other nodes gossip sees up, by hostname.
    pub members: Vec<String>,
    /// The suspicion timeout in force (a node unanswering that long after a failed probe is
    /// declared down and its endpoints withdrawn).
    pub suspicion_ms: u64,
    pub sent_msgs: u64,
    pub sent_bytes: u64,
    pub recv_msgs: u64,
    pub recv_bytes: u64,
    /// Messages refused, by reason (malformed, unknown_key, auth_failed, replay, not_member).
    pub dropped: BTreeMap<String, u64>,
    /// The other nodes' endpoints held, over all of this node's networks.
    pub remote_endpoints: u64,
}

/// The answer of `GET /swarmnet/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// The node's hostname.
    pub node_name: String,
    /// `false` before the data path runs (outside a swarm): every list is empty.
    pub data_path: bool,
    pub tasks: Vec<TaskStats>,
    pub networks: Vec<NetworkStats>,
    pub services: Vec<VipStats>,
    pub node: NodeStats,
    /// Absent while the node does not gossip (outside a swarm, no keys yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gossip: Option<GossipStats>,
}

/// The query parameter naming a row to keep (repeated).
pub const NAME_PARAM: &str = "name";

/// Why names could not restrict the rows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no such network, service or task on this node: {0}")]
pub struct UnknownName(pub String);

/// Whether `name` names the task `full` (`web.1.<id>`): its full name, its `service.slot`
/// name or its ID.
fn names_task(full: &str, name: &str) -> bool {
    if name.is_empty() {
        return false;
    }
    if full == name {
        return true;
    }
    let mut parts = full.rsplitn(2, '.');
    let id = parts.next().unwrap_or("");
    let slot = parts.next().unwrap_or("");
    (slot == name && slot.contains('.')) || id == name
}

impl Stats {
    /// Keeps the rows `names` ask for: a network keeps its row, a service its tasks' rows and
    /// its VIPs', a task its rows (one per network). The node's totals stay. No names: all.
    pub fn select(&mut self, names: &[String]) -> Result<(), UnknownName> {
        if names.is_empty() {
            return Ok(());
        }
        for name in names {
            let known = !name.is_empty()
                && (self.networks.iter().any(|n| &n.network == name)
                    || self.services.iter().any(|s| &s.service == name)
                    || self
                        .tasks
                        .iter()
                        .any(|t| &t.service == name || names_task(&t.task, name)));
            if !known {
                return Err(UnknownName(name.clone()));
            }
        }
        self.keep(names);
        Ok(())
    }

    /// Keeps the rows `names` ask for, as [`Stats::select`], with no complaint about a name
    /// that has none (a stream goes on when a named task leaves the node).
    pub fn keep(&mut self, names: &[String]) {
        if names.is_empty() {
            return;
        }
        let asked: BTreeSet<&str> = names.iter().map(String::as_str).collect();
        self.networks.retain(|n| asked.contains(n.network.as_str()));
        self.services.retain(|s| asked.contains(s.service.as_str()));
        self.tasks.retain(|t| {
            (!t.service.is_empty() && asked.contains(t.service.as_str()))
                || names.iter().any(|n| names_task(&t.task, n))
        });
    }
}

/// Per-second rates of the rows of one answer against the previous one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rates {
    /// By (task, network): (rx bytes/s, tx bytes/s).
    pub tasks: BTreeMap<(String, String), (f64, f64)>,
    /// By network: (rx bytes/s, tx bytes/s).
    pub networks: BTreeMap<String, (f64, f64)>,
    /// By (service, network): connections/s.
    pub services: BTreeMap<(String, String), f64>,
}

/// The rate of a counter that went from `a` to `b` in `secs` (0 if it went back: a restart).
fn rate(a: u64, b: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        return 0.0;
    }
    b.saturating_sub(a) as f64 / secs
}

impl Rates {
    /// The rates of rows present in both answers, taken `secs` apart.
    pub fn between(prev: &Stats, cur: &Stats, secs: f64) -> Rates {
        let mut r = Rates::default();
        for t in &cur.tasks {
            if let Some(p) = prev
                .tasks
                .iter()
                .find(|p| p.task == t.task && p.network == t.network)
            {
                r.tasks.insert(
                    (t.task.clone(), t.network.clone()),
                    (
                        rate(p.traffic.rx_bytes, t.traffic.rx_bytes, secs),
                        rate(p.traffic.tx_bytes, t.traffic.tx_bytes, secs),
                    ),
                );
            }
        }
        for n in &cur.networks {
            if let Some(p) = prev.networks.iter().find(|p| p.network == n.network) {
                r.networks.insert(
                    n.network.clone(),
                    (
                        rate(p.traffic.rx_bytes, n.traffic.rx_bytes, secs),
                        rate(p.traffic.tx_bytes, n.traffic.tx_bytes, secs),
                    ),
                );
            }
        }
        for s in &cur.services {
            if let Some(p) = prev
                .services
                .iter()
                .find(|p| p.service == s.service && p.network == s.network)
            {
                r.services.insert(
                    (s.service.clone(), s.network.clone()),
                    rate(p.connections, s.connections, secs),
                );
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(task: &str, service: &str, network: &str, rx: u64) -> TaskStats {
        TaskStats {
            task: task.into(),
            service: service.into(),
            network: network.into(),
            traffic: Traffic {
                rx_bytes: rx,
                ..Traffic::default()
            },
        }
    }

    fn sample() -> Stats {
        Stats {
            node_name: "n".into(),
            data_path: true,
            gossip: None,
            tasks: vec![
                task("web.1.aaa", "web", "my-net", 100),
                task("web.1.aaa", "web", "ingress", 10),
                task("client.1.bbb", "client", "my-net", 50),
                task("ingress-sbox", "", "ingress", 5),
            ],
            networks: vec![
                NetworkStats {
                    network: "my-net".into(),
                    ..NetworkStats::default()
                },
                NetworkStats {
                    network: "ingress".into(),
                    ..NetworkStats::default()
                },
            ],
            services: vec![VipStats {
                service: "web".into(),
                network: "my-net".into(),
                vip: "10.0.1.2".into(),
                connections: 4,
                ..VipStats::default()
            }],
            node: NodeStats::default(),
        }
    }

    #[test]
    fn a_service_keeps_its_tasks_and_vips_a_network_its_row() {
        let mut s = sample();
        s.select(&["web".into(), "ingress".into()]).unwrap();
        let tasks: Vec<(&str, &str)> = s
            .tasks
            .iter()
            .map(|t| (t.task.as_str(), t.network.as_str()))
            .collect();
        assert_eq!(tasks, [("web.1.aaa", "my-net"), ("web.1.aaa", "ingress")]);
        assert_eq!(s.services.len(), 1);
        let nets: Vec<&str> = s.networks.iter().map(|n| n.network.as_str()).collect();
        assert_eq!(nets, ["ingress"]);
    }

    #[test]
    fn a_task_is_named_by_full_name_slot_or_id() {
        for name in ["client.1.bbb", "client.1", "bbb"] {
            let mut s = sample();
            s.select(&[name.into()]).unwrap();
            assert_eq!(s.tasks.len(), 1, "{name}");
            assert_eq!(s.tasks[0].task, "client.1.bbb");
            assert!(s.networks.is_empty() && s.services.is_empty(), "{name}");
        }
        let mut s = sample();
        s.select(&["ingress-sbox".into()]).unwrap();
        assert_eq!(s.tasks.len(), 1);
    }

    #[test]
    fn an_unknown_name_is_refused_by_name() {
        let mut s = sample();
        let err = s.select(&["web".into(), "nope".into()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no such network, service or task on this node: nope"
        );
        // Half a name is not a name.
        assert!(sample().select(&["we".into()]).is_err());
        assert!(sample().select(&["1".into()]).is_err());
        assert!(sample().select(&["".into()]).is_err());
        // No names: every row.
        let mut all = sample();
        all.select(&[]).unwrap();
        assert_eq!(all, sample());
        // Keeping rows refuses nothing: an unknown name keeps no row.
        let mut s = sample();
        s.keep(&["nope".into(), "client".into()]);
        assert_eq!(s.tasks.len(), 1);
        assert!(s.networks.is_empty() && s.services.is_empty());
    }

    #[test]
    fn rates_are_per_second_and_never_negative() {
        let prev = sample();
        let mut cur = sample();
        cur.tasks[0].traffic.rx_bytes = 300;
        cur.tasks[2].traffic.rx_bytes = 0;
        cur.services[0].connections = 8;
        let r = Rates::between(&prev, &cur, 2.0);
        assert_eq!(
            r.tasks[&("web.1.aaa".to_string(), "my-net".to_string())],
            (100.0, 0.0)
        );
        assert_eq!(
            r.tasks[&("client.1.bbb".to_string(), "my-net".to_string())],
            (0.0, 0.0)
        );
        assert_eq!(r.services[&("web".to_string(), "my-net".to_string())], 2.0);
        assert!(Rates::between(&prev, &cur, 0.0)
            .tasks
            .values()
            .all(|v| *v == (0.0, 0.0)));
    }

    #[test]
    fn the_answer_round_trips_as_json() {
        let mut s = sample();
        s.node.esp_sas = Some(EspSas {
            outbound: 2,
            inbound: 2,
        });
        s.node.drops.insert("no_route".into(), 3);
        let text = serde_json::to_string(&s).unwrap();
        assert!(text.contains(r#""rx_bytes":100"#), "{text}");
        assert_eq!(serde_json::from_str::<Stats>(&text).unwrap(), s);
    }
}
