//! `swarmnet events` (`GET /events`) on three managers: a service create and its task arrive on
//! the leader and, as Docker's JSON, on a follower; a manager killed with SIGKILL is reported
//! down on both within the heartbeat timeout; `--since`/`--until` replay the kept events and
//! end; a worker and a node outside a swarm refuse. Loopback 127.93.2.x only.

mod cluster;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster::{three_named_managers, wait_until, Node, BIN};

/// A running `swarmnet events` and the lines it printed so far.
struct Follower {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Follower {
    fn start(n: &Node, extra: &[&str]) -> Follower {
        let mut child = Command::new(BIN)
            .args(["-H", &n.host(), "events", "--since", "0s"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn swarmnet events");
        let out = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Follower { child, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn has(&self, pred: impl Fn(&str) -> bool) -> bool {
        self.lines().iter().any(|l| pred(l))
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_service_create_and_a_node_kill_arrive_as_events() {
    let (n1, n2, mut n3) = three_named_managers("127.93.2");
    let plain = Follower::start(&n1, &[]);
    let json = Follower::start(
        &n2,
        &[
            "--format",
            "json",
            "--filter",
            "type=service",
            "--filter",
            "type=node",
        ],
    );

    n1.ok(&["network", "create", "-d", "overlay", "my-net"]);
    let service_id = n1
        .ok(&[
            "service",
            "create",
            "-d",
            "--name",
            "web",
            "--network",
            "my-net",
            "swarmnet/whoami",
        ])
        .trim()
        .to_string();
    assert!(
        wait_until(Duration::from_secs(20), || {
            plain.has(|l| l.contains(&format!(" service create {service_id} (name=web)")))
                && plain.has(|l| l.contains(" network create ") && l.contains("name=my-net"))
                // Created, then running: one event or two, as the looks at the tables fall.
                && plain.has(|l| {
                    l.contains(" task ")
                        && l.contains("service=web")
                        && (l.contains("state=running") || l.contains("state.new=running"))
                })
        }),
        "leader's events:\n{}",
        plain.lines().join("\n")
    );
    // Docker's line: an RFC 3339 time with nanoseconds first.
    let line = plain
        .lines()
        .into_iter()
        .find(|l| l.contains(" service create "))
        .unwrap();
    let time = line.split(' ').next().unwrap();
    assert!(time.ends_with('Z') && time.len() == 30, "{line}");

    let json_service = |lines: &[String], action: &str| {
        lines.iter().any(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON object per line");
            v["Type"] == "service"
                && v["Action"] == action
                && v["Actor"]["ID"] == service_id.as_str()
                && v["Actor"]["Attributes"]["name"] == "web"
                && v["scope"] == "swarm"
                && v["timeNano"].as_i64().is_some()
        })
    };
    assert!(
        wait_until(Duration::from_secs(20), || json_service(
            &json.lines(),
            "create"
        )),
        "follower's events:\n{}",
        json.lines().join("\n")
    );
    // The filter kept tasks and networks out.
    assert!(
        json.lines()
            .iter()
            .all(|l| !l.contains("\"Type\":\"task\"") && !l.contains("\"Type\":\"network\"")),
        "{}",
        json.lines().join("\n")
    );

    // Kill -9 a manager: the leader stops hearing its heartbeats and reports it down within
    // the heartbeat timeout (4 s), the follower asks the leader and says the same.
    let victim = n3.id();
    n3.kill();
    let down = |l: &str| {
        l.contains(&format!(" node update {victim} "))
            && l.contains("name=node-3")
            && l.contains("state.new=down")
            && l.contains("state.old=ready")
    };
    assert!(
        wait_until(Duration::from_secs(15), || plain.has(down)),
        "leader's events:\n{}",
        plain.lines().join("\n")
    );
    let down_json = |l: &str| {
        serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| {
            v["Type"] == "node"
                && v["Action"] == "update"
                && v["Actor"]["ID"] == victim.as_str()
                && v["Actor"]["Attributes"]["state.new"] == "down"
        })
    };
    assert!(
        wait_until(Duration::from_secs(15), || json.has(down_json)),
        "follower's events:\n{}",
        json.lines().join("\n")
    );

    // A manager that joined received the swarm's older objects from the leader: no news.
    let history = n2.ok(&["events", "--since", "10m", "--until", "0s"]);
    assert!(
        !history.lines().any(
            |l| (l.contains(" node create ") && l.contains("name=node-1"))
                || (l.contains(" network create ") && l.contains("name=ingress"))
        ),
        "{history}"
    );
    assert!(
        history.contains(&format!(" service create {service_id} ")),
        "{history}"
    );

    // The kept events replay with --since, and --until ends the stream.
    let out = n1.ok(&[
        "events",
        "--since",
        "10m",
        "--until",
        "0s",
        "--filter",
        "type=service",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!(" service create {service_id} (name=web)"))),
        "{out}"
    );
    assert!(lines.iter().all(|l| l.contains(" service ")), "{out}");

    // A worker holds no tables: it refuses and names the managers.
    let w = Node::start_as("127.93.2.4", "worker-1");
    let out = w.join(&n1.token("worker"), &n1);
    assert!(out.status.success(), "{}", cluster::stderr(&out));
    let err = w.fails(&["events", "--until", "0s"]);
    assert!(err.contains("reported by managers only"), "{err}");

    // A filter of a kind no manager reports is refused.
    let err = n1.fails(&["events", "--filter", "type=container"]);
    assert!(err.contains("invalid filter 'type=container'"), "{err}");
}

#[test]
fn a_node_outside_a_swarm_refuses_to_stream() {
    let n = Node::start("127.93.2.9");
    let err = n.fails(&["events", "--until", "0s"]);
    assert!(err.contains("This node is not part of a swarm"), "{err}");
}

/// The docker CLI, if one is installed.
fn docker_cli() -> Option<String> {
    ["docker", "/usr/local/bin/docker", "/usr/bin/docker"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(str::to_string)
}

#[test]
fn docker_events_reads_the_same_route() {
    let Some(docker) = docker_cli() else {
        eprintln!("SKIPPED: no docker CLI installed");
        return;
    };
    let n = Node::start_as("127.93.2.10", "node-1");
    n.init();
    let config = tempfile::tempdir().unwrap();
    let id = n
        .ok(&[
            "service",
            "create",
            "-d",
            "--name",
            "web",
            "swarmnet/whoami",
        ])
        .trim()
        .to_string();
    let expected = format!(" service create {id} (name=web)");
    let mut last = String::new();
    assert!(
        wait_until(Duration::from_secs(20), || {
            let out = Command::new(&docker)
                .args([
                    "events",
                    "--since",
                    "10m",
                    "--until",
                    "0s",
                    "--filter",
                    "type=service",
                ])
                .env("DOCKER_HOST", n.host())
                .env("DOCKER_CONFIG", config.path())
                .env_remove("DOCKER_CONTEXT")
                .env_remove("DOCKER_API_VERSION")
                .output()
                .expect("run docker");
            last = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            out.status.success() && last.lines().any(|l| l.ends_with(&expected))
        }),
        "docker events printed:\n{last}"
    );
}
