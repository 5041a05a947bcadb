//! The ingress routing mesh across three daemons, as a user checks it: `service create -p
//! 8080:80` and plain HTTP requests to every node's published address (`daemon --publish-addr
//! 127.95.N.x`), a node without a task answering too, UDP echo through a published port, the
//! PROXY v2 header whoami shows, and the customisation of the ingress network. Tasks are
//! virtual, so these run without privilege; each test has its own loopback /24 (127.95.N).

mod cluster;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use cluster::{three_named_managers_with, wait_until, Node};

const SETTLE: Duration = Duration::from_secs(40);

fn publish_on_own_address(ip: &str) -> Vec<String> {
    vec!["--publish-addr".into(), ip.into()]
}

/// One HTTP GET of `/` at `addr`: the whoami page, or why not.
fn get(addr: &str) -> Result<String, String> {
    let sa: SocketAddr = addr.parse().map_err(|e| format!("{e}"))?;
    let mut s = TcpStream::connect_timeout(&sa, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.write_all(b"GET / HTTP/1.1\r\nHost: mesh\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut body = String::new();
    s.read_to_string(&mut body)
        .map_err(|e| format!("read {addr}: {e}"))?;
    if !body.starts_with("HTTP/1.1 200 OK") {
        return Err(format!("not a 200 from {addr}: {body:?}"));
    }
    Ok(body)
}

/// The value of `Key: value` in a whoami page.
fn field<'a>(page: &'a str, key: &str) -> Option<&'a str> {
    page.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
}

/// Writes `msg` on `s` and reads it back.
fn echo_round(mut s: &TcpStream, msg: &[u8]) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(3))).ok();
    let mut got = vec![0u8; msg.len()];
    s.write_all(msg).is_ok() && s.read_exact(&mut got).is_ok() && got == msg
}

/// `service ps` rows meant to run: (task name, node) of those running.
fn running(n: &Node, service: &str) -> Vec<(String, String)> {
    n.ok(&["service", "ps", "-f", "desired-state=running", service])
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l
                .split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect();
            cols.get(5)?
                .starts_with("Running")
                .then(|| (cols[1].to_string(), cols[3].to_string()))
        })
        .collect()
}

fn wait_running(n: &Node, service: &str, want: usize) -> Vec<(String, String)> {
    let mut last = Vec::new();
    let ok = wait_until(SETTLE, || {
        last = running(n, service);
        last.len() == want
    });
    assert!(
        ok,
        "{service} never had {want} running tasks: {last:?}\n{}",
        n.log()
    );
    last
}

#[test]
fn published_port_answers_on_every_node_and_reaches_every_task() {
    let (n1, n2, n3) = three_named_managers_with("127.95.1", publish_on_own_address);
    n1.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "my-web",
        "--replicas",
        "2",
        "-p",
        "8080:80",
        "swarmnet/whoami",
    ]);
    let tasks = wait_running(&n1, "my-web", 2);
    let task_nodes: BTreeSet<&str> = tasks.iter().map(|t| t.1.as_str()).collect();
    let nodes = [&n1, &n2, &n3];
    // With two replicas over three nodes, one node has no task and must answer all the same.
    assert_eq!(task_nodes.len(), 2, "{tasks:?}");
    let want: BTreeSet<String> = tasks.iter().map(|t| t.0.clone()).collect();
    let task_of = |page: &str| {
        let host = field(page, "Hostname").unwrap_or("");
        host.split('.').take(2).collect::<Vec<_>>().join(".")
    };
    for n in nodes {
        let addr = format!("{}:8080", n.ip);
        // The mesh is ready once the node has the ingress network and every node has learnt
        // the others' sandboxes (a task whose answers went nowhere is passed over for a while
        // by the load balancer): then every task answers.
        let mut seen = BTreeSet::new();
        assert!(
            wait_until(SETTLE, || {
                if let Ok(page) = get(&addr) {
                    seen.insert(task_of(&page));
                }
                seen == want
            }),
            "{addr} never reached every task: {seen:?}, {:?}\n{}",
            get(&addr),
            n.log()
        );
    }
    for n in nodes {
        let addr = format!("{}:8080", n.ip);
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for i in 0..100 {
            let page = get(&addr).unwrap_or_else(|e| panic!("request {i} to {addr}: {e}"));
            let host = task_of(&page);
            // Like Docker, the task sees the node's ingress sandbox, not the client.
            let remote = field(&page, "RemoteAddr").unwrap_or("");
            assert!(
                !remote.starts_with("127."),
                "the task saw the client: {page}"
            );
            *seen.entry(host).or_default() += 1;
        }
        let names: BTreeSet<String> = seen.keys().cloned().collect();
        assert_eq!(names, want, "requests to {addr} reached {seen:?}");
    }
}

#[test]
fn udp_echo_and_proxy_protocol_through_published_ports() {
    let (n1, n2, _n3) = three_named_managers_with("127.95.2", publish_on_own_address);
    n1.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "echo",
        "--replicas",
        "1",
        "-p",
        "7007:7/udp",
        "-p",
        "7008:7",
        "--constraint",
        "node.hostname==node-1",
        "swarmnet/echo",
    ]);
    n1.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "who",
        "--replicas",
        "1",
        "-p",
        "published=8081,target=80,proxy-protocol=v2",
        "--constraint",
        "node.hostname==node-1",
        "swarmnet/whoami",
    ]);
    n1.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "hostport",
        "--replicas",
        "1",
        "-p",
        "mode=host,published=8084,target=80",
        "--constraint",
        "node.hostname==node-2",
        "swarmnet/whoami",
    ]);
    wait_running(&n1, "echo", 1);
    wait_running(&n1, "who", 1);
    let host_task = wait_running(&n1, "hostport", 1);

    // Host mode: the node running the task publishes, straight to it; the others do not.
    let on_task = format!("{}:8084", n2.ip);
    let mut page = Err(String::new());
    assert!(
        wait_until(SETTLE, || {
            page = get(&on_task);
            page.is_ok()
        }),
        "{on_task}: {page:?}\n{}",
        n2.log()
    );
    let page = page.unwrap();
    assert!(
        field(&page, "Hostname").is_some_and(|h| h.starts_with(&host_task[0].0)),
        "{page}"
    );
    let elsewhere: SocketAddr = format!("{}:8084", n1.ip).parse().unwrap();
    let refused = TcpStream::connect_timeout(&elsewhere, Duration::from_secs(2));
    assert!(
        refused.is_err(),
        "node-1 publishes host-mode port 8084 without a task"
    );
    // UDP from a node without the task: through node-2's published port to node-1's task.
    let client = UdpSocket::bind("127.95.2.100:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let to = format!("{}:7007", n2.ip);
    let mut buf = [0u8; 64];
    let echoed = wait_until(SETTLE, || {
        client.send_to(b"ping through the mesh", &to).is_ok()
            && matches!(client.recv_from(&mut buf), Ok((21, _)))
    });
    assert!(echoed, "no UDP echo through {to}\n{}", n2.log());
    assert_eq!(&buf[..21], b"ping through the mesh");

    // A connection through the mesh keeps working while backends are added.
    let through: SocketAddr = format!("{}:7008", _n3.ip).parse().unwrap();
    let mut held = None;
    assert!(
        wait_until(SETTLE, || {
            held = TcpStream::connect_timeout(&through, Duration::from_secs(2))
                .ok()
                .filter(|s| echo_round(s, b"before"));
            held.is_some()
        }),
        "no TCP echo through {through}"
    );
    let held = held.unwrap();
    n1.ok(&["service", "scale", "-d", "echo=3"]);
    wait_running(&n1, "echo", 3);
    assert!(
        echo_round(&held, b"after scaling"),
        "the held connection broke"
    );
    drop(held);

    // --publish-add / --publish-rm: every node follows, the other services are untouched.
    let who_tasks = running(&n1, "who");
    n1.ok(&["service", "update", "-d", "--publish-add", "8086:7", "echo"]);
    let tcp_echo = |addr: &str| -> bool {
        let Ok(sa) = addr.parse::<SocketAddr>() else {
            return false;
        };
        let Ok(mut s) = TcpStream::connect_timeout(&sa, Duration::from_secs(2)) else {
            return false;
        };
        s.set_read_timeout(Some(Duration::from_secs(2))).ok();
        let mut got = [0u8; 5];
        s.write_all(b"hello").is_ok() && s.read_exact(&mut got).is_ok() && &got == b"hello"
    };
    for n in [&n1, &n2, &_n3] {
        let addr = format!("{}:8086", n.ip);
        assert!(
            wait_until(SETTLE, || tcp_echo(&addr)),
            "no TCP echo at {addr} after --publish-add\n{}",
            n.log()
        );
    }
    n1.ok(&["service", "update", "-d", "--publish-rm", "7/tcp", "echo"]);
    for n in [&n1, &n2, &_n3] {
        let gone: SocketAddr = format!("{}:8086", n.ip).parse().unwrap();
        assert!(
            wait_until(SETTLE, || TcpStream::connect_timeout(
                &gone,
                Duration::from_secs(1)
            )
            .is_err()),
            "{gone} still open after --publish-rm"
        );
    }
    assert_eq!(running(&n1, "who"), who_tasks);

    // PROXY v2: whoami sees the client's own address and port.
    let addr = format!("{}:8081", n2.ip);
    assert!(
        wait_until(SETTLE, || get(&addr).is_ok()),
        "{addr}: {:?}",
        get(&addr)
    );
    let sa: SocketAddr = addr.parse().unwrap();
    let mut s = TcpStream::connect(sa).unwrap();
    let me = s.local_addr().unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: mesh\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut page = String::new();
    s.read_to_string(&mut page).unwrap();
    assert_eq!(
        field(&page, "RemoteAddr"),
        Some(me.to_string().as_str()),
        "{page}"
    );
    assert!(
        field(&page, "ProxiedBy").is_some_and(|p| !p.starts_with("127.")),
        "{page}"
    );
}

/// `network rm NAME` answering the WARNING prompt with `answer`: (stdout, stderr, success).
fn rm_network(n: &Node, name: &str, answer: &str) -> (String, String, bool) {
    use std::process::{Command, Stdio};
    let mut child = Command::new(cluster::BIN)
        .args(["-H", &n.host(), "network", "rm", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{answer}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        cluster::stdout(&out),
        cluster::stderr(&out),
        out.status.success(),
    )
}

#[test]
fn ingress_is_removed_and_recreated_with_a_new_subnet_and_mtu() {
    let (n1, n2, _n3) = three_named_managers_with("127.95.3", publish_on_own_address);
    n1.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "pub",
        "-p",
        "8082:80",
        "swarmnet/whoami",
    ]);
    n1.ok(&["network", "create", "-d", "overlay", "backend"]);
    n1.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "internal",
        "--network",
        "backend",
        "swarmnet/whoami",
    ]);
    wait_running(&n1, "pub", 1);
    wait_running(&n1, "internal", 1);
    let id = n1
        .ok(&["service", "inspect", "-f", "{{.ID}}", "pub"])
        .trim()
        .to_string();

    // Refused while a service publishes through it, after the WARNING prompt.
    let (out, err, ok) = rm_network(&n1, "ingress", "y");
    assert!(!ok);
    assert!(
        out.starts_with("WARNING! Before removing the routing-mesh network"),
        "{out}"
    );
    assert!(
        out.contains("Are you sure you want to continue? [y/N] "),
        "{out}"
    );
    assert!(
        err.contains(&format!(
            "ingress network cannot be removed because service {id} depends on it"
        )),
        "{err}"
    );
    // Answering no removes nothing.
    let (_, _, ok) = rm_network(&n1, "ingress", "n");
    assert!(ok);
    n1.ok(&["network", "inspect", "ingress"]);

    n1.ok(&["service", "rm", "pub"]);
    let (out, err, ok) = rm_network(&n1, "ingress", "y");
    assert!(ok, "{out}{err}");
    assert!(out.trim_end().ends_with("ingress"), "{out}");
    // Without ingress: no published port, the other service keeps running.
    let err = n1.fails(&[
        "service",
        "create",
        "-d",
        "--name",
        "p2",
        "-p",
        "8083:80",
        "swarmnet/whoami",
    ]);
    assert!(
        err.contains("service needs ingress network, but no ingress network is present"),
        "{err}"
    );
    assert_eq!(running(&n1, "internal").len(), 1);

    n1.ok(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--ingress",
        "--subnet",
        "10.11.0.0/16",
        "--gateway",
        "10.11.0.2",
        "--opt",
        "com.docker.network.driver.mtu=1200",
        "my-ingress",
    ]);
    let err = n1.fails(&["network", "create", "-d", "overlay", "--ingress", "another"]);
    assert!(err.contains("is already present"), "{err}");
    let ipam = n1.ok(&[
        "network",
        "inspect",
        "-f",
        "{{json .IPAM.Config}}",
        "my-ingress",
    ]);
    assert!(
        ipam.contains("\"Subnet\":\"10.11.0.0/16\"") && ipam.contains("\"Gateway\":\"10.11.0.2\""),
        "{ipam}"
    );
    let opts = n1.ok(&[
        "network",
        "inspect",
        "-f",
        "{{json .Options}}",
        "my-ingress",
    ]);
    assert!(
        opts.contains("\"com.docker.network.driver.mtu\":\"1200\""),
        "{opts}"
    );

    n1.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "p2",
        "--constraint",
        "node.hostname==node-1",
        "-p",
        "8083:80",
        "swarmnet/whoami",
    ]);
    wait_running(&n1, "p2", 1);
    // The task is on the new ingress: its address there is in 10.11.0.0/16.
    let page = {
        let addr = format!("{}:8083", n2.ip);
        let mut page = Err(String::new());
        assert!(
            wait_until(SETTLE, || {
                page = get(&addr);
                page.is_ok()
            }),
            "{addr}: {page:?}\n{}",
            n2.log()
        );
        page.unwrap()
    };
    let containers = n1.ok(&[
        "network",
        "inspect",
        "-f",
        "{{json .Containers}}",
        "my-ingress",
    ]);
    let ip = field(&page, "IP").unwrap_or("");
    assert!(ip.starts_with("10.11."), "{page}");
    assert!(
        containers.contains(&format!("\"{ip}/16\"")),
        "{ip} not in {containers}"
    );
    // A node without a task has its sandbox on the new ingress (Docker's ingress-sbox).
    let on_n2 = n2.ok(&[
        "network",
        "inspect",
        "-f",
        "{{json .Containers}}",
        "my-ingress",
    ]);
    assert!(
        on_n2.contains("\"ingress-sbox\"") && on_n2.contains("\"IPv4Address\":\"10.11."),
        "{on_n2}"
    );
    // The routing mesh reaches the task from its sandbox on the new ingress.
    assert!(
        field(&page, "RemoteAddr").is_some_and(|r| r.starts_with("10.11.")),
        "{page}"
    );
}
