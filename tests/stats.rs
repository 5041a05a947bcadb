//! `swarmnet stats` against unprivileged daemons with virtual tasks: the bytes of one HTTP
//! fetch through a service's VIP are counted on the task rows, the network row and the VIP row,
//! within the fetch's size and its headers; `--no-stream --format json` parses; names keep
//! their rows only; an unknown name fails naming it; piped, the stream prints one table per
//! refresh with rates from the second on. Loopback 127.93.3.x and 127.93.4.x only.

mod cluster;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use cluster::{bin, wait_until, Node};
use serde_json::Value;

const SETTLE: Duration = Duration::from_secs(40);
/// The body the fetch asks whoami for.
const N: u64 = 200_000;
/// Most of a frame that is not TCP payload: Ethernet, an IPv4 header with the most options,
/// a TCP header with the most options.
const FRAME_HEADERS: u64 = 14 + 60 + 60;
/// Most of an HTTP request or response head of the fetch (whoami's is about 110 bytes).
const HTTP_HEAD: u64 = 512;

fn stats_json(n: &Node, names: &[&str]) -> Value {
    let mut args = vec!["stats", "--no-stream", "--format", "json"];
    args.extend_from_slice(names);
    let out = n.ok(&args);
    assert_eq!(out.lines().count(), 1, "one JSON object on one line: {out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn rows<'a>(s: &'a Value, table: &str) -> &'a Vec<Value> {
    s[table]
        .as_array()
        .unwrap_or_else(|| panic!("no {table}: {s}"))
}

/// The row of `table` whose fields are all `fields`.
fn row<'a>(s: &'a Value, table: &str, fields: &[(&str, &str)]) -> Option<&'a Value> {
    rows(s, table)
        .iter()
        .find(|r| fields.iter().all(|(k, v)| r[*k] == *v))
}

fn num(r: Option<&Value>, field: &str) -> u64 {
    r.and_then(|r| r[field].as_u64()).unwrap_or(0)
}

/// One HTTP GET of `/data?size=N` at `addr`: the body's length, or why not.
fn fetch(addr: &str) -> Result<u64, String> {
    let sa: SocketAddr = addr.parse().map_err(|e| format!("{e}"))?;
    let mut s = TcpStream::connect_timeout(&sa, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "GET /data?size={N} HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)
        .map_err(|e| format!("read {addr}: {e}"))?;
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no HTTP head from {addr}: {answer:?}"))?;
    if !answer.starts_with(b"HTTP/1.1 200 OK") {
        return Err(format!(
            "not a 200: {}",
            String::from_utf8_lossy(&answer[..end])
        ));
    }
    Ok((answer.len() - end - 4) as u64)
}

#[test]
fn a_fetch_through_a_vip_is_counted_on_its_task_network_and_vip_rows() {
    let ip = "127.93.3.1";
    let n = Node::start_with_args(ip, "node-1", &["--publish-addr", ip]);
    // Outside a swarm: an answer with no data path and no rows.
    let s = stats_json(&n, &[]);
    assert_eq!(s["data_path"], false, "{s}");
    assert!(rows(&s, "tasks").is_empty());

    n.init();
    n.ok(&["network", "create", "-d", "overlay", "my-net"]);
    n.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "web",
        "--network",
        "my-net",
        "-p",
        "8093:80",
        "swarmnet/whoami",
    ]);
    // The web task has its ports on both networks and the node its ingress sandbox.
    let mut s = Value::Null;
    assert!(
        wait_until(SETTLE, || {
            s = stats_json(&n, &[]);
            rows(&s, "tasks")
                .iter()
                .filter(|r| r["service"] == "web")
                .count()
                == 2
                && row(&s, "tasks", &[("task", "ingress-sbox")]).is_some()
        }),
        "{s}\n{}",
        n.log()
    );
    let web_task = row(&s, "tasks", &[("service", "web")]).unwrap()["task"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(web_task.starts_with("web.1."), "{web_task}");
    // Nothing has used the ingress network yet: its rows are zero.
    let web_ingress = [("task", web_task.as_str()), ("network", "ingress")];
    assert_eq!(num(row(&s, "tasks", &web_ingress), "tx_bytes"), 0, "{s}");

    // One fetch through the published port: the node's sandbox connects to web's VIP on the
    // ingress network. Attempts before the port listens are refused by the kernel (nothing
    // reaches the task); count them all the same.
    let addr = format!("{ip}:8093");
    let mut attempts = 0u64;
    let mut last = Err(String::new());
    assert!(
        wait_until(SETTLE, || {
            attempts += 1;
            last = fetch(&addr);
            last.is_ok()
        }),
        "{last:?}\n{}",
        n.log()
    );
    assert_eq!(last, Ok(N));

    // Counters reach the node within a worker's publishing period: wait for the body's bytes.
    assert!(
        wait_until(SETTLE, || {
            s = stats_json(&n, &[]);
            num(row(&s, "tasks", &web_ingress), "tx_bytes") >= N
                && num(
                    row(
                        &s,
                        "services",
                        &[("service", "web"), ("network", "ingress")],
                    ),
                    "connections",
                ) >= 1
        }),
        "{s}"
    );
    // The task sent the body once: at least N, at most N, a head and every frame's headers.
    let web = row(&s, "tasks", &web_ingress).unwrap();
    let (tx_packets, tx_bytes) = (num(Some(web), "tx_packets"), num(Some(web), "tx_bytes"));
    assert!(
        tx_bytes <= N + attempts * HTTP_HEAD + tx_packets * FRAME_HEADERS,
        "web sent {tx_bytes} bytes in {tx_packets} frames for a {N}-byte body: {s}"
    );
    // Frames of at least 1000 payload bytes (the ingress MTU is 1450), and a few for the
    // handshake and the close.
    assert!(
        tx_packets >= N / 1500 && tx_packets <= N / 1000 + 16 * attempts,
        "{tx_packets} frames: {s}"
    );
    // It received the request and the acknowledgements: no body.
    let rx_bytes = num(Some(web), "rx_bytes");
    let rx_packets = num(Some(web), "rx_packets");
    assert!(
        rx_bytes > 0 && rx_bytes <= attempts * HTTP_HEAD + rx_packets * FRAME_HEADERS,
        "web received {rx_bytes} bytes in {rx_packets} frames: {s}"
    );
    // The sandbox received what web sent, frame for frame.
    let sbox = row(&s, "tasks", &[("task", "ingress-sbox")]).unwrap();
    let sbox_rx = num(Some(sbox), "rx_bytes");
    assert!(
        (N..=N + attempts * HTTP_HEAD + num(Some(sbox), "rx_packets") * FRAME_HEADERS)
            .contains(&sbox_rx),
        "the sandbox received {sbox_rx} bytes: {s}"
    );
    // The ingress network's row sums its two local ports: what reached tasks is the body and
    // the request, what tasks sent the same.
    let net = row(&s, "networks", &[("network", "ingress")]).unwrap();
    for (bytes, packets) in [("rx_bytes", "rx_packets"), ("tx_bytes", "tx_packets")] {
        let b = num(Some(net), bytes);
        let p = num(Some(net), packets);
        assert!(
            (N..=N + 2 * attempts * HTTP_HEAD + p * FRAME_HEADERS).contains(&b),
            "ingress {bytes} {b} in {p} frames: {s}"
        );
    }
    // One connection through web's ingress VIP, carrying the body.
    let vip = row(
        &s,
        "services",
        &[("service", "web"), ("network", "ingress")],
    )
    .unwrap();
    assert!(
        (1..=attempts).contains(&num(Some(vip), "connections")),
        "{vip}"
    );
    assert!(num(Some(vip), "bytes") >= N, "{vip}");
    assert_eq!(
        num(Some(net), "vip_connections"),
        num(Some(vip), "connections")
    );
    // my-net carried nothing of it.
    assert!(
        num(
            row(&s, "tasks", &[("task", &web_task), ("network", "my-net")]),
            "tx_bytes"
        ) < N,
        "{s}"
    );

    // The table says the same numbers in Docker's units, with the node's lines.
    let table = n.ok(&["stats", "--no-stream", &web_task]);
    let line = table
        .lines()
        .find(|l| l.starts_with(&web_task) && l.contains(" ingress "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(line.contains("kB"), "{line}");
    assert!(!table.contains("ingress-sbox"), "{table}");
    for words in ["NODE node-1", "dns queries", "drops", "esp"] {
        assert!(table.contains(words), "no {words:?} in {table}");
    }
}

#[test]
fn names_keep_their_rows_an_unknown_one_fails_and_a_pipe_gets_a_table_per_refresh() {
    let ip = "127.93.4.1";
    let n = Node::start_as(ip, "node-2");
    n.init();
    n.ok(&["network", "create", "-d", "overlay", "my-net"]);
    n.ok(&["network", "create", "-d", "overlay", "other-net"]);
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
        "--network",
        "other-net",
        "swarmnet/fetch",
        &format!("http://web/data?size={N}"),
    ]);
    // The client resolves web's name at the node and fetches through its VIP.
    let mut s = Value::Null;
    assert!(
        wait_until(SETTLE, || {
            s = stats_json(&n, &[]);
            num(
                row(&s, "tasks", &[("service", "client"), ("network", "my-net")]),
                "rx_bytes",
            ) >= N
                && num(
                    row(&s, "services", &[("service", "web"), ("network", "my-net")]),
                    "connections",
                ) >= 1
                && s["node"]["dns_local"].as_u64().unwrap_or(0) >= 1
                && rows(&s, "tasks")
                    .iter()
                    .filter(|r| r["service"] == "client")
                    .count()
                    == 3
        }),
        "{s}\n{}",
        n.log()
    );
    // Every body whoami sent reached the client (same node, same network): what web sent on
    // my-net is at least N, and the network row counts it too.
    let web = row(&s, "tasks", &[("service", "web"), ("network", "my-net")]).unwrap();
    assert!(num(Some(web), "tx_bytes") >= N, "{s}");
    let net = row(&s, "networks", &[("network", "my-net")]).unwrap();
    assert!(num(Some(net), "rx_bytes") >= N, "{s}");
    assert!(num(Some(net), "vip_connections") >= 1, "{s}");
    let client_task = row(&s, "tasks", &[("service", "client")]).unwrap()["task"]
        .as_str()
        .unwrap()
        .to_string();
    let client_id = client_task.rsplit('.').next().unwrap().to_string();

    let tasks_of = |s: &Value| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = rows(s, "tasks")
            .iter()
            .map(|r| {
                (
                    r["task"].as_str().unwrap().to_string(),
                    r["network"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let names_of = |s: &Value, table: &str, field: &str| -> Vec<String> {
        rows(s, table)
            .iter()
            .map(|r| r[field].as_str().unwrap().to_string())
            .collect()
    };
    // A task, by full name, `service.slot` or ID: its rows, one per network (its way out,
    // docker_gwbridge, too: a fetch goes out), nothing else.
    let both = vec![
        (client_task.clone(), "docker_gwbridge".to_string()),
        (client_task.clone(), "my-net".to_string()),
        (client_task.clone(), "other-net".to_string()),
    ];
    for name in [client_task.as_str(), "client.1", client_id.as_str()] {
        let s = stats_json(&n, &[name]);
        assert_eq!(tasks_of(&s), both, "{name}: {s}");
        assert!(rows(&s, "networks").is_empty(), "{name}: {s}");
        assert!(rows(&s, "services").is_empty(), "{name}: {s}");
    }
    // A network: its row only.
    let s = stats_json(&n, &["other-net"]);
    assert_eq!(names_of(&s, "networks", "network"), ["other-net"], "{s}");
    assert!(rows(&s, "tasks").is_empty(), "{s}");
    // A service: its tasks and its VIPs.
    let s = stats_json(&n, &["web"]);
    assert!(
        tasks_of(&s).iter().all(|(t, _)| t.starts_with("web.1.")) && !tasks_of(&s).is_empty(),
        "{s}"
    );
    assert!(
        names_of(&s, "services", "service")
            .iter()
            .all(|x| x == "web")
            && !rows(&s, "services").is_empty(),
        "{s}"
    );
    assert!(rows(&s, "networks").is_empty(), "{s}");
    // Several names: the union.
    let s = stats_json(&n, &["web", "my-net"]);
    assert_eq!(names_of(&s, "networks", "network"), ["my-net"], "{s}");
    assert!(tasks_of(&s).iter().all(|(t, _)| t.starts_with("web.1.")));

    // An unknown name fails, naming it, whatever the other names.
    for args in [
        vec!["stats", "--no-stream", "nope"],
        vec!["stats", "--no-stream", "--format", "json", "web", "nope"],
        vec!["stats", "nope"],
    ] {
        let err = n.fails(&args);
        assert!(
            err.contains("no such network, service or task on this node: nope"),
            "{args:?}: {err}"
        );
    }

    // Piped, the stream prints a table per refresh (no screen clearing); the second has rates.
    let mut child = Command::new(bin())
        .args(["-H", &n.host(), "stats", "my-net", "client"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn swarmnet stats");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let mut headers = 0;
    while headers < 2 {
        match lines.next() {
            Some(Ok(l)) => {
                if l.starts_with("TASK ") {
                    headers += 1;
                }
                seen.push(l);
            }
            other => panic!("the stream ended ({other:?}) after:\n{}", seen.join("\n")),
        }
    }
    // Read the rest of the second table's task rows.
    for _ in 0..2 {
        if let Some(Ok(l)) = lines.next() {
            seen.push(l);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = seen.join("\n");
    assert!(!text.contains('\x1b'), "escape codes in a pipe: {text:?}");
    let second = text.rsplit("TASK ").next().unwrap();
    let client_rows: Vec<&str> = second
        .lines()
        .filter(|l| l.starts_with(&client_task))
        .collect();
    assert_eq!(client_rows.len(), 2, "{text}");
    for l in client_rows {
        assert!(l.contains("/s"), "no rate in the second table: {l}\n{text}");
    }
    let first = text.split("TASK ").nth(1).unwrap();
    assert!(
        first
            .lines()
            .filter(|l| l.starts_with(&client_task))
            .all(|l| !l.contains("/s")),
        "rates in the first table: {text}"
    );

    // On a terminal each refresh clears the screen and draws the table again from the top.
    redrawn_on_a_terminal(&n, &client_task);

    // A named task leaving the node empties its rows; the stream goes on.
    let mut child = Command::new(bin())
        .args(["-H", &n.host(), "stats", &client_task])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn swarmnet stats");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = || match lines.next() {
        Some(Ok(l)) => l,
        other => panic!("the stream ended: {other:?}"),
    };
    while !next().starts_with(&client_task) {}
    n.ok(&["service", "rm", "client"]);
    // A table whose header is followed by no row (the task stops a few seconds after its
    // removal; each second prints about fifteen lines).
    let mut header = false;
    let mut emptied = false;
    for _ in 0..2000 {
        let l = next();
        if header && l.is_empty() {
            emptied = true;
            break;
        }
        header = l.starts_with("TASK ");
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(emptied, "the client's rows never left\n{}", n.log());
}

/// `swarmnet stats` run on a pseudo-terminal (util-linux `script` makes one): its output
/// holds a clear-screen-and-home before each table.
fn redrawn_on_a_terminal(n: &Node, client_task: &str) {
    const CLEAR: &str = "\x1b[2J\x1b[H";
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("SKIPPED: no `script` (util-linux) to give `swarmnet stats` a terminal");
        return;
    }
    let cmd = format!("{} -H {} stats client", bin(), n.host());
    let mut child = Command::new("script")
        .args(["-qfec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn script");
    let mut out = child.stdout.take().unwrap();
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    // Two whole tables: the second clear, then the node's last line after it (or enough
    // text to say they never came).
    while text.len() < 1 << 16
        && !text
            .rsplit(CLEAR)
            .next()
            .is_some_and(|t| text.matches(CLEAR).count() >= 2 && t.contains("replays refused"))
    {
        match out.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(k) => text.push_str(&String::from_utf8_lossy(&buf[..k])),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let tables: Vec<&str> = text.split(CLEAR).skip(1).collect();
    assert!(tables.len() >= 2, "{text:?}");
    for t in &tables[..2] {
        assert!(t.starts_with("TASK "), "{t:?}");
        assert!(t.contains(client_task), "{t:?}");
    }
}
