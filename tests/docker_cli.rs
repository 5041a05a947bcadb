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
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "Error response from daemon: node nosuchnode not found"
    );
}
