//! A task on several networks: endpoints that share a namespace are its eth0, eth1, ... A
//! running node (driven in code, as the daemon drives it) gives a task a second network and
//! takes it away again without disturbing its first interface or what runs in its namespace.
//! Needs root (CI is root); skips with a printed reason otherwise.

mod lab;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use lab::prefix;
use swarmnet::io::process::{ProcessSpec, Status, Supervisor};
use swarmnet::io::{netns, Node, NodeConfig};
use swarmnet::topology::{Endpoint, Network, Topology};
use swarmnet::wire::MacAddr;

const T1_A: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 2);
const PEER_A: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 3);
const T1_B: Ipv4Addr = Ipv4Addr::new(10, 0, 10, 2);
const PEER_B: Ipv4Addr = Ipv4Addr::new(10, 0, 10, 3);
const PORT: u16 = 7000;

fn network(name: &str, vni: u32, third: u8) -> Network {
    Network {
        name: name.into(),
        vni,
        subnet: format!("10.0.{third}.0/24").parse().unwrap(),
        gateway: Ipv4Addr::new(10, 0, third, 1),
        mtu: 1450,
        encrypted: false,
        ingress: false,
        bridge: None,
    }
}

fn endpoint(name: &str, network: &str, ip: Ipv4Addr, netns: &str, iface: &str) -> Endpoint {
    Endpoint {
        name: name.into(),
        network: network.into(),
        ip,
        mac: MacAddr::from_ipv4(ip),
        vtep: None,
        netns: Some(netns.into()),
        iface: (iface != "eth0").then(|| iface.to_string()),
        app: None,
        task: None,
    }
}

/// Net-a and net-b with a peer task on each; `t1` on net-a, and on net-b as eth1 if `both`,
/// and not at all if `!t1`.
fn view(port: u16, p: &str, t1: bool, both: bool) -> Topology {
    let mut t = Topology::parse(
        &format!(
            "[node]\nname = \"multi-net\"\ndata_path_addr = \"127.0.0.1\"\n\
             data_path_port = {port}\n"
        ),
        "code",
    )
    .unwrap();
    t.networks = vec![network("net-a", 4097, 9), network("net-b", 4098, 10)];
    let ns = |n: &str| format!("{p}-{n}");
    t.endpoints
        .push(endpoint("peer-a", "net-a", PEER_A, &ns("pa"), "eth0"));
    t.endpoints
        .push(endpoint("peer-b", "net-b", PEER_B, &ns("pb"), "eth0"));
    if t1 {
        t.endpoints
            .push(endpoint("t1@net-a", "net-a", T1_A, &ns("t1"), "eth0"));
    }
    if t1 && both {
        t.endpoints
            .push(endpoint("t1@net-b", "net-b", T1_B, &ns("t1"), "eth1"));
    }
    t
}

fn ip_out(args: &[&str]) -> String {
    netns::ip(args).unwrap_or_else(|e| panic!("{e}"))
}

/// The namespace's identity: the inode of its nsfs file.
fn ns_inode(ns: &str) -> u64 {
    std::fs::metadata(netns::path(ns)).expect("namespace").ino()
}

/// Connects from namespace `from` to `to`:PORT and checks that `listener` (made in t1's
/// namespace before any change) answers: a byte each way.
fn exchange(listener: &TcpListener, from: &str, to: Ipv4Addr) {
    let client = lab::spawn_in_ns(from, move || {
        let mut s =
            TcpStream::connect_timeout(&SocketAddrV4::new(to, PORT).into(), Duration::from_secs(5))
                .map_err(|e| format!("connect to {to}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"?").map_err(|e| e.to_string())?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b).map_err(|e| e.to_string())?;
        Ok::<u8, String>(b[0])
    });
    listener.set_nonblocking(false).unwrap();
    let (mut s, peer) = listener.accept().expect("accept");
    let mut b = [0u8; 1];
    s.read_exact(&mut b).unwrap();
    s.write_all(b"!").unwrap();
    assert_eq!(
        client.join().unwrap(),
        Ok(b'!'),
        "from {from} ({peer}) to {to}"
    );
}

#[test]
fn a_task_gets_a_second_network_and_loses_it_while_it_runs() {
    require_lab!();
    let p = prefix("mn");
    let port = 30000 + (std::process::id() % 10000) as u16;
    let (t1, pa, pb) = (format!("{p}-t1"), format!("{p}-pa"), format!("{p}-pb"));
    // On failure the node drops while unwinding, deleting every namespace it made.
    let dir = std::env::temp_dir().join(format!("swarmnet-multinet-{}", std::process::id()));
    let mut node = Node::start(NodeConfig {
        topology: view(port, &p, true, false),
        workers: 2,
        offload: false,
        esp_sequence_file: dir.join("esp.json"),
        resolv_conf: None,
    })
    .expect("node starts");
    let inode = ns_inode(&t1);
    // A socket of the task's namespace, made before any change: it must serve throughout.
    let listener = lab::in_ns(&t1, || {
        TcpListener::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PORT)).expect("listen")
    });
    exchange(&listener, &pa, T1_A);
    // And a program of the task's, run by the supervisor in its namespace.
    let sup = Supervisor::new();
    let pid = sup
        .start(ProcessSpec {
            task_id: "t1".into(),
            name: "t1".into(),
            netns: t1.clone(),
            argv: vec!["sleep".into(), "100".into()],
            env: vec![],
            hostname: None,
            log_path: dir.join("t1.log"),
        })
        .expect("start the task's program");

    // A second network for the running task: eth1 in the same namespace.
    let applied = node.apply(&view(port, &p, true, true)).unwrap();
    assert_eq!(applied.to_string(), "tasks added: t1@net-b; removed: none");
    assert_eq!(ns_inode(&t1), inode, "the task's namespace was kept");
    let addrs = ip_out(&["-n", &t1, "-o", "-4", "addr", "show"]);
    assert!(addrs.contains("eth0    inet 10.0.9.2/24"), "{addrs}");
    assert!(addrs.contains("eth1    inet 10.0.10.2/24"), "{addrs}");
    let routes = ip_out(&["-n", &t1, "-4", "route", "show"]);
    let defaults: Vec<&str> = routes
        .lines()
        .filter(|l| l.starts_with("default"))
        .collect();
    assert_eq!(defaults, ["default via 10.0.9.1 dev eth0 "], "{routes}");
    assert!(
        routes.contains("10.0.10.0/24 dev eth1"),
        "eth1 has its subnet route: {routes}"
    );
    exchange(&listener, &pa, T1_A);
    exchange(&listener, &pb, T1_B);
    let (sent, received, _) = lab::tcp_transfer(&t1, &pb, PEER_B, 7001, 256 * 1024);
    assert_eq!(sent, received, "eth1 carries a stream from the task");

    // The second network goes again: eth0 and the namespace stay.
    let applied = node.apply(&view(port, &p, true, false)).unwrap();
    assert_eq!(applied.to_string(), "tasks added: none; removed: t1@net-b");
    let links = ip_out(&["-n", &t1, "-o", "link", "show"]);
    assert!(!links.contains("eth1"), "{links}");
    assert!(links.contains("eth0"), "{links}");
    assert_eq!(ns_inode(&t1), inode);
    exchange(&listener, &pa, T1_A);
    let routes = ip_out(&["-n", &t1, "-4", "route", "show"]);
    assert!(
        routes.starts_with("default via 10.0.9.1 dev eth0"),
        "{routes}"
    );
    assert_eq!(
        sup.status("t1"),
        Status::Running { pid },
        "the program ran on"
    );
    assert!(sup.take_exits().is_empty());
    drop(sup);

    // Back again, then the whole task goes: with its last interface, its namespace.
    node.apply(&view(port, &p, true, true)).unwrap();
    exchange(&listener, &pb, T1_B);
    drop(listener);
    let applied = node.apply(&view(port, &p, false, false)).unwrap();
    assert_eq!(
        applied.to_string(),
        "tasks added: none; removed: t1@net-a, t1@net-b"
    );
    assert!(!netns::exists(&t1), "the task's namespace is gone");
    assert!(netns::exists(&pa) && netns::exists(&pb));
    assert!(node.healthy());
    node.stop();
    assert!(!netns::exists(&pa) && !netns::exists(&pb));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_replaced_first_interface_keeps_the_namespace() {
    require_lab!();
    let p = prefix("mr");
    let port = 40000 + (std::process::id() % 9000) as u16;
    let t1 = format!("{p}-t1");
    let dir = std::env::temp_dir().join(format!("swarmnet-multinet-r{}", std::process::id()));
    let mut node = Node::start(NodeConfig {
        topology: view(port, &p, true, false),
        workers: 1,
        offload: false,
        esp_sequence_file: dir.join("esp.json"),
        resolv_conf: None,
    })
    .expect("node starts");
    let inode = ns_inode(&t1);
    // eth0 gets another address: its port is replaced, in the same namespace.
    let mut moved = view(port, &p, true, false);
    let ep = moved
        .endpoints
        .iter_mut()
        .find(|e| e.name == "t1@net-a")
        .unwrap();
    ep.ip = Ipv4Addr::new(10, 0, 9, 20);
    ep.mac = MacAddr::from_ipv4(ep.ip);
    let applied = node.apply(&moved).unwrap();
    assert_eq!(
        applied.to_string(),
        "tasks added: t1@net-a; removed: t1@net-a"
    );
    assert_eq!(
        ns_inode(&t1),
        inode,
        "the namespace outlived its only port's replacement"
    );
    let addrs = ip_out(&["-n", &t1, "-o", "-4", "addr", "show"]);
    assert!(addrs.contains("eth0    inet 10.0.9.20/24"), "{addrs}");
    assert!(!addrs.contains("10.0.9.2/"), "{addrs}");
    let routes = ip_out(&["-n", &t1, "-4", "route", "show"]);
    assert!(
        routes.starts_with("default via 10.0.9.1 dev eth0"),
        "{routes}"
    );
    let pa = format!("{p}-pa");
    assert!(lab::ping(&pa, Ipv4Addr::new(10, 0, 9, 20), 5).is_some());
    node.stop();
    assert!(!netns::exists(&t1));
    let _ = std::fs::remove_dir_all(&dir);
}
