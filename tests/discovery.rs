//! Service discovery across three daemons without privilege (virtual tasks): a service's VIP
//! spreads connections over every running task, whichever node they run on; after a scale
//! down only the remaining task answers; a dnsrr service has no VIP. Each test has its own
//! loopback /24 (127.97.N).

mod cluster;

use std::collections::BTreeSet;
use std::time::Duration;

use cluster::{three_named_managers, wait_until, Node};

const SETTLE: Duration = Duration::from_secs(40);

/// The outcome lines of `service logs` of fetch service `service`.
fn fetches(n: &Node, service: &str) -> Vec<String> {
    let out = n.run(&["service", "logs", service]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("GET http://"))
        .map(str::to_string)
        .collect()
}

/// The task names that answered in `lines` (`..., from my-web.2.<id>`), as `my-web.2`.
fn answered_by(lines: &[String]) -> BTreeSet<String> {
    lines
        .iter()
        .filter_map(|l| l.split(", from ").nth(1))
        .map(|t| t.split('.').take(2).collect::<Vec<_>>().join("."))
        .collect()
}

/// The answers the `lookup` service's task reported for `name`, each a list of addresses, in
/// the order reported (`lookup NAME: A B C`, a line each time the answer changed).
fn lookups(n: &Node, name: &str) -> Vec<Vec<String>> {
    let out = n.ok(&["service", "logs", "lookup"]);
    let head = format!("lookup {name}: ");
    out.lines()
        .filter_map(|l| l.split_once(&head).map(|(_, rest)| rest))
        .map(|rest| rest.split(' ').map(str::to_string).collect())
        .collect()
}

fn running(n: &Node, service: &str) -> usize {
    n.ok(&["service", "ps", "-f", "desired-state=running", service])
        .lines()
        .skip(1)
        .filter(|l| l.contains("Running"))
        .count()
}

#[test]
fn a_vip_spreads_connections_over_every_task_and_follows_a_scale_down() {
    let (n1, n2, n3) = three_named_managers("127.97.1");
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
        wait_until(SETTLE, || running(&n1, "my-web") == 3),
        "{}",
        n1.ok(&["service", "ps", "my-web"])
    );
    let addr = n1.service_vip("my-web", "my-network");
    // The clients name the service: the node's DNS gives them its VIP.
    n1.ok(&[
        "service",
        "create",
        "-d",
        "--replicas",
        "3",
        "--name",
        "client",
        "--network",
        "my-network",
        "swarmnet/fetch",
        "http://my-web/",
    ]);
    // Every whoami task answers through the VIP, from clients on every node.
    let mut last = Vec::new();
    let all = wait_until(SETTLE, || {
        last = fetches(&n1, "client");
        answered_by(&last).len() == 3
    });
    assert!(
        all,
        "answers through {addr} came from {:?}:\n{}\n{}",
        answered_by(&last),
        last.join("\n"),
        n1.log()
    );
    // Through a VIP nothing fails once tasks run.
    let failed: Vec<&String> = last.iter().filter(|l| !l.contains(": 200,")).collect();
    assert!(failed.len() <= 3, "{failed:?}");
    // Each node's balancer shows the three backends and the connections its clients made.
    let mut total = 0u64;
    for n in [&n1, &n2, &n3] {
        let table = n.ok(&["service", "backends", "my-web"]);
        let rows: Vec<Vec<&str>> = table
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows.len(), 3, "{table}");
        for r in &rows {
            assert_eq!(
                (r[0], r[1], r[2]),
                ("my-web", "my-network", addr.as_str()),
                "{table}"
            );
            assert!(r[3].starts_with("my-web."), "{table}");
            total += r[6].parse::<u64>().unwrap();
        }
    }
    assert!(total >= 3, "connections counted: {total}");
    // The name resolved to the VIP.
    let vip_fetch = format!("GET http://my-web:80/ ({addr}): 200,");
    assert!(
        last.iter()
            .filter(|l| l.contains(": 200,"))
            .all(|l| l.contains(&vip_fetch)),
        "{}",
        last.join("\n")
    );

    // A task asking the names: the VIP for the service, every task for tasks.<service>.
    n1.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "lookup",
        "--network",
        "my-network",
        "swarmnet/lookup",
        "my-web",
        "tasks.my-web",
    ]);
    let mut answers = Vec::new();
    assert!(
        wait_until(SETTLE, || {
            answers = lookups(&n1, "tasks.my-web");
            !answers.is_empty() && !lookups(&n1, "my-web").is_empty()
        }),
        "{}",
        n1.ok(&["service", "logs", "lookup"])
    );
    assert_eq!(lookups(&n1, "my-web"), vec![vec![addr.clone()]]);
    let tasks = &answers[0];
    assert_eq!(tasks.len(), 3, "{answers:?}");
    assert!(!tasks.contains(&addr), "{answers:?}");

    // Scale down: only the remaining task answers new connections.
    n1.ok(&["service", "scale", "-d", "my-web=1"]);
    assert!(wait_until(SETTLE, || running(&n1, "my-web") == 1));
    // The lookup task reports the change: one task left, one of the three. The other nodes
    // withdraw their tasks by gossip, each when it stops them, so the lookup may see two
    // tasks for a moment on the way.
    assert!(
        wait_until(SETTLE, || lookups(&n1, "tasks.my-web")
            .last()
            .is_some_and(|l| l.len() == 1)),
        "{}",
        n1.ok(&["service", "logs", "lookup"])
    );
    let answers_after = lookups(&n1, "tasks.my-web");
    assert!(
        answers_after[1..].iter().all(|a| a.len() < 3),
        "{answers_after:?}"
    );
    let left = answers_after.last().unwrap();
    assert!(
        left.len() == 1 && tasks.contains(&left[0]),
        "{left:?} of {tasks:?}"
    );
    let before = fetches(&n1, "client").len();
    let mut after = Vec::new();
    assert!(wait_until(SETTLE, || {
        after = fetches(&n1, "client")[before..].to_vec();
        after.len() >= 12
    }));
    // The first second's fetches may still have met a departing task; the rest must not.
    let settled = &after[6..];
    assert_eq!(answered_by(settled).len(), 1, "{settled:?}");
    assert!(
        settled.iter().all(|l| l.contains(": 200,")),
        "{}",
        settled.join("\n")
    );
}

#[test]
fn names_resolve_to_tasks_in_dnsrr_and_a_mode_change_moves_the_vip() {
    let (n1, _n2, _n3) = three_named_managers("127.97.3");
    n1.ok(&["network", "create", "-d", "overlay", "my-network"]);
    n1.ok(&[
        "service",
        "create",
        "-d",
        "--replicas",
        "2",
        "--name",
        "db",
        "--endpoint-mode",
        "dnsrr",
        "--network",
        "my-network",
        "swarmnet/whoami",
    ]);
    let v: serde_json::Value = serde_json::from_str(&n1.ok(&["service", "inspect", "db"])).unwrap();
    assert!(
        v[0]["Endpoint"]["VirtualIPs"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "{v}"
    );
    n1.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "client",
        "--network",
        "my-network",
        "swarmnet/fetch",
        "http://db/",
    ]);
    // dnsrr: the name gives a task's own address; both tasks answer over time.
    let mut last = Vec::new();
    assert!(
        wait_until(SETTLE, || {
            last = fetches(&n1, "client");
            answered_by(&last).len() == 2
        }),
        "{}",
        last.join("\n")
    );
    let resolved: BTreeSet<String> = last
        .iter()
        .filter_map(|l| l.split(" (").nth(1)?.split(')').next().map(str::to_string))
        .collect();
    assert!(
        resolved.iter().all(|a| a.starts_with("10.")),
        "{resolved:?}"
    );

    // To vip mode: a VIP appears and the name gives it; no answer names a task any more.
    n1.ok(&["service", "update", "-d", "--endpoint-mode", "vip", "db"]);
    let addr = n1.service_vip("db", "my-network");
    let want = format!("GET http://db:80/ ({addr}): 200,");
    let before = fetches(&n1, "client").len();
    assert!(
        wait_until(SETTLE, || fetches(&n1, "client")[before..]
            .iter()
            .any(|l| l.contains(&want))),
        "{}",
        fetches(&n1, "client").join("\n")
    );
    // Once the VIP answers, every later lookup gives it: no stale task address.
    let from = fetches(&n1, "client")
        .iter()
        .rposition(|l| l.contains(&want))
        .unwrap();
    assert!(wait_until(SETTLE, || fetches(&n1, "client").len() > from + 5));
    let after = &fetches(&n1, "client")[from..];
    assert!(
        after.iter().all(|l| l.contains(&want)),
        "{}",
        after.join("\n")
    );
}
