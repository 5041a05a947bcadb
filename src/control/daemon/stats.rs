//! `GET /swarmnet/stats`: the metrics' data-path sample ([`DataplaneSample`]) as the rows of
//! `swarmnet stats`. Only a change of shape: a port's `rx` (frames from the task) becomes the
//! task's `tx`, as `docker stats` shows a container's traffic.

use std::collections::BTreeMap;

use super::metrics::DataplaneSample;
use super::Daemon;
use crate::api::stats::{EspSas, NetworkStats, NodeStats, Stats, TaskStats, Traffic, VipStats};
use crate::dataplane::PortCounters;

/// A port's counters from the task's side.
fn as_task_sees(c: &PortCounters) -> Traffic {
    Traffic {
        rx_packets: c.tx_packets,
        rx_bytes: c.tx_bytes,
        tx_packets: c.rx_packets,
        tx_bytes: c.rx_bytes,
    }
}

/// The rows of one sample (`None`: the data path does not run yet).
pub fn stats(node_name: &str, sample: Option<&DataplaneSample>) -> Stats {
    let Some(d) = sample else {
        return Stats {
            node_name: node_name.to_string(),
            ..Stats::default()
        };
    };
    let tasks = d
        .ports
        .iter()
        .map(|p| TaskStats {
            task: if p.task.is_empty() {
                p.port.clone()
            } else {
                p.task.clone()
            },
            service: p.service.clone(),
            network: p.network.clone(),
            traffic: as_task_sees(&p.counters),
        })
        .collect();
    let mut services: BTreeMap<(String, String), VipStats> = BTreeMap::new();
    for r in &d.balancer {
        let row = services
            .entry((r.service.clone(), r.network.clone()))
            .or_insert_with(|| VipStats {
                service: r.service.clone(),
                network: r.network.clone(),
                vip: r.vip.clone(),
                ..VipStats::default()
            });
        row.connections += r.connections;
        row.active += r.active;
        row.bytes += r.bytes;
    }
    let mut networks: BTreeMap<String, NetworkStats> = d
        .networks
        .iter()
        .map(|(name, c)| {
            let row = NetworkStats {
                network: name.clone(),
                traffic: as_task_sees(c),
                vip_connections: 0,
            };
            (name.clone(), row)
        })
        .collect();
    for s in services.values() {
        let row = networks
            .entry(s.network.clone())
            .or_insert_with(|| NetworkStats {
                network: s.network.clone(),
                ..NetworkStats::default()
            });
        row.vip_connections += s.connections;
    }
    let drops: BTreeMap<String, u64> = d
        .drops
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(r, n)| (r.to_string(), *n))
        .collect();
    let replays = d
        .drops
        .iter()
        .find(|(r, _)| *r == "esp_replay")
        .map_or(0, |(_, n)| *n);
    Stats {
        node_name: node_name.to_string(),
        data_path: true,
        tasks,
        networks: networks.into_values().collect(),
        services: services.into_values().collect(),
        gossip: None,
        node: NodeStats {
            underlay: Traffic {
                rx_packets: d.underlay.rx_packets,
                rx_bytes: d.underlay.rx_bytes,
                tx_packets: d.underlay.tx_packets,
                tx_bytes: d.underlay.tx_bytes,
            },
            drops,
            dns_local: d.events.dns_answered,
            dns_forwarded: d.events.dns_forwarded,
            esp_sas: d.esp_sas.map(|(out, inb)| EspSas {
                outbound: out as u64,
                inbound: inb as u64,
            }),
            esp_replays_refused: replays,
        },
    }
}

impl Daemon {
    /// This node's rows now.
    pub(super) async fn stats(&self) -> Stats {
        let sample = self.dataplane_sample().await;
        let mut s = stats(&self.hostname, sample.as_ref());
        s.gossip = self.gossip_stats().await;
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::BalancerRow;
    use crate::control::daemon::metrics::PortSample;

    fn counters(rx: u64, tx: u64) -> PortCounters {
        PortCounters {
            rx_packets: 1,
            rx_bytes: rx,
            tx_packets: 2,
            tx_bytes: tx,
        }
    }

    fn backend(task: &str, connections: u64, active: u64) -> BalancerRow {
        BalancerRow {
            service: "web".into(),
            network: "my-net".into(),
            vip: "10.0.1.2".into(),
            task: task.into(),
            address: "10.0.1.3".into(),
            active,
            connections,
            bytes: 10 * connections,
        }
    }

    #[test]
    fn ports_turn_to_the_tasks_side_and_vips_sum_their_backends() {
        let d = DataplaneSample {
            ports: vec![
                PortSample {
                    port: "web.1.a".into(),
                    network: "my-net".into(),
                    service: "web".into(),
                    task: "web.1.a".into(),
                    counters: counters(100, 900),
                },
                PortSample {
                    port: "ingress-sbox".into(),
                    network: "ingress".into(),
                    counters: counters(5, 6),
                    ..PortSample::default()
                },
            ],
            networks: [("my-net".to_string(), counters(1000, 9000))]
                .into_iter()
                .collect(),
            drops: vec![("esp_replay", 2), ("no_route", 0), ("malformed", 4)],
            balancer: vec![backend("web.1.a", 3, 1), backend("web.2.b", 4, 0)],
            esp_sas: Some((2, 3)),
            ..DataplaneSample::default()
        };
        let s = stats("node-1", Some(&d));
        assert!(s.data_path);
        assert_eq!(s.tasks[0].traffic.rx_bytes, 900);
        assert_eq!(s.tasks[0].traffic.tx_bytes, 100);
        assert_eq!(s.tasks[0].traffic.rx_packets, 2);
        assert_eq!(s.tasks[1].task, "ingress-sbox");
        assert_eq!(s.tasks[1].service, "");
        assert_eq!(s.networks.len(), 1);
        assert_eq!(s.networks[0].traffic.rx_bytes, 9000);
        assert_eq!(s.networks[0].vip_connections, 7);
        assert_eq!(s.services.len(), 1);
        assert_eq!(
            (
                s.services[0].connections,
                s.services[0].active,
                s.services[0].bytes
            ),
            (7, 1, 70)
        );
        let drops: Vec<(&str, u64)> = s.node.drops.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(drops, [("esp_replay", 2), ("malformed", 4)]);
        assert_eq!(s.node.esp_replays_refused, 2);
        assert_eq!(
            s.node.esp_sas,
            Some(EspSas {
                outbound: 2,
                inbound: 3
            })
        );
    }

    #[test]
    fn no_data_path_is_empty_rows() {
        let s = stats("n", None);
        assert!(!s.data_path);
        assert!(s.tasks.is_empty() && s.networks.is_empty() && s.services.is_empty());
    }
}
