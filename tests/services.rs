//! Services across three daemons, the way a user runs the seed's commands: an overlay network,
//! `service create --replicas 3` spread over the nodes, tasks answering each other across
//! nodes over the userspace VXLAN (plain and `--opt encrypted`), scaling, draining, a daemon
//! killed with -9 and one restarted. Tasks are virtual (`swarmnet/whoami`, `swarmnet/fetch`),
//! so these run without privilege; each test has its own loopback /24 (127.94.N).

mod cluster;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cluster::{three_named_managers, wait_until, Node};

const SETTLE: Duration = Duration::from_secs(40);

/// `service ps` rows of tasks meant to run: (name, node, current state).
fn running_tasks(n: &Node, service: &str) -> Vec<(String, String, String)> {
    n.ok(&[
        "service",
        "ps",
        "--no-trunc",
        "-f",
        "desired-state=running",
        service,
    ])
    .lines()
    .skip(1)
    .filter_map(|l| {
        let cols: Vec<&str> = l
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        // ID NAME IMAGE NODE DESIRED CURRENT ...
        Some((
            cols.get(1)?.to_string(),
            cols.get(3)?.to_string(),
            cols.get(5)?.to_string(),
        ))
    })
    .collect()
}

/// The REPLICAS column of `service ls` for `name`.
fn replicas(n: &Node, name: &str) -> String {
    n.ok(&["service", "ls", "-f", &format!("name={name}")])
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(3))
        .unwrap_or("")
        .to_string()
}

fn converged(n: &Node, name: &str, want: usize) -> bool {
    let r = replicas(n, name);
    r == format!("{want}/{want}")
        && running_tasks(n, name)
            .iter()
            .filter(|t| t.2.starts_with("Running"))
            .count()
            == want
}

/// The task endpoints every node shows in `network inspect` for `net`: task name -> IP.
fn task_ips(nodes: &[&Node], net: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for n in nodes {
        let v: serde_json::Value =
            serde_json::from_str(&n.ok(&["network", "inspect", net])).unwrap();
        if let Some(c) = v[0]["Containers"].as_object() {
            for ep in c
                .iter()
                .filter(|(k, _)| !k.starts_with("lb-"))
                .map(|(_, v)| v)
            {
                let ip = ep["IPv4Address"].as_str().unwrap();
                out.insert(
                    ep["Name"].as_str().unwrap().to_string(),
                    ip.split('/').next().unwrap().to_string(),
                );
            }
        }
    }
    out
}

/// Lines of `service logs` of `service` containing `needle`.
fn log_lines(n: &Node, service: &str, needle: &str) -> Vec<String> {
    let out = n.run(&["service", "logs", service]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// One fetch task per whoami task, each on a node other than its target's, and every one
/// gets its answer (the fetch app logs `GET URL: 200, N bytes`).
fn every_task_answers_across_nodes(nodes: &[&Node], net: &str, tag: &str) {
    let n1 = nodes[0];
    let ips = task_ips(nodes, net);
    let whoami: Vec<(&String, &String)> = ips
        .iter()
        .filter(|(name, _)| name.starts_with("my-web."))
        .collect();
    assert_eq!(whoami.len(), 3, "{ips:?}");
    let hosts: BTreeMap<String, String> = running_tasks(n1, "my-web")
        .into_iter()
        .map(|(name, node, _)| (name, node))
        .collect();
    for (i, (name, ip)) in whoami.iter().enumerate() {
        let slot = name.split('.').take(2).collect::<Vec<_>>().join(".");
        let host = &hosts[&slot];
        let probe = format!("probe-{tag}-{i}");
        n1.ok(&[
            "service",
            "create",
            "-d",
            "--name",
            &probe,
            "--network",
            net,
            "--constraint",
            &format!("node.hostname!={host}"),
            "swarmnet/fetch",
            &format!("http://{ip}/"),
        ]);
        assert!(
            wait_until(SETTLE, || !log_lines(n1, &probe, ": 200,").is_empty()),
            "{probe} on a node other than {host} never reached {name} at {ip}; logs:\n{}\nps:\n{}\nlog of n1:\n{}",
            String::from_utf8_lossy(&n1.run(&["service", "logs", &probe]).stdout),
            n1.ok(&["service", "ps", &probe]),
            n1.log()
        );
        let ps = running_tasks(n1, &probe);
        assert_eq!(ps.len(), 1);
        assert_ne!(&ps[0].1, host, "the probe ran on its target's node");
        n1.ok(&["service", "rm", &probe]);
    }
}

#[test]
fn three_replicas_spread_over_three_daemons_answer_each_other() {
    let (n1, n2, n3) = three_named_managers("127.94.1");
    n1.ok(&["network", "create", "-d", "overlay", "my-network"]);
    n1.ok(&[
        "service",
        "create",
        "-d",
        "--replicas",
        "3",
        "--name",
        "my-web",
        "--network",
        "my-network",
        "swarmnet/whoami",
    ]);
    assert!(
        wait_until(SETTLE, || converged(&n2, "my-web", 3)),
        "never 3/3: {}\n{}",
        n2.ok(&["service", "ps", "my-web"]),
        n1.log()
    );
    let nodes: BTreeSet<String> = running_tasks(&n1, "my-web")
        .into_iter()
        .map(|t| t.1)
        .collect();
    assert_eq!(
        nodes,
        BTreeSet::from(["node-1".into(), "node-2".into(), "node-3".into()])
    );
    // network inspect on a node: its own task and the three nodes as peers (the other
    // nodes come by gossip, within a round of their tasks running).
    let inspect = || -> serde_json::Value {
        serde_json::from_str(&n3.ok(&["network", "inspect", "my-network"])).unwrap()
    };
    wait_until(SETTLE, || {
        inspect()[0]["Peers"]
            .as_array()
            .is_some_and(|p| p.len() == 3)
    });
    let v = inspect();
    let containers = v[0]["Containers"].as_object().unwrap();
    assert_eq!(
        containers.len(),
        2,
        "its task and its lb-my-network endpoint: {v}"
    );
    assert_eq!(
        containers["lb-my-network"]["Name"], "my-network-endpoint",
        "{v}"
    );
    let ep = containers
        .iter()
        .find(|(k, _)| !k.starts_with("lb-"))
        .map(|(_, v)| v)
        .unwrap();
    assert!(ep["Name"].as_str().unwrap().starts_with("my-web."));
    let ip = ep["IPv4Address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let o: Vec<u8> = ip.split('.').map(|x| x.parse().unwrap()).collect();
    assert_eq!(
        ep["MacAddress"],
        format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
    );
    assert_eq!(v[0]["Peers"].as_array().unwrap().len(), 3, "{v}");
    every_task_answers_across_nodes(&[&n1, &n2, &n3], "my-network", "plain");

    // Scale up and down.
    n1.ok(&["service", "scale", "-d", "my-web=5"]);
    assert!(wait_until(SETTLE, || converged(&n1, "my-web", 5)));
    n2.ok(&["service", "scale", "-d", "my-web=2"]);
    assert!(wait_until(SETTLE, || converged(&n1, "my-web", 2)));
    assert_eq!(running_tasks(&n1, "my-web").len(), 2);

    // A replica no node may take waits as a pending task that says why, as on Docker.
    n1.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "nowhere",
        "--constraint",
        "node.hostname==no-such-node",
        "swarmnet/whoami",
    ]);
    assert!(
        wait_until(SETTLE, || {
            let ps = n1.ok(&["service", "ps", "--no-trunc", "nowhere"]);
            ps.contains(" Pending ")
                && ps.contains(
                    "\"no suitable node (scheduling constraints not satisfied on 3 nodes)\"",
                )
        }),
        "{}",
        n1.ok(&["service", "ps", "--no-trunc", "nowhere"])
    );
}

#[test]
fn tasks_on_an_encrypted_network_answer_each_other() {
    let (n1, n2, n3) = three_named_managers("127.94.2");
    n1.ok(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--opt",
        "encrypted",
        "my-net2",
    ]);
    n1.ok(&[
        "service",
        "create",
        "-d",
        "--replicas",
        "3",
        "--name",
        "my-web",
        "--network",
        "my-net2",
        "swarmnet/whoami",
    ]);
    assert!(wait_until(SETTLE, || converged(&n1, "my-web", 3)));
    every_task_answers_across_nodes(&[&n1, &n2, &n3], "my-net2", "enc");
}

#[test]
fn drain_a_node_and_kill_another_and_their_tasks_move() {
    let (n1, n2, mut n3) = three_named_managers("127.94.3");
    n1.ok(&["network", "create", "-d", "overlay", "my-network"]);
    n1.ok(&[
        "service",
        "create",
        "-d",
        "--replicas",
        "3",
        "--name",
        "my-web",
        "--network",
        "my-network",
        "swarmnet/whoami",
    ]);
    assert!(wait_until(SETTLE, || converged(&n1, "my-web", 3)));

    // Drain node-2: its task moves, none runs there.
    let id2 = n2.id();
    n1.ok(&["node", "update", "--availability", "drain", &id2]);
    assert!(
        wait_until(SETTLE, || {
            let ts = running_tasks(&n1, "my-web");
            converged(&n1, "my-web", 3) && ts.iter().all(|t| t.1 != "node-2")
        }),
        "{}",
        n1.ok(&["service", "ps", "my-web"])
    );
    // node-2 stops its task once the leader's answer reaches it.
    assert!(wait_until(SETTLE, || task_ips(&[&n2], "my-network").is_empty()));
    n1.ok(&["node", "update", "--availability", "active", &id2]);

    // kill -9 node-3: its tasks are rescheduled on the others.
    n3.kill();
    assert!(
        wait_until(SETTLE, || {
            let ts = running_tasks(&n1, "my-web");
            converged(&n1, "my-web", 3) && ts.iter().all(|t| t.1 != "node-3")
        }),
        "{}",
        n1.ok(&["service", "ps", "my-web"])
    );
    every_task_answers_across_nodes(&[&n1, &n2], "my-network", "after-kill");

    // node-3 comes back: it stops what it ran before (rescheduled elsewhere) and takes new work.
    n3.restart();
    assert!(wait_until(SETTLE, || n3.info().raft_voters == 3));
    assert!(wait_until(SETTLE, || task_ips(&[&n3], "my-network").is_empty()));
    n1.ok(&["service", "scale", "-d", "my-web=6"]);
    assert!(
        wait_until(SETTLE, || converged(&n1, "my-web", 6)
            && running_tasks(&n1, "my-web").iter().any(|t| t.1 == "node-3")),
        "{}",
        n1.ok(&["service", "ps", "my-web"])
    );
}

#[test]
fn a_restarted_daemon_runs_its_tasks_again() {
    let (mut n1, n2, _n3) = three_named_managers("127.94.4");
    n1.ok(&["network", "create", "-d", "overlay", "my-network"]);
    n1.ok(&[
        "service",
        "create",
        "-d",
        "--mode",
        "global",
        "--name",
        "my-web",
        "--network",
        "my-network",
        "swarmnet/whoami",
    ]);
    assert!(wait_until(SETTLE, || converged(&n2, "my-web", 3)));
    assert_eq!(task_ips(&[&n1], "my-network").len(), 1);
    n1.restart();
    // The restarted daemon runs its task of the global service again.
    assert!(
        wait_until(SETTLE, || task_ips(&[&n1], "my-network").len() == 1
            && converged(&n2, "my-web", 3)),
        "{:?}\n{}",
        task_ips(&[&n1], "my-network"),
        n1.log()
    );
    every_task_answers_across_nodes(&[&n1, &n2, &_n3], "my-network", "restarted");
}
