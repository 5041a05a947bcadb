//! `daemon --metrics-addr`: the endpoint parses as Prometheus text, its data-path counters
//! move while virtual tasks talk through a VIP, its control-plane gauges say what the node is;
//! an encrypted network between two nodes shows its SAs and underlay traffic; a taken port
//! stops the daemon with a message that names it. Loopback 127.93.1.x only.

mod cluster;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cluster::{wait_until, Node, BIN};
use prometheus_parse::{Sample, Scrape, Value};

const SETTLE: Duration = Duration::from_secs(40);

/// `GET /metrics` at `addr`: the status line and the parsed body. Every line that is not a
/// comment must be a sample (the parser skips what it cannot read, so count them).
fn scrape(addr: &str) -> (String, Scrape) {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics address");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read the answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    // A close-delimited or chunked body: take the text lines that look like exposition.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    let lines: Vec<String> = body.lines().map(str::to_string).collect();
    let parsed = Scrape::parse(lines.iter().cloned().map(Ok)).expect("Prometheus text");
    let sample_lines = lines
        .iter()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    assert_eq!(
        parsed.samples.len(),
        sample_lines,
        "lines the parser could not read:\n{body}"
    );
    (head.lines().next().unwrap_or("").to_string(), parsed)
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = &tail[n + 2..];
    }
    out
}

fn value(s: &Sample) -> f64 {
    match s.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
        _ => f64::NAN,
    }
}

/// The sum of the samples of `metric` whose labels include every one of `labels`.
fn sum(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(value)
        .sum()
}

/// Whether `metric` has a sample with `labels` of the type `counter`.
fn is_counter(scrape: &Scrape, metric: &str) -> bool {
    scrape
        .samples
        .iter()
        .any(|s| s.metric == metric && matches!(s.value, Value::Counter(_)))
}

#[test]
fn the_endpoint_parses_and_its_counters_move_with_traffic_between_virtual_tasks() {
    let addr = "127.93.1.1:9323";
    let n = Node::start_with_args("127.93.1.1", "node-1", &["--metrics-addr", addr]);
    // Outside a swarm: a scrape answers, with no Raft and no data path.
    let (_, s) = scrape(addr);
    assert_eq!(sum(&s, "swarmnet_raft_leader", &[]), 0.0);
    assert!(!s
        .samples
        .iter()
        .any(|x| x.metric.starts_with("swarmnet_port_")));

    n.init();
    let mut last = scrape(addr).1;
    assert!(
        wait_until(SETTLE, || {
            last = scrape(addr).1;
            sum(&last, "swarmnet_raft_leader", &[("node", "node-1")]) == 1.0
        }),
        "{:?}",
        last.samples
    );
    assert!(sum(&last, "swarmnet_raft_term", &[]) >= 1.0);
    assert!(sum(&last, "swarmnet_raft_commit_index", &[]) >= 1.0);
    assert_eq!(sum(&last, "swarmnet_dispatcher_sessions", &[]), 1.0);
    assert_eq!(
        sum(&last, "swarmnet_node_role", &[("role", "manager")]),
        1.0
    );
    assert_eq!(sum(&last, "swarmnet_nodes", &[("state", "ready")]), 1.0);

    n.ok(&["network", "create", "-d", "overlay", "my-net"]);
    n.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "web",
        "--network",
        "my-net",
        "swarmnet/whoami",
    ]);
    n.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "client",
        "--network",
        "my-net",
        "swarmnet/fetch",
        "http://web/",
    ]);
    // The client's requests reach whoami through the VIP the node's DNS gave it.
    let web_rx = [
        ("network", "my-net"),
        ("service", "web"),
        ("direction", "rx"),
    ];
    assert!(
        wait_until(SETTLE, || {
            last = scrape(addr).1;
            sum(&last, "swarmnet_port_packets_total", &web_rx) > 0.0
                && sum(
                    &last,
                    "swarmnet_vip_connections_total",
                    &[("service", "web")],
                ) > 0.0
                && sum(&last, "swarmnet_dns_queries_total", &[("answer", "local")]) > 0.0
        }),
        "{}\n{}",
        n.ok(&["service", "ps", "client"]),
        n.log()
    );
    assert!(is_counter(&last, "swarmnet_port_packets_total"));
    assert!(is_counter(&last, "swarmnet_vip_connections_total"));
    assert_eq!(sum(&last, "swarmnet_tasks", &[("state", "running")]), 2.0);
    // The series name the task and service of the port.
    let web_task = last
        .samples
        .iter()
        .find(|x| {
            x.metric == "swarmnet_port_packets_total" && x.labels.get("service") == Some("web")
        })
        .and_then(|x| x.labels.get("task").map(str::to_string))
        .unwrap();
    assert!(web_task.starts_with("web.1."), "{web_task}");
    // Each direction of each side moves: the client's tx and rx, whoami's rx and tx.
    let client_tx = [("service", "client"), ("direction", "tx")];
    let before = (
        sum(&last, "swarmnet_port_bytes_total", &web_rx),
        sum(&last, "swarmnet_port_bytes_total", &client_tx),
        sum(
            &last,
            "swarmnet_vip_connections_total",
            &[("service", "web")],
        ),
        sum(
            &last,
            "swarmnet_network_packets_total",
            &[("network", "my-net")],
        ),
    );
    assert!(
        wait_until(SETTLE, || {
            last = scrape(addr).1;
            sum(&last, "swarmnet_port_bytes_total", &web_rx) > before.0
                && sum(&last, "swarmnet_port_bytes_total", &client_tx) > before.1
                && sum(
                    &last,
                    "swarmnet_vip_connections_total",
                    &[("service", "web")],
                ) > before.2
                && sum(
                    &last,
                    "swarmnet_network_packets_total",
                    &[("network", "my-net")],
                ) > before.3
        }),
        "counters did not move from {before:?}"
    );
    // The Grafana dashboard asks only for families the endpoint has (ESP's need keys).
    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/grafana-swarmnet.json"
    ))
    .unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let mut asked = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for (i, _) in expr.match_indices("swarmnet_") {
                let name: String = expr[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                asked.push(name);
            }
        }
    }
    assert!(asked.len() > 10, "{asked:?}");
    for name in &asked {
        assert!(
            last.docs.contains_key(name) || name == "swarmnet_esp_security_associations",
            "the dashboard asks for {name}, which the endpoint does not have"
        );
    }

    // A removed task's port leaves its series; its network's counters keep what it counted:
    // at least the ports still there and the last bytes seen of the one gone.
    let port_bytes = |s: &Scrape, prefix: &str| -> f64 {
        s.samples
            .iter()
            .filter(|x| x.metric == "swarmnet_port_bytes_total")
            .filter(|x| x.labels.get("network") == Some("my-net"))
            .filter(|x| x.labels.get("port").is_some_and(|p| p.starts_with(prefix)))
            .map(value)
            .sum()
    };
    let mut client_last = port_bytes(&last, "client.");
    assert!(client_last > 0.0);
    n.ok(&["service", "rm", "client"]);
    assert!(
        wait_until(SETTLE, || {
            last = scrape(addr).1;
            let gone = !last.samples.iter().any(|x| {
                x.metric == "swarmnet_port_bytes_total"
                    && x.labels
                        .get("port")
                        .is_some_and(|p| p.starts_with("client."))
            });
            if !gone {
                client_last = port_bytes(&last, "client.");
            }
            gone
        }),
        "the client's port stayed"
    );
    let net = sum(
        &last,
        "swarmnet_network_bytes_total",
        &[("network", "my-net")],
    );
    let others = port_bytes(&last, "");
    assert!(
        net >= others + client_last,
        "network {net} < ports {others} + removed port {client_last}"
    );

    // Not found elsewhere than /metrics.
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 404"), "{text}");
}

/// Runs `swarmnet daemon` with `args` and waits (bounded) for it to exit; returns (success,
/// stderr).
fn daemon_exit(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let mut child = Command::new(BIN)
        .arg("-H")
        .arg(format!("unix://{}", dir.join("api.sock").display()))
        .args(["daemon", "--state-dir"])
        .arg(dir.join("state"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let status = status.expect("the daemon should have stopped at start");
    (status.success(), err)
}

#[test]
fn a_taken_port_or_a_bad_address_stops_the_daemon_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.93.1.2:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (ok, err) = daemon_exit(dir.path(), &["--metrics-addr", &addr]);
    assert!(!ok);
    assert!(
        err.contains(&format!("cannot serve metrics on {addr}")) && err.contains("already in use"),
        "{err}"
    );
    // Nothing of the daemon was left running: its socket is free for the next one.
    assert!(!dir.path().join("api.sock").exists(), "{err}");

    let (ok, err) = daemon_exit(dir.path(), &["--metrics-addr", "127.93.1.2"]);
    assert!(!ok);
    assert!(err.contains("is not an IP address and port"), "{err}");
}

#[test]
fn an_encrypted_network_between_two_nodes_shows_its_sas_and_underlay_traffic() {
    let m1 = "127.93.1.11:9323";
    let m2 = "127.93.1.12:9323";
    let n1 = Node::start_with_args("127.93.1.11", "node-1", &["--metrics-addr", m1]);
    let n2 = Node::start_with_args("127.93.1.12", "node-2", &["--metrics-addr", m2]);
    n1.init();
    let out = n2.join(&n1.token("worker"), &n1);
    assert!(out.status.success(), "{}", cluster::stderr(&out));
    n1.ok(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--opt",
        "encrypted",
        "secret-net",
    ]);
    // A whoami and a client on each node: the VIP sends some requests across.
    for (name, image, arg) in [
        ("web", "swarmnet/whoami", None),
        ("client", "swarmnet/fetch", Some("http://web/")),
    ] {
        let mut args = vec![
            "service",
            "create",
            "-d",
            "--mode",
            "global",
            "--name",
            name,
            "--network",
            "secret-net",
            image,
        ];
        args.extend(arg);
        n1.ok(&args);
    }
    let mut last = (scrape(m1).1, scrape(m2).1);
    assert!(
        wait_until(SETTLE, || {
            last = (scrape(m1).1, scrape(m2).1);
            [&last.0, &last.1].iter().all(|s| {
                sum(
                    s,
                    "swarmnet_esp_security_associations",
                    &[("direction", "outbound")],
                ) >= 1.0
                    && sum(
                        s,
                        "swarmnet_esp_security_associations",
                        &[("direction", "inbound")],
                    ) >= 1.0
                    && sum(s, "swarmnet_underlay_bytes_total", &[("direction", "tx")]) > 0.0
                    && sum(s, "swarmnet_underlay_bytes_total", &[("direction", "rx")]) > 0.0
                    && sum(
                        s,
                        "swarmnet_port_packets_total",
                        &[
                            ("network", "secret-net"),
                            ("service", "web"),
                            ("direction", "rx"),
                        ],
                    ) > 0.0
            })
        }),
        "node-1: {:?}\nnode-2: {:?}\n{}",
        last.0
            .samples
            .iter()
            .filter(|x| x.metric.contains("esp") || x.metric.contains("underlay"))
            .collect::<Vec<_>>(),
        last.1
            .samples
            .iter()
            .filter(|x| x.metric.contains("esp") || x.metric.contains("underlay"))
            .collect::<Vec<_>>(),
        n1.ok(&["service", "ps", "web"])
    );
    // Each node names itself; the worker has no Raft.
    assert_eq!(
        sum(
            &last.1,
            "swarmnet_node_role",
            &[("node", "node-2"), ("role", "worker")]
        ),
        1.0
    );
    assert!(!last.1.docs.contains_key("swarmnet_raft_term"));
    // Nothing was refused as a replay or for a bad ICV on the way.
    for s in [&last.0, &last.1] {
        assert!(s
            .samples
            .iter()
            .any(|x| x.metric == "swarmnet_drops_total"
                && x.labels.get("reason") == Some("esp_replay")));
        assert_eq!(
            sum(s, "swarmnet_drops_total", &[("reason", "esp_replay")]),
            0.0
        );
        assert_eq!(
            sum(s, "swarmnet_drops_total", &[("reason", "esp_auth")]),
            0.0
        );
    }
}
