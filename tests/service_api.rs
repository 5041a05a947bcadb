//! Services end to end through the local API: real daemons on their own loopback addresses
//! (127.92.N.0/24), driven by swarmnet's CLI as a user types the seed's commands and by the real
//! docker CLI (skipped, saying so, where none is installed). Tasks run as virtual tasks, so no
//! privilege is needed.

mod cluster;

use std::process::{Command, Output};
use std::time::Duration;

use cluster::{stderr, stdout, wait_until, Node, BIN};
use hyper::Method;
use swarmnet::api::client::{versioned, Client, ClientError};
use swarmnet::api::NOT_A_MANAGER;

const SETTLE: Duration = Duration::from_secs(30);

/// One raw request on the node's API: status and JSON body (or the error message).
fn api(node: &Node, method: Method, route: &str, body: Option<serde_json::Value>) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = Client::new(&node.socket);
    let body = body.map(|b| serde_json::to_vec(&b).unwrap());
    match rt.block_on(client.send(method, &versioned(route), body)) {
        Ok((status, bytes)) => (
            status.as_u16(),
            String::from_utf8_lossy(&bytes).into_owned(),
        ),
        Err(ClientError::Api { status, message }) => (status.as_u16(), message),
        Err(e) => panic!("{route}: {e}"),
    }
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// `service inspect NAME` as JSON (one object).
fn inspect(node: &Node, name: &str) -> serde_json::Value {
    json(&node.ok(&["service", "inspect", name]))[0].clone()
}

fn network_id(node: &Node, name: &str) -> String {
    node.ok(&["network", "inspect", "-f", "{{.Id}}", name])
        .trim()
        .to_string()
}

/// The REPLICAS column of `service ls` for `name`.
fn replicas(node: &Node, name: &str) -> String {
    node.ok(&["service", "ls", "-f", &format!("name={name}")])
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(3))
        .unwrap_or("")
        .to_string()
}

fn os_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// Checks the non-terminal progress of a create/update/scale as the docker CLI prints it:
/// the slot lines once, the overall count, the verify countdown, and the converged line last.
fn assert_progress(out: &str, replicas: u64, key: &str) {
    let lines: Vec<&str> = out.lines().collect();
    let first = lines
        .iter()
        .position(|l| l.starts_with("overall progress:"))
        .unwrap_or_else(|| panic!("no progress in:\n{out}"));
    assert_eq!(
        lines[first],
        format!("overall progress: 0 out of {replicas} tasks"),
        "{out}"
    );
    for i in 1..=replicas {
        assert_eq!(
            lines[first + i as usize],
            format!("{i}/{replicas}:  "),
            "{out}"
        );
    }
    assert!(
        lines.contains(&format!("overall progress: {replicas} out of {replicas} tasks").as_str()),
        "{out}"
    );
    assert!(
        lines.contains(&"verify: Waiting 5 seconds to verify that tasks are stable..."),
        "{out}"
    );
    // The docker CLI before 23 does not name the service there: `key` is then empty.
    let converged = if key.is_empty() {
        "verify: Service converged".to_string()
    } else {
        format!("verify: Service {key} converged")
    };
    assert_eq!(lines.last().copied(), Some(converged.as_str()), "{out}");
    for l in &lines[first..] {
        assert!(
            l.starts_with("overall progress: ")
                || l.starts_with("verify: ")
                || l.split_once(": ").is_some_and(|(id, _)| id.contains('/')),
            "unexpected progress line {l:?} in:\n{out}"
        );
    }
}

#[test]
fn the_seeds_service_commands_give_dockers_outputs() {
    let n1 = Node::start("127.92.1.1");
    n1.init();
    n1.ok(&["network", "create", "-d", "overlay", "my-network"]);
    n1.ok(&["network", "create", "-d", "overlay", "my-net2"]);
    let (net1, net2) = (network_id(&n1, "my-network"), network_id(&n1, "my-net2"));
    let ingress = network_id(&n1, "ingress");

    // Create without -d: the ID, then the docker CLI's progress until converged.
    let out = n1.ok(&[
        "service",
        "create",
        "--name",
        "my-web",
        "--replicas",
        "3",
        "--network",
        "my-network",
        "--publish",
        "8080:80",
        "swarmnet/whoami",
    ]);
    let id = out.lines().next().unwrap().to_string();
    assert_eq!(id.len(), 25, "{out}");
    assert_progress(&out, 3, &id);

    // ls: Docker's columns and spacing, 3/3 running.
    assert_eq!(
        n1.ok(&["service", "ls"]),
        format!(
            "ID             NAME      MODE         REPLICAS   IMAGE                    PORTS\n{}   my-web    replicated   3/3        swarmnet/whoami:latest   *:8080->80/tcp\n",
            &id[..12]
        )
    );
    assert_eq!(n1.ok(&["service", "ls", "-q"]), format!("{}\n", &id[..12]));

    // ps: one running task per slot, on this node (its hostname).
    let ps = n1.ok(&["service", "ps", "my-web"]);
    let header: Vec<&str> = ps
        .lines()
        .next()
        .unwrap()
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "ID",
            "NAME",
            "IMAGE",
            "NODE",
            "DESIRED STATE",
            "CURRENT STATE",
            "ERROR",
            "PORTS"
        ],
        "{ps}"
    );
    let rows: Vec<Vec<String>> = ps
        .lines()
        .skip(1)
        .map(|l| {
            l.split("   ")
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 3, "{ps}");
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r[0].len(), 12, "{ps}");
        assert_eq!(r[1], format!("my-web.{}", i + 1), "{ps}");
        assert_eq!(r[2], "swarmnet/whoami:latest", "{ps}");
        assert_eq!(r[3], os_hostname(), "{ps}");
        assert_eq!(r[4], "Running", "{ps}");
        assert!(
            r[5].starts_with("Running ") && r[5].ends_with(" ago"),
            "{ps}"
        );
    }

    // inspect: the spec with networks as IDs, a VIP on ingress and on my-network.
    let s = inspect(&n1, "my-web");
    assert_eq!(s["ID"], id.as_str());
    assert_eq!(s["Version"]["Index"], 1);
    assert_eq!(
        s["Spec"]["TaskTemplate"]["Networks"][0]["Target"],
        net1.as_str()
    );
    assert_eq!(
        s["Spec"]["TaskTemplate"]["ContainerSpec"]["Isolation"],
        "default"
    );
    assert_eq!(s["Spec"]["UpdateConfig"]["Order"], "stop-first");
    assert_eq!(s["Endpoint"]["Ports"][0]["PublishedPort"], 8080);
    let vips = s["Endpoint"]["VirtualIPs"].as_array().unwrap().clone();
    assert_eq!(vips.len(), 2, "{s}");
    assert_eq!(vips[0]["NetworkID"], ingress.as_str());
    assert_eq!(vips[1]["NetworkID"], net1.as_str());
    assert!(
        vips[0]["Addr"].as_str().unwrap().starts_with("10.0.0."),
        "{s}"
    );
    assert_eq!(
        n1.ok(&[
            "service",
            "inspect",
            "-f",
            "{{.Spec.Name}} {{.Version.Index}}",
            &id[..6]
        ]),
        "my-web 1\n"
    );
    let pretty = n1.ok(&["service", "inspect", "--pretty", "my-web"]);
    assert!(
        pretty.starts_with(&format!(
            "\nID:\t\t{id}\nName:\t\tmy-web\nService Mode:\tReplicated\n Replicas:\t3\n"
        )),
        "{pretty}"
    );
    assert!(pretty.contains("Networks: my-network \n"), "{pretty}");

    // Tasks as dockerd shows them: their address on the network, the service's template.
    let (status, body) = api(
        &n1,
        Method::GET,
        &format!("/tasks?filters=%7B%22service%22%3A%7B%22{id}%22%3Atrue%7D%7D"),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let tasks = json(&body);
    let t = &tasks[0];
    assert_eq!(t["ServiceID"], id.as_str());
    assert_eq!(t["DesiredState"], "running");
    assert_eq!(t["Status"]["State"], "running");
    // Pinned to the built-in app's digest, as the docker CLI pins a registry's.
    assert!(
        t["Spec"]["ContainerSpec"]["Image"]
            .as_str()
            .unwrap()
            .starts_with("swarmnet/whoami:latest@sha256:"),
        "{t}"
    );
    let att = t["NetworksAttachments"].as_array().unwrap();
    assert!(
        att.iter().any(|a| a["Network"]["ID"] == net1.as_str()
            && a["Network"]["Spec"]["Name"] == "my-network"
            && a["Addresses"][0].as_str().unwrap().starts_with("10.0.1.")),
        "{t}"
    );
    let tid = t["ID"].as_str().unwrap();
    let (status, one) = api(&n1, Method::GET, &format!("/tasks/{}", &tid[..10]), None);
    assert_eq!(status, 200);
    assert_eq!(json(&one)["ID"], tid);
    assert_eq!(
        api(&n1, Method::GET, "/tasks/nosuchtask", None),
        (404, "task nosuchtask not found".to_string())
    );

    // update --network-add: a VIP on the new network, a new template, the tasks replaced (their
    // history under their slot).
    assert_eq!(
        n1.ok(&[
            "service",
            "update",
            "-d",
            "--network-add",
            "my-net2",
            "my-web"
        ]),
        "my-web\n"
    );
    let s = inspect(&n1, "my-web");
    assert_eq!(s["Version"]["Index"], 2);
    assert_eq!(s["Endpoint"]["VirtualIPs"].as_array().unwrap().len(), 3);
    assert_eq!(s["Endpoint"]["VirtualIPs"][2]["NetworkID"], net2.as_str());
    assert_eq!(
        s["Endpoint"]["VirtualIPs"][1], vips[1],
        "a kept network keeps its VIP"
    );
    assert_eq!(
        s["PreviousSpec"]["TaskTemplate"]["Networks"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(
        wait_until(SETTLE, || {
            let ps = n1.ok(&["service", "ps", "my-web"]);
            ps.contains(" \\_ my-web.1") && replicas(&n1, "my-web") == "3/3"
        }),
        "{}",
        n1.ok(&["service", "ps", "my-web"])
    );
    let ps = n1.ok(&["service", "ps", "-f", "desired-state=running", "my-web"]);
    assert_eq!(ps.lines().count(), 4, "{ps}");
    assert!(!ps.contains("\\_"), "{ps}");

    // scale without -d: Docker's line, then the progress until converged.
    let out = n1.ok(&["service", "scale", "my-web=5"]);
    assert_eq!(out.lines().next(), Some("my-web scaled to 5"), "{out}");
    assert_progress(&out, 5, "my-web");
    assert_eq!(replicas(&n1, "my-web"), "5/5");
    assert_eq!(
        n1.ok(&["service", "scale", "-d", "my-web=2"]),
        "my-web scaled to 2\n"
    );
    assert!(wait_until(SETTLE, || replicas(&n1, "my-web") == "2/2"));

    // --force: a new template (tasks replaced); --rollback: the spec before it.
    n1.ok(&["service", "update", "-d", "--force", "my-web"]);
    assert_eq!(
        inspect(&n1, "my-web")["Spec"]["TaskTemplate"]["ForceUpdate"],
        1
    );
    n1.ok(&["service", "update", "-d", "--rollback", "my-web"]);
    let s = inspect(&n1, "my-web");
    assert_eq!(s["Spec"]["TaskTemplate"]["ForceUpdate"], 0);
    assert_eq!(s["PreviousSpec"]["TaskTemplate"]["ForceUpdate"], 1);

    // Docker's refusals, word for word.
    let refusals: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["service", "create", "-d", "--name", "bad", "--endpoint-mode", "dnsrr", "--publish", "8081:80", "swarmnet/whoami"],
            "Error response from daemon: rpc error: code = InvalidArgument desc = EndpointSpec: port published with ingress mode can't be used with dnsrr mode".into(),
        ),
        (
            vec!["service", "create", "-d", "--name", "other", "-p", "8080:90", "swarmnet/whoami"],
            format!("Error response from daemon: rpc error: code = InvalidArgument desc = port '8080' is already in use by service 'my-web' ({id}) as an ingress port"),
        ),
        (
            vec!["service", "create", "-d", "--network", "nope", "swarmnet/whoami"],
            "Error response from daemon: network nope not found".into(),
        ),
        (
            vec!["service", "create", "-d", "--network", "ingress", "swarmnet/whoami"],
            "Error response from daemon: rpc error: code = InvalidArgument desc = Service cannot be explicitly attached to the ingress network \"ingress\"".into(),
        ),
        (
            vec!["service", "create", "-d", "--network", "docker_gwbridge", "swarmnet/whoami"],
            "Error response from daemon: The network docker_gwbridge cannot be used with services. Only networks scoped to the swarm can be used, such as those created with the overlay driver.".into(),
        ),
        (
            vec!["service", "create", "-d", "--name", "bad_-", "swarmnet/whoami"],
            "Error response from daemon: rpc error: code = InvalidArgument desc = name must be valid as a DNS name component".into(),
        ),
        (
            vec!["service", "create", "-d", "--constraint", "node.colour==red", "swarmnet/whoami"],
            "Error response from daemon: rpc error: code = InvalidArgument desc = invalid constraint \"node.colour==red\": \"node.colour\" is not a node attribute (node.id, node.hostname, node.role, node.labels.KEY, engine.labels.KEY)".into(),
        ),
        (
            vec!["service", "create", "-d", "--name", "my-web", "swarmnet/whoami"],
            "Error response from daemon: rpc error: code = AlreadyExists desc = name conflicts with an existing object: service my-web already exists".into(),
        ),
        (
            vec!["service", "create", "-d", "--mode", "global", "--replicas", "2", "swarmnet/whoami"],
            "Error: replicas can only be used with replicated or replicated-job mode".into(),
        ),
        (
            vec!["network", "rm", "my-network"],
            format!("Error response from daemon: rpc error: code = FailedPrecondition desc = network {net1} is in use by service {id}"),
        ),
        (
            vec!["network", "rm", "-f", "ingress"],
            format!("Error response from daemon: rpc error: code = FailedPrecondition desc = ingress network cannot be removed because service {id} depends on it"),
        ),
        (vec!["service", "ps", "nope"], "Error: no such service: nope".into()),
        (vec!["service", "inspect", "nope"], "Error: no such service: nope".into()),
        (vec!["service", "rm", "nope"], "Error response from daemon: service nope not found".into()),
        (vec!["service", "update", "-d", "--replicas", "1", "nope"], "Error response from daemon: service nope not found".into()),
    ];
    for (args, want) in refusals {
        let err = n1.fails(&args);
        assert_eq!(err.trim(), want, "{args:?}");
    }
    // Nothing was created by the refused commands.
    assert_eq!(n1.ok(&["service", "ls", "-q"]).lines().count(), 1);

    // A global service: scale is refused with Docker's words.
    n1.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "everywhere",
        "--mode",
        "global",
        "swarmnet/echo",
    ]);
    assert!(wait_until(SETTLE, || replicas(&n1, "everywhere") == "1/1"));
    assert_eq!(
        n1.fails(&["service", "scale", "-d", "everywhere=3"]).trim(),
        "Error: everywhere: scale can only be used with replicated or replicated-job mode"
    );
    assert_eq!(
        n1.ok(&["service", "ls", "-f", "mode=global", "-q"]).trim(),
        &inspect(&n1, "everywhere")["ID"].as_str().unwrap()[..12]
    );

    // rm prints each name; the network is free again once no service uses it.
    assert_eq!(
        n1.ok(&["service", "rm", "my-web", "everywhere"]),
        "my-web\neverywhere\n"
    );
    assert_eq!(
        n1.ok(&["service", "ls"]),
        "ID        NAME      MODE      REPLICAS   IMAGE     PORTS\n"
    );
    assert_eq!(n1.ok(&["network", "rm", "my-network"]), "my-network\n");
}

#[test]
fn a_node_update_from_a_stale_read_is_refused_after_the_role_changes_own_refusals() {
    let n1 = Node::start("127.92.11.1");
    n1.init();
    let node = |n: &Node| json(&api(n, Method::GET, "/nodes", None).1)[0].clone();
    let me = node(&n1);
    let (id, version) = (
        me["ID"].as_str().unwrap().to_string(),
        me["Version"]["Index"].as_u64().unwrap(),
    );
    let update = |version: u64, role: &str, availability: &str| {
        let spec = serde_json::json!({"Labels": {}, "Role": role, "Availability": availability});
        api(
            &n1,
            Method::POST,
            &format!("/nodes/{id}/update?version={version}"),
            Some(spec),
        )
    };
    // As dockerd: demoting the last manager is refused as such, whatever the version read,
    // and the availability asked with it does not change either.
    for v in [version, version - 1] {
        let (code, message) = update(v, "worker", "drain");
        assert_ne!(code, 200, "{message}");
        assert!(
            message.contains("attempting to demote the last manager of the swarm"),
            "{message}"
        );
    }
    assert_eq!(node(&n1)["Spec"]["Availability"], "active");
    assert_eq!(node(&n1)["Version"]["Index"].as_u64(), Some(version));
    // A change from a stale read is refused and changes nothing; from the current one, taken.
    let (code, message) = update(version - 1, "manager", "drain");
    assert_eq!(
        (code, message.contains("update out of sequence")),
        (500, true),
        "{message}"
    );
    assert_eq!(node(&n1)["Spec"]["Availability"], "active");
    assert_eq!(update(version, "manager", "drain").0, 200);
    let now = node(&n1);
    assert_eq!(now["Spec"]["Availability"], "drain");
    assert_ne!(
        now["Version"]["Index"].as_u64(),
        Some(version),
        "an update moves the version"
    );
    // The old version is stale now, even for a spec that changes nothing.
    let (code, message) = update(version, "manager", "drain");
    assert_eq!(
        (code, message.contains("update out of sequence")),
        (500, true),
        "{message}"
    );
}

#[test]
fn of_two_updates_from_one_version_one_wins() {
    let n1 = Node::start("127.92.2.1");
    n1.init();
    let id = n1
        .ok(&["service", "create", "-d", "--name", "v", "swarmnet/whoami"])
        .trim()
        .to_string();
    let spec = inspect(&n1, "v")["Spec"].clone();
    let route = format!("/services/{id}/update?version=1");
    let socket = n1.socket.clone();
    let updates: Vec<_> = [2u64, 4]
        .into_iter()
        .map(|n| {
            let mut spec = spec.clone();
            spec["Mode"]["Replicated"]["Replicas"] = n.into();
            let (route, socket) = (route.clone(), socket.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let body = serde_json::to_vec(&spec).unwrap();
                rt.block_on(Client::new(&socket).send(Method::POST, &versioned(&route), Some(body)))
                    .map(|(s, _)| s.as_u16())
                    .map_err(|e| e.to_string())
            })
        })
        .collect();
    let results: Vec<_> = updates.into_iter().map(|t| t.join().unwrap()).collect();
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 1, "{results:?}");
    let lost = results.iter().find_map(|r| r.clone().err()).unwrap();
    assert_eq!(
        lost,
        "Error response from daemon: rpc error: code = Unknown desc = update out of sequence"
    );
    let s = inspect(&n1, "v");
    assert_eq!(s["Version"]["Index"], 2);
    let now = s["Spec"]["Mode"]["Replicated"]["Replicas"]
        .as_u64()
        .unwrap();
    assert!(now == 2 || now == 4);
    // A stale version stays refused (dockerd's 500), and nothing changed.
    let (status, msg) = api(&n1, Method::POST, &route, Some(spec.clone()));
    assert_eq!(
        (status, msg.as_str()),
        (
            500,
            "rpc error: code = Unknown desc = update out of sequence"
        )
    );
    assert_eq!(inspect(&n1, "v")["Version"]["Index"], 2);
    // A malformed version is a 400 that says what is expected.
    let (status, msg) = api(
        &n1,
        Method::POST,
        &format!("/services/{id}/update?version=x"),
        Some(spec),
    );
    assert_eq!(status, 400, "{msg}");
}

#[test]
fn services_are_one_on_every_manager_and_refused_on_a_worker() {
    let (n1, n2, n3) = cluster::three_managers("127.92.3");
    let w = Node::start("127.92.3.4");
    let out = w.join(&n1.token("worker"), &n1);
    assert!(out.status.success(), "{}", stderr(&out));
    n1.ok(&["network", "create", "my-network"]);
    // All four nodes ready before the service is placed (a replica goes to a ready node).
    assert!(wait_until(SETTLE, || n1
        .node_lines()
        .iter()
        .filter(|l| l.contains(" Ready "))
        .count()
        == 4));

    // Created on a follower (forwarded to the leader), seen alike on every manager.
    let id = n2
        .ok(&[
            "service",
            "create",
            "-d",
            "--name",
            "my-web",
            "--replicas",
            "4",
            "--network",
            "my-network",
            "swarmnet/whoami",
        ])
        .trim()
        .to_string();
    for n in [&n1, &n2, &n3] {
        assert_eq!(inspect(n, "my-web")["ID"], id.as_str());
    }
    assert!(
        wait_until(SETTLE, || replicas(&n3, "my-web") == "4/4"),
        "{}",
        n3.ok(&["service", "ps", "my-web"])
    );
    // The tasks are spread over the four nodes.
    let (_, body) = api(&n1, Method::GET, "/tasks", None);
    let nodes: std::collections::BTreeSet<String> = json(&body)
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["DesiredState"] == "running")
        .map(|t| t["NodeID"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(nodes.len(), 4, "{body}");

    // A worker: Docker's text for every service command.
    for args in [
        vec!["service", "ls"],
        vec!["service", "create", "-d", "swarmnet/whoami"],
        vec!["service", "ps", "my-web"],
        vec!["service", "rm", "my-web"],
    ] {
        let err = w.fails(&args);
        assert!(err.contains(NOT_A_MANAGER), "{args:?}: {err}");
    }
    // Removal on another follower is seen everywhere.
    assert_eq!(n3.ok(&["service", "rm", "my-web"]), "my-web\n");
    for n in [&n1, &n2, &n3] {
        assert!(wait_until(SETTLE, || n
            .ok(&["service", "ls", "-q"])
            .is_empty()));
    }
}

#[test]
fn a_service_create_cut_by_the_leaders_death_is_everywhere_or_nowhere() {
    let (mut n1, n2, n3) = cluster::three_managers("127.92.4");
    let host = n1.host();
    let creates: Vec<_> = (0..4)
        .map(|i| {
            let host = host.clone();
            std::thread::spawn(move || {
                Command::new(BIN)
                    .args([
                        "-H",
                        &host,
                        "service",
                        "create",
                        "-d",
                        "--name",
                        &format!("cut-{i}"),
                        "swarmnet/whoami",
                    ])
                    .output()
                    .unwrap()
            })
        })
        .collect();
    n1.kill();
    let acknowledged: Vec<String> = creates
        .into_iter()
        .enumerate()
        .filter_map(|(i, t): (usize, std::thread::JoinHandle<Output>)| {
            t.join()
                .unwrap()
                .status
                .success()
                .then(|| format!("cut-{i}"))
        })
        .collect();
    assert!(wait_until(SETTLE, || n2.info().raft_leader.is_some()));
    let ls = ["service", "ls", "-q"];
    let agreed = wait_until(SETTLE, || {
        let (a, b) = (n2.run(&ls), n3.run(&ls));
        a.status.success() && b.status.success() && stdout(&a) == stdout(&b)
    });
    assert!(agreed, "{}\n{}", n2.log(), n3.log());
    let names: Vec<String> = n2
        .ok(&["service", "ls"])
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
        .collect();
    for name in &acknowledged {
        assert!(names.contains(name), "acknowledged {name} lost: {names:?}");
    }
    let mut dedup = names.clone();
    dedup.dedup();
    assert_eq!(dedup, names);
}

#[test]
fn service_logs_show_each_tasks_lines_under_its_name() {
    let n1 = Node::start("127.92.5.1");
    n1.init();
    n1.ok(&["network", "create", "my-network"]);
    n1.ok(&[
        "service",
        "create",
        "--name",
        "web",
        "--network",
        "my-network",
        "-q",
        "swarmnet/whoami",
    ]);
    // The whoami task's address, from its attachment.
    let (_, body) = api(&n1, Method::GET, "/tasks", None);
    let addr = json(&body)[0]["NetworksAttachments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["Network"]["Spec"]["Name"] == "my-network")
        .map(|a| {
            a["Addresses"][0]
                .as_str()
                .unwrap()
                .split('/')
                .next()
                .unwrap()
                .to_string()
        })
        .unwrap();
    n1.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "fetcher",
        "--network",
        "my-network",
        "swarmnet/fetch",
        &format!("http://{addr}/"),
    ]);
    let logs = || n1.ok(&["service", "logs", "fetcher"]);
    assert!(
        wait_until(SETTLE, || !logs().is_empty()),
        "no lines\n{}",
        n1.log()
    );
    let (_, body) = api(
        &n1,
        Method::GET,
        "/tasks?filters=%7B%22desired-state%22%3A%7B%22running%22%3Atrue%7D%7D",
        None,
    );
    let task = json(&body)
        .as_array()
        .unwrap()
        .iter()
        .find(|t| {
            t["Spec"]["ContainerSpec"]["Image"]
                .as_str()
                .unwrap()
                .starts_with("swarmnet/fetch:latest")
        })
        .unwrap()["ID"]
        .as_str()
        .unwrap()
        .to_string();
    let prefix = format!("fetcher.1.{}@{}    | ", &task[..12], os_hostname());
    let text = logs();
    for l in text.lines() {
        assert!(l.starts_with(&prefix), "{l:?} lacks {prefix:?}");
    }
    let raw = n1.ok(&["service", "logs", "--raw", "fetcher"]);
    assert_eq!(
        raw.lines().next().unwrap(),
        text.lines().next().unwrap().strip_prefix(&prefix).unwrap()
    );
    // --follow asks again every second and prints only the new lines.
    let mut child = Command::new(BIN)
        .args(["-H", &n1.host(), "service", "logs", "-f", "-t", "fetcher"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let followed = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let followed = followed.clone();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                followed.lock().unwrap().push_str(&(line + "\n"));
            }
        })
    };
    let before = n1.ok(&["service", "logs", "fetcher"]).lines().count();
    // The fetch app logs once a second: new lines come while following.
    let grew = wait_until(SETTLE, || {
        followed.lock().unwrap().lines().count() >= before + 2
    });
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    let followed = followed.lock().unwrap().clone();
    assert!(grew, "{followed}");
    let lines: Vec<&str> = followed.lines().collect();
    let unique: std::collections::BTreeSet<&str> = lines.iter().copied().collect();
    assert_eq!(
        unique.len(),
        lines.len(),
        "a line printed twice:\n{followed}"
    );
    for l in &lines {
        // -t: the timestamp, then the task's name.
        assert!(
            l.split(' ')
                .nth(1)
                .is_some_and(|n| n.starts_with("fetcher.1.")),
            "{l}"
        );
    }

    // One task's lines by its ID (GET /tasks/{id}/logs).
    let by_task = n1.ok(&["service", "logs", "--tail", "1", &task]);
    assert!(by_task.starts_with(&prefix), "{by_task}");
    assert_eq!(
        n1.fails(&["service", "logs", "nope"]).trim(),
        "Error: no such task or service: nope"
    );
    let short = n1.ok(&["service", "logs", "--no-task-ids", "--tail", "1", "fetcher"]);
    assert_eq!(short.lines().count(), 1, "{short}");
    assert!(
        short.starts_with(&format!("fetcher.1@{}    | ", os_hostname())),
        "{short}"
    );
}

// ---- the real docker CLI ------------------------------------------------------------------

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

/// The CURRENT STATE ages (`Running 3 seconds ago`) differ between two runs a second apart.
fn without_ages(text: &str) -> String {
    text.lines()
        .map(|l| match l.find(" ago") {
            Some(end) => {
                let start = l[..end].rfind("   ").map(|s| s + 3).unwrap_or(0);
                let state = l[start..end].split(' ').next().unwrap_or("");
                format!("{}{state} _{}", &l[..start], &l[end + 4..])
            }
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_docker_cli_runs_services_on_swarmnet() {
    let _turn = cluster::exclusive("the_docker_cli_runs_services_on_swarmnet");
    let Some(bin) = docker_cli() else {
        eprintln!("SKIPPED the_docker_cli_runs_services_on_swarmnet: no docker CLI on PATH (Debian's docker.io package provides one)");
        return;
    };
    let n1 = Node::start("127.92.9.1");
    n1.init();
    n1.ok(&["network", "create", "my-network"]);
    n1.ok(&["network", "create", "my-net2"]);
    let config = tempfile::tempdir().unwrap();
    let docker = |args: &[&str]| -> Output {
        Command::new(&bin)
            .args(args)
            .env("DOCKER_HOST", n1.host())
            .env("DOCKER_CONFIG", config.path())
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_API_VERSION")
            .output()
            .expect("run docker")
    };
    let ok = |args: &[&str]| {
        let out = docker(args);
        assert!(out.status.success(), "docker {args:?}: {}", stderr(&out));
        stdout(&out)
    };

    // The seed's command without -d: the ID, then the same progress as swarmnet's CLI prints.
    let out = ok(&[
        "service",
        "create",
        "--replicas",
        "3",
        "--name",
        "my-web",
        "--network",
        "my-network",
        "--publish",
        "8080:80",
        "swarmnet/whoami",
    ]);
    let id = out.lines().next().unwrap().to_string();
    assert_eq!(id.len(), 25, "{out}");
    let old_cli = cluster::cli_major(&bin) < 23;
    assert_progress(&out, 3, if old_cli { "" } else { &id });

    // ls, ps and inspect: what swarmnet's CLI prints, byte for byte.
    assert_eq!(ok(&["service", "ls"]), n1.ok(&["service", "ls"]));
    assert!(ok(&["service", "ls"]).contains("   3/3   "));
    assert_eq!(
        without_ages(&ok(&["service", "ps", "my-web"])),
        without_ages(&n1.ok(&["service", "ps", "my-web"]))
    );
    assert_eq!(
        json(&ok(&["service", "inspect", "my-web"])),
        json(&n1.ok(&["service", "inspect", "my-web"]))
    );
    assert_eq!(
        ok(&["service", "inspect", "--pretty", "my-web"]),
        n1.ok(&["service", "inspect", "--pretty", "my-web"])
    );
    assert_eq!(
        ok(&[
            "service",
            "inspect",
            "-f",
            "{{json .Endpoint.VirtualIPs}}",
            "my-web"
        ]),
        n1.ok(&[
            "service",
            "inspect",
            "-f",
            "{{json .Endpoint.VirtualIPs}}",
            "my-web"
        ])
    );

    // update, scale, rm: Docker's outputs, and both CLIs see the changes.
    assert_eq!(
        ok(&[
            "service",
            "update",
            "-d",
            "--network-add",
            "my-net2",
            "my-web"
        ]),
        "my-web\n"
    );
    assert_eq!(
        inspect(&n1, "my-web")["Endpoint"]["VirtualIPs"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        ok(&["service", "scale", "-d", "my-web=2"]),
        "my-web scaled to 2\n"
    );
    assert!(wait_until(SETTLE, || replicas(&n1, "my-web") == "2/2"));
    assert!(wait_until(SETTLE, || ok(&["service", "ls"]).contains("   2/2   ")));
    // The docker CLI's own scale waits with the same progress.
    let out = ok(&["service", "scale", "my-web=3"]);
    assert_eq!(out.lines().next(), Some("my-web scaled to 3"), "{out}");
    assert_progress(&out, 3, if old_cli { "" } else { "my-web" });

    // Errors: the same words through both CLIs.
    for args in [
        vec![
            "service",
            "create",
            "-d",
            "--name",
            "bad",
            "--endpoint-mode",
            "dnsrr",
            "--publish",
            "8081:80",
            "swarmnet/whoami",
        ],
        vec![
            "service",
            "create",
            "-d",
            "--name",
            "other",
            "-p",
            "8080:90",
            "swarmnet/whoami",
        ],
        vec![
            "service",
            "create",
            "-d",
            "--network",
            "nope",
            "swarmnet/whoami",
        ],
        vec![
            "service",
            "create",
            "-d",
            "--network",
            "ingress",
            "swarmnet/whoami",
        ],
        vec!["service", "rm", "nope"],
        vec!["network", "rm", "my-network"],
    ] {
        let theirs = docker(&args);
        assert!(!theirs.status.success(), "{args:?}");
        let theirs = stderr(&theirs);
        // The docker CLI before 23 prints its own words for a 404 (the daemon's are below).
        if old_cli && theirs.lines().any(|l| l.starts_with("Error: No such ")) {
            assert!(n1.fails(&args).contains("not found"), "{args:?}: {theirs}");
            continue;
        }
        // The docker CLI may print a registry warning first, and "exit status 1" after.
        let error = theirs
            .lines()
            .find(|l| l.starts_with("Error response from daemon: "))
            .unwrap_or_else(|| panic!("{args:?}: {theirs}"));
        assert_eq!(error, n1.fails(&args).trim(), "{args:?}");
    }

    // service logs: the docker CLI reads the same frames and names the task alike.
    let (_, body) = api(&n1, Method::GET, "/tasks", None);
    let addr = json(&body)[0]["NetworksAttachments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["Network"]["Spec"]["Name"] == "my-network")
        .map(|a| {
            a["Addresses"][0]
                .as_str()
                .unwrap()
                .split('/')
                .next()
                .unwrap()
                .to_string()
        })
        .unwrap();
    ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "fetcher",
        "--network",
        "my-network",
        "swarmnet/fetch",
        &format!("http://{addr}/"),
    ]);
    assert!(wait_until(SETTLE, || !n1
        .ok(&["service", "logs", "fetcher"])
        .is_empty()));
    let theirs = ok(&["service", "logs", "--tail", "1", "fetcher"]);
    let ours = n1.ok(&["service", "logs", "--tail", "1", "fetcher"]);
    let prefix = |t: &str| t.split(" | ").next().unwrap_or("").to_string();
    assert_eq!(prefix(&theirs), prefix(&ours), "{theirs}\n{ours}");
    assert!(prefix(&ours).starts_with("fetcher.1."), "{ours}");
    // (The docker CLI's --follow: the_docker_cli_follows_service_logs.)

    assert_eq!(
        ok(&["service", "rm", "my-web", "fetcher"]),
        "my-web\nfetcher\n"
    );
    assert_eq!(n1.ok(&["service", "ls", "-q"]), "");
}

#[test]
fn a_service_that_cannot_converge_is_waited_for_a_bounded_time() {
    let n1 = Node::start("127.92.6.1");
    n1.init();
    let out = Command::new(BIN)
        .args([
            "-H",
            &n1.host(),
            "service",
            "create",
            "--name",
            "nowhere",
            "--constraint",
            "node.hostname==no-such-node",
            "swarmnet/whoami",
        ])
        .env("SWARMNET_CONVERGE_TIMEOUT", "3")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.starts_with("Error: service ")
            && err.contains(" did not converge within 3s")
            && err.contains("it keeps converging in the background (see `service ps "),
        "{err}"
    );
    // The service exists: the wait only reported on it.
    assert_eq!(replicas(&n1, "nowhere"), "0/1");
}

const COMPOSE: &str = r#"version: "3.8"
services:
  web:
    image: swarmnet/whoami
    ports:
      - "8082:80"
    networks: [front]
    deploy:
      replicas: 2
  db:
    image: swarmnet/whoami
    networks: [front, back]
    deploy:
      endpoint_mode: dnsrr
      replicas: 1
networks:
  front:
    driver: overlay
    driver_opts:
      encrypted: ""
    ipam:
      config:
        - subnet: 10.30.0.0/24
  back:
    driver: overlay
    attachable: true
"#;

#[test]
fn docker_stack_deploy_services_ps_and_rm() {
    let _turn = cluster::exclusive("docker_stack_deploy_services_ps_and_rm");
    let Some(bin) = docker_cli() else {
        eprintln!("SKIPPED docker_stack_deploy_services_ps_and_rm: no docker CLI on PATH (Debian's docker.io package provides one)");
        return;
    };
    let n1 = Node::start("127.92.8.1");
    n1.init();
    let dir = tempfile::tempdir().unwrap();
    let compose = dir.path().join("compose.yml");
    std::fs::write(&compose, COMPOSE).unwrap();
    let docker = |args: &[&str]| -> String {
        let out = Command::new(&bin)
            .args(args)
            .env("DOCKER_HOST", n1.host())
            .env("DOCKER_CONFIG", dir.path())
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_API_VERSION")
            .output()
            .expect("run docker");
        assert!(out.status.success(), "docker {args:?}: {}", stderr(&out));
        stdout(&out)
    };
    let out = docker(&["stack", "deploy", "-c", compose.to_str().unwrap(), "shop"]);
    for line in [
        "Creating network shop_back",
        "Creating network shop_front",
        "Creating service shop_db",
        "Creating service shop_web",
    ] {
        assert!(out.lines().any(|l| l == line), "{line:?} not in:\n{out}");
    }
    // The stack's objects, labelled as Docker labels them, as the compose file asks.
    let db = inspect(&n1, "shop_db");
    assert_eq!(db["Spec"]["Labels"]["com.docker.stack.namespace"], "shop");
    assert_eq!(db["Endpoint"]["Spec"]["Mode"], "dnsrr");
    assert!(
        db["Endpoint"]["VirtualIPs"].is_null(),
        "dnsrr has no VIP: {db}"
    );
    assert_eq!(
        db["Spec"]["TaskTemplate"]["Networks"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let web = inspect(&n1, "shop_web");
    assert_eq!(web["Endpoint"]["Ports"][0]["PublishedPort"], 8082);
    let front: serde_json::Value = json(&n1.ok(&["network", "inspect", "shop_front"]));
    assert_eq!(front[0]["IPAM"]["Config"][0]["Subnet"], "10.30.0.0/24");
    assert_eq!(front[0]["Options"]["encrypted"], "");
    assert_eq!(front[0]["Labels"]["com.docker.stack.namespace"], "shop");

    assert!(
        wait_until(SETTLE, || {
            let s = docker(&["stack", "services", "shop"]);
            let rows: Vec<Vec<&str>> = s.lines().map(|l| l.split_whitespace().collect()).collect();
            rows.iter()
                .any(|r| r.get(1..4) == Some(&["shop_web", "replicated", "2/2"][..]))
                && rows
                    .iter()
                    .any(|r| r.get(1..4) == Some(&["shop_db", "replicated", "1/1"][..]))
        }),
        "{}",
        docker(&["stack", "services", "shop"])
    );
    let ps = docker(&["stack", "ps", "-f", "desired-state=running", "shop"]);
    let names: Vec<&str> = ps
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(names, ["shop_db.1", "shop_web.1", "shop_web.2"], "{ps}");
    // The docker CLI before 23 has an ORCHESTRATOR column.
    let want = if cluster::cli_major(&bin) < 23 {
        "NAME      SERVICES   ORCHESTRATOR\nshop      2          Swarm\n"
    } else {
        "NAME      SERVICES\nshop      2\n"
    };
    assert_eq!(docker(&["stack", "ls"]), want);

    let out = docker(&["stack", "rm", "shop"]);
    // Services first, then networks, each kind in the order the daemon lists them.
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    let mut services = lines[..2].to_vec();
    let mut networks = lines[2..].to_vec();
    services.sort();
    networks.sort();
    assert_eq!(
        services,
        ["Removing service shop_db", "Removing service shop_web"],
        "{out}"
    );
    assert_eq!(
        networks,
        ["Removing network shop_back", "Removing network shop_front"],
        "{out}"
    );
    assert_eq!(n1.ok(&["service", "ls", "-q"]), "");
    let want = if cluster::cli_major(&bin) < 23 {
        "NAME      SERVICES   ORCHESTRATOR\n"
    } else {
        "NAME      SERVICES\n"
    };
    assert_eq!(docker(&["stack", "ls"]), want);
}

#[test]
fn on_a_terminal_the_progress_is_a_redrawn_block_with_bars() {
    // `script` gives the CLI a terminal (util-linux); without it this is skipped, saying so.
    if !Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("SKIPPED on_a_terminal_the_progress_is_a_redrawn_block_with_bars: no `script` (util-linux) to give the CLI a terminal");
        return;
    }
    let n1 = Node::start("127.92.7.1");
    n1.init();
    n1.ok(&["network", "create", "my-network"]);
    let cli = format!(
        "{BIN} -H {} service create --name tty --replicas 2 --network my-network swarmnet/whoami",
        n1.host()
    );
    let out = Command::new("script")
        .args(["-qefc", &cli, "/dev/null"])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    // Each line is drawn in place: cursor up, erase the line, the text, back down.
    assert!(
        text.contains("\x1b[2K\roverall progress: 2 out of 2 tasks "),
        "{text:?}"
    );
    assert!(
        text.contains("1/2: running   [==================================================>] "),
        "{text:?}"
    );
    assert!(text.contains("\x1b[2K\rverify: Service "), "{text:?}");
    assert!(text.contains(" converged "), "{text:?}");
    assert_eq!(replicas(&n1, "tty"), "2/2");
}

const DOCKER_PY: &str = r#"
import sys, time, docker
c = docker.DockerClient(base_url="unix://" + sys.argv[1])
n = c.networks.create("pynet", driver="overlay")
s = c.services.create("swarmnet/whoami", name="pyweb", networks=["pynet"],
    mode=docker.types.ServiceMode("replicated", replicas=2),
    endpoint_spec=docker.types.EndpointSpec(ports={8088: 80}))
for _ in range(150):
    if sum(t["Status"]["State"] == "running" for t in s.tasks(filters={"desired-state": "running"})) == 2:
        break
    time.sleep(0.2)
print("running", sorted(t["Slot"] for t in s.tasks(filters={"desired-state": "running"}) if t["Status"]["State"] == "running"))
print("list", [x.name for x in c.services.list()])
s.scale(3)
s.reload()
print("replicas", s.attrs["Spec"]["Mode"]["Replicated"]["Replicas"])
s.update(env=["A=1"])
s.reload()
print("env", s.version, s.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"])
s.remove()
n.remove()
print("after", c.services.list())
"#;

#[test]
fn docker_py_creates_lists_scales_updates_and_removes_services() {
    let _turn = cluster::exclusive("docker_py_creates_lists_scales_updates_and_removes_services");
    let has_docker_py = Command::new("python3")
        .args(["-c", "import docker"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_docker_py {
        eprintln!("SKIPPED docker_py_creates_lists_scales_updates_and_removes_services: no python3 with the docker package (PyPI's docker)");
        return;
    }
    let n1 = Node::start("127.92.7.3");
    n1.init();
    let out = Command::new("python3")
        .args(["-c", DOCKER_PY])
        .arg(&n1.socket)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(
        stdout(&out),
        "running [1, 2]\nlist ['pyweb']\nreplicas 3\nenv 3 ['A=1']\nafter []\n"
    );
}

/// The docker CLI's and docker-py's service tests again with the daemon and every client run by
/// a user without privileges; the tasks are virtual.
#[test]
fn the_docker_cli_and_docker_py_drive_services_on_an_unprivileged_daemon() {
    for name in [
        "the_docker_cli_runs_services_on_swarmnet",
        "docker_stack_deploy_services_ps_and_rm",
        "docker_py_creates_lists_scales_updates_and_removes_services",
    ] {
        cluster::rerun_unprivileged(name);
    }
}

/// `docker service logs -f`: the lines kept, then new ones as the task writes them, on one
/// answer that stays open until the client goes; swarmnet's route without a CLI in between too.
#[test]
fn the_docker_cli_follows_service_logs() {
    let Some(bin) = docker_cli() else {
        eprintln!("SKIPPED the_docker_cli_follows_service_logs: no docker CLI on PATH (Debian's docker.io package provides one)");
        return;
    };
    let n1 = Node::start("127.92.10.1");
    n1.init();
    n1.ok(&["network", "create", "my-network"]);
    n1.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "web",
        "--network",
        "my-network",
        "swarmnet/whoami",
    ]);
    // A client that logs a line every second.
    n1.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "client",
        "--network",
        "my-network",
        "swarmnet/fetch",
        "http://web/",
    ]);
    assert!(wait_until(SETTLE, || n1
        .ok(&["service", "logs", "client"])
        .contains(": 200,")));
    let config = tempfile::tempdir().unwrap();
    let mut child = Command::new(&bin)
        .args(["service", "logs", "-f", "client"])
        .env("DOCKER_HOST", n1.host())
        .env("DOCKER_CONFIG", config.path())
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_API_VERSION")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("docker service logs -f");
    let kept = n1.ok(&["service", "logs", "client"]).lines().count();
    // Read lines until three more than were kept arrived: they were written after the start.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while lines.len() < kept + 3 && std::time::Instant::now() < deadline {
        if let Ok(Ok(line)) = rx.recv_timeout(Duration::from_millis(500)) {
            lines.push(line);
        }
    }
    // Still following: the CLI has not exited.
    assert!(
        child.try_wait().unwrap().is_none(),
        "docker service logs -f ended: {lines:?}"
    );
    let _ = child.kill();
    let _ = child.wait();
    assert!(lines.len() >= kept + 3, "{kept} kept, then {lines:?}");
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("client.1.") && l.contains(" | GET http://web:80/")),
        "{lines:?}"
    );
    // Each line once: the new ones follow the kept ones without repeating them.
    let unique: std::collections::BTreeSet<&String> = lines.iter().collect();
    assert_eq!(unique.len(), lines.len(), "{lines:?}");
    // A followed request for a service that does not exist is refused at once.
    let (code, body) = api(
        &n1,
        Method::GET,
        "/services/nope/logs?follow=1&stdout=1",
        None,
    );
    assert_eq!(code, 404, "{body}");
}
