//! Swarm networks end to end: real daemons on their own loopback addresses, driven by the CLI
//! as a user types the seed's commands. Each test uses its own 127.91.N.0/24.

mod cluster;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use cluster::{stderr, stdout, wait_until, Node, BIN};
use swarmnet::api::NOT_A_MANAGER;

const SETTLE: Duration = Duration::from_secs(20);

/// `network inspect NAME` as JSON (one object).
fn inspect(node: &Node, name: &str) -> serde_json::Value {
    let out = node.ok(&["network", "inspect", name]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect prints JSON");
    v[0].clone()
}

/// Names in `network ls`, in its order.
fn names(node: &Node) -> Vec<String> {
    node.ok(&["network", "ls"])
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
        .collect()
}

/// Runs the CLI with `input` on stdin.
fn with_stdin(node: &Node, args: &[&str], input: &str) -> std::process::Output {
    let mut child = Command::new(BIN)
        .args(["-H", &node.host()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn the_seeds_network_commands_give_dockers_outputs() {
    let n1 = Node::start("127.91.1.1");
    // Outside a swarm: Docker's text for an overlay network.
    assert_eq!(
        n1.fails(&["network", "create", "-d", "overlay", "my-network"]).trim(),
        "Error response from daemon: This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again."
    );
    n1.init();

    // init made ingress (first pool subnet, VNI 4096) and the node's docker_gwbridge.
    assert_eq!(names(&n1), ["docker_gwbridge", "ingress"]);
    let ingress = inspect(&n1, "ingress");
    assert_eq!(ingress["Ingress"], true);
    assert_eq!(ingress["Scope"], "swarm");
    assert_eq!(ingress["IPAM"]["Config"][0]["Subnet"], "10.0.0.0/24");
    assert_eq!(ingress["IPAM"]["Config"][0]["Gateway"], "10.0.0.1");
    assert_eq!(
        ingress["Options"]["com.docker.network.driver.overlay.vxlanid_list"],
        "4096"
    );
    let gw = inspect(&n1, "docker_gwbridge");
    assert_eq!(gw["Scope"], "local");
    assert_eq!(gw["Driver"], "bridge");
    assert_eq!(gw["IPAM"]["Config"][0]["Subnet"], "172.18.0.0/16");
    assert_eq!(
        gw["Options"]["com.docker.network.bridge.name"],
        "docker_gwbridge"
    );

    // The seed's first command: an ID of 25 base-36 characters, VNI 4097, the next /24.
    let id = n1.ok(&["network", "create", "-d", "overlay", "my-network"]);
    let id = id.trim();
    assert_eq!(id.len(), 25, "{id}");
    assert!(id
        .bytes()
        .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()));
    let net = inspect(&n1, "my-network");
    assert_eq!(net["Id"], id);
    assert_eq!(net["IPAM"]["Config"][0]["Subnet"], "10.0.1.0/24");
    assert_eq!(
        net["Options"]["com.docker.network.driver.overlay.vxlanid_list"],
        "4097"
    );
    // Docker's keys, in Docker's order.
    let keys: Vec<&str> = net
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    let want = [
        "Name",
        "Id",
        "Created",
        "Scope",
        "Driver",
        "EnableIPv6",
        "IPAM",
        "Internal",
        "Attachable",
        "Ingress",
        "ConfigFrom",
        "ConfigOnly",
        "Containers",
        "Options",
        "Labels",
    ];
    let mut sorted_keys = keys.clone();
    sorted_keys.sort();
    let mut sorted_want = want.to_vec();
    sorted_want.sort();
    assert_eq!(sorted_keys, sorted_want);
    // --format takes Docker's Go templates.
    assert_eq!(
        n1.ok(&[
            "network",
            "inspect",
            "-f",
            "{{.Name}} {{json .IPAM}} {{range .IPAM.Config}}{{.Subnet}}{{end}}",
            "my-network",
            "ingress",
        ]),
        "my-network {\"Driver\":\"default\",\"Options\":null,\"Config\":[{\"Subnet\":\"10.0.1.0/24\",\"Gateway\":\"10.0.1.1\"}]} 10.0.1.0/24\n\
         ingress {\"Driver\":\"default\",\"Options\":null,\"Config\":[{\"Subnet\":\"10.0.0.0/24\",\"Gateway\":\"10.0.0.1\"}]} 10.0.0.0/24\n"
    );
    assert_eq!(
        n1.ok(&[
            "node",
            "inspect",
            "-f",
            "{{.Spec.Role}} {{json .Spec}}",
            "self"
        ]),
        "manager {\"Labels\":{},\"Role\":\"manager\",\"Availability\":\"active\"}\n"
    );
    // An ID prefix works wherever a name does.
    assert_eq!(inspect(&n1, &id[..6])["Name"], "my-network");

    // With subnet, gateway, encryption, attachable, MTU and labels.
    n1.ok(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--subnet",
        "10.0.9.0/24",
        "--gateway",
        "10.0.9.99",
        "--opt",
        "encrypted",
        "--attachable",
        "-o",
        "com.docker.network.driver.mtu=1400",
        "--label",
        "tier=web",
        "my-net2",
    ]);
    let net2 = inspect(&n1, "my-net2");
    assert_eq!(net2["IPAM"]["Config"][0]["Gateway"], "10.0.9.99");
    assert_eq!(net2["Options"]["encrypted"], "");
    assert_eq!(net2["Options"]["com.docker.network.driver.mtu"], "1400");
    assert_eq!(net2["Attachable"], true);
    assert_eq!(net2["Labels"]["tier"], "web");

    // Docker's refusals, word for word, exit 1.
    let refusals: &[(&[&str], &str)] = &[
        (
            &["network", "create", "-d", "overlay", "my-network"],
            "Error response from daemon: network with name my-network already exists",
        ),
        (
            &["network", "create", "--subnet", "10.0.9.0/33", "bad"],
            "Error response from daemon: Invalid subnet 10.0.9.0/33 : invalid CIDR address: 10.0.9.0/33",
        ),
        (
            &["network", "create", "--subnet", "10.0.50.0/24", "--gateway", "10.0.10.1", "badgw"],
            "Error response from daemon: no matching subnet for gateway 10.0.10.1",
        ),
        (
            &["network", "create", "--subnet", "10.0.9.0/25", "dup"],
            "Error response from daemon: subnet 10.0.9.0/25 overlaps network my-net2 (10.0.9.0/24)",
        ),
        (
            &["network", "create", "--subnet", "10.0.0.0/16", "wide"],
            "Error response from daemon: subnet 10.0.0.0/16 overlaps network ingress (10.0.0.0/24)",
        ),
        (
            &["network", "create", "--ingress", "--attachable", "ing2"],
            &format!(
                "Error response from daemon: ingress network ({}) is already present",
                ingress["Id"].as_str().unwrap()
            ),
        ),
        (
            &["network", "create", "-o", "com.docker.network.driver.mtu=67", "m"],
            "Error response from daemon: invalid value \"67\" for option com.docker.network.driver.mtu: expected a number of bytes from 68 to 65535",
        ),
        (
            &["network", "create", "-o", "com.docker.network.driver.overlay.vxlanid_list=4097", "v"],
            "Error response from daemon: VXLAN ID 4097 is already in use by network my-network",
        ),
        (
            &["network", "rm", "docker_gwbridge"],
            "Error response from daemon: docker_gwbridge cannot be created, changed or removed while this node is in a swarm: leave the swarm first (swarm leave), as on Docker",
        ),
    ];
    for (args, want) in refusals {
        let out = n1.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(stderr(&out).trim(), *want, "{args:?}");
    }
    assert_eq!(
        names(&n1),
        ["docker_gwbridge", "ingress", "my-net2", "my-network"],
        "a refused create leaves nothing"
    );

    // ls: columns, 12-character IDs, filters, -q.
    let ls = n1.ok(&["network", "ls", "-f", "driver=overlay"]);
    let mut lines = ls.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 3, "{ls}");
    assert!(rows
        .iter()
        .all(|r| r[0].len() == 12 && r[2] == "overlay" && r[3] == "swarm"));
    assert_eq!(
        n1.ok(&["network", "ls", "-q", "-f", "name=my-net2", "--no-trunc"])
            .trim(),
        net2["Id"].as_str().unwrap()
    );
    assert!(n1
        .fails(&["network", "ls", "-f", "colour=blue"])
        .contains("Invalid filter 'colour'"));

    // inspect of several with one unknown: the others printed, the error said, exit 1.
    let out = n1.run(&["network", "inspect", "my-network", "nope", "my-net2"]);
    assert_eq!(out.status.code(), Some(1));
    let found: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(found.as_array().unwrap().len(), 2);
    assert_eq!(
        stderr(&out).trim(),
        "Error response from daemon: network nope not found"
    );

    // rm prints each name; ingress asks first and stays on "n".
    assert_eq!(n1.ok(&["network", "rm", "my-network"]), "my-network\n");
    let out = with_stdin(&n1, &["network", "rm", "ingress"], "n\n");
    assert!(out.status.success());
    assert!(stdout(&out).starts_with("WARNING! Before removing the routing-mesh network"));
    assert!(names(&n1).contains(&"ingress".to_string()));
    let out = with_stdin(&n1, &["network", "rm", "ingress"], "y\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!names(&n1).contains(&"ingress".to_string()));
    // Customising ingress: recreated with --ingress and its own subnet.
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
        "my-ingress",
    ]);
    let ing = inspect(&n1, "my-ingress");
    assert_eq!(ing["Ingress"], true);
    assert_eq!(ing["IPAM"]["Config"][0]["Gateway"], "10.11.0.2");
    assert_eq!(
        ing["Options"]["com.docker.network.driver.overlay.vxlanid_list"], "4096",
        "the freed VNI is given again"
    );

    // prune removes the unused user networks, not ingress or docker_gwbridge.
    let out = n1.ok(&["network", "prune", "-f"]);
    assert_eq!(out, "Deleted Networks:\nmy-net2\n");
    assert_eq!(names(&n1), ["docker_gwbridge", "my-ingress"]);
}

#[test]
fn networks_are_one_on_every_manager_and_survive_a_restart() {
    let (n1, n2, mut n3) = cluster::three_managers("127.91.2");
    let w = Node::start("127.91.2.4");
    let out = w.join(&n1.token("worker"), &n1);
    assert!(out.status.success(), "{}", stderr(&out));

    // Names that are not hex: "a" could be the prefix of a network ID and match it.
    // Created on the leader, seen on every manager the same.
    let id = n1.ok(&["network", "create", "--subnet", "10.0.9.0/24", "one"]);
    // Created on a follower (forwarded to the leader).
    n2.ok(&["network", "create", "two"]);
    for n in [&n1, &n2, &n3] {
        assert!(
            wait_until(SETTLE, || names(n).contains(&"two".to_string())),
            "{} never saw two",
            n.ip
        );
        let a = inspect(n, "one");
        assert_eq!(a["Id"], id.trim());
        assert_eq!(a["IPAM"]["Config"][0]["Subnet"], "10.0.9.0/24");
    }
    // Same name from two managers: one wins.
    assert!(n3
        .fails(&["network", "create", "one"])
        .contains("network with name one already exists"));

    // A worker: refused with Docker's text, sees only its local network.
    assert_eq!(
        w.fails(&["network", "create", "three"]).trim(),
        format!("Error response from daemon: {NOT_A_MANAGER}")
    );
    assert_eq!(names(&w), ["docker_gwbridge"]);
    assert!(w
        .fails(&["network", "inspect", "one"])
        .contains("network one not found"));

    // A restarted manager keeps them.
    n3.restart();
    assert!(wait_until(SETTLE, || n3.info().raft_voters == 3));
    assert_eq!(names(&n3), ["docker_gwbridge", "ingress", "one", "two"]);
}

#[test]
fn a_create_cut_by_the_leaders_death_is_everywhere_or_nowhere() {
    let (mut n1, n2, n3) = cluster::three_managers("127.91.3");
    // Creates in flight while the leader is killed.
    let host = n1.host();
    let creates: Vec<_> = (0..4)
        .map(|i| {
            let host = host.clone();
            std::thread::spawn(move || {
                Command::new(BIN)
                    .args(["-H", &host, "network", "create", &format!("cut-{i}")])
                    .output()
                    .unwrap()
            })
        })
        .collect();
    n1.kill();
    let acknowledged: Vec<String> = creates
        .into_iter()
        .enumerate()
        .filter_map(|(i, t)| {
            t.join()
                .unwrap()
                .status
                .success()
                .then(|| format!("cut-{i}"))
        })
        .collect();
    // The two survivors elect a leader and agree, and every acknowledged create is there.
    assert!(wait_until(SETTLE, || n2.info().raft_leader.is_some()));
    let agreed = wait_until(SETTLE, || {
        let ls = ["network", "ls", "--no-trunc", "-f", "scope=swarm"];
        let (a, b) = (n2.run(&ls), n3.run(&ls));
        a.status.success() && b.status.success() && stdout(&a) == stdout(&b)
    });
    assert!(agreed, "{}\n{}", n2.log(), n3.log());
    let seen = names(&n2);
    for name in &acknowledged {
        assert!(seen.contains(name), "acknowledged {name} lost: {seen:?}");
    }
    // Nothing twice.
    let mut dedup = seen.clone();
    dedup.dedup();
    assert_eq!(dedup, seen);
}

#[test]
fn a_docker_gwbridge_made_before_init_is_kept() {
    let n1 = Node::start("127.91.4.1");
    n1.ok(&[
        "network",
        "create",
        "-d",
        "bridge",
        "--subnet",
        "10.11.0.0/16",
        "--gateway",
        "10.11.0.1",
        "-o",
        "com.docker.network.bridge.enable_icc=false",
        "-o",
        "com.docker.network.bridge.name=docker_gwbridge",
        "docker_gwbridge",
    ]);
    assert!(n1
        .fails(&["network", "create", "-d", "bridge", "other"])
        .contains("a bridge network can only be docker_gwbridge"));
    n1.init();
    let gw = inspect(&n1, "docker_gwbridge");
    assert_eq!(gw["IPAM"]["Config"][0]["Subnet"], "10.11.0.0/16");
    assert_eq!(
        gw["Options"]["com.docker.network.bridge.enable_icc"],
        "false"
    );
    assert!(n1
        .fails(&["network", "rm", "docker_gwbridge"])
        .contains("leave the swarm first"));
    n1.ok(&["swarm", "leave", "--force"]);
    // Still there after leaving, and removable then.
    assert_eq!(
        inspect(&n1, "docker_gwbridge")["IPAM"]["Config"][0]["Subnet"],
        "10.11.0.0/16"
    );
    assert_eq!(
        n1.ok(&["network", "rm", "docker_gwbridge"]),
        "docker_gwbridge\n"
    );
    assert_eq!(names(&n1), Vec::<String>::new());
}
