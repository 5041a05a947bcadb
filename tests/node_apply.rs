//! `io::Node` driven in code, as the daemon will drive it: a node of virtual tasks only (no
//! privilege needed) on loopback takes new views while it runs, refuses invalid ones and
//! changes it cannot make live, and keeps its port ids.

use std::net::Ipv4Addr;

use swarmnet::io::node::{Applied, ApplyError};
use swarmnet::io::{Node, NodeConfig};
use swarmnet::topology::{App, Endpoint, Network, Topology};
use swarmnet::wire::MacAddr;

fn view(port: u16, tasks: &[(&str, u8)]) -> Topology {
    let mut t = Topology::parse(
        &format!(
            "[node]\nname = \"apply-test\"\ndata_path_addr = \"127.0.0.1\"\n\
             data_path_port = {port}\n"
        ),
        "code",
    )
    .unwrap();
    t.networks.push(Network {
        name: "my-network".into(),
        vni: 4097,
        subnet: "10.0.9.0/24".parse().unwrap(),
        gateway: Ipv4Addr::new(10, 0, 9, 1),
        mtu: 1450,
        encrypted: false,
    });
    for (name, last) in tasks {
        let ip = Ipv4Addr::new(10, 0, 9, *last);
        t.endpoints.push(Endpoint {
            name: name.to_string(),
            network: "my-network".into(),
            ip,
            mac: MacAddr::from_ipv4(ip),
            vtep: None,
            netns: None,
            iface: None,
            app: Some(App::Echo),
        });
    }
    t
}

#[test]
fn a_running_node_takes_views_built_in_code() {
    let port = 20000 + (std::process::id() % 10000) as u16;
    let dir = std::env::temp_dir().join(format!("swarmnet-apply-{}", std::process::id()));
    let mut node = Node::start(NodeConfig {
        topology: view(port, &[("a", 2)]),
        workers: 2,
        offload: false,
        esp_sequence_file: dir.join("esp.json"),
    })
    .expect("a node of virtual tasks starts without privilege");
    let id_of = |node: &Node, name: &str| node.port_names().iter().position(|n| n == name);
    let a = id_of(&node, "a");
    assert!(a.is_some());

    let applied = node
        .apply(&view(port, &[("a", 2), ("b", 3), ("c", 4)]))
        .unwrap();
    assert_eq!(
        applied,
        Applied {
            added: vec!["b".into(), "c".into()],
            removed: vec![]
        }
    );
    let applied = node.apply(&view(port, &[("c", 4), ("d", 5)])).unwrap();
    assert_eq!(applied.to_string(), "tasks added: d; removed: a, b");
    assert_eq!(id_of(&node, "a"), None);
    let names: Vec<&str> = node.virtual_tasks().map(|(n, _)| n).collect();
    assert_eq!(names, ["c", "d"]);
    // Ids are never reused: d is new, c kept its id.
    assert_eq!(id_of(&node, "c"), Some(2));
    assert_eq!(id_of(&node, "d"), Some(3));

    // Invalid views are refused and change nothing.
    let mut bad = view(port, &[("c", 4), ("d", 5)]);
    bad.endpoints[1].ip = bad.endpoints[0].ip;
    let err = node.apply(&bad).unwrap_err();
    assert!(matches!(err, ApplyError::Invalid(_)), "{err}");
    assert_eq!(
        err.to_string(),
        "invalid node view: endpoint d: ip 10.0.9.4 is already used by endpoint c on network \
         my-network"
    );
    let mut moved = view(port + 1, &[("c", 4)]);
    moved.node.data_path_port = port + 1;
    assert_eq!(
        node.apply(&moved).unwrap_err().to_string(),
        "a running node cannot change the data path address or port; restart the node for that"
    );
    let names: Vec<&str> = node.virtual_tasks().map(|(n, _)| n).collect();
    assert_eq!(names, ["c", "d"]);

    // A task whose address changes is replaced: a new port (new id) under the same name.
    let mut moved_c = view(port, &[("c", 4), ("d", 5)]);
    moved_c.endpoints[0].ip = Ipv4Addr::new(10, 0, 9, 44);
    moved_c.endpoints[0].mac = MacAddr::from_ipv4(moved_c.endpoints[0].ip);
    let applied = node.apply(&moved_c).unwrap();
    assert_eq!(applied.to_string(), "tasks added: c; removed: c");
    assert_eq!(id_of(&node, "c"), Some(4));
    assert_eq!(id_of(&node, "d"), Some(3));

    // A network attached with a task on it, then detached with it.
    let mut two = moved_c.clone();
    two.networks.push(Network {
        name: "other".into(),
        vni: 4098,
        subnet: "10.0.10.0/24".parse().unwrap(),
        gateway: Ipv4Addr::new(10, 0, 10, 1),
        mtu: 1450,
        encrypted: false,
    });
    let ip = Ipv4Addr::new(10, 0, 10, 2);
    two.endpoints.push(Endpoint {
        name: "e".into(),
        network: "other".into(),
        ip,
        mac: MacAddr::from_ipv4(ip),
        vtep: None,
        netns: None,
        iface: None,
        app: Some(App::Whoami),
    });
    assert_eq!(
        node.apply(&two).unwrap().to_string(),
        "tasks added: e; removed: none"
    );
    assert_eq!(
        node.apply(&moved_c).unwrap().to_string(),
        "tasks added: none; removed: e"
    );
    assert_eq!(id_of(&node, "e"), None);
    assert!(node.healthy());
    node.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
