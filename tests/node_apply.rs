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
        ingress: false,
        bridge: None,
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
            task: None,
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
        resolv_conf: None,
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
        ingress: false,
        bridge: None,
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
        task: None,
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

/// Node `i` (127.0.0.1+i) of a pair: node 0 serves whoami tasks, node 1 fetches from them.
/// Network `clear` always; `secret` (encrypted, ESP in UDP) with `keys` when given, tags
/// `keys[0]` the primary.
fn pair_view(i: u8, port: u16, keys: &[u32]) -> Topology {
    let me = Ipv4Addr::new(127, 0, 0, 1 + i);
    let peer = Ipv4Addr::new(127, 0, 0, 2 - i);
    let mut text = format!(
        "[node]\nname = \"pair-{i}\"\ndata_path_addr = \"{me}\"\ndata_path_port = {port}\n\n\
         [[network]]\nname = \"clear\"\nvni = 4097\nsubnet = \"10.0.9.0/24\"\ngateway = \"10.0.9.1\"\n"
    );
    if !keys.is_empty() {
        let ring: Vec<String> = keys
            .iter()
            .map(|t| {
                format!(
                    "{{ tag = {t}, key = \"{:032x}\" }}",
                    0x1111 * u128::from(*t)
                )
            })
            .collect();
        text += &format!(
            "\n[[network]]\nname = \"secret\"\nvni = 4098\nsubnet = \"10.0.10.0/24\"\n\
             gateway = \"10.0.10.1\"\nencrypted = true\n\n[encryption]\nkeys = [ {} ]\n\
             primary = {}\ntransport = \"udp\"\nudp_port = {}\n",
            ring.join(", "),
            keys[0],
            port + 1
        );
    }
    let mut ep = |name: &str, net: &str, ip: &str, on: u8, app: &str| {
        text += &format!("\n[[endpoint]]\nname = \"{name}\"\nnetwork = \"{net}\"\nip = \"{ip}\"\n");
        if on == i {
            text += &format!("app = \"{app}\"\n");
        } else {
            text += &format!("vtep = \"{peer}\"\n");
        }
    };
    ep("who", "clear", "10.0.9.20", 0, "whoami");
    ep(
        "get",
        "clear",
        "10.0.9.21",
        1,
        "fetch http://10.0.9.20/data?size=5000",
    );
    if !keys.is_empty() {
        ep("who2", "secret", "10.0.10.20", 0, "whoami");
        ep(
            "get2",
            "secret",
            "10.0.10.21",
            1,
            "fetch http://10.0.10.20/data?size=5000",
        );
    }
    Topology::parse(&text, "code").unwrap()
}

/// Waits for a fetch report of task `task` that got a 200, and returns it.
fn fetched(node: &Node, task: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut seen = Vec::new();
    while std::time::Instant::now() < deadline {
        for line in node.take_app_events() {
            if line.starts_with(&format!("{task}: ")) && line.contains(": 200, 5000 bytes") {
                return line;
            }
            seen.push(line);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("{task} fetched nothing; saw {seen:#?}");
}

#[test]
fn a_first_encrypted_network_and_new_keys_come_to_running_nodes() {
    // 30000-39999: apart from the other test's ports (both use SO_REUSEPORT).
    let port = 30000 + (std::process::id() % 5000) as u16 * 2;
    let dir = std::env::temp_dir().join(format!("swarmnet-apply-esp-{}", std::process::id()));
    let start = |i: u8| {
        Node::start(NodeConfig {
            topology: pair_view(i, port, &[]),
            workers: 2,
            offload: false,
            esp_sequence_file: dir.join(format!("esp-{i}.json")),
            resolv_conf: None,
        })
        .expect("nodes of virtual tasks start without privilege")
    };
    let (mut a, mut b) = (start(0), start(1));
    fetched(&b, "get");

    // The swarm's first encrypted network: the ESP sockets open while the nodes run.
    for (i, n) in [&mut a, &mut b].into_iter().enumerate() {
        let applied = n.apply(&pair_view(i as u8, port, &[1])).unwrap();
        assert_eq!(applied.added.len(), 1, "{applied}");
    }
    fetched(&b, "get2");
    fetched(&b, "get");
    assert!(dir.join("esp-1.json").exists(), "sequence numbers are kept");

    // Key rotation, as the managers do it: a new key joins, becomes the primary, the old goes.
    for keys in [&[1, 2][..], &[2, 1], &[2]] {
        for (i, n) in [&mut a, &mut b].into_iter().enumerate() {
            n.apply(&pair_view(i as u8, port, keys)).unwrap();
        }
        b.take_app_events();
        fetched(&b, "get2");
    }

    // Another transport for the run's ESP sockets cannot come live.
    let mut ip = pair_view(1, port, &[2]);
    if let Some(e) = ip.encryption.as_mut() {
        e.transport = swarmnet::topology::EspTransport::Ip;
    }
    assert_eq!(
        b.apply(&ip).unwrap_err().to_string(),
        "a running node cannot change the ESP transport; restart the node for that"
    );
    // The encrypted network goes; the clear one still carries.
    b.apply(&pair_view(1, port, &[])).unwrap();
    a.apply(&pair_view(0, port, &[])).unwrap();
    b.take_app_events();
    fetched(&b, "get");
    assert!(a.healthy() && b.healthy());
    a.stop();
    b.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
