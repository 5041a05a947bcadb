//! `swarmnet capture` on a live swarm without privileges (virtual tasks): the inner frames of
//! a network and of a task as tshark reads them, a filter, an encrypted network's frames
//! decrypted on a manager and refused on a worker, and its underlay carrying only ESP while an
//! unencrypted network's underlay is VXLAN. Skipped, saying so, without tshark.

mod cluster;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cluster::{wait_until, Node};

const SETTLE: Duration = Duration::from_secs(40);

fn tshark() -> bool {
    Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `tshark -r FILE -T fields -e FIELDS...`: a line per frame.
fn fields(file: &Path, fields: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r")
        .arg(file)
        .args(["-T", "fields", "-E", "separator=|"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("tshark");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Captures on `node` into a file and returns its path; `args` after `capture`.
fn capture(node: &Node, args: &[&str]) -> std::path::PathBuf {
    let file = node.dir.path().join(format!("c{}.pcap", rand_suffix()));
    // Flags before the filter, as tcpdump reads them.
    let f = file.to_string_lossy().into_owned();
    let mut all = vec!["capture", "--duration", "20", "-w", &f];
    all.extend_from_slice(args);
    let err = node.ok(&all);
    assert!(err.is_empty(), "{err}");
    file
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// On `n1`'s swarm: networks `plain` and `secret` (encrypted), on each `web-NET` (whoami,
/// `replicas`) and a global `get-NET` fetching from it; waits until `need` fetches of each
/// were answered.
fn plain_and_secret_with_clients(n1: &Node, replicas: &str, need: usize) {
    n1.ok(&["network", "create", "-d", "overlay", "plain"]);
    n1.ok(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--opt",
        "encrypted",
        "secret",
    ]);
    for net in ["plain", "secret"] {
        let web = format!("web-{net}");
        n1.ok(&[
            "service",
            "create",
            "-d",
            "--replicas",
            replicas,
            "--name",
            &web,
            "--network",
            net,
            "swarmnet/whoami",
        ]);
        n1.ok(&[
            "service",
            "create",
            "-d",
            "--mode",
            "global",
            "--name",
            &format!("get-{net}"),
            "--network",
            net,
            "swarmnet/fetch",
            &format!("http://{web}/"),
        ]);
    }
    for net in ["plain", "secret"] {
        assert!(
            wait_until(SETTLE, || n1
                .ok(&["service", "logs", &format!("get-{net}")])
                .matches(": 200,")
                .count()
                >= need),
            "{}",
            n1.ok(&["service", "logs", &format!("get-{net}")])
        );
    }
}

#[test]
fn a_capture_shows_a_networks_and_a_tasks_frames_decrypted_and_the_underlay_encrypted() {
    if !tshark() {
        eprintln!("SKIPPED a_capture_shows_a_networks_and_a_tasks_frames_decrypted_and_the_underlay_encrypted: no tshark (scripts/test.sh installs it as root)");
        return;
    }
    let n1 = Node::start_as("127.89.1.1", "node-1");
    let n2 = Node::start_as("127.89.1.2", "node-2");
    n1.init();
    let out = n2.join(&n1.token("worker"), &n1);
    assert!(out.status.success(), "{}", cluster::stderr(&out));
    plain_and_secret_with_clients(&n1, "2", 4);

    // A network's inner frames: the clients' HTTP as tshark reads it.
    let file = capture(&n1, &["plain", "-c", "60"]);
    let frames = fields(&file, &["frame.protocols", "http.request.method"]);
    assert_eq!(frames.len(), 60, "{frames:?}");
    assert!(frames.iter().any(|f| f.ends_with("|GET")), "{frames:?}");
    assert!(
        frames.iter().all(|f| f.starts_with("eth:ethertype:")),
        "{frames:?}"
    );

    // A filter: only what it takes.
    let file = capture(&n1, &["plain", "-c", "20", "tcp", "and", "port", "80"]);
    let ports = fields(&file, &["tcp.srcport", "tcp.dstport"]);
    assert_eq!(ports.len(), 20);
    assert!(
        ports.iter().all(|p| p.split('|').any(|x| x == "80")),
        "{ports:?}"
    );

    // A task: only its own address.
    let task_ip = {
        let v: serde_json::Value =
            serde_json::from_str(&n1.ok(&["network", "inspect", "plain"])).unwrap();
        v[0]["Containers"]
            .as_object()
            .unwrap()
            .values()
            .find(|c| c["Name"].as_str().unwrap().starts_with("get-plain."))
            .map(|c| {
                c["IPv4Address"]
                    .as_str()
                    .unwrap()
                    .split('/')
                    .next()
                    .unwrap()
                    .to_string()
            })
            .expect("the client task on node-1")
    };
    let file = capture(
        &n1,
        &[
            "get-plain",
            "-c",
            "20",
            "ip",
            "and",
            "not",
            "net",
            "172.18.0.0/16",
        ],
    );
    let addrs = fields(&file, &["ip.src", "ip.dst"]);
    assert_eq!(addrs.len(), 20);
    assert!(
        addrs.iter().all(|a| a.contains(&task_ip)),
        "{task_ip}: {addrs:?}"
    );

    // The encrypted network: decrypted on the manager ...
    let file = capture(&n1, &["secret", "-c", "40"]);
    let frames = fields(&file, &["http.request.method"]);
    assert!(frames.iter().any(|f| f == "GET"), "{frames:?}");
    // ... refused on the worker, saying why ...
    let err = n2.fails(&["capture", "secret", "-c", "1", "-w", "/dev/null"]);
    assert!(err.contains("shown on managers only"), "{err}");
    // ... and on the underlay, only ESP: no VXLAN, no HTTP, no plaintext.
    let file = capture(&n1, &["secret", "--underlay", "-c", "20"]);
    let frames = fields(&file, &["frame.protocols"]);
    assert_eq!(frames.len(), 20);
    assert!(
        frames
            .iter()
            .all(|f| !f.contains("vxlan") && !f.contains("http")),
        "{frames:?}"
    );
    let bytes = std::fs::read(&file).unwrap();
    assert!(
        !bytes.windows(9).any(|w| w == b"Hostname:"),
        "plaintext on the underlay"
    );
    // The unencrypted network's underlay is VXLAN, with the HTTP inside.
    let file = capture(&n1, &["plain", "--underlay", "-c", "40"]);
    let frames = fields(&file, &["frame.protocols"]);
    assert!(frames.iter().all(|f| f.contains("vxlan")), "{frames:?}");
    assert!(frames.iter().any(|f| f.contains("http")), "{frames:?}");

    // Bad asks are refused before anything is captured.
    let err = n1.fails(&["capture", "nothing-here", "-c", "1", "-w", "/dev/null"]);
    assert!(
        err.contains("no network, task or service nothing-here on this node"),
        "{err}"
    );
    let err = n1.fails(&["capture", "plain", "-w", "/dev/null", "port", "http"]);
    assert!(err.contains("port \"http\""), "{err}");
}

/// The client task's address on `net` as `node` itself sees it: the IPv4 addresses of a few of
/// its frames (every one involves it).
fn own_task_ip(node: &Node, task: &str) -> String {
    let file = capture(
        node,
        &[task, "-c", "6", "ip", "and", "not", "net", "172.18.0.0/16"],
    );
    let addrs = fields(&file, &["ip.src", "ip.dst"]);
    let first: Vec<&str> = addrs[0].split('|').collect();
    first
        .iter()
        .find(|a| addrs.iter().all(|l| l.split('|').any(|x| x == **a)))
        .unwrap_or_else(|| panic!("no address in every frame: {addrs:?}"))
        .to_string()
}

#[test]
fn capture_node_reaches_any_node_through_the_managers() {
    if !tshark() {
        eprintln!("SKIPPED capture_node_reaches_any_node_through_the_managers: no tshark (scripts/test.sh installs it as root)");
        return;
    }
    let n1 = Node::start_as("127.89.2.1", "node-1");
    let n2 = Node::start_as("127.89.2.2", "node-2");
    let mut n3 = Node::start_as("127.89.2.3", "node-3");
    n1.init();
    let out = n2.join(&n1.token("manager"), &n1);
    assert!(out.status.success(), "{}", cluster::stderr(&out));
    let out = n3.join(&n1.token("worker"), &n1);
    assert!(out.status.success(), "{}", cluster::stderr(&out));
    plain_and_secret_with_clients(&n1, "3", 6);

    // The worker's client, captured there directly, and through the leader: the same task.
    let worker_client = own_task_ip(&n3, "get-plain");
    let file = capture(
        &n1,
        &[
            "--node",
            "node-3",
            "get-plain",
            "-c",
            "20",
            "ip",
            "and",
            "not",
            "net",
            "172.18.0.0/16",
        ],
    );
    let addrs = fields(&file, &["ip.src", "ip.dst"]);
    assert_eq!(addrs.len(), 20);
    assert!(
        addrs.iter().all(|a| a.contains(&worker_client)),
        "{worker_client}: {addrs:?}"
    );
    // Through the other manager (its request goes to the leader), by node ID prefix.
    let n3_id = n3.id();
    let file = capture(
        &n2,
        &[
            "--node",
            &n3_id[..8],
            "get-plain",
            "-c",
            "10",
            "ip",
            "and",
            "not",
            "net",
            "172.18.0.0/16",
        ],
    );
    let addrs = fields(&file, &["ip.src", "ip.dst"]);
    assert_eq!(addrs.len(), 10);
    assert!(
        addrs.iter().all(|a| a.contains(&worker_client)),
        "{worker_client}: {addrs:?}"
    );
    // The leader's own node, asked from the other manager.
    let leader_client = own_task_ip(&n1, "get-plain");
    assert_ne!(leader_client, worker_client);
    let file = capture(
        &n2,
        &[
            "--node",
            "node-1",
            "get-plain",
            "-c",
            "10",
            "ip",
            "and",
            "not",
            "net",
            "172.18.0.0/16",
        ],
    );
    let addrs = fields(&file, &["ip.src", "ip.dst"]);
    assert!(
        addrs.len() == 10 && addrs.iter().all(|a| a.contains(&leader_client)),
        "{leader_client}: {addrs:?}"
    );

    // The worker's encrypted network: refused on the worker itself, decrypted through a
    // manager.
    let err = n3.fails(&["capture", "secret", "-c", "1", "-w", "/dev/null"]);
    assert!(err.contains("shown on managers only"), "{err}");
    let file = capture(&n1, &["--node", "node-3", "secret", "-c", "40"]);
    let frames = fields(&file, &["http.request.method"]);
    assert!(frames.iter().any(|f| f == "GET"), "{frames:?}");

    // Refusals, each saying why.
    let err = n3.fails(&["capture", "--node", "node-1", "plain", "-w", "/dev/null"]);
    assert!(err.contains("served by managers"), "{err}");
    let err = n1.fails(&["capture", "--node", "node-9", "plain", "-w", "/dev/null"]);
    assert!(err.contains("node node-9 not found"), "{err}");
    let err = n1.fails(&[
        "capture",
        "--node",
        "node-3",
        "nothing-here",
        "-w",
        "/dev/null",
    ]);
    assert!(
        err.contains("node-3: no network, task or service nothing-here on this node (node-3)"),
        "{err}"
    );

    // A task of another node asked of a manager without --node: it says where it runs.
    let on_worker = format!("get-plain.{n3_id}");
    let err = n1.fails(&["capture", &on_worker, "-w", "/dev/null"]);
    assert!(
        err.contains(&format!(
            "{on_worker} runs on node-3: capture --node node-3 {on_worker}"
        )),
        "{err}"
    );

    // The user goes: the worker stops its capture.
    let file = n1.dir.path().join("gone.pcap");
    let mut cli = capture_from_node_3(&n1, &file, std::process::Stdio::null());
    let _ = cli.kill();
    let _ = cli.wait();
    assert!(
        wait_until(Duration::from_secs(5), || n3.log().contains(
            "capture of plain for the manager at 127.89.2.1:2377: ended"
        )),
        "{}",
        n3.log()
    );

    // The node dies mid-capture: the user is told, the frames so far are kept.
    let file = n1.dir.path().join("cut.pcap");
    let cli = capture_from_node_3(&n1, &file, std::process::Stdio::piped());
    n3.kill();
    let out = cli.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("the capture stopped early"), "{err}");
    assert!(!fields(&file, &["frame.number"]).is_empty());
    // And a node that is down is named as such (once the leader has seen it go).
    assert!(wait_until(Duration::from_secs(30), || {
        let out = n1.run(&["capture", "--node", "node-3", "plain", "-w", "/dev/null"]);
        String::from_utf8_lossy(&out.stderr).contains("node node-3 (")
            && String::from_utf8_lossy(&out.stderr).contains("is down")
    }));
}

/// `capture --node node-3 plain -w FILE` through `n1`, once frames follow the pcap header.
fn capture_from_node_3(
    n1: &Node,
    file: &std::path::Path,
    stderr: std::process::Stdio,
) -> std::process::Child {
    let cli = Command::new(cluster::bin())
        .args([
            "-H",
            &n1.host(),
            "capture",
            "--node",
            "node-3",
            "plain",
            "-w",
        ])
        .arg(file)
        .stderr(stderr)
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || std::fs::metadata(
        file
    )
    .is_ok_and(|m| m.len() > 24)));
    cli
}
