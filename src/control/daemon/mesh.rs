//! The node side of the routing mesh: from the node's assignments, its ingress sandbox endpoint
//! (its load-balancer address on the ingress network) and the ports published in ingress mode,
//! each with its service's VIP and running tasks on ingress.

use std::net::Ipv4Addr;

use crate::control::dispatcher::Assignments;
use crate::io::mesh::{MeshConfig, PublishedPort};
use crate::topology::{App, Endpoint};
use crate::wire::MacAddr;

/// The endpoint name of a node's ingress sandbox (Docker's `ingress-sbox`).
pub const SANDBOX: &str = "ingress-sbox";

/// The node's ingress sandbox, when it has an address on the ingress network.
pub fn sandbox_endpoint(a: &Assignments) -> Option<Endpoint> {
    let net = a.networks.iter().find(|n| n.ingress && n.vni.is_some())?;
    let ip = *net.lb.get(&a.node_id)?;
    Some(Endpoint {
        name: SANDBOX.into(),
        network: net.name.clone(),
        ip,
        mac: MacAddr::from_ipv4(ip),
        vtep: None,
        netns: None,
        iface: None,
        app: Some(App::IngressSandbox),
        task: None,
    })
}

/// The ports this node publishes through its sandbox: every port in ingress mode of the
/// services on its ingress network.
pub fn config(a: &Assignments, publish_addr: Option<Ipv4Addr>) -> MeshConfig {
    let mut ports = Vec::new();
    if let Some(ingress) = a.networks.iter().find(|n| n.ingress) {
        for s in &a.services {
            let Some(sn) = s.networks.iter().find(|n| n.network_id == ingress.id) else {
                continue;
            };
            // Host mode: only where a task runs, straight to it (the first if several).
            let local: Vec<Ipv4Addr> = sn
                .backends
                .iter()
                .filter(|b| a.tasks.iter().any(|t| t.id == b.task_id))
                .map(|b| b.addr)
                .take(1)
                .collect();
            for p in s.ports.iter().filter(|p| p.publish_mode == "host") {
                if local.is_empty() {
                    continue;
                }
                ports.push(PublishedPort {
                    service: s.name.clone(),
                    udp: p.protocol == "udp",
                    port: p.published_port,
                    target_port: p.target_port,
                    vip: None,
                    backends: local.clone(),
                    proxy_v2: false,
                });
            }
            for p in s.ports.iter().filter(|p| p.publish_mode == "ingress") {
                ports.push(PublishedPort {
                    service: s.name.clone(),
                    udp: p.protocol == "udp",
                    port: p.published_port,
                    target_port: p.target_port,
                    vip: sn.vip,
                    backends: sn.backends.iter().map(|b| b.addr).collect(),
                    proxy_v2: p.proxy_protocol == "v2",
                });
            }
        }
    }
    MeshConfig {
        publish_addr,
        via_vip: true,
        ports,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::service::PortConfig;
    use crate::control::dispatcher::{AssignedService, ServiceBackend, ServiceNetwork};
    use crate::control::network::NetworkRecord;

    fn port(mode: &str, published: u16, proxy: &str) -> PortConfig {
        PortConfig {
            protocol: "tcp".into(),
            target_port: 80,
            published_port: published,
            publish_mode: mode.into(),
            proxy_protocol: proxy.into(),
            ..Default::default()
        }
    }

    fn assignments() -> Assignments {
        let mut ing = NetworkRecord::default_gwbridge("ing".into(), "t".into());
        ing.name = "ingress".into();
        ing.ingress = true;
        ing.vni = Some(4096);
        ing.subnet = "10.0.0.0/24".parse().unwrap();
        ing.lb.insert("me".into(), "10.0.0.7".parse().unwrap());
        let backend = |id: &str, ip: &str| ServiceBackend {
            task_id: id.into(),
            name: format!("web.x.{id}"),
            addr: ip.parse().unwrap(),
        };
        Assignments {
            node_id: "me".into(),
            networks: vec![ing],
            services: vec![AssignedService {
                id: "s".into(),
                name: "web".into(),
                dnsrr: false,
                networks: vec![ServiceNetwork {
                    network_id: "ing".into(),
                    vip: Some("10.0.0.2".parse().unwrap()),
                    aliases: vec![],
                    backends: vec![backend("t1", "10.0.0.3"), backend("t2", "10.0.0.4")],
                }],
                ports: vec![port("ingress", 8080, "v2"), port("host", 9090, "")],
            }],
            ..Default::default()
        }
    }

    #[test]
    fn ingress_ports_go_to_the_vip_host_ports_only_to_a_local_task() {
        let a = assignments();
        let sb = sandbox_endpoint(&a).unwrap();
        assert_eq!(sb.ip, "10.0.0.7".parse::<Ipv4Addr>().unwrap());
        assert_eq!(sb.app, Some(App::IngressSandbox));
        let cfg = config(&a, Some("127.0.0.2".parse().unwrap()));
        // No local task: only the ingress-mode port.
        assert_eq!(cfg.ports.len(), 1);
        let p = &cfg.ports[0];
        assert_eq!(
            (p.port, p.vip, p.proxy_v2),
            (8080, Some("10.0.0.2".parse().unwrap()), true)
        );
        // With task t2 here, the host-mode port goes to it alone.
        let mut a = assignments();
        a.tasks.push(crate::control::dispatcher::AssignedTask {
            id: "t2".into(),
            name: "web.2".into(),
            service_id: "s".into(),
            service_name: "web".into(),
            slot: 2,
            image: "swarmnet/whoami".into(),
            args: vec![],
            env: vec![],
            hostname: String::new(),
            stop_grace: None,
            addresses: vec![],
        });
        let cfg = config(&a, None);
        let host = cfg.ports.iter().find(|p| p.port == 9090).unwrap();
        assert_eq!(host.backends, ["10.0.0.4".parse::<Ipv4Addr>().unwrap()]);
        assert_eq!(host.vip, None);
    }
}
