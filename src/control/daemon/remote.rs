//! The other nodes' endpoints as gossip brings them, and this node's own as it gossips them.
//!
//! The managers say which tasks this node runs and which services exist on its networks (names,
//! VIPs, aliases, ports); a service's backends are this node's tasks of it as the node runs them
//! and the other nodes' as the gossip tables say, and so is the overlay's peer table. An endpoint of a node that gossip declares down is withdrawn
//! by the gossip core itself, so [`merge`] only ever sees endpoints of live nodes.
//! Pure: no I/O, no clock.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use crate::control::dispatcher::{AssignedTask, Assignments, Peer, ServiceBackend};
use crate::gossip::{EndpointEntry, EndpointState};
use crate::wire::MacAddr;

/// Another node's endpoint on one network, as the gossip table holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEndpoint {
    /// The network's ID (gossip tables are keyed by network ID, the same on every node).
    pub network_id: String,
    pub endpoint_id: String,
    pub entry: EndpointEntry,
}

/// The gossip endpoint ID of a node's load-balancer address on a network (its ingress
/// sandbox on ingress), as the managers named its peer entry before gossip.
pub fn lb_endpoint_id(node_id: &str) -> String {
    format!("lb-{node_id}")
}

/// The assignments as the node applies them, and its peer table: the managers' `a` with the
/// remote endpoints of its networks as peers, and as each service's backends its running
/// tasks, this node's (`local`, from [`local_entries`]) and the others'.
pub fn merge(
    a: &Assignments,
    remote: &[RemoteEndpoint],
    local: &BTreeMap<(String, String), EndpointEntry>,
) -> (Assignments, Vec<Peer>) {
    let nets: BTreeSet<&str> = a.networks.iter().map(|n| n.id.as_str()).collect();
    let hostnames: BTreeMap<Ipv4Addr, &str> = a
        .nodes
        .iter()
        .map(|n| (n.data_path_addr, n.hostname.as_str()))
        .collect();
    // One address, one owner: a running endpoint wins over a draining one that held it (a
    // task stopping while its address was given again).
    let mut peers: BTreeMap<(&str, Ipv4Addr), (&EndpointEntry, Peer)> = BTreeMap::new();
    for r in remote
        .iter()
        .filter(|r| nets.contains(r.network_id.as_str()))
    {
        let key = (r.network_id.as_str(), r.entry.ip);
        if let Some((held, _)) = peers.get(&key) {
            if held.state == EndpointState::Running || r.entry.state != EndpointState::Running {
                continue;
            }
        }
        let peer = Peer {
            task_id: if r.entry.task_id.is_empty() {
                r.endpoint_id.clone()
            } else {
                r.entry.task_id.clone()
            },
            network_id: r.network_id.clone(),
            addr: r.entry.ip,
            vtep: r.entry.vtep,
            node: hostnames
                .get(&r.entry.vtep)
                .map_or_else(|| r.entry.vtep.to_string(), |h| h.to_string()),
        };
        peers.insert(key, (&r.entry, peer));
    }
    let mut out = a.clone();
    let all = local
        .iter()
        .map(|((net, _), e)| (net.as_str(), e))
        .chain(remote.iter().map(|r| (r.network_id.as_str(), &r.entry)));
    let mut backends: BTreeMap<(&str, &str), Vec<ServiceBackend>> = BTreeMap::new();
    for (net, e) in all {
        if e.state != EndpointState::Running || e.task_id.is_empty() {
            continue;
        }
        let list = backends.entry((e.service_id.as_str(), net)).or_default();
        if list.iter().any(|b| b.task_id == e.task_id) {
            continue;
        }
        list.push(ServiceBackend {
            task_id: e.task_id.clone(),
            name: e.task_name.clone(),
            addr: e.ip,
        });
    }
    for s in &mut out.services {
        for sn in &mut s.networks {
            let mut list = backends
                .remove(&(s.id.as_str(), sn.network_id.as_str()))
                .unwrap_or_default();
            list.sort_by(|x, y| x.name.cmp(&y.name));
            sn.backends = list;
        }
    }
    (out, peers.into_values().map(|(_, p)| p).collect())
}

/// What this node gossips: the overlay networks it is on (those of its assigned tasks, and
/// ingress while the routing mesh needs it; never docker_gwbridge, which is node-local) and,
/// by (network ID, endpoint ID), its running tasks' endpoints there (`draining`: tasks no
/// longer assigned that still serve what was sent their way) and its load-balancer address.
#[allow(clippy::type_complexity)]
pub fn local_entries<'a>(
    a: &Assignments,
    tasks: impl Iterator<Item = (&'a AssignedTask, bool)>,
    vtep: Ipv4Addr,
) -> (BTreeSet<String>, BTreeMap<(String, String), EndpointEntry>) {
    let overlay: BTreeSet<&str> = a
        .networks
        .iter()
        .filter(|n| n.vni.is_some())
        .map(|n| n.id.as_str())
        .collect();
    let mut out = BTreeMap::new();
    for (t, draining) in tasks {
        for addr in t
            .addresses
            .iter()
            .filter(|x| overlay.contains(x.network_id.as_str()))
        {
            let aliases = a
                .services
                .iter()
                .filter(|s| s.id == t.service_id)
                .flat_map(|s| s.networks.iter())
                .filter(|sn| sn.network_id == addr.network_id)
                .flat_map(|sn| sn.aliases.iter().cloned())
                .collect();
            out.insert(
                (addr.network_id.clone(), t.id.clone()),
                EndpointEntry {
                    task_id: t.id.clone(),
                    task_name: t.full_name(),
                    service_id: t.service_id.clone(),
                    service_name: t.service_name.clone(),
                    ip: addr.addr.addr(),
                    mac: addr.mac(),
                    vtep,
                    aliases,
                    state: if draining {
                        EndpointState::Draining
                    } else {
                        EndpointState::Running
                    },
                },
            );
        }
    }
    for n in a
        .networks
        .iter()
        .filter(|n| overlay.contains(n.id.as_str()))
    {
        let Some(ip) = n.lb.get(&a.node_id) else {
            continue;
        };
        out.insert(
            (n.id.clone(), lb_endpoint_id(&a.node_id)),
            EndpointEntry {
                task_id: String::new(),
                task_name: String::new(),
                service_id: String::new(),
                service_name: String::new(),
                ip: *ip,
                mac: MacAddr::from_ipv4(*ip).0,
                vtep,
                aliases: Vec::new(),
                state: EndpointState::Running,
            },
        );
    }
    (overlay.into_iter().map(str::to_string).collect(), out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::dispatcher::{AssignedService, ServiceNetwork, SwarmNode};
    use crate::control::network::NetworkRecord;
    use crate::control::service::TaskAddress;

    fn net(id: &str, vni: Option<u32>) -> NetworkRecord {
        let mut n = NetworkRecord::default_gwbridge(id.into(), String::new());
        n.name = format!("{id}-name");
        n.driver = "overlay".into();
        n.subnet = "10.0.9.0/24".parse().unwrap();
        n.gateway = "10.0.9.1".parse().unwrap();
        n.vni = vni;
        n.options.clear();
        n
    }

    fn entry(
        task: &str,
        service: &str,
        ip: [u8; 4],
        vtep: [u8; 4],
        state: EndpointState,
    ) -> EndpointEntry {
        EndpointEntry {
            task_id: task.into(),
            task_name: format!("web.1.{task}"),
            service_id: service.into(),
            service_name: "web".into(),
            ip: ip.into(),
            mac: MacAddr::from_ipv4(ip.into()).0,
            vtep: vtep.into(),
            aliases: vec![],
            state,
        }
    }

    fn remote(net: &str, id: &str, e: EndpointEntry) -> RemoteEndpoint {
        RemoteEndpoint {
            network_id: net.into(),
            endpoint_id: id.into(),
            entry: e,
        }
    }

    fn assignments() -> Assignments {
        Assignments {
            node_id: "me".into(),
            networks: vec![net("n1", Some(4097))],
            services: vec![AssignedService {
                id: "s1".into(),
                name: "web".into(),
                dnsrr: false,
                networks: vec![ServiceNetwork {
                    network_id: "n1".into(),
                    vip: Some([10, 0, 9, 2].into()),
                    aliases: vec!["www".into()],
                    backends: vec![ServiceBackend {
                        task_id: "local".into(),
                        name: "web.2.local".into(),
                        addr: [10, 0, 9, 3].into(),
                    }],
                }],
                ports: vec![],
            }],
            nodes: vec![SwarmNode {
                id: "other".into(),
                hostname: "node-b".into(),
                data_path_addr: [127, 0, 0, 2].into(),
                gossip_addr: None,
            }],
            ..Assignments::default()
        }
    }

    #[test]
    fn remote_endpoints_become_peers_and_running_ones_backends() {
        let a = assignments();
        let remote = vec![
            remote(
                "n1",
                "t1",
                entry(
                    "t1",
                    "s1",
                    [10, 0, 9, 4],
                    [127, 0, 0, 2],
                    EndpointState::Running,
                ),
            ),
            remote(
                "n1",
                "t2",
                entry(
                    "t2",
                    "s1",
                    [10, 0, 9, 5],
                    [127, 0, 0, 2],
                    EndpointState::Draining,
                ),
            ),
            // A network this node is not on: nothing.
            remote(
                "n2",
                "t3",
                entry(
                    "t3",
                    "s1",
                    [10, 0, 8, 4],
                    [127, 0, 0, 2],
                    EndpointState::Running,
                ),
            ),
        ];
        let local: BTreeMap<(String, String), EndpointEntry> = [(
            ("n1".to_string(), "local".to_string()),
            EndpointEntry {
                task_name: "web.2.local".into(),
                ..entry(
                    "local",
                    "s1",
                    [10, 0, 9, 3],
                    [127, 0, 0, 1],
                    EndpointState::Running,
                )
            },
        )]
        .into_iter()
        .collect();
        let (out, peers) = merge(&a, &remote, &local);
        let p: Vec<(&str, Ipv4Addr, &str)> = peers
            .iter()
            .map(|p| (p.task_id.as_str(), p.addr, p.node.as_str()))
            .collect();
        assert_eq!(
            p,
            [
                ("t1", Ipv4Addr::new(10, 0, 9, 4), "node-b"),
                ("t2", Ipv4Addr::new(10, 0, 9, 5), "node-b")
            ]
        );
        let b: Vec<(&str, &str)> = out.services[0].networks[0]
            .backends
            .iter()
            .map(|b| (b.task_id.as_str(), b.name.as_str()))
            .collect();
        // The draining task stays reachable but takes no new connection.
        assert_eq!(b, [("t1", "web.1.t1"), ("local", "web.2.local")]);
        // What the managers may still say about backends is not taken.
        let mut stale = a.clone();
        stale.services[0].networks[0].backends[0].task_id = "gone".into();
        let (out, _) = merge(&stale, &remote, &BTreeMap::new());
        assert_eq!(out.services[0].networks[0].backends.len(), 1);
    }

    #[test]
    fn a_running_endpoint_wins_an_address_over_a_draining_one() {
        let a = assignments();
        let remote = vec![
            remote(
                "n1",
                "old",
                entry(
                    "old",
                    "s1",
                    [10, 0, 9, 4],
                    [127, 0, 0, 3],
                    EndpointState::Draining,
                ),
            ),
            remote(
                "n1",
                "new",
                entry(
                    "new",
                    "s1",
                    [10, 0, 9, 4],
                    [127, 0, 0, 2],
                    EndpointState::Running,
                ),
            ),
        ];
        let (_, peers) = merge(&a, &remote, &BTreeMap::new());
        assert_eq!(peers.len(), 1);
        assert_eq!(
            (peers[0].task_id.as_str(), peers[0].vtep),
            ("new", Ipv4Addr::new(127, 0, 0, 2))
        );
    }

    #[test]
    fn local_entries_cover_overlay_networks_tasks_and_the_lb_address() {
        let mut a = assignments();
        a.networks.push(net("local-only", None));
        a.networks[0].lb.insert("me".into(), [10, 0, 9, 250].into());
        let task = AssignedTask {
            id: "t9".into(),
            name: "web.2".into(),
            service_id: "s1".into(),
            service_name: "web".into(),
            slot: 2,
            image: "swarmnet/whoami".into(),
            args: vec![],
            env: vec![],
            hostname: String::new(),
            stop_grace: None,
            addresses: vec![TaskAddress {
                network_id: "n1".into(),
                addr: "10.0.9.3/24".parse().unwrap(),
            }],
        };
        let vtep = Ipv4Addr::new(127, 0, 0, 1);
        let (nets, entries) = local_entries(&a, [(&task, false)].into_iter(), vtep);
        assert_eq!(nets.into_iter().collect::<Vec<_>>(), ["n1"]);
        let e = &entries[&("n1".to_string(), "t9".to_string())];
        assert_eq!(
            (
                e.task_name.as_str(),
                e.ip,
                e.vtep,
                e.aliases.as_slice(),
                e.state
            ),
            (
                "web.2.t9",
                Ipv4Addr::new(10, 0, 9, 3),
                vtep,
                &["www".to_string()][..],
                EndpointState::Running
            )
        );
        let lb = &entries[&("n1".to_string(), "lb-me".to_string())];
        assert_eq!(
            (lb.ip, lb.task_id.as_str()),
            (Ipv4Addr::new(10, 0, 9, 250), "")
        );
        let (_, draining) = local_entries(&a, [(&task, true)].into_iter(), vtep);
        assert_eq!(
            draining[&("n1".to_string(), "t9".to_string())].state,
            EndpointState::Draining
        );
    }
}
