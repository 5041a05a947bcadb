//! docker_gwbridge in userspace (root): a program task reaches the world outside the swarm
//! through its node, with no kernel bridge, veth or NAT for it. The "outside world" is a
//! network namespace this test makes, reached from the host through a veth pair; a task
//! fetches 100 MiB over HTTP from a server there by a name the embedded DNS forwards to the
//! host's resolver (checked by hash), exchanges UDP, pings; the server sees the host's address,
//! not the task's; the bridge's gateway address reaches the host's own loopback services; two
//! tasks do not reach each other through it (enable_icc=false); a docker_gwbridge made before
//! `swarm init` with another subnet is the one tasks get; nothing is left after the daemon
//! stops. Skips with a printed reason without CAP_NET_ADMIN.

mod cluster;
#[macro_use]
mod lab;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster::{wait_until, Node};
use sha2::{Digest, Sha256};

const SETTLE: Duration = Duration::from_secs(40);
const BLOB: usize = 100 * 1024 * 1024;
/// The outside world's server, and the host's side of its link.
const OUTSIDE: Ipv4Addr = Ipv4Addr::new(10, 198, 1, 2);
const HOST_SIDE: Ipv4Addr = Ipv4Addr::new(10, 198, 1, 1);
/// The fake upstream resolver on the host: `outside.test` -> OUTSIDE.
const UPSTREAM: Ipv4Addr = Ipv4Addr::new(127, 0, 53, 94);

/// The blob the server sends: a fixed pattern, and its SHA-256.
fn blob() -> (Arc<Vec<u8>>, String) {
    let mut b = vec![0u8; BLOB];
    let mut state = 0u64;
    lab::pattern(0x5eed, &mut b, &mut state);
    let hash = Sha256::digest(&b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect();
    (Arc::new(b), hash)
}

/// The outside world: a namespace behind a veth pair (host side HOST_SIDE, inside OUTSIDE).
struct Outside {
    ns: lab::Ns,
    host_if: String,
}

impl Outside {
    fn new() -> Outside {
        let p = lab::prefix("eg");
        let ns = lab::Ns::new(&format!("{p}-out"));
        let (host_if, in_if) = (format!("{p}h"), format!("{p}o"));
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &host_if])
            .output();
        lab::ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &in_if,
        ]);
        lab::ip(&["link", "set", &in_if, "netns", &ns.0]);
        lab::ip(&["addr", "add", &format!("{HOST_SIDE}/24"), "dev", &host_if]);
        lab::ip(&["link", "set", &host_if, "up"]);
        lab::ip(&[
            "-n",
            &ns.0,
            "addr",
            "add",
            &format!("{OUTSIDE}/24"),
            "dev",
            &in_if,
        ]);
        lab::ip(&["-n", &ns.0, "link", "set", &in_if, "up"]);
        Outside { ns, host_if }
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}

/// An HTTP/1.0 server in `ns` on OUTSIDE:8000: `GET /blob` sends the blob; every peer address
/// it saw is kept.
fn http_server(ns: &str, blob: Arc<Vec<u8>>, stop: Arc<AtomicBool>) -> Arc<Mutex<Vec<SocketAddr>>> {
    let peers = Arc::new(Mutex::new(Vec::new()));
    let seen = peers.clone();
    let listener = lab::in_ns(ns, || {
        TcpListener::bind((OUTSIDE, 8000)).expect("bind 8000")
    });
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Ok((mut s, peer)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            seen.lock().unwrap().push(peer);
            let blob = blob.clone();
            std::thread::spawn(move || {
                s.set_nonblocking(false).unwrap();
                let mut line = String::new();
                let mut r = BufReader::new(s.try_clone().unwrap());
                if r.read_line(&mut line).is_err() {
                    return;
                }
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) <= 2 {
                        break;
                    }
                }
                let head = format!(
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
                    blob.len()
                );
                let _ = s.write_all(head.as_bytes());
                let _ = s.write_all(&blob);
            });
        }
    });
    peers
}

/// A UDP echo in `ns` on OUTSIDE:9000, keeping the senders' addresses.
fn udp_echo(ns: &str, stop: Arc<AtomicBool>) -> Arc<Mutex<Vec<SocketAddr>>> {
    let peers = Arc::new(Mutex::new(Vec::new()));
    let seen = peers.clone();
    let sock = lab::in_ns(ns, || UdpSocket::bind((OUTSIDE, 9000)).expect("bind 9000"));
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                seen.lock().unwrap().push(from);
                let _ = sock.send_to(&buf[..n], from);
            }
        }
    });
    peers
}

/// A fake upstream resolver on UPSTREAM:53: `outside.test` -> OUTSIDE, anything else NXDOMAIN.
fn upstream(stop: Arc<AtomicBool>) {
    use hickory_proto::op::{Message, MessageType, ResponseCode};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{RData, Record, RecordType};
    let sock = UdpSocket::bind((UPSTREAM, 53)).expect("bind the fake upstream");
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let Some(question) = q.queries().first().cloned() else {
                continue;
            };
            let mut m = Message::new();
            m.set_id(q.id())
                .set_message_type(MessageType::Response)
                .set_recursion_desired(q.recursion_desired())
                .set_recursion_available(true);
            let known = question.name().to_ascii().trim_end_matches('.') == "outside.test";
            if known && question.query_type() == RecordType::A {
                m.add_answer(Record::from_rdata(
                    question.name().clone(),
                    60,
                    RData::A(A(OUTSIDE)),
                ));
            } else if !known {
                m.set_response_code(ResponseCode::NXDomain);
            }
            m.add_query(question);
            let _ = sock.send_to(&m.to_vec().unwrap(), from);
        }
    });
}

/// `swarmnet exec TASK -- CMD...`: (success, stdout, stderr).
fn exec(n: &Node, task: &str, cmd: &[&str]) -> (bool, String, String) {
    let mut args = vec!["exec", task, "--"];
    args.extend_from_slice(cmd);
    let out = n.run(&args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The network namespace of the running task `service.slot` (program tasks get one each).
fn task_netns(service_slot: &str) -> Option<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .find(|n| n.starts_with(&format!("{service_slot}.")))
        .map(str::to_string)
}

/// docker_gwbridge's endpoints as `network inspect` shows them: (name, IPv4 address).
fn gwbridge_endpoints(n: &Node) -> Vec<(String, Ipv4Addr)> {
    let v: serde_json::Value =
        serde_json::from_str(&n.ok(&["network", "inspect", "docker_gwbridge"])).unwrap();
    v[0]["Containers"]
        .as_object()
        .into_iter()
        .flat_map(|c| c.values())
        .map(|c| {
            let ip = c["IPv4Address"]
                .as_str()
                .unwrap()
                .split('/')
                .next()
                .unwrap();
            (c["Name"].as_str().unwrap().to_string(), ip.parse().unwrap())
        })
        .collect()
}

fn start_node(ip: &str, name: &str, resolv: &std::path::Path) -> Node {
    Node::start_with_args(ip, name, &["--resolv-conf", resolv.to_str().unwrap()])
}

#[test]
fn tasks_reach_the_outside_world_through_the_node() {
    if let Some(why) = lab::skip_reason() {
        eprintln!("SKIPPED tasks_reach_the_outside_world_through_the_node: {why}");
        return;
    }
    let _one = cluster::exclusive("egress-root");
    let outside = Outside::new();
    let stop = Arc::new(AtomicBool::new(false));
    let (blob, hash) = blob();
    let http_peers = http_server(&outside.ns.0, blob, stop.clone());
    let udp_peers = udp_echo(&outside.ns.0, stop.clone());
    upstream(stop.clone());
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, format!("nameserver {UPSTREAM}\n")).unwrap();

    let n = start_node("127.94.0.1", "egress-1", &resolv);
    n.init();
    n.ok(&["network", "create", "-d", "overlay", "egress-net"]);
    for name in ["client", "peer"] {
        n.ok(&[
            "service",
            "create",
            "-d",
            "--name",
            name,
            "--network",
            "egress-net",
            "/bin/sleep",
            "3600",
        ]);
    }
    assert!(
        wait_until(SETTLE, || task_netns("client.1").is_some()
            && task_netns("peer.1").is_some()
            && gwbridge_endpoints(&n).len() == 2),
        "{}",
        n.log()
    );
    let client_ns = task_netns("client.1").unwrap();
    let peer_ns = task_netns("peer.1").unwrap();

    // Each task's way out: its last interface, on docker_gwbridge (172.18.0.0/16), with the
    // default route through the bridge's gateway.
    let gw = gwbridge_endpoints(&n);
    assert!(
        gw.iter().all(|(name, ip)| name.starts_with("gateway_")
            && "172.18.0.0/16"
                .parse::<ipnet::Ipv4Net>()
                .unwrap()
                .contains(ip)),
        "{gw:?}"
    );
    let (ok, route, err) = exec(&n, "client.1", &["ip", "-4", "route", "show", "default"]);
    assert!(ok, "{err}");
    assert!(route.contains("via 172.18.0.1 dev eth1"), "{route}");

    // 100 MiB over HTTP from the outside world, by a name the embedded DNS forwards.
    let (ok, out, err) = exec(
        &n,
        "client.1",
        &[
            "sh",
            "-c",
            "curl -sS --max-time 60 http://outside.test:8000/blob | sha256sum",
        ],
    );
    assert!(ok, "{err}\n{}", n.log());
    assert!(out.starts_with(&hash), "{out} {err}");
    // The server saw the host's side of its link, not the task's address.
    let seen = http_peers.lock().unwrap().clone();
    assert!(!seen.is_empty());
    assert!(
        seen.iter()
            .all(|p| p.ip() == std::net::IpAddr::V4(HOST_SIDE)),
        "{seen:?}"
    );

    // UDP request and response.
    let (sent, got) = lab::udp_exchange_echo(&client_ns, OUTSIDE, 9000, vec![1, 512, 1400]);
    assert_eq!(sent, got);
    assert!(udp_peers
        .lock()
        .unwrap()
        .iter()
        .all(|p| p.ip() == std::net::IpAddr::V4(HOST_SIDE)));

    // ICMP echo.
    assert!(lab::ping(&client_ns, OUTSIDE, 5).is_some(), "{}", n.log());

    // The bridge's gateway is the host itself: a service on its loopback answers.
    let host_service = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = host_service.local_addr().unwrap().port();
    let accepted = std::thread::spawn(move || {
        let (mut s, _) = host_service.accept().unwrap();
        s.write_all(b"host here").unwrap();
    });
    let answer = lab::in_ns(&client_ns, move || {
        let mut s = TcpStream::connect_timeout(
            &SocketAddr::from((Ipv4Addr::new(172, 18, 0, 1), port)),
            Duration::from_secs(5),
        )
        .expect("connect to the gateway");
        let mut got = String::new();
        s.read_to_string(&mut got).unwrap();
        got
    });
    accepted.join().unwrap();
    assert_eq!(answer, "host here");

    // enable_icc=false: the other task's gwbridge address is not reachable through it.
    let peer_gw = gw
        .iter()
        .map(|(_, ip)| *ip)
        .find(|ip| {
            let ns = peer_ns.clone();
            let ip = *ip;
            lab::in_ns(&ns, move || {
                std::process::Command::new("ip")
                    .args(["-4", "-o", "addr", "show"])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).contains(&ip.to_string()))
                    .unwrap_or(false)
            })
        })
        .expect("the peer's gwbridge address");
    let listener = lab::in_ns(&peer_ns, move || {
        TcpListener::bind((peer_gw, 7777)).expect("bind in the peer")
    });
    let reached = lab::in_ns(&client_ns, move || {
        TcpStream::connect_timeout(&SocketAddr::from((peer_gw, 7777)), Duration::from_secs(2))
            .is_ok()
    });
    drop(listener);
    assert!(!reached, "a task reached another through docker_gwbridge");

    // Nothing is left once the daemon stops.
    drop(n);
    assert!(task_netns("client.1").is_none() && task_netns("peer.1").is_none());
    stop.store(true, Ordering::Relaxed);
}

#[test]
fn a_docker_gwbridge_made_before_init_is_the_one_tasks_get() {
    if let Some(why) = lab::skip_reason() {
        eprintln!("SKIPPED a_docker_gwbridge_made_before_init_is_the_one_tasks_get: {why}");
        return;
    }
    let _one = cluster::exclusive("egress-root");
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, format!("nameserver {UPSTREAM}\n")).unwrap();
    let n = start_node("127.94.0.2", "egress-2", &resolv);
    // A node that was in a swarm keeps its docker_gwbridge (as Docker does): removed first.
    n.init();
    n.ok(&["swarm", "leave", "--force"]);
    n.ok(&["network", "rm", "docker_gwbridge"]);
    n.ok(&[
        "network",
        "create",
        "--subnet",
        "10.11.0.0/16",
        "--opt",
        "com.docker.network.bridge.name=docker_gwbridge",
        "--opt",
        "com.docker.network.bridge.enable_icc=false",
        "docker_gwbridge",
    ]);
    n.init();
    // Inside the swarm it can no longer be changed.
    let err = n.fails(&["network", "rm", "docker_gwbridge"]);
    assert!(err.contains("leave the swarm first"), "{err}");
    n.ok(&["network", "create", "-d", "overlay", "custom-net"]);
    n.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "custom",
        "--network",
        "custom-net",
        "/bin/sleep",
        "3600",
    ]);
    assert!(
        wait_until(SETTLE, || gwbridge_endpoints(&n).len() == 1),
        "{}",
        n.log()
    );
    let (_, ip) = gwbridge_endpoints(&n).remove(0);
    assert!(
        "10.11.0.0/16"
            .parse::<ipnet::Ipv4Net>()
            .unwrap()
            .contains(&ip),
        "{ip}"
    );
    let (ok, route, err) = exec(&n, "custom.1", &["ip", "-4", "route", "show", "default"]);
    assert!(ok, "{err}");
    assert!(route.contains("via 10.11.0.1 dev eth1"), "{route}");
}
