//! Services whose tasks are programs, across three daemons on loopback (root: each program
//! task runs in its own network namespace on a TAP): from a namespaced task on one node, HTTP
//! to every whoami task on the other nodes gets its answer, in plain and on an encrypted
//! network with no cleartext VXLAN on the wire; `exec` into tasks; a task's output in
//! `service logs`; a failing program's exit in `service ps`; `--network-add` gives the
//! service's tasks a second interface. Skips with a printed reason without CAP_NET_ADMIN.

mod cluster;
#[macro_use]
mod lab;

use std::collections::BTreeMap;
use std::time::Duration;

use cluster::{three_named_managers, wait_until, Node};

const SETTLE: Duration = Duration::from_secs(40);

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

fn whoami_ips(nodes: &[&Node], net: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for n in nodes {
        let v: serde_json::Value =
            serde_json::from_str(&n.ok(&["network", "inspect", net])).unwrap();
        for ep in v[0]["Containers"]
            .as_object()
            .into_iter()
            .flat_map(|c| c.values())
        {
            let name = ep["Name"].as_str().unwrap();
            if name.starts_with("my-web.") {
                let ip = ep["IPv4Address"]
                    .as_str()
                    .unwrap()
                    .split('/')
                    .next()
                    .unwrap();
                out.insert(name.to_string(), ip.to_string());
            }
        }
    }
    out
}

/// `swarmnet exec TASK -- CMD...` on node `n`: (success, stdout, stderr).
fn exec(n: &Node, task: &str, cmd: &[&str]) -> (bool, String, String) {
    let mut args = vec!["exec", task, "--"];
    args.extend_from_slice(cmd);
    let out = n.run(&args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// UDP datagrams to or from `net`.x on port 4789 (VXLAN) and 4500 (ESP in UDP) seen on lo.
struct LoSniffer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<(u64, u64)>,
}

impl LoSniffer {
    fn start(net: [u8; 3]) -> LoSniffer {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let sock = socket2::Socket::new(
            socket2::Domain::PACKET,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(0x0300)),
        )
        .expect("packet socket");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let handle = std::thread::spawn(move || {
            let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 65536];
            let (mut vxlan, mut esp) = (0, 0);
            loop {
                let Ok(n) = sock.recv(&mut buf) else {
                    if flag.load(Ordering::Relaxed) {
                        break;
                    }
                    continue;
                };
                // SAFETY: recv initialised the first n bytes.
                let f: Vec<u8> = buf[..n]
                    .iter()
                    .map(|b| unsafe { b.assume_init() })
                    .collect();
                if n < 42 || f[12..14] != [0x08, 0x00] || f[23] != 17 {
                    continue;
                }
                let ours = |at: usize| f[at..at + 3] == net;
                if !(ours(26) && ours(30)) {
                    continue;
                }
                let ihl = usize::from(f[14] & 0x0f) * 4;
                let dport = u16::from_be_bytes([f[14 + ihl + 2], f[14 + ihl + 3]]);
                match dport {
                    4789 => vxlan += 1,
                    4500 => esp += 1,
                    _ => {}
                }
            }
            (vxlan, esp)
        });
        LoSniffer { stop, handle }
    }

    fn stop(self) -> (u64, u64) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

/// From a program task on node-1, HTTP to each whoami task on the two other nodes.
fn client_reaches_every_remote_whoami(n1: &Node, nodes: &[&Node], net: &str, client: &str) {
    let ips = whoami_ips(nodes, net);
    let hosts: BTreeMap<String, String> = running(n1, "my-web").into_iter().collect();
    let mut remote = 0;
    for (name, ip) in &ips {
        let slot = name.split('.').take(2).collect::<Vec<_>>().join(".");
        if hosts.get(&slot).map(String::as_str) == Some("node-1") {
            continue;
        }
        remote += 1;
        let url = format!("http://{ip}/");
        let mut last = (false, String::new(), String::new());
        let ok = wait_until(SETTLE, || {
            last = exec(n1, client, &["curl", "-s", "--max-time", "3", &url]);
            last.0 && last.1.contains(&format!("Hostname: {name}"))
        });
        assert!(ok, "{client} -> {name} at {url}: {last:?}\n{}", n1.log());
    }
    assert_eq!(remote, 2, "two whoami tasks on other nodes: {hosts:?}");
}

#[test]
fn program_tasks_reach_tasks_on_other_nodes_plain_and_encrypted() {
    require_lab!();
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("curl is needed for this test (scripts/test.sh installs it)");
    }
    let (n1, n2, n3) = three_named_managers("127.94.6");
    n1.ok(&["network", "create", "-d", "overlay", "my-network"]);
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
        "my-network",
        "swarmnet/whoami",
    ]);
    n1.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "client",
        "--network",
        "my-network",
        "--constraint",
        "node.hostname==node-1",
        "/bin/sleep",
        "infinity",
    ]);
    assert!(
        wait_until(SETTLE, || running(&n1, "my-web").len() == 3
            && running(&n1, "client").len() == 1),
        "{}\n{}",
        n1.ok(&["service", "ps", "my-web", "client"]),
        n1.log()
    );
    client_reaches_every_remote_whoami(&n1, &[&n1, &n2, &n3], "my-network", "client.1");

    // exec: on a virtual task it says why not; a task of another node is not here.
    let (ok, _, err) = exec(&n1, "my-web.1", &["true"]);
    let on = &running(&n1, "my-web")
        .into_iter()
        .find(|t| t.0 == "my-web.1")
        .unwrap()
        .1;
    assert!(!ok);
    if on == "node-1" {
        assert!(err.contains("built-in app"), "{err}");
    } else {
        assert!(err.contains("no task my-web.1 runs on this node"), "{err}");
    }
    // Its exit code comes back.
    let out = n1.run(&["exec", "client.1", "--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));

    // The encrypted network: add it to both services (their tasks are replaced with a
    // second interface), and no VXLAN in the clear between the nodes meanwhile.
    n1.ok(&[
        "service",
        "update",
        "-d",
        "--network-add",
        "my-net2",
        "my-web",
    ]);
    n1.ok(&[
        "service",
        "update",
        "-d",
        "--network-add",
        "my-net2",
        "client",
    ]);
    assert!(
        wait_until(SETTLE, || {
            running(&n1, "my-web").len() == 3
                && running(&n1, "client").len() == 1
                && whoami_ips(&[&n1, &n2, &n3], "my-net2").len() == 3
                && exec(&n1, "client.1", &["ip", "-o", "-4", "addr", "show", "eth1"])
                    .1
                    .contains("inet ")
        }),
        "{}",
        n1.ok(&["service", "ps", "my-web", "client"])
    );
    let sniff = LoSniffer::start([127, 94, 6]);
    client_reaches_every_remote_whoami(&n1, &[&n1, &n2, &n3], "my-net2", "client.1");
    let (vxlan, esp) = sniff.stop();
    assert!(esp > 0, "no ESP between the nodes");
    // Only my-net2 carried traffic meanwhile: none of it crossed as cleartext VXLAN.
    assert_eq!(vxlan, 0, "cleartext VXLAN between the nodes");
}

#[test]
fn a_program_tasks_output_and_exit_show_in_logs_and_ps() {
    require_lab!();
    let n1 = Node::start_as("127.94.7.1", "node-1");
    n1.init();
    n1.ok(&["network", "create", "-d", "overlay", "my-network"]);
    n1.ok(&[
        "service", "create", "-d", "--name", "talker", "--network", "my-network", "-e",
        "GREETING=hello", "/bin/sh", "-c",
        "echo \"$GREETING from $HOSTNAME\"; echo oops >&2; ip -o -4 addr show eth0; exec sleep infinity",
    ]);
    assert!(
        wait_until(SETTLE, || {
            let out = n1.run(&["service", "logs", "talker"]);
            let (o, e) = (cluster::stdout(&out), cluster::stderr(&out));
            o.contains("hello from ") && e.contains("| oops") && o.contains("eth0")
        }),
        "{}\n{}",
        n1.ok(&["service", "logs", "talker"]),
        n1.log()
    );
    // stdout to stdout, stderr to stderr, as the docker CLI does.
    let logs = n1.ok(&["service", "logs", "talker"]);
    assert!(logs.lines().all(|l| l.starts_with("talker.1.")), "{logs}");
    assert!(!logs.contains("oops"), "{logs}");
    assert!(logs.contains("inet 10.0.1."), "{logs}");

    n1.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "failing",
        "--restart-delay",
        "1s",
        "--network",
        "my-network",
        "/bin/sh",
        "-c",
        "exit 3",
    ]);
    assert!(
        wait_until(SETTLE, || {
            let ps = n1.ok(&["service", "ps", "--no-trunc", "failing"]);
            ps.matches("\"task: non-zero exit (3)\"").count() >= 2
        }),
        "{}",
        n1.ok(&["service", "ps", "--no-trunc", "failing"])
    );
    // Removing the service stops its tasks and takes their namespaces away.
    n1.ok(&["service", "rm", "talker", "failing"]);
    assert!(wait_until(SETTLE, || {
        let v: serde_json::Value =
            serde_json::from_str(&n1.ok(&["network", "inspect", "my-network"])).unwrap();
        v[0]["Containers"].is_null()
    }));
}
