//! The real docker CLI against a swarmnet daemon's socket: `docker info`, `docker node ls`,
//! `docker swarm join-token worker`, `docker node inspect self`, `docker node update` print what
//! they print against dockerd. Skipped, saying so, where no docker CLI is installed.

mod cluster;

use std::process::{Command, Output};

use cluster::Node;

fn docker_cli() -> Option<String> {
    for candidate in ["docker", "/usr/local/bin/docker", "/usr/bin/docker"] {
        if Command::new(candidate)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Some(candidate.to_string());
        }
    }
    None
}

struct Docker {
    bin: String,
    host: String,
    config: tempfile::TempDir,
}

impl Docker {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .args(args)
            .env("DOCKER_HOST", &self.host)
            .env("DOCKER_CONFIG", self.config.path())
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_API_VERSION")
            .output()
            .expect("run docker")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "docker {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

#[test]
fn the_docker_cli_drives_a_swarmnet_swarm() {
    let _turn = cluster::exclusive("the_docker_cli_drives_a_swarmnet_swarm");
    let Some(bin) = docker_cli() else {
        eprintln!("SKIPPED the_docker_cli_drives_a_swarmnet_swarm: no docker CLI on PATH (Debian's docker.io package provides one)");
        return;
    };
    let n1 = Node::start("127.77.62.1");
    let docker = Docker {
        bin,
        host: n1.host(),
        config: tempfile::tempdir().unwrap(),
    };
    let info = docker.ok(&["info"]);
    assert!(info.contains(" Swarm: inactive"), "{info}");
    assert!(info.contains(" Server Version: swarmnet-"), "{info}");

    n1.init();
    let id = n1.id();
    let info = docker.ok(&["info"]);
    for line in [
        " Swarm: active".to_string(),
        format!("  NodeID: {id}"),
        "  Is Manager: true".into(),
        "  Managers: 1".into(),
        "  Nodes: 1".into(),
        "  Node Address: 127.77.62.1".into(),
        "   127.77.62.1:2377".into(),
    ] {
        assert!(info.contains(&line), "no {line:?} in:\n{info}");
    }
    let swarm_json = docker.ok(&["info", "--format", "{{json .Swarm}}"]);
    let swarm: serde_json::Value = serde_json::from_str(&swarm_json).unwrap();
    assert_eq!(swarm["ControlAvailable"], true);
    assert_eq!(swarm["RemoteManagers"][0]["NodeID"], id.as_str());
    assert!(swarm["Cluster"]["ID"]
        .as_str()
        .is_some_and(|s| s.len() == 25));

    let ls = docker.ok(&["node", "ls"]);
    let mut lines = ls.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        [
            "ID",
            "HOSTNAME",
            "STATUS",
            "AVAILABILITY",
            "MANAGER",
            "STATUS",
            "ENGINE",
            "VERSION"
        ]
    );
    let row = lines.next().unwrap();
    assert!(row.starts_with(&format!("{id} *")), "{ls}");
    assert!(
        row.contains("Ready") && row.contains("Active") && row.contains("Leader"),
        "{ls}"
    );

    assert_eq!(
        docker
            .ok(&["node", "ls", "-q", "--filter", "role=manager"])
            .trim(),
        id
    );
    assert_eq!(
        docker.ok(&["node", "ls", "-q", "--filter", "role=worker"]),
        ""
    );
    assert_eq!(
        docker
            .ok(&["node", "ls", "-q", "--filter", &format!("id={}", &id[..5])])
            .trim(),
        id
    );
    let out = docker.run(&["node", "ls", "--filter", "colour=red"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "Error response from daemon: Invalid filter 'colour'"
    );

    let token = n1.token("worker");
    assert_eq!(
        docker.ok(&["swarm", "join-token", "worker"]),
        format!("To add a worker to this swarm, run the following command:\n\n    docker swarm join --token {token} 127.77.62.1:2377\n\n")
    );
    assert_eq!(
        docker.ok(&["swarm", "join-token", "-q", "worker"]).trim(),
        token
    );
    let rotated = docker.ok(&["swarm", "join-token", "--rotate", "-q", "worker"]);
    assert_ne!(rotated.trim(), token);
    assert_eq!(
        n1.token("worker"),
        rotated.trim(),
        "both CLIs see the same swarm"
    );

    let inspect: serde_json::Value =
        serde_json::from_str(&docker.ok(&["node", "inspect", "self"])).unwrap();
    assert_eq!(inspect[0]["ID"], id.as_str());
    assert_eq!(inspect[0]["Spec"]["Role"], "manager");
    assert_eq!(inspect[0]["ManagerStatus"]["Addr"], "127.77.62.1:2377");

    assert_eq!(
        docker
            .ok(&["node", "update", "--availability", "drain", &id])
            .trim(),
        id
    );
    assert!(n1.node_line(&id).unwrap().contains("Drain"));

    let out = docker.run(&["node", "inspect", "nosuchnode"]);
    assert!(!out.status.success());
    // The daemon's 404 and words; the docker CLI before 23 prints its own for a 404.
    let want = if cluster::cli_major(&docker.bin) < 23 {
        "Status: Error: No such node: nosuchnode, Code: 1"
    } else {
        "Error response from daemon: node nosuchnode not found"
    };
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), want);
}

#[test]
fn docker_swarm_init_join_leave_and_refused_updates() {
    let _turn = cluster::exclusive("docker_swarm_init_join_leave_and_refused_updates");
    let Some(bin) = docker_cli() else {
        eprintln!("SKIPPED docker_swarm_init_join_leave_and_refused_updates: no docker CLI on PATH (Debian's docker.io package provides one)");
        return;
    };
    let n1 = Node::start("127.77.63.1");
    let n2 = Node::start("127.77.63.2");
    let docker = |node: &Node| Docker {
        bin: bin.clone(),
        host: node.host(),
        config: tempfile::tempdir().unwrap(),
    };
    let (d1, d2) = (docker(&n1), docker(&n2));
    let out = d1.ok(&["swarm", "init", "--advertise-addr", "127.77.63.1"]);
    let id1 = n1.id();
    assert!(
        out.starts_with(&format!(
            "Swarm initialized: current node ({id1}) is now a manager.\n"
        )),
        "{out}"
    );
    let token = d1.ok(&["swarm", "join-token", "-q", "worker"]);
    assert!(
        out.contains(&format!(
            "docker swarm join --token {} 127.77.63.1:2377",
            token.trim()
        )),
        "{out}"
    );
    let out = d2.ok(&[
        "swarm",
        "join",
        "--token",
        token.trim(),
        "--advertise-addr",
        "127.77.63.2",
        "127.77.63.1:2377",
    ]);
    assert_eq!(out, "This node joined a swarm as a worker.\n");
    let id2 = n2.id();
    assert!(d1.ok(&["node", "ls"]).contains(&id2));
    assert!(d2.ok(&["info"]).contains("  Is Manager: false"));
    let out = d2.run(&["node", "ls"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("This node is not a swarm manager."),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // What swarmnet cannot change is refused by name, not dropped.
    let out = d1.run(&["swarm", "update", "--task-history-limit", "3"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "swarmnet cannot change the swarm's Orchestration.TaskHistoryRetentionLimit (asked 3)"
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = d1.run(&["swarm", "ca", "--rotate"]);
    assert!(!out.status.success());
    // As on a dockerd swarm without autolock.
    let out = d1.run(&["swarm", "unlock-key"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "no unlock key is set"
    );

    assert_eq!(d2.ok(&["swarm", "leave"]), "Node left the swarm.\n");
    assert!(cluster::wait_until(
        std::time::Duration::from_secs(20),
        || n1.node_line(&id2).is_some_and(|l| l.contains("Down"))
    ));
    assert_eq!(d1.ok(&["node", "rm", &id2]).trim(), id2);
    assert_eq!(
        d1.ok(&["swarm", "leave", "--force"]),
        "Node left the swarm.\n"
    );
}

#[test]
fn the_docker_cli_manages_swarmnet_networks() {
    let _turn = cluster::exclusive("the_docker_cli_manages_swarmnet_networks");
    let Some(bin) = docker_cli() else {
        eprintln!("SKIPPED the_docker_cli_manages_swarmnet_networks: no docker CLI on PATH (Debian's docker.io package provides one)");
        return;
    };
    let n1 = Node::start("127.91.9.1");
    n1.init();
    let docker = Docker {
        bin,
        host: n1.host(),
        config: tempfile::tempdir().unwrap(),
    };
    // The seed's commands, as a docker user types them.
    let id = docker.ok(&[
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
        "my-network",
    ]);
    assert_eq!(id.trim().len(), 25, "{id}");
    let err = |args: &[&str]| {
        let out = docker.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        String::from_utf8_lossy(&out.stderr).trim().to_string()
    };
    assert_eq!(
        err(&["network", "create", "-d", "overlay", "my-network"]),
        "Error response from daemon: network with name my-network already exists"
    );
    assert_eq!(
        err(&["network", "create", "-d", "overlay", "--subnet", "10.0.9.0/33", "bad-net"]),
        "Error response from daemon: Invalid subnet 10.0.9.0/33 : invalid CIDR address: 10.0.9.0/33"
    );
    let ls = docker.ok(&["network", "ls", "--filter", "driver=overlay"]);
    let names: Vec<&str> = ls
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(names, ["ingress", "my-network"], "{ls}");
    assert_eq!(
        docker
            .ok(&[
                "network",
                "inspect",
                "-f",
                "{{json .IPAM}} {{index .Options \"encrypted\"}}|",
                "my-network"
            ])
            .trim(),
        r#"{"Driver":"default","Options":null,"Config":[{"Subnet":"10.0.9.0/24","Gateway":"10.0.9.99"}]} |"#
    );
    assert_eq!(
        docker.ok(&["network", "rm", "my-network"]).trim(),
        "my-network"
    );
    assert!(err(&["network", "inspect", "my-network"]).contains("my-network"));
}

#[test]
fn docker_ps_lists_the_nodes_tasks_and_routes_without_meaning_say_what_to_use() {
    let _turn = cluster::exclusive(
        "docker_ps_lists_the_nodes_tasks_and_routes_without_meaning_say_what_to_use",
    );
    let Some(bin) = docker_cli() else {
        eprintln!("SKIPPED docker_ps_lists_the_nodes_tasks_and_routes_without_meaning_say_what_to_use: no docker CLI on PATH (Debian's docker.io package provides one)");
        return;
    };
    let n1 = Node::start("127.77.64.1");
    let docker = Docker {
        bin,
        host: n1.host(),
        config: tempfile::tempdir().unwrap(),
    };
    n1.init();
    n1.ok(&["network", "create", "-d", "overlay", "my-network"]);
    n1.ok(&[
        "service",
        "create",
        "-d",
        "--replicas",
        "2",
        "--name",
        "my-web",
        "--network",
        "my-network",
        "swarmnet/whoami",
    ]);
    let format = "{{.Names}}|{{.Image}}|{{.Networks}}|{{.Label \"com.docker.swarm.service.name\"}}|{{.State}}";
    let mut rows = Vec::new();
    assert!(
        cluster::wait_until(std::time::Duration::from_secs(30), || {
            rows = docker
                .ok(&["ps", "--format", format])
                .lines()
                .map(str::to_string)
                .collect();
            rows.len() == 2
        }),
        "{rows:?}"
    );
    rows.sort();
    for (row, slot) in rows.iter().zip(["1", "2"]) {
        let f: Vec<&str> = row.split('|').collect();
        assert!(f[0].starts_with(&format!("my-web.{slot}.")), "{row}");
        assert_eq!(
            &f[1..],
            ["swarmnet/whoami:latest", "my-network", "my-web", "running"],
            "{row}"
        );
    }
    // The container ID is the one `network inspect` shows for the task.
    let id = docker.ok(&["ps", "-q", "--no-trunc", "--filter", "name=my-web.1"]);
    let inspect = n1.ok(&[
        "network",
        "inspect",
        "-f",
        "{{json .Containers}}",
        "my-network",
    ]);
    assert!(inspect.contains(id.trim()), "{id} not in {inspect}");
    assert_eq!(docker.ok(&["ps", "-q", "--filter", "name=nothing"]), "");
    let table = docker.ok(&["ps"]);
    assert!(table.starts_with("CONTAINER ID   IMAGE "), "{table}");
    assert!(table.contains("Up "), "{table}");

    // What swarmnet has no meaning for: 501 and what to use instead.
    for (args, words) in [
        (vec!["images"], "swarmnet has no images"),
        (
            vec!["run", "--rm", "alpine", "true"],
            "swarmnet runs no containers",
        ),
        (vec!["volume", "ls"], "swarmnet keeps no volumes"),
    ] {
        let out = docker.run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(words), "{args:?}: {err}");
    }
}

/// The tests above again with the daemon and every client (swarmnet's CLI, the docker CLI) run
/// by a user without privileges; the tasks are virtual.
#[test]
fn the_docker_cli_drives_an_unprivileged_daemon() {
    for name in [
        "the_docker_cli_drives_a_swarmnet_swarm",
        "docker_swarm_init_join_leave_and_refused_updates",
        "the_docker_cli_manages_swarmnet_networks",
        "docker_ps_lists_the_nodes_tasks_and_routes_without_meaning_say_what_to_use",
    ] {
        cluster::rerun_unprivileged(name);
    }
}
